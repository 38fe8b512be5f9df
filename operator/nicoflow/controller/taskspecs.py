"""TaskSpec: resolve targets once, create one Task per rack, and keep a Job-like
summary of those Tasks in status (debounced: one write per change burst, not
one per Task transition)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from nicoflow.api.admission import requester
from nicoflow.api.task_spec import TaskSpecPhase, TaskSpecSpec
from nicoflow.controller import events, heap, tenancy
from nicoflow.controller.conditions import condition
from nicoflow.controller.leak_response import ANNOTATION_COMPONENT
from nicoflow.controller.resources import (
    LABEL_LEAK_RESPONSE,
    LABEL_OPERATION,
    LABEL_RACK,
    LABEL_TASKSPEC,
    TASKS,
    TASKSPECS,
    task_name,
)
from nicoflow.controller.task_entries import Key
from nicoflow.controller.tasks import TaskManager
from nicoflow.controller.tenancy import AccessPolicies
from nicoflow.domain.rule_selection import RuleCandidate, RuleChoiceError, select_rule
from nicoflow.domain.targets import (
    InventoryComponent,
    InventoryRack,
    addressable,
    resolve_targets,
    unaddressable_reason,
)
from nicoflow.domain.types import (
    DEFAULT_MAX_UNTHROTTLED_RACKS,
    ComponentType,
    OperationCode,
    TaskPhase,
)
from nicoflow.kube.client import ApiError, Conflict, KubeClient, NotFound

# a resolution this large leaves enough freed memory behind to hand it back
RELEASE_AFTER_TASKS = 100
# Task POSTs in flight per TaskSpec: enough to hide the apiserver's round trip,
# few enough not to crowd out the status writes of running Tasks
CREATE_CONCURRENCY = 16

log = logging.getLogger(__name__)

InventoryLoader = Callable[[dict[str, Any]], Awaitable[Sequence[InventoryRack]]]
RuleSource = Callable[[], Sequence[RuleCandidate]]

MAX_ERRORS = 64
MAX_LISTED = 4096
FLUSH_SECONDS = 0.5
# Racks and a TaskSpec applied together (one kubectl apply, one Argo CD sync)
# reach the operator in any order: unresolved targets are retried this long
# before the TaskSpec proceeds without them.
RESOLVE_GRACE = timedelta(seconds=30)
RESOLVE_RETRY = 2.0


def _now() -> datetime:
    return datetime.now(UTC)


def leak_target(body: dict[str, Any]) -> InventoryRack | None:
    """The rack and component a leak-response TaskSpec names itself (label and
    annotation), for resolving it without the inventory."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    rack = labels.get(LABEL_RACK)
    named = str((meta.get("annotations") or {}).get(ANNOTATION_COMPONENT, ""))
    kind, _, core_id = named.partition("/")
    if labels.get(LABEL_LEAK_RESPONSE) != "true" or not rack or not core_id:
        return None
    try:
        ctype = ComponentType(kind)
    except ValueError:
        return None
    component = InventoryComponent(id=core_id, name=core_id, type=ctype, serial="", core_id=core_id)
    return InventoryRack(name=str(rack), components=(component,))


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TaskSpecController:
    def __init__(
        self,
        kube: KubeClient,
        tasks: TaskManager,
        load_inventory: InventoryLoader,
        rules: RuleSource,
        *,
        clock: Callable[[], datetime] = _now,
        resolve_grace: timedelta = RESOLVE_GRACE,
        max_unthrottled_racks: int = DEFAULT_MAX_UNTHROTTLED_RACKS,
        access: AccessPolicies | None = None,
    ) -> None:
        self.kube = kube
        self.tasks = tasks
        self.load_inventory = load_inventory
        self.rules = rules
        self.clock = clock
        self.resolve_grace = resolve_grace
        self.max_unthrottled_racks = max_unthrottled_racks
        self.access = access
        self._dirty: set[Key] = set()
        self._written: dict[Key, dict[str, Any]] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    # -- creation ----------------------------------------------------------------

    async def reconcile(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if meta.get("deletionTimestamp"):
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            status = body.get("status") or {}
            if status.get("racks") is not None or status.get("phase") == TaskSpecPhase.FAILED:
                self.mark(key)
                return
            await self._resolve_and_create(body)

    async def _resolve_and_create(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        spec = TaskSpecSpec.model_validate(body["spec"])
        targets = body["spec"]["targets"]
        now = self.clock()
        try:
            racks = await self.load_inventory(targets)
        except Exception as exc:
            fallback = leak_target(body)
            if fallback is None:
                raise
            # a leak must be answered with the inventory down: the leak TaskSpec
            # names its component and rack itself
            log.warning("inventory unavailable (%s); leak TaskSpec %s resolved alone", exc, key)
            racks = [fallback]
        resolution = resolve_targets(targets, racks)
        created_at = meta.get("creationTimestamp")
        age = now - (
            datetime.fromisoformat(created_at.replace("Z", "+00:00")) if created_at else now
        )
        if resolution.errors and age < self.resolve_grace:
            asyncio.get_running_loop().call_later(RESOLVE_RETRY, self._retry, key)
            return
        errors: list[dict[str, str]] = [
            {"target": t[:256], "message": m[:1024]} for t, m in resolution.errors
        ]
        by_name = {r.name: r for r in racks}
        if self.access is not None:  # tenancy: outside the namespace's grants, refuse it all
            verdict = await self.access.verdict(
                key[0], spec.operation, [by_name[r] for r in resolution.per_rack]
            )
            if not verdict.allowed:
                self._written[key] = await tenancy.refuse(self.kube, body, verdict, now)
                self.mark(key)
                return
        wide = self._too_wide(spec, len(resolution.per_rack))
        if wide:
            await self._refuse(body, "BlastRadius", wide, now)
            return
        candidates = self.rules()
        created: list[dict[str, str]] = []
        bodies: list[dict[str, Any]] = []
        for rack_name, components in sorted(resolution.per_rack.items()):
            rack = by_name[rack_name]
            usable = [c for c in components if addressable(spec.operation, c)]
            for c in components:
                if not addressable(spec.operation, c):
                    errors.append(
                        {
                            "target": f"{rack_name}/{c.name}",
                            "message": unaddressable_reason(spec.operation, c),
                        }
                    )
            if not usable:
                continue
            ref = spec.rule_ref.name if spec.rule_ref else None
            choice = select_rule(spec.operation, rack.labels, ref, candidates)
            if isinstance(choice, RuleChoiceError):
                errors.append({"target": rack_name, "message": choice.message[:1024]})
                continue
            task = self._task_body(body, spec, rack, usable, choice)
            bodies.append(task)
            created.append(
                {
                    "name": task["metadata"]["name"],
                    "rack": rack_name,
                    "phase": TaskPhase.PENDING.value,
                }
            )
        await self._create_all(bodies, key[0])
        status: dict[str, Any] = {
            "observedGeneration": meta.get("generation"),
            "racks": len(created),
            "startTime": _ts(now),
            "resolutionErrors": errors[:MAX_ERRORS] or None,
            "requestedBy": requester(meta),  # audit
        }
        if not created:
            message = "no Task created: " + (
                "; ".join(f"{e['target']}: {e['message']}" for e in errors[:3])
                or "the targets matched nothing"
            )
            status.update(
                phase=TaskSpecPhase.FAILED.value,
                message=message[:1024],
                completionTime=_ts(now),
                conditions=[
                    _condition("Resolved", "False", "NothingResolved", message, now, meta),
                    _condition("Failed", "True", "ResolutionFailed", message, now, meta),
                ],
            )
            await events.post(self.kube, body, "Warning", "ResolutionFailed", message)
        else:
            note = f"{len(created)} Tasks created"
            if errors:
                note += f"; {len(errors)} targets did not resolve (see resolutionErrors)"
            status.update(
                phase=TaskSpecPhase.PENDING.value,
                message=note,
                tasks=created[:MAX_LISTED],
                tasksTruncated=len(created) > MAX_LISTED or None,
                conditions=[_condition("Resolved", "True", "TargetsResolved", note, now, meta)],
            )
            await events.post(self.kube, body, "Normal", "TasksCreated", note)
        await self.kube.patch_status(TASKSPECS, meta["name"], status, key[0])
        self._written[key] = status
        self.mark(key)
        if len(created) >= RELEASE_AFTER_TASKS:
            heap.release()

    async def _create_all(self, tasks: list[dict[str, Any]], namespace: str) -> None:
        """Create the Tasks, CREATE_CONCURRENCY at a time: one POST after the
        other left the last rack of a large TaskSpec waiting tens of seconds.
        Any failure is raised once every create has settled; the retry finds
        the Tasks made so far (names are deterministic) and makes the rest."""
        slots = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def one(task: dict[str, Any]) -> dict[str, Any] | None:
            async with slots:
                with contextlib.suppress(Conflict):  # made before an operator restart
                    return await self.kube.create(TASKS, task, namespace)
            return None

        results = await asyncio.gather(*(one(t) for t in tasks), return_exceptions=True)
        made = [r for r in results if isinstance(r, dict)]
        if made and self.tasks.index is not None:
            # the API finds Tasks in the index; one found missing is added at
            # the operator's next start
            try:
                await self.tasks.index(made)
            except Exception as exc:
                log.warning("indexing %d new Tasks failed: %s", len(made), exc)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]

    def _too_wide(self, spec: TaskSpecSpec, racks: int) -> str | None:
        """Why a disruptive operation on this many racks at once is refused."""
        limit = self.max_unthrottled_racks
        if not spec.operation.disruptive or not limit or racks <= limit:
            return None
        if spec.max_parallel_racks:
            return None  # how many at once was decided by whoever wrote it
        return (
            f"{spec.operation.value} would run on {racks} racks at once; more than {limit} "
            "racks need spec.maxParallelRacks (how many may run at the same time, e.g. "
            f"{limit}), so a mistake cannot take down the whole fleet at once"
        )

    async def _refuse(self, body: dict[str, Any], reason: str, message: str, now: datetime) -> None:
        """The TaskSpec fails before any Task is created."""
        meta = body["metadata"]
        status: dict[str, Any] = {
            "observedGeneration": meta.get("generation"),
            "racks": 0,
            "phase": TaskSpecPhase.FAILED.value,
            "message": message[:1024],
            "startTime": _ts(now),
            "completionTime": _ts(now),
            "conditions": [_condition("Failed", "True", reason, message, now, meta)],
        }
        await events.post(self.kube, body, "Warning", reason, message)
        await self.kube.patch_status(TASKSPECS, meta["name"], status, meta["namespace"])
        key = (meta["namespace"], meta["name"])
        self._written[key] = status
        self.mark(key)

    def _task_body(
        self,
        owner: dict[str, Any],
        spec: TaskSpecSpec,
        rack: InventoryRack,
        components: list[InventoryComponent],
        choice: Any,
    ) -> dict[str, Any]:
        meta = owner["metadata"]
        groups: dict[str, list[dict[str, str]]] = {}
        for c in components:
            ref = {"name": c.name or c.serial, "serial": c.serial, "coreId": c.core_id or ""}
            if c.bmc_mac and spec.operation is OperationCode.INGEST:
                ref["bmcMacAddress"] = c.bmc_mac
            groups.setdefault(c.type.value, []).append(ref)
        task_spec: dict[str, Any] = {
            "taskSpecName": meta["name"],
            "rack": rack.name,
            "operation": spec.operation.value,
            "components": [{"type": t, "ids": ids} for t, ids in groups.items()],
            "rule": {
                "name": choice.name,
                "source": choice.source.value,
                "reason": choice.reason[:1024],
                "definition": choice.definition.to_crd(),
            },
            "conflictStrategy": spec.conflict_strategy.value,
            "queueTimeoutSeconds": spec.queue_timeout_seconds,
        }
        if spec.description:  # the v1 API shows it for the Task, also once archived
            task_spec["description"] = spec.description
        if spec.options is not None:
            task_spec["options"] = spec.options.to_k8s()
        if requester(meta):  # audit
            task_spec["requestedBy"] = requester(meta)
        return {
            "apiVersion": TASKS.api_version,
            "kind": TASKS.kind,
            "metadata": {
                "name": task_name(meta["name"], rack.name),
                "namespace": meta["namespace"],
                "labels": {
                    LABEL_RACK: rack.name,
                    LABEL_OPERATION: spec.operation.value,
                    LABEL_TASKSPEC: meta["name"],
                    **{
                        k: v
                        for k, v in (meta.get("labels") or {}).items()
                        if k == LABEL_LEAK_RESPONSE
                    },
                },
                "ownerReferences": [
                    {
                        "apiVersion": TASKSPECS.api_version,
                        "kind": TASKSPECS.kind,
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": task_spec,
            "status": {"phase": TaskPhase.PENDING.value},
        }

    def _retry(self, key: Key) -> None:
        body = self.tasks.taskspecs.get(key)
        if body is not None:
            task = asyncio.ensure_future(self._reconcile_logged(body))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

    async def _reconcile_logged(self, body: dict[str, Any]) -> None:
        try:
            await self.reconcile(body)
        except Exception:
            log.exception("taskspec %s/%s: reconcile failed", *_key(body))

    # -- summary -----------------------------------------------------------------

    def mark(self, key: Key) -> None:
        self._dirty.add(key)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        while self._dirty:
            keys = list(self._dirty)
            self._dirty.clear()
            for key in keys:
                try:
                    await self._summarize(key)
                except NotFound:
                    self._written.pop(key, None)
                except (ApiError, OSError) as exc:
                    log.warning("taskspec %s/%s: status write failed: %s", *key, exc)
                    self._dirty.add(key)
                    await asyncio.sleep(1)

    async def _summarize(self, key: Key) -> None:
        body = self.tasks.taskspecs.get(key)
        if body is None:
            return
        meta, spec = body["metadata"], body.get("spec") or {}
        prev = body.get("status") or {}
        if prev.get("racks") is None:
            return  # not resolved yet; reconcile writes the first status
        entries = sorted(self.tasks.tasks_of(key), key=lambda e: e.key)
        if not prev["racks"] and not entries:
            return  # resolved to nothing: reconcile wrote the final (Failed) status
        counts = dict.fromkeys(TaskPhase, 0)
        for e in entries:
            counts[e.phase] += 1
        total = prev.get("racks") or len(entries)
        now = self.clock()
        finished = (
            counts[TaskPhase.SUCCEEDED] + counts[TaskPhase.FAILED] + counts[TaskPhase.CANCELLED]
        )
        done = total > 0 and finished >= total and len(entries) >= total
        conditions = [c for c in prev.get("conditions") or [] if c["type"] == "Resolved"]
        if done:
            if counts[TaskPhase.FAILED]:
                phase = TaskSpecPhase.FAILED
                msg = f"{counts[TaskPhase.FAILED]} of {total} racks failed"
                reason = "TasksFailed"
                max_failed = spec.get("maxFailedRacks")
                if max_failed is not None and counts[TaskPhase.FAILED] > max_failed:
                    reason = "MaxFailedRacksExceeded"
                conditions.append(_condition("Failed", "True", reason, msg, now, meta, prev))
            elif counts[TaskPhase.CANCELLED]:
                phase = TaskSpecPhase.CANCELLED
                msg = f"cancelled; {counts[TaskPhase.SUCCEEDED]} of {total} racks had succeeded"
                conditions.append(
                    _condition("Cancelled", "True", "Cancelled", msg, now, meta, prev)
                )
            else:
                phase = TaskSpecPhase.COMPLETE
                msg = f"all {total} racks succeeded"
                conditions.append(
                    _condition("Complete", "True", "AllTasksSucceeded", msg, now, meta, prev)
                )
        elif spec.get("suspend"):
            phase = TaskSpecPhase.SUSPENDED
            msg = "suspended: Tasks not yet started are held"
            conditions.append(_condition("Suspended", "True", "Suspended", msg, now, meta, prev))
        else:
            phase = (
                TaskSpecPhase.RUNNING
                if counts[TaskPhase.RUNNING] or finished
                else TaskSpecPhase.PENDING
            )
            msg = f"{counts[TaskPhase.RUNNING]} running, {finished} of {total} finished"
        status: dict[str, Any] = {
            "observedGeneration": meta.get("generation"),
            "phase": phase.value,
            "message": msg,
            "pending": counts[TaskPhase.PENDING],
            "waiting": counts[TaskPhase.WAITING],
            "running": counts[TaskPhase.RUNNING],
            "succeeded": counts[TaskPhase.SUCCEEDED],
            "failed": counts[TaskPhase.FAILED],
            "cancelled": counts[TaskPhase.CANCELLED],
            "tasks": [
                {"name": e.key[1], "rack": e.rack, "phase": e.phase.value}
                for e in entries[:MAX_LISTED]
            ],
            "conditions": conditions,
            "completionTime": prev.get("completionTime") or (_ts(now) if done else None),
        }
        if all(
            prev.get(k) == v for k, v in status.items() if k != "conditions"
        ) and _same_conditions(prev.get("conditions") or [], conditions):
            return
        if self._written.get(key) == status:
            return
        updated = await self.kube.patch_status(TASKSPECS, meta["name"], status, key[0])
        self._written[key] = status
        self.tasks.taskspecs[key] = updated
        if done and prev.get("phase") != phase.value:
            etype = "Normal" if phase is TaskSpecPhase.COMPLETE else "Warning"
            await events.post(self.kube, body, etype, phase.value, msg)

    async def expire(self) -> None:
        """Delete finished TaskSpecs past ttlSecondsAfterFinished (their Tasks
        go with them; the history stays in PostgreSQL)."""
        now = self.clock()
        for key, body in list(self.tasks.taskspecs.items()):
            ttl = (body.get("spec") or {}).get("ttlSecondsAfterFinished")
            done_at = (body.get("status") or {}).get("completionTime")
            if ttl is None or not done_at:
                continue
            finished = datetime.fromisoformat(done_at.replace("Z", "+00:00"))
            if now >= finished + timedelta(seconds=ttl):
                try:
                    await self.kube.delete(TASKSPECS, key[1], key[0])
                    log.info("taskspec %s/%s expired after %ss", *key, ttl)
                except NotFound:
                    pass


def _key(body: dict[str, Any]) -> Key:
    return (body["metadata"].get("namespace", ""), body["metadata"].get("name", ""))


def _condition(
    ctype: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
    meta: dict[str, Any],
    prev: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return condition(
        prev, ctype, status, reason, message, now=_ts(now), generation=meta.get("generation")
    )


def _same_conditions(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    def norm(cs: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
        return sorted((c["type"], c["status"], c["reason"], c.get("message", "")) for c in cs)

    return norm(a) == norm(b)
