"""NVL domain write RPCs: create a domain, attach racks to it, detach them.

A domain is a row of `nvl_domain` (name unique). A rack's membership is its
Rack object's spec.nvlDomain (the domain's name) and the row's nvl_domain_id:
both are written in the same call, the object first and then its mirror, so a
read right after sees it. spec.nvlDomain is a DNS label: a client's name that
is not one ("NVL Wire 3") gets a derived name and is kept as the display name
(`nicoflow.domain.names`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain import names
from nicoflow.inventory import mirror
from nicoflow.inventory.models import NVLDomain, Rack
from nicoflow.kube.client import Invalid
from nicoflow.kube.client import NotFound as KubeNotFound
from nicoflow.kube.resources import RACKS
from nicoflow.kube.retry import retrying
from nicoflow.service.backend import Backend
from nicoflow.service.errors import AlreadyExists, InvalidArgument, NotFound
from nicoflow.service.validation import Identifier, identifier, parse_uuid


async def create_domain(backend: Backend, request: pb.CreateNVLDomainRequest) -> uuid.UUID:
    ident = request.nvl_domain.identifier
    shown = ident.name
    if not shown:
        raise InvalidArgument("nvl_domain.identifier.name is required")
    problem = names.problem(shown, "nvl_domain.identifier.name")
    if problem is not None:
        raise InvalidArgument(problem)
    name = names.object_name(shown)
    did = (
        parse_uuid(ident.id, "nvl_domain.identifier.id")
        if ident.HasField("id") and ident.id.id
        else uuid.uuid4()
    )
    async with backend.sessions() as session, session.begin():
        old = await session.scalar(select(NVLDomain).where(NVLDomain.name == name))
        if old is not None and old.deleted_at is None:
            raise AlreadyExists(f"an NVL domain named {shown!r} already exists (id {old.id})")
        if old is not None:
            await session.delete(old)  # a tombstone gives its name up
            await session.flush()
        session.add(NVLDomain(id=did, name=name, display_name=names.display_name(shown, name)))
        try:
            await session.flush()
        except IntegrityError:
            raise AlreadyExists(f"NVL domain {shown!r} or id {did} already exists") from None
    return did


async def _domain(backend: Backend, ident: Identifier) -> NVLDomain:
    async with backend.sessions() as session:
        where = (
            NVLDomain.id == ident.id
            if ident.id is not None
            else or_(NVLDomain.display_name == ident.name, NVLDomain.name == ident.name)
        )
        row = await session.scalar(select(NVLDomain).where(where, NVLDomain.deleted_at.is_(None)))
    if row is None:
        raise NotFound(f"NVL domain with {ident.describe()} not found")
    return row


async def _racks(backend: Backend, idents: list[Identifier]) -> list[Rack]:
    out = []
    async with backend.sessions() as session:
        for ident in idents:
            where = (
                Rack.id == ident.id
                if ident.id is not None
                else or_(Rack.display_name == ident.name, Rack.name == ident.name)
            )
            row = await session.scalar(select(Rack).where(where, Rack.deleted_at.is_(None)))
            if row is None:
                raise NotFound(f"rack with {ident.describe()} not found")
            out.append(row)
    return out


async def _set_domain(backend: Backend, rack: str, domain: str | None) -> None:
    patch = {"spec": {"nvlDomain": domain}}
    try:
        obj = await retrying(lambda: backend.kube.patch(RACKS, rack, patch))
    except KubeNotFound:
        raise NotFound(f"rack {rack} has no Rack object in Kubernetes") from None
    except Invalid as exc:
        raise InvalidArgument(
            f"Kubernetes refused the change of rack {rack}: {exc.message}"
        ) from None
    async with backend.sessions() as session, session.begin():
        await mirror.upsert_rack(session, obj)


def _rack_idents(request_idents: Sequence[pb.Identifier], field: str) -> list[Identifier]:
    idents = [identifier(m, f"{field}[{i}]") for i, m in enumerate(request_idents)]
    if not idents:
        raise InvalidArgument(f"{field} is empty; name at least one rack by id or name")
    return idents


async def attach(backend: Backend, request: pb.AttachRacksToNVLDomainRequest) -> None:
    ident = identifier(
        request.nvl_domain_identifier if request.HasField("nvl_domain_identifier") else None,
        "nvl_domain_identifier",
    )
    idents = _rack_idents(request.rack_identifiers, "rack_identifiers")
    domain = await _domain(backend, ident)
    racks = await _racks(backend, idents)
    others = [r for r in racks if r.nvl_domain_id not in (None, domain.id)]
    if others:
        async with backend.sessions() as session:
            names = dict(
                (
                    await session.execute(
                        select(NVLDomain.id, NVLDomain.name).where(
                            NVLDomain.id.in_({r.nvl_domain_id for r in others})
                        )
                    )
                ).all()
            )
        listed = ", ".join(
            f"{r.name} (in {names.get(r.nvl_domain_id, '?') if r.nvl_domain_id else '?'})"
            for r in others
        )
        raise AlreadyExists(f"rack(s) already in another NVL domain: {listed}; detach them first")
    for rack in racks:
        if rack.nvl_domain_id != domain.id:
            await _set_domain(backend, rack.name, domain.name)


async def detach(backend: Backend, request: pb.DetachRacksFromNVLDomainRequest) -> None:
    idents = _rack_idents(request.rack_identifiers, "rack_identifiers")
    for rack in await _racks(backend, idents):
        if rack.nvl_domain_id is not None:
            await _set_domain(backend, rack.name, None)
