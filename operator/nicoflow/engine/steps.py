"""One step of a stage: a component type driven through pre → main → post
actions, batch by batch (maxParallel), with retries, timeouts and polling.

Pure: every function takes the step's status and the time and returns the
Core calls to make; nothing here performs I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nicoflow.api.taskstatus import ComponentResult, Intent, ItemPhase, Release, StepStatus
from nicoflow.domain.durations import format_duration, parse_duration
from nicoflow.domain.rules import (
    ActionConfig,
    ActionName,
    ActionParameters,
    RuleStep,
    effective_power_operation,
)
from nicoflow.domain.types import OperationCode
from nicoflow.engine.plan import Call, CallKind, Event, Observed, Outcome, Plan, Result
from nicoflow.engine.versions import version_for

MIN_POLL_SECONDS = 1.0
# Commands Core could not take are sent again this many times per step,
# 1, 2, 4 ... up to 30 s apart, before they count as failed attempts.
MAX_TRANSIENT_RETRIES = 10
TRANSIENT_DELAY = 1.0
TRANSIENT_DELAY_MAX = 30.0
# A command whose outcome is unknown (lost reply, operator restart) is looked
# for in Core's state every CONFIRM_POLL seconds for the plan's confirm window
# before it counts as not received: a BMC may take a moment to show a command
# it accepted.
CONFIRM_POLL = 2.0

_POWER_TARGET = {
    OperationCode.POWER_ON: {Observed.ON, Observed.POWERING_ON},
    OperationCode.FORCE_POWER_ON: {Observed.ON, Observed.POWERING_ON},
    OperationCode.POWER_OFF: {Observed.OFF, Observed.POWERING_OFF},
    OperationCode.FORCE_POWER_OFF: {Observed.OFF, Observed.POWERING_OFF},
}
# a power transition under way
_MOVING = frozenset({Observed.POWERING_ON, Observed.POWERING_OFF})
# a reset shows up only as a transition; a settled state proves nothing
_RESET_LANDED = _MOVING
_FIRMWARE_ACTIVE = {Observed.QUEUED, Observed.IN_PROGRESS, Observed.VERIFYING}
_FIRMWARE_DONE = {Observed.COMPLETED, Observed.FAILED}
_BRING_UP_LANDED = {
    Observed.WAITING_FOR_INGESTION,
    Observed.MACHINE_NOT_CREATED,
    Observed.MACHINE_CREATED,
}
_REACHABLE = {Observed.ON, Observed.OFF, Observed.POWERING_ON, Observed.POWERING_OFF}


@dataclass
class StepContext:
    plan: Plan
    rule: RuleStep
    stage: int
    now: datetime
    fresh: bool  # first decision since the status was read back (operator restart)


@dataclass
class StepOutput:
    calls: list[Call] = field(default_factory=list)
    persist: bool = False
    wake_at: datetime | None = None
    events: list[Event] = field(default_factory=list)
    # what calls left in Core that must be taken away (Task-level)
    releases: list[Release] = field(default_factory=list)


def actions_of(step: RuleStep) -> list[ActionConfig]:
    actions = [action for _, _, action in step.actions()]
    if step.delay_after:
        actions.append(
            ActionConfig(
                name=ActionName.SLEEP, parameters=ActionParameters(duration=step.delay_after)
            )
        )
    return actions


def start(ctx: StepContext, st: StepStatus) -> bool:
    """Initialise a pending step; False when it has nothing to do (skipped)."""
    components = ctx.plan.of(st.component_type)
    if not components:
        st.phase = ItemPhase.SKIPPED
        return False
    size = ctx.rule.max_parallel or len(components)
    st.phase = ItemPhase.RUNNING
    st.total = len(components)
    st.batches = math.ceil(len(components) / size)
    st.batch = 0
    st.started_at = ctx.now
    st.components = [ComponentResult(id=c.id, name=c.name) for c in components]
    _begin_batch(ctx, st)
    return True


def advance(ctx: StepContext, st: StepStatus, outcomes: list[Outcome]) -> StepOutput:
    out = StepOutput()
    actions = actions_of(ctx.rule)
    if ctx.fresh:
        st.polls = 0  # a read in flight when the operator stopped never answered
    for outcome in outcomes:
        _apply(ctx, st, actions[st.action], outcome, out)
    # Instant transitions cascade (an action done → the next one starts) until
    # the step needs Core, has to wait, or is finished.
    for _ in range(4 * len(actions) * max(st.batches, 1) + 4):
        if st.phase.finished:
            return out
        active = _active(ctx, st)
        if not active:
            _next_batch(ctx, st, out)
            continue
        budget = ctx.rule.timeout_seconds()
        assert st.batch_started_at is not None
        if (ctx.now - st.batch_started_at).total_seconds() > budget:
            _fail(st, active, f"step timed out after {format_duration(budget)}", out)
            continue
        if st.intent is not None and (ctx.fresh or st.intent.unknown_since is not None):
            # a call whose outcome is unknown: nothing is sent again until
            # Core's state says which components it reached
            _check_intent(ctx, st, out)
            return out
        if st.next_at is not None and ctx.now < st.next_at:
            out.wake_at = st.next_at
            return out
        if not _run(ctx, st, actions[st.action], active, out):
            return out
        _next_action(ctx, st, actions, out)
    raise RuntimeError(f"step {st.component_type} of stage {ctx.stage} did not settle")


def absorb(ctx: StepContext, st: StepStatus, outcomes: list[Outcome]) -> StepOutput:
    """Record outcomes without deciding anything further (cancellation)."""
    out = StepOutput()
    actions = actions_of(ctx.rule)
    for outcome in outcomes:
        _apply(ctx, st, actions[st.action], outcome, out)
    return out


# -- batches and actions -------------------------------------------------------


def _batch_ids(ctx: StepContext, st: StepStatus) -> list[str]:
    size = ctx.rule.max_parallel or st.total
    return [c.id for c in st.components[st.batch * size : (st.batch + 1) * size]]


def _active(ctx: StepContext, st: StepStatus) -> list[str]:
    failed = {c.id for c in st.components if c.phase is ItemPhase.FAILED}
    return [i for i in _batch_ids(ctx, st) if i not in failed]


def _component(st: StepStatus, cid: str) -> ComponentResult:
    for c in st.components:
        if c.id == cid:
            return c
    raise KeyError(cid)


def _begin_batch(ctx: StepContext, st: StepStatus) -> None:
    st.batch_started_at = ctx.now
    st.main_issued_at = None
    st.escalated = False
    _reset_action(st, 0)
    for cid in _batch_ids(ctx, st):
        _component(st, cid).phase = ItemPhase.RUNNING


def _reset_action(st: StepStatus, index: int) -> None:
    st.action = index
    st.attempt = 1
    st.action_started_at = None
    st.next_at = None
    st.polls = 0
    st.issued = []
    st.done = []
    st.settled = []
    st.intent = None


def _next_action(
    ctx: StepContext, st: StepStatus, actions: list[ActionConfig], out: StepOutput
) -> None:
    if st.action + 1 < len(actions):
        _reset_action(st, st.action + 1)
        return
    for cid in _active(ctx, st):
        _component(st, cid).phase = ItemPhase.SUCCEEDED
    _next_batch(ctx, st, out)


def _next_batch(ctx: StepContext, st: StepStatus, out: StepOutput) -> None:
    _count(st)
    out.persist = True
    if st.batch + 1 < st.batches:
        st.batch += 1
        _begin_batch(ctx, st)
        return
    _finish(ctx, st, out)


def _count(st: StepStatus) -> None:
    st.succeeded = sum(c.phase is ItemPhase.SUCCEEDED for c in st.components)
    st.failed = sum(c.phase is ItemPhase.FAILED for c in st.components)


def _finish(ctx: StepContext, st: StepStatus, out: StepOutput) -> None:
    _count(st)
    st.finished_at = ctx.now
    _reset_action(st, st.action)
    failed = [c for c in st.components if c.phase is ItemPhase.FAILED]
    if failed:
        st.phase = ItemPhase.FAILED
        st.error = summarize_failures(failed)
    else:
        st.phase = ItemPhase.SUCCEEDED


def summarize_failures(failed: list[ComponentResult], limit: int = 3) -> str:
    parts = [f"{c.name or c.id}: {c.error}" for c in failed[:limit]]
    more = f"; and {len(failed) - limit} more" if len(failed) > limit else ""
    return ("; ".join(parts) + more)[:512]


def _fail(st: StepStatus, ids: list[str], error: str, out: StepOutput) -> None:
    for cid in ids:
        comp = _component(st, cid)
        comp.phase = ItemPhase.FAILED
        comp.error = error[:512]
    if st.intent is not None:
        # the components of an unresolved command that did not fail still
        # wait for Core's state: dropping the intent would send it again
        left = [c for c in st.intent.component_ids if c not in ids]
        if left:
            st.intent.component_ids = left
        else:
            st.intent = None
    out.persist = True


def _poll_delay(ctx: StepContext, action: ActionConfig, st: StepStatus) -> float:
    """The rule's poll interval. For built-in rules: fast at first, backing
    off to the interval, so a quick transition is seen within about a second
    and a long one costs few calls."""
    interval = action.poll_interval_seconds() or MIN_POLL_SECONDS
    if not ctx.plan.adaptive_polling:
        return max(MIN_POLL_SECONDS, interval)
    started = st.action_started_at or ctx.now
    elapsed = (ctx.now - started).total_seconds()
    return max(MIN_POLL_SECONDS, min(interval, elapsed / 4))


def _key(ctx: StepContext, st: StepStatus, suffix: str = "") -> str:
    # a command Core could not take goes out again as a new request
    resend = f".u{st.transient_retries}" if st.transient_retries else ""
    return (
        f"{ctx.plan.task_uid}.s{ctx.stage}.{st.component_type.value}"
        f".b{st.batch}.a{st.action}.t{st.attempt}{resend}{suffix}"
    )


def _call(ctx: StepContext, kind: CallKind, ids: list[str], **kw: object) -> Call:
    if kind is CallKind.FIRMWARE_STATUS:
        # the progress asked for is that of the update asked for (its parts,
        # DPUs included, and version)
        kw.setdefault("sub_targets", ctx.plan.options.sub_targets)
        kw.setdefault(
            "target_version", version_for(ctx.plan.options.target_version, ctx.rule.component_type)
        )
    return Call(
        stage=ctx.stage,
        component_type=ctx.rule.component_type,
        kind=kind,
        ids=tuple(ids),
        **kw,  # type: ignore[arg-type]
    )


def _mutating_kind(action: ActionConfig) -> CallKind:
    return {
        ActionName.POWER_CONTROL: CallKind.POWER_CONTROL,
        ActionName.FIRMWARE_CONTROL: CallKind.FIRMWARE_CONTROL,
        ActionName.BRING_UP_CONTROL: CallKind.BRING_UP_CONTROL,
        ActionName.INJECT_EXPECTATION: CallKind.INJECT_EXPECTATION,
    }[action.name]


def _issue(
    ctx: StepContext,
    st: StepStatus,
    action: ActionConfig,
    ids: list[str],
    out: StepOutput,
    *,
    operation: OperationCode | None = None,
    suffix: str = "",
) -> None:
    """Record the intent, then ask for the call: the status write comes first."""
    kind = CallKind.POWER_CONTROL if suffix else _mutating_kind(action)
    if st.intent is None or suffix:
        label = f"{kind.value}/{operation.value}" if operation else kind.value
        st.intent = Intent(
            key=_key(ctx, st, suffix), action=label, component_ids=ids, issued_at=ctx.now
        )
        out.persist = True
    extra: dict[str, object] = {"key": st.intent.key, "operation": operation}
    if kind is CallKind.FIRMWARE_CONTROL:
        extra["target_version"] = version_for(ctx.plan.options.target_version, st.component_type)
        extra["sub_targets"] = ctx.plan.options.sub_targets
    out.calls.append(_call(ctx, kind, ids, **extra))


def _check_intent(ctx: StepContext, st: StepStatus, out: StepOutput) -> None:
    """Read the state that shows whether the intent's call landed."""
    intent = st.intent
    assert intent is not None
    if intent.unknown_since is None:
        intent.unknown_since = ctx.now
        out.persist = True
    elif st.next_at is not None and ctx.now < st.next_at:
        out.wake_at = st.next_at
        return
    st.next_at = None
    action = intent.action
    if action.startswith(CallKind.FIRMWARE_CONTROL.value):
        kind = CallKind.FIRMWARE_STATUS
    elif action.startswith(CallKind.BRING_UP_CONTROL.value) or action.startswith(
        CallKind.INJECT_EXPECTATION.value
    ):
        kind = CallKind.BRING_UP_STATUS
    else:
        kind = CallKind.POWER_STATUS
    out.calls.append(_call(ctx, kind, list(intent.component_ids), recovery=True, release=ctx.fresh))


