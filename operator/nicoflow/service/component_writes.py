"""Inventory write RPCs on components: AddComponent, PatchComponent, DeleteComponent,
PurgeComponent, and PatchRack.

Kubernetes stays the source of truth for the components of a rack: these
edit the Rack object's `spec.components` and mirror it to PostgreSQL in the
same call (see rack_edits). A component in no rack exists only in
PostgreSQL, and is written there directly.

Deleting is soft, as in the original: the row is marked deleted and leaves
its rack (the mirror owns every row of a rack and would otherwise remove
it), until PurgeComponent removes it. An identity (id, serial number, Core
id, BMC MAC) held by a deleted component is given up to a new claimant."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.api.rack import MAX_BMCS
from nicoflow.domain.types import BMCType, ComponentType
from nicoflow.inventory.models import BMC, Component, Rack
from nicoflow.service.backend import Backend
from nicoflow.service.component_spec import (
    ComponentPatch,
    Key,
    NewComponent,
    component_patch,
    entry_from_row,
    free_name,
    new_component,
    patched_entry,
    set_names,
)
from nicoflow.service.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from nicoflow.service.inventory_views import component_message
from nicoflow.service.lookups import rack_names
from nicoflow.service.rack_edits import RackTxn, rack_maker, rack_transaction, with_retries
from nicoflow.service.rack_patch import KnownRow, no_existing_rack, plan_rack_patch
from nicoflow.service.validation import parse_uuid, parse_uuid_text

# --- shared ---------------------------------------------------------------------------------


async def _message(session: AsyncSession, cid: uuid.UUID) -> pb.Component:
    row = await session.scalar(
        select(Component).where(Component.id == cid).execution_options(populate_existing=True)
    )
    assert row is not None  # written in this transaction
    return component_message(row)


async def _live_component(session: AsyncSession, cid: uuid.UUID) -> Component:
    row = await session.scalar(select(Component).where(Component.id == cid).with_for_update())
    if row is None:
        raise NotFound(f"component {cid} not found")
    if row.deleted_at is not None:
        raise NotFound(
            f"component {cid} ({row.name or row.serial_number}) was deleted; PurgeComponent "
            "removes it for good"
        )
    return row


async def _live_rack(session: AsyncSession, rid: uuid.UUID, field: str) -> Rack:
    rack = await session.get(Rack, rid)
    if rack is None or rack.deleted_at is not None:
        raise NotFound(f"{field} {rid}: no such rack (or it was deleted)")
    return rack


async def _claim(
    session: AsyncSession,
    *,
    owner: uuid.UUID | None,
    cid: uuid.UUID | None = None,
    key: Key | None = None,
    core: tuple[ComponentType, str] | None = None,
    macs: tuple[str, ...] = (),
) -> None:
    """Refuse identities live components other than `owner` hold; deleted ones give them up."""
    terms = []
    if cid is not None:
        terms.append(Component.id == cid)
    if key is not None:
        terms.append((Component.manufacturer == key[0]) & (Component.serial_number == key[1]))
    if core is not None:
        terms.append((Component.type == core[0]) & (Component.external_id == core[1]))
    holders = (
        list((await session.scalars(select(Component).where(or_(*terms)))).all()) if terms else []
    )
    bmcs: list[BMC] = []
    if macs:
        bmcs = list((await session.scalars(select(BMC).where(BMC.mac_address.in_(macs)))).all())
        holder_ids = {b.component_id for b in bmcs} - {h.id for h in holders}
        if holder_ids:
            holders += (
                await session.scalars(select(Component).where(Component.id.in_(holder_ids)))
            ).all()
    names = await rack_names(session, [h.rack_id for h in holders if h.rack_id is not None])
    for other in holders:
        if other.id == owner:
            continue
        where = f"rack {names[other.rack_id]!r}" if other.rack_id in names else "no rack"
        label = f"component {other.id} ({other.name or other.serial_number}, in {where})"
        if other.deleted_at is not None:
            if other.id == cid or (other.manufacturer, other.serial_number) == key:
                await session.delete(other)  # its BMCs go with it
                continue
            if core is not None and (other.type, other.external_id) == core:
                other.external_id = None
            for bmc in bmcs:
                if bmc.component_id == other.id:
                    await session.delete(bmc)
            continue
        if other.id == cid:
            raise AlreadyExists(f"id {cid} is already used by {label}")
        if (other.manufacturer, other.serial_number) == key:
            raise AlreadyExists(
                f"manufacturer {key[0]!r} and serial number {key[1]!r} already belong to {label}"
                + (
                    "; PatchComponent with rack_id moves it into a rack"
                    if where == "no rack"
                    else ""
                )
            )
        if core is not None and (other.type, other.external_id) == core:
            raise AlreadyExists(f"{core[0].value} core id {core[1]!r} already belongs to {label}")
        mac = next(b.mac_address for b in bmcs if b.component_id == other.id)
        raise AlreadyExists(f"BMC MAC {mac} already belongs to {label}")
    await _flush(session)


async def _flush(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(
            "another request claimed the same id, serial number, core id or MAC at the same "
            "moment; read the component back or retry"
        ) from exc


def _fill_row(row: Component, entry: dict[str, Any]) -> None:
    """Row fields from a spec entry (what the mirror would write for a rack's component)."""
    pos = entry.get("position") or {}
    row.name = entry["name"]
    row.display_name = entry.get("displayName")
    row.type = ComponentType(entry["type"])
    row.model = entry.get("model")
    row.firmware_version = entry.get("firmwareVersion")
    row.slot_id, row.tray_index, row.host_id = (
        pos.get("slotId"),
        pos.get("trayIndex"),
        pos.get("hostId"),
    )
    row.external_id = entry.get("coreId")


def _upsert_row_bmcs(row: Component, bmcs: tuple[dict[str, Any], ...]) -> None:
    have = {b.mac_address: b for b in row.bmcs}
    for b in bmcs:
        old = have.get(b["macAddress"])
        if old is None:
            row.bmcs.append(
                BMC(
                    mac_address=b["macAddress"],
                    type=BMCType(b["type"]),
                    ip_address=b.get("ipAddress"),
                )
            )
            continue
        old.type = BMCType(b["type"])
        if b.get("ipAddress"):
            old.ip_address = b["ipAddress"]
    if len(row.bmcs) > MAX_BMCS:
        raise InvalidArgument(
            f"the component would have {len(row.bmcs)} BMCs; at most {MAX_BMCS} (BMCs are "
            "never removed by PatchComponent)"
        )


def _seed(new: NewComponent, rack_id: uuid.UUID | None) -> Component:
    return Component(
        id=new.id,
        rack_id=rack_id,
        name=new.entry["name"],
        display_name=new.entry.get("displayName"),
        type=new.type,
        manufacturer=new.key[0],
        serial_number=new.key[1],
        description=new.description or {},
        bmcs=[],
    )


def _identity(new: NewComponent) -> dict[str, Any]:
    core = new.entry.get("coreId")
    return {
        "cid": new.id,
        "key": new.key,
        "core": (new.type, core) if core else None,
        "macs": tuple(b["macAddress"] for b in new.entry.get("bmcs") or []),
    }


# --- AddComponent -----------------------------------------------------------------------------


async def add_component(backend: Backend, request: pb.AddComponentRequest) -> pb.Component:
    if not request.HasField("component"):
        raise InvalidArgument("component is required: give at least its type and serial number")
    comp = request.component
    rack_id = (
        parse_uuid_text(comp.rack_id.id, "component.rack_id")
        if comp.HasField("rack_id") and comp.rack_id.id
        else None
    )
    if rack_id is None:
        new = new_component(comp, None, (), "component")
        if not comp.info.name:
            new.entry["name"] = ""  # a name is only generated inside a rack
        async with backend.sessions() as session, session.begin():
            await _claim(session, owner=None, **_identity(new))
            row = _seed(new, None)
            _fill_row(row, new.entry)
            session.add(row)
            _upsert_row_bmcs(row, tuple(new.entry.get("bmcs") or ()))
            await _flush(session)
            return await _message(session, new.id)

    async def once() -> pb.Component:
        async with rack_transaction(backend) as txn:
            rack = await _live_rack(txn.session, rack_id, "component.rack_id")
            await txn.lock([rack.name])
            edit = await txn.read(rack.name)
            new = new_component(comp, rack_maker(edit.spec), edit.names(), "component")
            if edit.find(new.key) is not None:
                raise AlreadyExists(
                    f"rack {rack.name!r} already has a component with manufacturer "
                    f"{new.key[0]!r} and serial number {new.key[1]!r}"
                )
            await _claim(txn.session, owner=None, **_identity(new))
            txn.session.add(_seed(new, rack.id))
            await _flush(txn.session)
            edit.components.append(new.entry)
            await txn.write([edit])
            return await _message(txn.session, new.id)

    return await with_retries(once)


# --- PatchComponent ---------------------------------------------------------------------------


async def _patch_in_racks(txn: RackTxn, row: Component, patch: ComponentPatch) -> None:
    """Edit the component's entry in its rack, or move it from its rack (or none) to another."""
    session = txn.session
    source = (
        await _live_rack(session, row.rack_id, "the component's rack")
        if row.rack_id is not None
        else None
    )
    target = (
        await _live_rack(session, patch.rack_id, "rack_id")
        if patch.rack_id is not None and patch.rack_id != row.rack_id
        else None
    )
    await txn.lock([r.name for r in (source, target) if r is not None])
    key = (row.manufacturer, row.serial_number)
    edits = []
    entry = None
    if source is not None:
        src = await txn.read(source.name)
        index = src.find(key)
        if index is None:
            raise FailedPrecondition(
                f"component {row.id} is listed under rack {source.name!r} in the inventory but "
                "not in that Rack object's spec; retry once the operator has mirrored the rack"
            )
        entry = patched_entry(src.components[index], patch)
        if target is None:
            src.components[index] = entry
        else:
            del src.components[index]
        edits.append(src)
    if target is not None:
        dst = await txn.read(target.name)
        entry = entry or patched_entry(entry_from_row(row, row.name), patch)
        taken = dst.names()
        shown = entry.get("displayName") or entry["name"]
        if shown:
            set_names(entry, shown, row.serial_number, taken)
        else:
            entry["name"] = free_name(row.type, taken)  # PatchComponent cannot name it
        if row.manufacturer != rack_maker(dst.spec):
            entry["manufacturer"] = row.manufacturer
        dst.components.append(entry)
        row.rack_id = target.id
        await _flush(session)
        edits.insert(0, dst)  # added to the target before it leaves the source
    await txn.write(edits)


async def patch_component(backend: Backend, request: pb.PatchComponentRequest) -> pb.Component:
    patch = component_patch(request)

    async def once() -> pb.Component:
        async with rack_transaction(backend) as txn:
            session = txn.session
            row = await _live_component(session, patch.id)
            if patch.bmcs:
                await _claim(session, owner=row.id, macs=tuple(b["macAddress"] for b in patch.bmcs))
            if patch.description is not None:
                row.description = patch.description
            if row.rack_id is None and patch.rack_id is None:
                _fill_row(row, patched_entry(entry_from_row(row, row.name), patch))
                _upsert_row_bmcs(row, patch.bmcs)
                await _flush(session)
            else:
                await _patch_in_racks(txn, row, patch)
            return await _message(session, row.id)

    return await with_retries(once)


# --- DeleteComponent / PurgeComponent ---------------------------------------------------------


async def delete_component(backend: Backend, request: pb.DeleteComponentRequest) -> None:
    cid = parse_uuid(request.id if request.HasField("id") else None, "id")

    async def once() -> None:
        async with rack_transaction(backend) as txn:
            session = txn.session
            row = await session.get(Component, cid)
            if row is None:
                raise NotFound(f"component {cid} not found")
            if row.deleted_at is not None:
                raise NotFound(
                    f"component {cid} is already deleted; PurgeComponent removes it for good"
                )
            rack = await session.get(Rack, row.rack_id) if row.rack_id is not None else None
            edit = None
            if rack is not None and rack.deleted_at is None:
                await txn.lock([rack.name])
                edit = await txn.read(rack.name)
                index = edit.find((row.manufacturer, row.serial_number))
                if index is not None:
                    del edit.components[index]
            row.rack_id = None
            row.deleted_at = datetime.now(UTC)
            await _flush(session)
            if edit is not None:
                await txn.write([edit])

    await with_retries(once)


async def purge_component(backend: Backend, request: pb.PurgeComponentRequest) -> None:
    cid = parse_uuid(request.id if request.HasField("id") else None, "id")
    async with backend.sessions() as session, session.begin():
        row = await session.get(Component, cid)
        if row is None:
            raise NotFound(f"component {cid} not found (it may already have been purged)")
        if row.deleted_at is None:
            raise FailedPrecondition(
                f"component {cid} ({row.name or row.serial_number}) is not deleted; call "
                "DeleteComponent first, then PurgeComponent"
            )
        await session.delete(row)  # BMCs and drift rows go with it (ON DELETE CASCADE)


# --- PatchRack --------------------------------------------------------------------------------


async def _find_rack(session: AsyncSession, info: pb.DeviceInfo) -> Rack | None:
    if info.HasField("id") and info.id.id:
        rid = parse_uuid_text(info.id.id, "rack.info.id")
        where = Rack.id == rid
    else:
        where = (Rack.manufacturer == info.manufacturer) & (
            Rack.serial_number == info.serial_number
        )
    return await session.scalar(select(Rack).where(where, Rack.deleted_at.is_(None)))


async def patch_rack(backend: Backend, request: pb.PatchRackRequest) -> str:
    """The JSON report of what the merge did."""
    if not request.HasField("rack") or not request.rack.HasField("info"):
        raise InvalidArgument(
            "rack.info is required: give the rack's id, or its manufacturer and serial number"
        )
    msg = request.rack
    info = msg.info
    if not (info.HasField("id") and info.id.id) and not (info.manufacturer and info.serial_number):
        raise InvalidArgument(
            "rack.info names no rack: give rack.info.id, or rack.info.manufacturer and "
            "rack.info.serial_number"
        )

    async def once() -> str:
        async with rack_transaction(backend) as txn:
            session = txn.session
            rack = await _find_rack(session, info)
            if rack is None:
                return json.dumps(no_existing_rack(msg))
            await txn.lock([rack.name])
            edit = await txn.read(rack.name)
            rows = {
                (c.manufacturer, c.serial_number): c
                for c in (
                    await session.scalars(
                        select(Component).where(
                            Component.rack_id == rack.id, Component.deleted_at.is_(None)
                        )
                    )
                ).all()
            }
            serials = [c.info.serial_number for c in msg.components if c.info.serial_number]
            spare = {
                (c.manufacturer, c.serial_number): c
                for c in (
                    await session.scalars(
                        select(Component).where(
                            Component.serial_number.in_(serials),
                            Component.rack_id.is_(None),
                            Component.deleted_at.is_(None),
                        )
                    )
                ).all()
            }
            plan = plan_rack_patch(
                msg,
                edit.obj,
                rack.id,
                {k: KnownRow(c.id, c.description) for k, c in rows.items()},
                {k: KnownRow(c.id, c.description) for k, c in spare.items()},
            )
            by_id = {c.id: c for c in [*rows.values(), *spare.values()]}
            for new in plan.added:
                if new.key in spare:
                    spare[new.key].rack_id = rack.id  # adopted, keeping its id
                    continue
                await _claim(session, owner=None, **_identity(new))
                session.add(_seed(new, rack.id))
            for cid, key in plan.rekeyed.items():
                await _claim(session, owner=cid, key=key)
                by_id[cid].manufacturer, by_id[cid].serial_number = key
            await _flush(session)
            for cid, description in plan.descriptions.items():
                row = by_id.get(cid) or await session.get(Component, cid)
                if row is not None:
                    row.description = description
            edit.spec = plan.spec
            await txn.write([edit])
            return json.dumps(plan.report)

    return await with_retries(once)
