"""Both Prometheus endpoints during a run: `flow serve --metrics-port 0` and
`flow operator --metrics-port 0` as real processes against the apiserver,
PostgreSQL and the Core simulator. A PowerResetRack for two racks, one refused
request and the polls that wait for the Tasks must show up exactly: per RPC
and code on the API, Tasks and stages on the operator, and as many Core calls
per method as the simulator's ledger recorded."""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nicoflow._proto.flow.v1 import flow_pb2, flow_pb2_grpc
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack
from nicoflow.devstack.postgres import Postgres
from nicoflow.devstack.services import Service

NS = "metrics-e2e"
DONE = {
    flow_pb2.TASK_STATUS_COMPLETED,
    flow_pb2.TASK_STATUS_FAILED,
    flow_pb2.TASK_STATUS_TERMINATED,
}
Labels = frozenset[tuple[str, str]]


class Scrape:
    """One /metrics page: sample name -> {labels: value}."""

    def __init__(self, address: str) -> None:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        self.samples: dict[str, dict[Labels, float]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value

    def value(self, name: str, **labels: str) -> float:
        """The one sample with exactly these labels (0 when there is none)."""
        return self.samples.get(name, {}).get(frozenset(labels.items()), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples whose labels include these."""
        want = set(labels.items())
        return sum(v for k, v in self.samples.get(name, {}).items() if want <= k)

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        out: Counter[str] = Counter()
        want = set(labels.items())
        for k, v in self.samples.get(name, {}).items():
            if want <= k:
                out[dict(k)[label]] += v
        return dict(out)


@dataclass
class Run:
    flow: FlowStack
    api: Service
    stub: flow_pb2_grpc.FlowStub

    @property
    def api_metrics(self) -> str:
        return str(self.api.ready_info["metrics"])

    def operator_metrics(self) -> str:
        assert self.flow.operator is not None
        found = re.search(r"metrics on :(\d+)/metrics", self.flow.operator.log.read_text())
        assert found, "the operator did not log its metrics port"
        return f"127.0.0.1:{found.group(1)}"


@pytest.fixture(scope="module")
def run(
    control_plane: ControlPlane, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    db = f"t_metrics_{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", NS)
    stack = FlowStack(
        control_plane,
        postgres.create_database(db),
        tmp_path_factory.mktemp("metrics"),
        racks=2,
        seed=29,
        sim_args=("--latency-power", "0s"),
        namespaces=(NS,),
        operator_args=("--metrics-port", "0"),
    )
    try:
        with stack:
            api = stack.start_api("--metrics-port", "0", namespace=NS)
            try:
                with grpc.insecure_channel(str(api.ready_info["grpc"])) as channel:
                    yield Run(stack, api, flow_pb2_grpc.FlowStub(channel))
            finally:
                api.stop()
    finally:
        control_plane.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        postgres.drop_database(db)


def test_api_ready_line_names_the_bound_metrics_port(run: Run) -> None:
    host, _, port = run.api_metrics.rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0
    page = Scrape(run.api_metrics)
    # nothing was called yet, so no RPC series either
    assert page.total("grpc_server_handled_total", grpc_service="v1.Flow") == 0


def test_both_endpoints_count_a_two_rack_reset(run: Run) -> None:
    flow = run.flow
    assert flow.control is not None
    targets = flow_pb2.OperationTargetSpec(
        racks=flow_pb2.RackTargets(targets=[flow_pb2.RackTarget(name=n) for n in flow.rack_names])
    )
    reply = run.stub.PowerResetRack(flow_pb2.PowerResetRackRequest(target_spec=targets))
    assert len(reply.task_ids) == 2
    with pytest.raises(grpc.RpcError) as refused:
        run.stub.GetRackInfoByID(flow_pb2.GetRackInfoByIDRequest(id=flow_pb2.UUID(id="rack-1")))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    polls = 0
    deadline = time.monotonic() + 240
    while True:
        polls += 1
        tasks = run.stub.GetTasksByIDs(flow_pb2.GetTasksByIDsRequest(task_ids=reply.task_ids))
        if len(tasks.tasks) == 2 and all(t.status in DONE for t in tasks.tasks):
            break
        assert time.monotonic() < deadline, tasks
        time.sleep(1)
    assert {t.status for t in tasks.tasks} == {flow_pb2.TASK_STATUS_COMPLETED}

    # -- the API: every call counted once, under its method and Go-style code
    api = Scrape(run.api_metrics)
    unary = {"grpc_type": "unary", "grpc_service": "v1.Flow"}
    handled = api.by("grpc_server_handled_total", "grpc_method", **unary)
    assert handled == {"PowerResetRack": 1, "GetRackInfoByID": 1, "GetTasksByIDs": polls}
    assert (
        api.value(
            "grpc_server_handled_total", **unary, grpc_method="PowerResetRack", grpc_code="OK"
        )
        == 1
    )
    assert (
        api.value(
            "grpc_server_handled_total",
            **unary,
            grpc_method="GetRackInfoByID",
            grpc_code="InvalidArgument",
        )
        == 1
    )
    assert api.by("grpc_server_handled_total", "grpc_code", **unary) == {
        "OK": 1 + polls,
        "InvalidArgument": 1,
    }
    assert api.by("grpc_server_started_total", "grpc_method", **unary) == handled
    assert api.by("grpc_server_handling_seconds_count", "grpc_method", **unary) == handled
    assert api.by("grpc_server_msg_received_total", "grpc_method", **unary) == handled
    # no response message for the refused call
    assert api.by("grpc_server_msg_sent_total", "grpc_method", **unary) == {
        "PowerResetRack": 1,
        "GetTasksByIDs": polls,
    }
    # the histogram's +Inf bucket holds every call; the slowest one bounds the sum
    reset = {**unary, "grpc_method": "PowerResetRack"}
    assert api.value("grpc_server_handling_seconds_bucket", **reset, le="+Inf") == 1
    assert 0 < api.value("grpc_server_handling_seconds_sum", **reset) < 30
    assert api.total("grpc_server_in_flight_requests") == 0

    # -- the operator: its Tasks, their stages and every Core call
    names = {f"{NS}/{t['metadata']['name']}": t for t in flow.list("tasks", NS)}
    assert len(names) == 2
    (operation,) = {t["spec"]["operation"] for t in names.values()}
    stages = sum(len(t["status"]["stages"]) for t in names.values())
    op = operator_scrape_when(run, "nicoflow_tasks_finished_total", 2, operation=operation)
    assert op.by("nicoflow_tasks_finished_total", "phase") == {"Succeeded": 2}
    phases = op.by("nicoflow_tasks", "phase")
    assert phases["Succeeded"] == 2
    assert sum(phases.values()) == 2, phases
    assert op.total("nicoflow_rack_queue_depth") == 0
    assert op.by("nicoflow_stage_duration_seconds_count", "phase", operation=operation) == {
        "Succeeded": stages
    }
    core = op.by("nicoflow_core_rpc_duration_seconds_count", "method")
    assert sum(core.values()) > 0
    assert op.total("nicoflow_core_rpc_errors_total") == 0
    # every state-changing call reached the simulator once: its ledger numbers calls
    calls: dict[str, set[int]] = {}
    for entry in flow.control.ledger():
        calls.setdefault(str(entry["method"]), set()).add(int(entry["call"]))
    assert calls, "the reset sent no state-changing call"
    assert {m: len(c) for m, c in calls.items()} == {m: core.get(m, 0) for m in calls}
    assert op.value("nicoflow_reconciles_total", kind="Task") > 0
    assert op.total("nicoflow_reconcile_errors_total") == 0


def operator_scrape_when(run: Run, name: str, want: float, **labels: str) -> Scrape:
    """The operator counts a finished Task right after writing its status: wait
    for that count rather than racing it."""
    deadline = time.monotonic() + 30
    while True:
        page = Scrape(run.operator_metrics())
        if page.total(name, **labels) >= want or time.monotonic() > deadline:
            return page
        time.sleep(0.5)


def test_held_tasks_are_counted_by_reason(run: Run) -> None:
    """A suspended TaskSpec's Tasks: held (reason Suspended), not stuck."""
    run.flow.apply(
        {
            "apiVersion": "flow.nico.io/v1alpha1",
            "kind": "TaskSpec",
            "metadata": {"name": "held", "namespace": NS},
            "spec": {
                "operation": "power_on",
                "targets": {"racks": run.flow.rack_names},
                "suspend": True,
            },
        }
    )
    page = operator_scrape_when(run, "nicoflow_tasks_held", 2, reason="Suspended")
    assert page.by("nicoflow_tasks_held", "reason") == {"Suspended": 2}
    assert page.value("nicoflow_tasks_held", reason="Suspended", stuck="false") == 2
    run.flow.cp.kubectl("delete", "taskspec", "held", "-n", NS)
