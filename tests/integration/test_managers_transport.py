"""How the managers behave when the wire to NICo Core misbehaves, against the
in-process simulator's fault injection: transient errors retried only where
repeating is safe, deadlines, and TLS."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from sim_managers import CT, POWER_LATENCY, bench, keyed, make_pki, plaintext

from nicoflow.core.client import CoreClientSettings, CoreDeadlineExceeded, CoreError, RetryPolicy
from nicoflow.core.managers.base import FirmwareControlTaskInfo, PowerControlTaskInfo
from nicoflow.core.managers.results import PowerStatus
from nicoflow.domain.types import ComponentType, OperationCode
from nicoflow.simulator.power import Power
from nicoflow.simulator.server import Simulator, TlsFiles

Op = OperationCode
SC = grpc.StatusCode


def transient(method: str, times: int = 2, when: str = "before") -> dict[str, object]:
    return {"errors": [{"method": method, "code": "UNAVAILABLE", "times": times, "when": when}]}


@pytest.mark.parametrize(
    ("ctype", "compute", "method"),
    [
        pytest.param(CT.COMPUTE, "nicolegacy", "GetPowerOptions", id="compute-nicolegacy"),
        pytest.param(CT.COMPUTE, "nico", "GetComponentInventory", id="compute-nico"),
        pytest.param(CT.NVSWITCH, "nico", "GetComponentInventory", id="nvswitch"),
        pytest.param(CT.POWERSHELF, "nico", "GetComponentInventory", id="powershelf"),
    ],
)
async def test_transient_error_on_a_read_is_retried_to_success(
    ctype: ComponentType, compute: str, method: str
) -> None:
    async with bench(compute=compute, faults=transient(method)) as b:
        target = b.target(ctype, 2)
        status = await b.manager(ctype).get_power_status(target)
        assert {r.state for r in status.values()} == {PowerStatus.ON}
        assert b.attempts(method) == [SC.UNAVAILABLE, SC.UNAVAILABLE, SC.OK]


@pytest.mark.parametrize(
    ("ctype", "method"),
    [(CT.NVSWITCH, "ComponentPowerControl"), (CT.COMPUTE, "ComponentPowerControl")],
)
async def test_transient_error_on_a_command_surfaces_without_a_second_call(
    ctype: ComponentType, method: str
) -> None:
    async with bench(compute="nico", faults=transient(method)) as b:
        target = b.target(ctype, 2)
        with pytest.raises(CoreError) as err:
            await b.manager(ctype).power_control(
                target, PowerControlTaskInfo(Op.POWER_OFF, "task-t")
            )
        assert err.value.code == SC.UNAVAILABLE
        assert err.value.attempts == 1
        assert f"NICo Core {method} failed: UNAVAILABLE: injected fault" in str(err.value)
        assert b.attempts(method) == [SC.UNAVAILABLE]
        entries = b.writes(method=method)
        assert len({e.call for e in entries}) == 1
        assert {(e.code, e.applied) for e in entries} == {("UNAVAILABLE", False)}
        keyed(entries, "task-t")
        assert {b.sim.world.power(n) for n in b.nodes(ctype, 2)} == {Power.ON}


async def test_firmware_command_is_not_repeated_by_the_client() -> None:
    async with bench(faults=transient("UpdateComponentFirmware", times=1)) as b:
        with pytest.raises(CoreError, match="UpdateComponentFirmware failed: UNAVAILABLE"):
            await b.manager(CT.POWERSHELF).firmware_control(
                b.target(CT.POWERSHELF, 2), FirmwareControlTaskInfo("task-fw")
            )
        assert b.attempts("UpdateComponentFirmware") == [SC.UNAVAILABLE]
        assert all(b.sim.world.job(n) is None for n in b.nodes(CT.POWERSHELF, 2))


async def test_lost_reply_is_not_retried_so_the_command_lands_once() -> None:
    """The call reached the hardware but its answer was lost: the client must
    not send it again (the engine checks Core's status before any repeat)."""
    async with bench(faults=transient("ComponentPowerControl", times=1, when="after")) as b:
        target = b.target(CT.NVSWITCH, 2)
        manager = b.manager(CT.NVSWITCH)
        with pytest.raises(CoreError):
            await manager.power_control(target, PowerControlTaskInfo(Op.POWER_OFF, "task-lost"))
        entries = b.writes(method="ComponentPowerControl")
        assert len({e.call for e in entries}) == 1
        assert {(e.code, e.applied) for e in entries} == {("UNAVAILABLE", True)}
        status = await manager.get_power_status(target)
        assert {r.state for r in status.values()} == {PowerStatus.POWERING_OFF}
        assert b.sim.ledger.duplicates() == []


async def test_nicolegacy_retries_only_its_idempotent_writes() -> None:
    faults = {
        "errors": [
            {"method": "UpdatePowerOption", "code": "UNAVAILABLE", "times": 1},
            {"method": "AdminPowerControl", "code": "UNAVAILABLE", "times": 1},
        ]
    }
    async with bench(compute="nicolegacy", faults=faults) as b:
        target = b.target(CT.COMPUTE, 2)
        first, second = target.component_ids
        results = await b.manager(CT.COMPUTE).power_control(
            target, PowerControlTaskInfo(Op.POWER_OFF, "task-l")
        )
        # The first machine's BMC command failed once: a per-machine failure,
        # not retried; the second machine went through.
        assert not results[first].ok
        assert "AdminPowerControl failed: UNAVAILABLE" in results[first].error
        assert results[second].ok
        admin = b.writes(method="AdminPowerControl")
        assert [(e.component_id, e.code) for e in admin] == [
            (first, "UNAVAILABLE"),
            (second, "OK"),
        ]
        # Setting the desired power state is safe to repeat: retried with the
        # same request id, and applied once.
        options = b.writes(method="UpdatePowerOption", component_id=first)
        assert [(e.request_id, e.code, e.applied) for e in options] == [
            (f"task-l/{first}/power-option", "UNAVAILABLE", False),
            (f"task-l/{first}/power-option", "OK", True),
        ]
        assert b.sim.ledger.duplicates() == []
        # The failed machine's override was still removed.
        assert not b.sim.world.node(first).overrides
        b.advance(POWER_LATENCY)
        assert b.sim.world.power(b.sim.world.node(first)) == Power.ON
        assert b.sim.world.power(b.sim.world.node(second)) == Power.OFF


async def test_deadline_exceeded_is_a_clear_error() -> None:
    faults = {"latency": {"GetComponentInventory": 0.5, "ComponentPowerControl": 0.5}}
    async with bench(faults=faults, client=lambda s: plaintext(s, timeout=0.2, attempts=2)) as b:
        target = b.target(CT.NVSWITCH, 1)
        manager = b.manager(CT.NVSWITCH)
        # A read may be repeated, and was, before giving up.
        with pytest.raises(CoreDeadlineExceeded) as err:
            await manager.get_power_status(target)
        assert str(err.value) == (
            "NICo Core GetComponentInventory did not answer within its 0.2 s deadline "
            "(after 2 attempts)"
        )
        assert b.attempts("GetComponentInventory") == [SC.DEADLINE_EXCEEDED] * 2
        # A command that ran out of time may have been applied: never repeated.
        with pytest.raises(CoreDeadlineExceeded) as err:
            await manager.power_control(target, PowerControlTaskInfo(Op.POWER_OFF, "task-d"))
        assert str(err.value) == (
            "NICo Core ComponentPowerControl did not answer within its 0.2 s deadline"
        )
        assert err.value.code == SC.DEADLINE_EXCEEDED
        assert b.attempts("ComponentPowerControl") == [SC.DEADLINE_EXCEEDED]


# --- TLS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("managers-pki"))


def mtls_server(pki: Path) -> TlsFiles:
    return TlsFiles(cert=pki / "server.crt", key=pki / "server.key", ca=pki / "ca.crt")


async def test_managers_over_mtls_with_a_cert_dir(pki: Path) -> None:
    def from_cert_dir(sim: Simulator) -> CoreClientSettings:
        return CoreClientSettings.from_env(
            {"NICO_CORE_API_URL": sim.address, "CERTDIR": str(pki / "certdir")},
            timeout=5,
            retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02),
        )

    async with bench(tls=mtls_server(pki), client=from_cert_dir) as b:
        assert b.core.settings.tls is not None
        assert b.core.settings.tls.mutual
        target = b.target(CT.NVSWITCH, 2)
        manager = b.manager(CT.NVSWITCH)
        await manager.power_control(target, PowerControlTaskInfo(Op.FORCE_POWER_OFF, "task-tls"))
        status = await manager.get_power_status(target)
        assert {r.state for r in status.values()} == {PowerStatus.OFF}
        keyed(b.writes(), "task-tls")


