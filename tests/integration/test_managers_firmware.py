"""Firmware through every component manager against the in-process NICo Core
simulator over real gRPC: jobs moving queued → in progress → verifying →
completed (or failed), sub-target selection, nicolegacy's auto-update window,
DPU reprovisioning and the switch firmware consistency check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sim_managers import CT, DPU_LATENCY, FIRMWARE_LATENCY, POWER_LATENCY, SEED, Bench, bench, keyed

from nicoflow.core.managers.base import (
    Capability,
    FirmwareControlTaskInfo,
    ManagerError,
    Target,
    UnsupportedCapability,
)
from nicoflow.core.managers.compute_shared import ComputeManagerBase
from nicoflow.core.managers.dpu_reprovision import (
    HOST_UPDATE_ALERT,
    HOST_UPDATE_SOURCE,
    DpuReprovisioner,
)
from nicoflow.core.managers.nvswitch import NvSwitchManager
from nicoflow.core.managers.results import MISSING_FROM_CORE, FirmwareState
from nicoflow.domain.types import ComponentType, Leftover
from nicoflow.simulator.catalog import DESIRED_FIRMWARE, SHIPPED_FIRMWARE, Family
from nicoflow.simulator.site import generate_site

FS = FirmwareState
# Phases of a FIRMWARE_LATENCY job: 10% queued, 70% installing, 20% verifying.
QUEUED_UNTIL = FIRMWARE_LATENCY * 0.1
VERIFY_FROM = FIRMWARE_LATENCY * 0.8


async def fw_states(b: Bench, target: Target) -> dict[str, FirmwareState]:
    status = await b.manager(target.type).get_firmware_status(target)
    assert list(status) == list(target.component_ids)
    return {cid: r.state for cid, r in status.items()}


async def progression(b: Bench, target: Target, started: float) -> list[set[FirmwareState]]:
    """Readings across one job's life, at times relative to its start."""
    assert b.clock is not None
    out = []
    for at in (0.0, QUEUED_UNTIL + 1, VERIFY_FROM + 1, FIRMWARE_LATENCY):
        b.advance(started + at - b.clock.now())
        out.append(set((await fw_states(b, target)).values()))
    return out


FULL_LIFE = [{FS.QUEUED}, {FS.IN_PROGRESS}, {FS.VERIFYING}, {FS.COMPLETED}]


@pytest.mark.parametrize(
    ("ctype", "sub_targets", "version", "expected"),
    [
        pytest.param(CT.NVSWITCH, ("bmc",), "88.0002.2000", {"bmc": "88.0002.2000"}, id="sw-bmc"),
        pytest.param(
            CT.NVSWITCH,
            (" NVOS", "cpld"),
            "",
            {
                "nvos": DESIRED_FIRMWARE[Family.NVSWITCH]["nvos"],
                "cpld": DESIRED_FIRMWARE[Family.NVSWITCH]["cpld"],
            },
            id="sw-desired-bundle-parts",
        ),
        pytest.param(CT.POWERSHELF, ("pmc",), "1.5.0", {"pmc": "1.5.0"}, id="shelf-pmc"),
        pytest.param(CT.POWERSHELF, (), "1.5.0", {"pmc": "1.5.0"}, id="shelf-default-is-pmc"),
        pytest.param(CT.POWERSHELF, ("psu",), "2.9.0", {"psu": "2.9.0"}, id="shelf-psu"),
        pytest.param(
            CT.COMPUTE, ("bios", "GPU"), "9.9.9", {"bios": "9.9.9", "gpu": "9.9.9"}, id="tray"
        ),
    ],
)
async def test_dispatch_firmware_job_lifecycle(
    ctype: ComponentType, sub_targets: tuple[str, ...], version: str, expected: dict[str, str]
) -> None:
    async with bench(compute="nico") as b:
        target = b.target(ctype, 2)
        assert set((await fw_states(b, target)).values()) == {FS.UNKNOWN}  # no job yet
        assert b.clock is not None
        started = b.clock.now()
        results = await b.manager(ctype).firmware_control(
            target,
            FirmwareControlTaskInfo(
                idempotency_key="task-fw", sub_targets=sub_targets, target_version=version
            ),
        )
        assert list(results) == list(target.component_ids)
        assert all(r.ok for r in results.values()), results
        assert await progression(b, target, started) == FULL_LIFE

        # The components now run what was asked for, and only that changed.
        for node in b.nodes(ctype, 2):
            firmware = b.sim.world.firmware(node)
            for part, shipped in SHIPPED_FIRMWARE[node.family].items():
                assert firmware[part] == expected.get(part, shipped), part
        entries = b.writes()
        assert {e.method for e in entries} == {"UpdateComponentFirmware"}
        assert sorted(e.component_id for e in entries) == sorted(target.component_ids)
        assert all(e.details["targets"] == expected for e in entries)
        assert {e.request_id for e in entries} == {"task-fw/firmware"}