def _run(
    ctx: StepContext, st: StepStatus, action: ActionConfig, active: list[str], out: StepOutput
) -> bool:
    """Work on the current action; True when it is finished for this batch."""
    name = action.name
    now = ctx.now
    st.action_name = name.value  # for people: `kubectl flow status` and `why` show it
    if st.action_started_at is None:
        st.action_started_at = now
    timeout = action.timeout_seconds()
    timed_out = timeout is not None and (now - st.action_started_at).total_seconds() >= timeout

    if name is ActionName.SLEEP:
        if st.next_at is None:
            st.next_at = now + timedelta(seconds=parse_duration(action.params.duration or "0s"))
            out.wake_at = st.next_at
            return False
        return True  # the loop only gets here once next_at has passed

    if name in (
        ActionName.POWER_CONTROL,
        ActionName.BRING_UP_CONTROL,
        ActionName.INJECT_EXPECTATION,
    ):
        needed = [i for i in active if i not in st.issued]
        if not needed:
            return True
        if name is ActionName.POWER_CONTROL and _may_be_moving(ctx, st):
            moving = [i for i in needed if i not in st.settled]
            if moving:
                return _settle(ctx, st, moving, out)
        operation = effective_power_operation(action, ctx.plan.operation)
        _issue(ctx, st, action, needed, out, operation=operation)
        if action is ctx.rule.main_operation:
            st.main_issued_at = st.main_issued_at or now
        return False

    if name is ActionName.FIRMWARE_CONTROL:
        needed = [i for i in active if i not in st.issued]
        if needed:
            _issue(ctx, st, action, needed, out)
            return False
        waiting = [i for i in active if i not in st.done]
        if not waiting:
            return True
        if timed_out:
            _fail(
                st,
                waiting,
                f"firmware update did not complete within {format_duration(timeout or 0)}",
                out,
            )
            return True
        return _poll(ctx, st, action, CallKind.FIRMWARE_STATUS, waiting, out)

    if name in (ActionName.VERIFY_POWER_STATUS, ActionName.WAIT_BRING_UP):
        waiting = [i for i in active if i not in st.done]
        if not waiting:
            return True
        if name is ActionName.VERIFY_POWER_STATUS and _escalate(ctx, st, waiting, action, out):
            return False
        if timed_out:
            what = (
                f"did not report power {action.params.expected_status}"
                if name is ActionName.VERIFY_POWER_STATUS
                else "was not ingested"
            )
            _fail(st, waiting, f"{what} within {format_duration(timeout or 0)}", out)
            return True
        kind = (
            CallKind.POWER_STATUS
            if name is ActionName.VERIFY_POWER_STATUS
            else CallKind.BRING_UP_STATUS
        )
        return _poll(ctx, st, action, kind, waiting, out)

    if name is ActionName.VERIFY_REACHABILITY:
        types = [t for t in action.params.component_types or [] if f"@{t.value}" not in st.done]
        types_with_components = [t for t in types if ctx.plan.of(t)]
        for t in types:
            if not ctx.plan.of(t):
                st.done.append(f"@{t.value}")  # nothing targeted of that type: nothing to reach
        if not types_with_components:
            return True
        if timed_out:
            names = ", ".join(t.value for t in types_with_components)
            _fail(st, active, f"{names} not reachable within {format_duration(timeout or 0)}", out)
            return True
        if st.next_at is not None and now < st.next_at:
            out.wake_at = st.next_at
            return False
        for t in types_with_components:
            ids = [c.id for c in ctx.plan.of(t)]
            out.calls.append(_call(ctx, CallKind.POWER_STATUS, ids, target_type=t))
        st.polls += 1
        st.next_at = now + timedelta(seconds=_poll_delay(ctx, action, st))
        return False

    if name in (ActionName.GET_POWER_STATUS, ActionName.VERIFY_FIRMWARE_CONSISTENCY):
        waiting = [i for i in active if i not in st.done]
        if not waiting:
            return True
        if st.polls > 0 and st.next_at is None:
            return False  # read in flight
        kind = (
            CallKind.POWER_STATUS
            if name is ActionName.GET_POWER_STATUS
            else CallKind.FIRMWARE_CONSISTENCY
        )
        out.calls.append(_call(ctx, kind, waiting))
        st.polls += 1
        st.next_at = None
        return False

    raise ValueError(f"action {name} is not supported by the engine")


