"""The simulator started in the test's own process: real gRPC on loopback,
time driven by a fake clock, TLS and mTLS."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from nicoflow._proto.nico import common_pb2, forge_pb2, forge_pb2_grpc
from nicoflow.simulator.clock import FakeClock
from nicoflow.simulator.server import Simulator, TlsFiles
from nicoflow.simulator.settings import SimSettings
from nicoflow.simulator.site import generate_site


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, FakeClock]]:
    clock = FakeClock()
    settings = SimSettings(power_latency=3.0, firmware_latency=20.0)
    async with Simulator(generate_site(2, seed=4), settings=settings, clock=clock) as s:
        yield s, clock


async def test_firmware_job_over_grpc_follows_the_clock(sim: tuple[Simulator, FakeClock]) -> None:
    s, clock = sim
    shelf = s.world.shelves[0].id
    target = forge_pb2.PowerShelfIdList(ids=[common_pb2.PowerShelfId(id=shelf)])
    async with grpc.aio.insecure_channel(s.address) as ch:
        forge = forge_pb2_grpc.ForgeStub(ch)
        resp = await forge.UpdateComponentFirmware(
            forge_pb2.UpdateComponentFirmwareRequest(
                power_shelves=forge_pb2.UpdatePowerShelfFirmwareTarget(
                    power_shelf_ids=target, components=[forge_pb2.POWER_SHELF_COMPONENT_PMC]
                ),
                target_version="1.5.0",
            ),
            metadata=[("x-request-id", "fw/1")],
        )
        assert resp.results[0].status == forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS
        req = forge_pb2.GetComponentFirmwareStatusRequest(power_shelf_ids=target)
        states = []
        for _ in range(5):
            (status,) = (await forge.GetComponentFirmwareStatus(req)).statuses
            states.append(status.state)
            clock.advance(5.0)
        assert states == [
            forge_pb2.FW_STATE_QUEUED,
            forge_pb2.FW_STATE_IN_PROGRESS,
            forge_pb2.FW_STATE_IN_PROGRESS,
            forge_pb2.FW_STATE_IN_PROGRESS,
            forge_pb2.FW_STATE_COMPLETED,
        ]
        inv = await forge.GetComponentInventory(
            forge_pb2.GetComponentInventoryRequest(power_shelf_ids=target)
        )
        assert inv.entries[0].report.firmware_versions["pmc"] == "1.5.0"
    (entry,) = s.ledger.entries(method="UpdateComponentFirmware")
    assert (entry.component_id, entry.request_id) == (shelf, "fw/1")
    assert entry.details["targets"] == {"pmc": "1.5.0"}


async def test_in_process_fault_changes_take_effect(sim: tuple[Simulator, FakeClock]) -> None:
    s, _ = sim
    async with grpc.aio.insecure_channel(s.address) as ch:
        forge = forge_pb2_grpc.ForgeStub(ch)
        s.set_faults({"errors": [{"method": "Version", "code": "RESOURCE_EXHAUSTED"}]})
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await forge.Version(forge_pb2.VersionRequest())
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        s.set_faults({"leaks": [s.world.switches[3].serial]})
        await forge.Version(forge_pb2.VersionRequest())
        found = await forge.FindSwitchIds(
            forge_pb2.SwitchSearchFilter(
                only_with_health_alert="hardware-health.tray-leak-detection"
            )
        )
        assert [i.id for i in found.ids] == [s.world.switches[3].id]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=sim-test-ca",
        cwd=d,
    )
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{name}.ext").write_text(ext)
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            f"{name}.crt",
            "-extfile",
            f"{name}.ext",
            cwd=d,
        )
    return d


async def test_mtls_requires_a_client_certificate(certs: Path) -> None:
    tls = TlsFiles(cert=certs / "server.crt", key=certs / "server.key", ca=certs / "ca.crt")
    ca = (certs / "ca.crt").read_bytes()
    async with Simulator(generate_site(1), tls=tls, control_port=None) as s:
        assert s.control_url is None
        good = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=(certs / "client.key").read_bytes(),
            certificate_chain=(certs / "client.crt").read_bytes(),
        )
        async with grpc.aio.secure_channel(s.address, good) as ch:
            info = await forge_pb2_grpc.ForgeStub(ch).Version(
                forge_pb2.VersionRequest(), timeout=10
            )
            assert info.build_version
        anonymous = grpc.ssl_channel_credentials(root_certificates=ca)
        async with grpc.aio.secure_channel(s.address, anonymous) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await forge_pb2_grpc.ForgeStub(ch).Version(forge_pb2.VersionRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(s.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError):
                await forge_pb2_grpc.ForgeStub(ch).Version(forge_pb2.VersionRequest(), timeout=5)


async def test_server_side_tls_without_client_certificates(certs: Path) -> None:
    tls = TlsFiles(cert=certs / "server.crt", key=certs / "server.key")
    async with Simulator(generate_site(1), tls=tls) as s:
        creds = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.crt").read_bytes())
        async with grpc.aio.secure_channel(s.address, creds) as ch:
            ids = await forge_pb2_grpc.ForgeStub(ch).FindMachineIds(
                forge_pb2.MachineSearchConfig(), timeout=10
            )
        assert len(ids.machine_ids) == 18