@pytest.mark.parametrize(
    ("ctype", "compute"),
    [
        pytest.param(CT.NVSWITCH, "nico", id="nvswitch"),
        pytest.param(CT.POWERSHELF, "nico", id="powershelf"),
        pytest.param(CT.COMPUTE, "nico", id="compute-nico"),
        pytest.param(CT.COMPUTE, "nicolegacy", id="compute-nicolegacy"),
    ],
)
async def test_failing_component_ends_failed_with_an_error(
    ctype: ComponentType, compute: str
) -> None:
    probe = _ids(ctype)
    async with bench(compute=compute, faults={"failing": [probe[0]]}) as b:
        target = b.target(ctype, 2)
        assert target.component_ids == probe
        assert b.clock is not None
        now = datetime.fromtimestamp(b.clock.now(), UTC)
        results = await b.manager(ctype).firmware_control(
            target,
            FirmwareControlTaskInfo(
                idempotency_key="task-fail", start=now, end=now + timedelta(hours=1)
            ),
        )
        # The job was accepted; it fails while flashing.
        assert all(r.ok for r in results.values()), results
        b.advance(FIRMWARE_LATENCY)
        status = await b.manager(ctype).get_firmware_status(target)
        bad, good = status[probe[0]], status[probe[1]]
        assert bad.state == FS.FAILED
        assert "failed" in bad.error
        assert probe[0] in bad.error or "FailedFirmwareUpgrade" in bad.error
        assert good.state == FS.COMPLETED
        assert good.error == ""


def _ids(ctype: ComponentType) -> tuple[str, ...]:
    site = generate_site(1, seed=SEED)
    return tuple(c.core_id for c in site.racks[0].of_type(ctype))[:2]


@pytest.mark.parametrize(
    ("ctype", "compute", "name", "allowed"),
    [
        (CT.NVSWITCH, "nico", "psu", "allowed: bmc, cpld, bios, nvos"),
        (CT.POWERSHELF, "nico", "bmc", "allowed: pmc, psu"),
        (CT.COMPUTE, "nico", "pmc", "allowed: bmc, bios, cec, nic, cpld_mb"),
        (CT.COMPUTE, "nicolegacy", "bmcc", "combined_bmc_uefi, gpu, cx7, dpu"),
    ],
)
async def test_unknown_subtarget_is_a_clear_manager_error(
    ctype: ComponentType, compute: str, name: str, allowed: str
) -> None:
    async with bench(compute=compute) as b:
        with pytest.raises(ManagerError) as err:
            await b.manager(ctype).firmware_control(
                b.target(ctype, 2),
                FirmwareControlTaskInfo(idempotency_key="k", sub_targets=("bmc", name)),
            )
        assert f"sub-target(s) {name}" in str(err.value)
        assert allowed in str(err.value)
        assert len(b.sim.ledger) == 0


async def test_switch_update_skipped_when_desired_firmware_already_runs() -> None:
    async with bench() as b:
        target = b.target(CT.NVSWITCH, 3)
        nodes = b.nodes(CT.NVSWITCH, 3)
        for node in nodes:
            b.sim.world.set_firmware(node, DESIRED_FIRMWARE[Family.NVSWITCH])
        manager = b.manager(CT.NVSWITCH)
        results = await manager.firmware_control(target, FirmwareControlTaskInfo("task-noop"))
        assert all(r.ok for r in results.values())
        assert len(b.sim.ledger) == 0
        # One switch behind: the update goes out to that switch only; the
        # others are done (already at the desired bundle) without a job.
        b.sim.world.set_firmware(nodes[1], {"nvos": "25.02.0001"})
        results = await manager.firmware_control(target, FirmwareControlTaskInfo("task-needed"))
        entries = b.writes(method="UpdateComponentFirmware")
        assert [e.component_id for e in entries] == [nodes[1].id]
        keyed(entries, "task-needed")
        assert {cid: r.done for cid, r in results.items()} == {
            nodes[0].id: True,
            nodes[1].id: False,
            nodes[2].id: True,
        }