def _may_be_moving(ctx: StepContext, st: StepStatus) -> bool:
    """Whether an earlier power command of this Task to these components may
    still be under way: the rule sent one (an earlier stage or action) and did
    not verify the power state after it. A command sent into a transition can
    be swallowed by it (a shutdown during a restart's off phase), and a read
    after a lost reply could not tell the two apart."""
    moving = False
    for rule_step in sorted(ctx.plan.rule.steps, key=lambda s: s.stage):
        if rule_step.component_type is not st.component_type or rule_step.stage > ctx.stage:
            continue
        actions = actions_of(rule_step)
        if rule_step.stage == ctx.stage:
            actions = actions[: st.action]
        for action in actions:
            if action.name is ActionName.POWER_CONTROL:
                moving = True
            elif action.name is ActionName.VERIFY_POWER_STATUS:
                moving = False
    return moving


def _settle(ctx: StepContext, st: StepStatus, ids: list[str], out: StepOutput) -> bool:
    """Read the power state until the components are at rest."""
    if st.next_at is None and st.polls > 0:
        return False  # read in flight
    out.calls.append(_call(ctx, CallKind.POWER_STATUS, ids, settle=True))
    st.polls += 1
    st.next_at = None
    return False


def _poll(
    ctx: StepContext,
    st: StepStatus,
    action: ActionConfig,
    kind: CallKind,
    ids: list[str],
    out: StepOutput,
) -> bool:
    out.calls.append(_call(ctx, kind, ids))
    st.polls += 1
    st.next_at = ctx.now + timedelta(seconds=_poll_delay(ctx, action, st))
    return False


