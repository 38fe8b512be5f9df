"""Reads of the inventory for the operator and the API, and the task archive.

Loading is shaped for target resolution at datacenter scale: racks are matched
on their own (small) rows first and components are loaded only for the racks
that can be targeted, in one query — never one query per rack."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, Delete, Select, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from nicoflow.domain.targets import (
    InventoryComponent,
    InventoryRack,
    WireModel,
    match_labels,
    rack_selector,
)
from nicoflow.domain.task_ids import record_id
from nicoflow.domain.types import BMCType, ComponentType, OperationCode, TaskPhase
from nicoflow.inventory.models import (
    BMC,
    Component,
    ComponentPhase,
    NVLDomain,
    Rack,
    TaskHistory,
    TaskResult,
)

# --- racks and components ---------------------------------------------------------------


class _RackRow(NamedTuple):
    id: uuid.UUID
    name: str
    source_uid: str | None
    labels: dict[str, str]
    nvl_domain: str | None


# NVL domain name: outer-joined, so None for racks without a domain.
_RackSelect = Select[uuid.UUID, str, str | None, dict[str, str], str]


def _rack_rows() -> _RackSelect:
    return (
        select(Rack.id, Rack.name, Rack.source_uid, Rack.labels, NVLDomain.name)
        .outerjoin(NVLDomain, Rack.nvl_domain_id == NVLDomain.id)
        .where(Rack.deleted_at.is_(None))
        .order_by(Rack.name)
    )


async def _fetch_racks(session: AsyncSession, stmt: _RackSelect) -> list[_RackRow]:
    return [
        _RackRow(rid, name, uid, labels, domain)
        for rid, name, uid, labels, domain in (await session.execute(stmt)).all()
    ]


async def _with_components(session: AsyncSession, racks: Sequence[_RackRow]) -> list[InventoryRack]:
    if not racks:
        return []
    # The component's own BMC (the host's for a compute tray, not a DPU's):
    # how Core knows a component before it has a Core id.
    own_bmc = (
        select(func.min(BMC.mac_address))
        .where(BMC.component_id == Component.id, BMC.type == BMCType.HOST)
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            select(
                Component.rack_id,
                Component.id,
                Component.name,
                Component.type,
                Component.serial_number,
                Component.external_id,
                Component.manufacturer,
                Component.slot_id,
                Component.tray_index,
                own_bmc,
            ).where(Component.rack_id.in_([r.id for r in racks]), Component.deleted_at.is_(None))
        )
    ).all()
    by_rack: dict[uuid.UUID, list[InventoryComponent]] = {r.id: [] for r in racks}
    for rack_id, cid, name, ctype, serial, core_id, maker, slot, tray, mac in rows:
        if rack_id is None:
            continue
        by_rack[rack_id].append(
            InventoryComponent(
                id=str(cid),
                name=name,
                type=ctype,
                serial=serial,
                core_id=core_id,
                manufacturer=maker,
                slot_id=slot,
                tray_index=tray,
                bmc_mac=mac,
            )
        )
    return [
        InventoryRack(
            name=r.name,
            uid=r.source_uid or "",
            labels=dict(r.labels or {}),
            nvl_domain=r.nvl_domain,
            # stable order for callers that print them; resolution sorts on its own
            components=tuple(sorted(by_rack[r.id], key=lambda c: (c.type.value, c.name))),
            id=str(r.id),
        )
        for r in racks
    ]


async def load_racks(
    session: AsyncSession, *, names: Iterable[str] | None = None, all_racks: bool = False
) -> list[InventoryRack]:
    """Racks (ordered by name) with their components: the named ones, or all of them.

    Two queries whatever the number of racks. Neither names nor all_racks: []."""
    stmt = _rack_rows()
    if not all_racks:
        wanted = sorted(set(names or ()))
        if not wanted:
            return []
        stmt = stmt.where(Rack.name.in_(wanted))
    return await _with_components(session, await _fetch_racks(session, stmt))


def _wire(targets: Mapping[str, Any] | WireModel) -> Mapping[str, Any]:
    return targets.to_k8s() if isinstance(targets, WireModel) else targets


def _pick(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    return data.get(camel, data.get(snake))


async def _racks_of_components(
    session: AsyncSession, components: Sequence[Mapping[str, Any]]
) -> tuple[set[uuid.UUID], set[str]]:
    """Rack ids holding components that component targets may name, and rack names named.

    Deliberately loose (Core ids match whatever the type): resolution then finds
    the component and can say "is a nvswitch, not compute" instead of "not found"."""
    ids: list[uuid.UUID] = []
    core_ids: set[str] = set()
    serials: set[str] = set()
    names: set[str] = set()
    for raw in components:
        t = _wire(raw)
        if t.get("id"):
            # not a UUID: cannot exist; resolution reports it
            with contextlib.suppress(ValueError):
                ids.append(uuid.UUID(str(t["id"])))
        elif _pick(t, "coreId", "core_id"):
            core_ids.add(str(_pick(t, "coreId", "core_id")))
        elif t.get("serial"):
            serials.add(str(t["serial"]))
        elif t.get("name") and t.get("rack"):
            names.add(str(t["rack"]))
    terms = []
    if ids:
        terms.append(Component.id.in_(ids))
    if core_ids:
        terms.append(Component.external_id.in_(core_ids))
    if serials:
        terms.append(Component.serial_number.in_(serials))
    if not terms:
        return set(), names
    found = await session.scalars(
        select(Component.rack_id)
        .where(or_(*terms), Component.deleted_at.is_(None), Component.rack_id.is_not(None))
        .distinct()
    )
    return {rid for rid in found if rid is not None}, names


async def load_for_targets(
    session: AsyncSession, targets: Mapping[str, Any] | WireModel
) -> list[InventoryRack]:
    """Every rack `resolve_targets(targets, racks)` can reach, with components.

    Named racks by name; a rackSelector is matched against every rack's labels
    (rack rows only); NVL domains by domain; component targets by the racks that
    hold a matching component. Three queries at most."""
    spec = _wire(targets)
    selector = rack_selector(spec)
    domains = set(_pick(spec, "nvlDomains", "nvl_domains") or ())
    names = set(spec.get("racks") or ())
    comp_rack_ids, comp_rack_names = await _racks_of_components(
        session, list(spec.get("components") or ())
    )
    names |= comp_rack_names

    stmt = _rack_rows()
    if selector is None:
        # Without a selector only these racks can be reached: filter in SQL.
        terms = []
        if names:
            terms.append(Rack.name.in_(names))
        if domains:
            terms.append(NVLDomain.name.in_(domains))
        if comp_rack_ids:
            terms.append(Rack.id.in_(comp_rack_ids))
        if not terms:
            return []
        stmt = stmt.where(or_(*terms))
    rows = await _fetch_racks(session, stmt)
    if selector is not None:

        def reachable(r: _RackRow) -> bool:
            if r.name in names or r.id in comp_rack_ids or r.nvl_domain in domains:
                return True
            try:
                return match_labels(selector, r.labels or {})
            except ValueError:
                return False  # resolution reports the malformed selector

        rows = [r for r in rows if reachable(r)]
    return await _with_components(session, rows)


# --- component status for the readiness gate -----------------------------------------------


class ComponentStatusRow(NamedTuple):
    phase: str
    reason: str | None
    blocked_operations: tuple[str, ...]


async def component_statuses(
    session: AsyncSession,
    core_ids: Collection[str],
    *,
    component_type: ComponentType | None = None,
) -> dict[str, ComponentStatusRow]:
    """Recorded lifecycle status by Core id, for the readiness gate.

    Components never observed (no status recorded) are left out, so the gate can
    tell "unknown" from "ready". Core ids are unique per type only: without
    `component_type`, a Core id shared by two types gets the union of their
    blocked operations (the cautious answer)."""
    if not core_ids:
        return {}
    stmt = select(
        Component.external_id,
        Component.status_phase,
        Component.status_reason,
        Component.blocked_operations,
    ).where(
        Component.external_id.in_(set(core_ids)),
        Component.deleted_at.is_(None),
        or_(
            Component.observed_at.is_not(None),
            Component.status_phase != ComponentPhase.UNKNOWN,
        ),
    )
    if component_type is not None:
        stmt = stmt.where(Component.type == component_type)
    out: dict[str, ComponentStatusRow] = {}
    for core_id, phase, reason, blocked in (
        await session.execute(stmt.order_by(Component.type))
    ).all():
        if core_id is None:
            continue
        prev = out.get(core_id)
        ops = tuple(blocked or ())
        if prev is not None:
            ops = tuple(dict.fromkeys((*prev.blocked_operations, *ops)))
            out[core_id] = ComponentStatusRow(prev.phase, prev.reason, ops)
        else:
            out[core_id] = ComponentStatusRow(ComponentPhase(phase).value, reason, ops)
    return out


async def rack_compute_ids(session: AsyncSession, rack: str) -> list[str]:
    """Core ids of the compute trays of the rack named `rack` (behind its
    switches and power shelves: they gate operations on those)."""
    stmt = (
        select(Component.external_id)
        .join(Rack, Component.rack_id == Rack.id)
        .where(
            Rack.name == rack,
            Rack.deleted_at.is_(None),
            Component.deleted_at.is_(None),
            Component.type == ComponentType.COMPUTE,
            Component.external_id.is_not(None),
        )
        .order_by(Component.external_id)
    )
    return [str(cid) for cid in (await session.scalars(stmt)).all()]


# --- task archive -----------------------------------------------------------------------------

_HISTORY_COLUMNS = frozenset(c.key for c in TaskHistory.__table__.columns) - {"archived_at"}
_REQUIRED = ("id", "name", "namespace", "operation_code", "phase", "created_at")


def _when(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _task_records(
    session: AsyncSession, bodies: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """task_history rows from Task objects (metadata, spec, status); two
    queries however many Tasks (their racks' ids and components)."""
    racks = sorted({str((b.get("spec") or {}).get("rack")) for b in bodies} - {"None", ""})
    rack_ids: dict[str, uuid.UUID] = {}
    known: dict[tuple[str, str, str], str] = {}
    if racks:
        rows = await session.execute(
            select(Rack.name, Rack.id)
            .where(Rack.name.in_(racks))
            .order_by(Rack.deleted_at.desc().nulls_first())
        )
        for n, i in rows.all():  # a live rack wins over a tombstone of the same name
            rack_ids.setdefault(str(n), i)
    if rack_ids:
        found = await session.execute(
            select(Rack.name, Component.type, Component.name, Component.id)
            .join(Rack, Component.rack_id == Rack.id)
            .where(Rack.id.in_(list(rack_ids.values())))
        )
        # history names components by inventory id, so a later rename does not lose them
        known = {(str(r), str(t), str(n)): str(i) for r, t, n, i in found.all()}
    return [_task_record(b, rack_ids, known) for b in bodies]


def _task_record(
    body: Mapping[str, Any],
    rack_ids: Mapping[str, uuid.UUID],
    known: Mapping[tuple[str, str, str], str],
) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    rack_name = spec.get("rack")
    components: dict[str, list[str]] = {}
    for g in spec.get("components") or []:
        for ref in g.get("ids") or []:
            found = known.get((str(rack_name), str(g.get("type")), str(ref.get("name"))))
            if found:
                components.setdefault(str(g.get("type")), []).append(found)
    phase = TaskPhase(status.get("phase") or TaskPhase.PENDING.value)
    report = status.get("report")
    if report is None and status.get("stages"):
        report = {"stages": status["stages"], "commanded": status.get("commanded") or []}
    now = datetime.now(UTC)
    return {
        "id": meta.get("uid"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "task_spec_name": spec.get("taskSpecName"),
        "requested_by": spec.get("requestedBy"),
        "rack_id": rack_ids.get(str(rack_name)),
        "rack_name": rack_name,
        "operation_code": spec.get("operation"),
        "phase": phase.value,
        "message": status.get("message") or None,
        "description": spec.get("description") or None,
        "components": components,
        "applied_rule": spec.get("rule"),
        "report": report,
        "queued_at": status.get("queuedAt"),
        "created_at": meta.get("creationTimestamp") or now,
        "started_at": status.get("startTime"),
        # only a finished Task has a finish time: the API reads NULL as "live"
        "finished_at": (status.get("completionTime") or now) if phase.finished else None,
    }


def _normalise_record(record: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(record) - _HISTORY_COLUMNS
    if unknown:
        raise ValueError(f"unknown task_history fields: {', '.join(sorted(unknown))}")
    missing = [k for k in _REQUIRED if record.get(k) in (None, "")]
    if missing:
        raise ValueError(f"task_history record lacks: {', '.join(missing)}")
    row = dict(record)
    row["id"] = uuid.UUID(str(row["id"]))
    if row.get("rack_id") is not None:
        row["rack_id"] = uuid.UUID(str(row["rack_id"]))
    code = OperationCode(row["operation_code"])
    row["operation_code"] = code
    row["operation_type"] = row.get("operation_type") or code.operation_type
    row["phase"] = TaskPhase(row["phase"])
    if row["phase"].finished and row.get("finished_at") in (None, ""):
        raise ValueError("task_history record of a finished Task lacks: finished_at")
    for key in ("queued_at", "created_at", "started_at", "finished_at"):
        if key in row:
            row[key] = _when(row[key])
    if row.get("api_id") is None:
        row["api_id"] = record_id(str(row["namespace"]), str(row["name"]), str(row["id"]))
    row.setdefault("components", {})
    return row


async def archive_task(session: AsyncSession, record: Mapping[str, Any]) -> None:
    """Insert or update the history row of a Task, keyed by the Task's UID.

    `record` is either a Task object (as the apiserver returns it) or a mapping of
    task_history columns. Idempotent: archiving the same Task again rewrites the
    row with what is given, so a replayed or later, fuller record simply wins."""
    if "metadata" in record and "spec" in record:
        (record,) = await _task_records(session, [record])
    row = _normalise_record(record)
    stmt = pg_insert(TaskHistory).values(**row)
    changes = {k: stmt.excluded[k] for k in row if k != "id"}
    await session.execute(stmt.on_conflict_do_update(index_elements=[TaskHistory.id], set_=changes))


async def record_tasks(session: AsyncSession, bodies: Sequence[Mapping[str, Any]]) -> None:
    """Index Tasks that have not finished (just created, or found at start-up):
    a row that exists already is left alone, since the later writer knows more."""
    if not bodies:
        return
    rows = [_normalise_record(r) for r in await _task_records(session, bodies)]
    for chunk in range(0, len(rows), 500):
        stmt = pg_insert(TaskHistory).values(rows[chunk : chunk + 500])
        await session.execute(stmt.on_conflict_do_nothing(index_elements=[TaskHistory.id]))


async def record_phase(
    session: AsyncSession,
    uid: str,
    phase: TaskPhase,
    *,
    started_at: datetime | None = None,
    message: str = "",
) -> None:
    """A live Task's new phase; a row already final (archived) is not touched."""
    values: dict[str, Any] = {"phase": phase, "message": message or None}
    if started_at is not None:
        values["started_at"] = started_at
    await session.execute(
        update(TaskHistory)
        .where(TaskHistory.id == uuid.UUID(uid), TaskHistory.finished_at.is_(None))
        .values(**values)
    )


RESULT_COLUMNS = frozenset(
    [
        "stage",
        "component_type",
        "component_id",
        "name",
        "phase",
        "attempts",
        "commanded",
        "error",
        "finished_at",
    ]
)


async def archive_results(
    session: AsyncSession, task_id: str | uuid.UUID, results: Sequence[Mapping[str, Any]]
) -> None:
    """Insert or update per-component step results of a Task (keyed by Task UID,
    stage, component type and id): a replayed write rewrites the same rows."""
    if not results:
        return
    rows = []
    for r in results:
        unknown = set(r) - RESULT_COLUMNS
        if unknown:
            raise ValueError(f"unknown task_result fields: {', '.join(sorted(unknown))}")
        rows.append({**r, "task_id": uuid.UUID(str(task_id))})
    stmt = pg_insert(TaskResult).values(rows)
    keys = ("task_id", "stage", "component_type", "component_id")
    update = {k: stmt.excluded[k] for k in rows[0] if k not in keys}
    await session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=update))


async def task_results(session: AsyncSession, task_id: str | uuid.UUID) -> list[TaskResult]:
    """A Task's archived per-component results, by stage, type and name."""
    stmt = (
        select(TaskResult)
        .where(TaskResult.task_id == uuid.UUID(str(task_id)))
        .order_by(TaskResult.stage, TaskResult.component_type, TaskResult.name)
    )
    return list((await session.scalars(stmt)).all())


class Pruned(NamedTuple):
    tasks: int
    results: int


PRUNE_BATCH = 5000


async def prune_history(
    session: AsyncSession,
    *,
    now: datetime,
    max_age: timedelta | None = None,
    max_tasks: int | None = None,
    batch: int = PRUNE_BATCH,
) -> Pruned:
    """Delete history past the bounds: Tasks finished before now - max_age and
    all but the newest max_tasks, with their per-component results, plus
    results older than max_age whose Task never reached the history (deleted
    while it ran). One batch per call; call again while it returns a full batch."""
    doomed = select(TaskHistory.id)
    if max_age is not None and max_tasks is not None:
        newest = (
            select(TaskHistory.id)
            .order_by(TaskHistory.finished_at.desc(), TaskHistory.id)
            .limit(max_tasks)
        )
        doomed = doomed.where(
            or_(TaskHistory.finished_at < now - max_age, TaskHistory.id.not_in(newest))
        )
    elif max_age is not None:
        doomed = doomed.where(TaskHistory.finished_at < now - max_age)
    elif max_tasks is not None:
        doomed = doomed.order_by(TaskHistory.finished_at.desc(), TaskHistory.id).offset(max_tasks)
    else:
        return Pruned(0, 0)
    ids = list((await session.scalars(doomed.limit(batch))).all())
    results = 0
    if ids:
        results += await _deleted(session, delete(TaskResult).where(TaskResult.task_id.in_(ids)))
        await session.execute(delete(TaskHistory).where(TaskHistory.id.in_(ids)))
    if max_age is not None:
        stale = (
            select(TaskResult.task_id)
            .where(TaskResult.recorded_at < now - max_age)
            .where(TaskResult.task_id.not_in(select(TaskHistory.id)))
            .limit(batch)
        )
        results += await _deleted(session, delete(TaskResult).where(TaskResult.task_id.in_(stale)))
    return Pruned(len(ids), results)


async def _deleted(session: AsyncSession, stmt: Delete) -> int:
    result = cast("CursorResult[Any]", await session.execute(stmt))
    return int(result.rowcount)


ACTIVE_PHASES = (TaskPhase.PENDING, TaskPhase.WAITING, TaskPhase.RUNNING)


async def task_history(
    session: AsyncSession,
    *,
    rack: str | None = None,
    component_core_id: str | None = None,
    active_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[TaskHistory]:
    """Archived Tasks, newest first (finished_at, then id for a stable page order).

    `rack` filters by rack name; `component_core_id` keeps Tasks that touched the
    component(s) with that Core id; `active_only` keeps unfinished phases (the
    archive holds those only if a writer stores Tasks before they finish)."""
    stmt = select(TaskHistory)
    if rack is not None:
        stmt = stmt.where(TaskHistory.rack_name == rack)
    if component_core_id is not None:
        hits = (
            await session.execute(
                select(Component.type, Component.id).where(
                    Component.external_id == component_core_id
                )
            )
        ).all()
        # jsonb containment per (type, id): served by the GIN index on components.
        terms = [TaskHistory.components.contains({str(t): [str(i)]}) for t, i in hits]
        if not terms:
            return []
        stmt = stmt.where(or_(*terms))
    if active_only:
        stmt = stmt.where(TaskHistory.phase.in_(ACTIVE_PHASES))
    stmt = (
        stmt.order_by(TaskHistory.finished_at.desc(), TaskHistory.id)
        .limit(max(0, limit))
        .offset(max(0, offset))
    )
    return list((await session.scalars(stmt)).all())