@pytest.mark.parametrize("ctype", [CT.NVSWITCH, CT.POWERSHELF, CT.COMPUTE])
async def test_firmware_status_fills_components_core_left_out(ctype: ComponentType) -> None:
    """§12.4: a component Core says nothing about reads unknown, not done."""
    async with bench(compute="nico") as b:
        first, second = b.target(ctype, 2).component_ids
        await b.manager(ctype).firmware_control(
            Target(ctype, (first,)), FirmwareControlTaskInfo("task-one", target_version="1.0")
        )
        b.advance(FIRMWARE_LATENCY)
        target = Target(ctype, (first, second, "no-such-component"))
        status = await b.manager(ctype).get_firmware_status(target)
        assert list(status) == list(target.component_ids)
        assert status[first].state == FS.COMPLETED
        # No job: Core's answer has no entry for it.
        assert (status[second].state, status[second].error) == (FS.UNKNOWN, MISSING_FROM_CORE)
        assert status["no-such-component"].state == FS.UNKNOWN
        assert "not found" in status["no-such-component"].error


# --- compute/nicolegacy: host firmware through Core's auto-update window ---------------


async def test_nicolegacy_firmware_window_and_autoupdate() -> None:
    async with bench(compute="nicolegacy") as b:
        assert b.clock is not None
        target = b.target(CT.COMPUTE, 3)
        ids = target.component_ids
        # One machine already has auto-update on: it is not asked again.
        b.sim.world.set_autoupdate(b.sim.world.node(ids[2]), True)
        start = datetime.fromtimestamp(b.clock.now(), UTC)
        end = start + timedelta(hours=2)
        manager = b.manager(CT.COMPUTE)
        results = await manager.firmware_control(
            target, FirmwareControlTaskInfo("task-host-fw", start=start, end=end)
        )
        assert all(r.ok for r in results.values()), results
        entries = b.writes()
        keyed(entries, "task-host-fw")
        auto = [e for e in entries if e.method == "MachineSetAutoUpdate"]
        assert [(e.component_id, e.action) for e in auto] == [
            (ids[0], "autoupdate_enable"),
            (ids[1], "autoupdate_enable"),
        ]
        window = [e for e in entries if e.method == "SetFirmwareUpdateTimeWindow"]
        assert sorted(e.component_id for e in window) == sorted(ids)
        assert {e.request_id for e in window} == {"task-host-fw/window"}
        assert {(e.details["start"], e.details["end"]) for e in window} == {
            (start.timestamp(), end.timestamp())
        }
        assert {b.sim.world.node(c).autoupdate for c in ids} == {True}

        # Core reprovisions the hosts inside the window; nicolegacy reads the
        # machine state and versions: queued, then verifying until done.
        assert await progression(b, target, start.timestamp()) == [
            {FS.QUEUED},
            {FS.VERIFYING},
            {FS.VERIFYING},
            {FS.COMPLETED},
        ]
        for c in ids:
            assert b.sim.world.firmware(b.sim.world.node(c)) == dict(
                DESIRED_FIRMWARE[Family.COMPUTE]
            )

        # Already on the desired bundle: repeating the request changes nothing.
        mark = b.last_seq()
        again = await manager.firmware_control(target, FirmwareControlTaskInfo("task-again"))
        assert all(r.ok for r in again.values())
        assert b.writes(mark) == []


async def test_nicolegacy_default_window_and_target_version() -> None:
    async with bench(compute="nicolegacy") as b:
        target = b.target(CT.COMPUTE, 2)
        manager = b.manager(CT.COMPUTE)
        with pytest.raises(ManagerError, match="does not match any firmware version set"):
            await manager.firmware_control(
                target, FirmwareControlTaskInfo("k", target_version=json.dumps({"bmc": "1"}))
            )
        with pytest.raises(ManagerError, match="JSON object"):
            await manager.firmware_control(target, FirmwareControlTaskInfo("k", target_version="1"))
        with pytest.raises(ManagerError, match="needs both start and end"):
            await manager.firmware_control(
                target, FirmwareControlTaskInfo("k", start=datetime.now(UTC))
            )
        assert len(b.sim.ledger) == 0

        # The desired compute bundle, spelled out, is accepted; no window
        # given means the next 24 hours.
        before = datetime.now(UTC).timestamp()
        desired = json.dumps(dict(DESIRED_FIRMWARE[Family.COMPUTE]))
        results = await manager.firmware_control(
            target, FirmwareControlTaskInfo("task-24h", target_version=desired)
        )
        assert all(r.ok for r in results.values())
        (window, *_) = b.writes(method="SetFirmwareUpdateTimeWindow")
        assert before - 1 <= window.details["start"] <= datetime.now(UTC).timestamp() + 1
        assert window.details["end"] - window.details["start"] == pytest.approx(24 * 3600)