def _escalate(
    ctx: StepContext, st: StepStatus, waiting: list[str], action: ActionConfig, out: StepOutput
) -> bool:
    """Graceful→forced: the step's PowerControl named forceAfter and the
    components are still not off that long after the graceful request."""
    main = ctx.rule.main_operation
    force_after = main.params.force_after
    if (
        st.escalated
        or force_after is None
        or action.params.expected_status != "off"
        or main.name is not ActionName.POWER_CONTROL
        or st.main_issued_at is None
        or effective_power_operation(main, ctx.plan.operation) is not OperationCode.POWER_OFF
    ):
        return False
    if (ctx.now - st.main_issued_at).total_seconds() < parse_duration(force_after):
        return False
    st.escalated = True
    _issue(ctx, st, main, waiting, out, operation=OperationCode.FORCE_POWER_OFF, suffix=".force")
    out.events.append(
        Event(
            "Warning",
            "Escalated",
            f"stage {ctx.stage} {st.component_type.value}: {len(waiting)} components not off "
            f"{force_after} after graceful shutdown; sent force_power_off",
        )
    )
    return True


# -- outcomes ------------------------------------------------------------------


def _apply(
    ctx: StepContext, st: StepStatus, action: ActionConfig, outcome: Outcome, out: StepOutput
) -> None:
    call = outcome.call
    if call.kind.mutating or call.release or call.recovery:
        # what a command (or, after a restart, the clean-up of an interrupted
        # one) left in Core; firmware reads report theirs when a component
        # ends, and the read after a lost reply for the command it checks
        out.releases.extend(_leftovers(outcome, call.ids))
    if call.recovery:
        _apply_recovery(ctx, st, outcome, out)
        return
    if call.settle:
        for cid in call.ids:
            state = outcome.of(cid).state
            if not outcome.error and state not in _MOVING and cid not in st.settled:
                st.settled.append(cid)
        st.polls = 0
        if any(cid not in st.settled for cid in call.ids):
            st.next_at = ctx.now + timedelta(seconds=CONFIRM_POLL)
        out.persist = True
        return
    if call.kind.mutating:
        _apply_mutation(ctx, st, action, outcome, out)
        return
    if call.target_type is not None:  # VerifyReachability
        ids = call.ids
        reachable = not outcome.error and (
            not action.params.require_all or all(outcome.of(i).state in _REACHABLE for i in ids)
        )
        if reachable:
            st.done.append(f"@{call.target_type.value}")
        return
    name = action.name
    for cid in call.ids:
        result = outcome.of(cid)
        if name is ActionName.VERIFY_POWER_STATUS:
            if result.state.value == action.params.expected_status:
                st.done.append(cid)
        elif name is ActionName.WAIT_BRING_UP:
            if result.state is Observed.MACHINE_CREATED:
                st.done.append(cid)
        elif name is ActionName.FIRMWARE_CONTROL:
            if result.state is Observed.COMPLETED:
                st.done.append(cid)
                out.releases.extend(_leftovers(outcome, [cid]))
            elif result.state is Observed.FAILED and not outcome.error:
                out.releases.extend(_leftovers(outcome, [cid]))
                _retry_or_fail(ctx, st, [cid], f"firmware update failed: {result.error}", out)
        elif name in (ActionName.GET_POWER_STATUS, ActionName.VERIFY_FIRMWARE_CONSISTENCY):
            if outcome.error:
                continue
            if result.state is Observed.FAILED or (
                name is ActionName.GET_POWER_STATUS and result.state is Observed.UNKNOWN
            ):
                _fail(st, [cid], f"{name.value}: {result.error or result.state.value}", out)
            else:
                st.done.append(cid)
    if outcome.error and name in (
        ActionName.GET_POWER_STATUS,
        ActionName.VERIFY_FIRMWARE_CONSISTENCY,
    ):
        _retry_or_fail(ctx, st, list(call.ids), f"{name.value}: {outcome.error}", out)
        st.polls = 0


