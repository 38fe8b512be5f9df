"""The pure task engine, driven by a tiny in-test hardware model.

The model answers the engine's Calls the way the component managers would
(per-component results, every requested id answered); it lets these tests
check sequencing, retries, failures, cancellation and crash recovery without
any process. The same behaviours are tested end to end against the simulator
in tests/integration."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from nicoflow.api.taskstatus import AppliedRule, ItemPhase, Release, TaskStatus
from nicoflow.domain.default_rules import builtin_rule
from nicoflow.domain.rules import parse_rule_definition
from nicoflow.domain.types import ComponentType, Leftover, OperationCode, TaskPhase
from nicoflow.engine import steps
from nicoflow.engine.plan import Call, CallKind, Component, Observed, Options, Outcome, Plan, Result
from nicoflow.engine.task import Decision, _release, advance

C, NVS, PS = ComponentType.COMPUTE, ComponentType.NVSWITCH, ComponentType.POWERSHELF
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def rack(
    compute: int = 4, switches: int = 2, shelves: int = 2
) -> dict[ComponentType, tuple[Component, ...]]:
    return {
        C: tuple(Component(f"m{i}", f"compute-{i}") for i in range(compute)),
        NVS: tuple(Component(f"s{i}", f"switch-{i}") for i in range(switches)),
        PS: tuple(Component(f"p{i}", f"shelf-{i}") for i in range(shelves)),
    }


@dataclass
class Hardware:
    power: dict[str, str] = field(default_factory=dict)
    latency_polls: int = 0  # status reads a transition takes to settle
    fail_power: set[str] = field(default_factory=set)
    fail_firmware: set[str] = field(default_factory=set)
    errors_left: int = 0  # whole-call failures before calls succeed
    unavailable_left: int = 0  # commands Core cannot take (transient) before it takes them
    lose_left: int = 0  # commands that apply but whose reply is lost
    drop_left: int = 0  # commands lost on the way (never applied), reply lost too
    ledger: list[tuple[str, str, str]] = field(default_factory=list)  # (key, id, op)
    firmware: dict[str, str] = field(default_factory=dict)
    _pending: dict[str, tuple[str, int]] = field(default_factory=dict)

    def answer(self, call: Call) -> Outcome:
        if self.errors_left > 0 and not call.recovery:
            self.errors_left -= 1
            return Outcome(call, error="UNAVAILABLE: core is restarting")
        if self.unavailable_left > 0 and call.kind.mutating:
            self.unavailable_left -= 1
            return Outcome(call, error="UNAVAILABLE: core is overloaded", transient=True)
        if self.drop_left > 0 and call.kind.mutating:
            self.drop_left -= 1
            return Outcome(call, error="UNAVAILABLE: reply lost", transient=True, uncertain=True)
        if self.lose_left > 0 and call.kind.mutating:
            self.lose_left -= 1
            for cid in call.ids:
                self._one(call, cid)
            return Outcome(call, error="UNAVAILABLE: reply lost", transient=True, uncertain=True)
        results: dict[str, Result] = {}
        for cid in call.ids:
            results[cid] = self._one(call, cid)
        return Outcome(call, results)

    def _one(self, call: Call, cid: str) -> Result:
        if call.kind is CallKind.POWER_CONTROL:
            assert call.key
            self.ledger.append((call.key, cid, call.operation.value if call.operation else ""))
            if cid in self.fail_power:
                return Result(Observed.FAILED, "BMC refused the request")
            target = (
                "on" if call.operation and "on" in call.operation.value.split("_")[-1] else "off"
            )
            self._pending[cid] = (target, self.latency_polls)
            if self.latency_polls == 0:
                self.power[cid] = target
            return Result(Observed.OK)
        if call.kind is CallKind.POWER_STATUS:
            if cid in self._pending:
                target, left = self._pending[cid]
                if left <= 0:
                    self.power[cid] = target
                    del self._pending[cid]
                else:
                    self._pending[cid] = (target, left - 1)
                    return Result(Observed.POWERING_ON if target == "on" else Observed.POWERING_OFF)
            return Result(Observed(self.power.get(cid, "on")))
        if call.kind is CallKind.FIRMWARE_CONTROL:
            assert call.key
            self.ledger.append((call.key, cid, "firmware"))
            self.firmware[cid] = "queued"
            return Result(Observed.OK)
        if call.kind is CallKind.FIRMWARE_STATUS:
            state = self.firmware.get(cid, "unknown")
            if state == "queued":
                self.firmware[cid] = "failed" if cid in self.fail_firmware else "completed"
                return Result(Observed.IN_PROGRESS)
            if state == "failed":
                return Result(Observed.FAILED, "image verification failed")
            return Result(Observed(state))
        return Result(Observed.OK)


def plan_for(
    code: OperationCode,
    components: dict[ComponentType, tuple[Component, ...]] | None = None,
    rule_yaml: str | None = None,
    **options: object,
) -> Plan:
    rule = parse_rule_definition(rule_yaml) if rule_yaml else builtin_rule(code)
    return Plan(
        task_uid="uid-1",
        operation=code,
        components=components if components is not None else rack(),
        rule=rule,
        options=Options(**options),  # type: ignore[arg-type]
    )


@dataclass
class Run:
    status: TaskStatus
    now: datetime
    persists: int = 0
    decisions: int = 0
    calls: list[Call] = field(default_factory=list)


def drive(
    plan: Plan,
    hw: Hardware,
    status: TaskStatus | None = None,
    *,
    now: datetime = T0,
    max_decisions: int = 2000,
    stop_after_persists: int | None = None,
    fresh: bool = False,
) -> Run:
    run = Run(status or TaskStatus(applied_rule=AppliedRule(name="builtin", source="builtin")), now)
    outcomes: list[Outcome] = []
    while run.decisions < max_decisions:
        d: Decision = advance(plan, run.status, outcomes, run.now, fresh=fresh)
        fresh = False
        run.decisions += 1
        run.status = d.status
        if d.persist:
            run.persists += 1
            if stop_after_persists is not None and run.persists >= stop_after_persists:
                return run  # the operator dies right after writing status, before calling
        if d.finished:
            return run
        run.calls.extend(d.calls)
        outcomes = [hw.answer(c) for c in d.calls]
        if not d.calls:
            assert d.wake_at is not None, "engine neither called nor asked to wait"
            run.now = max(d.wake_at, run.now)
    raise AssertionError("engine did not finish")


def mutating_order(run: Run) -> list[tuple[ComponentType, str]]:
    seen: list[tuple[ComponentType, str]] = []
    for call in run.calls:
        if call.kind is CallKind.POWER_CONTROL and call.operation:
            item = (call.component_type, call.operation.value)
            if not seen or seen[-1] != item:
                seen.append(item)
    return seen


def test_restart_runs_down_then_up_in_order() -> None:
    hw = Hardware()
    run = drive(plan_for(OperationCode.RESTART), hw)
    assert run.status.phase is TaskPhase.SUCCEEDED
    assert mutating_order(run) == [
        (C, "power_off"),
        (NVS, "power_off"),
        (PS, "power_off"),
        (PS, "power_on"),
        (NVS, "power_on"),
        (C, "power_on"),
    ]
    assert all(state == "on" for state in hw.power.values())
    assert [s.phase for s in run.status.stages] == [ItemPhase.SUCCEEDED] * 6
    # one status write per stage plus the start, not one per poll
    assert run.persists <= 8
    assert any(c.type == "Succeeded" and c.status == "True" for c in run.status.conditions)


@pytest.mark.parametrize(
    ("code", "final"),
    [
        (OperationCode.POWER_ON, "on"),
        (OperationCode.POWER_OFF, "off"),
        (OperationCode.FORCE_POWER_ON, "on"),
        (OperationCode.FORCE_POWER_OFF, "off"),
        (OperationCode.FORCE_RESTART, "on"),
    ],
)
def test_power_operations_reach_their_state(code: OperationCode, final: str) -> None:
    hw = Hardware(
        power={c.id: ("off" if final == "on" else "on") for cs in rack().values() for c in cs}
    )
    run = drive(plan_for(code), hw)
    assert run.status.phase is TaskPhase.SUCCEEDED, run.status.message
    assert set(hw.power.values()) == {final}


def test_verification_waits_for_slow_transitions_without_extra_writes() -> None:
    hw = Hardware(latency_polls=3)
    run = drive(plan_for(OperationCode.RESTART), hw)
    assert run.status.phase is TaskPhase.SUCCEEDED
    polls = sum(c.kind is CallKind.POWER_STATUS for c in run.calls)
    assert polls >= 6 * 4
    assert run.persists <= 8


def test_the_status_names_the_action_in_progress() -> None:
    plan, hw = plan_for(OperationCode.POWER_OFF), Hardware(latency_polls=3)
    status = TaskStatus(applied_rule=AppliedRule(name="builtin", source="builtin"))
    outcomes: list[Outcome] = []
    now, seen = T0, []
    for _ in range(200):
        d = advance(plan, status, outcomes, now)
        status = d.status
        step = status.stages[0].steps[0] if status.stages else None
        if step is not None and step.phase is ItemPhase.RUNNING:
            seen.append(step.action_name)
        if d.finished:
            break
        outcomes = [hw.answer(c) for c in d.calls]
        if not d.calls:
            assert d.wake_at is not None
            now = max(d.wake_at, now)
    # the built-in power_off: the compute step commands, then verifies
    assert list(dict.fromkeys(seen)) == ["PowerControl", "VerifyPowerStatus"]


def test_each_component_is_commanded_once_per_stage() -> None:
    hw = Hardware()
    drive(plan_for(OperationCode.RESTART), hw)
    counts = Counter((cid, op) for _, cid, op in hw.ledger)
    assert set(counts.values()) == {1}
    assert len({key for key, _, _ in hw.ledger}) == 6


def test_max_parallel_commands_in_batches() -> None:
    rule = """
    steps:
    - componentType: compute
      stage: 1
      maxParallel: 2
      mainOperation: {name: PowerControl, parameters: {operation: power_off}}
      postOperation:
      - {name: VerifyPowerStatus, timeout: 1m, pollInterval: 5s,
         parameters: {expectedStatus: "off"}}
    """
    hw = Hardware()
    run = drive(plan_for(OperationCode.POWER_OFF, rack(compute=5), rule_yaml=rule), hw)
    assert run.status.phase is TaskPhase.SUCCEEDED
    batches = [c.ids for c in run.calls if c.kind is CallKind.POWER_CONTROL]
    assert batches == [("m0", "m1"), ("m2", "m3"), ("m4",)]
    step = run.status.stages[0].steps[0]
    assert (step.batches, step.succeeded, step.failed) == (3, 5, 0)


def test_transient_errors_are_retried_to_success() -> None:
    hw = Hardware(errors_left=2)
    run = drive(plan_for(OperationCode.POWER_ON), hw)
    assert run.status.phase is TaskPhase.SUCCEEDED


def test_permanent_failure_names_the_component_and_stops_later_stages() -> None:
    hw = Hardware(fail_power={"s1"})
    run = drive(plan_for(OperationCode.POWER_ON), hw)
    assert run.status.phase is TaskPhase.FAILED
    assert "switch-1" in run.status.message
    assert "BMC refused" in run.status.message
    phases = [s.phase for s in run.status.stages]
    assert phases == [ItemPhase.SUCCEEDED, ItemPhase.FAILED, ItemPhase.PENDING]
    switch_step = run.status.stages[1].steps[0]
    assert switch_step.failed == 1
    assert switch_step.succeeded == 1
    assert not any(c.component_type is C and c.kind is CallKind.POWER_CONTROL for c in run.calls)
    attempts = sum(1 for _, cid, _ in hw.ledger if cid == "s1")
    assert attempts == builtin_rule(OperationCode.POWER_ON).steps[1].retry_policy.max_attempts


def test_firmware_failure_keeps_the_other_results() -> None:
    hw = Hardware(fail_firmware={"m2"})
    run = drive(plan_for(OperationCode.UPGRADE, target_version="2.1.0"), hw)
    assert run.status.phase is TaskPhase.FAILED
    assert "compute-2" in run.status.message
    step = run.status.stages[0].steps[0]
    by_id = {c.id: c.phase for c in step.components}
    assert by_id["m2"] is ItemPhase.FAILED
    assert [by_id[i] for i in ("m0", "m1", "m3")] == [ItemPhase.SUCCEEDED] * 3
    versions = {c.target_version for c in run.calls if c.kind is CallKind.FIRMWARE_CONTROL}
    assert versions == {"2.1.0"}


def test_layered_target_version_reaches_each_type() -> None:
    hw = Hardware()
    layered = '{"compute": "c-9", "nvswitch": {"bmc": "b-3"}}'
    run = drive(plan_for(OperationCode.UPGRADE, target_version=layered), hw)
    assert run.status.phase is TaskPhase.SUCCEEDED
    sent = {
        c.component_type: c.target_version for c in run.calls if c.kind is CallKind.FIRMWARE_CONTROL
    }
    assert sent == {C: "c-9", NVS: '{"bmc": "b-3"}'}


def test_nothing_to_do_fails_clearly() -> None:
    only_shelves = {PS: rack()[PS]}
    run = drive(plan_for(OperationCode.UPGRADE, only_shelves), Hardware())
    assert run.status.phase is TaskPhase.FAILED
    assert "no step" in run.status.message
    assert "powershelf" in run.status.message


def test_cancel_reports_what_was_commanded() -> None:
    plan = plan_for(OperationCode.RESTART)
    hw = Hardware()
    partial = drive(plan, hw, stop_after_persists=3)  # stage 1 done, stage 2 intent written
    cancelled = Plan(**{**plan.__dict__, "cancel": True})
    d = advance(cancelled, partial.status, [], partial.now)
    assert d.status.phase is TaskPhase.CANCELLED
    assert d.persist
    assert {f"compute-{i}" for i in range(4)} <= set(d.status.commanded)
    assert all(s.phase.finished for s in d.status.stages)


@pytest.mark.parametrize("crash_after", [2, 3, 4, 5, 6, 7])
def test_restart_after_a_crash_repeats_no_landed_call(crash_after: int) -> None:
    """The operator dies right after a status write; the call of the intent it
    wrote may or may not have reached Core. A fresh engine must not repeat one
    that landed, nor skip one that did not."""
    plan = plan_for(OperationCode.RESTART)
    for landed in (False, True):
        hw = Hardware()
        first = drive(plan, hw, stop_after_persists=crash_after)
        if landed:  # the calls of the written intent went out before the process died
            decision = advance(plan, first.status, [], first.now)
            for call in decision.calls:
                if call.kind.mutating:
                    hw.answer(call)
        resumed = drive(plan, hw, first.status, now=first.now, fresh=True)
        assert resumed.status.phase is TaskPhase.SUCCEEDED, resumed.status.message
        counts = Counter((cid, op) for _, cid, op in hw.ledger)
        assert set(counts.values()) == {1}, counts
        assert all(state == "on" for state in hw.power.values())


def test_graceful_power_off_escalates_to_forced() -> None:
    rule = """
    steps:
    - componentType: compute
      stage: 1
      mainOperation: {name: PowerControl, parameters: {operation: power_off, forceAfter: 30s}}
      postOperation:
      - {name: VerifyPowerStatus, timeout: 5m, pollInterval: 10s,
         parameters: {expectedStatus: "off"}}
    """
    hw = Hardware(latency_polls=10_000)  # graceful shutdown never completes

    def answer(call: Call) -> Outcome:
        if call.kind is CallKind.POWER_CONTROL and call.operation is OperationCode.FORCE_POWER_OFF:
            hw.latency_polls = 0
            hw._pending.clear()
        return Hardware.answer(hw, call)

    hw.answer = answer  # type: ignore[method-assign]
    run = drive(plan_for(OperationCode.POWER_OFF, {C: rack()[C]}, rule_yaml=rule), hw)
    assert run.status.phase is TaskPhase.SUCCEEDED, run.status.message
    ops = [op for _, _, op in hw.ledger]
    assert ops.count("power_off") == 4
    assert ops.count("force_power_off") == 4
    forced_at = next(c for c in run.calls if c.operation is OperationCode.FORCE_POWER_OFF)
    assert forced_at.key
    assert forced_at.key.endswith(".force")
    assert run.now - T0 >= timedelta(seconds=30)


def test_commands_core_cannot_take_do_not_use_up_attempts() -> None:
    # the built-in restart allows 3 attempts per step; Core refusing 7 commands
    # in a row (transient) must not fail the run
    plan = plan_for(OperationCode.RESTART)
    hw = Hardware(unavailable_left=7)
    run = drive(plan, hw)
    assert run.status.phase is TaskPhase.SUCCEEDED, run.status.message
    retried = [st.transient_retries for stage in run.status.stages for st in stage.steps]
    assert sum(retried) == 7
    assert all(st.attempt == 1 for stage in run.status.stages for st in stage.steps)
    # each component still got exactly one command per stage
    assert len(hw.ledger) == len({(k, c) for k, c, _ in hw.ledger})


def test_endless_unavailability_falls_back_to_attempts_and_fails() -> None:
    plan = plan_for(OperationCode.POWER_OFF)
    run = drive(plan, Hardware(unavailable_left=10_000))
    assert run.status.phase is TaskPhase.FAILED
    first = run.status.stages[0].steps[0]
    assert first.transient_retries == 10
    assert "after 3 attempts" in run.status.message


# -- replies lost: Core's state decides what is sent again ------------------------


def test_a_lost_reply_is_looked_up_in_core_and_not_sent_again() -> None:
    hw = Hardware(lose_left=1)
    run = drive(plan_for(OperationCode.POWER_OFF), hw)
    assert run.status.phase is TaskPhase.SUCCEEDED, run.status.message
    # the first stage's command applied once; the read after it was a recovery read
    assert len(hw.ledger) == len({c for _, c, _ in hw.ledger})
    first = next(i for i, c in enumerate(run.calls) if c.kind.mutating)
    assert run.calls[first + 1].recovery
    assert all(st.transient_retries == 0 for stage in run.status.stages for st in stage.steps)


def test_a_command_that_never_arrived_is_sent_again_only_after_the_confirm_window() -> None:
    hw = Hardware(drop_left=1)
    plan = dataclasses.replace(plan_for(OperationCode.POWER_OFF), confirm_window=20.0)
    run = drive(plan, hw)
    assert run.status.phase is TaskPhase.SUCCEEDED, run.status.message
    sends = [c for c in run.calls if c.kind is CallKind.POWER_CONTROL]
    # stage 1: the dropped call, then one resend under a new key
    assert sends[0].key != sends[1].key
    assert str(sends[1].key).endswith(".u1")
    reads = [c for c in run.calls[: run.calls.index(sends[1])] if c.recovery]
    # read every CONFIRM_POLL seconds for the whole window before resending
    assert len(reads) >= 20.0 / steps.CONFIRM_POLL
    assert len(hw.ledger) == len({c for _, c, _ in hw.ledger})


def test_a_failed_read_proves_nothing_either_way() -> None:
    plan = dataclasses.replace(plan_for(OperationCode.POWER_OFF), confirm_window=0.0)
    # the operator wrote the intent and died before the call went out
    status = drive(plan, Hardware(), stop_after_persists=2).status
    assert any(s.intent for stage in status.stages for s in stage.steps)
    # restarted, it finds every read failing: it must not decide "never arrived"
    outcomes: list[Outcome] = []
    now = T0
    reads = 0
    for turn in range(20):
        d = advance(plan, status, outcomes, now, fresh=turn == 0)
        status = d.status
        assert not any(c.kind.mutating for c in d.calls), d.calls
        assert d.calls or d.wake_at, "the engine neither reads nor waits"
        reads += len(d.calls)
        outcomes = [Outcome(c, error="INTERNAL: read failed") for c in d.calls]
        now = max(now, d.wake_at or now) + timedelta(seconds=1)
    assert reads >= 5


def test_a_reset_that_cannot_be_proven_is_not_sent_twice() -> None:
    hw = Hardware(lose_left=1)  # the reset applies; nothing shows a transition
    plan = dataclasses.replace(plan_for(OperationCode.WARM_RESET), confirm_window=10.0)
    run = drive(plan, hw)
    assert run.status.phase is TaskPhase.FAILED
    assert "could not prove the reset landed" in run.status.message
    assert len(hw.ledger) == len({c for _, c, _ in hw.ledger})


def test_a_written_rule_is_polled_no_faster_than_its_interval() -> None:
    rule = """
