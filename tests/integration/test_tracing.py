"""OpenTelemetry tracing end to end: an OTLP/gRPC trace receiver on loopback
(the collector's TraceService, implemented here), `flow operator` and `flow
serve` started with `--otlp-endpoint`, a one-rack restart through the
simulator. The spans received must describe the run: the Task, each stage in
order with its attributes, and every Core call beneath the stage that made it."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from operator_fixtures import taskspec

from nicoflow._proto.flow.v1 import flow_pb2, flow_pb2_grpc
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack, finished, phase
from nicoflow.devstack.postgres import Postgres

NS = "tracing-e2e"
CLIENT = trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT
SERVER = trace_pb2.Span.SpanKind.SPAN_KIND_SERVER


def _value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@dataclass(frozen=True)
class Got:
    """A received span and its service's resource attributes."""

    resource: dict[str, Any]
    span: trace_pb2.Span

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name"))

    @property
    def attrs(self) -> dict[str, Any]:
        return {kv.key: _value(kv.value) for kv in self.span.attributes}

    @property
    def id(self) -> bytes:
        return bytes(self.span.span_id)

    @property
    def parent(self) -> bytes:
        return bytes(self.span.parent_span_id)

    @property
    def trace(self) -> str:
        return bytes(self.span.trace_id).hex()


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.spans: list[Got] = []
        self._lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self._lock:
            for rs in request.resource_spans:
                resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
                for scope in rs.scope_spans:
                    self.spans.extend(Got(resource, s) for s in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, found: Callable[[list[Got]], bool], timeout: float = 30) -> list[Got]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if found(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    sink = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield sink, f"http://127.0.0.1:{port}"
    server.stop(None)


class _TracedStack(FlowStack):
    """The operator exports its spans every 200 ms instead of every 5 s."""

    def operator_env(self) -> dict[str, str]:
        return {**super().operator_env(), "OTEL_BSP_SCHEDULE_DELAY": "200"}


@pytest.fixture(scope="module")
def flow(
    control_plane: ControlPlane,
    postgres: Postgres,
    tmp_path_factory: pytest.TempPathFactory,
    receiver: tuple[Receiver, str],
) -> Iterator[FlowStack]:
    db = f"t_trace_{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", NS)
    stack = _TracedStack(
        control_plane,
        postgres.create_database(db),
        tmp_path_factory.mktemp("tracing"),
        racks=1,
        seed=37,
        sim_args=("--latency-power", "0s"),
        namespaces=(NS,),
        operator_args=("--otlp-endpoint", receiver[1]),
    )
    try:
        with stack:
            yield stack
    finally:
        control_plane.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        postgres.drop_database(db)


def _ns(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)