def _apply_mutation(
    ctx: StepContext, st: StepStatus, action: ActionConfig, outcome: Outcome, out: StepOutput
) -> None:
    call = outcome.call
    escalation = call.key is not None and call.key.endswith(".force")
    errors: dict[str, str] = {}
    unknown: dict[str, Result] = {}
    transient = True
    for cid in call.ids:
        result = outcome.of(cid)
        comp = _component(st, cid)
        if result.state in (Observed.OK, Observed.COMPLETED):
            comp.commanded = True
            comp.attempts += 0 if escalation else 1
            if not escalation:
                st.issued.append(cid)
            if result.state is Observed.COMPLETED and cid not in st.done:
                # already where the command would take it (firmware at the
                # target version): Core starts no job, so none is waited for
                st.done.append(cid)
        elif result.uncertain and not escalation:
            # the reply was lost: the command may have landed all the same
            unknown[cid] = result
            comp.error = (
                f"no answer ({result.error}); checking NICo Core's state before sending again"
            )[:512]
        else:
            comp.attempts += 1
            errors[cid] = result.error or result.state.value
            transient = transient and result.transient
    if unknown and st.intent is not None:
        lost = next(iter(unknown.values()))
        st.intent.component_ids = list(unknown)
        st.intent.unknown_since = ctx.now
        st.intent.lost_error = lost.error[:512]
        st.intent.lost_transient = all(r.transient for r in unknown.values())
        out.persist = True
    else:
        st.intent = None
    if escalation or not errors:
        return
    label = call.kind.value + (f" {call.operation.value}" if call.operation else "")
    first = next(iter(errors.values()))
    if transient and st.transient_retries < MAX_TRANSIENT_RETRIES:
        # Core refused the command because it could not take it now: send it
        # again after a pause without spending one of the rule's attempts,
        # which are meant for the hardware failing
        st.transient_retries += 1
        st.issued = [i for i in st.issued if i not in errors]
        delay = min(TRANSIENT_DELAY_MAX, TRANSIENT_DELAY * 2 ** (st.transient_retries - 1))
        st.next_at = ctx.now + timedelta(seconds=delay)
        for cid in errors:
            _component(st, cid).error = f"NICo Core unavailable, sending again: {first}"[:512]
        return
    _retry_or_fail(ctx, st, list(errors), f"{label} failed: {first}", out)


