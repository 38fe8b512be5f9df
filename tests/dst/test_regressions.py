"""One named scenario per defect the simulation found in the code before the
exactly-once fixes; each failed there and passes now. The scenarios are built
by hand (not drawn from a seed) so they keep meaning the same thing when the
generator changes."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from dst.harness import Run
from dst.invariants import check
from dst.runner import run_seed
from dst.scenario import Crash, Scenario, draw
from nicoflow.core.managers.dpu_reprovision import HOST_UPDATE_SOURCE
from nicoflow.core.managers.nicolegacy_compute import POWER_OVERRIDE_SOURCE
from nicoflow.domain.default_rules import builtin_rule, builtin_rule_name
from nicoflow.domain.rules import ActionName
from nicoflow.domain.types import ComponentType, OperationCode, TaskPhase
from nicoflow.simulator.catalog import Family
from nicoflow.simulator.faults import ErrorRule, FaultPlan
from nicoflow.simulator.settings import SimSettings

C, NVS, PS = ComponentType.COMPUTE, ComponentType.NVSWITCH, ComponentType.POWERSHELF
Op = OperationCode


def scenario(
    operation: OperationCode,
    *,
    compute: str = "nico",
    errors: Iterable[ErrorRule] = (),
    crashes: Iterable[Crash] = (),
    lag: float = 0.0,
    latency: float = 2.0,
    firmware_latency: float = 60.0,
    firmware_failures: int = 0,
    picks: dict[ComponentType, int] | None = None,
    sub_targets: tuple[str, ...] = (),
    firmware_current: bool = False,
) -> Scenario:
    return Scenario(
        seed=7,
        operation=operation,
        rule=builtin_rule(operation),
        rule_name=builtin_rule_name(operation),
        compute_manager=compute,
        picks=picks or {C: 3, NVS: 2, PS: 2},
        initial_power="on",
        settings=SimSettings(
            power_latency=latency, command_lag=lag, firmware_latency=firmware_latency
        ),
        faults=FaultPlan(errors=tuple(errors), firmware_failures=firmware_failures, seed=7),
        crashes=tuple(crashes),
        sub_targets=sub_targets,
        firmware_current=firmware_current,
    )


def lost(method: str, code: str = "UNAVAILABLE", times: int = 1) -> ErrorRule:
    """The call applies in Core and its reply is lost."""
    return ErrorRule(method=method, code=code, when="after", times=times)


async def run(s: Scenario) -> Run:
    r = Run(s)
    found: list[str] = []

    async def after() -> None:
        found.extend(str(v) for v in check(r))

    await r.execute(after)
    assert found == [], found
    return r


def phase(r: Run) -> TaskPhase:
    assert r.final is not None
    return r.final.phase


def counted(r: Run, command: str) -> dict[str, int]:
    """Per targeted component, how often `command` reached it and counted."""
    assert r.sim is not None
    out: dict[str, int] = {}
    for nodes in r.targets.values():
        for node in nodes:
            got = r.sim.ledger.delivered(component_id=node.id).get(node.id, [])
            n = sum(d.command == command and d.counted for d in got)
            if n:
                out[node.component.name] = n
    return out


@pytest.mark.parametrize("code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED"])
async def test_lost_reply_of_a_power_command_is_not_followed_by_a_second_one(code: str) -> None:
    # shelves and switches get ComponentPowerControl: its first reply is lost
    r = await run(scenario(Op.POWER_ON, errors=[lost("ComponentPowerControl", code)]))
    assert phase(r) is TaskPhase.SUCCEEDED, r.final
    assert set(counted(r, "on").values()) == {1}


async def test_a_deadline_on_a_power_command_is_not_retried_blind() -> None:
    r = await run(
        scenario(Op.POWER_OFF, errors=[lost("ComponentPowerControl", "DEADLINE_EXCEEDED")])
    )
    assert phase(r) is TaskPhase.SUCCEEDED, r.final
    assert set(counted(r, "graceful_shutdown").values()) == {1}


async def test_a_lost_firmware_start_does_not_start_a_second_update() -> None:
    r = await run(scenario(Op.UPGRADE, errors=[lost("UpdateComponentFirmware", "ABORTED")]))
    assert phase(r) is TaskPhase.SUCCEEDED, r.final
    assert set(counted(r, "update_firmware").values()) == {1}


async def test_a_crash_during_a_reset_does_not_reset_a_tray_twice() -> None:
    # killed right after the first tray's reset went out: the restarted
    # operator must prove it landed or stop, never reset it again
    r = await run(
        scenario(
            Op.WARM_RESET,
            compute="nicolegacy",
            crashes=[Crash("call", 1, after=True, method="AdminPowerControl")],
            latency=10.0,
        )
    )
    assert all(n == 1 for n in counted(r, "graceful_restart").values())


async def test_a_reset_that_cannot_be_proven_fails_the_step_instead_of_repeating() -> None:
    # an instant reset leaves no transition to see; its reply is lost
    r = await run(
        scenario(
            Op.WARM_RESET,
            errors=[lost("ComponentPowerControl", "UNAVAILABLE")],
            latency=0.0,
        )
    )
    assert phase(r) is TaskPhase.FAILED
    assert r.final is not None
    assert "could not prove the reset landed" in r.final.message
    assert set(counted(r, "graceful_restart").values()) == {1}


async def test_a_crash_while_a_bmc_has_not_shown_a_command_does_not_resend_it() -> None:
    # the switches take 10 s to show a command; the operator dies right after
    # sending their shutdown and comes back at once
    r = await run(
        scenario(
            Op.RESTART,
            crashes=[Crash("call", 1, after=True, method="ComponentPowerControl")],
            lag=10.0,
        )
    )
    assert phase(r) is TaskPhase.SUCCEEDED, r.final
    assert all(n == 1 for n in counted(r, "graceful_shutdown").values())


@pytest.mark.parametrize("method", ["SetFirmwareUpdateTimeWindow", "MachineSetAutoUpdate"])
async def test_host_firmware_arming_is_not_retried_by_the_client(method: str) -> None:
    # both re-arm Core's host update: a second one may start a second flash
    r = await run(scenario(Op.UPGRADE, compute="nicolegacy", errors=[lost(method)]))
    assert r.sim is not None
    repeated = r.sim.ledger.repeats()
    assert repeated == {}, repeated


async def test_a_maintenance_override_whose_removal_fails_is_removed_later() -> None:
    refuse = ErrorRule(method="RemoveHealthReportOverride", code="INTERNAL", times=5)
    r = await run(scenario(Op.RESTART, compute="nicolegacy", errors=[refuse]))
    assert phase(r) is TaskPhase.SUCCEEDED, r.final
    assert r.final is not None
    assert r.final.releases == []
    assert all(POWER_OVERRIDE_SOURCE not in n.overrides for n in r.targets[C])


async def test_a_maintenance_override_whose_insert_reply_was_lost_is_removed() -> None:
    # DEADLINE_EXCEEDED: the client does not retry it; the override went in all the same
    r = await run(
        scenario(
            Op.POWER_OFF,
            compute="nicolegacy",
            errors=[lost("InsertHealthReportOverride", "DEADLINE_EXCEEDED", times=2)],
        )
    )
    assert all(POWER_OVERRIDE_SOURCE not in n.overrides for n in r.targets[C])


async def test_a_failed_read_after_a_crash_is_not_taken_for_a_command_that_never_arrived() -> None:
    # killed right after the shelves' power-off went out; the first read
    # after the restart fails: that says nothing about whether it landed
    r = await run(
        scenario(
            Op.POWER_OFF,
            crashes=[Crash("call", 1, after=True, method="ComponentPowerControl")],
            errors=[ErrorRule(method="GetComponentInventory", code="INTERNAL", times=1)],
        )
    )
    assert phase(r) is TaskPhase.SUCCEEDED, r.final
    assert all(n == 1 for n in counted(r, "graceful_shutdown").values())


# -- firmware paths and budgets (the "gates that hold" issue) ----------------------


async def test_a_retried_firmware_update_gets_the_whole_step_budget_again() -> None:
    # the built-in upgrade allows 45 min per attempt and two attempts; each job
    # takes 40 min and the first fails at its end: the retry must not inherit
    # the 40 minutes the first attempt used
    r = await run(
        scenario(
            Op.UPGRADE,
            picks={C: 1, NVS: 0, PS: 0},
            firmware_latency=40 * 60.0,
            firmware_failures=1,
        )
    )
    assert phase(r) is TaskPhase.SUCCEEDED, r.final
    assert set(counted(r, "update_firmware").values()) == {2}  # the failed one and the retry


@pytest.mark.parametrize("compute", ["nico", "nicolegacy"])
async def test_a_dpu_firmware_update_completes_and_takes_the_host_report_off(compute: str) -> None:
    r = await run(
        scenario(Op.UPGRADE, compute=compute, picks={C: 2, NVS: 0, PS: 0}, sub_targets=("dpu",))
    )
    assert phase(r) is TaskPhase.SUCCEEDED, r.final
    assert r.sim is not None
    for host in r.targets[C]:
        assert HOST_UPDATE_SOURCE not in host.overrides, host.component.name
        for dpu in host.dpus:
            assert r.sim.world.firmware(dpu) == r.sim.world.desired[Family.DPU]


async def test_switches_already_at_the_target_version_are_done_at_once() -> None:
    r = await run(scenario(Op.UPGRADE, picks={C: 0, NVS: 3, PS: 0}, firmware_current=True))
    assert phase(r) is TaskPhase.SUCCEEDED, r.final
    assert counted(r, "update_firmware") == {}
    assert r.final is not None
    assert r.final.completion_time is not None
    assert r.final.start_time is not None
    assert (r.final.completion_time - r.final.start_time).total_seconds() < 60


async def test_a_lost_reply_of_a_hosts_dpu_reboot_does_not_arm_its_firmware_window_twice() -> None:
    # dpu and host firmware through the legacy manager: the reboot that starts
    # the DPUs applies, its reply is lost; sending the start again must not
    # arm (and so reprovision) the host a second time
    r = await run(
        scenario(
            Op.UPGRADE,
            compute="nicolegacy",
            picks={C: 2, NVS: 0, PS: 0},
            sub_targets=("dpu", "bmc"),
            errors=[lost("AdminPowerControl", "UNAVAILABLE")],
        )
    )
    assert phase(r) is TaskPhase.SUCCEEDED, r.final
    assert set(counted(r, "set_firmware_window").values()) == {1}


# Found by a 20,000-seed `make dst` run; kept as drawn (the scenario each seed
# draws today): a Task cancelled, or crashed and recovered, while its hosts'
# DPUs were reprovisioned left their update report on (tenants kept off); so
# did a DPU start followed by a failed host-firmware read (309744, 310376), and
# a Task cancelled before it learnt what a legacy power command left (409722).
@pytest.mark.parametrize("seed", [202369, 208483, 209197, 309744, 310376, 409722])
async def test_drawn_runs_cancelled_or_recovered_take_what_they_left_off(
    seed: int,
) -> None:
    report = await run_seed(seed)
    assert not report.error, report.error
    assert report.violations == [], report.explain()


# Found by the same run: a random rule restarts the shelves without verifying
# and then shuts them down; the shutdown went in during the restart's off phase
# (which swallows it), the operator crashed, and the read after the restart
# showed the shelves on: the shutdown went out twice. The engine now waits for
# components to come to rest before a power command when the rule's previous
# one to them was not verified.
async def test_a_power_command_waits_for_an_unverified_earlier_one_to_settle() -> None:
    report = await run_seed(301437)
    assert not report.error, report.error
    assert report.violations == [], report.explain()


# Found by the final run: one tray's power command lost its reply, another's
# failed for good; failing the second dropped the first's unresolved command,
# and it went out again at once under the same key (seed 416801).
async def test_failing_one_component_keeps_anothers_unresolved_command_unresolved() -> None:
    report = await run_seed(416801)
    assert not report.error, report.error
    assert report.violations == [], report.explain()


# Found by the 200000 run: the shelves' restart, unverified, then the trays'
# power-off in a later stage; the restart's power-on undid it (seed 201877).
# Such a rule is refused now, so the generator verifies that restart: the run
# keeps every invariant, and the trays end off.
async def test_a_shelf_restart_is_verified_before_a_later_power_off() -> None:
    scenario = draw(201877)
    shelves = [s for s in scenario.rule.steps if s.component_type is ComponentType.POWERSHELF]
    assert any(a.name is ActionName.VERIFY_POWER_STATUS for s in shelves for a in s.post_operation)
    report = await run_seed(201877)
    assert not report.error, report.error
    assert report.violations == [], report.explain()
