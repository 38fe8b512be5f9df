"""Request field checks of the API: pagination, UUIDs, identifiers, target specs,
list filters and orders."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.dialects import postgresql

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.types import ComponentType
from nicoflow.service import queryfilters, validation
from nicoflow.service.errors import InvalidArgument

U = "0b7f5c2e-4b1c-4f0e-9a51-3c9d2f6e8a10"


def test_pagination_defaults_and_bounds() -> None:
    assert validation.page(None) == validation.Page(0, 100)
    assert validation.page(pb.Pagination(offset=5, limit=7)) == validation.Page(5, 7)
    with pytest.raises(InvalidArgument, match="offset is -1"):
        validation.page(pb.Pagination(offset=-1, limit=7))
    # given but zero: refused, since omitting pagination is how to ask for the default
    with pytest.raises(InvalidArgument, match="limit is 0"):
        validation.page(pb.Pagination())
    # more than a page holds: served a full page, the total says there is more
    assert validation.page(pb.Pagination(offset=3, limit=10**6)) == validation.Page(
        3, validation.MAX_PAGE
    )


def test_uuids() -> None:
    assert validation.parse_uuid(pb.UUID(id=U), "id") == uuid.UUID(U)
    with pytest.raises(InvalidArgument, match="id is required"):
        validation.parse_uuid(None, "id")
    with pytest.raises(InvalidArgument, match="'abc' is not a UUID"):
        validation.parse_uuid(pb.UUID(id="abc"), "rack_id")


def test_identifier_needs_exactly_one() -> None:
    assert validation.identifier(pb.Identifier(name="d1"), "x").name == "d1"
    assert validation.identifier(pb.Identifier(id=pb.UUID(id=U)), "x").id == uuid.UUID(U)
    with pytest.raises(InvalidArgument, match="both id and name"):
        validation.identifier(pb.Identifier(id=pb.UUID(id=U), name="d1"), "x")
    with pytest.raises(InvalidArgument, match="empty"):
        validation.identifier(pb.Identifier(), "x")
    with pytest.raises(InvalidArgument, match="empty"):
        validation.identifier(None, "x")


def test_serial_info_and_direction() -> None:
    info = pb.DeviceSerialInfo(manufacturer="NVIDIA", serial_number="S")
    assert validation.serial_info(info, "s") == ("NVIDIA", "S")
    with pytest.raises(InvalidArgument, match="manufacturer is required"):
        validation.serial_info(pb.DeviceSerialInfo(serial_number="S"), "s")
    assert validation.direction("", "d") is False
    assert validation.direction("desc", "d") is True
    with pytest.raises(InvalidArgument, match="ASC or DESC"):
        validation.direction("down", "d")


def test_rack_targets_parse_with_types() -> None:
    spec = pb.OperationTargetSpec(
        racks=pb.RackTargets(
            targets=[
                pb.RackTarget(name="a01", component_types=[pb.COMPONENT_TYPE_COMPUTE]),
                pb.RackTarget(id=pb.UUID(id=U)),
            ]
        )
    )
    targets = validation.target_spec(spec)
    assert targets.components == ()
    first, second = targets.racks
    assert (first.name, first.types) == ("a01", frozenset({ComponentType.COMPUTE}))
    assert (second.id, second.types) == (uuid.UUID(U), frozenset())


def test_component_targets_parse() -> None:
    spec = pb.OperationTargetSpec(
        components=pb.ComponentTargets(
            targets=[
                pb.ComponentTarget(id=pb.UUID(id=U)),
                pb.ComponentTarget(
                    external=pb.ExternalRef(type=pb.COMPONENT_TYPE_NVSWITCH, id="sw-1")
                ),
            ]
        )
    )
    by_id, by_core = validation.target_spec(spec).components
    assert by_id.id == uuid.UUID(U)
    assert (by_core.core_type, by_core.core_id) == (ComponentType.NVSWITCH, "sw-1")
    assert "Core id 'sw-1'" in by_core.describe()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (None, "target_spec is empty"),
        (pb.OperationTargetSpec(), "target_spec is empty"),
        (pb.OperationTargetSpec(racks=pb.RackTargets()), "no targets"),
        (pb.OperationTargetSpec(components=pb.ComponentTargets()), "no targets"),
        (pb.OperationTargetSpec(racks=pb.RackTargets(targets=[pb.RackTarget()])), "names no rack"),
        (
            pb.OperationTargetSpec(racks=pb.RackTargets(targets=[pb.RackTarget(name="")])),
            "names no rack",
        ),
        (
            pb.OperationTargetSpec(
                racks=pb.RackTargets(
                    targets=[pb.RackTarget(name="a", component_types=[pb.COMPONENT_TYPE_UNKNOWN])]
                )
            ),
            "component_types[0] is COMPONENT_TYPE_UNKNOWN",
        ),
        (
            pb.OperationTargetSpec(
                racks=pb.RackTargets(targets=[pb.RackTarget(name="a", component_types=[99])])
            ),
            "is 99",
        ),
        (
            pb.OperationTargetSpec(components=pb.ComponentTargets(targets=[pb.ComponentTarget()])),
            "names no component",
        ),
        (
            pb.OperationTargetSpec(
                components=pb.ComponentTargets(
                    targets=[pb.ComponentTarget(external=pb.ExternalRef(id="m"))]
                )
            ),
            "external.type",
        ),
        (
            pb.OperationTargetSpec(
                components=pb.ComponentTargets(
                    targets=[
                        pb.ComponentTarget(external=pb.ExternalRef(type=pb.COMPONENT_TYPE_COMPUTE))
                    ]
                )
            ),
            "external.id is empty",
        ),
        (
            pb.OperationTargetSpec(
                components=pb.ComponentTargets(targets=[pb.ComponentTarget(id=pb.UUID(id="x"))])
            ),
            "is not a UUID",
        ),
    ],
)
def test_bad_target_specs(spec: pb.OperationTargetSpec | None, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validation.target_spec(spec)
    assert message in err.value.message


def _sql(condition: object) -> str:
    return str(
        condition.compile(  # type: ignore[attr-defined]
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
    )


def test_like_patterns() -> None:
    assert queryfilters.like_pattern("abc") == "%abc%"
    assert queryfilters.like_pattern("abc%") == "abc%"
    assert queryfilters.like_pattern("%abc") == "%abc"
    # only % is a wildcard: _ matches itself
    assert queryfilters.like_pattern("a_b%") == "a\\_b%"


def test_string_conditions() -> None:
    exact = queryfilters.rack_filters(
        [
            pb.Filter(
                rack_field=pb.RACK_FILTER_FIELD_NAME,
                query_info=pb.StringQueryInfo(patterns=["a", "b"], use_or=True),
            )
        ]
    )
    # the name the client gave, where it was not the object name
    assert _sql(exact[0]) == (
        "coalesce(rack.display_name, rack.name) = 'a' OR "
        "coalesce(rack.display_name, rack.name) = 'b'"
    )
    wild = queryfilters.rack_filters(
        [
            pb.Filter(
                rack_field=pb.RACK_FILTER_FIELD_MODEL,
                query_info=pb.StringQueryInfo(patterns=["GB%", "%72"], is_wildcard=True),
            )
        ]
    )
    # the dialect doubles % in literals (pyformat paramstyle)
    assert _sql(wild[0]) == (
        "rack.model LIKE 'GB%%' ESCAPE '\\' AND rack.model LIKE '%%72' ESCAPE '\\'"
    )


def test_type_filter_accepts_display_names_and_refuses_unknown() -> None:
    cond = queryfilters.component_filters(
        [
            pb.Filter(
                component_field=pb.COMPONENT_FILTER_FIELD_TYPE,
                query_info=pb.StringQueryInfo(patterns=["NVSwitch", "powershelf"], use_or=True),
            )
        ]
    )
    assert _sql(cond[0]) == "component.type = 'nvswitch' OR component.type = 'powershelf'"
    with pytest.raises(InvalidArgument, match="unknown component type 'GPU'"):
        queryfilters.component_filters(
            [
                pb.Filter(
                    component_field=pb.COMPONENT_FILTER_FIELD_TYPE,
                    query_info=pb.StringQueryInfo(patterns=["GPU"]),
                )
            ]
        )


def test_orders() -> None:
    assert len(queryfilters.rack_order(None)) == 2
    order = queryfilters.component_order(
        pb.OrderBy(component_field=pb.COMPONENT_ORDER_BY_FIELD_TYPE, direction="DESC")
    )
    assert "DESC" in _sql(order[0])
    with pytest.raises(InvalidArgument, match="rack_field"):
        queryfilters.rack_order(pb.OrderBy(component_field=pb.COMPONENT_ORDER_BY_FIELD_NAME))
    with pytest.raises(InvalidArgument, match="use NAME"):
        queryfilters.rack_order(pb.OrderBy(rack_field=pb.RACK_ORDER_BY_FIELD_UNSPECIFIED))


def test_timestamps_out_of_range_are_invalid_arguments() -> None:
    from datetime import UTC, datetime

    from google.protobuf.timestamp_pb2 import Timestamp

    assert validation.timestamp(Timestamp(seconds=86400), "t") == datetime(1970, 1, 2, tzinfo=UTC)
    for bad in (Timestamp(seconds=-(2**63)), Timestamp(seconds=2**62), Timestamp(nanos=-1)):
        with pytest.raises(InvalidArgument, match=r"end_time .* is not a valid time"):
            validation.timestamp(bad, "end_time")


def test_error_messages_fit_a_grpc_header_whatever_they_quote() -> None:
    from nicoflow.service.errors import MESSAGE_BUDGET, bounded

    short = "rack 'a' not found"
    assert InvalidArgument(short).message == short
    quoted = f"id {'😀' * 5000!r} is not a UUID; write it like 123e4567-e89b"
    cut = InvalidArgument(quoted).message
    encoded = sum(1 if " " <= c <= "~" and c != "%" else 3 * len(c.encode()) for c in cut)
    assert encoded <= MESSAGE_BUDGET
    assert cut.startswith("id '😀")
    assert cut.endswith("write it like 123e4567-e89b")
    assert " [...] " in cut
    assert bounded("x" * 5000) != "x" * 5000


def test_a_value_postgres_cannot_store_is_the_callers_mistake() -> None:
    import grpc
    from sqlalchemy.exc import DataError

    from nicoflow.service.errors import classify

    nul = DataError(
        "SELECT 1", {}, Exception("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    )
    found = classify(nul)
    assert found is not None
    assert found[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot contain NUL" in found[1]
