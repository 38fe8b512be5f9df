"""The living inventory: every `interval` seconds, ask NICo Core what the hardware
looks like, write it into PostgreSQL, respond to leaks and refresh Rack status.

Leak response (the decision is `nicoflow.domain.leaks.decide`): every forced
power-off requested for a leak is a TaskSpec whose name is derived from the
component, the incident's start and the round number, so the rounds of an
incident are read back from Kubernetes every pass. One leak gets one
force_power_off (round 0) however many passes see it, also across operator
restarts; if the tray is seen powered on again after that power-off finished,
and still leaks, it gets exactly one more (round 1), announced as re-powered,
and so on up to MAX_ROUNDS. The inventory commits first: a TaskSpec that
could not be created is simply requested again by the next pass.

Optionally (`mirror_expected_racks`), racks Core expects and Flow has no Rack
object for are created as Rack objects labelled `flow.nico.io/source: core`;
existing Racks are never changed or deleted by this.

Run it only in the active operator instance (the leader under kopf peering);
two syncers would not double the power-offs (names are deterministic) but
would double the Core traffic."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nicoflow.api.common import API_VERSION
from nicoflow.api.task_spec import (
    ComponentTarget,
    TaskOptions,
    TaskSpecPhase,
    TaskSpecSpec,
    TaskTargets,
)
from nicoflow.controller import events
from nicoflow.controller.alerts import Alert, AlertRouter, Severity
from nicoflow.controller.racks import summary_status
from nicoflow.controller.resources import GROUP, LABEL_RACK, RACKS, TASKSPECS
from nicoflow.core.client import CoreClient, CoreError
from nicoflow.core.expected import (
    ExpectedInventory,
    MirroredRack,
    expected_rack_objects,
    read_expected_inventory,
)
from nicoflow.core.observe import observe_site
from nicoflow.domain.leaks import (
    MAX_ROUNDS,
    LeakAction,
    LeakDecision,
    PowerOffRound,
    RoundOutcome,
    decide,
)
from nicoflow.domain.observations import SiteObservation
from nicoflow.domain.types import ComponentType, ConflictStrategy, OperationCode
from nicoflow.inventory import mirror as inventory_mirror
from nicoflow.inventory.sync import Leak, SyncResult, apply_observation
from nicoflow.kube.client import ApiError, Conflict, KubeClient

log = logging.getLogger(__name__)

LABEL_LEAK_RESPONSE = f"{GROUP}/leak-response"
ANNOTATION_COMPONENT = f"{GROUP}/leak-component"
ANNOTATION_SINCE = f"{GROUP}/leak-since"
ANNOTATION_ROUND = f"{GROUP}/leak-round"
DEFAULT_INTERVAL = 60.0

Clock = Callable[[], datetime]
Observer = Callable[[CoreClient], Awaitable[SiteObservation]]
ExpectedReader = Callable[[CoreClient], Awaitable[ExpectedInventory]]

_INVALID = re.compile(r"[^a-z0-9-]+")
_NAME_MAX = 63  # TaskSpec names are also label values on their Tasks

_OUTCOMES = {
    TaskSpecPhase.COMPLETE.value: RoundOutcome.SUCCEEDED,
    TaskSpecPhase.FAILED.value: RoundOutcome.FAILED,
    TaskSpecPhase.CANCELLED.value: RoundOutcome.CANCELLED,
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def leak_taskspec_name(core_id: str, since: datetime, round_number: int = 0) -> str:
    """leak-<component>-<incident start, unix seconds>[-<round>] (round 0 has no
    suffix); the component part is shortened with a hash when the whole would
    exceed 63 characters."""
    stamp = str(int(since.timestamp()))
    if round_number:
        stamp = f"{stamp}-{round_number}"
    key = _INVALID.sub("-", core_id.lower()).strip("-") or "component"
    name = f"leak-{key}-{stamp}"
    if len(name) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(core_id.encode()).hexdigest()[:8]
    room = _NAME_MAX - len("leak--") - len(stamp) - len(digest) - 1
    return f"leak-{key[:room].rstrip('-')}-{digest}-{stamp}"


def _since_text(since: datetime) -> str:
    return since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def leak_taskspec(leak: Leak, namespace: str, round_number: int = 0) -> dict[str, Any]:
    """force_power_off of the one leaking component, past the readiness gate
    (a tray in use must still go dark), queued behind conflicting work."""
    since = _since_text(leak.since)
    where = f" in rack {leak.rack}" if leak.rack else ""
    again = f" (powered on again; power-off round {round_number})" if round_number else ""
    spec = TaskSpecSpec(
        operation=OperationCode.FORCE_POWER_OFF,
        description=f"Leak response: coolant leak on {leak.name}{where} since {since}{again}",
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
            "name": leak_taskspec_name(leak.core_id, leak.since, round_number),
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                ANNOTATION_COMPONENT: f"{leak.type.value}/{leak.core_id}",
                ANNOTATION_SINCE: since,
                ANNOTATION_ROUND: str(round_number),
            },
        },
        "spec": spec.to_k8s(),
    }


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def power_off_round(number: int, body: Mapping[str, Any]) -> PowerOffRound:
    """A leak TaskSpec as a round of the decision. Asking to cancel it counts as
    cancelled at once: a person is taking the incident over."""
    status = body.get("status") or {}
    outcome = _OUTCOMES.get(str(status.get("phase")), RoundOutcome.UNFINISHED)
    if (body.get("spec") or {}).get("cancel"):
        outcome = RoundOutcome.CANCELLED
    return PowerOffRound(number, outcome, _parse_time(status.get("completionTime")))


def leak_rounds(leak: Leak, taskspecs: Mapping[str, Mapping[str, Any]]) -> list[PowerOffRound]:
    """The rounds requested so far for the leak's incident, found by name."""
    out = []
    for n in range(MAX_ROUNDS):
        body = taskspecs.get(leak_taskspec_name(leak.core_id, leak.since, n))
        if body is not None:
            out.append(power_off_round(n, body))
    return out


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
        mirror_expected_racks: bool = False,
        read_expected: ExpectedReader = read_expected_inventory,
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
        self.mirror_expected_racks = mirror_expected_racks
        self._observe = observe
        self._read_expected = read_expected
        self._failing: dict[ComponentType, str] = {}
        # Incidents already announced as given up (once per process is enough).
        self._exhausted: set[tuple[str, datetime]] = set()
        self.last_result: SyncResult | None = None
        self.last_decisions: dict[str, LeakDecision] = {}
        self.last_mirrored: tuple[str, ...] = ()

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
        # Taken before asking Core: what Core says is at least this recent, which
        # is what the leak decision compares with a power-off's finish time.
        now = self.clock()
        obs = await self._observe(self.core)
        async with self.sessions() as session, session.begin():
            result = await apply_observation(session, obs, now)
        self.last_result = result
        racks = await self._racks()
        await self._respond_to_leaks(result.leaks, racks or {}, now)
        if self.mirror_expected_racks:
            self.last_mirrored = await self._mirror_expected(obs, racks)
        await self._report_core_errors(result)
        await self._refresh_racks(racks or {}, result)
        log.info(
            "inventory sync: %s; %d drift rows; %d leaking (%d new)%s",
            ", ".join(f"{t.value} {c.matched}/{c.observed}" for t, c in result.types.items())
            or "nothing observed",
            result.drift_total,
            len(result.leaks),
            len(result.new_leaks),
            f"; errors: {dict(result.errors)}" if result.errors else "",
        )
        return result

    # --- leaks ---------------------------------------------------------------------------

    async def _leak_taskspecs(self) -> dict[str, dict[str, Any]] | None:
        try:
            found = await self.kube.list(
                TASKSPECS, self.namespace, label_selector=f"{LABEL_LEAK_RESPONSE}=true"
            )
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("leak response: cannot list leak TaskSpecs: %s", exc)
            return None
        return {b["metadata"]["name"]: b for b in found}

    async def _respond_to_leaks(
        self, leaks: Iterable[Leak], racks: Mapping[str, dict[str, Any]], observed_from: datetime
    ) -> None:
        leaks = list(leaks)
        self.last_decisions = {}
        if not leaks:
            return
        existing = await self._leak_taskspecs()
        for leak in leaks:
            rack = racks.get(leak.rack or "")
            if existing is None:
                # Kubernetes cannot be asked; people still hear of a new leak.
                if leak.new:
                    await self._announce_leak(leak, rack, None)
                continue
            rounds = leak_rounds(leak, existing)
            decision = decide(rounds, leak.power, observed_from)
            self.last_decisions[leak.core_id] = decision
            task: str | None = None
            if decision.round is not None:
                task = await self._create_leak_task(leak, decision)
            if decision.action is LeakAction.FIRST:
                await self._announce_leak(leak, rack, task)
            elif decision.action in (LeakAction.REPOWERED, LeakAction.STILL_ON):
                await self._announce_repowered(leak, rack, decision, task)
            elif decision.action is LeakAction.EXHAUSTED:
                await self._announce_exhausted(leak, rack, decision)
            elif leak.new:
                # Seen anew (a pass whose commit was lost, a leak status reset)
                # while its power-off already exists: tell people, request nothing.
                latest = max(r.number for r in rounds)
                await self._announce_leak(
                    leak, rack, leak_taskspec_name(leak.core_id, leak.since, latest)
                )

    async def _create_leak_task(self, leak: Leak, decision: LeakDecision) -> str | None:
        """The TaskSpec's name once it exists (created now or before), None when
        it could not be created (the next pass asks again)."""
        assert decision.round is not None
        body = leak_taskspec(leak, self.namespace, decision.round)
        name = str(body["metadata"]["name"])
        try:
            await self.kube.create(TASKSPECS, body, self.namespace)
        except Conflict:
            return name
        except (ApiError, httpx.HTTPError) as exc:
            log.error(
                "leak on %s %s (%s): cannot create TaskSpec %s/%s: %s",
                leak.type.value,
                leak.name,
                leak.core_id,
                self.namespace,
                name,
                exc,
            )
            return None
        log.warning(
            "leak on %s %s (%s): %s; created TaskSpec %s/%s",
            leak.type.value,
            leak.name,
            leak.core_id,
            decision.reason,
            self.namespace,
            name,
        )
        return name

    async def _racks(self) -> dict[str, dict[str, Any]] | None:
        """Rack objects by name; None when they cannot be listed."""
        try:
            return {r["metadata"]["name"]: r for r in await self.kube.list(RACKS)}
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("inventory sync: cannot list Racks: %s", exc)
            return None

    def _leak_details(self, leak: Leak, created: bool) -> dict[str, Any]:
        return {
            "core_id": leak.core_id,
            "component_type": leak.type.value,
            "since": leak.since.astimezone(UTC).isoformat(),
            "power": leak.power.value,
            "task_created": created,
        }

    async def _announce_leak(
        self, leak: Leak, rack: dict[str, Any] | None, task: str | None
    ) -> None:
        requested = (
            f"force power-off requested by TaskSpec {self.namespace}/{task}"
            if task
            else "the force power-off could not be requested yet; retrying"
        )
        message = f"coolant leak on {leak.type.value} {leak.name} ({leak.core_id}); {requested}"
        if rack is not None:
            await events.post(self.kube, rack, "Warning", "LeakDetected", message)
        await self.alerts.send(
            Alert(
                severity=Severity.CRITICAL,
                summary=f"Coolant leak on {leak.name}: forcing power off",
                component=leak.name,
                rack=leak.rack,
                operation=OperationCode.FORCE_POWER_OFF.value,
                task=f"{self.namespace}/{task}" if task else None,
                details=self._leak_details(leak, task is not None),
            )
        )

    async def _announce_repowered(
        self,
        leak: Leak,
        rack: dict[str, Any] | None,
        decision: LeakDecision,
        task: str | None,
    ) -> None:
        repowered = decision.action is LeakAction.REPOWERED
        what = "was powered on again while still leaking" if repowered else decision.reason
        requested = (
            f"force power-off requested again by TaskSpec {self.namespace}/{task}"
            if task
            else "the force power-off could not be requested yet; retrying"
        )
        message = f"{leak.type.value} {leak.name} ({leak.core_id}) {what}; {requested}"
        reason = "LeakRepowered" if repowered else "LeakPowerOffFailed"
        if rack is not None:
            await events.post(self.kube, rack, "Warning", reason, message)
        summary = (
            f"{leak.name} re-powered while leaking: forcing power off again"
            if repowered
            else f"{leak.name} still powered on while leaking: forcing power off again"
        )
        await self.alerts.send(
            Alert(
                severity=Severity.CRITICAL,
                summary=summary,
                component=leak.name,
                rack=leak.rack,
                operation=OperationCode.FORCE_POWER_OFF.value,
                task=f"{self.namespace}/{task}" if task else None,
                details={
                    **self._leak_details(leak, task is not None),
                    "round": decision.round,
                    "reason": decision.reason,
                },
            )
        )

    async def _announce_exhausted(
        self, leak: Leak, rack: dict[str, Any] | None, decision: LeakDecision
    ) -> None:
        key = (leak.core_id, leak.since)
        if key in self._exhausted:
            return
        self._exhausted.add(key)
        message = (
            f"{leak.type.value} {leak.name} ({leak.core_id}) still leaks and is "
            f"{decision.reason}; power it off and investigate by hand"
        )
        if rack is not None:
            await events.post(self.kube, rack, "Warning", "LeakResponseExhausted", message)
        await self.alerts.send(
            Alert(
                severity=Severity.CRITICAL,
                summary=f"{leak.name} keeps being powered on while leaking; needs a person",
                component=leak.name,
                rack=leak.rack,
                details={**self._leak_details(leak, False), "reason": decision.reason},
            )
        )

    # --- Racks Core expects ------------------------------------------------------------

    async def _mirror_expected(
        self, obs: SiteObservation, racks: Mapping[str, dict[str, Any]] | None
    ) -> tuple[str, ...]:
        """Create Rack objects for racks Core expects and Flow lacks; the names created."""
        if racks is None:
            return ()  # without the list every rack would look missing
        try:
            inventory = await self._read_expected(self.core)
        except CoreError as exc:
            log.warning("expected-inventory mirror: cannot read Core: %s", exc)
            return ()
        plan = expected_rack_objects(inventory, racks.values(), obs)
        for skipped in plan.skipped:
            log.info("expected-inventory mirror: %s", skipped)
        created: list[str] = []
        for rack in plan.create:
            if await self._create_rack(rack):
                created.append(rack.name)
        return tuple(created)

    async def _create_rack(self, rack: MirroredRack) -> bool:
        try:
            await self.kube.create(RACKS, rack.body)
        except Conflict:
            return False  # someone created it meanwhile: theirs wins
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("expected-inventory mirror: cannot create Rack %s: %s", rack.name, exc)
            return False
        log.info(
            "expected-inventory mirror: created Rack %s (Core rack %s, %d components)",
            rack.name,
            rack.core_id,
            rack.components,
        )
        return True

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
