"""The chart's gRPC health script (files/health_probe.py, the API's probe under
mTLS and the `helm test` Pod) against a real `flow serve`, plaintext and mTLS
with one certificate used as server and client identity, as in the pod."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chart_support import CHART

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.inventory import migrate
from nicoflow.service.server import FlowServer, ServeOptions

SCRIPT = CHART / "files" / "health_probe.py"
NAME = "flow-api.nico-flow.svc"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def cert_dir(tmp_path: Path) -> Path:
    """ca.crt, tls.crt, tls.key as the chart's TLS Secret holds them: one identity
    good for serving (SAN = the Service name) and for calling."""
    d = tmp_path / "spiffe"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=flow-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={NAME}",
             "-keyout", "tls.key", "-out", "tls.csr", cwd=d)  # fmt: skip
    (d / "ext").write_text(f"subjectAltName=DNS:{NAME}\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-out", "tls.crt", "-extfile", "ext",
             cwd=d)  # fmt: skip
    return d


@pytest.fixture
async def server_factory(
    control_plane: ControlPlane, database_url: str, namespace: str
) -> AsyncIterator[list[FlowServer]]:
    migrate.upgrade(database_url)
    servers: list[FlowServer] = []
    yield servers
    for server in servers:
        await server.stop()


async def _start(
    servers: list[FlowServer],
    control_plane: ControlPlane,
    database_url: str,
    namespace: str,
    cert_dir: Path | None,
) -> FlowServer:
    env = {"FLOW_ENV": "production", "CERTDIR": str(cert_dir)} if cert_dir else {}
    server = FlowServer(
        ServeOptions(
            host="127.0.0.1",
            port=0,
            namespace=namespace,
            kubeconfig=str(control_plane.kubeconfig),
            database_url=database_url,
        ),
        env=env or {"FLOW_ENV": "development", "ALLOW_INSECURE_GRPC": "true"},
    )
    await server.start()
    servers.append(server)
    return server


async def _probe(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_plaintext_probe(
    server_factory: list[FlowServer],
    control_plane: ControlPlane,
    database_url: str,
    namespace: str,
) -> None:
    server = await _start(server_factory, control_plane, database_url, namespace, None)
    code, out = await _probe(server.address)
    assert (code, out.strip()) == (0, f"{server.address}: SERVING")
    code, out = await _probe(server.address, "--service=v1.Flow")
    assert code == 0
    code, out = await _probe(server.address, "--service=no.Such")
    assert code == 1
    assert "NOT_FOUND" in out


async def test_mtls_probe_with_the_pods_own_identity(
    server_factory: list[FlowServer],
    control_plane: ControlPlane,
    database_url: str,
    namespace: str,
    cert_dir: Path,
) -> None:
    server = await _start(server_factory, control_plane, database_url, namespace, cert_dir)
    ok = await _probe(server.address, f"--cert-dir={cert_dir}", f"--server-name={NAME}")
    assert ok == (0, f"{server.address}: SERVING\n")
    # without the certificate's name the TLS check fails (hence tls.serverName)
    code, _ = await _probe(server.address, f"--cert-dir={cert_dir}", "--timeout=3")
    assert code == 1
    # plaintext against an mTLS server fails
    code, _ = await _probe(server.address, "--timeout=3")
    assert code == 1
