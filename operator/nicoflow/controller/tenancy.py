"""RackAccessPolicy in the operator: the grants as watched, a namespace's labels
when asked, and the refusal written on a TaskSpec whose targets fall outside
its namespace's grants (nicoflow.domain.tenancy decides)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from nicoflow.api.admission import requester
from nicoflow.api.task_spec import TaskSpecPhase
from nicoflow.controller import events
from nicoflow.controller.conditions import condition
from nicoflow.domain.targets import InventoryRack, resolve_targets
from nicoflow.domain.tenancy import Grant, Verdict, decide, describe, grant_from
from nicoflow.domain.types import OperationCode
from nicoflow.kube.client import NAMESPACES, KubeClient, NotFound
from nicoflow.kube.resources import ACCESS_POLICIES, TASKSPECS

log = logging.getLogger(__name__)

REASON = "AccessDenied"
GATE_TTL = 30.0


class AccessPolicies:
    """The cluster's RackAccessPolicies, listed once and kept by watch events."""

    def __init__(
        self, kube: KubeClient, platform_namespaces: tuple[str, ...], *, platform_grant: bool = True
    ) -> None:
        self.kube = kube
        self.platform_namespaces = platform_namespaces
        self.platform_grant = platform_grant
        self._grants: dict[str, Grant] = {}
        self._listed = False
        self._lock = asyncio.Lock()

    def observe(self, event_type: str, body: dict[str, Any]) -> None:
        name = str((body.get("metadata") or {}).get("name", ""))
        if event_type == "DELETED":
            self._grants.pop(name, None)
        else:
            self._grants[name] = grant_from(body)

    async def grants(self) -> list[Grant]:
        # a decision must never be taken on a partial view: "no policy at all"
        # would wrongly close (or open) namespaces
        if not self._listed:
            async with self._lock:
                if not self._listed:
                    seen = {}
                    async for body in self.kube.iter(ACCESS_POLICIES):
                        grant = grant_from(body)
                        seen[grant.name] = grant
                    # events that arrived while listing are newer than the list
                    self._grants = {**seen, **self._grants}
                    self._listed = True
        return list(self._grants.values())

    async def acknowledge(self, body: dict[str, Any]) -> None:
        """Say on the policy that this generation is in force, and what it grants."""
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        if status.get("observedGeneration") == meta.get("generation"):
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        accepted = condition(
            status,
            "Accepted",
            "True",
            "InForce",
            describe(grant_from(body)),
            now=now,
            generation=meta.get("generation"),
        )
        patch = {"observedGeneration": meta.get("generation"), "conditions": [accepted]}
        with contextlib.suppress(NotFound):  # deleted meanwhile
            await self.kube.patch_status(ACCESS_POLICIES, str(meta.get("name")), patch)

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        try:
            body = await self.kube.get(NAMESPACES, namespace)
        except NotFound:
            return {}
        return dict((body.get("metadata") or {}).get("labels") or {})

    async def verdict(
        self, namespace: str, operation: OperationCode, racks: Sequence[InventoryRack]
    ) -> Verdict:
        grants = await self.grants()
        labels = await self.namespace_labels(namespace) if grants else {}
        return decide(
            namespace,
            labels,
            operation,
            [(r.name, r.labels) for r in racks],
            grants,
            self.platform_namespaces,
            platform_grant=self.platform_grant,
        )


def schedule_gate(
    access: AccessPolicies,
    load_inventory: Callable[[dict[str, Any]], Awaitable[Sequence[InventoryRack]]],
) -> Callable[[dict[str, Any]], Awaitable[str | None]]:
    """Why a TaskSchedule's targets are not granted to its namespace, or None:
    asked on every reconcile, so the schedule says so before it ever fires. An
    answer is reused for GATE_TTL seconds per schedule generation (reconciles are
    frequent; the TaskSpecs a schedule makes are judged afresh anyway)."""
    answers: dict[tuple[str, str, Any], tuple[float, str | None]] = {}

    async def gate(body: dict[str, Any]) -> str | None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")), meta.get("generation"))
        known = answers.get(key)
        if known is not None and time.monotonic() - known[0] < GATE_TTL:
            return known[1]
        answer = await decide_schedule(body)
        if len(answers) > 4096:
            answers.clear()
        answers[key] = (time.monotonic(), answer)
        return answer

    async def decide_schedule(body: dict[str, Any]) -> str | None:
        spec = ((body.get("spec") or {}).get("taskSpecTemplate") or {}).get("spec") or {}
        try:
            operation = OperationCode(str(spec.get("operation")))
            targets = spec.get("targets") or {}
            racks = await load_inventory(targets)
            resolution = resolve_targets(targets, racks)
            by_name = {r.name: r for r in racks}
            verdict = await access.verdict(
                str(body["metadata"].get("namespace", "")),
                operation,
                [by_name[name] for name in resolution.per_rack if name in by_name],
            )
        except Exception as exc:  # unsure is refused: firing blind could touch any rack
            log.warning("schedule access check failed: %s", exc)
            return f"cannot check the schedule's rack access now: {exc}"
        return None if verdict.allowed else verdict.message

    return gate


async def refuse(
    kube: KubeClient, body: dict[str, Any], verdict: Verdict, now: datetime
) -> dict[str, Any]:
    """Fail a TaskSpec at resolution: no Task is created, the racks are named."""
    meta = body["metadata"]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    generation = meta.get("generation")

    def cond(ctype: str, status: str) -> dict[str, Any]:
        return condition(
            body.get("status"),
            ctype,
            status,
            REASON,
            verdict.message,
            now=stamp,
            generation=generation,
        )

    status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": TaskSpecPhase.FAILED.value,
        "message": verdict.message[:1024],
        "racks": 0,
        "startTime": stamp,
        "completionTime": stamp,
        "requestedBy": requester(meta),
        "resolutionErrors": [
            {"target": rack, "message": "not granted to this namespace"}
            for rack in verdict.denied[:64]
        ],
        "conditions": [cond("Resolved", "False"), cond("Failed", "True")],
    }
    log.warning(
        "taskspec %s/%s refused: %s",
        meta.get("namespace"),
        meta.get("name"),
        verdict.message,
        extra={"namespace": meta.get("namespace"), "taskspec": meta.get("name")},
    )
    await events.post(kube, body, "Warning", REASON, verdict.message)
    await kube.patch_status(TASKSPECS, meta["name"], status, meta["namespace"])
    return status
