"""Task RPCs: ListTasks, GetTasksByIDs and CancelTask.

Tasks are read from two places: live Task objects in the API's namespace and
the `task_history` archive. A Task present in both (finished, archived, not yet
deleted) is shown from the archive. Ids are the name-based ids of
`nicoflow.service.task_ids`; Kubernetes UIDs are accepted too.

ListTasks pages over the live Tasks first (newest first), then the archive
(most recently finished first); the archive is paged in SQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.types import ComponentType, TaskPhase
from nicoflow.inventory.models import Component, Rack, TaskHistory
from nicoflow.kube.client import NotFound as KubeNotFound
from nicoflow.kube.resources import LABEL_RACK, RULES, TASKS, TASKSPECS
from nicoflow.kube.retry import retrying
from nicoflow.service.backend import Backend
from nicoflow.service.errors import FailedPrecondition, InvalidArgument, NotFound
from nicoflow.service.rules import rule_id_of
from nicoflow.service.task_ids import record_id, task_id
from nicoflow.service.task_view import (
    ACTIVE,
    TaskRecord,
    from_history,
    from_task_object,
    task_message,
)
from nicoflow.service.validation import MAX_PAGE, page, parse_uuid

_SCAN_BATCH = 1000


@dataclass(frozen=True)
class _ComponentKey:
    id: uuid.UUID
    rack: str | None
    type: ComponentType
    name: str


async def _live(backend: Backend, label_selector: str | None = None) -> list[TaskRecord]:
    items = await retrying(
        lambda: backend.kube.list(TASKS, backend.namespace, label_selector=label_selector)
    )
    return [from_task_object(i) for i in items]


async def _archived_uids(session: AsyncSession, uids: Iterable[str]) -> set[str]:
    wanted = []
    for u in uids:
        try:
            wanted.append(uuid.UUID(u))
        except ValueError:
            continue
    if not wanted:
        return set()
    rows = await session.scalars(select(TaskHistory.id).where(TaskHistory.id.in_(wanted)))
    return {str(r) for r in rows}


def assign_ids(records: Sequence[TaskRecord]) -> list[tuple[TaskRecord, uuid.UUID]]:
    """The API id of each record: the name-based id for the newest record of a
    name, the UID for older runs of a reused name (within `records`)."""
    newest: dict[uuid.UUID, TaskRecord] = {}
    for r in records:
        key = record_id(r.namespace, r.name, r.uid)
        best = newest.get(key)
        if best is None or _created_key(r) > _created_key(best):
            newest[key] = r
    out = []
    for r in records:
        key = record_id(r.namespace, r.name, r.uid)
        out.append((r, key if newest[key] is r else _uid_or(r, key)))
    return out


def _created_key(r: TaskRecord) -> float:
    return r.created_at.timestamp() if r.created_at is not None else 0.0


def _uid_or(r: TaskRecord, fallback: uuid.UUID) -> uuid.UUID:
    try:
        return uuid.UUID(r.uid)
    except ValueError:
        return fallback


async def _descriptions(backend: Backend, records: Sequence[TaskRecord]) -> dict[str, str]:
    """TaskSpec descriptions of live Tasks (a Task does not copy it)."""
    names = sorted({r.taskspec for r in records if not r.archived and r.taskspec})

    async def one(name: str) -> tuple[str, str]:
        try:
            body = await retrying(lambda: backend.kube.get(TASKSPECS, name, backend.namespace))
        except KubeNotFound:
            return name, ""
        return name, str((body.get("spec") or {}).get("description") or "")

    return dict(await asyncio.gather(*(one(n) for n in names)))


async def _rule_ids(backend: Backend, names: set[str]) -> dict[str, uuid.UUID]:
    """v1 ids of the OperationRules named (a deleted rule has none, as the
    original's applied_rule_id went NULL with its rule)."""
    if not names:
        return {}
    rules = await retrying(lambda: backend.kube.list(RULES))
    return {b["metadata"]["name"]: rule_id_of(b) for b in rules if b["metadata"]["name"] in names}


async def _messages(
    backend: Backend,
    session: AsyncSession,
    located: Sequence[tuple[TaskRecord, uuid.UUID]],
    with_report: bool,
) -> list[pb.Task]:
    live = [r for r, _ in located if not r.archived]
    rack_names = sorted({r.rack for r in live if r.rack})
    rack_ids: dict[str, uuid.UUID] = {}
    comp_ids: dict[tuple[str, str, str], str] = {}
    if rack_names:
        # a live rack wins over a tombstone of the same name
        for rid, name, deleted in (
            await session.execute(
                select(Rack.id, Rack.name, Rack.deleted_at)
                .where(Rack.name.in_(rack_names))
                .order_by(Rack.deleted_at.desc().nulls_first())
            )
        ).all():
            if deleted is None or name not in rack_ids:
                rack_ids[name] = rid
        for cid, rack, ctype, cname in (
            await session.execute(
                select(Component.id, Rack.name, Component.type, Component.name)
                .join(Rack, Component.rack_id == Rack.id)
                .where(Rack.name.in_(rack_names), Component.deleted_at.is_(None))
            )
        ).all():
            comp_ids[(rack, ComponentType(ctype).value, cname)] = str(cid)
    descriptions = await _descriptions(backend, [r for r in live if not r.description])
    rule_ids = await _rule_ids(backend, {r.rule_name for r, _ in located if r.rule_name})
    out = []
    for record, api_id in located:
        if record.archived:
            rack_id = record.rack_id
            components: list[str] = list(record.component_ids)
            description = record.description
        else:
            rack_id = rack_ids.get(record.rack or "")
            components = [
                comp_ids[key]
                for key in ((record.rack or "", t, n) for t, n in record.components)
                if key in comp_ids
            ]
            description = descriptions.get(record.taskspec or "", "")
        out.append(
            task_message(
                record,
                api_id,
                rack_id=rack_id,
                component_ids=components,
                description=description,
                with_report=with_report,
                applied_rule_id=rule_ids.get(record.rule_name or ""),
            )
        )
    return out


# --- ListTasks ------------------------------------------------------------------------------


async def _component(session: AsyncSession, cid: uuid.UUID) -> _ComponentKey | None:
    row = (
        await session.execute(
            select(Component.id, Rack.name, Component.type, Component.name)
            .outerjoin(Rack, Component.rack_id == Rack.id)
            .where(Component.id == cid)
        )
    ).first()
    if row is None:
        return None
    return _ComponentKey(row[0], row[1], ComponentType(row[2]), row[3])


async def _rack_name(session: AsyncSession, rid: uuid.UUID) -> str | None:
    name = await session.scalar(select(Rack.name).where(Rack.id == rid))
    if name is None:  # purged: history still knows it
        name = await session.scalar(
            select(TaskHistory.rack_name).where(TaskHistory.rack_id == rid).limit(1)
        )
    return name


async def list_tasks(backend: Backend, request: pb.ListTasksRequest) -> tuple[list[pb.Task], int]:
    rack_id = parse_uuid(request.rack_id, "rack_id") if request.HasField("rack_id") else None
    comp_id = (
        parse_uuid(request.component_id, "component_id")
        if request.HasField("component_id")
        else None
    )
    window = page(request.pagination if request.HasField("pagination") else None)
    async with backend.sessions() as session:
        rack_name = await _rack_name(session, rack_id) if rack_id is not None else None
        comp = await _component(session, comp_id) if comp_id is not None else None

        live: list[TaskRecord] = []
        if rack_id is None or rack_name is not None:
            selector = f"{LABEL_RACK}={rack_name}" if rack_name else None
            live = await _live(backend, selector)
        if request.active_only:
            live = [r for r in live if r.active]
        if comp_id is not None:
            live = [
                r
                for r in live
                if comp is not None
                and r.rack == comp.rack
                and (comp.type.value, comp.name) in r.components
            ]
        archived = await _archived_uids(session, (r.uid for r in live))
        live = [r for r in live if r.uid not in archived]
        live.sort(key=lambda r: (-_created_key(r), r.name))

        conditions: list[ColumnElement[bool]] = [TaskHistory.namespace == backend.namespace]
        if rack_id is not None:
            conditions.append(TaskHistory.rack_id == rack_id)
        if request.active_only:
            conditions.append(TaskHistory.phase.in_(ACTIVE))
        if comp_id is not None:
            # containment per type: served by the GIN index on components
            types = [comp.type] if comp is not None else list(ComponentType)
            conditions.append(
                or_(*(TaskHistory.components.contains({t.value: [str(comp_id)]}) for t in types))
            )
        archive_total = int(
            await session.scalar(select(func.count()).select_from(TaskHistory).where(*conditions))
            or 0
        )
        picked = live[window.offset : window.offset + window.limit]
        remaining = window.limit - len(picked)
        rows: list[TaskHistory] = []
        if remaining > 0:
            rows = list(
                (
                    await session.scalars(
                        select(TaskHistory)
                        .where(*conditions)
                        .order_by(TaskHistory.finished_at.desc(), TaskHistory.id)
                        .offset(max(0, window.offset - len(live)))
                        .limit(remaining)
                    )
                ).all()
            )
        records = picked + [from_history(r) for r in rows]
        tasks = await _messages(backend, session, assign_ids(records), request.with_report)
        return tasks, len(live) + archive_total


# --- lookups by id --------------------------------------------------------------------------


async def _scan_archive(
    session: AsyncSession, namespace: str, wanted: set[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """Name-based id -> archive UID, newest first; stops once every id is found.

    The archive is keyed by UID, so a name-based id is found by computing it
    for archived rows (namespace, name), newest first."""
    found: dict[uuid.UUID, uuid.UUID] = {}
    if not wanted:
        return found
    stream = await session.stream(
        select(TaskHistory.id, TaskHistory.name)
        .where(TaskHistory.namespace == namespace)
        .order_by(TaskHistory.finished_at.desc(), TaskHistory.id)
        .execution_options(yield_per=_SCAN_BATCH)
    )
    async for uid, name in stream:
        key = task_id(namespace, name)
        if key in wanted and key not in found:
            found[key] = uid
            if len(found) == len(wanted):
                break
    await stream.close()
    return found


async def _locate(
    backend: Backend, session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, TaskRecord]:
    """The Task each id names (live, or archived when it is archived)."""
    live = await _live(backend)
    by_uid = {r.uid: r for r in live}
    newest: dict[uuid.UUID, TaskRecord] = {}
    for r in live:
        key = task_id(r.namespace, r.name)
        best = newest.get(key)
        if best is None or _created_key(r) > _created_key(best):
            newest[key] = r

    picked: dict[uuid.UUID, TaskRecord] = {}
    for i in ids:
        hit = newest.get(i) or by_uid.get(str(i))
        if hit is not None:
            picked[i] = hit
    # archived versions of live hits, and ids that may be archive UIDs
    uids = {uuid.UUID(r.uid) for r in picked.values() if _is_uuid(r.uid)} | set(ids)
    rows = {
        r.id: r
        for r in (await session.scalars(select(TaskHistory).where(TaskHistory.id.in_(uids)))).all()
    }
    out: dict[uuid.UUID, TaskRecord] = {}
    for i in ids:
        hit = picked.get(i)
        if hit is not None:
            row = rows.get(uuid.UUID(hit.uid)) if _is_uuid(hit.uid) else None
            out[i] = from_history(row) if row is not None else hit
        elif i in rows:
            out[i] = from_history(rows[i])
    missing = {i for i in ids if i not in out}
    by_name = await _scan_archive(session, backend.namespace, missing)
    if by_name:
        extra = {
            r.id: r
            for r in (
                await session.scalars(
                    select(TaskHistory).where(TaskHistory.id.in_(set(by_name.values())))
                )
            ).all()
        }
        for api_id, uid in by_name.items():
            if uid in extra:
                out[api_id] = from_history(extra[uid])
    return out


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


async def get_tasks(backend: Backend, request: pb.GetTasksByIDsRequest) -> list[pb.Task]:
    if len(request.task_ids) > MAX_PAGE:
        raise InvalidArgument(
            f"task_ids holds {len(request.task_ids)} ids; ask for at most {MAX_PAGE} at a time"
        )
    ids = [parse_uuid(t, f"task_ids[{n}]") for n, t in enumerate(request.task_ids)]
    if not ids:
        return []
    async with backend.sessions() as session:
        unique = list(dict.fromkeys(ids))
        found = await _locate(backend, session, unique)
        # each task answers under the id it was asked by (name-based or UID alike)
        located = [(found[i], i) for i in unique if i in found]
        return await _messages(backend, session, located, True)


async def cancel_task(backend: Backend, request: pb.CancelTaskRequest) -> pb.Task:
    tid = parse_uuid(request.task_id if request.HasField("task_id") else None, "task_id")
    async with backend.sessions() as session:
        record = (await _locate(backend, session, [tid])).get(tid)
        if record is None:
            raise NotFound(f"task {tid} not found")
        if record.phase is TaskPhase.SUCCEEDED:
            raise FailedPrecondition(f"task {tid} already completed; there is nothing to cancel")
        if record.phase is TaskPhase.FAILED:
            raise FailedPrecondition(f"task {tid} already failed; there is nothing to cancel")
        if record.phase is not TaskPhase.CANCELLED:
            if record.archived:
                raise FailedPrecondition(
                    f"task {tid} is archived as {record.phase.value} but its object is gone; "
                    "it cannot be cancelled"
                )
            try:
                body: dict[str, Any] = await backend.kube.patch(
                    TASKS, record.name, {"spec": {"cancel": True}}, backend.namespace
                )
            except KubeNotFound:
                raise NotFound(f"task {tid} was deleted meanwhile") from None
            record = from_task_object(body)
        return (await _messages(backend, session, [(record, tid)], True))[0]