def _leftovers(outcome: Outcome, ids: Iterable[str]) -> list[Release]:
    return [
        Release(id=cid, leftover=left)
        for cid in ids
        if (left := outcome.of(cid).cleanup) is not None
    ]


def _retry_or_fail(
    ctx: StepContext, st: StepStatus, ids: list[str], error: str, out: StepOutput
) -> None:
    policy = ctx.rule.retry_policy
    if st.attempt < policy.max_attempts:
        st.attempt += 1
        st.issued = [i for i in st.issued if i not in ids]
        st.next_at = ctx.now + timedelta(seconds=policy.delay_before_attempt(st.attempt))
        # every attempt has the whole step and action budget, as documented:
        # its clocks start when it does
        st.batch_started_at = st.next_at
        st.action_started_at = None
        st.polls = 0
        for cid in ids:
            _component(st, cid).error = f"attempt {st.attempt - 1}: {error}"[:512]
        return
    _fail(st, ids, f"{error} (after {st.attempt} attempts)", out)


def _landed(intent: Intent, result: Result) -> bool | None:
    """Whether Core's state shows the intent's call reached a component; None
    when the read says nothing either way."""
    state = result.state
    kind, _, op = intent.action.partition("/")
    if state is Observed.UNKNOWN:
        return None
    if kind == CallKind.FIRMWARE_CONTROL.value:
        if state in _FIRMWARE_ACTIVE:
            return True
        if state in _FIRMWARE_DONE and result.changed_at is not None:
            # a finished job counts only if it is newer than the command
            return result.changed_at >= intent.issued_at
        # undated: "completed" means the versions are there; a failure is
        # taken as an earlier one (sending again is then a legitimate retry)
        return state is Observed.COMPLETED
    if state is Observed.FAILED:
        return None  # the read failed for this component
    if kind == CallKind.BRING_UP_CONTROL.value:
        return state in _BRING_UP_LANDED
    if kind == CallKind.INJECT_EXPECTATION.value:
        return False  # Core answers AlreadyExists to a repeat: safe to send again
    target = _POWER_TARGET.get(OperationCode(op)) if op else None
    return state in (target or _RESET_LANDED)


