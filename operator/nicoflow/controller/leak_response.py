"""The response to a coolant leak: a forced power-off of the leaking component,
requested as a TaskSpec, and the announcements that go with it.

Every forced power-off requested for a leak is a TaskSpec whose name is
derived from the component, the incident's start and the round number, so the
rounds of an incident are read back from Kubernetes on every check. One leak
gets one force_power_off (round 0) however many checks see it, also across
operator restarts; if the tray is seen powered on again after that power-off
finished, and still leaks, it gets exactly one more (round 1), announced as
re-powered, and so on up to MAX_ROUNDS (the decision is
`nicoflow.domain.leaks.decide`). A leak power-off never waits behind other
work on its rack: admission pre-empts conflicting Tasks (controller.tasks)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from nicoflow.api.admission import ANNOTATION_REQUESTED_BY
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
from nicoflow.controller.resources import GROUP, LABEL_LEAK_RESPONSE, LABEL_RACK, TASKSPECS
from nicoflow.domain.leaks import (
    MAX_ROUNDS,
    LeakAction,
    LeakDecision,
    LeakingComponent,
    PowerOffRound,
    RoundOutcome,
    decide,
)
from nicoflow.domain.types import ConflictStrategy, OperationCode
from nicoflow.kube.client import ApiError, Conflict, KubeClient

log = logging.getLogger(__name__)


ANNOTATION_COMPONENT = f"{GROUP}/leak-component"
ANNOTATION_SINCE = f"{GROUP}/leak-since"
ANNOTATION_ROUND = f"{GROUP}/leak-round"


_INVALID = re.compile(r"[^a-z0-9-]+")
_NAME_MAX = 63  # TaskSpec names are also label values on their Tasks

_OUTCOMES = {
    TaskSpecPhase.COMPLETE.value: RoundOutcome.SUCCEEDED,
    TaskSpecPhase.FAILED.value: RoundOutcome.FAILED,
    TaskSpecPhase.CANCELLED.value: RoundOutcome.CANCELLED,
}


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


def leak_taskspec(leak: LeakingComponent, namespace: str, round_number: int = 0) -> dict[str, Any]:
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
    """A leak TaskSpec as a round of the decision. A person asking to cancel
    it counts as cancelled at once (the person takes the incident over); a
    round that ended cancelled without being asked to (it timed out in a
    queue, it was pre-empted) counts as failed, so the response goes on."""
    status = body.get("status") or {}
    outcome = _OUTCOMES.get(str(status.get("phase")), RoundOutcome.UNFINISHED)
    if (body.get("spec") or {}).get("cancel"):
        return PowerOffRound(
            number,
            RoundOutcome.CANCELLED,
            _parse_time(status.get("completionTime")),
            cancelled_by=_cancelled_by(body),
        )
    if outcome is RoundOutcome.CANCELLED:
        outcome = RoundOutcome.FAILED
    return PowerOffRound(number, outcome, _parse_time(status.get("completionTime")))


def _cancelled_by(body: Mapping[str, Any]) -> str:
    """Who set spec.cancel, as far as the apiserver knows: the field manager
    that owns it (with the requester annotation when admission set one)."""
    meta = body.get("metadata") or {}
    managers = [
        str(entry.get("manager") or "")
        for entry in meta.get("managedFields") or []
        if "f:cancel" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    ]
    who = ", ".join(m for m in managers if m)
    requester = (meta.get("annotations") or {}).get(ANNOTATION_REQUESTED_BY)
    if requester:
        who = f"{who} for {requester}" if who else requester
    return who


def leak_rounds(
    leak: LeakingComponent, taskspecs: Mapping[str, Mapping[str, Any]]
) -> list[PowerOffRound]:
    """The rounds requested so far for the leak's incident, found by name."""
    out = []
    for n in range(MAX_ROUNDS):
        body = taskspecs.get(leak_taskspec_name(leak.core_id, leak.since, n))
        if body is not None:
            out.append(power_off_round(n, body))
    return out


class LeakResponder:
    """Decides and requests the power-offs for leaking components, and tells
    people (Events on the Rack, alerts)."""

    def __init__(self, kube: KubeClient, alerts: AlertRouter, namespace: str) -> None:
        self.kube = kube
        self.alerts = alerts
        self.namespace = namespace
        # Incidents already announced as given up (once per process is enough).
        self._exhausted: set[tuple[str, datetime]] = set()
        self.last_decisions: dict[str, LeakDecision] = {}

    async def respond(
        self,
        leaks: Iterable[LeakingComponent],
        racks: Mapping[str, dict[str, Any]],
        observed_from: datetime,
    ) -> None:
        """`racks`: Rack objects by name (for Events); `observed_from`: when
        the observation of `leaks` began."""
        await self._respond_to_leaks(leaks, racks, observed_from)

    async def leak_taskspecs(self) -> dict[str, dict[str, Any]] | None:
        try:
            found = await self.kube.list(
                TASKSPECS, self.namespace, label_selector=f"{LABEL_LEAK_RESPONSE}=true"
            )
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("leak response: cannot list leak TaskSpecs: %s", exc)
            return None
        return {b["metadata"]["name"]: b for b in found}

    async def _respond_to_leaks(
        self,
        leaks: Iterable[LeakingComponent],
        racks: Mapping[str, dict[str, Any]],
        observed_from: datetime,
    ) -> None:
        leaks = list(leaks)
        self.last_decisions = {}
        if not leaks:
            return
        existing = await self.leak_taskspecs()
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

    async def _create_leak_task(self, leak: LeakingComponent, decision: LeakDecision) -> str | None:
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

    def _leak_details(self, leak: LeakingComponent, created: bool) -> dict[str, Any]:
        return {
            "core_id": leak.core_id,
            "component_type": leak.type.value,
            "since": leak.since.astimezone(UTC).isoformat(),
            "power": leak.power.value,
            "task_created": created,
        }

    async def _announce_leak(
        self, leak: LeakingComponent, rack: dict[str, Any] | None, task: str | None
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
        leak: LeakingComponent,
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
        self, leak: LeakingComponent, rack: dict[str, Any] | None, decision: LeakDecision
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