async def test_nicolegacy_unknown_machine_fails_alone() -> None:
    async with bench(compute="nicolegacy") as b:
        known = b.target(CT.COMPUTE, 1).component_ids[0]
        target = Target(CT.COMPUTE, ("no-such-machine", known))
        results = await b.manager(CT.COMPUTE).firmware_control(
            target, FirmwareControlTaskInfo("task-x")
        )
        assert not results["no-such-machine"].ok
        assert "not found" in results["no-such-machine"].error
        assert results[known].ok
        status = await b.manager(CT.COMPUTE).get_firmware_status(target)
        assert status["no-such-machine"].state == FS.UNKNOWN
        assert status[known].state == FS.QUEUED


# --- DPU reprovisioning (the `dpu` sub-target of both compute managers) ----------------


@pytest.mark.parametrize("compute", ["nicolegacy", "nico"])
async def test_dpu_subtarget_reprovisions_the_dpus(compute: str) -> None:
    async with bench(compute=compute) as b:
        target = b.target(CT.COMPUTE, 2)
        plain, tenant = target.component_ids
        world = b.sim.world
        instance = world.assign_instance(world.node(tenant))
        manager = b.manager(CT.COMPUTE)
        assert isinstance(manager, ComputeManagerBase)
        results = await manager.firmware_control(
            target, FirmwareControlTaskInfo("task-dpu", sub_targets=("DPU",))
        )
        assert all(r.ok for r in results.values()), results

        entries = b.writes()
        keyed(entries, "task-dpu")
        # DPU-only: no tray firmware was touched.
        assert not {"UpdateComponentFirmware", "SetFirmwareUpdateTimeWindow"} & {
            e.method for e in entries
        }
        for host in (plain, tenant):
            node = world.node(host)
            assert [a.id for a in world.alerts(node)] == [HOST_UPDATE_ALERT]
            triggered = [
                e for e in entries
                if e.method == "TriggerDpuReprovisioning" and e.details["host"] == host
            ]  # fmt: skip
            assert sorted(e.component_id for e in triggered) == sorted(d.id for d in node.dpus)
            assert {e.details["update_firmware"] for e in triggered} == {True}
        # The host without a tenant is power-cycled; the tenant's instance is
        # reset so updates apply on that reboot.
        cycles = [e for e in entries if e.method == "AdminPowerControl"]
        assert [(e.component_id, e.action) for e in cycles] == [(plain, "ac_powercycle")]
        resets = [e for e in entries if e.method == "InvokeInstancePower"]
        assert [(e.component_id, e.details["instance_id"]) for e in resets] == [(tenant, instance)]
        assert resets[0].details["apply_updates_on_reboot"] is True

        # asked again while it runs (a retry after a lost reply): Core's state
        # shows it all under way, so nothing is triggered or rebooted twice
        mark = b.last_seq()
        again = await manager.firmware_control(
            target, FirmwareControlTaskInfo("task-dpu-retry", sub_targets=("DPU",))
        )
        assert all(r.ok for r in again.values()), again
        assert {e.method for e in b.writes(mark)} <= {"InsertMachineHealthReport"}

        status = await manager.get_firmware_status(target, ("dpu",))
        assert {r.state for r in status.values()} == {FS.IN_PROGRESS}
        # while the DPUs are reprovisioned the report stays on the hosts
        assert sorted(await manager.release(target, Leftover.HOST_UPDATE)) == sorted(
            (plain, tenant)
        )
        b.advance(POWER_LATENCY + DPU_LATENCY)
        status = await manager.get_firmware_status(target, ("dpu",))
        assert {r.state for r in status.values()} == {FS.COMPLETED}
        # done: the reading says the report must come off
        assert {r.cleanup for r in status.values()} == {Leftover.HOST_UPDATE}
        for host in (plain, tenant):
            for dpu in world.node(host).dpus:
                assert world.firmware(dpu) == dict(DESIRED_FIRMWARE[Family.DPU])

        mark = b.last_seq()
        assert await manager.release(target, Leftover.HOST_UPDATE) == []
        removed = b.writes(mark)
        assert [(e.method, e.details["source"]) for e in removed] == [
            ("RemoveMachineHealthReport", HOST_UPDATE_SOURCE)
        ] * 2
        assert all(world.alerts(world.node(h)) == [] for h in (plain, tenant))


