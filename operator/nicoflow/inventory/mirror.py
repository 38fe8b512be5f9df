"""Mirror Rack objects into the PostgreSQL inventory, and summarise a rack for its status.

The Rack object is the intent; these rows are the index the API, target
resolution and inventory sync query. Writing is idempotent: a Rack object whose
UID and generation the row already reflects costs one SELECT. Components are
keyed by (manufacturer, serial number), BMCs by MAC, exactly as the schema's
unique keys are, so a component keeps its inventory id (and what Core reported
about it) across edits of its name or position.

Every function runs inside the caller's transaction and only flushes; the
caller commits. After a `MirrorConflict` raised by the database itself (a race
the checks here could not see), the session must be rolled back."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nicoflow.api.rack import RackComponent, RackSpec
from nicoflow.domain.rules import describe_validation_error
from nicoflow.domain.types import ComponentType, PowerState
from nicoflow.inventory.models import (
    BMC,
    Component,
    ComponentDrift,
    DriftType,
    LeakStatus,
    NVLDomain,
    Rack,
    normalize_mac,
)


class MirrorError(ValueError):
    """The Rack object cannot be mirrored as written; the message says why."""


class MirrorConflict(MirrorError):
    """Another rack already holds an identity this Rack claims (serial, Core id, MAC ...)."""

    def __init__(self, message: str, other_rack: str | None = None) -> None:
        super().__init__(message)
        self.other_rack = other_rack


class MirrorAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    LABELS = "labels"  # same generation, only metadata.labels changed
    UNCHANGED = "unchanged"
    STALE = "stale"  # an older generation than the row already reflects


@dataclass(frozen=True)
class MirrorResult:
    rack_id: uuid.UUID
    action: MirrorAction
    components_created: int = 0
    components_updated: int = 0
    components_deleted: int = 0
    bmcs_created: int = 0
    bmcs_updated: int = 0
    bmcs_deleted: int = 0

    @property
    def changed(self) -> bool:
        return self.action not in (MirrorAction.UNCHANGED, MirrorAction.STALE)


# --- reading the Rack object -------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    name: str
    uid: str | None
    generation: int | None
    resource_version: str | None
    labels: dict[str, str]
    spec: RackSpec


def _source(body: Mapping[str, Any]) -> _Source:
    meta = body.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise MirrorError("the Rack object has no metadata.name")
    try:
        spec = RackSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        raise MirrorError(
            f"rack {name}: invalid spec: " + "; ".join(describe_validation_error(exc))
        ) from None
    generation = meta.get("generation")
    return _Source(
        name=str(name),
        uid=str(meta["uid"]) if meta.get("uid") else None,
        generation=int(generation) if generation is not None else None,
        resource_version=meta.get("resourceVersion"),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        spec=spec,
    )


@dataclass(frozen=True)
class _WantedBMC:
    mac: str
    type: Any
    ip: str | None


@dataclass(frozen=True)
class _Wanted:
    """One component as the spec wants it, keyed like the unique constraint."""

    key: tuple[str, str]
    spec: RackComponent
    bmcs: tuple[_WantedBMC, ...]

    @property
    def core_key(self) -> tuple[ComponentType, str] | None:
        return (self.spec.type, self.spec.core_id) if self.spec.core_id else None


def _wanted_components(src: _Source) -> list[_Wanted]:
    """The spec's components, with duplicates the CRD cannot catch reported by name."""
    out: list[_Wanted] = []
    seen_keys: dict[tuple[str, str], str] = {}
    seen_names: set[str] = set()
    seen_core: dict[tuple[ComponentType, str], str] = {}
    seen_macs: dict[str, str] = {}
    rack_maker = src.spec.identity.manufacturer
    for comp in src.spec.components:
        key = (comp.manufacturer or rack_maker, comp.serial_number)
        where = f"rack {src.name}"
        if comp.name in seen_names:
            raise MirrorError(f"{where}: component name {comp.name} appears twice")
        seen_names.add(comp.name)
        if key in seen_keys:
            raise MirrorError(
                f"{where}: components {seen_keys[key]} and {comp.name} have the same "
                f"manufacturer and serial number {key[0]} {key[1]}"
            )
        seen_keys[key] = comp.name
        if comp.core_id:
            core = (comp.type, comp.core_id)
            if core in seen_core:
                raise MirrorError(
                    f"{where}: components {seen_core[core]} and {comp.name} have the same "
                    f"{comp.type.value} core id {comp.core_id}"
                )
            seen_core[core] = comp.name
        bmcs = []
        for b in comp.bmcs or []:
            try:
                mac = normalize_mac(b.mac_address)
            except ValueError as exc:
                raise MirrorError(f"{where}: component {comp.name}: {exc}") from None
            if mac in seen_macs:
                raise MirrorError(
                    f"{where}: BMC MAC {mac} appears on {seen_macs[mac]} and {comp.name}"
                )
            seen_macs[mac] = comp.name
            bmcs.append(_WantedBMC(mac, b.type, b.ip_address))
        out.append(_Wanted(key, comp, tuple(bmcs)))
    return out


