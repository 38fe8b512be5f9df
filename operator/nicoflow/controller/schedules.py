"""TaskSchedule: create a TaskSpec from the template whenever the schedule is
due, like a CronJob creates Jobs.

When to fire is decided by nicoflow.domain.schedules (pure). This module keeps
a cache of TaskSchedules and of the TaskSpecs they own (fed by watch events
through `observe`), and on each `tick` fires, skips, prunes history and writes
status. Every TaskSpec name is derived from the schedule and the scheduled time
(or the trigger token), so a firing repeated after an operator restart hits
AlreadyExists instead of running the operation twice. Before creating
anything, the schedule and its TaskSpecs are read fresh from the apiserver:
the cache only decides whether there may be something to do.

Resuming never runs what was missed: scheduled times that passed while the
schedule was suspended are recorded as skipped, and the next run is the first
scheduled time after the resume (known from the API's `resumed-at`
annotation, or from the Suspended condition this controller wrote). Overlap
policy Skip is per rack: a firing leaves out (`targets.excludeRacks`) only
the racks whose Task from an earlier firing is unfinished."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from nicoflow.api.admission import requester, vouch
from nicoflow.api.task_schedule import OverlapPolicy
from nicoflow.api.task_spec import TaskSpecPhase
from nicoflow.controller import events
from nicoflow.controller.resources import (
    ANNOTATION_RESUMED_AT,
    ANNOTATION_SCHEDULED_TIME,
    GROUP,
    LABEL_SCHEDULE,
    LABEL_TASKSPEC,
    SCHEDULES,
    TASKS,
    TASKSPECS,
)
from nicoflow.domain import schedules as timing
from nicoflow.domain.types import ConflictStrategy, TaskPhase
from nicoflow.kube.client import ApiError, Conflict, KubeClient, NotFound, Resource

log = logging.getLogger(__name__)

Json = dict[str, Any]
Key = tuple[str, str]

ANNOTATION_TRIGGER_NOW = f"{GROUP}/trigger-now"
ANNOTATION_TRIGGER_TOKEN = f"{GROUP}/trigger-token"

FINISHED = frozenset({TaskSpecPhase.COMPLETE, TaskSpecPhase.FAILED, TaskSpecPhase.CANCELLED})
MAX_SLEEP = 30.0
MIN_SLEEP = 0.05
WAKE_DEBOUNCE = 0.2
MAX_ACTIVE = 32
DESCRIPTION_MAX = 1024
LIST_RETRIES = (0.2, 0.5, 1.0, 2.0, 4.0)
LISTED_RACKS = 5


def _now() -> datetime:
    return datetime.now(UTC)


def _key(body: Json) -> Key:
    meta = body["metadata"]
    return (meta.get("namespace", ""), meta["name"])


def _phase(taskspec: Json) -> str | None:
    phase: str | None = (taskspec.get("status") or {}).get("phase")
    return phase


def _finished(taskspec: Json) -> bool:
    return _phase(taskspec) in FINISHED


def _time(text: str | None) -> datetime | None:
    return timing.parse_timestamp(text) if text else None


def _scheduled_at(taskspec: Json) -> str:
    meta = taskspec["metadata"]
    stamp: str = (meta.get("annotations") or {}).get(ANNOTATION_SCHEDULED_TIME) or meta.get(
        "creationTimestamp", ""
    )
    return stamp


def _owner_name(taskspec: Json) -> str | None:
    for ref in taskspec["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == SCHEDULES.kind and ref.get("apiVersion") == SCHEDULES.api_version:
            name: str = ref["name"]
            return name
    return None


def _condition_true(status: Json, ctype: str) -> bool:
    return any(
        c.get("type") == ctype and c.get("status") == "True" for c in status.get("conditions") or []
    )


def _owned_by(taskspec: Json, schedule: Json) -> bool:
    uid = schedule["metadata"].get("uid")
    return any(
        ref.get("kind") == SCHEDULES.kind and ref.get("uid") == uid
        for ref in taskspec["metadata"].get("ownerReferences") or []
    )


@dataclass
class _Outcome:
    """What one reconcile of a schedule did, for status and events."""

    created: list[str] = field(default_factory=list)
    fired: datetime | None = None
    skipped: datetime | None = None
    skip_reason: str = ""
    skip_message: str = ""
    trigger_token: str | None = None
    triggered: datetime | None = None
    # racks a firing left out because their previous Task is unfinished
    racks_skipped: list[str] = field(default_factory=list)


class ScheduleController:
    def __init__(
        self,
        kube: KubeClient,
        clock: Callable[[], datetime] = _now,
        *,
        namespaces: tuple[str, ...] = (),
        gate: Callable[[Json], Awaitable[str | None]] | None = None,
    ) -> None:
        self.kube = kube
        self.clock = clock
        self.namespaces = namespaces
        self.gate = gate  # tenancy: why a schedule's targets are not granted, or None
        self.schedules: dict[Key, Json] = {}
        self.taskspecs: dict[Key, dict[str, Json]] = {}
        self._next: dict[Key, datetime] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    # -- cache -------------------------------------------------------------------

    def observe(self, event_type: str, body: Json) -> None:
        """A watch event for a TaskSchedule, or for a TaskSpec (those not created
        by a schedule are ignored)."""
        kind = body.get("kind")
        if kind == SCHEDULES.kind:
            key = _key(body)
            if event_type == "DELETED":
                self.schedules.pop(key, None)
                self.taskspecs.pop(key, None)
                self._next.pop(key, None)
            else:
                self.schedules[key] = body
            self._wake.set()
        elif kind == TASKSPECS.kind:
            owner = _owner_name(body)
            if owner is None:
                return
            ns, name = _key(body)
            owned = self.taskspecs.setdefault((ns, owner), {})
            previous = owned.get(name)
            if event_type == "DELETED":
                owned.pop(name, None)
            else:
                owned[name] = body
            # only a change of phase matters to active, history and lastSuccessfulTime
            if previous is None or event_type == "DELETED" or _phase(previous) != _phase(body):
                self._wake.set()

    async def resync(self) -> None:
        """Load every TaskSchedule and scheduled TaskSpec from the apiserver
        (at start-up, before watch events have filled the cache; and in tests)."""
        schedules: dict[Key, Json] = {}
        owned: dict[Key, dict[str, Json]] = {}
        for ns in self.namespaces or (None,):
            for body in await self._list(SCHEDULES, ns):
                schedules[_key(body)] = body
            for ts in await self._list(TASKSPECS, ns, label_selector=LABEL_SCHEDULE):
                owner = _owner_name(ts)
                if owner is not None:
                    owned.setdefault((_key(ts)[0], owner), {})[ts["metadata"]["name"]] = ts
        self.schedules = schedules
        self.taskspecs = owned

    async def _refresh(self, key: Key) -> Json:
        body = await self.kube.get(SCHEDULES, key[1], key[0])
        body.setdefault("apiVersion", SCHEDULES.api_version)
        body.setdefault("kind", SCHEDULES.kind)
        listed = await self._list(
            TASKSPECS, key[0], label_selector=f"{LABEL_SCHEDULE}={timing.label_value(key[1])}"
        )
        self.schedules[key] = body
        self.taskspecs[key] = {ts["metadata"]["name"]: ts for ts in listed if _owned_by(ts, body)}
        return body

    async def _list(
        self, res: Resource, namespace: str | None, label_selector: str | None = None
    ) -> list[Json]:
        # 429 "storage is (re)initializing" comes right after a CRD is
        # established or the apiserver restarts: worth a short wait
        for delay in (*LIST_RETRIES, None):
            try:
                return await self.kube.list(res, namespace, label_selector=label_selector)
            except ApiError as exc:
                if exc.status != 429 or delay is None:
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _owned(self, key: Key, schedule: Json) -> dict[str, Json]:
        return {
            name: ts for name, ts in self.taskspecs.get(key, {}).items() if _owned_by(ts, schedule)
        }

    # -- the loop ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Tick at the next scheduled time, when a watch event changes something,
        and at least every MAX_SLEEP seconds, until `stop` is set."""
        try:
            await self.resync()
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("schedules: initial listing failed (watch events will fill in): %s", exc)
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("schedules: tick failed")
            waiters = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._wake.wait()),
            ]
            try:
                await asyncio.wait(
                    waiters, timeout=self.seconds_to_next(), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for w in waiters:
                    w.cancel()
            if self._wake.is_set() and not stop.is_set():
                await asyncio.sleep(WAKE_DEBOUNCE)  # let a burst of events settle

    def seconds_to_next(self) -> float:
        now = self.clock()
        waits = [(t - now).total_seconds() for t in self._next.values()]
        return max(MIN_SLEEP, min([MAX_SLEEP, *waits]))

    async def tick(self) -> list[str]:
        """Evaluate every known schedule once; the names of TaskSpecs created."""
        async with self._lock:
            created: list[str] = []
            for key in sorted(self.schedules):
                try:
                    created += await self._reconcile(key)
                except NotFound:
                    self.schedules.pop(key, None)
                    self.taskspecs.pop(key, None)
                    self._next.pop(key, None)
                except (ApiError, httpx.HTTPError) as exc:
                    log.warning("schedule %s/%s: %s", *key, exc)
            return created

    async def trigger(self, namespace: str, name: str) -> list[str]:
        """Fire a schedule now, whatever its time, suspension or overlap policy
        (the API's TriggerTaskSchedule); the names of the TaskSpecs created."""
        async with self._lock:
            key = (namespace, name)
            body = await self._refresh(key)
            now = self.clock()
            token = f"api-{uuid.uuid4().hex}"
            ts = await self._create(body, timing.trigger_name(name, token), now, token)
            if ts is None:
                return []
            self.taskspecs.setdefault(key, {})[ts["metadata"]["name"]] = ts
            await events.post(
                self.kube, body, "Normal", "Triggered", f"created TaskSpec {ts['metadata']['name']}"
            )
            await self.kube.patch_status(
                SCHEDULES, name, {"lastTriggerTime": timing.format_timestamp(now)}, namespace
            )
            self._wake.set()
            return [ts["metadata"]["name"]]

    # -- one schedule ------------------------------------------------------------

    async def _reconcile(self, key: Key) -> list[str]:
        body = self.schedules[key]
        if body["metadata"].get("deletionTimestamp"):
            return []
        now = self.clock()
        if self._wants_to_create(key, body, now):
            # decide on fresh state: the cache may lag behind our own writes
            body = await self._refresh(key)
        return await self._act(key, body, now)

    def _wants_to_create(self, key: Key, body: Json, now: datetime) -> bool:
        spec, status = body.get("spec") or {}, body.get("status") or {}
        token = (body["metadata"].get("annotations") or {}).get(ANNOTATION_TRIGGER_NOW)
        if token and token != status.get("lastTriggerToken"):
            return True
        if spec.get("suspend"):
            return False
        try:
            schedule = self._schedule(body)
        except ValueError:
            return False
        decision = timing.due(
            schedule, self._cursor(status), now, spec.get("startingDeadlineSeconds")
        )
        return decision.fire is not None

    def _schedule(self, body: Json) -> timing.Schedule:
        created = _time(body["metadata"].get("creationTimestamp")) or self.clock()
        return timing.from_spec((body.get("spec") or {}).get("schedule") or {}, created)

    @staticmethod
    def _cursor(status: Json) -> datetime | None:
        times = [
            t
            for t in (_time(status.get("lastScheduleTime")), _time(status.get("lastSkippedTime")))
            if t is not None
        ]
        return max(times) if times else None

    async def _act(self, key: Key, body: Json, now: datetime) -> list[str]:
        meta, spec = body["metadata"], body.get("spec") or {}
        status: Json = body.get("status") or {}
        owned = self._owned(key, body)
        outcome = _Outcome()
        try:
            schedule: timing.Schedule | None = self._schedule(body)
        except ValueError as exc:
            schedule, problem = None, str(exc)
        else:
            problem = ""
        refused = await self.gate(body) if self.gate is not None else None

        token = (meta.get("annotations") or {}).get(ANNOTATION_TRIGGER_NOW)
        if token and token != status.get("lastTriggerToken") and refused:
            await events.post(self.kube, body, "Warning", "AccessDenied", refused)
            outcome.trigger_token = token  # answered: refused
        elif token and token != status.get("lastTriggerToken"):
            ts = await self._create(body, timing.trigger_name(key[1], token), now, token)
            if ts is not None:
                owned[ts["metadata"]["name"]] = ts
                outcome.created.append(ts["metadata"]["name"])
                outcome.triggered = now
                await events.post(
                    self.kube,
                    body,
                    "Normal",
                    "Triggered",
                    f"trigger-now {token!r}: created TaskSpec {ts['metadata']['name']}",
                )
            outcome.trigger_token = token

        consumed = self._consumed_by_trigger(schedule, status, outcome)
        if schedule is not None and not spec.get("suspend") and not consumed:
            cursor = await self._skip_while_suspended(body, schedule, outcome, now)
            decision = timing.due(schedule, cursor, now, spec.get("startingDeadlineSeconds"))
            await self._fire_or_skip(key, body, decision, owned, outcome, now, refused)

        for name in self._to_prune(owned, spec, exclude=set(outcome.created)):
            with contextlib.suppress(NotFound):
                await self.kube.delete(TASKSPECS, name, key[0])
            owned.pop(name, None)
            log.info("schedule %s/%s: deleted old TaskSpec %s (history limit)", *key, name)
        self.taskspecs[key] = owned

        next_time = None
        if schedule is not None and not spec.get("suspend") and not consumed:
            next_time = timing.next_after(schedule, now)
        if next_time is not None:
            self._next[key] = next_time
        else:
            self._next.pop(key, None)
        new_status = self._status(body, schedule, problem, outcome, owned, next_time, now)
        if refused:
            _not_ready(new_status, refused, now, meta.get("generation"), status)
        if _differs(status, new_status):
            updated = await self.kube.patch_status(SCHEDULES, key[1], new_status, key[0])
            updated.setdefault("apiVersion", SCHEDULES.api_version)
            updated.setdefault("kind", SCHEDULES.kind)
            self.schedules[key] = updated
        return outcome.created

    @staticmethod
    def _consumed_by_trigger(
        schedule: timing.Schedule | None, status: Json, outcome: _Outcome
    ) -> bool:
        """A one-time schedule that was triggered by hand has run: its own time
        does not fire again (as the original consumed it on trigger)."""
        return isinstance(schedule, timing.OneTimeSchedule) and bool(
            status.get("lastTriggerTime") or outcome.triggered
        )

    def _resumed_at(self, body: Json, now: datetime) -> datetime | None:
        """When the schedule was last resumed, if that matters still: the API's
        annotation, or now when this controller saw it suspended last time."""
        times = []
        stamp = (body["metadata"].get("annotations") or {}).get(ANNOTATION_RESUMED_AT)
        if stamp:
            try:
                times.append(timing.parse_timestamp(stamp))
            except ValueError:
                log.warning("schedule %s: ignoring unreadable %s", _key(body), stamp)
        if _condition_true(body.get("status") or {}, "Suspended"):
            times.append(now)
        return min(max(times), now) if times else None

    async def _skip_while_suspended(
        self, body: Json, schedule: timing.Schedule, outcome: _Outcome, now: datetime
    ) -> datetime | None:
        """The cursor to evaluate from: scheduled times up to the last resume
        are recorded as skipped, never fired late."""
        cursor = self._cursor(body.get("status") or {})
        resumed = self._resumed_at(body, now)
        if resumed is None:
            return cursor
        passed = timing.due(schedule, cursor, resumed)
        if passed.handled is None:
            return cursor
        count = passed.missed_count + (1 if passed.fire is not None else 0)
        more = "or more " if passed.missed_more else ""
        outcome.skipped = passed.handled
        outcome.skip_reason = "Suspended"
        outcome.skip_message = (
            f"scheduled time {timing.format_timestamp(passed.handled)} passed while the "
            f"schedule was suspended ({count} {more}scheduled times in all); resuming runs "
            "none of them, the next run is the first scheduled time after the resume"
        )
        await events.post(self.kube, body, "Normal", "MissedWhileSuspended", outcome.skip_message)
        return passed.handled

    async def _busy_racks(self, namespace: str, taskspecs: list[Json]) -> tuple[set[str], str]:
        """Racks with an unfinished Task of these TaskSpecs; and the name of one
        that has not resolved its racks yet ("" when all have)."""
        busy: set[str] = set()
        for ts in taskspecs:
            if (ts.get("status") or {}).get("racks") is None:
                return busy, ts["metadata"]["name"]
            selector = f"{LABEL_TASKSPEC}={ts['metadata']['name']}"
            for task in await self._list(TASKS, namespace, label_selector=selector):
                phase = (task.get("status") or {}).get("phase") or TaskPhase.PENDING.value
                try:
                    finished = TaskPhase(phase).finished
                except ValueError:
                    finished = False
                if not finished:
                    busy.add(str((task.get("spec") or {}).get("rack") or ""))
        busy.discard("")
        return busy, ""

    @staticmethod
    def _known_racks(body: Json, owned: dict[str, Json]) -> set[str] | None:
        """The racks a firing can reach, when they can be told without the
        inventory: named racks plus those earlier firings ran on (None when a
        selector or NVL domain may reach others)."""
        targets = ((body.get("spec") or {}).get("taskSpecTemplate") or {}).get("spec", {}).get(
            "targets"
        ) or {}
        if targets.get("rackSelector") is not None or targets.get("nvlDomains"):
            return None
        known = set(targets.get("racks") or ())
        for ts in owned.values():
            for entry in (ts.get("status") or {}).get("tasks") or []:
                known.add(str(entry.get("rack") or ""))
        known.discard("")
        return known

    async def _fire_or_skip(
        self,
        key: Key,
        body: Json,
        decision: timing.Due,
        owned: dict[str, Json],
        outcome: _Outcome,
        now: datetime,
        refused: str | None = None,
    ) -> None:
        spec = body.get("spec") or {}
        if decision.fire is None:
            if decision.missed:
                outcome.skipped = decision.missed[-1]
                outcome.skip_reason = "StartingDeadlineExceeded"
                outcome.skip_message = (
                    f"scheduled time {timing.format_timestamp(decision.missed[-1])} passed more "
                    f"than startingDeadlineSeconds ({spec.get('startingDeadlineSeconds')}) ago"
                    + _missed_note(decision)
                )
                await events.post(
                    self.kube, body, "Warning", "MissedSchedule", outcome.skip_message
                )
            return
        if decision.missed_count:
            await events.post(
                self.kube,
                body,
                "Warning",
                "MissedSchedule",
                f"firing only the latest scheduled time "
                f"{timing.format_timestamp(decision.fire)}" + _missed_note(decision),
            )
        name = timing.taskspec_name(key[1], decision.fire)
        if name in owned:  # fired before a restart, status not written then
            outcome.fired = decision.fire
            return
        running = sorted(n for n, ts in owned.items() if not _finished(ts))
        busy: set[str] = set()
        if spec.get("overlapPolicy", OverlapPolicy.SKIP) == OverlapPolicy.SKIP and running:
            busy, unresolved = await self._busy_racks(key[0], [owned[n] for n in running])
            known = self._known_racks(body, owned)
            when = timing.format_timestamp(decision.fire)
            # skip the whole firing only when every rack it can reach is known busy
            if unresolved or (known and known <= busy):
                outcome.skipped = decision.fire
                outcome.skip_reason = "PreviousUnfinished"
                outcome.skip_message = (
                    f"skipped scheduled time {when}: TaskSpec {unresolved} has not resolved "
                    "its racks yet (overlapPolicy Skip)"
                    if unresolved
                    else f"skipped scheduled time {when}: every rack still runs a Task of an "
                    f"earlier firing ({_listed(busy)}; overlapPolicy Skip)"
                )
                await events.post(self.kube, body, "Normal", "Skipped", outcome.skip_message)
                return
        if refused:  # a granted namespace later must not get this run fired late
            outcome.skipped, outcome.skip_reason, outcome.skip_message = (
                decision.fire,
                "AccessDenied",
                refused,
            )
            await events.post(self.kube, body, "Warning", "AccessDenied", refused)
            return
        ts = await self._create(body, name, decision.fire, None, exclude=busy)
        if ts is None:
            return
        owned[name] = ts
        outcome.fired = decision.fire
        outcome.created.append(name)
        outcome.racks_skipped = sorted(busy)
        note = (
            f", leaving out racks still running an earlier firing's Task: {_listed(busy)}"
            if busy
            else ""
        )
        await events.post(
            self.kube,
            body,
            "Normal",
            "Fired",
            f"created TaskSpec {name} for {timing.format_timestamp(decision.fire)}{note}",
        )

    async def _create(
        self,
        schedule: Json,
        name: str,
        scheduled: datetime,
        token: str | None,
        exclude: set[str] | None = None,
    ) -> Json | None:
        """Create the TaskSpec; an existing one of this schedule means it was
        created before (restart) and is returned as is."""
        namespace = schedule["metadata"]["namespace"]
        try:
            return await self.kube.create(
                TASKSPECS, _taskspec(schedule, name, scheduled, token, exclude), namespace
            )
        except Conflict:
            existing = await self.kube.get(TASKSPECS, name, namespace)
            if _owned_by(existing, schedule):
                return existing
            log.warning(
                "schedule %s/%s: TaskSpec name %s is taken by an object it does not own",
                namespace,
                schedule["metadata"]["name"],
                name,
            )
            return None

    @staticmethod
    def _to_prune(owned: dict[str, Json], spec: Json, exclude: set[str]) -> list[str]:
        """Finished TaskSpecs beyond the history limits, oldest first."""
        limits = {
            True: int(spec.get("successfulHistoryLimit", 3)),
            False: int(spec.get("failedHistoryLimit", 1)),
        }
        doomed: list[str] = []
        for succeeded, limit in limits.items():
            done = sorted(
                (
                    (_scheduled_at(ts), name)
                    for name, ts in owned.items()
                    if name not in exclude
                    and _finished(ts)
                    and (_phase(ts) == TaskSpecPhase.COMPLETE) == succeeded
                ),
                reverse=True,
            )
            doomed += [name for _, name in done[limit:]]
        return doomed

    def _status(
        self,
        body: Json,
        schedule: timing.Schedule | None,
        problem: str,
        outcome: _Outcome,
        owned: dict[str, Json],
        next_time: datetime | None,
        now: datetime,
    ) -> Json:
        meta, spec = body["metadata"], body.get("spec") or {}
        prev: Json = body.get("status") or {}
        generation = meta.get("generation")

        def cond(ctype: str, state: bool, reason: str, message: str) -> Json:
            return _condition(ctype, state, reason, message, now, generation, prev)

        last = prev.get("lastScheduleTime")
        if outcome.fired is not None:
            last = _max_stamp(last, timing.format_timestamp(outcome.fired))
        skipped = prev.get("lastSkippedTime")
        if outcome.skipped is not None:
            skipped = _max_stamp(skipped, timing.format_timestamp(outcome.skipped))
        triggered = prev.get("lastTriggerTime")
        if outcome.triggered is not None:
            triggered = _max_stamp(triggered, timing.format_timestamp(outcome.triggered))
        successful = prev.get("lastSuccessfulTime")
        for ts in owned.values():
            if _phase(ts) == TaskSpecPhase.COMPLETE:
                done = (ts.get("status") or {}).get("completionTime") or _scheduled_at(ts)
                successful = _max_stamp(successful, done)
        active = [
            {"name": name, "namespace": ts["metadata"]["namespace"], "uid": ts["metadata"]["uid"]}
            for name, ts in sorted(owned.items())
            if not _finished(ts) and ts["metadata"].get("uid")
        ][:MAX_ACTIVE]

        conditions = [c for c in prev.get("conditions") or [] if c["type"] in ("Missed", "Skipped")]
        suspended = bool(spec.get("suspend"))
        if schedule is None:
            ready = cond("Ready", False, "InvalidSchedule", problem)
        elif suspended:
            ready = cond("Ready", False, "Suspended", "spec.suspend is true")
        elif next_time is None:
            ready = cond("Ready", False, "NoFutureTimes", "the schedule has no time left to fire")
        else:
            ready = cond(
                "Ready", True, "Scheduled", f"next at {timing.format_timestamp(next_time)}"
            )
        conditions = [c for c in conditions if c["type"] != "Ready"] + [ready]
        conditions.append(
            cond(
                "Suspended",
                suspended,
                "Suspended" if suspended else "Active",
                "firing is suspended" if suspended else "",
            )
        )
        if isinstance(schedule, timing.OneTimeSchedule):
            consumed = [t for t in (last, skipped) if t and _time(t) == schedule.at]
            if consumed and last == consumed[0]:
                conditions.append(cond("Completed", True, "Fired", "the one-time schedule fired"))
            elif triggered:
                conditions.append(
                    cond("Completed", True, "Triggered", "a manual trigger ran the schedule")
                )
            elif consumed:
                conditions.append(
                    cond("Completed", True, "NotFired", "the one-time time passed without firing")
                )
        if outcome.skipped is not None:
            ctype = "Skipped" if outcome.skip_reason == "PreviousUnfinished" else "Missed"
            conditions = [c for c in conditions if c["type"] != ctype]
            conditions.append(cond(ctype, True, outcome.skip_reason, outcome.skip_message))
        if outcome.fired is not None:
            # a firing clears earlier trouble
            for ctype in ("Missed", "Skipped"):
                if any(c["type"] == ctype for c in conditions):
                    conditions = [c for c in conditions if c["type"] != ctype]
                    conditions.append(
                        cond(
                            ctype,
                            False,
                            "Fired",
                            f"fired at {timing.format_timestamp(outcome.fired)}",
                        )
                    )
            if outcome.racks_skipped:
                conditions = [c for c in conditions if c["type"] != "Skipped"]
                conditions.append(
                    cond(
                        "Skipped",
                        True,
                        "RacksStillBusy",
                        f"fired at {timing.format_timestamp(outcome.fired)} without "
                        f"{_listed(set(outcome.racks_skipped))}: their earlier Task is unfinished",
                    )
                )
        return {
            "observedGeneration": generation,
            "lastScheduleTime": last,
            "lastSkippedTime": skipped,
            "nextScheduleTime": timing.format_timestamp(next_time) if next_time else None,
            "lastSuccessfulTime": successful,
            "lastTriggerToken": outcome.trigger_token or prev.get("lastTriggerToken"),
            "lastTriggerTime": triggered,
            "active": active or None,
            "conditions": sorted(conditions, key=lambda c: str(c["type"])),
        }


def _listed(racks: set[str]) -> str:
    names = sorted(racks)
    more = f" and {len(names) - LISTED_RACKS} more" if len(names) > LISTED_RACKS else ""
    return ", ".join(names[:LISTED_RACKS]) + more


def _taskspec(
    schedule: Json, name: str, scheduled: datetime, token: str | None, exclude: set[str] | None
) -> Json:
    meta, spec = schedule["metadata"], schedule["spec"]
    template = spec["taskSpecTemplate"]
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels[LABEL_SCHEDULE] = timing.label_value(meta["name"])
    # audit: made for the schedule's author; the template cannot name anyone else
    annotations = vouch(dict(tmeta.get("annotations") or {}), requester(meta))
    annotations[ANNOTATION_SCHEDULED_TIME] = timing.format_timestamp(scheduled)
    if token is not None:
        annotations[ANNOTATION_TRIGGER_TOKEN] = token[:256]
    body_spec = copy.deepcopy(template["spec"])
    if exclude:
        targets = body_spec.setdefault("targets", {})
        targets["excludeRacks"] = sorted(set(targets.get("excludeRacks") or ()) | exclude)
    # the overlap policy decides how the TaskSpec's Tasks meet a conflicting run
    queue = spec.get("overlapPolicy") == OverlapPolicy.QUEUE
    body_spec["conflictStrategy"] = (
        ConflictStrategy.QUEUE if queue else ConflictStrategy.REJECT
    ).value
    if not body_spec.get("description"):
        how = f"trigger {token}" if token else timing.format_timestamp(scheduled)
        body_spec["description"] = f"TaskSchedule {meta['name']}: {how}"[:DESCRIPTION_MAX]
    return {
        "apiVersion": TASKSPECS.api_version,
        "kind": TASKSPECS.kind,
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": SCHEDULES.api_version,
                    "kind": SCHEDULES.kind,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": body_spec,
    }


def _missed_note(decision: timing.Due) -> str:
    if not decision.missed_count:
        return ""
    more = " or more" if decision.missed_more else ""
    return f"; {decision.missed_count}{more} earlier scheduled times were not fired"


def _max_stamp(a: str | None, b: str | None) -> str | None:
    times = [t for t in (a, b) if t]
    if not times:
        return None
    return max(times, key=lambda t: timing.parse_timestamp(t))


def _not_ready(
    new_status: Json, refused: str, now: datetime, generation: int | None, prev: Json
) -> None:
    """Ready=False, AccessDenied: the namespace is not granted the schedule's racks."""
    ready = _condition("Ready", False, "AccessDenied", refused, now, generation, prev)
    kept = [c for c in new_status["conditions"] if c["type"] != "Ready"]
    new_status["conditions"] = sorted([*kept, ready], key=lambda c: str(c["type"]))


def _condition(
    ctype: str,
    state: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
    prev: Json,
) -> Json:
    status = "True" if state else "False"
    since = timing.format_timestamp(now)
    for c in prev.get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == status:
            since = c.get("lastTransitionTime", since)
    out: Json = {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": since,
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def _differs(prev: Json, new: Json) -> bool:
    for k, v in new.items():
        if k == "conditions":
            old = sorted(prev.get("conditions") or [], key=lambda c: str(c["type"]))
            if [_cond_key(c) for c in old] != [_cond_key(c) for c in v]:
                return True
        elif prev.get(k) != v:
            return True
    return False


def _cond_key(c: Json) -> tuple[Any, ...]:
    return (
        c.get("type"),
        c.get("status"),
        c.get("reason"),
        c.get("message", ""),
        c.get("lastTransitionTime"),
        c.get("observedGeneration"),
    )