async def test_plaintext_client_to_a_tls_server_fails_clearly(pki: Path) -> None:
    async with bench(tls=mtls_server(pki), client=lambda s: plaintext(s, attempts=2)) as b:
        with pytest.raises(CoreError) as err:
            await b.manager(CT.NVSWITCH).get_power_status(b.target(CT.NVSWITCH, 1))
        assert err.value.code == SC.UNAVAILABLE
        message = str(err.value)
        assert "GetComponentInventory failed after 2 attempts: UNAVAILABLE" in message
        assert "the client connected without TLS" in message
        assert "expects TLS, give the client certificates via $CERTDIR" in message
        assert len(b.sim.ledger) == 0


async def test_client_without_certificate_is_refused_by_mtls(pki: Path) -> None:
    def server_auth_only(sim: Simulator) -> CoreClientSettings:
        return CoreClientSettings.from_env(
            {}, target=sim.address, ca_cert=pki / "ca.crt", timeout=5,
            retry=RetryPolicy(max_attempts=1),
        )  # fmt: skip

    async with bench(tls=mtls_server(pki), client=server_auth_only) as b:
        with pytest.raises(CoreError) as err:
            await b.manager(CT.POWERSHELF).power_control(
                b.target(CT.POWERSHELF, 1), PowerControlTaskInfo(Op.POWER_OFF, "task-anon")
            )
        assert err.value.code == SC.UNAVAILABLE
        # No hint about plaintext: this client did speak TLS.
        assert "without TLS" not in str(err.value)
        assert len(b.sim.ledger) == 0