def _secret_ref(spec: RackSpec) -> str | None:
    ref = spec.credentials_secret_ref
    if ref is None:
        return None
    return f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name


# --- writing -----------------------------------------------------------------------------


def _assign(obj: object, values: Mapping[str, Any]) -> bool:
    """Set only attributes that differ, so an unchanged row gets no UPDATE."""
    changed = False
    for attr, value in values.items():
        if getattr(obj, attr) != value:
            setattr(obj, attr, value)
            changed = True
    return changed


async def _lock_rack_name(session: AsyncSession, name: str) -> None:
    # Serialises writers of one rack (operator and API) for the transaction, also
    # before the row exists; different racks do not wait for each other.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"nicoflow/rack/{name}"},
    )


async def _nvl_domain_id(session: AsyncSession, name: str | None) -> uuid.UUID | None:
    if not name:
        return None
    # ON CONFLICT DO NOTHING: two racks of a new domain mirrored at once both succeed.
    await session.execute(
        pg_insert(NVLDomain).values(id=uuid.uuid4(), name=name).on_conflict_do_nothing()
    )
    found = await session.scalar(select(NVLDomain.id).where(NVLDomain.name == name))
    if found is None:  # pragma: no cover - the row was just ensured
        raise MirrorError(f"NVL domain {name} could not be created")
    await session.execute(
        update(NVLDomain)
        .where(NVLDomain.id == found, NVLDomain.deleted_at.is_not(None))
        .values(deleted_at=None)
    )
    return found


