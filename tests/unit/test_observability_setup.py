"""When tracing turns on, that off costs nothing, and the API metrics' code names."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from nicoflow import tracing
from nicoflow.controller.stage_spans import SPANS
from nicoflow.service.metrics import ApiMetrics, go_code

# google.golang.org/grpc/codes, Code.String()
GO_NAMES = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
]


@pytest.mark.parametrize(
    ("explicit", "env", "expected"),
    [
        (None, {}, None),
        ("http://c:4317", {}, "http://c:4317"),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "http://c:4317"),
        (
            None,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://all:4317",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4317",
            },
            "http://traces:4317",
        ),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"}, None),
        # a flag on the command line is a deliberate choice
        ("http://c:4317", {"OTEL_SDK_DISABLED": "true"}, "http://c:4317"),
    ],
)
def test_endpoint(explicit: str | None, env: dict[str, str], expected: str | None) -> None:
    assert tracing.endpoint(explicit, env) == expected


def test_off_without_an_endpoint() -> None:
    assert tracing.configure(tracing.OPERATOR_SERVICE, None, {}) is None
    assert not tracing.enabled()
    with pytest.raises(RuntimeError, match="tracing is off"):
        tracing.tracer()


def test_stage_spans_pass_calls_through_untouched_when_off() -> None:
    async def call() -> int:
        return 7

    coro = call()
    assert SPANS.within(("ns", "task"), 1, coro) is coro
    assert asyncio.run(coro) == 7


def test_grpc_codes_use_go_names() -> None:
    assert [go_code(c) for c in sorted(grpc.StatusCode, key=lambda c: c.value[0])] == GO_NAMES


def test_registries_are_per_server() -> None:
    a, b = ApiMetrics(), ApiMetrics()
    a.started("v1.Flow", "Version")
    a.handled("v1.Flow", "Version", grpc.StatusCode.NOT_FOUND, 0.01)
    labels = {"grpc_type": "unary", "grpc_service": "v1.Flow", "grpc_method": "Version"}
    code = {**labels, "grpc_code": "NotFound"}
    assert a.registry.get_sample_value("grpc_server_handled_total", code) == 1
    assert a.registry.get_sample_value("grpc_server_in_flight_requests", labels) == 0
    assert a.registry.get_sample_value("grpc_server_msg_sent_total", labels) is None
    assert b.registry.get_sample_value("grpc_server_handled_total", code) is None
