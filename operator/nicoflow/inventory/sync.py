"""Write one observation of NICo Core into the inventory: the observed columns of
every component, Core ids learned by serial or MAC, drift rows and leak status.

Runs inside the caller's transaction (the caller commits). A component type
Core could not be asked about is left exactly as it was - observed columns,
drift rows and all - and its error is recorded in `sync_state`; only the types
observed without error are rewritten.

A leak incident starts when a component's leak status turns DETECTED; its
start (`leak_since`) is Core's alert time when Core gives one, else the time of
the pass that first saw it, and stays put while the leak lasts, so the leak
response can key its power-off requests on (component, start)."""

from __future__ import annotations

import ipaddress
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from nicoflow.domain.observations import ObservedComponent, SiteObservation
from nicoflow.domain.types import ComponentType, PowerState
from nicoflow.inventory.drift import Comparison, ExpectedComponent, MatchedBy, compare_type
from nicoflow.inventory.models import (
    BMC,
    Component,
    ComponentDrift,
    ComponentPhase,
    DriftType,
    LeakStatus,
    Rack,
    SyncState,
)

SYNC_JOB = "inventory-sync"
NOT_IN_CORE = "not reported by NICo Core"


@dataclass(frozen=True)
class Leak:
    """A component Core reports leaking in this pass."""

    component_id: uuid.UUID
    name: str
    type: ComponentType
    core_id: str
    rack: str | None
    since: datetime  # start of the incident (see the module docstring)
    power: PowerState = PowerState.UNKNOWN
    new: bool = True  # its leak status turned DETECTED in this pass


@dataclass(frozen=True)
class TypeCounts:
    observed: int = 0
    matched: int = 0
    external_ids_written: int = 0
    missing: int = 0
    unexpected: int = 0
    mismatch: int = 0


@dataclass(frozen=True)
class SyncResult:
    types: Mapping[ComponentType, TypeCounts] = field(default_factory=dict)
    errors: Mapping[ComponentType, str] = field(default_factory=dict)
    # Every component leaking now, new or not (the leak response decides per pass).
    leaks: tuple[Leak, ...] = ()
    # Racks with a component of an observed type: their summaries may have moved.
    racks: frozenset[str] = frozenset()

    @property
    def new_leaks(self) -> tuple[Leak, ...]:
        return tuple(leak for leak in self.leaks if leak.new)

    @property
    def drift_total(self) -> int:
        return sum(c.missing + c.unexpected + c.mismatch for c in self.types.values())


@dataclass(frozen=True)
class _Row:
    expected: ExpectedComponent
    leak_status: LeakStatus
    leak_since: datetime | None


async def _expected(session: AsyncSession, ctype: ComponentType) -> list[_Row]:
    rows = (
        await session.execute(
            select(
                Component.id,
                Component.name,
                Component.serial_number,
                Component.external_id,
                Component.slot_id,
                Component.tray_index,
                Component.host_id,
                Component.firmware_version,
                Component.leak_status,
                Component.leak_since,
                Rack.name,
                Component.rack_id,
            )
            .outerjoin(Rack, Component.rack_id == Rack.id)
            .where(Component.type == ctype, Component.deleted_at.is_(None))
            .order_by(Component.id)
        )
    ).all()
    ids = [r[0] for r in rows]
    macs: dict[uuid.UUID, list[str]] = defaultdict(list)
    if ids:
        for mac, cid in (
            await session.execute(
                select(BMC.mac_address, BMC.component_id)
                .where(BMC.component_id.in_(ids))
                .order_by(BMC.mac_address)
            )
        ).all():
            macs[cid].append(mac)
    return [
        _Row(
            ExpectedComponent(
                id=cid,
                type=ctype,
                name=name,
                serial=serial,
                external_id=ext,
                macs=tuple(macs.get(cid, ())),
                slot_id=slot,
                tray_index=tray,
                host_id=host,
                firmware_version=fw,
                rack=rack,
                rack_id=rack_id,
            ),
            LeakStatus(leak),
            since,
        )
        for cid, name, serial, ext, slot, tray, host, fw, leak, since, rack, rack_id in rows
    ]


async def _racks_by_core_id(session: AsyncSession) -> dict[str, uuid.UUID]:
    rows = await session.execute(
        select(Rack.external_id, Rack.id).where(
            Rack.external_id.is_not(None), Rack.deleted_at.is_(None)
        )
    )
    return {ext: rid for ext, rid in rows.all() if ext}


def _leak(a: ObservedComponent) -> LeakStatus:
    if a.leaking is None:
        return LeakStatus.UNKNOWN
    return LeakStatus.DETECTED if a.leaking else LeakStatus.NOT_DETECTED


def _firmware_json(a: ObservedComponent) -> dict[str, Any] | None:
    if a.firmware_version is None and not a.firmware:
        return None
    # "version" is the one comparable value (inventory.mirror.actual_version reads it).
    out: dict[str, Any] = {"parts": dict(a.firmware)}
    if a.firmware_version is not None:
        out["version"] = a.firmware_version
    return out


def ip_or_none(raw: str | None) -> str | None:
    """An address the INET column accepts, or None: one malformed value from
    Core must not fail the whole pass."""
    if not raw:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return None


def leak_since(
    row_status: LeakStatus, row_since: datetime | None, a: ObservedComponent, now: datetime
) -> datetime | None:
    """Start of the incident `a` is in, or None when it does not leak. Core's
    alert time wins; without it an incident already under way keeps its start."""
    if _leak(a) is not LeakStatus.DETECTED:
        return None
    if a.leak_since is not None:
        return a.leak_since
    if row_status is LeakStatus.DETECTED and row_since is not None:
        return row_since
    return now


