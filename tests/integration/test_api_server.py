"""The server itself: health, reflection only in dev mode, mTLS, the version,
and `flow serve` as a real process (ready line, one JSON log line per RPC,
refusals in production)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from api_support import Api, make_ca, make_cert, running_api
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from nicoflow import __version__
from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow._proto.flow.v1 import flow_pb2_grpc
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.inventory import migrate
from nicoflow.service.server import FlowServer, ServeOptions


@pytest.fixture
async def api(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[Api]:
    async with running_api(control_plane, database_url, namespace) as a:
        yield a


async def _services(channel: grpc.aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names: list[str] = []
    async for resp in call:
        names += [s.name for s in resp.list_services_response.service]
    return names


async def test_health_serving_and_no_reflection_by_default(api: Api) -> None:
    health = health_pb2_grpc.HealthStub(api.channel)
    for service in ("", "v1.Flow"):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _services(api.channel)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED

    version = await api.stub.Version(pb.VersionRequest())
    assert version.version == __version__
    assert version.build_time == "unknown"
    assert version.git_commit == "unknown"


async def test_reflection_in_dev_mode(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> None:
    async with running_api(control_plane, database_url, namespace, dev_mode=True) as api:
        names = await _services(api.channel)
    assert "v1.Flow" in names
    assert "grpc.health.v1.Health" in names


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "ca", "server", server=True)
    make_cert(d, "ca", "client", server=False)
    make_cert(d, "rogue-ca", "rogue", server=False)
    return d


async def test_mtls_requires_a_client_certificate_from_the_ca(
    certs: Path, control_plane: ControlPlane, database_url: str, namespace: str
) -> None:
    migrate.upgrade(database_url)
    server = FlowServer(
        ServeOptions(
            host="127.0.0.1",
            port=0,
            ca_cert=str(certs / "ca.crt"),
            tls_cert=str(certs / "server.crt"),
            tls_key=str(certs / "server.key"),
            namespace=namespace,
            kubeconfig=str(control_plane.kubeconfig),
            database_url=database_url,
        ),
        # staging demands certificates; they are given, so it starts
        env={"FLOW_ENV": "staging"},
    )
    await server.start()
    ca = (certs / "ca.crt").read_bytes()

    def channel(name: str | None) -> grpc.aio.Channel:
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=(certs / f"{name}.key").read_bytes() if name else None,
            certificate_chain=(certs / f"{name}.crt").read_bytes() if name else None,
        )
        return grpc.aio.secure_channel(server.address, creds)

    try:
        async with channel("client") as ok:
            stub = flow_pb2_grpc.FlowStub(ok)
            assert (await stub.Version(pb.VersionRequest())).version == __version__
            assert (await stub.GetListOfRacks(pb.GetListOfRacksRequest())).total == 0
        for name in (None, "rogue"):
            async with channel(name) as bad:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await flow_pb2_grpc.FlowStub(bad).Version(pb.VersionRequest(), timeout=5)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE, name
        async with grpc.aio.insecure_channel(server.address) as plain:
            with pytest.raises(grpc.aio.AioRpcError):
                await flow_pb2_grpc.FlowStub(plain).Version(pb.VersionRequest(), timeout=5)
    finally:
        await server.stop()


async def test_unreachable_database_is_unavailable(
    control_plane: ControlPlane, namespace: str
) -> None:
    server = FlowServer(
        ServeOptions(
            host="127.0.0.1",
            port=0,
            namespace=namespace,
            kubeconfig=str(control_plane.kubeconfig),
            # nothing listens on port 1
            database_url="postgresql+psycopg://flow@127.0.0.1:1/flow",
            insecure=True,
        ),
        env={"FLOW_ENV": "development"},
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as ch:
            stub = flow_pb2_grpc.FlowStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetListOfRacks(pb.GetListOfRacksRequest())
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "database is unreachable" in (err.value.details() or "")
            # bad input is still told apart before the database is needed
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetListOfRacks(
                    pb.GetListOfRacksRequest(pagination=pb.Pagination(limit=0))
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await server.stop()


# --- the CLI as a process ---------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLOW_ENV", "ALLOW_INSECURE_GRPC")}
    env["CERTDIR"] = ""
    return env


async def test_flow_serve_process_prints_ready_and_logs_each_rpc(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> None:
    migrate.upgrade(database_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nicoflow.cli.main", "serve",
        "--host", "127.0.0.1", "-p", "0", "--insecure",
        "--namespace", namespace,
        "--kubeconfig", str(control_plane.kubeconfig),
        "--database-url", database_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_clean_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        assert ready["event"] == "ready"
        host, port = ready["grpc"].rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
        async with grpc.aio.insecure_channel(ready["grpc"]) as ch:
            stub = flow_pb2_grpc.FlowStub(ch)
            assert (await stub.Version(pb.VersionRequest())).version == __version__
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetRackInfoByID(pb.GetRackInfoByIDRequest(id=pb.UUID(id="nope")))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 30)
    stderr = err_bytes.decode()
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    handled = [entry for entry in lines if entry["message"] == "flow rpc handled"]
    by_method = {entry["grpc.method"]: entry for entry in handled}
    assert by_method["Version"]["grpc.code"] == "OK"
    assert by_method["Version"]["level"] == "info"
    bad = by_method["GetRackInfoByID"]
    assert bad["grpc.code"] == "INVALID_ARGUMENT"
    assert bad["grpc.service"] == "v1.Flow"
    assert "is not a UUID" in bad["grpc.error"]
    assert bad["grpc.peer"]
    assert bad["grpc.duration_ms"] >= 0


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {"FLOW_ENV": "production"}, "requires mTLS certificates"),
        ([], {"FLOW_ENV": "production", "ALLOW_INSECURE_GRPC": "true"}, "requires mTLS"),
        (["--dev-mode"], {"FLOW_ENV": "staging"}, "--dev-mode is not allowed"),
        (["--ca-cert", "/nonexistent/ca.crt"], {}, "--tls-cert"),
        ([], {"FLOW_ENV": "qa"}, "FLOW_ENV"),
        # plaintext only when asked for, in any environment
        ([], {}, "set ALLOW_INSECURE_GRPC=true or pass --insecure"),
        ([], {"FLOW_ENV": "development"}, "no certificates for mTLS"),
        (["--insecure"], {"FLOW_ENV": "staging"}, "requires mTLS certificates"),
        (["--insecure", "--roles", "/x/roles.yaml"], {}, "--roles needs mTLS"),
    ],
)
def test_flow_serve_refuses_unsafe_configurations(
    args: list[str], env: dict[str, str], message: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nicoflow.cli.main", "serve", "-p", "0", *args],
        capture_output=True,
        text=True,
        env={**_clean_env(), **env},
        timeout=60,
    )
    assert proc.returncode != 0
    assert message in proc.stderr
    assert proc.stdout == ""