async def _rack_names(session: AsyncSession, ids: Iterable[uuid.UUID | None]) -> dict[Any, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(select(Rack.id, Rack.name).where(Rack.id.in_(wanted)))
    return dict(rows.all())


def _holder(names: Mapping[Any, str], rack_id: uuid.UUID | None) -> str:
    return f"rack {names[rack_id]}" if rack_id in names else "a component in no rack"


async def _check_rack_identity(session: AsyncSession, src: _Source, rack_id: uuid.UUID) -> None:
    ident = src.spec.identity
    other = await session.scalar(
        select(Rack).where(
            Rack.manufacturer == ident.manufacturer,
            Rack.serial_number == ident.serial_number,
            Rack.id != rack_id,
        )
    )
    if other is not None:
        if other.deleted_at is not None:
            await _purge(session, other.id)  # a tombstone gives its identity up
        else:
            raise MirrorConflict(
                f"rack {src.name}: serial number {ident.manufacturer} {ident.serial_number} "
                f"already belongs to rack {other.name}",
                other.name,
            )
    if src.spec.core_id:
        other = await session.scalar(
            select(Rack).where(Rack.external_id == src.spec.core_id, Rack.id != rack_id)
        )
        if other is not None:
            if other.deleted_at is not None:
                await _purge(session, other.id)
            else:
                raise MirrorConflict(
                    f"rack {src.name}: core id {src.spec.core_id} already belongs to rack "
                    f"{other.name}",
                    other.name,
                )


async def _check_components(
    session: AsyncSession, src: _Source, rack_id: uuid.UUID, wanted: list[_Wanted]
) -> list[Component]:
    """Components elsewhere holding a key this rack wants: conflicts, or rows to adopt.

    Returns unassigned or tombstoned components with one of our keys: they become ours."""
    if not wanted:
        return []
    keys = [w.key for w in wanted]
    holders = (
        await session.scalars(
            select(Component).where(
                tuple_(Component.manufacturer, Component.serial_number).in_(keys),
                Component.rack_id.is_distinct_from(rack_id),
            )
        )
    ).all()
    core_keys = [w.core_key for w in wanted if w.core_key]
    core_holders = []
    if core_keys:
        core_holders = list(
            (
                await session.scalars(
                    select(Component).where(
                        tuple_(Component.type, Component.external_id).in_(core_keys),
                        Component.rack_id.is_distinct_from(rack_id),
                    )
                )
            ).all()
        )
    names = await _rack_names(session, [c.rack_id for c in [*holders, *core_holders]])
    by_key = {w.key: w for w in wanted}
    adopt: list[Component] = []
    for comp in holders:
        w = by_key[(comp.manufacturer, comp.serial_number)]
        if comp.rack_id is None or comp.deleted_at is not None:
            adopt.append(comp)
            continue
        other = names.get(comp.rack_id)
        raise MirrorConflict(
            f"rack {src.name}: component {w.spec.name} has serial number "
            f"{comp.manufacturer} {comp.serial_number}, which already belongs to "
            f"{_holder(names, comp.rack_id)} (component {comp.name})",
            other,
        )
    adopted = {c.id for c in adopt}
    by_core = {w.core_key: w for w in wanted if w.core_key}
    for comp in core_holders:
        if comp.id in adopted:
            continue
        if comp.deleted_at is not None:
            comp.external_id = None  # a tombstone gives its Core id up
            continue
        w = by_core[(comp.type, comp.external_id or "")]
        raise MirrorConflict(
            f"rack {src.name}: component {w.spec.name} has {comp.type.value} core id "
            f"{comp.external_id}, which already belongs to {_holder(names, comp.rack_id)} "
            f"(component {comp.name})",
            names.get(comp.rack_id),
        )
    return adopt


async def _check_bmcs(
    session: AsyncSession, src: _Source, ours: set[uuid.UUID], wanted: list[_Wanted]
) -> None:
    macs = {b.mac: w.spec.name for w in wanted for b in w.bmcs}
    if not macs:
        return
    rows = (
        await session.execute(
            select(
                BMC.mac_address,
                Component.id,
                Component.name,
                Component.rack_id,
                Component.deleted_at,
            )
            .join(Component, BMC.component_id == Component.id)
            .where(BMC.mac_address.in_(list(macs)))
        )
    ).all()
    for mac, comp_id, comp_name, comp_rack, deleted in rows:
        if comp_id in ours:
            continue
        if deleted is not None:  # a deleted component gives its BMC up
            await session.execute(delete(BMC).where(BMC.mac_address == mac))
            continue
        names = await _rack_names(session, [comp_rack])
        raise MirrorConflict(
            f"rack {src.name}: component {macs[mac]} has BMC MAC {mac}, which already belongs "
            f"to {_holder(names, comp_rack)} (component {comp_name})",
            names.get(comp_rack),
        )


def _component_values(w: _Wanted, rack_id: uuid.UUID, ordinal: int) -> dict[str, Any]:
    spec = w.spec
    pos = spec.position
    return {
        "rack_id": rack_id,
        "name": spec.name,
        "display_name": spec.display_name,
        "ordinal": ordinal,
        "type": spec.type,
        "model": spec.model,
        "firmware_version": spec.firmware_version,
        "slot_id": pos.slot_id if pos else None,
        "tray_index": pos.tray_index if pos else None,
        "host_id": pos.host_id if pos else None,
        "external_id": spec.core_id,
        "deleted_at": None,
    }


def _rack_values(src: _Source, nvl_domain_id: uuid.UUID | None) -> dict[str, Any]:
    ident, loc = src.spec.identity, src.spec.location
    return {
        "display_name": ident.display_name,
        "manufacturer": ident.manufacturer,
        "serial_number": ident.serial_number,
        "model": ident.model,
        "description": ident.description,
        "region": loc.region if loc else None,
        "datacenter": loc.datacenter if loc else None,
        "room": loc.room if loc else None,
        "position": loc.position if loc else None,
        "nvl_domain_id": nvl_domain_id,
        "external_id": src.spec.core_id,
        "labels": src.labels,
        "source_uid": src.uid,
        "source_generation": src.generation,
        "source_resource_version": src.resource_version,
        "deleted_at": None,
    }


def _seen_generation(row: Rack | None, src: _Source) -> int | None:
    """The generation of this very Rack object the row already reflects, if any.

    A different UID is a re-created object whose generation restarted at 1."""
    if row is None or row.deleted_at is not None or src.uid is None or row.source_uid != src.uid:
        return None
    return row.source_generation


async def upsert_rack(session: AsyncSession, body: Mapping[str, Any]) -> MirrorResult:
    """Insert or update the rack, its components and BMCs from a Rack object.

    Raises MirrorError for a spec that cannot be stored, MirrorConflict (a
    MirrorError) when another rack holds one of its identities."""
    src = _source(body)
    wanted = _wanted_components(src)
    await _lock_rack_name(session, src.name)
    row = await session.scalar(select(Rack).where(Rack.name == src.name).with_for_update())

    seen = _seen_generation(row, src)
    if row is not None and seen is not None and src.generation is not None:
        if src.generation < seen:
            return MirrorResult(row.id, MirrorAction.STALE)
        if src.generation == seen:
            if row.labels == src.labels:
                return MirrorResult(row.id, MirrorAction.UNCHANGED)
            row.labels = src.labels
            row.source_resource_version = src.resource_version
            await _flush(session, src)
            return MirrorResult(row.id, MirrorAction.LABELS)

    rack_id = row.id if row is not None else uuid.uuid4()
    await _check_rack_identity(session, src, rack_id)
    adopt = await _check_components(session, src, rack_id, wanted)
    existing = list(
        (await session.scalars(select(Component).where(Component.rack_id == rack_id))).all()
    )
    current = {(c.manufacturer, c.serial_number): c for c in [*existing, *adopt]}
    await _check_bmcs(session, src, {c.id for c in current.values()}, wanted)

    values = _rack_values(src, await _nvl_domain_id(session, src.spec.nvl_domain))
    created = row is None
    if row is None:
        row = Rack(id=rack_id, name=src.name, **values)
        session.add(row)
    else:
        _assign(row, values)
    # The rack row first: components reference it.
    await _flush(session, src)

    secret = _secret_ref(src.spec)
    wanted_keys = {w.key for w in wanted}
    comps_deleted = bmcs_deleted = 0

    # Phase 1, removals, flushed before anything is added: a MAC or Core id freed
    # here may be taken by another component of this rack below. A component
    # taken out of the spec is soft-deleted, as the original did: it leaves the
    # rack and gives up its BMCs and Core id, and PurgeComponent removes it.
    now = datetime.now(UTC)
    for key, comp in list(current.items()):
        if key not in wanted_keys:
            bmcs_deleted += len(comp.bmcs)
            comp.bmcs.clear()  # delete-orphan removes the rows
            comp.external_id = None
            comp.rack_id = None
            if comp.deleted_at is None:
                comp.deleted_at = now
            del current[key]
            comps_deleted += 1
    by_key = {w.key: w for w in wanted}
    for key, comp in current.items():
        keep = {b.mac for b in by_key[key].bmcs}
        for bmc in list(comp.bmcs):
            if bmc.mac_address not in keep:
                comp.bmcs.remove(bmc)  # delete-orphan removes the row
                bmcs_deleted += 1
        new_core = by_key[key].spec.core_id
        if comp.external_id is not None and comp.external_id != new_core:
            comp.external_id = None  # cleared first, so two components can swap Core ids
    await _flush(session, src)

    # Phase 2: updates and inserts.
    comps_created = comps_updated = bmcs_created = bmcs_updated = 0
    for ordinal, w in enumerate(wanted):
        vals = _component_values(w, rack_id, ordinal)
        found = current.get(w.key)
        if found is None:
            comp = Component(id=uuid.uuid4(), manufacturer=w.key[0], serial_number=w.key[1])
            for attr, value in vals.items():
                setattr(comp, attr, value)
            comp.bmcs = []
            session.add(comp)
            comps_created += 1
        else:
            comp = found
            if _assign(comp, vals):
                comps_updated += 1
        have = {b.mac_address: b for b in comp.bmcs}
        for b in w.bmcs:
            bvals = {"type": b.type, "ip_address": b.ip, "credentials_secret_ref": secret}
            old_bmc = have.get(b.mac)
            if old_bmc is None:
                comp.bmcs.append(BMC(mac_address=b.mac, **bvals))
                bmcs_created += 1
            elif _assign(old_bmc, bvals):
                bmcs_updated += 1
    await _flush(session, src)
    return MirrorResult(
        rack_id,
        MirrorAction.CREATED if created else MirrorAction.UPDATED,
        components_created=comps_created,
        components_updated=comps_updated,
        components_deleted=comps_deleted,
        bmcs_created=bmcs_created,
        bmcs_updated=bmcs_updated,
        bmcs_deleted=bmcs_deleted,
    )


async def _flush(session: AsyncSession, src: _Source) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        # A writer the checks above could not see (another rack mirrored at the same time).
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
        raise MirrorConflict(
            f"rack {src.name}: the inventory refused the change "
            f"({constraint or 'unique constraint'}): another rack claimed the same identity "
            "concurrently; retry"
        ) from exc


async def _purge(session: AsyncSession, rack_id: uuid.UUID) -> None:
    # Components first: their foreign key to the rack only sets NULL on delete.
    # BMCs and drift rows go with their components (ON DELETE CASCADE).
    await session.execute(delete(Component).where(Component.rack_id == rack_id))
    await session.execute(delete(Rack).where(Rack.id == rack_id))


async def soft_delete_rack(session: AsyncSession, name: str) -> bool:
    """Mark the rack and its components deleted (the original's DeleteRack): reads
    no longer return them, their rows stay until PurgeRack. False when unknown
    or already deleted."""
    await _lock_rack_name(session, name)
    row = await session.scalar(select(Rack).where(Rack.name == name).with_for_update())
    if row is None or row.deleted_at is not None:
        return False
    now = datetime.now(UTC)
    row.deleted_at = now
    await session.execute(
        update(Component)
        .where(Component.rack_id == row.id, Component.deleted_at.is_(None))
        .values(deleted_at=now)
    )
    await session.flush()
    return True


async def delete_rack(session: AsyncSession, name: str) -> bool:
    """Remove the rack, its components and their BMCs for good; False when unknown."""
    await _lock_rack_name(session, name)
    rack_id = await session.scalar(select(Rack.id).where(Rack.name == name))
    if rack_id is None:
        return False
    await _purge(session, rack_id)
    return True


# --- summary for Rack.status ---------------------------------------------------------------


@dataclass(frozen=True)
class FirmwareVersions:
    """Components per firmware version for one component type."""

    expected: dict[str, int] = field(default_factory=dict)
    actual: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RackSummary:
    """What Rack.status shows, as counted from the inventory."""

    name: str
    source_generation: int | None
    counts: dict[ComponentType, int]
    power_on: int
    power_off: int
    power_unknown: int  # includes components Core reports as disabled
    power_observed_at: datetime | None
    firmware: dict[ComponentType, FirmwareVersions]
    drift_missing: int
    drift_unexpected: int
    drift_mismatch: int
    drift_checked_at: datetime | None
    leaks_detected: int
    leaking_components: tuple[str, ...]
    leak_observed: int  # components whose leak status is known (detected or not)
    leak_since: datetime | None = None  # start of the earliest leak under way

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def actual_version(actual_firmware: Mapping[str, Any] | None) -> str | None:
    """One comparable version string from Core's per-part firmware report.

    A "version" entry wins; a single part stands for itself; several parts are
    listed as part=version, sorted, so equal reports give equal strings."""
    if not actual_firmware:
        return None
    if "version" in actual_firmware:
        return str(actual_firmware["version"])
    if len(actual_firmware) == 1:
        return str(next(iter(actual_firmware.values())))
    return ",".join(f"{k}={v}" for k, v in sorted(actual_firmware.items()))


async def rack_summary(session: AsyncSession, name: str) -> RackSummary | None:
    """Counts over the rack's components (two queries); None when the rack is unknown."""
    rack = (
        await session.execute(
            select(Rack.id, Rack.source_generation).where(
                Rack.name == name, Rack.deleted_at.is_(None)
            )
        )
    ).first()
    if rack is None:
        return None
    rack_id, generation = rack
    rows = (
        await session.execute(
            select(
                Component.name,
                Component.type,
                Component.power_state,
                Component.firmware_version,
                Component.actual_firmware,
                Component.leak_status,
                Component.observed_at,
                Component.leak_since,
            ).where(Component.rack_id == rack_id, Component.deleted_at.is_(None))
        )
    ).all()
    counts: Counter[ComponentType] = Counter()
    power: Counter[PowerState] = Counter()
    expected: dict[ComponentType, Counter[str]] = {}
    actual: dict[ComponentType, Counter[str]] = {}
    leaking: list[str] = []
    leak_known = 0
    observed: datetime | None = None
    leak_start: datetime | None = None
    for cname, ctype, pstate, fw, actual_fw, leak, seen, since in rows:
        counts[ctype] += 1
        power[pstate] += 1
        if fw:
            expected.setdefault(ctype, Counter())[fw] += 1
        version = actual_version(actual_fw)
        if version:
            actual.setdefault(ctype, Counter())[version] += 1
        if leak is LeakStatus.DETECTED:
            leaking.append(cname)
            if since is not None and (leak_start is None or since < leak_start):
                leak_start = since
        if leak is not LeakStatus.UNKNOWN:
            leak_known += 1
        if seen is not None and (observed is None or seen > observed):
            observed = seen

    # Rows of the rack's components follow the component (a component moved to
    # another rack takes its drift along at once); rows of components nobody
    # expects belong to the rack the sync placed them in.
    of_components = (
        select(ComponentDrift.drift_type, func.count(), func.max(ComponentDrift.checked_at))
        .join(Component, ComponentDrift.component_id == Component.id)
        .where(Component.rack_id == rack_id)
        .group_by(ComponentDrift.drift_type)
    )
    placed = (
        select(ComponentDrift.drift_type, func.count(), func.max(ComponentDrift.checked_at))
        .where(ComponentDrift.rack_id == rack_id, ComponentDrift.component_id.is_(None))
        .group_by(ComponentDrift.drift_type)
    )
    drift: Counter[DriftType] = Counter()
    checked: datetime | None = None
    for stmt in (of_components, placed):
        for dtype, n, last in (await session.execute(stmt)).all():
            drift[dtype] += n
            if last is not None and (checked is None or last > checked):
                checked = last

    order = list(ComponentType)
    types = sorted(set(expected) | set(actual), key=order.index)
    return RackSummary(
        name=name,
        source_generation=generation,
        counts={t: counts[t] for t in order if counts[t]},
        power_on=power[PowerState.ON],
        power_off=power[PowerState.OFF],
        power_unknown=power[PowerState.UNKNOWN] + power[PowerState.DISABLED],
        power_observed_at=observed,
        firmware={
            t: FirmwareVersions(
                expected=dict(sorted(expected.get(t, Counter()).items())),
                actual=dict(sorted(actual.get(t, Counter()).items())),
            )
            for t in types
        },
        drift_missing=drift.get(DriftType.MISSING, 0),
        drift_unexpected=drift.get(DriftType.UNEXPECTED, 0),
        drift_mismatch=drift.get(DriftType.MISMATCH, 0),
        drift_checked_at=checked,
        leaks_detected=len(leaking),
        leaking_components=tuple(sorted(leaking)),
        leak_observed=leak_known,
        leak_since=leak_start,
    )
