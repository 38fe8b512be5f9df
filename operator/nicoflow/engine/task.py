"""The task engine: (plan, status, outcomes, now) → new status + Core calls.

Stages run in ascending order, the steps of a stage in parallel, and the first
failed stage ends the Task (fail fast). The caller persists the status when
`persist` is set — before it makes the calls, because state-changing calls
carry an intent recorded in that status — then makes the calls and feeds the
outcomes back. Pure: no I/O, no clock, no randomness."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nicoflow.api.taskstatus import (
    Condition,
    Intent,
    ItemPhase,
    Release,
    StageStatus,
    StepStatus,
    TaskStatus,
)
from nicoflow.domain.types import ComponentType, Leftover, TaskPhase
from nicoflow.engine import steps
from nicoflow.engine.plan import Call, CallKind, Event, Observed, Outcome, Plan

MAX_MESSAGE = 512
# Taking away what a command left in Core (see Leftover): tries, and the pause
# before try n (RELEASE_DELAY * 2**(n-1), at most RELEASE_DELAY_MAX).
MAX_RELEASE_ATTEMPTS = 20
RELEASE_DELAY = 5.0
RELEASE_DELAY_MAX = 300.0


@dataclass
class Decision:
    status: TaskStatus
    calls: list[Call] = field(default_factory=list)
    persist: bool = False
    wake_at: datetime | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Nothing left to do: the Task is over and left nothing behind in Core."""
        return self.status.phase.finished and not self.status.releases

    def wake(self, at: datetime) -> None:
        if self.wake_at is None or at < self.wake_at:
            self.wake_at = at


def advance(
    plan: Plan,
    status: TaskStatus,
    outcomes: list[Outcome],
    now: datetime,
    *,
    fresh: bool = False,
    generation: int | None = None,
) -> Decision:
    # A private copy, so the caller's status stays as it was. Dump and validate
    # run in pydantic-core: about 4x faster than model_copy(deep=True), which
    # walks the nested models in Python (the operator's largest engine cost).
    st = TaskStatus.model_validate(status.model_dump(round_trip=True))
    if generation is not None:
        st.observed_generation = generation
    d = Decision(status=st)
    releases = [o for o in outcomes if o.call.kind is CallKind.RELEASE]
    outcomes = [o for o in outcomes if o.call.kind is not CallKind.RELEASE]
    _released(st, releases, d)
    found: list[Release] = []
    if not st.phase.finished:
        _advance(plan, st, outcomes, now, fresh, d, found)
    _release(st, found, now, d)
    return d


def _advance(
    plan: Plan,
    st: TaskStatus,
    outcomes: list[Outcome],
    now: datetime,
    fresh: bool,
    d: Decision,
    releases: list[Release],
) -> None:
    if st.phase is not TaskPhase.RUNNING:
        _start(plan, st, now, d)
        if st.phase.finished:
            return
    if plan.cancel:
        releases.extend(_absorb(plan, st, outcomes, now))
        releases.extend(_cancel(plan, st, now, d))
        return
    while True:
        stage = next((s for s in st.stages if not s.phase.finished), None)
        if stage is None:
            _succeed(st, now, d)
            return
        if stage.phase is ItemPhase.PENDING and not _start_stage(plan, stage, now, d):
            continue
        mine = [o for o in outcomes if o.call.stage == stage.number]
        outcomes = []
        for step in stage.steps:
            if step.phase is not ItemPhase.RUNNING:
                continue
            out = steps.advance(
                _ctx(plan, stage, step, now, fresh),
                step,
                [o for o in mine if o.call.component_type is step.component_type],
            )
            d.calls.extend(out.calls)
            d.events.extend(out.events)
            d.persist |= out.persist
            releases.extend(out.releases)
            if out.wake_at:
                d.wake(out.wake_at)
        fresh = False
        if not all(s.phase.finished for s in stage.steps):
            st.message = _progress(st, stage)[:MAX_MESSAGE]
            return
        _finish_stage(st, stage, now, d)
        if stage.phase is ItemPhase.FAILED:
            _fail(st, f"stage {stage.number} failed: {stage.error}", now, d, reason="StageFailed")
            return
        d.wake_at = None


def _released(st: TaskStatus, outcomes: list[Outcome], d: Decision) -> None:
    """What taking away the Task's leftovers achieved."""
    for outcome in outcomes:
        kind = outcome.call.leftover
        done = {cid for cid in outcome.call.ids if outcome.of(cid).state is Observed.OK}
        if done:
            st.releases = [r for r in st.releases if not (r.leftover is kind and r.id in done)]
            d.persist = True


