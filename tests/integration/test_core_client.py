"""The Core client's own behaviour over real gRPC on loopback: retries,
deadlines, request-id metadata, TLS. The server here is a small stand-in for a
handful of Forge methods — it exercises the client, not Core."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from nicoflow._proto.nico import common_pb2, forge_pb2, forge_pb2_grpc
from nicoflow.core.client import (
    CoreClient,
    CoreClientSettings,
    CoreDeadlineExceeded,
    CoreError,
    RetryPolicy,
)
from nicoflow.core.tls import TlsConfigError


@dataclass
class Script:
    """What the stand-in server does, and what it saw."""

    # Method name -> list of status codes to fail with before succeeding.
    failures: dict[str, list[grpc.StatusCode]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    request_ids: dict[str, list[str | None]] = field(default_factory=dict)
    delay: float = 0.0

    async def enter(self, method: str, context: Any) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        md = dict(context.invocation_metadata())
        self.request_ids.setdefault(method, []).append(md.get("x-request-id"))
        queue = self.failures.get(method, [])
        if queue:
            await context.abort(queue.pop(0), f"scripted {method} failure")


class StandIn(forge_pb2_grpc.ForgeServicer):
    def __init__(self, script: Script) -> None:
        self.s = script

    async def Version(self, request: Any, context: Any) -> forge_pb2.BuildInfo:
        await self.s.enter("Version", context)
        return forge_pb2.BuildInfo(build_version="stand-in-1")

    async def GetComponentInventory(self, request: Any, context: Any) -> Any:
        await self.s.enter("GetComponentInventory", context)
        await asyncio.sleep(self.s.delay)
        return forge_pb2.GetComponentInventoryResponse()

    async def ComponentPowerControl(self, request: Any, context: Any) -> Any:
        await self.s.enter("ComponentPowerControl", context)
        ids = [m.id for m in request.machine_ids.machine_ids]
        return forge_pb2.ComponentPowerControlResponse(
            results=[forge_pb2.ComponentResult(component_id=i) for i in ids]
        )

    async def UpdatePowerOption(self, request: Any, context: Any) -> Any:
        await self.s.enter("UpdatePowerOption", context)
        return forge_pb2.PowerOptionResponse()

    async def AdminPowerControl(self, request: Any, context: Any) -> Any:
        await self.s.enter("AdminPowerControl", context)
        await asyncio.sleep(self.s.delay)
        return forge_pb2.AdminPowerControlResponse()


@dataclass
class Server:
    port: int
    script: Script
    server: Any


async def _start(script: Script, creds: Any = None) -> Server:
    server = grpc.aio.server()
    forge_pb2_grpc.add_ForgeServicer_to_server(StandIn(script), server)  # type: ignore[abstract]
    if creds is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    return Server(port, script, server)


@pytest.fixture
async def plain_server() -> AsyncIterator[Server]:
    srv = await _start(Script())
    yield srv
    await srv.server.stop(None)


def _fast(port: int, **kw: Any) -> CoreClientSettings:
    return CoreClientSettings(
        target=f"127.0.0.1:{port}",
        tls=None,
        allow_insecure=True,
        retry=RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02),
        **kw,
    )


async def test_transient_unavailable_read_is_retried_to_success(plain_server: Server) -> None:
    plain_server.script.failures["Version"] = [grpc.StatusCode.UNAVAILABLE] * 2
    seen: list[tuple[str, grpc.StatusCode]] = []
    async with CoreClient.session(
        _fast(plain_server.port), on_call=lambda m, c, s: seen.append((m, c))
    ) as core:
        info = await core.version()
    assert info.build_version == "stand-in-1"
    assert plain_server.script.calls["Version"] == 3
    # The hook saw every attempt, with its code.
    assert [c for _, c in seen] == [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.OK,
    ]
    assert all(m == "/forge.Forge/Version" for m, _ in seen)


async def test_read_gives_up_after_max_attempts(plain_server: Server) -> None:
    plain_server.script.failures["Version"] = [grpc.StatusCode.UNAVAILABLE] * 10
    async with CoreClient.session(_fast(plain_server.port)) as core:
        with pytest.raises(CoreError) as err:
            await core.version()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert err.value.attempts == 4
    assert plain_server.script.calls["Version"] == 4


async def test_non_transient_error_is_not_retried(plain_server: Server) -> None:
    plain_server.script.failures["Version"] = [grpc.StatusCode.INVALID_ARGUMENT]
    async with CoreClient.session(_fast(plain_server.port)) as core:
        with pytest.raises(CoreError) as err:
            await core.version()
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert plain_server.script.calls["Version"] == 1


async def test_state_changing_call_is_not_retried_by_default(plain_server: Server) -> None:
    plain_server.script.failures["ComponentPowerControl"] = [grpc.StatusCode.UNAVAILABLE]
    request = forge_pb2.ComponentPowerControlRequest(
        machine_ids=common_pb2.MachineIdList(machine_ids=[common_pb2.MachineId(id="m1")]),
        action=common_pb2.SYSTEM_POWER_CONTROL_ON,
    )
    async with CoreClient.session(_fast(plain_server.port)) as core:
        with pytest.raises(CoreError) as err:
            await core.component_power_control(request, idempotency_key="task-1/power/0")
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert plain_server.script.calls["ComponentPowerControl"] == 1


async def test_state_changing_call_marked_idempotent_is_retried(plain_server: Server) -> None:
    plain_server.script.failures["ComponentPowerControl"] = [grpc.StatusCode.UNAVAILABLE]
    request = forge_pb2.ComponentPowerControlRequest(
        machine_ids=common_pb2.MachineIdList(machine_ids=[common_pb2.MachineId(id="m1")]),
    )
    async with CoreClient.session(_fast(plain_server.port)) as core:
        resp = await core.component_power_control(
            request, idempotency_key="task-1/power/0", idempotent=True
        )
    assert [r.component_id for r in resp.results] == ["m1"]
    assert plain_server.script.calls["ComponentPowerControl"] == 2
    # Both attempts carried the same key, so a server can recognise the repeat.
    assert plain_server.script.request_ids["ComponentPowerControl"] == ["task-1/power/0"] * 2


async def test_idempotent_by_nature_write_is_retried(plain_server: Server) -> None:
    plain_server.script.failures["UpdatePowerOption"] = [grpc.StatusCode.ABORTED]
    async with CoreClient.session(_fast(plain_server.port)) as core:
        await core.update_power_option(
            forge_pb2.PowerOptionUpdateRequest(machine_id=common_pb2.MachineId(id="m1")),
            idempotency_key="k1",
        )
    assert plain_server.script.calls["UpdatePowerOption"] == 2


async def test_request_id_metadata_sent_on_writes_only(plain_server: Server) -> None:
    async with CoreClient.session(_fast(plain_server.port)) as core:
        await core.admin_power_control(
            forge_pb2.AdminPowerControlRequest(machine_id="m1"),
            idempotency_key="task-uid-7/stage-1/step-0/batch-0/attempt-1",
        )
        await core.version()
    assert plain_server.script.request_ids["AdminPowerControl"] == [
        "task-uid-7/stage-1/step-0/batch-0/attempt-1"
    ]
    assert plain_server.script.request_ids["Version"] == [None]


async def test_write_requires_idempotency_key(plain_server: Server) -> None:
    async with CoreClient.session(_fast(plain_server.port)) as core:
        with pytest.raises(ValueError, match="idempotency key"):
            await core.admin_power_control(
                forge_pb2.AdminPowerControlRequest(machine_id="m1"), idempotency_key=""
            )
    assert "AdminPowerControl" not in plain_server.script.calls


async def test_deadline_exceeded_is_a_clear_error(plain_server: Server) -> None:
    plain_server.script.delay = 1.0
    settings = _fast(plain_server.port, timeout=0.2)
    async with CoreClient.session(settings) as core:
        with pytest.raises(CoreDeadlineExceeded) as err:
            # A write: a deadline on a write is never retried (it may have been applied).
            await core.admin_power_control(
                forge_pb2.AdminPowerControlRequest(machine_id="m1"), idempotency_key="k"
            )
    assert "AdminPowerControl" in str(err.value)
    assert "0.2 s deadline" in str(err.value)
    assert plain_server.script.calls["AdminPowerControl"] == 1


async def test_deadline_exceeded_read_is_retried_then_reported(plain_server: Server) -> None:
    plain_server.script.delay = 1.0
    settings = _fast(plain_server.port)
    async with CoreClient.session(settings) as core:
        with pytest.raises(CoreDeadlineExceeded) as err:
            await core.get_component_inventory(
                forge_pb2.GetComponentInventoryRequest(), deadline=0.1
            )
    assert err.value.attempts == 4
    assert plain_server.script.calls["GetComponentInventory"] == 4


def test_plaintext_refused_without_flag(tmp_path: Path) -> None:
    env = {"NICO_CORE_API_URL": "127.0.0.1:1", "CERTDIR": str(tmp_path)}
    with pytest.raises(TlsConfigError, match="ALLOW_INSECURE_GRPC=true"):
        CoreClientSettings.from_env(env)
    with pytest.raises(TlsConfigError, match="refusing plaintext"):
        CoreClientSettings(target="127.0.0.1:1", tls=None)
    allowed = CoreClientSettings.from_env({**env, "ALLOW_INSECURE_GRPC": "true"})
    assert allowed.tls is None
    assert allowed.target == "127.0.0.1:1"


def test_core_address_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NICO_CORE_API_URL"):
        CoreClientSettings.from_env({"ALLOW_INSECURE_GRPC": "true"})


# --- TLS -----------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(d: Path, name: str, cn: str, ca: str, usage: str, san: str | None) -> None:
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d,
    )  # fmt: skip
    ext = d / f"{name}.ext"
    lines = [f"extendedKeyUsage={usage}", "basicConstraints=CA:FALSE"]
    if san:
        lines.append(f"subjectAltName={san}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", "-extfile", ext.name, cwd=d,
    )  # fmt: skip


def _ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "1", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "other-ca")
    _issue(d, "server", "localhost", "ca", "serverAuth", "DNS:localhost,IP:127.0.0.1")
    _issue(d, "client", "flow", "ca", "clientAuth", None)
    # A SPIFFE-style cert dir for the client.
    certdir = d / "certdir"
    certdir.mkdir()
    (certdir / "ca.crt").write_bytes((d / "ca.crt").read_bytes())
    (certdir / "tls.crt").write_bytes((d / "client.crt").read_bytes())
    (certdir / "tls.key").write_bytes((d / "client.key").read_bytes())
    return d


@pytest.fixture
async def tls_server(pki: Path) -> AsyncIterator[Server]:
    creds = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.crt").read_bytes())],
        root_certificates=(pki / "ca.crt").read_bytes(),
        require_client_auth=True,
    )
    srv = await _start(Script(), creds)
    yield srv
    await srv.server.stop(None)


async def test_mtls_from_cert_dir(tls_server: Server, pki: Path) -> None:
    settings = CoreClientSettings.from_env(
        {"NICO_CORE_API_URL": f"127.0.0.1:{tls_server.port}", "CERTDIR": str(pki / "certdir")}
    )
    assert settings.tls is not None
    assert settings.tls.mutual
    async with CoreClient.session(settings) as core:
        info = await core.version()
    assert info.build_version == "stand-in-1"


async def test_mtls_rejects_client_without_certificate(tls_server: Server, pki: Path) -> None:
    settings = CoreClientSettings.from_env(
        {},
        target=f"127.0.0.1:{tls_server.port}",
        ca_cert=pki / "ca.crt",
        retry=RetryPolicy(max_attempts=1),
        timeout=5,
    )
    assert settings.tls is not None
    assert not settings.tls.mutual
    async with CoreClient.session(settings) as core:
        with pytest.raises(CoreError) as err:
            await core.version()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert "Version" not in tls_server.script.calls


async def test_tls_rejects_server_signed_by_unknown_ca(tls_server: Server, pki: Path) -> None:
    settings = CoreClientSettings.from_env(
        {},
        target=f"127.0.0.1:{tls_server.port}",
        ca_cert=pki / "other-ca.crt",
        tls_cert=pki / "client.crt",
        tls_key=pki / "client.key",
        retry=RetryPolicy(max_attempts=1),
        timeout=5,
    )
    async with CoreClient.session(settings) as core:
        with pytest.raises(CoreError) as err:
            await core.version()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert "Version" not in tls_server.script.calls


def test_incomplete_cert_dir_is_an_error(tmp_path: Path, pki: Path) -> None:
    (tmp_path / "ca.crt").write_bytes((pki / "ca.crt").read_bytes())
    with pytest.raises(TlsConfigError, match=r"missing tls\.crt, tls\.key"):
        CoreClientSettings.from_env(
            {"NICO_CORE_API_URL": "x:1", "CERTDIR": str(tmp_path), "ALLOW_INSECURE_GRPC": "true"}
        )
