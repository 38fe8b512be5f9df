"""Task RPCs: ListTasks, GetTasksByIDs and CancelTask.

Tasks are found in the task index, the `task_history` table: the operator
records each Task when it creates it, when it starts and when it finishes.
A row that has not finished is a live Task, read from its object by name for
its current status; a finished row answers from the archive alone. Nothing
lists Task objects, so a query costs the same with 10 or 10,000 of them. Ids
are the name-based ids of `nicoflow.domain.task_ids` (indexed as api_id);
Kubernetes UIDs are accepted too.

ListTasks pages in SQL: unfinished Tasks newest first, then finished ones,
most recently finished first."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.task_ids import record_id
from nicoflow.domain.types import ComponentType, TaskPhase
from nicoflow.inventory.models import Component, Rack, TaskHistory
from nicoflow.kube.client import NotFound as KubeNotFound
from nicoflow.kube.resources import RULES, TASKS, TASKSPECS
from nicoflow.kube.retry import retrying
from nicoflow.service.backend import Backend
from nicoflow.service.errors import FailedPrecondition, InvalidArgument, NotFound
from nicoflow.service.rules import rule_id_of
from nicoflow.service.task_view import (
    ACTIVE,
    TaskRecord,
    from_history,
    from_task_object,
    task_message,
)
from nicoflow.service.validation import MAX_PAGE, page, parse_uuid


@dataclass(frozen=True)
class _ComponentKey:
    id: uuid.UUID
    rack: str | None
    type: ComponentType
    name: str


async def _records(backend: Backend, rows: Sequence[TaskHistory]) -> list[TaskRecord]:
    """Each row as the API shows it: a finished one from the archive, a live one
    from its Task object (fetched by name, concurrently; a Task object gone
    since shows as its row last had it)."""

    async def one(row: TaskHistory) -> TaskRecord:
        if row.finished_at is not None:
            return from_history(row)
        try:
            body = await retrying(lambda: backend.kube.get(TASKS, row.name, row.namespace))
        except KubeNotFound:
            return from_history(row)
        if str(body["metadata"].get("uid")) != str(row.id):
            return from_history(row)  # the name was reused by a newer Task
        return from_task_object(body)

    return list(await asyncio.gather(*(one(r) for r in rows)))


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

    async def one(name: str) -> tuple[str, uuid.UUID | None]:
        try:
            body = await retrying(lambda: backend.kube.get(RULES, name))
        except KubeNotFound:
            return name, None
        return name, rule_id_of(body)

    found = await asyncio.gather(*(one(n) for n in sorted(names)))
    return {name: rid for name, rid in found if rid is not None}


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


async def list_tasks(backend: Backend, request: pb.ListTasksRequest) -> tuple[list[pb.Task], int]:
    rack_id = parse_uuid(request.rack_id, "rack_id") if request.HasField("rack_id") else None
    comp_id = (
        parse_uuid(request.component_id, "component_id")
        if request.HasField("component_id")
        else None
    )
    window = page(request.pagination if request.HasField("pagination") else None)
    async with backend.sessions() as session:
        conditions: list[ColumnElement[bool]] = [TaskHistory.namespace == backend.namespace]
        if rack_id is not None:
            conditions.append(TaskHistory.rack_id == rack_id)
        if request.active_only:
            conditions.append(TaskHistory.phase.in_(ACTIVE))
        if comp_id is not None:
            comp = await _component(session, comp_id)
            # containment per type: served by the GIN index on components
            types = [comp.type] if comp is not None else list(ComponentType)
            conditions.append(
                or_(*(TaskHistory.components.contains({t.value: [str(comp_id)]}) for t in types))
            )
        total = int(
            await session.scalar(select(func.count()).select_from(TaskHistory).where(*conditions))
            or 0
        )
        rows = list(
            (
                await session.scalars(
                    select(TaskHistory)
                    .where(*conditions)
                    .order_by(
                        TaskHistory.finished_at.desc().nulls_first(),
                        TaskHistory.created_at.desc(),
                        TaskHistory.name,
                    )
                    .offset(window.offset)
                    .limit(window.limit)
                )
            ).all()
        )
        records = await _records(backend, rows)
        if request.active_only:  # finished since the row was written
            records = [r for r in records if r.active]
        tasks = await _messages(backend, session, assign_ids(records), request.with_report)
        return tasks, total


# --- lookups by id --------------------------------------------------------------------------


async def _locate(
    backend: Backend, session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, TaskRecord]:
    """The Task each id names: by API id (the newest Task of that name) or by
    UID, one indexed query for all of them."""
    rows = (
        await session.scalars(
            select(TaskHistory)
            .where(
                TaskHistory.namespace == backend.namespace,
                or_(TaskHistory.api_id.in_(ids), TaskHistory.id.in_(ids)),
            )
            .order_by(TaskHistory.created_at.desc())
        )
    ).all()
    by_uid = {r.id: r for r in rows}
    newest: dict[uuid.UUID, TaskHistory] = {}
    for r in rows:  # newest first: a reused name means its latest run
        if r.api_id is not None:
            newest.setdefault(r.api_id, r)
    picked = {i: newest.get(i) or by_uid.get(i) for i in ids}
    found = [r for r in picked.values() if r is not None]
    records = dict(zip([r.id for r in found], await _records(backend, found), strict=True))
    return {i: records[r.id] for i, r in picked.items() if r is not None}


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