def _observed_values(a: ObservedComponent, now: datetime, since: datetime | None) -> dict[str, Any]:
    return {
        "power_state": a.power,
        "actual_firmware": _firmware_json(a),
        "status_phase": ComponentPhase(a.status.phase.value),
        "status_reason": a.status.reason or None,
        "blocked_operations": sorted(op.value for op in a.status.blocked),
        "leak_status": _leak(a),
        "leak_since": since,
        "nvos_ip": ip_or_none(a.nvos_ip),
        "observed_at": now,
    }


def _absent_values(now: datetime) -> dict[str, Any]:
    return {
        "power_state": PowerState.UNKNOWN,
        "actual_firmware": None,
        "status_phase": ComponentPhase.UNKNOWN,
        "status_reason": NOT_IN_CORE,
        "blocked_operations": [],
        "leak_status": LeakStatus.UNKNOWN,
        "leak_since": None,
        "nvos_ip": None,
        "observed_at": now,
    }


async def _apply_type(
    session: AsyncSession,
    ctype: ComponentType,
    rows: list[_Row],
    comparison: Comparison,
    now: datetime,
    observed: int,
) -> tuple[TypeCounts, list[Leak]]:
    previous = {r.expected.id: r for r in rows}
    learned = {
        m.actual.core_id
        for m in comparison.matches
        if m.by is not MatchedBy.EXTERNAL_ID and m.expected.external_id != m.actual.core_id
    }
    if learned:
        # A tombstoned component may still hold a Core id we are about to hand out.
        await session.execute(
            update(Component)
            .where(
                Component.type == ctype,
                Component.external_id.in_(learned),
                Component.deleted_at.is_not(None),
            )
            .values(external_id=None)
        )
    updates: list[dict[str, Any]] = []
    leaks: list[Leak] = []
    for m in comparison.matches:
        row = previous[m.expected.id]
        since = leak_since(row.leak_status, row.leak_since, m.actual, now)
        values = _observed_values(m.actual, now, since)
        updates.append({"id": m.expected.id, "external_id": m.actual.core_id, **values})
        if since is not None:
            leaks.append(
                Leak(
                    component_id=m.expected.id,
                    name=m.expected.name,
                    type=ctype,
                    core_id=m.actual.core_id,
                    rack=m.expected.rack,
                    since=since,
                    power=m.actual.power,
                    new=row.leak_status is not LeakStatus.DETECTED,
                )
            )
    for e in comparison.missing:
        updates.append({"id": e.id, "external_id": e.external_id, **_absent_values(now)})
    if updates:
        # ORM bulk UPDATE by primary key: one executemany for the whole type.
        await session.execute(update(Component), updates)

    await session.execute(delete(ComponentDrift).where(ComponentDrift.component_type == ctype))
    drift_rows = [
        {
            "id": uuid.uuid4(),
            "component_id": d.component_id,
            "external_id": d.external_id,
            "rack_id": d.rack_id,
            "component_type": ctype,
            "drift_type": d.drift_type,
            "diffs": d.diffs_json(),
            "checked_at": now,
        }
        for d in comparison.drift
    ]
    if drift_rows:
        await session.execute(insert(ComponentDrift), drift_rows)
    kinds = [d.drift_type for d in comparison.drift]
    counts = TypeCounts(
        observed=observed,
        matched=len(comparison.matches),
        external_ids_written=len(learned),
        missing=kinds.count(DriftType.MISSING),
        unexpected=kinds.count(DriftType.UNEXPECTED),
        mismatch=kinds.count(DriftType.MISMATCH),
    )
    return counts, leaks


async def record_sync_state(
    session: AsyncSession, name: str, now: datetime, error: str | None
) -> None:
    values: dict[str, Any] = {"last_started_at": now, "last_error": error, "updated_at": now}
    if error is None:
        values["last_succeeded_at"] = now
    stmt = pg_insert(SyncState).values(name=name, **values)
    await session.execute(stmt.on_conflict_do_update(index_elements=[SyncState.name], set_=values))


async def apply_observation(
    session: AsyncSession, obs: SiteObservation, now: datetime
) -> SyncResult:
    """Write `obs` into the inventory. Types observed with an error are skipped."""
    counts: dict[ComponentType, TypeCounts] = {}
    leaks: list[Leak] = []
    racks: set[str] = set()
    by_core_id: dict[str, uuid.UUID] | None = None
    for ctype, tobs in obs.types.items():
        if not tobs.ok:
            continue
        if by_core_id is None:
            by_core_id = await _racks_by_core_id(session)
        rows = await _expected(session, ctype)
        comparison = compare_type([r.expected for r in rows], tobs, by_core_id)
        counts[ctype], found = await _apply_type(
            session, ctype, rows, comparison, now, len(tobs.components)
        )
        leaks.extend(found)
        racks.update(r.expected.rack for r in rows if r.expected.rack)
    errors = obs.errors
    for ctype, tobs in obs.types.items():
        await record_sync_state(session, f"{SYNC_JOB}/{ctype.value}", now, tobs.error)
    summary_error = (
        "; ".join(f"{t.value}: {e}" for t, e in sorted(errors.items())) if errors else None
    )
    await record_sync_state(session, SYNC_JOB, now, summary_error)
    return SyncResult(types=counts, errors=errors, leaks=tuple(leaks), racks=frozenset(racks))
