"""Task admission and execution.

One TaskManager lives in the active operator. It knows every Task (seeded by a
full LIST at start, then kept current by watch events), admits Tasks rack by
rack under a per-rack lock — conflicts, FIFO queue, TaskSpec rollout limits,
readiness gate — and runs each admitted Task's engine loop as an asyncio task.
The Task's status is the only durable state: a restarted operator rebuilds all
of this from the Tasks themselves."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from nicoflow.api.taskstatus import AppliedRule, TaskStatus
from nicoflow.controller import events, metrics
from nicoflow.controller.actuator import Actuator
from nicoflow.controller.bodies import compact, settled
from nicoflow.controller.coalesce import Coalescer
from nicoflow.controller.ownership import TaskGuard
from nicoflow.controller.plans import footprint, plan_from_task, status_of, status_patch, task_spec
from nicoflow.controller.resources import TASKS, TASKSPECS
from nicoflow.controller.runner import drive
from nicoflow.controller.stage_spans import SPANS
from nicoflow.controller.task_entries import Entry, Key, TaskIndex
from nicoflow.core.readiness import (
    ComponentStatus,
    check_readiness,
    gated_components,
    gated_operation,
    needs_rack_hosts,
)
from nicoflow.domain.conflicts import (
    Queue,
    Reject,
    Start,
    Waiting,
    admit,
    conflict,
    promotable,
)
from nicoflow.domain.types import TaskPhase
from nicoflow.engine.compaction import ComponentRecord
from nicoflow.engine.plan import Call, Options, Outcome, Plan
from nicoflow.engine.task import Decision, set_condition
from nicoflow.kube.client import ApiError, KubeClient, NotFound

log = logging.getLogger(__name__)

StatusLookup = Callable[[list[str]], Awaitable[dict[str, ComponentStatus]]]
RackHosts = Callable[[str], Awaitable[list[str]]]
Archiver = Callable[[dict[str, Any]], Awaitable[None]]
ResultArchiver = Callable[[str, list[ComponentRecord]], Awaitable[None]]
# the task index in PostgreSQL (the API reads it): Tasks as found, phase changes
Indexer = Callable[[list[dict[str, Any]]], Awaitable[None]]
PhaseRecorder = Callable[[dict[str, Any], TaskPhase, datetime | None, str], Awaitable[None]]

READINESS_TIMEOUT = timedelta(minutes=30)
READINESS_RECHECK = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


# holds that last until someone acts (the others end by themselves)
NEEDS_A_PERSON = frozenset({"MaxFailedRacks"})


@dataclass
class Settings:
    stage_events: bool = False  # Normal events per stage cost one apiserver write each
    readiness_timeout: timedelta = READINESS_TIMEOUT
    confirm_window: float = 30.0  # seconds; see engine.plan.Plan.confirm_window
    # racks with a Task running at once, whatever TaskSpec: 0 = no limit
    max_racks_in_flight: int = 0


class TaskManager:
    def __init__(
        self,
        kube: KubeClient,
        actuator: Actuator,
        *,
        namespaces: tuple[str, ...] = (),
        statuses: StatusLookup | None = None,
        rack_hosts: RackHosts | None = None,
        archive: Archiver | None = None,
        results: ResultArchiver | None = None,
        index: Indexer | None = None,
        phases: PhaseRecorder | None = None,
        on_change: Callable[[Key], None] | None = None,
        settings: Settings | None = None,
        clock: Callable[[], datetime] = utcnow,
        guard: TaskGuard | None = None,
    ) -> None:
        self.kube = kube
        self.actuator = actuator
        self.namespaces = namespaces
        self.statuses = statuses
        self.rack_hosts = rack_hosts
        self.archive = archive
        self.results = results
        self.index = index
        self.phases = phases
        self.on_change = on_change or (lambda _key: None)
        self.settings = settings or Settings()
        self.clock = clock
        self.guard = guard
        self.entries = TaskIndex()
        self.taskspecs: dict[Key, dict[str, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._admission = Coalescer(self._admit_once)
        self._synced = asyncio.Event()
        self._closing = False
        # racks with a Task held by the operator-wide limit: kicked when a slot frees
        self.held_by_limit: set[str] = set()
        self._chores: set[asyncio.Future[None]] = set()  # background writes, kept alive

    # -- state from the apiserver ----------------------------------------------

    async def sync(self) -> None:
        """Seed from a full LIST before admitting anything: admission must see
        every running Task on a rack, not only those watched so far."""
        for namespace in self.namespaces or (None,):
            # TaskSpecs first: their suspend and rollout limits gate admission
            async for body in self.kube.iter(TASKSPECS, namespace):
                key = (body["metadata"]["namespace"], body["metadata"]["name"])
                self.taskspecs.setdefault(key, compact(body))
            async for body in self.kube.iter(TASKS, namespace):
                self._store(body)
        self._synced.set()
        for rack in self.entries.racks():
            self.kick(rack)
        # Tasks made before the index existed, or while PostgreSQL was down
        live = [e.body for e in self.entries.values() if not e.phase.finished]
        if self.index is not None and live:
            try:
                await self.index(live)
            except Exception as exc:
                log.warning("indexing %d unfinished Tasks failed: %s", len(live), exc)

    def observe(self, event_type: str, body: dict[str, Any]) -> None:
        """A watch event for a Task."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            entry = self.entries.pop(key)
            SPANS.forget(key)
            if entry and entry.runner:
                entry.runner.cancel()
            if entry:
                self.kick(entry.rack)
                if not entry.phase.finished:
                    # its history row would stay "running" for ever otherwise
                    gone = asyncio.ensure_future(self._archive_deleted(entry))
                    self._chores.add(gone)
                    gone.add_done_callback(self._chores.discard)
            return
        entry = self._store(body)
        if entry is None:
            return
        if _cancel_requested(entry.body) or self._taskspec_cancelled(entry):
            entry.wake.set()
        self.on_change(entry.taskspec)
        if not entry.phase.finished and entry.runner is None:
            self.kick(entry.rack)

    def observe_taskspec(self, event_type: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self.taskspecs.pop(key, None)
            return
        self.taskspecs[key] = compact(body)
        racks = set()
        for entry in self.entries.of_taskspec(key):
            if not entry.phase.finished:
                entry.wake.set()
                racks.add(entry.rack)
        for rack in racks:
            self.kick(rack)

    def _store(self, body: dict[str, Any]) -> Entry | None:
        meta = body.get("metadata", {})
        if not body.get("spec"):
            return None
        key = (meta.get("namespace", ""), meta.get("name", ""))
        entry = self.entries.get(key)
        if entry is None:
            entry = Entry(key, compact(body))
            # finished before this process saw it: archived by whoever finished it
            entry.settled = entry.phase.finished
            self.entries.add(entry)
        elif _newer(body, entry.body):
            entry.body = compact(body)
        if entry.settled:
            entry.body = settled(entry.body)
        return entry

    def _taskspec_cancelled(self, entry: Entry) -> bool:
        ts = self.taskspecs.get(entry.taskspec)
        return bool(ts and (ts.get("spec") or {}).get("cancel"))

    # -- admission -------------------------------------------------------------

    def kick(self, rack: str) -> None:
        """Re-run admission for a rack soon; kicks arriving meanwhile coalesce."""
        self._admission.kick(rack)

    async def _admit_once(self, rack: str) -> bool:
        await self._synced.wait()
        try:
            await self._admit(rack)
        except Exception:
            log.exception("admission on rack %s failed; retrying", rack)
            await asyncio.sleep(2)
            return True
        return False

    async def _admit(self, rack: str) -> None:
        lock = self._locks.setdefault(rack, asyncio.Lock())
        async with lock:
            now = self.clock()
            everything = self.entries.on_rack(rack)
            if self.guard is not None:  # only Tasks the operator made for a live TaskSpec run
                fresh = [e for e in everything if e.runner is None and not e.phase.finished]
                unchecked = [e.body for e in fresh]
                try:
                    refusals = await self.guard.check(unchecked, self.taskspecs)
                except Exception as exc:
                    leak_bodies = [e.body for e in fresh if e.leak_response]
                    if not leak_bodies:
                        raise
                    # the inventory cannot answer: leak responses go on, checked
                    # for ownership alone; the rest wait for it
                    log.warning("rack %s: Task checks failed (%s); leak responses only", rack, exc)
                    refusals = await self.guard.check_owners(leak_bodies, self.taskspecs)
                    held_back = {e.key for e in fresh if not e.leak_response}
                    everything = [e for e in everything if e.key not in held_back]
                    self._recheck(rack)
                for key, no in refusals.items():
                    if key in self.entries:  # not deleted meanwhile (e.g. collected as orphan)
                        entry = self.entries[key]
                        await self._finish_unstarted(entry, TaskPhase.FAILED, no.reason, no.message)
                everything = [e for e in everything if e.key in self.entries]
            for entry in everything:
                if entry.runner is None and (entry.phase is TaskPhase.RUNNING or entry.releasing):
                    self._start(entry)  # resume after an operator restart
            mine = [e for e in everything if not e.phase.finished]
            mine.sort(key=lambda e: (e.created, e.key))
            leaks = [e for e in mine if e.leak_response and not e.running]
            for leak in leaks:
                await self._preempt_for(leak, mine)
            mine = [e for e in mine if not e.phase.finished and e.key in self.entries]
            for entry in [e for e in mine if not e.running]:
                if _cancel_requested(entry.body) or self._taskspec_cancelled(entry):
                    await self._finish_unstarted(
                        entry, TaskPhase.CANCELLED, "Cancelled", "cancelled before it started"
                    )
            mine = [e for e in mine if not e.phase.finished and e.key in self.entries]
            # a leak response not started yet occupies its components already:
            # nothing that conflicts with it starts meanwhile
            running = [footprint(e.body) for e in mine if e.running or e.leak_response]
            mine = [e for e in mine if not e.leak_response]
            waiting_entries = [e for e in mine if e.phase is TaskPhase.WAITING and not e.running]
            waiting = [self._waiting(e) for e in waiting_entries]
            start, expired = promotable(running, waiting, now)
            for entry in waiting_entries:
                name = entry.key[1]
                if name in expired:
                    await self._finish_unstarted(
                        entry,
                        TaskPhase.CANCELLED,
                        "QueueTimeout",
                        "left the rack's queue: queue timeout reached",
                    )
                elif (
                    name in start
                    and await self._ready(entry, now)
                    and not self._rollout_hold(entry)
                ):
                    running.append(footprint(entry.body))
                    self._start(entry)
            still_waiting = [
                self._waiting(e) for e in waiting_entries if not e.running and not e.phase.finished
            ]
            for entry in [e for e in mine if e.phase is TaskPhase.PENDING and not e.running]:
                hold = self._rollout_hold(entry)
                if hold:
                    await self._hold(entry, *hold)
                    continue
                fp = footprint(entry.body)
                spec = task_spec(entry.body)
                decision = admit(fp, spec.conflict_strategy, running, still_waiting)
                if isinstance(decision, Start):
                    if not await self._ready(entry, now):
                        continue
                    # other racks' admissions ran while the readiness lookup
                    # was awaited: the TaskSpec's limits must be read again
                    hold = self._rollout_hold(entry)
                    if hold:
                        await self._hold(entry, *hold)
                        continue
                    running.append(fp)
                    self._start(entry)
                elif isinstance(decision, Queue):
                    expires = now + timedelta(seconds=spec.queue_timeout_seconds)
                    await self._queue(entry, now, expires, decision)
                    still_waiting.append(Waiting(fp, now, expires))
                elif isinstance(decision, Reject):
                    await self._finish_unstarted(
                        entry, TaskPhase.FAILED, "Rejected", f"rejected: {decision.reason}"
                    )
            if still_waiting:
                # nothing else wakes the rack while its running Task goes on:
                # come back when the first queued Task's time runs out
                self._kick_at(rack, min(w.expires_at for w in still_waiting))

    async def _preempt_for(self, leak: Entry, mine: list[Entry]) -> None:
        """A leak response goes first: conflicting Tasks on its rack are
        cancelled (running ones stop at their next turn, waiting ones at once),
        then it starts, past queues, holds and limits."""
        fp = footprint(leak.body)
        who = leak.taskspec[1]
        blocking = False
        for other in mine:
            if other is leak or other.leak_response or other.phase.finished:
                continue
            if conflict(fp, footprint(other.body)) is None:
                continue
            message = (
                f"cancelled to make way for the coolant-leak response {who} on this rack "
                "(a leaking component must go dark first)"
            )
            if other.running:
                blocking = True
                if other.preempted_by is None:
                    other.preempted_by = who
                    other.wake.set()
                    await events.post(self.kube, other.body, "Warning", "Preempted", message)
            else:
                await self._finish_unstarted(other, TaskPhase.CANCELLED, "Preempted", message)
        if blocking:
            await self._hold(
                leak,
                "Preempting",
                "pre-empting conflicting Tasks on the rack; starting once they stop",
            )
            return
        self._start(leak)

    def _kick_at(self, rack: str, when: datetime) -> None:
        self._admission.kick_later(rack, max(0.0, (when - self.clock()).total_seconds()) + 0.05)

    def _waiting(self, entry: Entry) -> Waiting:
        st = status_of(entry.body)
        queued = st.queued_at or self.clock()
        expires = st.queue_expires_at or queued + timedelta(
            seconds=task_spec(entry.body).queue_timeout_seconds
        )
        return Waiting(footprint(entry.body), queued, expires)

    def _rollout_hold(self, entry: Entry) -> tuple[str, str] | None:
        """(reason, message) of what holds a Pending Task back, if anything."""
        ts = self.taskspecs.get(entry.taskspec)
        spec = (ts or {}).get("spec") or {}
        if spec.get("suspend"):
            return "Suspended", "suspended: the TaskSpec is suspended"
        limit = self.settings.max_racks_in_flight
        if limit:
            flying = self.entries.in_flight()
            if flying >= limit:
                self.held_by_limit.add(entry.rack)
                return (
                    "OperatorLimit",
                    f"waiting for a slot: {flying} racks in flight, the operator's limit "
                    f"(--max-racks-in-flight={limit})",
                )
            self.held_by_limit.discard(entry.rack)
        max_failed = spec.get("maxFailedRacks")
        failed = self.entries.failed(entry.taskspec)
        if max_failed is not None and failed > max_failed:
            return (
                "MaxFailedRacks",
                f"not started: {failed} racks failed, more than maxFailedRacks={max_failed}",
            )
        max_parallel = spec.get("maxParallelRacks") or 0
        active = self.entries.active(entry.taskspec)
        if max_parallel and active >= max_parallel:
            return (
                "MaxParallelRacks",
                f"waiting for a slot: {active} of maxParallelRacks={max_parallel} running",
            )
        return None

    async def _ready(self, entry: Entry, now: datetime) -> bool:
        """The readiness gate: components busy in Core (e.g. tenant work) hold
        the Task — the targeted trays, and for switches and power shelves every
        tray of the rack behind them."""
        plan = plan_from_task(entry.body)
        if self.statuses is None:
            return True
        if plan.options.override_readiness:
            await self._note_override(entry)
            return True
        try:
            ids = await self._gated_ids(entry, plan)
            statuses = await self.statuses(ids)
        except Exception as exc:  # inventory unreachable: do not start blind
            log.warning("readiness lookup failed for %s: %s", entry.key, exc)
            self._recheck(entry.rack)
            return False
        verdict = check_readiness(ids, statuses, gated_operation(plan.operation.operation_type))
        if verdict.ready:
            entry.blocked_since = None
            return True
        entry.blocked_since = entry.blocked_since or now
        if now - entry.blocked_since > self.settings.readiness_timeout:
            await self._finish_unstarted(
                entry,
                TaskPhase.FAILED,
                "NotReady",
                f"components stayed busy for {self.settings.readiness_timeout}: "
                f"{verdict.describe()}",
            )
            return False
        await self._hold(entry, "NotReady", f"waiting for readiness: {verdict.describe()}")
        self._recheck(entry.rack)
        return False

    async def _gated_ids(self, entry: Entry, plan: Plan) -> list[str]:
        targets = {t: [c.id for c in comps if c.id] for t, comps in plan.components.items()}
        hosts: list[str] = []
        if self.rack_hosts is not None and needs_rack_hosts(t for t, ids in targets.items() if ids):
            hosts = await self.rack_hosts(entry.rack)
        return gated_components(targets, entry.rack, hosts)

    async def _note_override(self, entry: Entry) -> None:
        """Whoever skipped the gate is on record, once per Task."""
        st = status_of(entry.body)
        if any(c.type == "ReadinessCheck" for c in st.conditions):
            return
        who = (entry.body.get("spec") or {}).get("requestedBy")
        message = (
            f"readiness check overridden (overrideReadinessCheck) by TaskSpec {entry.taskspec[1]}"
            f"{f', requested by {who}' if who else ''}: in-use components are not waited for"
        )
        set_condition(st, "ReadinessCheck", "False", "Overridden", message, self.clock())
        if await self._write(entry, st):
            await events.post(self.kube, entry.body, "Warning", "ReadinessOverridden", message)

    def _recheck(self, rack: str) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(READINESS_RECHECK, self.kick, rack)

    # -- status writes for Tasks that have not started -------------------------

    async def _write(self, entry: Entry, status: TaskStatus) -> bool:
        try:
            body = await self.kube.patch(
                TASKS,
                entry.key[1],
                {"status": status_patch(status)},
                entry.key[0],
                subresource="status",
            )
        except NotFound:
            self.entries.pop(entry.key)
            return False
        before = entry.phase
        entry.body = compact(body)
        self.on_change(entry.taskspec)
        if entry.phase is not before and not entry.phase.finished:
            await self._record_phase(entry, status)
        return True

    async def _record_phase(self, entry: Entry, status: TaskStatus) -> None:
        """Keep the task index's phase current (a finished Task is archived whole)."""
        if self.phases is None:
            return
        try:
            await self.phases(entry.body, status.phase, status.start_time, status.message)
        except Exception as exc:  # the index catches up when the Task is archived
            log.warning("task %s/%s: indexing phase %s failed: %s", *entry.key, status.phase, exc)

    async def _hold(self, entry: Entry, reason: str, message: str) -> None:
        """Keep a Task Pending, saying why (the Held condition's reason names
        the cause for `kubectl flow why`)."""
        st = status_of(entry.body)
        if st.message == message and st.phase is TaskPhase.PENDING:
            return
        st.message = message
        st.phase = TaskPhase.PENDING
        now = self.clock()
        set_condition(st, "Held", "True", reason, message, now)
        stuck = reason in NEEDS_A_PERSON
        if stuck:
            set_condition(st, "Progressing", "False", "Stuck", message, now)
        if await self._write(entry, st) and stuck:
            await events.post(self.kube, entry.body, "Warning", "Stuck", message)

    async def _queue(self, entry: Entry, now: datetime, expires: datetime, q: Queue) -> None:
        st = status_of(entry.body)
        st.phase = TaskPhase.WAITING
        st.queued_at = now
        st.queue_expires_at = expires
        st.queue_position = q.position
        st.message = f"queued behind {q.behind} (position {q.position})"
        set_condition(st, "Queued", "True", "ConflictingTask", st.message, now)
        if any(c.type == "Held" for c in st.conditions):
            set_condition(st, "Held", "False", "Queued", "", now)
        await self._write(entry, st)

    async def _finish_unstarted(
        self, entry: Entry, phase: TaskPhase, reason: str, message: str
    ) -> None:
        now = self.clock()
        st = status_of(entry.body)
        st.phase = phase
        st.message = message
        st.completion_time = now
        st.queue_position = None
        set_condition(st, "Failed", "True", reason, message, now)
        if await self._write(entry, st):
            etype = (
                "Normal" if phase is TaskPhase.CANCELLED and reason == "Cancelled" else "Warning"
            )
            await events.post(self.kube, entry.body, etype, reason, message)
            await self._archive(entry)

    # -- running ---------------------------------------------------------------

    def _start(self, entry: Entry) -> None:
        entry.blocked_since = None
        entry.runner = asyncio.ensure_future(self._run(entry))

    async def _run(self, entry: Entry) -> None:
        try:
            await self._drive(entry)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s/%s: engine loop failed; will resume", *entry.key)
            await asyncio.sleep(5)
        finally:
            entry.runner = None
            if not self._closing:
                self.kick(entry.rack)
                for other in self._sibling_racks(entry) | self.held_by_limit:
                    self.kick(other)

    def _sibling_racks(self, entry: Entry) -> set[str]:
        return self.entries.pending_racks(entry.taskspec)

    async def _drive(self, entry: Entry) -> None:
        status = status_of(entry.body)
        if status.applied_rule is None:
            # which rule runs, and why, next to the run itself (written with the start)
            rule = task_spec(entry.body).rule
            status.applied_rule = AppliedRule(
                name=rule.name, source=rule.source.value, reason=(rule.reason or "")[:512]
            )
        if await drive(_OperatorHost(self, entry), status) is not None:
            await self._archive(entry)

    async def _persist(self, entry: Entry, d: Decision) -> bool:
        """Write the status; retry transient failures, because the calls that
        follow depend on the intent being recorded first."""
        delay = 0.5
        while True:
            try:
                return await self._write(entry, d.status)
            except (ApiError, httpx.HTTPError) as exc:
                if isinstance(exc, ApiError) and exc.status == 422:
                    log.error("task %s/%s: status rejected: %s", *entry.key, exc)
                    raise
                log.warning("task %s/%s: status write failed (%s); retrying", *entry.key, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _post_events(self, entry: Entry, d: Decision) -> None:
        for ev in d.events:
            if (
                ev.type == "Normal"
                and ev.reason.startswith("Stage")
                and not self.settings.stage_events
            ):
                continue
            await events.post(self.kube, entry.body, ev.type, ev.reason, ev.message)

    async def _archive(self, entry: Entry) -> None:
        self.on_change(entry.taskspec)
        try:
            if self.archive is not None:
                await self.archive(entry.body)
        except Exception as exc:
            log.warning("task %s/%s: archiving failed: %s", *entry.key, exc)
        finally:
            entry.settled = True
            entry.body = settled(entry.body)

    async def _archive_deleted(self, entry: Entry) -> None:
        if self.archive is None:
            return
        status = {
            **(entry.body.get("status") or {}),
            "phase": TaskPhase.CANCELLED.value,
            "message": "deleted before it finished (its TaskSpec or the Task was deleted)",
            "completionTime": self.clock().isoformat(),
        }
        try:
            await self.archive({**entry.body, "status": status})
        except Exception as exc:
            log.warning("task %s/%s: archiving the deleted Task failed: %s", *entry.key, exc)

    async def close(self) -> None:
        self._closing = True
        tasks = [e.runner for e in self.entries.values() if e.runner]
        tasks += self._admission.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- views -------------------------------------------------------------------

    def tasks_of(self, taskspec: Key) -> list[Entry]:
        return self.entries.of_taskspec(taskspec)


class _OperatorHost:
    """The engine loop's view of one Task in the operator: status in the
    apiserver, calls through the actuator, waits woken by watch events."""

    def __init__(self, manager: TaskManager, entry: Entry) -> None:
        self.manager = manager
        self.entry = entry
        self._planned: tuple[object, bool] | None = None
        self._plan: Plan | None = None

    def now(self) -> datetime:
        return self.manager.clock()

    def generation(self) -> int | None:
        gen = self.entry.body["metadata"].get("generation")
        return int(gen) if gen is not None else None

    def plan(self) -> Plan:
        entry = self.entry
        cancel = (
            _cancel_requested(entry.body)
            or self.manager._taskspec_cancelled(entry)
            or entry.preempted_by is not None
        )
        # parsing the spec is the costly part of a loop turn; it changes only
        # with the generation (a cancel request) or the TaskSpec's cancel
        key = (entry.body["metadata"].get("generation"), cancel)
        if self._plan is None or self._planned != key:
            plan = plan_from_task(entry.body, cancel=cancel)
            window = self.manager.settings.confirm_window
            self._plan = dataclasses.replace(plan, confirm_window=window)
            self._planned = key
        return self._plan

    async def persist(self, decision: Decision) -> bool:
        return await self.manager._persist(self.entry, decision)

    async def archive(self, records: list[ComponentRecord]) -> bool:
        store = self.manager.results
        if store is None:
            return False  # no archive: the status keeps every result
        try:
            await store(str(self.entry.body["metadata"]["uid"]), records)
        except Exception as exc:  # kept in status, offered again with the next write
            log.warning("task %s/%s: archiving step results failed: %s", *self.entry.key, exc)
            return False
        return True

    async def observe(self, before: TaskStatus, decision: Decision) -> None:
        entry = self.entry
        operation = self.plan().operation.value
        await self.manager._post_events(entry, decision)
        _observe_progress(operation, before, decision)
        SPANS.observe(entry.key, entry.body, operation, before, decision)
        _log_progress(entry, operation, before, decision)

    async def act(self, calls: list[Call], options: Options) -> list[Outcome]:
        actuator = self.manager.actuator
        runs = [SPANS.within(self.entry.key, c.stage, actuator.run(c, options)) for c in calls]
        return list(await asyncio.gather(*runs))

    async def wait(self, until: datetime | None) -> None:
        wake = self.entry.wake
        wake.clear()
        timeout = (until - self.now()).total_seconds() if until else 60.0
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)


def _observe_progress(operation: str, before: TaskStatus, d: Decision) -> None:
    """Stage durations and final phases, for the metrics endpoint."""
    done_before = {s.number for s in before.stages if s.phase.finished}
    for stage in d.status.stages:
        if stage.number in done_before or not stage.phase.finished:
            continue
        if stage.started_at and stage.finished_at:
            seconds = (stage.finished_at - stage.started_at).total_seconds()
            metrics.STAGE_SECONDS.labels(operation, stage.phase.value).observe(seconds)
    if d.finished and not before.phase.finished:
        metrics.TASKS_FINISHED.labels(operation, d.status.phase.value).inc()


def _log_progress(entry: Entry, operation: str, before: TaskStatus, d: Decision) -> None:
    """One structured line per meaningful transition (stage, final phase)."""
    ctx = {
        "task": entry.key[1],
        "namespace": entry.key[0],
        "taskspec": entry.taskspec[1],
        "rack": entry.rack,
        "operation": operation,
    }
    done_before = {s.number for s in before.stages if s.phase.finished}
    for stage in d.status.stages:
        if stage.number not in done_before and stage.phase.finished:
            level = logging.WARNING if stage.phase.value == "Failed" else logging.INFO
            log.log(
                level,
                "stage %d %s%s",
                stage.number,
                stage.phase.value.lower(),
                f": {stage.error}" if stage.error else "",
                extra={**ctx, "stage": stage.number, "phase": stage.phase.value},
            )
    if d.finished and not before.phase.finished:
        log.info(
            "task %s: %s",
            d.status.phase.value.lower(),
            d.status.message,
            extra={**ctx, "phase": d.status.phase.value},
        )


def _cancel_requested(body: dict[str, Any]) -> bool:
    return bool((body.get("spec") or {}).get("cancel"))


def _newer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """resourceVersions are opaque, but etcd's are increasing integers; fall
    back to "newer" when they are not numbers."""
    ra, rb = a["metadata"].get("resourceVersion", ""), b["metadata"].get("resourceVersion", "")
    try:
        return int(ra) >= int(rb)
    except ValueError:
        return True
