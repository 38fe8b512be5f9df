"""The chart's RBAC is enough to do the job: the operator (electing itself
leader on the chart's Lease) and the API run as local processes with tokens of
the chart's ServiceAccounts and carry a power-cycle of simulated racks to
success; the same tokens are refused what the chart does not grant."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from chart_support import CHART, Helm

from nicoflow._proto.flow.v1 import flow_pb2, flow_pb2_grpc
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack, finished, phase
from nicoflow.devstack.postgres import Postgres
from nicoflow.devstack.services import Service, flow_argv


@pytest.fixture(scope="module")
def chart_namespace(control_plane: ControlPlane) -> Iterator[str]:
    ns = f"rbac-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", ns)
    yield ns
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def release(cluster_helm: Helm, chart_namespace: str, crds_installed: list[str]) -> Iterator[str]:
    name = "rbac"
    cluster_helm.run(
        "install",
        name,
        str(CHART),
        f"--namespace={chart_namespace}",
        "--set=crds.enabled=false",
        "--no-hooks",
        "--wait=hookOnly",
    )
    yield name
    cluster_helm.run("uninstall", name, f"--namespace={chart_namespace}", check=False)


def token_kubeconfig(cp: ControlPlane, ns: str, sa: str, where: Path) -> Path:
    token = cp.kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
    return cp.write_kubeconfig(where / f"{sa}.kubeconfig", token, user=sa)


@pytest.fixture(scope="module")
def flow(
    control_plane: ControlPlane,
    postgres: Postgres,
    release: str,
    chart_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FlowStack]:
    work = tmp_path_factory.mktemp("rbac")
    operator_kc = token_kubeconfig(
        control_plane, chart_namespace, f"{release}-nico-flow-operator", work
    )
    db = f"t_rbac_{uuid.uuid4().hex[:6]}"
    stack = FlowStack(
        control_plane,
        postgres.create_database(db),
        work,
        racks=2,
        seed=31,
        sim_args=("--latency-power", "0s"),
        namespaces=(chart_namespace,),
        # leader election on the Lease the chart names, with the chart's Role
        operator_args=(
            "--leader-elect",
            f"--leader-election-namespace={chart_namespace}",
            f"--leader-election-id={release}-nico-flow-operator",
        ),
        operator_kubeconfig=operator_kc,
    )
    with stack:
        yield stack
    postgres.drop_database(db)


@pytest.fixture(scope="module")
def api(
    flow: FlowStack, control_plane: ControlPlane, release: str, chart_namespace: str
) -> Iterator[str]:
    api_kc = token_kubeconfig(
        control_plane, chart_namespace, f"{release}-nico-flow-api", flow.workdir
    )
    service = Service(
        "api",
        flow_argv(
            "serve",
            "--host",
            "127.0.0.1",
            "-p",
            "0",
            "--namespace",
            chart_namespace,
            "--kubeconfig",
            str(api_kc),
            "--database-url",
            flow.database_url,
        ),
        flow.workdir / "api.log",
        env={"FLOW_ENV": "development", "ALLOW_INSECURE_GRPC": "true"},
    ).start(ready_json=True, timeout=60)
    yield str(service.ready_info["grpc"])
    service.stop()


def test_power_cycle_through_the_api_with_the_charts_service_accounts(
    flow: FlowStack, api: str, chart_namespace: str
) -> None:
    with grpc.insecure_channel(api) as channel:
        stub = flow_pb2_grpc.FlowStub(channel)
        targets = flow_pb2.OperationTargetSpec(
            racks=flow_pb2.RackTargets(
                targets=[flow_pb2.RackTarget(name=name) for name in flow.rack_names]
            )
        )
        reply = stub.PowerResetRack(
            flow_pb2.PowerResetRackRequest(target_spec=targets, description="rbac run"),
            timeout=30,
        )
        ids = [t.id for t in reply.task_ids]
        assert len(ids) == len(flow.rack_names)
        deadline = time.monotonic() + 180
        while True:
            tasks = stub.GetTasksByIDs(
                flow_pb2.GetTasksByIDsRequest(task_ids=reply.task_ids), timeout=30
            ).tasks
            states = {t.status for t in tasks}
            if len(tasks) == len(ids) and states == {flow_pb2.TASK_STATUS_COMPLETED}:
                break
            assert time.monotonic() < deadline, f"tasks not completed: {tasks}"
            assert flow_pb2.TASK_STATUS_FAILED not in states, tasks
            time.sleep(1)
    # the TaskSpec's summary follows its Tasks a moment later (debounced)
    deadline = time.monotonic() + 60
    while True:
        specs = flow.list("taskspecs", chart_namespace)
        if any(finished(s) for s in specs) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [phase(s) for s in specs if finished(s)] == ["Complete"]
    assert flow.operator is not None
    assert "acquired leadership" in flow.operator.log.read_text()
    assert flow.control is not None
    assert flow.control.duplicates() == []


def test_the_same_tokens_are_refused_what_the_chart_does_not_grant(
    flow: FlowStack, control_plane: ControlPlane, release: str, chart_namespace: str
) -> None:
    assert flow.operator_kubeconfig is not None
    refused = control_plane.kubectl(
        "delete",
        "tasks",
        "--all",
        "-n",
        chart_namespace,
        kubeconfig=flow.operator_kubeconfig,
        check=False,
    )
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()
    api_kc = flow.workdir / f"{release}-nico-flow-api.kubeconfig"
    elsewhere = control_plane.kubectl(
        "get", "taskspecs", "-n", "default", kubeconfig=api_kc, check=False
    )
    assert elsewhere.returncode != 0
    assert "forbidden" in elsewhere.stderr.lower()