def _release(st: TaskStatus, found: list[Release], now: datetime, d: Decision) -> None:
    """Keep taking away what the Task's commands left in Core until it is
    gone; a Task is not done before that (even once its phase is final)."""
    known = {(r.id, r.leftover) for r in st.releases}
    new: list[Release] = []
    for r in found:
        if (r.id, r.leftover) not in known:
            known.add((r.id, r.leftover))
            new.append(r)
    if new:
        st.releases = [*st.releases, *new][:256]
    if found and (new or st.release_at is not None):
        # a step just said these are done with: try now, not after the backoff
        # that earlier tries (made while the work was still under way) built up
        st.release_at, st.release_attempts = None, 0
        d.persist = True
    if not st.releases:
        if st.release_at is not None or st.release_attempts:
            st.release_at, st.release_attempts = None, 0
            d.persist = True
        return
    if st.release_at is not None and now < st.release_at:
        d.wake(st.release_at)
        return
    if st.release_attempts >= MAX_RELEASE_ATTEMPTS:
        names = ", ".join(f"{r.leftover.value} on {r.id}" for r in st.releases[:8])
        d.events.append(
            Event(
                "Warning",
                "LeftoverNotRemoved",
                f"could not take away {names} after {st.release_attempts} tries; remove it in "
                "NICo Core by hand (a power-override silences the tray's alerts, a host-update "
                "report keeps tenants off the host)",
            )
        )
        st.releases, st.release_at, st.release_attempts = [], None, 0
        d.persist = True
        return
    st.release_attempts += 1
    delay = min(RELEASE_DELAY_MAX, RELEASE_DELAY * 2 ** (st.release_attempts - 1))
    st.release_at = now + timedelta(seconds=delay)
    d.persist = True
    for kind in dict.fromkeys(r.leftover for r in st.releases):
        d.calls.append(
            Call(
                stage=0,
                component_type=ComponentType.COMPUTE,
                kind=CallKind.RELEASE,
                ids=tuple(r.id for r in st.releases if r.leftover is kind),
                leftover=kind,
            )
        )


def _ctx(
    plan: Plan, stage: StageStatus, step: StepStatus, now: datetime, fresh: bool
) -> steps.StepContext:
    rule = next(
        s
        for s in plan.rule.steps
        if s.stage == stage.number and s.component_type is step.component_type
    )
    return steps.StepContext(plan=plan, rule=rule, stage=stage.number, now=now, fresh=fresh)


def _start(plan: Plan, st: TaskStatus, now: datetime, d: Decision) -> None:
    st.phase = TaskPhase.RUNNING
    st.start_time = now
    st.queue_position = None
    st.stages = [
        StageStatus(
            number=n, steps=[StepStatus(component_type=s.component_type) for s in rule_steps]
        )
        for n, rule_steps in plan.rule.stages()
    ]
    st.stage_count = len(st.stages)
    d.persist = True
    targeted = {t for t, comps in plan.components.items() if comps}
    covered = plan.rule.component_types()
    if not targeted & covered:
        kinds = ", ".join(sorted(t.value for t in targeted)) or "none"
        rule = st.applied_rule.name if st.applied_rule else "the rule"
        _fail(
            st,
            f"no step of {rule} applies to the targeted component types ({kinds}); "
            "target other components or use a rule with steps for them",
            now,
            d,
            reason="NothingToDo",
        )
        return
    uncovered = sorted(t.value for t in targeted - covered)
    if uncovered:
        d.events.append(
            Event(
                "Warning",
                "NotCovered",
                f"the rule has no step for {', '.join(uncovered)}; those components are left alone",
            )
        )
    set_condition(st, "Progressing", "True", "Running", "the Task is running", now)
    for waited in ("Queued", "Held"):  # what kept it back no longer does
        if any(c.type == waited for c in st.conditions):
            set_condition(st, waited, "False", "Started", "", now)
    d.events.append(
        Event("Normal", "Started", f"running {plan.operation.value} in {len(st.stages)} stages")
    )


def _start_stage(plan: Plan, stage: StageStatus, now: datetime, d: Decision) -> bool:
    """Start a stage's steps; False when none has components (stage skipped)."""
    started = False
    for step in stage.steps:
        rule = next(
            s
            for s in plan.rule.steps
            if s.stage == stage.number and s.component_type is step.component_type
        )
        ctx = steps.StepContext(plan=plan, rule=rule, stage=stage.number, now=now, fresh=False)
        started |= steps.start(ctx, step)
    d.persist = True
    if not started:
        stage.phase = ItemPhase.SKIPPED
        return False
    stage.phase = ItemPhase.RUNNING
    stage.started_at = now
    d.status.current_stage = stage.number
    return True


def _finish_stage(st: TaskStatus, stage: StageStatus, now: datetime, d: Decision) -> None:
    stage.finished_at = now
    failed = [s for s in stage.steps if s.phase is ItemPhase.FAILED]
    d.persist = True
    if failed:
        stage.phase = ItemPhase.FAILED
        stage.error = "; ".join(f"{s.component_type.value}: {s.error}" for s in failed)[:512]
        d.events.append(Event("Warning", "StageFailed", f"stage {stage.number}: {stage.error}"))
    else:
        stage.phase = ItemPhase.SUCCEEDED
        d.events.append(
            Event("Normal", "StageSucceeded", f"stage {stage.number} of {len(st.stages)} done")
        )


