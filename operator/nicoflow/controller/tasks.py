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
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
from nicoflow.controller.stage_spans import SPANS
from nicoflow.core.readiness import ComponentStatus, check_readiness, gated_operation
from nicoflow.domain.conflicts import Queue, Reject, Start, Waiting, admit, promotable
from nicoflow.domain.types import TaskPhase
from nicoflow.engine.plan import Outcome
from nicoflow.engine.task import Decision, advance, set_condition
from nicoflow.kube.client import ApiError, KubeClient, NotFound

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
StatusLookup = Callable[[list[str]], Awaitable[dict[str, ComponentStatus]]]
Archiver = Callable[[dict[str, Any]], Awaitable[None]]

READINESS_TIMEOUT = timedelta(minutes=30)
READINESS_RECHECK = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Entry:
    key: Key
    body: dict[str, Any]
    runner: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    blocked_since: datetime | None = None
    # finished and archived: its body is kept without stage results
    settled: bool = False

    @property
    def phase(self) -> TaskPhase:
        return TaskPhase((self.body.get("status") or {}).get("phase") or TaskPhase.PENDING)

    @property
    def rack(self) -> str:
        return str(self.body["spec"]["rack"])

    @property
    def taskspec(self) -> Key:
        return (self.key[0], str(self.body["spec"]["taskSpecName"]))

    @property
    def created(self) -> str:
        return str(self.body["metadata"].get("creationTimestamp", ""))

    @property
    def running(self) -> bool:
        return self.runner is not None or self.phase is TaskPhase.RUNNING


@dataclass
class Settings:
    stage_events: bool = False  # Normal events per stage cost one apiserver write each
    readiness_timeout: timedelta = READINESS_TIMEOUT