steps:
  - componentType: powershelf
    stage: 1
    mainOperation: {name: PowerControl, parameters: {operation: power_off}}
    postOperation:
      - {name: VerifyPowerStatus, pollInterval: 20s, timeout: 5m,
         parameters: {expectedStatus: "off"}}
"""
    hw = Hardware(latency_polls=3)
    plan = plan_for(OperationCode.POWER_OFF, rule_yaml=rule)
    run = drive(plan, hw)
    assert run.status.phase is TaskPhase.SUCCEEDED, run.status.message
    reads = [c for c in run.calls if c.kind is CallKind.POWER_STATUS]
    assert len(reads) >= 2
    # every read but the first comes a whole interval after the one before
    step = run.status.stages[0].steps[0]
    assert step.finished_at is not None
    assert step.started_at is not None
    assert (step.finished_at - step.started_at).total_seconds() >= 20 * (len(reads) - 1)


def test_a_built_in_rule_polls_fast_at_first() -> None:
    hw = Hardware(latency_polls=3)
    plan = dataclasses.replace(plan_for(OperationCode.POWER_OFF), adaptive_polling=True)
    run = drive(plan, hw)
    step = run.status.stages[0].steps[0]
    assert step.finished_at is not None
    assert step.started_at is not None
    # four reads a second or so apart, far below the built-in 10 s interval
    assert (step.finished_at - step.started_at).total_seconds() < 10


def test_a_step_that_finishes_takes_its_leftover_away_at_once() -> None:
    """A release tried while the work was under way backs off; the step's
    own "done" must not wait out that backoff."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    held = Release(id="h1", leftover=Leftover.HOST_UPDATE)
    st = TaskStatus(releases=[held], release_attempts=4, release_at=now + timedelta(seconds=40))
    d = Decision(status=st)
    _release(st, [], now, d)
    assert d.calls == []  # nothing new: the backoff stands

    d = Decision(status=st)
    _release(st, [held], now, d)
    assert [c.ids for c in d.calls] == [("h1",)]
    assert st.release_attempts == 1
