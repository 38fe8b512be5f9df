"""The leak watch: every `interval` seconds (a minute by default) ask NICo Core,
with targeted queries, which compute trays and switch trays report a coolant
leak, and respond (controller.leak_response).

It runs on its own, apart from the inventory pass: it needs neither
PostgreSQL nor a complete observation of the site. Machines and switches are
asked separately, so one failing query still leaves the other type answered.
Racks and component names come from the Rack objects, read only when
something leaks.

An incident starts at Core's alert time when Core gives one (machines); for a
switch (Core gives none) it starts when this watch first saw the leak — after
a restart, the most recent leak TaskSpec of the component, when it is younger
than INCIDENT_MEMORY, tells which incident a leak still belongs to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from nicoflow._proto.nico import common_pb2, forge_pb2
from nicoflow.controller.leak_response import (
    ANNOTATION_COMPONENT,
    ANNOTATION_SINCE,
    LeakResponder,
    leak_taskspec_name,
)
from nicoflow.controller.resources import RACKS
from nicoflow.core.client import CoreClient, CoreError
from nicoflow.core.observe import machine_component, report_power
from nicoflow.domain.leaks import LeakingComponent
from nicoflow.domain.observations import LEAK_ALERT_ID
from nicoflow.domain.types import ComponentType, PowerState
from nicoflow.kube.client import ApiError, KubeClient

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0
INCIDENT_MEMORY = timedelta(hours=6)

_MACHINE_POWER = {
    forge_pb2.On: PowerState.ON,
    forge_pb2.Off: PowerState.OFF,
    forge_pb2.PowerManagerDisabled: PowerState.DISABLED,
}


@dataclass(frozen=True)
class _Seen:
    core_id: str
    type: ComponentType
    power: PowerState
    since: datetime | None  # Core's alert time, when it gives one


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LeakWatch:
    def __init__(
        self,
        core: CoreClient,
        kube: KubeClient,
        responder: LeakResponder,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if interval <= 0:
            raise ValueError("the leak watch interval must be greater than zero")
        self.core = core
        self.kube = kube
        self.responder = responder
        self.interval = interval
        self.clock = clock
        # undated incidents (switches): when this watch first saw each leak
        self._first_seen: dict[str, datetime] = {}
        self.last_leaks: list[LeakingComponent] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("leak watch: check failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def check_once(self) -> list[LeakingComponent]:
        # taken before asking Core: what Core says is at least this recent
        now = self.clock()
        seen: list[_Seen] = []
        answered: set[ComponentType] = set()
        for ctype, ask in (
            (ComponentType.COMPUTE, self._machines),
            (ComponentType.NVSWITCH, self._switches),
        ):
            try:
                seen += await ask()
            except CoreError as exc:
                log.warning("leak watch: cannot ask Core for leaking %s: %s", ctype.value, exc)
                continue
            answered.add(ctype)
        leaking = {s.core_id for s in seen}
        for cid in [c for c in self._first_seen if c not in leaking]:
            self._first_seen.pop(cid)  # dry again: the next leak is a new incident
        self.last_leaks = []
        if not seen:
            return []
        racks = await self._racks()
        where = _components(racks.values()) if racks is not None else {}
        existing = await self.responder.leak_taskspecs() or {}
        leaks: list[LeakingComponent] = []
        for s in seen:
            rack, name = where.get(s.core_id, (None, s.core_id))
            since, new = self._since(s, existing.values(), now)
            # an incident already answered (before a restart) is not news
            new = new and leak_taskspec_name(s.core_id, since) not in existing
            leaks.append(LeakingComponent(s.core_id, s.type, name, rack, since, s.power, new))
        self.last_leaks = leaks
        await self.responder.respond(leaks, racks or {}, now)
        return leaks

    def _since(
        self, s: _Seen, taskspecs: Iterable[Mapping[str, Any]], now: datetime
    ) -> tuple[datetime, bool]:
        """(start of the incident, whether this watch sees it for the first time)."""
        new = s.core_id not in self._first_seen
        if s.since is not None:
            self._first_seen.setdefault(s.core_id, s.since)
            return s.since, new
        if new:
            self._first_seen[s.core_id] = _earlier_incident(s, taskspecs, now) or now
        return self._first_seen[s.core_id], new

    async def _machines(self) -> list[_Seen]:
        found = await self.core.find_machine_ids(
            forge_pb2.MachineSearchConfig(include_dpus=False, only_with_health_alert=LEAK_ALERT_ID)
        )
        ids = list(dict.fromkeys(m.id for m in found.machine_ids if m.id))
        if not ids:
            return []
        machines = await self.core.find_machines_by_ids(
            forge_pb2.MachinesByIdsRequest(machine_ids=[common_pb2.MachineId(id=i) for i in ids])
        )
        power = await self.core.get_power_options(
            forge_pb2.PowerOptionRequest(machine_id=[common_pb2.MachineId(id=i) for i in ids])
        )
        state = {
            p.host_id.id: _MACHINE_POWER.get(p.actual_state, PowerState.UNKNOWN)
            for p in power.response
        }
        out = []
        for m in machines.machines:
            c = machine_component(m, state.get(m.id.id, PowerState.UNKNOWN), None)
            if c.leaking:
                out.append(_Seen(c.core_id, ComponentType.COMPUTE, c.power, c.leak_since))
        return out

    async def _switches(self) -> list[_Seen]:
        found = await self.core.find_switch_ids(
            forge_pb2.SwitchSearchFilter(only_with_health_alert=LEAK_ALERT_ID)
        )
        ids = list(dict.fromkeys(s.id for s in found.ids if s.id))
        if not ids:
            return []
        inventory = await self.core.get_component_inventory(
            forge_pb2.GetComponentInventoryRequest(
                switch_ids=forge_pb2.SwitchIdList(ids=[common_pb2.SwitchId(id=i) for i in ids])
            )
        )
        entries = {e.result.component_id: e for e in inventory.entries}
        return [
            _Seen(sid, ComponentType.NVSWITCH, report_power(entries.get(sid)), None) for sid in ids
        ]

    async def _racks(self) -> dict[str, dict[str, Any]] | None:
        try:
            return {r["metadata"]["name"]: r for r in await self.kube.list(RACKS)}
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("leak watch: cannot list Racks (names unknown this time): %s", exc)
            return None


def _components(racks: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """Core id -> (Rack name, component name), from the Rack objects."""
    out: dict[str, tuple[str, str]] = {}
    for body in racks:
        rack = str(body["metadata"]["name"])
        for c in (body.get("spec") or {}).get("components") or []:
            if c.get("coreId"):
                out[str(c["coreId"])] = (rack, str(c.get("name") or c["coreId"]))
    return out


def _earlier_incident(
    s: _Seen, taskspecs: Iterable[Mapping[str, Any]], now: datetime
) -> datetime | None:
    """The start of the component's most recent incident, when its last leak
    TaskSpec is recent enough to say the leak goes on."""
    key = f"{s.type.value}/{s.core_id}"
    latest: tuple[datetime, datetime] | None = None
    for body in taskspecs:
        meta = body.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        if annotations.get(ANNOTATION_COMPONENT) != key:
            continue
        created = _time(meta.get("creationTimestamp"))
        since = _time(annotations.get(ANNOTATION_SINCE))
        if created is None or since is None:
            continue
        if latest is None or created > latest[0]:
            latest = (created, since)
    if latest is None or now - latest[0] > INCIDENT_MEMORY:
        return None
    return latest[1]


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
