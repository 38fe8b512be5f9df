"""ValidateComponents: the drift the last complete inventory sync recorded.

No live NICo Core call, as in the original: the rows of `component_drift`
are answered as they are. Without a target_spec every row is returned and
filters are ignored; with one, only rows of the targeted components (after
the filters), and match_count = targeted - missing - mismatch. Rows for
components Core knows and Flow does not (UNEXPECTED) belong to no targeted
component, so they only appear without a target_spec.

Unlike the original, `expected` (the Flow component) and `actual` (what the
recorded differences say Core has) are filled in."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.inventory.models import Component, ComponentDrift, DriftType
from nicoflow.service.backend import Backend
from nicoflow.service.components import _target_condition
from nicoflow.service.enums import component_type_number
from nicoflow.service.inventory_views import component_message
from nicoflow.service.queryfilters import component_filters, component_order
from nicoflow.service.validation import page, target_spec

_DIFF_TYPES = {
    DriftType.MISSING: pb.DIFF_TYPE_MISSING,
    DriftType.UNEXPECTED: pb.DIFF_TYPE_UNEXPECTED,
    DriftType.MISMATCH: pb.DIFF_TYPE_MISMATCH,
}
_MISSING_VALUES = {"", "<missing>", "missing", None}


def _actual(row: ComponentDrift, comp: Component | None) -> pb.Component | None:
    if row.drift_type is DriftType.MISSING:
        return None  # Core has nothing to show
    out = pb.Component(type=component_type_number(row.component_type))
    if comp is not None:
        out.CopyFrom(component_message(comp))
    out.component_id = row.external_id or out.component_id
    if row.rack_id is not None and not out.HasField("rack_id"):
        out.rack_id.id = str(row.rack_id)  # where an unexpected component was found
    for d in row.diffs:
        value = d.get("actual_value")
        if value in _MISSING_VALUES:
            continue
        field = str(d.get("field_name") or "")
        text = str(value)
        if field == "firmware_version":
            out.firmware_version = text
        elif field in ("serial_number", "serial"):
            out.info.serial_number = text
        elif field == "manufacturer":
            out.info.manufacturer = text
        elif field == "model":
            out.info.model = text
        elif field == "name":
            out.info.name = text
    return out


def _diff(row: ComponentDrift, comp: Component | None) -> pb.ComponentDiff:
    out = pb.ComponentDiff(
        type=_DIFF_TYPES.get(row.drift_type, pb.DIFF_TYPE_UNKNOWN),
        component_id=row.external_id or "",
        field_diffs=[
            pb.FieldDiff(
                field_name=str(d.get("field_name") or ""),
                expected_value=str(d.get("expected_value") or ""),
                actual_value=str(d.get("actual_value") or ""),
            )
            for d in row.diffs
        ],
    )
    if row.component_id is not None:
        out.id.id = str(row.component_id)
    if comp is not None:
        out.expected.CopyFrom(component_message(comp))
    actual = _actual(row, comp)
    if actual is not None:
        out.actual.CopyFrom(actual)
    return out


async def validate_components(
    backend: Backend, request: pb.ValidateComponentsRequest
) -> pb.ValidateComponentsResponse:
    targeted = request.HasField("target_spec")
    targets = target_spec(request.target_spec, "target_spec") if targeted else None
    conditions = component_filters(request.filters) if targeted else []
    window = page(request.pagination if request.HasField("pagination") else None)
    order_by = request.order_by if request.HasField("order_by") else None
    order = (component_order(order_by) if order_by is not None else None) or []
    async with backend.sessions() as session:
        stmt: Any = select(ComponentDrift, Component).outerjoin(
            Component, Component.id == ComponentDrift.component_id
        )
        target_count = 0
        if targets is not None:
            cond, _ = await _target_condition(session, targets)
            wanted = select(Component.id).where(Component.deleted_at.is_(None), cond, *conditions)
            target_count = int(
                await session.scalar(select(func.count()).select_from(wanted.subquery())) or 0
            )
            stmt = stmt.where(ComponentDrift.component_id.in_(wanted))
        counts = dict(
            (
                await session.execute(
                    select(ComponentDrift.drift_type, func.count())
                    .where(ComponentDrift.id.in_(stmt.with_only_columns(ComponentDrift.id)))
                    .group_by(ComponentDrift.drift_type)
                )
            ).all()
        )
        rows = (
            await session.execute(
                stmt.order_by(
                    *order,
                    ComponentDrift.drift_type,
                    ComponentDrift.component_type,
                    ComponentDrift.external_id.nulls_last(),
                    ComponentDrift.id,
                )
                .offset(window.offset)
                .limit(window.limit)
            )
        ).all()
    missing = int(counts.get(DriftType.MISSING, 0))
    unexpected = int(counts.get(DriftType.UNEXPECTED, 0))
    mismatch = int(counts.get(DriftType.MISMATCH, 0))
    return pb.ValidateComponentsResponse(
        diffs=[_diff(d, c) for d, c in rows],
        total_diffs=missing + unexpected + mismatch,
        missing_count=missing,
        unexpected_count=unexpected,
        mismatch_count=mismatch,
        match_count=max(0, target_count - missing - mismatch) if targeted else 0,
    )