async def test_dpu_and_tray_parts_together_through_compute_nico() -> None:
    async with bench(compute="nico") as b:
        target = b.target(CT.COMPUTE, 1)
        results = await b.manager(CT.COMPUTE).firmware_control(
            target, FirmwareControlTaskInfo("task-both", sub_targets=("dpu", "bios"))
        )
        assert all(r.ok for r in results.values())
        methods = [e.method for e in b.writes()]
        assert "UpdateComponentFirmware" in methods
        assert "TriggerDpuReprovisioning" in methods
        (update,) = b.writes(method="UpdateComponentFirmware")
        assert update.details["targets"] == {"bios": DESIRED_FIRMWARE[Family.COMPUTE]["bios"]}


async def test_dpu_reprovisioning_run_waits_then_always_clears_the_report() -> None:
    async with bench(compute="nico") as b:
        clock = b.clock
        assert clock is not None

        async def sim_sleep(seconds: float) -> None:
            clock.advance(seconds)

        hosts = b.target(CT.COMPUTE, 2).component_ids
        dpu = DpuReprovisioner(b.core, sleep=sim_sleep, clock=clock.now)
        results = await dpu.run([*hosts, "no-such-host"], "task-run", poll_interval=10)
        assert results[hosts[0]].ok
        assert results[hosts[1]].ok
        assert results["no-such-host"].error == "host not found in NICo Core"
        assert b.sim.world.waiting_for_reprovisioning() == []
        assert all(not b.sim.world.node(h).overrides for h in hosts)

        # Too short a wait: the hosts fail with what was still pending, and
        # the health report still comes off.
        more = b.target(CT.COMPUTE, 4).component_ids[2:]
        late = await dpu.run(more, "task-late", poll_interval=10, give_up_after=20)
        for host in more:
            assert not late[host].ok
            assert "did not finish within 20 s" in late[host].error
            assert all(d.id in late[host].error for d in b.sim.world.node(host).dpus)
            assert not b.sim.world.node(host).overrides


# --- Firmware consistency of switches --------------------------------------------------


async def test_switch_firmware_consistency() -> None:
    async with bench() as b:
        target = b.target(CT.NVSWITCH)
        manager = b.manager(CT.NVSWITCH)
        assert isinstance(manager, NvSwitchManager)
        report = await manager.verify_firmware_consistency(target)
        assert report.consistent
        assert report.problems == ()
        assert set(report.versions) == set(target.component_ids)
        assert {json.dumps(v, sort_keys=True) for v in report.versions.values()} == {
            json.dumps(dict(SHIPPED_FIRMWARE[Family.NVSWITCH]), sort_keys=True)
        }

        # The odd one out is named, even when it sorts first.
        odd = min(target.component_ids)
        b.sim.world.set_firmware(b.sim.world.node(odd), {"cpld": "0.1.9"})
        report = await manager.verify_firmware_consistency(target)
        assert not report.consistent
        assert len(report.problems) == 1
        assert report.problems[0].startswith(f"{odd}: differs from ")
        assert report.problems[0].endswith(" in cpld")

        # A switch Core knows nothing about has no version data.
        report = await manager.verify_firmware_consistency(
            Target(CT.NVSWITCH, (*target.component_ids[1:3], "no-such-switch"))
        )
        assert report.problems == ("no-such-switch: no firmware version data",)
        assert len(b.sim.ledger) == 0  # a read-only check

        # Only switches offer the check.
        with pytest.raises(UnsupportedCapability, match="FirmwareConsistencyCheck"):
            b.registry.check_capability(CT.POWERSHELF, Capability.FIRMWARE_CONSISTENCY_CHECK)
        with pytest.raises(UnsupportedCapability, match="powershelf/nico does not support"):
            await b.manager(CT.POWERSHELF).verify_firmware_consistency(b.target(CT.POWERSHELF))
