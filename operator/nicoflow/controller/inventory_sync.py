"""The living inventory: every `interval` seconds, ask NICo Core what the hardware
looks like, write it into PostgreSQL, respond to leaks and refresh Rack status.

Leak response: a component whose leak status turns DETECTED gets one
force_power_off TaskSpec per incident. Its name is derived from the component
and the incident's start (Core's alert time), so a pass repeated after a crash
finds the TaskSpec already there instead of creating a second one. The
TaskSpec is created before the inventory transaction commits: if creating it
fails, the leak is still "new" on the next pass and is tried again.

Run it only in the active operator instance (the leader under kopf peering);
two syncers would not double the power-offs (names are deterministic) but
would double the Core traffic."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nicoflow.api.common import API_VERSION
from nicoflow.api.task_spec import ComponentTarget, TaskOptions, TaskSpecSpec, TaskTargets
from nicoflow.controller import events
from nicoflow.controller.alerts import Alert, AlertRouter, Severity
from nicoflow.controller.racks import summary_status
from nicoflow.controller.resources import GROUP, LABEL_RACK, RACKS, TASKSPECS
from nicoflow.core.client import CoreClient
from nicoflow.core.observe import observe_site
from nicoflow.domain.observations import SiteObservation
from nicoflow.domain.types import ComponentType, ConflictStrategy, OperationCode
from nicoflow.inventory import mirror as inventory_mirror
from nicoflow.inventory.sync import NewLeak, SyncResult, apply_observation
from nicoflow.kube.client import ApiError, Conflict, KubeClient

log = logging.getLogger(__name__)

LABEL_LEAK_RESPONSE = f"{GROUP}/leak-response"
ANNOTATION_COMPONENT = f"{GROUP}/leak-component"
ANNOTATION_SINCE = f"{GROUP}/leak-since"
DEFAULT_INTERVAL = 60.0

Clock = Callable[[], datetime]
Observer = Callable[[CoreClient], Awaitable[SiteObservation]]

_INVALID = re.compile(r"[^a-z0-9-]+")
_NAME_MAX = 63  # TaskSpec names are also label values on their Tasks


def _utcnow() -> datetime:
    return datetime.now(UTC)


def leak_taskspec_name(core_id: str, since: datetime) -> str:
    """leak-<component>-<incident start, unix seconds>; the component part is
    shortened with a hash when the whole would exceed 63 characters."""
    stamp = str(int(since.timestamp()))
    key = _INVALID.sub("-", core_id.lower()).strip("-") or "component"
    name = f"leak-{key}-{stamp}"
    if len(name) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(core_id.encode()).hexdigest()[:8]
    room = _NAME_MAX - len("leak--") - len(stamp) - len(digest) - 1
    return f"leak-{key[:room].rstrip('-')}-{digest}-{stamp}"


def leak_taskspec(leak: NewLeak, namespace: str) -> dict[str, Any]:
    """force_power_off of the one leaking component, past the readiness gate
    (a tray in use must still go dark), queued behind conflicting work."""
    since = leak.since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    where = f" in rack {leak.rack}" if leak.rack else ""
    spec = TaskSpecSpec(
        operation=OperationCode.FORCE_POWER_OFF,
        description=f"Leak response: coolant leak on {leak.name}{where} since {since}",
        options=TaskOptions(override_readiness_check=True),
        targets=TaskTargets(components=[ComponentTarget(core_id=leak.core_id, type=leak.type)]),
        conflict_strategy=ConflictStrategy.QUEUE,
    )
    labels = {LABEL_LEAK_RESPONSE: "true"}
    if leak.rack:
        labels[LABEL_RACK] = leak.rack
    return {
        "apiVersion": API_VERSION,
        "kind": TASKSPECS.kind,
        "metadata": {
            "name": leak_taskspec_name(leak.core_id, leak.since),
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                ANNOTATION_COMPONENT: f"{leak.type.value}/{leak.core_id}",
                ANNOTATION_SINCE: since,
            },
        },
        "spec": spec.to_k8s(),
    }


_VOLATILE = frozenset({"lastTransitionTime", "observedTime", "checkedTime"})


def _stable(value: Any) -> Any:
    """The status without timestamps: what decides whether a patch is worth it."""
    if isinstance(value, Mapping):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


class InventorySyncer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        core_client: CoreClient,
        kube: KubeClient,
        alerts: AlertRouter,
        clock: Clock = _utcnow,
        interval: float = DEFAULT_INTERVAL,
        *,
        namespace: str = "default",
        observe: Observer = observe_site,
    ) -> None:
        if interval <= 0:
            raise ValueError("inventory sync interval must be greater than zero")
        self.sessions = sessions
        self.core = core_client
        self.kube = kube
        self.alerts = alerts
        self.clock = clock
        self.interval = interval
        self.namespace = namespace
        self._observe = observe
        self._failing: dict[ComponentType, str] = {}
        self.last_result: SyncResult | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Sync every `interval` seconds until `stop` is set. A failed pass is
        logged and the next one runs on schedule."""
        while not stop.is_set():
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inventory sync pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def sync_once(self) -> SyncResult:
        obs = await self._observe(self.core)
        now = self.clock()
        async with self.sessions() as session, session.begin():
            result = await apply_observation(session, obs, now)
            # Before commit: a failure here rolls the leak back to "new".
            created = [leak for leak in result.new_leaks if await self._create_leak_task(leak)]
        self.last_result = result
        racks = await self._racks()
        for leak in result.new_leaks:
            await self._announce_leak(leak, racks.get(leak.rack or ""), leak in created)
        await self._report_core_errors(result)
        await self._refresh_racks(racks, result)
        log.info(
            "inventory sync: %s; %d drift rows; %d new leaks%s",
            ", ".join(f"{t.value} {c.matched}/{c.observed}" for t, c in result.types.items())
            or "nothing observed",
            result.drift_total,
            len(result.new_leaks),
            f"; errors: {dict(result.errors)}" if result.errors else "",
        )
        return result

    async def _create_leak_task(self, leak: NewLeak) -> bool:
        """True when this pass created it, False when it already existed."""
        body = leak_taskspec(leak, self.namespace)
        try:
            await self.kube.create(TASKSPECS, body, self.namespace)
        except Conflict:
            return False
        log.warning(
            "leak on %s %s (%s): created TaskSpec %s/%s",
            leak.type.value,
            leak.name,
            leak.core_id,
            self.namespace,
            body["metadata"]["name"],
        )
        return True

    async def _racks(self) -> dict[str, dict[str, Any]]:
        try:
            return {r["metadata"]["name"]: r for r in await self.kube.list(RACKS)}
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("inventory sync: cannot list Racks: %s", exc)
            return {}

    async def _announce_leak(
        self, leak: NewLeak, rack: dict[str, Any] | None, created: bool
    ) -> None:
        task = leak_taskspec_name(leak.core_id, leak.since)
        message = (
            f"coolant leak on {leak.type.value} {leak.name} ({leak.core_id}); "
            f"force power-off requested by TaskSpec {self.namespace}/{task}"
        )
        if rack is not None:
            await events.post(self.kube, rack, "Warning", "LeakDetected", message)
        await self.alerts.send(
            Alert(
                severity=Severity.CRITICAL,
                summary=f"Coolant leak on {leak.name}: forcing power off",
                component=leak.name,
                rack=leak.rack,
                operation=OperationCode.FORCE_POWER_OFF.value,
                task=f"{self.namespace}/{task}",
                details={
                    "core_id": leak.core_id,
                    "component_type": leak.type.value,
                    "since": leak.since.astimezone(UTC).isoformat(),
                    "task_created": created,
                },
            )
        )

    async def _report_core_errors(self, result: SyncResult) -> None:
        """Alert once when a type stops being observable and once when it recovers."""
        for ctype, error in result.errors.items():
            if ctype not in self._failing:
                await self.alerts.send(
                    Alert(
                        Severity.WARNING,
                        f"Inventory sync cannot observe {ctype.value} components in NICo Core",
                        details={"error": error},
                    )
                )
        for ctype in list(self._failing):
            if ctype in result.types:
                await self.alerts.send(
                    Alert(Severity.INFO, f"Inventory sync observes {ctype.value} components again")
                )
        self._failing = dict(result.errors)

    async def _refresh_racks(self, racks: Mapping[str, dict[str, Any]], result: SyncResult) -> None:
        core_error = (
            "; ".join(f"{t.value}: {e}" for t, e in sorted(result.errors.items()))
            if result.errors
            else None
        )
        for name, body in racks.items():
            async with self.sessions() as session:
                summary = await inventory_mirror.rack_summary(session, name)
            if summary is None:
                continue  # not mirrored yet; the Rack handler will write its status
            current = body.get("status") or {}
            status = summary_status(body, summary, core_error=core_error)
            # The mirror owns observedGeneration: a spec change it has not
            # handled yet must not look handled.
            if "observedGeneration" in current:
                status["observedGeneration"] = current["observedGeneration"]
            else:
                status.pop("observedGeneration", None)
            if _stable({k: current.get(k) for k in status}) == _stable(status):
                continue
            try:
                await self.kube.patch_status(RACKS, name, status)
            except (ApiError, httpx.HTTPError) as exc:
                log.warning("inventory sync: cannot update status of Rack %s: %s", name, exc)
