"""Rack inventory RPCs: create, read, list, delete and purge.

A rack created through the API is written twice in one call: the Rack object
in Kubernetes (the intent) and its rows in PostgreSQL through the same mirror
the operator runs, so a read right after the write sees it. The database
transaction stays open around the object's creation: when Kubernetes refuses
the object nothing is committed, and when the commit fails the object is
removed again. The operator mirroring the new object at the same moment waits
on the mirror's per-rack lock and then finds the rows already current.

Delete is soft, as in the original: the Rack object goes, the rows are marked
deleted (reads no longer return them) until PurgeRack removes them. The
operator, which holds the object's finalizer, marks the rows deleted as well
when the object goes (whoever deleted it), and never removes them: that is
PurgeRack's job."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.inventory import mirror
from nicoflow.inventory.models import Component, Rack
from nicoflow.kube.client import Conflict, Invalid
from nicoflow.kube.client import NotFound as KubeNotFound
from nicoflow.kube.resources import RACKS
from nicoflow.kube.retry import retrying
from nicoflow.service.backend import Backend
from nicoflow.service.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from nicoflow.service.inventory_views import rack_message
from nicoflow.service.queryfilters import rack_filters, rack_order
from nicoflow.service.rack_body import RackRequest, rack_request
from nicoflow.service.validation import Page, page, parse_uuid, serial_info

# --- create ---------------------------------------------------------------------------------


async def _clear_way(session: AsyncSession, req: RackRequest) -> set[tuple[str, str]]:
    """Refuse identities held by live rows; purge tombstones that hold them.

    Returns the component keys already held by unassigned live components,
    which the mirror adopts (they keep their ids)."""
    holders = (
        await session.scalars(
            select(Rack).where(
                (Rack.id == req.rack_id)
                | (Rack.name == req.name)
                | ((Rack.manufacturer == req.manufacturer) & (Rack.serial_number == req.serial))
            )
        )
    ).all()
    for other in holders:
        if other.deleted_at is not None:
            await mirror.delete_rack(session, other.name)  # a tombstone gives its identity up
            continue
        if other.id == req.rack_id:
            raise AlreadyExists(f"rack id {req.rack_id} is already used by rack {other.name!r}")
        if other.name == req.name:
            shown = other.display_name or other.name
            raise AlreadyExists(f"a rack named {shown!r} already exists (id {other.id})")
        raise AlreadyExists(
            f"serial number {req.manufacturer} {req.serial} already belongs to rack "
            f"{other.name!r} (id {other.id})"
        )

    keys = [(c.manufacturer, c.serial) for c in req.components]
    ids = [c.id for c in req.components]
    if not keys:
        return set()
    comps = (
        await session.scalars(
            select(Component).where(
                Component.id.in_(ids)
                | tuple_(Component.manufacturer, Component.serial_number).in_(keys)
            )
        )
    ).all()
    rack_ids = [c.rack_id for c in comps if c.rack_id is not None]
    names = dict(
        (await session.execute(select(Rack.id, Rack.name).where(Rack.id.in_(rack_ids)))).all()
    )
    adopt: set[tuple[str, str]] = set()
    for comp in comps:
        key = (comp.manufacturer, comp.serial_number)
        if comp.deleted_at is not None:
            await session.delete(comp)
            continue
        where = f"rack {names[comp.rack_id]!r}" if comp.rack_id in names else "no rack"
        if comp.id in ids:
            raise AlreadyExists(
                f"component id {comp.id} is already used by component {comp.name!r} in {where}"
            )
        if comp.rack_id is None:
            adopt.add(key)
            continue
        raise AlreadyExists(
            f"component serial number {key[0]} {key[1]} already belongs to component "
            f"{comp.name!r} in {where}"
        )
    await session.flush()
    return adopt


async def _seed_rows(session: AsyncSession, req: RackRequest, adopt: set[tuple[str, str]]) -> None:
    """Insert the rows with the requested ids; the mirror then fills them in."""
    session.add(
        Rack(
            id=req.rack_id,
            name=req.name,
            display_name=req.display_name,
            manufacturer=req.manufacturer,
            serial_number=req.serial,
        )
    )
    await session.flush()
    for c in req.components:
        if (c.manufacturer, c.serial) in adopt:
            continue
        session.add(
            Component(
                id=c.id,
                rack_id=req.rack_id,
                name=c.name,
                display_name=c.display_name,
                type=c.type,
                manufacturer=c.manufacturer,
                serial_number=c.serial,
                description=c.description or {},
            )
        )
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(
            f"rack {req.name!r}: another request claimed the same name, serial number or ids "
            "at the same moment; read the rack back or retry"
        ) from exc


async def _mirror(session: AsyncSession, body: dict[str, object]) -> None:
    try:
        await mirror.upsert_rack(session, body)
    except mirror.MirrorConflict as exc:
        raise AlreadyExists(str(exc)) from None
    except mirror.MirrorError as exc:
        raise InvalidArgument(str(exc)) from None


async def create_rack(backend: Backend, request: pb.CreateExpectedRackRequest) -> uuid.UUID:
    return await create_rack_from(
        backend, rack_request(request.rack if request.HasField("rack") else None)
    )


async def create_rack_from(backend: Backend, req: RackRequest) -> uuid.UUID:
    """Write the Rack object and its rows (ids as `req` gives them)."""
    created = False
    try:
        async with backend.sessions() as session, session.begin():
            adopt = await _clear_way(session, req)
            await _seed_rows(session, req, adopt)
            await _mirror(session, req.body)
            try:
                obj = await retrying(lambda: backend.kube.create(RACKS, req.body))
            except Conflict:
                raise AlreadyExists(
                    f"a Rack object named {req.name!r} (for rack name "
                    f"{req.display_name or req.name!r}) already exists in Kubernetes; "
                    "choose another name or delete that object first"
                ) from None
            except Invalid as exc:
                raise InvalidArgument(f"Kubernetes refused the Rack: {exc.message}") from None
            created = True
            # records the object's uid and generation, so the operator's own
            # mirror of this object finds nothing left to do
            await _mirror(session, obj)
    except BaseException:
        if created:
            with contextlib.suppress(Exception):
                await backend.kube.delete(RACKS, req.name)
        raise
    return req.rack_id


# --- reads ----------------------------------------------------------------------------------


async def _components_of(
    session: AsyncSession, rack_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Component]]:
    out: dict[uuid.UUID, list[Component]] = {rid: [] for rid in rack_ids}
    if not rack_ids:
        return out
    rows = await session.scalars(
        select(Component)
        .where(Component.rack_id.in_(rack_ids), Component.deleted_at.is_(None))
        # in the order the rack lists them, as the original returned them
        .order_by(Component.ordinal.nulls_last(), Component.type, Component.name, Component.id)
    )
    for comp in rows:
        if comp.rack_id is not None:
            out[comp.rack_id].append(comp)
    return out


async def rack_messages(
    session: AsyncSession, racks: Sequence[Rack], with_components: bool
) -> list[pb.Rack]:
    comps = await _components_of(session, [r.id for r in racks]) if with_components else {}
    return [rack_message(r, comps.get(r.id) if with_components else None) for r in racks]


async def get_rack_by_id(backend: Backend, request: pb.GetRackInfoByIDRequest) -> pb.Rack:
    rid = parse_uuid(request.id if request.HasField("id") else None, "id")
    async with backend.sessions() as session:
        row = await session.get(Rack, rid)
        if row is None:
            raise NotFound(f"rack {rid} not found")
        if row.deleted_at is not None:
            raise NotFound(f"rack {rid} ({row.name}) was deleted; PurgeRack removes it for good")
        return (await rack_messages(session, [row], request.with_components))[0]


async def get_rack_by_serial(backend: Backend, request: pb.GetRackInfoBySerialRequest) -> pb.Rack:
    maker, serial = serial_info(
        request.serial_info if request.HasField("serial_info") else None, "serial_info"
    )
    async with backend.sessions() as session:
        row = await session.scalar(
            select(Rack).where(
                Rack.manufacturer == maker,
                Rack.serial_number == serial,
                Rack.deleted_at.is_(None),
            )
        )
        if row is None:
            raise NotFound(f"no rack with manufacturer {maker!r} and serial number {serial!r}")
        return (await rack_messages(session, [row], request.with_components))[0]


async def list_racks(
    backend: Backend, request: pb.GetListOfRacksRequest
) -> tuple[list[pb.Rack], int]:
    conditions = rack_filters(request.filters)
    window: Page = page(request.pagination if request.HasField("pagination") else None)
    order = rack_order(request.order_by if request.HasField("order_by") else None)
    stmt = select(Rack).where(Rack.deleted_at.is_(None), *conditions)
    async with backend.sessions() as session:
        total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = list(
            (
                await session.scalars(
                    stmt.order_by(*order).offset(window.offset).limit(window.limit)
                )
            ).all()
        )
        return await rack_messages(session, rows, request.with_components), int(total or 0)


# --- delete and purge -----------------------------------------------------------------------


async def delete_rack(backend: Backend, request: pb.DeleteRackRequest) -> None:
    rid = parse_uuid(request.id if request.HasField("id") else None, "id")
    async with backend.sessions() as session, session.begin():
        row = await session.scalar(select(Rack).where(Rack.id == rid).with_for_update())
        if row is None:
            raise NotFound(f"rack {rid} not found")
        if row.deleted_at is not None:
            raise NotFound(f"rack {rid} ({row.name}) is already deleted; PurgeRack removes it")
        now = datetime.now(UTC)
        row.deleted_at = now
        await session.execute(
            update(Component)
            .where(Component.rack_id == rid, Component.deleted_at.is_(None))
            .values(deleted_at=now)
        )
        await session.flush()
        with contextlib.suppress(KubeNotFound):
            await backend.kube.delete(RACKS, row.name)


async def purge_rack(backend: Backend, request: pb.PurgeRackRequest) -> None:
    rid = parse_uuid(request.id if request.HasField("id") else None, "id")
    async with backend.sessions() as session, session.begin():
        row = await session.get(Rack, rid)
        if row is None:
            raise NotFound(f"rack {rid} not found (it may already have been purged)")
        if row.deleted_at is None:
            raise FailedPrecondition(
                f"rack {rid} ({row.name}) is not deleted; call DeleteRack first, then PurgeRack"
            )
        await mirror.delete_rack(session, row.name)
