"""Why a Task is where it is: the cause, the facts behind it, and what a person
can do about it, each with the exact command and its effect (`kubectl flow why`).

Pure: it reads a Task's spec and status (and, for a queued Task, the Tasks of
its rack) as the operator wrote them; the caller fetches them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from nicoflow.api.task import TaskRunSpec
from nicoflow.api.taskstatus import ItemPhase, StageStatus, StepStatus, TaskStatus
from nicoflow.domain.types import TaskPhase

# A Pending Task the operator has said nothing about for this long was not seen
# by any operator.
UNSEEN_AFTER = timedelta(minutes=2)
# Past a step attempt's deadline by this much, the operator is not driving it.
OVERDUE_AFTER = timedelta(minutes=1)


class Cause(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    QUEUED = "QueuedBehindTask"
    SUSPENDED = "Suspended"
    MAX_PARALLEL = "MaxParallelRacks"
    MAX_FAILED = "MaxFailedRacks"
    OPERATOR_LIMIT = "OperatorLimit"
    NOT_READY = "NotReady"
    PREEMPTING = "Preempting"
    NOT_ADMITTED = "NotAdmitted"
    CORE_UNANSWERED = "CoreUnanswered"
    RELEASING = "ReleasingLeftovers"
    WAITING_ON_HARDWARE = "WaitingOnHardware"
    RETRYING = "Retrying"
    OVERDUE = "Overdue"
    RUNNING = "Running"


# what each hold reason the operator writes (the Held condition) means here
_HELD = {
    "Suspended": Cause.SUSPENDED,
    "MaxParallelRacks": Cause.MAX_PARALLEL,
    "MaxFailedRacks": Cause.MAX_FAILED,
    "OperatorLimit": Cause.OPERATOR_LIMIT,
    "NotReady": Cause.NOT_READY,
    "Preempting": Cause.PREEMPTING,
}
_FINISHED = frozenset(p.value for p in TaskPhase if p.finished)
# causes that need a person (or a running operator) to move on
STUCK = frozenset({Cause.NOT_ADMITTED, Cause.OVERDUE, Cause.MAX_FAILED})


@dataclass(frozen=True)
class Action:
    command: str  # what to run ("wait" when nothing is to be run)
    effect: str


@dataclass(frozen=True)
class TaskRef:
    """The Task asked about; `taskspec` is the TaskSpec that made it, if known."""

    name: str
    namespace: str
    taskspec: str | None = None


@dataclass(frozen=True)
class OtherTask:
    """Another Task of the same rack (for the one a queued Task waits behind)."""

    name: str
    phase: str
    message: str = ""


@dataclass
class Diagnosis:
    cause: Cause
    summary: str
    facts: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)

    @property
    def stuck(self) -> bool:
        return self.cause in STUCK


def _ago(now: datetime, then: datetime) -> str:
    return _span((now - then).total_seconds()) + " ago"


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _at(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _held(st: TaskStatus) -> tuple[Cause, str] | None:
    for c in st.conditions:
        if c.type == "Held" and c.status == "True" and c.reason in _HELD:
            return _HELD[c.reason], c.message
    return None


def diagnose(
    ref: TaskRef,
    spec: TaskRunSpec,
    st: TaskStatus,
    now: datetime,
    *,
    created: datetime | None = None,
    rack_tasks: Sequence[OtherTask] = (),
) -> Diagnosis:
    """`created`: the Task's creationTimestamp; `rack_tasks`: the other Tasks
    of its rack (to say what a queued Task waits behind)."""
    ns = f"-n {ref.namespace}"
    cancel_me = Action(
        f"kubectl flow cancel task/{ref.name} {ns}",
        "cancels this Task for good; a running step stops at its next turn, commands "
        "already sent are not undone, and what they left behind in Core is removed",
    )
    if st.phase.finished:
        return _finished(ref, st, now)
    if st.phase is TaskPhase.WAITING:
        return _queued(ref, spec, st, now, rack_tasks, cancel_me)
    if st.phase is TaskPhase.PENDING:
        return _pending(ref, spec, st, now, created, cancel_me)
    return _running(ref, st, now, step_budgets(spec), cancel_me)


def step_budgets(spec: TaskRunSpec) -> dict[tuple[int, str], float]:
    """Seconds one attempt of each step may take, by (stage, component type)."""
    return {
        (s.stage, s.component_type.value): s.timeout_seconds() for s in spec.rule.definition.steps
    }


def _finished(ref: TaskRef, st: TaskStatus, now: datetime) -> Diagnosis:
    cause = {
        TaskPhase.SUCCEEDED: Cause.SUCCEEDED,
        TaskPhase.FAILED: Cause.FAILED,
        TaskPhase.CANCELLED: Cause.CANCELLED,
    }[st.phase]
    d = Diagnosis(cause, f"{st.phase.value}: {st.message}" if st.message else st.phase.value)
    if st.completion_time:
        d.facts.append(f"finished {_ago(now, st.completion_time)} ({_at(st.completion_time)})")
    failed = [
        f"{c.name or c.id}: {c.error}"
        for stage in st.stages
        for step in stage.steps
        for c in step.components
        if c.phase is ItemPhase.FAILED
    ]
    d.facts += failed[:10]
    if len(failed) > 10:
        d.facts.append(f"... and {len(failed) - 10} more failed components")
    if st.releases:
        d.facts.append(
            f"{len(st.releases)} leftovers in Core still being removed "
            f"(attempt {st.release_attempts})"
        )
    if cause is Cause.FAILED:
        d.actions.append(
            Action(
                f"kubectl flow status task/{ref.name} -n {ref.namespace}",
                "shows each step's error; fix the cause, then apply a new TaskSpec for this rack",
            )
        )
    return d


def _queued(
    ref: TaskRef,
    spec: TaskRunSpec,
    st: TaskStatus,
    now: datetime,
    rack_tasks: Sequence[OtherTask],
    cancel_me: Action,
) -> Diagnosis:
    d = Diagnosis(Cause.QUEUED, st.message or "queued behind a conflicting Task on the rack")
    ahead = [
        t
        for t in rack_tasks
        if t.name != ref.name and t.name in st.message and t.phase not in _FINISHED
    ]
    for t in ahead:
        d.facts.append(f"task/{t.name} ahead of it is {t.phase}: {t.message}".rstrip(": "))
    if st.queue_position is not None:
        d.facts.append(f"position {st.queue_position} in rack {spec.rack}'s queue")
    if st.queue_expires_at:
        left = (st.queue_expires_at - now).total_seconds()
        d.facts.append(
            f"leaves the queue (Cancelled) at {_at(st.queue_expires_at)}, in {_span(left)}"
            if left > 0
            else "its queue time is up; the operator cancels it at its next look"
        )
    d.actions.append(Action("wait", "it starts by itself when the Tasks ahead finish"))
    for t in ahead:
        d.actions.append(
            Action(
                f"kubectl flow cancel task/{t.name} -n {ref.namespace}",
                "cancels the Task ahead of it (for good); this one moves up",
            )
        )
    d.actions.append(cancel_me)
    return d


def _pending(
    ref: TaskRef,
    spec: TaskRunSpec,
    st: TaskStatus,
    now: datetime,
    created: datetime | None,
    cancel_me: Action,
) -> Diagnosis:
    held = _held(st)
    ts = f"taskspec/{ref.taskspec}" if ref.taskspec else "its TaskSpec"
    ns = f"-n {ref.namespace}"
    if held is None:
        d = Diagnosis(Cause.NOT_ADMITTED, "no operator has admitted it yet")
        if created is not None:
            d.facts.append(f"created {_ago(now, created)}")
        if created is None or now - created > UNSEEN_AFTER:
            d.facts.append("no operator wrote its status: none is running, or none watches this")
            d.actions.append(
                Action(
                    "kubectl get pods -A -l app.kubernetes.io/component=operator",
                    "shows whether the operator runs; its log says which namespaces it watches",
                )
            )
        else:
            d.cause = Cause.RUNNING  # just created: the operator has not had its turn
            d.summary = "just created; the operator admits it at its next turn"
            d.actions.append(Action("wait", "the operator admits it within seconds"))
        d.actions.append(cancel_me)
        return d
    cause, message = held
    d = Diagnosis(cause, message)
    if cause is Cause.SUSPENDED:
        d.actions.append(
            Action(
                f'kubectl patch {ts} {ns} --type merge -p \'{{"spec":{{"suspend":false}}}}\'',
                "resumes the TaskSpec: its Tasks start, within its limits",
            )
        )
    elif cause is Cause.MAX_PARALLEL:
        d.actions.append(Action("wait", "it starts when one of the TaskSpec's racks finishes"))
        d.actions.append(
            Action(
                f'kubectl patch {ts} {ns} --type merge -p \'{{"spec":{{"maxParallelRacks":N}}}}\'',
                "lets N racks run at once (a larger blast radius)",
            )
        )
    elif cause is Cause.MAX_FAILED:
        d.actions.append(
            Action(
                f"kubectl flow status {ts} {ns}",
                "shows which racks failed and why; this rack does not start until you act",
            )
        )
        d.actions.append(
            Action(
                f"kubectl flow cancel {ts} {ns}",
                "ends the rollout: the racks not started are cancelled",
            )
        )
    elif cause is Cause.OPERATOR_LIMIT:
        d.actions.append(Action("wait", "it starts when a rack elsewhere finishes"))
    elif cause is Cause.NOT_READY:
        d.facts.append("NICo Core reports components in use; starting would cut tenant work")
        d.actions.append(
            Action("wait", "it starts when Core reports them free, or fails at the readiness limit")
        )
        d.actions.append(
            Action(
                "a new TaskSpec with options.overrideReadinessCheck: true",
                "goes ahead on components in use: only when their tenants agreed",
            )
        )
    elif cause is Cause.PREEMPTING:
        d.actions.append(Action("wait", "the coolant-leak response starts once they stop"))
    d.actions.append(cancel_me)
    return d


def _current(st: TaskStatus) -> tuple[StageStatus, StepStatus] | None:
    for stage in st.stages:
        if stage.phase is not ItemPhase.RUNNING:
            continue
        for step in stage.steps:
            if step.phase is ItemPhase.RUNNING:
                return stage, step
    return None


def _running(
    ref: TaskRef,
    st: TaskStatus,
    now: datetime,
    step_timeouts: Mapping[tuple[int, str], float],
    cancel_me: Action,
) -> Diagnosis:
    wait = Action("wait", "the operator goes on by itself")
    if st.releases and _current(st) is None:
        d = Diagnosis(Cause.RELEASING, "removing what earlier Core calls left behind")
        d.facts.append(", ".join(f"{r.id}: {r.leftover.value}" for r in st.releases[:10]))
        if st.release_at:
            d.facts.append(f"next attempt at {_at(st.release_at)} (#{st.release_attempts + 1})")
        d.actions += [wait, cancel_me]
        return d
    found = _current(st)
    if found is None:
        d = Diagnosis(Cause.RUNNING, st.message or "between stages")
        d.actions += [wait, cancel_me]
        return d
    stage, step = found
    kind = step.component_type.value
    where = f"stage {stage.number}/{st.stage_count or len(st.stages)}, {kind} step"
    action = step.action_name or "its action"
    done = step.succeeded + len(step.done)
    facts = [
        f"{where}: {action}, attempt {step.attempt}, {done}/{step.total} components done"
        + (f", batch {step.batch + 1}/{step.batches}" if step.batches > 1 else "")
    ]
    if step.error:
        facts.append(f"last error: {step.error}")
    failing = [c for c in step.components if c.error and c.phase is not ItemPhase.SUCCEEDED]
    facts += [f"{c.name or c.id}: {c.error}" for c in failing[:5]]
    began = step.batch_started_at or step.action_started_at or step.started_at
    budget = step_timeouts.get((stage.number, kind))
    deadline = began + timedelta(seconds=budget) if began and budget else None
    if began and deadline:
        facts.append(
            f"this attempt began {_ago(now, began)}; its time budget ends at {_at(deadline)}"
        )
    intent = step.intent
    if deadline and now > deadline + OVERDUE_AFTER:
        d = Diagnosis(
            Cause.OVERDUE,
            f"{where} is {_span((now - deadline).total_seconds())} past its time budget: "
            "no operator is driving it",
            facts,
        )
        d.actions.append(
            Action(
                "kubectl get pods -A -l app.kubernetes.io/component=operator",
                "shows whether the operator runs; a restarted one reads Core's state and "
                "goes on without sending anything twice",
            )
        )
        d.actions.append(cancel_me)
        return d
    if intent is not None and intent.unknown_since is not None:
        d = Diagnosis(
            Cause.CORE_UNANSWERED,
            f"a {intent.action} call for {len(intent.component_ids)} components got no "
            f"answer from NICo Core ({_ago(now, intent.unknown_since)})",
            facts,
        )
        if intent.lost_error:
            d.facts.append(f"Core said: {intent.lost_error}")
        d.facts.append(
            "the operator reads Core's state before it sends anything again; it will "
            "not repeat a command that landed"
        )
        d.actions += [
            Action("wait", "it goes on once Core answers"),
            Action(
                "check NICo Core and the operator's connection to it",
                "its log names the address and the error",
            ),
            cancel_me,
        ]
        return d
    if step.next_at is not None and step.next_at > now:
        if step.attempt > 1 or step.transient_retries:
            cause, what = Cause.RETRYING, f"retrying {action} at {_at(step.next_at)}"
        else:
            cause = Cause.WAITING_ON_HARDWARE
            what = f"{action}: next look at the hardware at {_at(step.next_at)}"
            if step.polls:
                what += f" ({step.polls} reads so far)"
        d = Diagnosis(cause, what, facts)
        d.actions += [wait, cancel_me]
        return d
    d = Diagnosis(Cause.RUNNING, f"{where}: {action}", facts)
    d.actions += [wait, cancel_me]
    return d
