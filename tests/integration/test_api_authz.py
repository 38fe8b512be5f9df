"""API authorization over real mTLS: three client certificates (viewer, operator,
admin, named by SPIFFE id, DNS name and common name) and one the roles file does
not name, each calling a representative RPC of every group; denials answer
PERMISSION_DENIED naming the role needed and are logged and counted. Then, with
the operator running, an operation asked for by the operator's certificate shows
who asked in the API's task view."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow._proto.flow.v1 import flow_pb2_grpc
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack
from nicoflow.devstack.postgres import Postgres
from nicoflow.devstack.services import Service

SPIFFE_OPERATOR = "spiffe://example.org/ns/ops/sa/flow-operator"
CLIENTS = {
    # name: (subject CN, subjectAltName)
    "viewer": ("dashboard", "DNS:dashboard.example.org"),
    "operator": ("ops-bot", f"URI:{SPIFFE_OPERATOR}"),
    "admin": ("root", "URI:spiffe://example.org/ns/platform/sa/flow-admin"),
    "stranger": ("nobody", "DNS:nobody.example.org"),
}
ROLES = """\
defaultRole: none
roles:
  admin: ["spiffe://example.org/ns/platform/*"]
  operator: ["spiffe://example.org/ns/ops/*"]
  viewer: ["dns:dashboard.example.org"]
"""


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _cert(d: Path, name: str, cn: str, san: str, usage: str) -> None:
    _openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
             "-extfile", f"{name}.ext")  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("authz-certs")
    _openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=flow-test-ca", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    _cert(d, "server", "flow-api", "IP:127.0.0.1,DNS:localhost", "serverAuth")
    for name, (cn, san) in CLIENTS.items():
        _cert(d, name, cn, san, "clientAuth")
    (d / "roles.yaml").write_text(ROLES)
    return d


@pytest.fixture(scope="module")
def stack(
    control_plane: ControlPlane,
    postgres: Postgres,
    crds_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FlowStack]:
    tag = uuid.uuid4().hex[:6]
    ns = f"authz-{tag}"
    db = f"t_authz_{tag}"
    control_plane.kubectl("create", "namespace", ns)
    flow = FlowStack(
        control_plane,
        postgres.create_database(db),
        tmp_path_factory.mktemp("authz"),
        racks=1,
        seed=61,
        sim_args=("--latency-power", "0s"),
        namespaces=(ns,),
    )
    try:
        with flow:
            yield flow
    finally:
        control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        postgres.drop_database(db)


@pytest.fixture(scope="module")
def api(stack: FlowStack, certs: Path) -> Iterator[Service]:
    service = stack.start_api(
        "--ca-cert", str(certs / "ca.crt"),
        "--tls-cert", str(certs / "server.crt"),
        "--tls-key", str(certs / "server.key"),
        "--roles", str(certs / "roles.yaml"),
        "--metrics-port", "0",
        env={"FLOW_ENV": "production", "ALLOW_INSECURE_GRPC": ""},
        log="api-authz.log",
    )  # fmt: skip
    yield service
    service.stop()


def stub_for(api: Service, certs: Path, client: str) -> tuple[grpc.Channel, Any]:
    creds = grpc.ssl_channel_credentials(
        (certs / "ca.crt").read_bytes(),
        (certs / f"{client}.key").read_bytes(),
        (certs / f"{client}.crt").read_bytes(),
    )
    channel = grpc.secure_channel(str(api.ready_info["grpc"]), creds)
    return channel, flow_pb2_grpc.FlowStub(channel)


# A call per RPC group, made so that it never changes anything: what it would
# answer when allowed does not matter, only whether authorization let it through.
GROUPS: dict[str, tuple[str, Any]] = {
    "viewer": ("GetListOfRacks", pb.GetListOfRacksRequest()),
    "operator": (
        "PowerOffRack",
        pb.PowerOffRackRequest(
            target_spec=pb.OperationTargetSpec(
                racks=pb.RackTargets(targets=[pb.RackTarget(name="no-such-rack")])
            )
        ),
    ),
    "admin": (
        "DeleteOperationRule",
        pb.DeleteOperationRuleRequest(rule_id=pb.UUID(id=str(uuid.UUID(int=0)))),
    ),
}
ALLOWED = {
    "viewer": {"viewer"},
    "operator": {"viewer", "operator"},
    "admin": {"viewer", "operator", "admin"},
    "stranger": set(),
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_each_role_may_call_its_groups_and_no_more(api: Service, certs: Path, client: str) -> None:
    channel, stub = stub_for(api, certs, client)
    with channel:
        for group, (method, request) in GROUPS.items():
            try:
                getattr(stub, method)(request, timeout=30)
                code = grpc.StatusCode.OK
                details = ""
            except grpc.RpcError as err:
                code, details = err.code(), err.details() or ""
            if group in ALLOWED[client]:
                assert code != grpc.StatusCode.PERMISSION_DENIED, (client, method, details)
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, (client, method, code)
                assert f"{method} needs role {group}" in details
                assert ("has no role" if client == "stranger" else f"has role {client}") in details


def test_denials_are_logged_and_counted(api: Service, certs: Path) -> None:
    channel, stub = stub_for(api, certs, "viewer")
    with channel, pytest.raises(grpc.RpcError):
        stub.PowerOffRack(GROUPS["operator"][1], timeout=30)
    metrics = urllib.request.urlopen(f"http://{api.ready_info['metrics']}/metrics", timeout=10)
    text = metrics.read().decode()
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("flow_api_permission_denied_total{")
        and 'grpc_method="PowerOffRack"' in line
        and 'required_role="operator"' in line
    ]
    assert counted
    assert float(counted[0].rsplit(" ", 1)[1]) >= 1
    denied = [
        json.loads(line)
        for line in api.log.read_text().splitlines()
        if line.startswith("{") and "flow rpc denied" in line
    ]
    assert any(
        d["grpc.method"] == "PowerOffRack" and d["grpc.identity"] == "dns:dashboard.example.org"
        for d in denied
    ), denied


def test_the_task_view_says_who_asked(api: Service, certs: Path, stack: FlowStack) -> None:
    rack = stack.rack_names[0]
    channel, stub = stub_for(api, certs, "operator")
    with channel:
        reply = stub.PowerOnRack(
            pb.PowerOnRackRequest(
                target_spec=pb.OperationTargetSpec(
                    racks=pb.RackTargets(targets=[pb.RackTarget(name=rack)])
                )
            ),
            timeout=30,
        )
    assert len(reply.task_ids) == 1
    channel, stub = stub_for(api, certs, "viewer")
    with channel:
        deadline = time.monotonic() + 120
        while True:
            tasks = stub.GetTasksByIDs(pb.GetTasksByIDsRequest(task_ids=reply.task_ids), timeout=30)
            if tasks.tasks and tasks.tasks[0].status == pb.TASK_STATUS_COMPLETED:
                break
            assert time.monotonic() < deadline, tasks
            time.sleep(1)
        # the API runs with the admin kubeconfig: it is who talked to Kubernetes
        assert tasks.tasks[0].requested_by == f"{SPIFFE_OPERATOR} (via admin)"
        listed = stub.ListTasks(pb.ListTasksRequest(), timeout=30).tasks
        assert {t.requested_by for t in listed} == {f"{SPIFFE_OPERATOR} (via admin)"}