def test_restart_is_one_trace_of_stages_and_core_calls(
    flow: FlowStack, receiver: tuple[Receiver, str]
) -> None:
    sink = receiver[0]
    assert flow.control is not None
    (rack,) = flow.rack_names
    flow.apply(taskspec("traced", NS, "restart", [rack]))
    done = flow.wait_for("taskspec", "traced", NS, finished, timeout=180)
    assert phase(done) == "Complete", done["status"]
    (task,) = flow.list("tasks", NS, "flow.nico.io/taskspec=traced")
    name, uid = task["metadata"]["name"], task["metadata"]["uid"]
    status = task["status"]

    def task_span_in(spans: list[Got]) -> bool:
        return any(s.span.name == "task restart" and s.attrs["task"] == name for s in spans)

    spans = sink.wait_for(task_span_in)
    assert task_span_in(spans), [s.span.name for s in spans]
    trace = [s for s in spans if s.trace == uuid.UUID(uid).hex]
    assert {s.service for s in trace} == {"nico-flow-operator"}

    # the Task: the root of a trace whose id is the Task's UID
    (root,) = [s for s in trace if s.span.name == "task restart"]
    assert root.parent == b""
    assert root.attrs == {
        "task": name,
        "namespace": NS,
        "taskspec": "traced",
        "rack": rack,
        "operation": "restart",
        "task.uid": uid,
        "outcome": "Succeeded",
    }

    # its stages, in order, each with the times the Task status reports
    stages = sorted(
        (s for s in trace if s.span.name.startswith("stage ")),
        key=lambda s: s.span.start_time_unix_nano,
    )
    assert [s.attrs["stage"] for s in stages] == [1, 2, 3, 4, 5, 6]
    assert [s.span.name for s in stages] == [f"stage {n}" for n in range(1, 7)]
    for got, recorded in zip(stages, status["stages"], strict=True):
        assert got.parent == root.id
        assert got.attrs == {
            "task": name,
            "namespace": NS,
            "taskspec": "traced",
            "rack": rack,
            "operation": "restart",
            "stage": recorded["number"],
            "outcome": "Succeeded",
        }
        # status times are written to the second
        assert abs(got.span.start_time_unix_nano - _ns(recorded["startedAt"])) < 1.5e9
        assert abs(got.span.end_time_unix_nano - _ns(recorded["finishedAt"])) < 1.5e9
    for earlier, later in itertools.pairwise(stages):
        assert earlier.span.end_time_unix_nano <= later.span.start_time_unix_nano

    # every Core call of the run: a client span beneath the stage that made it
    stage_of = {s.id: s.attrs["stage"] for s in stages}
    core = [s for s in trace if s.span.name.startswith("forge.Forge/")]
    assert core
    for call in core:
        assert call.span.kind == CLIENT
        assert call.parent in stage_of, call.span.name
        assert call.attrs["rpc.system"] == "grpc"
        assert call.attrs["rpc.service"] == "forge.Forge"
        assert call.span.name == f"forge.Forge/{call.attrs['rpc.method']}"
        assert call.attrs["grpc.code"] == "OK"
        assert call.attrs["rpc.grpc.status_code"] == 0
        parent_stage = stages[stage_of[call.parent] - 1].span
        assert parent_stage.start_time_unix_nano - 1.5e9 <= call.span.start_time_unix_nano
        assert call.span.end_time_unix_nano <= parent_stage.end_time_unix_nano + 1.5e9
    # compute trays are powered off in stage 1 and on in stage 6, one call each
    power = [c for c in core if c.attrs["rpc.method"] == "AdminPowerControl"]
    assert sorted(Counter(stage_of[c.parent] for c in power).items()) == [(1, 18), (6, 18)]
    # each state-changing call carries the request id the simulator recorded
    ledger: dict[str, set[str]] = {}
    for entry in flow.control.ledger():
        ledger.setdefault(str(entry["method"]), set()).add(str(entry["request_id"]))
    sent: dict[str, set[str]] = {}
    for c in core:
        if "grpc.request_id" in c.attrs:
            sent.setdefault(str(c.attrs["rpc.method"]), set()).add(str(c.attrs["grpc.request_id"]))
    assert sent == ledger
    assert sum(len(ids) for ids in sent.values()) == sum(
        1 for c in core if "grpc.request_id" in c.attrs
    ), "one span per state-changing call"


def test_api_spans_continue_the_callers_trace(
    flow: FlowStack, receiver: tuple[Receiver, str]
) -> None:
    sink, endpoint = receiver
    api = flow.start_api(
        "--otlp-endpoint",
        endpoint,
        namespace=NS,
        env={"OTEL_BSP_SCHEDULE_DELAY": "200"},
    )
    caller_trace = uuid.uuid4().hex
    caller_span = uuid.uuid4().hex[:16]
    try:
        with grpc.insecure_channel(str(api.ready_info["grpc"])) as channel:
            stub = flow_pb2_grpc.FlowStub(channel)
            listed = stub.GetListOfRacks(flow_pb2.GetListOfRacksRequest())
            assert listed.total >= 1
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetRackInfoByID(
                    flow_pb2.GetRackInfoByIDRequest(id=flow_pb2.UUID(id="rack-1")),
                    metadata=(("traceparent", f"00-{caller_trace}-{caller_span}-01"),),
                )
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT

            def both(spans: list[Got]) -> bool:
                return len([s for s in spans if s.service == "nico-flow-api"]) >= 2

            spans = [s for s in sink.wait_for(both) if s.service == "nico-flow-api"]
    finally:
        api.stop()
    by_method = {s.attrs["rpc.method"]: s for s in spans}
    listed_span = by_method["GetListOfRacks"]
    assert listed_span.span.name == "v1.Flow/GetListOfRacks"
    assert listed_span.span.kind == SERVER
    assert listed_span.attrs["grpc.code"] == "OK"
    assert listed_span.parent == b""
    refused_span = by_method["GetRackInfoByID"]
    assert refused_span.attrs["grpc.code"] == "INVALID_ARGUMENT"
    assert refused_span.attrs["rpc.grpc.status_code"] == 3
    # a client error is not the server's failure
    assert refused_span.span.status.code != trace_pb2.Status.StatusCode.STATUS_CODE_ERROR
    assert refused_span.trace == caller_trace
    assert refused_span.parent.hex() == caller_span