def _is_reset(intent: Intent) -> bool:
    kind, _, op = intent.action.partition("/")
    return kind == CallKind.POWER_CONTROL.value and (
        not op or OperationCode(op) not in _POWER_TARGET
    )


def _apply_recovery(ctx: StepContext, st: StepStatus, outcome: Outcome, out: StepOutput) -> None:
    """Which components a call of unknown outcome reached, judged from Core's
    state. Those it reached count as commanded; those it provably did not
    reach are sent again (under a new key); until the state says which, and
    for the confirm window at least, nothing is sent again."""
    intent = st.intent
    if intent is None:
        return
    escalation = intent.key.endswith(".force")
    landed: list[str] = []
    unsure: list[str] = []
    absent: list[str] = []
    for cid in intent.component_ids:
        verdict = None if outcome.error else _landed(intent, outcome.of(cid))
        (landed if verdict else unsure if verdict is None else absent).append(cid)
    for cid in landed:
        comp = _component(st, cid)
        comp.commanded = True
        comp.error = ""
        if not escalation:
            st.issued.append(cid)
    since = intent.unknown_since or ctx.now
    patient = intent.action.startswith(CallKind.INJECT_EXPECTATION.value) or escalation
    window_over = patient or (ctx.now - since).total_seconds() >= ctx.plan.confirm_window
    keep = unsure if window_over else unsure + absent
    concluded = absent if window_over else []
    out.persist = True
    if keep:
        intent.component_ids = keep
        st.next_at = ctx.now + timedelta(seconds=CONFIRM_POLL)
    else:
        st.intent = None
        st.next_at = None
    if not concluded or escalation:
        return
    if _is_reset(intent):
        # a reset leaves no state behind to prove it: a second one could
        # reboot a tray twice, so the step stops here
        why = intent.lost_error or "the operator restarted during the call"
        _fail(
            st,
            concluded,
            f"{intent.action}: could not prove the reset landed ({why}); "
            "check the tray before running it again",
            out,
        )
        return
    if (intent.lost_transient or not intent.lost_error) and (
        st.transient_retries < MAX_TRANSIENT_RETRIES
    ):
        # Core was unavailable, or the operator restarted: not the hardware's
        # failure, so no retry attempt is spent; the resend gets a new key
        st.transient_retries += 1
        for cid in concluded:
            _component(st, cid).error = (
                f"not received by NICo Core ({intent.lost_error or 'operator restarted'}); "
                "sending again"
            )[:512]
        return
    _retry_or_fail(
        ctx,
        st,
        concluded,
        f"{intent.action} failed: {intent.lost_error or 'no answer from NICo Core'}",
        out,
    )
