"""Component and NVL domain read RPCs."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, bindparam, case, false, func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.inventory.models import BMC, Component, NVLDomain, Rack
from nicoflow.service.backend import Backend
from nicoflow.service.errors import NotFound
from nicoflow.service.inventory_views import ComponentRow, component_message, nvl_domain_message
from nicoflow.service.lookups import components_for_refs, racks_for_refs
from nicoflow.service.queryfilters import (
    NVL_DOMAIN_NAME,
    Condition,
    component_filters,
    component_order,
    nvl_domain_filter,
)
from nicoflow.service.racks import rack_messages
from nicoflow.service.validation import (
    Targets,
    identifier,
    page,
    parse_uuid,
    serial_info,
    target_spec,
)


async def _with_rack(
    session: AsyncSession, comp: Component, with_rack: bool
) -> pb.GetComponentInfoResponse:
    out = pb.GetComponentInfoResponse(component=component_message(comp))
    if with_rack and comp.rack_id is not None:
        rack = await session.get(Rack, comp.rack_id)
        if rack is not None and rack.deleted_at is None:
            out.rack.CopyFrom((await rack_messages(session, [rack], False))[0])
    return out


async def get_component_by_id(
    backend: Backend, request: pb.GetComponentInfoByIDRequest
) -> pb.GetComponentInfoResponse:
    cid = parse_uuid(request.id if request.HasField("id") else None, "id")
    async with backend.sessions() as session:
        comp = await session.scalar(
            select(Component).where(Component.id == cid, Component.deleted_at.is_(None))
        )
        if comp is None:
            raise NotFound(f"component {cid} not found")
        return await _with_rack(session, comp, request.with_rack)


# The hottest read of the API (lookups by serial from provisioning tools): one
# statement with the BMCs aggregated in, read as plain rows — no ORM objects.
_BMCS = (
    select(
        func.coalesce(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_object(
                        "type", BMC.type, "mac", BMC.mac_address, "ip", func.host(BMC.ip_address)
                    ),
                    BMC.mac_address,
                )
            ),
            literal_column("'[]'::json"),
        )
    )
    .where(BMC.component_id == Component.id)
    .scalar_subquery()
)
_BY_SERIAL = select(*Component.__table__.c, _BMCS.label("bmc_list")).where(
    Component.manufacturer == bindparam("maker"),
    Component.serial_number == bindparam("serial"),
    Component.deleted_at.is_(None),
)


async def get_component_by_serial(
    backend: Backend, request: pb.GetComponentInfoBySerialRequest
) -> pb.GetComponentInfoResponse:
    maker, serial = serial_info(
        request.serial_info if request.HasField("serial_info") else None, "serial_info"
    )
    async with backend.sessions() as session:
        row = (await session.execute(_BY_SERIAL, {"maker": maker, "serial": serial})).first()
        if row is None:
            raise NotFound(f"no component with manufacturer {maker!r} and serial number {serial!r}")
        comp = ComponentRow.from_row(row._mapping)
        out = pb.GetComponentInfoResponse(component=component_message(comp))
        if request.with_rack and comp.rack_id is not None:
            rack = await session.get(Rack, comp.rack_id)
            if rack is not None and rack.deleted_at is None:
                out.rack.CopyFrom((await rack_messages(session, [rack], False))[0])
        return out


async def _target_condition(
    session: AsyncSession, targets: Targets
) -> tuple[Condition, list[uuid.UUID]]:
    """Components a target spec selects, as one SQL condition, and the racks
    in the order the targets name them (the order answers list them in)."""
    terms: list[Condition] = []
    order: list[uuid.UUID] = []
    if targets.racks:
        rows = await racks_for_refs(session, targets.racks)
        # one term per rack target: several targets on one rack unite their types
        for ref in targets.racks:
            rack = rows[ref.index]
            order.append(rack.id)
            cond = Component.rack_id == rack.id
            if ref.types:
                cond = and_(cond, Component.type.in_(sorted(ref.types)))
            terms.append(cond)
    if targets.components:
        comps = await components_for_refs(session, targets.components)
        terms.append(Component.id.in_({c.id for c in comps.values()}))
        order += [c.rack_id for c in (comps[r.index] for r in targets.components) if c.rack_id]
    return (or_(*terms) if terms else false()), list(dict.fromkeys(order))


def _given_order(racks: list[uuid.UUID]) -> list[Any]:
    """Rack by rack (in target order, else as the racks were created), each
    rack's components as its list gives them: how the original answered."""
    rank = (
        [case({rid: i for i, rid in enumerate(racks)}, value=Component.rack_id, else_=len(racks))]
        if racks
        else []
    )
    return [
        *rank,
        Component.created_at,
        Component.rack_id.nulls_last(),
        Component.ordinal.nulls_last(),
        Component.id,
    ]


async def list_components(
    backend: Backend, request: pb.GetComponentsRequest
) -> tuple[list[pb.Component], int]:
    targets = (
        target_spec(request.target_spec, "target_spec") if request.HasField("target_spec") else None
    )
    conditions = component_filters(request.filters)
    window = page(request.pagination if request.HasField("pagination") else None)
    order = component_order(request.order_by if request.HasField("order_by") else None)
    async with backend.sessions() as session:
        racks: list[uuid.UUID] = []
        if targets is not None:
            condition, racks = await _target_condition(session, targets)
            conditions.append(condition)
        stmt = select(Component).where(Component.deleted_at.is_(None), *conditions)
        total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
        ordering = order if order is not None else _given_order(racks)
        rows = (
            await session.scalars(
                stmt.order_by(*ordering).offset(window.offset).limit(window.limit)
            )
        ).all()
        return [component_message(c) for c in rows], int(total or 0)


async def list_nvl_domains(
    backend: Backend, request: pb.GetListOfNVLDomainsRequest
) -> tuple[list[pb.NVLDomain], int]:
    conditions = nvl_domain_filter(request.info if request.HasField("info") else None)
    window = page(request.pagination if request.HasField("pagination") else None)
    stmt = select(NVLDomain).where(NVLDomain.deleted_at.is_(None), *conditions)
    async with backend.sessions() as session:
        total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = (
            await session.scalars(
                stmt.order_by(NVL_DOMAIN_NAME, NVLDomain.id)
                .offset(window.offset)
                .limit(window.limit)
            )
        ).all()
        return [nvl_domain_message(d) for d in rows], int(total or 0)


async def racks_for_nvl_domain(
    backend: Backend, request: pb.GetRacksForNVLDomainRequest
) -> list[pb.Rack]:
    ident = identifier(
        request.nvl_domain_identifier if request.HasField("nvl_domain_identifier") else None,
        "nvl_domain_identifier",
    )
    async with backend.sessions() as session:
        where = (
            NVLDomain.id == ident.id
            if ident.id is not None
            else or_(NVLDomain.display_name == ident.name, NVLDomain.name == ident.name)
        )
        domain = await session.scalar(
            select(NVLDomain).where(where, NVLDomain.deleted_at.is_(None))
        )
        if domain is None:
            raise NotFound(f"NVL domain with {ident.describe()} not found")
        racks = (
            await session.scalars(
                select(Rack)
                .where(Rack.nvl_domain_id == domain.id, Rack.deleted_at.is_(None))
                .order_by(Rack.name)
            )
        ).all()
        return await rack_messages(session, list(racks), False)