class TaskManager:
    def __init__(
        self,
        kube: KubeClient,
        actuator: Actuator,
        *,
        namespaces: tuple[str, ...] = (),
        statuses: StatusLookup | None = None,
        archive: Archiver | None = None,
        on_change: Callable[[Key], None] | None = None,
        settings: Settings | None = None,
        clock: Callable[[], datetime] = utcnow,
        guard: TaskGuard | None = None,
    ) -> None:
        self.kube = kube
        self.actuator = actuator
        self.namespaces = namespaces
        self.statuses = statuses
        self.archive = archive
        self.on_change = on_change or (lambda _key: None)
        self.settings = settings or Settings()
        self.clock = clock
        self.guard = guard
        self.entries: dict[Key, Entry] = {}
        self.taskspecs: dict[Key, dict[str, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._admission = Coalescer(self._admit_once)
        self._synced = asyncio.Event()
        self._closing = False

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
        for rack in {e.rack for e in self.entries.values()}:
            self.kick(rack)

    def observe(self, event_type: str, body: dict[str, Any]) -> None:
        """A watch event for a Task."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            entry = self.entries.pop(key, None)
            SPANS.forget(key)
            if entry and entry.runner:
                entry.runner.cancel()
            if entry:
                self.kick(entry.rack)
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
        for entry in self.entries.values():
            if entry.taskspec == key and not entry.phase.finished:
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
            self.entries[key] = entry
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
            mine = [e for e in self.entries.values() if e.rack == rack and not e.phase.finished]
            mine.sort(key=lambda e: (e.created, e.key))
            if self.guard is not None:  # only Tasks the operator made for a live TaskSpec run
                unchecked = [e.body for e in mine if e.runner is None]
                for key, no in (await self.guard.check(unchecked, self.taskspecs)).items():
                    if key in self.entries:  # not deleted meanwhile (e.g. collected as orphan)
                        entry = self.entries[key]
                        await self._finish_unstarted(entry, TaskPhase.FAILED, no.reason, no.message)
                mine = [e for e in mine if not e.phase.finished]
            for entry in mine:
                if entry.runner is None and entry.phase is TaskPhase.RUNNING:
                    self._start(entry)  # resume after an operator restart
            for entry in [e for e in mine if not e.running]:
                if _cancel_requested(entry.body) or self._taskspec_cancelled(entry):
                    await self._finish_unstarted(
                        entry, TaskPhase.CANCELLED, "Cancelled", "cancelled before it started"
                    )
            mine = [e for e in mine if not e.phase.finished and e.key in self.entries]
            running = [footprint(e.body) for e in mine if e.running]
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
                    await self._hold(entry, hold)
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
                        await self._hold(entry, hold)
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

    def _kick_at(self, rack: str, when: datetime) -> None:
        self._admission.kick_later(rack, max(0.0, (when - self.clock()).total_seconds()) + 0.05)

    def _waiting(self, entry: Entry) -> Waiting:
        st = status_of(entry.body)
        queued = st.queued_at or self.clock()
        expires = st.queue_expires_at or queued + timedelta(
            seconds=task_spec(entry.body).queue_timeout_seconds
        )
        return Waiting(footprint(entry.body), queued, expires)

    def _rollout_hold(self, entry: Entry) -> str | None:
        ts = self.taskspecs.get(entry.taskspec)
        spec = (ts or {}).get("spec") or {}
        if spec.get("suspend"):
            return "suspended: the TaskSpec is suspended"
        siblings = [e for e in self.entries.values() if e.taskspec == entry.taskspec]
        max_failed = spec.get("maxFailedRacks")
        failed = sum(e.phase is TaskPhase.FAILED for e in siblings)
        if max_failed is not None and failed > max_failed:
            return f"not started: {failed} racks failed, more than maxFailedRacks={max_failed}"
        max_parallel = spec.get("maxParallelRacks") or 0
        active = sum(e.running for e in siblings)
        if max_parallel and active >= max_parallel:
            return f"waiting for a slot: {active} of maxParallelRacks={max_parallel} running"
        return None

    async def _ready(self, entry: Entry, now: datetime) -> bool:
        """The readiness gate: components busy in Core (e.g. tenant work) hold the Task."""
        plan = plan_from_task(entry.body)
        if plan.options.override_readiness or self.statuses is None:
            return True
        ids = [c.id for comps in plan.components.values() for c in comps if c.id]
        try:
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
        await self._hold(entry, f"waiting for readiness: {verdict.describe()}")
        self._recheck(entry.rack)
        return False

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
            self.entries.pop(entry.key, None)
            return False
        entry.body = compact(body)
        self.on_change(entry.taskspec)
        return True

    async def _hold(self, entry: Entry, message: str) -> None:
        st = status_of(entry.body)
        if st.message == message and st.phase is TaskPhase.PENDING:
            return
        st.message = message
        st.phase = TaskPhase.PENDING
        await self._write(entry, st)

    async def _queue(self, entry: Entry, now: datetime, expires: datetime, q: Queue) -> None:
        st = status_of(entry.body)
        st.phase = TaskPhase.WAITING
        st.queued_at = now
        st.queue_expires_at = expires
        st.queue_position = q.position
        st.message = f"queued behind {q.behind} (position {q.position})"
        set_condition(st, "Queued", "True", "ConflictingTask", st.message, now)
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
                for other in self._sibling_racks(entry):
                    self.kick(other)

    def _sibling_racks(self, entry: Entry) -> set[str]:
        return {
            e.rack
            for e in self.entries.values()
            if e.taskspec == entry.taskspec and e.phase is TaskPhase.PENDING
        }

    async def _drive(self, entry: Entry) -> None:
        status = status_of(entry.body)
        if status.applied_rule is None:
            # which rule runs, and why, next to the run itself (written with the start)
            rule = task_spec(entry.body).rule
            status.applied_rule = AppliedRule(
                name=rule.name, source=rule.source.value, reason=(rule.reason or "")[:512]
            )
        outcomes: list[Outcome] = []
        fresh = True
        planned: tuple[object, bool] | None = None
        while True:
            cancel = _cancel_requested(entry.body) or self._taskspec_cancelled(entry)
            # parsing the spec is the costly part of a loop turn; it changes only
            # with the generation (a cancel request) or the TaskSpec's cancel
            if planned != (entry.body["metadata"].get("generation"), cancel):
                plan = plan_from_task(entry.body, cancel=cancel)
                planned = (entry.body["metadata"].get("generation"), cancel)
            now = self.clock()
            d = advance(
                plan,
                status,
                outcomes,
                now,
                fresh=fresh,
                generation=entry.body["metadata"].get("generation"),
            )
            fresh = False
            if d.persist and not await self._persist(entry, d):
                return
            await self._post_events(entry, d)
            _observe_progress(plan.operation.value, status, d)
            SPANS.observe(entry.key, entry.body, plan.operation.value, status, d)
            _log_progress(entry, plan.operation.value, status, d)
            status = d.status
            if d.finished:
                await self._archive(entry)
                return
            if d.calls:
                runs = [
                    SPANS.within(entry.key, c.stage, self.actuator.run(c, plan.options))
                    for c in d.calls
                ]
                outcomes = list(await asyncio.gather(*runs))
                continue
            outcomes = []
            entry.wake.clear()
            timeout = (d.wake_at - self.clock()).total_seconds() if d.wake_at else 60.0
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(entry.wake.wait(), timeout)

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

    async def close(self) -> None:
        self._closing = True
        tasks = [e.runner for e in self.entries.values() if e.runner]
        tasks += self._admission.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- views -------------------------------------------------------------------

    def tasks_of(self, taskspec: Key) -> list[Entry]:
        return [e for e in self.entries.values() if e.taskspec == taskspec]


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