def _progress(st: TaskStatus, stage: StageStatus) -> str:
    parts = []
    for step in stage.steps:
        if step.phase is ItemPhase.RUNNING:
            done = step.succeeded + len(step.done)
            parts.append(f"{step.component_type.value} {done}/{step.total}")
    return f"stage {stage.number}/{len(st.stages)}: " + ", ".join(parts)


def _succeed(st: TaskStatus, now: datetime, d: Decision) -> None:
    st.phase = TaskPhase.SUCCEEDED
    st.completion_time = now
    st.current_stage = None
    st.message = "all stages succeeded"
    set_condition(st, "Progressing", "False", "Finished", "", now)
    set_condition(st, "Succeeded", "True", "AllStagesSucceeded", st.message, now)
    d.persist = True
    d.events.append(Event("Normal", "Succeeded", st.message))


def _fail(st: TaskStatus, message: str, now: datetime, d: Decision, *, reason: str) -> None:
    st.phase = TaskPhase.FAILED
    st.completion_time = now
    st.message = message[:MAX_MESSAGE]
    set_condition(st, "Progressing", "False", "Finished", "", now)
    set_condition(st, "Failed", "True", reason, st.message, now)
    d.persist = True
    d.events.append(Event("Warning", "Failed", st.message))


def _absorb(plan: Plan, st: TaskStatus, outcomes: list[Outcome], now: datetime) -> list[Release]:
    """Record what calls already made did, so a cancelled Task says what it
    commanded; the components they left something on."""
    releases: list[Release] = []
    for stage in st.stages:
        if stage.phase is not ItemPhase.RUNNING:
            continue
        for step in stage.steps:
            if step.phase is not ItemPhase.RUNNING:
                continue
            mine = [
                o
                for o in outcomes
                if o.call.stage == stage.number and o.call.component_type is step.component_type
            ]
            if mine:
                out = steps.absorb(_ctx(plan, stage, step, now, False), step, mine)
                releases.extend(out.releases)
    return releases


def _cancel(plan: Plan, st: TaskStatus, now: datetime, d: Decision) -> list[Release]:
    """Cancel what is left; what a command whose outcome was never learnt may
    have left in Core is taken away (removing what is absent is harmless)."""
    # archived steps' commanded components are already listed in st.commanded
    commanded: list[str] = list(st.commanded)
    releases: list[Release] = []
    for stage in st.stages:
        for step in stage.steps:
            commanded.extend(c.name or c.id for c in step.components if c.commanded)
            if not step.phase.finished:
                if step.intent is not None:
                    releases.extend(_possible_leftovers(plan, step.component_type, step.intent))
                step.phase = ItemPhase.CANCELLED
                step.intent = None
        if not stage.phase.finished:
            stage.phase = ItemPhase.CANCELLED
    st.phase = TaskPhase.CANCELLED
    st.completion_time = now
    st.commanded = sorted(set(commanded))[:256]
    if st.commanded:
        st.message = f"cancelled; {len(st.commanded)} components had already been commanded"
    else:
        st.message = "cancelled before any component was commanded"
    set_condition(st, "Progressing", "False", "Finished", "", now)
    set_condition(st, "Failed", "True", "Cancelled", st.message, now)
    d.persist = True
    d.events.append(Event("Normal", "Cancelled", st.message))
    return releases


def _possible_leftovers(plan: Plan, ctype: ComponentType, intent: Intent) -> list[Release]:
    """What the intent's command may have left on its components: the legacy
    manager's maintenance override (power), a host's update report (DPUs)."""
    if ctype is not ComponentType.COMPUTE:
        return []
    kind = None
    if intent.action.startswith(CallKind.POWER_CONTROL.value):
        kind = Leftover.POWER_OVERRIDE
    elif intent.action.startswith(CallKind.FIRMWARE_CONTROL.value) and any(
        s.strip().lower() == "dpu" for s in plan.options.sub_targets
    ):
        kind = Leftover.HOST_UPDATE
    if kind is None:
        return []
    return [Release(id=cid, leftover=kind) for cid in intent.component_ids]


def set_condition(
    st: TaskStatus, ctype: str, status: str, reason: str, message: str, now: datetime
) -> None:
    """Upsert a condition; lastTransitionTime moves only when status changes."""
    for i, c in enumerate(st.conditions):
        if c.type == ctype:
            moved = c.status != status
            st.conditions[i] = c.model_copy(
                update={
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "last_transition_time": now if moved else c.last_transition_time,
                    "observed_generation": st.observed_generation,
                }
            )
            return
    st.conditions.append(
        Condition(
            type=ctype,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=now,
            observed_generation=st.observed_generation,
        )
    )
