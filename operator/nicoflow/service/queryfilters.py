"""List filters and sort orders of the v1 API as SQL conditions.

StringQueryInfo semantics (as the original's database path): without
`is_wildcard` a pattern must equal the value; with it, `%` at the start or
end anchors the other end (suffix / prefix match) and a pattern without `%`
matches anywhere. Matching is case-sensitive. Patterns are AND-ed unless
`use_or`. Only `%` is special: `_` and `\\` match themselves."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, func, or_
from sqlalchemy.sql.elements import ColumnElement

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.types import ComponentType
from nicoflow.inventory.models import Component, NVLDomain, Rack
from nicoflow.service.errors import InvalidArgument
from nicoflow.service.validation import direction

Condition = ColumnElement[bool]


def like_pattern(pattern: str) -> str:
    """The LIKE pattern (escape character `\\`) for one wildcard pattern."""
    escaped = pattern.replace("\\", "\\\\").replace("_", "\\_")
    return escaped if "%" in pattern else f"%{escaped}%"


def _combine(terms: Sequence[Condition], use_or: bool) -> Condition:
    return or_(*terms) if use_or else and_(*terms)


def string_condition(column: Any, info: pb.StringQueryInfo, field: str) -> Condition:
    patterns = list(info.patterns)
    if not patterns:
        raise InvalidArgument(f"{field} has no patterns; add at least one or drop the filter")
    if info.is_wildcard:
        terms = [column.like(like_pattern(p), escape="\\") for p in patterns]
    else:
        terms = [column == p for p in patterns]
    return _combine(terms, info.use_or)


def type_condition(info: pb.StringQueryInfo, field: str) -> Condition:
    """TYPE patterns are component type names ("Compute", "nvswitch" ...), any case."""
    patterns = list(info.patterns)
    if not patterns:
        raise InvalidArgument(f"{field} has no patterns; name at least one component type")
    terms = []
    for p in patterns:
        try:
            ctype = ComponentType.parse(p.strip("%") if info.is_wildcard else p)
        except ValueError as exc:
            raise InvalidArgument(f"{field}: {exc}") from None
        terms.append(Component.type == ctype)
    return _combine(terms, info.use_or)


# names as the clients gave them (the object name where that was one)
RACK_NAME = func.coalesce(Rack.display_name, Rack.name)
COMPONENT_NAME = func.coalesce(Component.display_name, Component.name)
NVL_DOMAIN_NAME = func.coalesce(NVLDomain.display_name, NVLDomain.name)

_RACK_FIELDS: dict[int, Any] = {
    pb.RACK_FILTER_FIELD_NAME: RACK_NAME,
    pb.RACK_FILTER_FIELD_MANUFACTURER: Rack.manufacturer,
    pb.RACK_FILTER_FIELD_MODEL: Rack.model,
}
_COMPONENT_FIELDS: dict[int, Any] = {
    pb.COMPONENT_FILTER_FIELD_NAME: COMPONENT_NAME,
    pb.COMPONENT_FILTER_FIELD_MANUFACTURER: Component.manufacturer,
    pb.COMPONENT_FILTER_FIELD_MODEL: Component.model,
}


def rack_filters(filters: Sequence[pb.Filter]) -> list[Condition]:
    out = []
    for i, f in enumerate(filters):
        where = f"filters[{i}]"
        if f.WhichOneof("field") != "rack_field":
            raise InvalidArgument(
                f"{where} must set rack_field (NAME, MANUFACTURER or MODEL) for a rack query"
            )
        column = _RACK_FIELDS.get(f.rack_field)
        if column is None:
            raise InvalidArgument(
                f"{where}.rack_field is {f.rack_field}; use RACK_FILTER_FIELD_NAME, "
                "RACK_FILTER_FIELD_MANUFACTURER or RACK_FILTER_FIELD_MODEL"
            )
        out.append(string_condition(column, f.query_info, f"{where}.query_info"))
    return out


def component_filters(filters: Sequence[pb.Filter]) -> list[Condition]:
    out = []
    for i, f in enumerate(filters):
        where = f"filters[{i}]"
        if f.WhichOneof("field") != "component_field":
            raise InvalidArgument(
                f"{where} must set component_field (NAME, MANUFACTURER, MODEL or TYPE) for a "
                "component query"
            )
        if f.component_field == pb.COMPONENT_FILTER_FIELD_TYPE:
            out.append(type_condition(f.query_info, f"{where}.query_info"))
            continue
        column = _COMPONENT_FIELDS.get(f.component_field)
        if column is None:
            raise InvalidArgument(
                f"{where}.component_field is {f.component_field}; use NAME, MANUFACTURER, "
                "MODEL or TYPE"
            )
        out.append(string_condition(column, f.query_info, f"{where}.query_info"))
    return out


def nvl_domain_filter(info: pb.StringQueryInfo | None) -> list[Condition]:
    """No info or no patterns: every domain."""
    if info is None or not info.patterns:
        return []
    return [string_condition(NVL_DOMAIN_NAME, info, "info")]


Order = list[Any]


def _ordered(column: Any, desc: bool, tiebreak: Any) -> Order:
    first = column.desc().nulls_last() if desc else column.asc().nulls_last()
    return [first, tiebreak]


_RACK_ORDER: dict[int, Callable[[], Any]] = {
    pb.RACK_ORDER_BY_FIELD_NAME: lambda: RACK_NAME,
    pb.RACK_ORDER_BY_FIELD_MANUFACTURER: lambda: Rack.manufacturer,
    pb.RACK_ORDER_BY_FIELD_MODEL: lambda: Rack.model,
}
_COMPONENT_ORDER: dict[int, Callable[[], Any]] = {
    pb.COMPONENT_ORDER_BY_FIELD_NAME: lambda: COMPONENT_NAME,
    pb.COMPONENT_ORDER_BY_FIELD_MANUFACTURER: lambda: Component.manufacturer,
    pb.COMPONENT_ORDER_BY_FIELD_MODEL: lambda: Component.model,
    pb.COMPONENT_ORDER_BY_FIELD_TYPE: lambda: Component.type,
}


def rack_order(order: pb.OrderBy | None) -> Order:
    """Default: by name. The id breaks ties so pages never overlap."""
    if order is None or order.WhichOneof("field") is None:
        return [RACK_NAME.asc(), Rack.id]
    if order.WhichOneof("field") != "rack_field":
        raise InvalidArgument("order_by must set rack_field (NAME, MANUFACTURER or MODEL)")
    column = _RACK_ORDER.get(order.rack_field)
    if column is None:
        raise InvalidArgument(
            f"order_by.rack_field is {order.rack_field}; use NAME, MANUFACTURER or MODEL"
        )
    return _ordered(column(), direction(order.direction, "order_by.direction"), Rack.id)


def component_order(order: pb.OrderBy | None) -> Order | None:
    """None for no order_by: the caller lists components as they were given."""
    if order is None or order.WhichOneof("field") is None:
        return None
    if order.WhichOneof("field") != "component_field":
        raise InvalidArgument(
            "order_by must set component_field (NAME, MANUFACTURER, MODEL or TYPE)"
        )
    column = _COMPONENT_ORDER.get(order.component_field)
    if column is None:
        raise InvalidArgument(
            f"order_by.component_field is {order.component_field}; use NAME, MANUFACTURER, "
            "MODEL or TYPE"
        )
    return _ordered(column(), direction(order.direction, "order_by.direction"), Component.id)
