"""Find the racks and components a request names, or say which ones do not exist.

Every lookup is one query whatever the number of targets, and every miss
is reported at once, so a caller fixes a request in one round trip."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from nicoflow.domain.types import ComponentType
from nicoflow.inventory.models import Component, Rack
from nicoflow.service.errors import NotFound
from nicoflow.service.validation import ComponentRef, RackRef

_LISTED = 10


def _missing(what: str, items: Sequence[str]) -> NotFound:
    shown = ", ".join(items[:_LISTED]) + (
        f" and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    )
    return NotFound(f"{what} not found: {shown}")


async def racks_for_refs(session: AsyncSession, refs: Sequence[RackRef]) -> dict[int, Rack]:
    """Live (not deleted) rack row per target index."""
    ids = [r.id for r in refs if r.id is not None]
    names = [r.name for r in refs if r.name is not None]
    terms: list[ColumnElement[bool]] = []
    if ids:
        terms.append(Rack.id.in_(ids))
    if names:
        # the client's name, or the object name
        terms.append(or_(Rack.display_name.in_(names), Rack.name.in_(names)))
    rows: list[Rack] = []
    if terms:
        rows = list(
            (
                await session.scalars(select(Rack).where(or_(*terms), Rack.deleted_at.is_(None)))
            ).all()
        )
    by_id = {r.id: r for r in rows}
    by_name = {r.name: r for r in rows} | {r.display_name: r for r in rows if r.display_name}
    out: dict[int, Rack] = {}
    missing: list[str] = []
    for ref in refs:
        row = by_id.get(ref.id) if ref.id is not None else by_name.get(ref.name or "")
        if row is None:
            missing.append(ref.describe())
        else:
            out[ref.index] = row
    if missing:
        raise _missing("racks", missing)
    return out


async def components_for_refs(
    session: AsyncSession, refs: Sequence[ComponentRef]
) -> dict[int, Component]:
    """Live component row per target index (by Flow UUID, or by type and Core id)."""
    ids = [r.id for r in refs if r.id is not None]
    cores = [(r.core_type, r.core_id) for r in refs if r.core_type is not None]
    terms = []
    if ids:
        terms.append(Component.id.in_(ids))
    if cores:
        terms.append(tuple_(Component.type, Component.external_id).in_(cores))
    rows: list[Component] = []
    if terms:
        rows = list(
            (
                await session.scalars(
                    select(Component).where(or_(*terms), Component.deleted_at.is_(None))
                )
            ).all()
        )
    by_id = {c.id: c for c in rows}
    by_core: dict[tuple[ComponentType | None, str | None], Component] = {
        (c.type, c.external_id): c for c in rows if c.external_id
    }
    out: dict[int, Component] = {}
    missing: list[str] = []
    for ref in refs:
        found = (
            by_id.get(ref.id) if ref.id is not None else by_core.get((ref.core_type, ref.core_id))
        )
        if found is None:
            missing.append(ref.describe())
        else:
            out[ref.index] = found
    if missing:
        raise _missing("components", missing)
    return out


async def rack_names(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await session.execute(select(Rack.id, Rack.name).where(Rack.id.in_(set(ids))))
    return dict(rows.tuples().all())
