"""The simulated NICo Core's state and behaviour, free of gRPC.

One Node per object Core addresses by ID (host machine, DPU machine, NVLink
switch, power shelf), kept in dicts keyed by Core ID, BMC IP, BMC MAC and
serial so every per-component call is O(1). Time-driven behaviour (power
transitions, firmware jobs, ingestion, DPU reprovisioning) is evaluated
lazily against the injected clock when something reads or changes it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nicoflow.domain.types import ComponentType
from nicoflow.simulator.catalog import (
    BMC_PART,
    FAMILY_OF_TYPE,
    LEAK_ALERT_ID,
    MANUFACTURER,
    MODELS,
    PARTS,
    Family,
)
from nicoflow.simulator.clock import Clock, SystemClock
from nicoflow.simulator.faults import Injector
from nicoflow.simulator.firmware import (
    FirmwareJob,
    FirmwareTimings,
    JobKind,
    JobState,
    matches,
)
from nicoflow.simulator.ingestion import Ingestion, IngestionState
from nicoflow.simulator.power import Power, PowerAction, PowerMachine, PowerTimings, RackFeed
from nicoflow.simulator.settings import SimSettings
from nicoflow.simulator.site import Bmc, Component, Dpu, Rack, Site

DEFAULT_SWITCH_STATE = json.dumps({"state": "ready"}, separators=(",", ":"))
LEAK_MESSAGE = "Coolant leak detected by the tray leak sensor"
EXPECTED_USERNAME = "root"
EXPECTED_PASSWORD = "simulated"


class NodeKind(StrEnum):
    HOST = "host"
    DPU = "dpu"
    SWITCH = "switch"
    SHELF = "shelf"


KIND_OF_TYPE = {
    ComponentType.COMPUTE: NodeKind.HOST,
    ComponentType.NVSWITCH: NodeKind.SWITCH,
    ComponentType.POWERSHELF: NodeKind.SHELF,
}


class ResultStatus(StrEnum):
    """Per-component outcome; names of forge.ComponentManagerStatusCode."""

    SUCCESS = "SUCCESS"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: ResultStatus = ResultStatus.SUCCESS
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == ResultStatus.SUCCESS


class SimError(Exception):
    """A whole call fails with a gRPC status (code = grpc.StatusCode name)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Alert:
    id: str
    message: str
    classifications: tuple[str, ...] = ()
    since: float = 0.0


@dataclass(slots=True)
class Override:
    source: str
    alerts: list[Alert]
    replace: bool
    at: float


@dataclass(slots=True)
class Reprovision:
    requested_at: float
    initiator: str
    update_firmware: bool
    kicked_at: float | None = None


@dataclass(slots=True, eq=False)
class Expected:
    """One expected-inventory entry (machine, switch or power shelf)."""

    kind: NodeKind
    mac: str
    serial: str
    ip: str = ""
    rack_id: str | None = None
    expected_id: str = ""
    username: str = EXPECTED_USERNAME
    password: str = EXPECTED_PASSWORD
    name: str = ""
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    dpu_serials: list[str] = field(default_factory=list)
    pause: bool | None = None
    nvos_username: str | None = None
    nvos_password: str | None = None
    node: Node | None = None


@dataclass(slots=True, eq=False)
class RackState:
    rack: Rack
    feed: RackFeed
    hosts: list[Node] = field(default_factory=list)
    switches: list[Node] = field(default_factory=list)
    shelves: list[Node] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Node:
    id: str
    kind: NodeKind
    rack: RackState
    component: Component
    serial: str
    bmc: Bmc
    family: Family
    firmware: dict[str, str]
    power: PowerMachine
    timings: PowerTimings
    ingestion: Ingestion
    controller_state: str
    dpu: Dpu | None = None
    host: Node | None = None
    dpus: list[Node] = field(default_factory=list)
    alerts: dict[str, Alert] = field(default_factory=dict)
    overrides: dict[str, Override] = field(default_factory=dict)
    job: FirmwareJob | None = None
    desired_power: bool = True
    desired_power_at: float = 0.0
    desired_power_version: int = 1
    autoupdate: bool | None = None
    window: tuple[float, float] | None = None
    armed_at: float = 0.0
    update_complete: bool = False
    reprovision: Reprovision | None = None
    instance_id: str | None = None

    @property
    def model(self) -> str:
        return MODELS[self.family] if self.dpu is not None else self.component.model


_HOST_REPROVISION_STATES = {
    JobState.IN_PROGRESS: "HostReprovision/WaitingForFirmwareUpgrade",
    JobState.VERIFYING: "HostReprovision/CheckingFirmware",
    JobState.FAILED: "HostReprovision/FailedFirmwareUpgrade",
}


class World:
    def __init__(
        self,
        site: Site,
        settings: SimSettings | None = None,
        clock: Clock | None = None,
        injector: Injector | None = None,
    ) -> None:
        self.site = site
        self.settings = settings or SimSettings()
        self.clock = clock or SystemClock()
        self.faults = injector or Injector()
        self.desired: dict[Family, dict[str, str]] = {
            Family(f): dict(v) for f, v in site.desired_firmware.items()
        }
        self.nodes: dict[str, Node] = {}
        self.by_ip: dict[str, Node] = {}
        self.by_mac: dict[str, Node] = {}
        self.by_serial: dict[str, Node] = {}
        self.racks: dict[str, RackState] = {}
        self.hosts: list[Node] = []
        self.switches: list[Node] = []
        self.shelves: list[Node] = []
        self.expected: dict[NodeKind, dict[str, Expected]] = {
            NodeKind.HOST: {},
            NodeKind.SWITCH: {},
            NodeKind.SHELF: {},
        }
        self.reprovisioning: dict[str, Node] = {}
        self.instances: dict[str, Node] = {}
        # every firmware job started, per component: (start, whether it fails)
        self.jobs_started: dict[str, list[tuple[float, bool]]] = {}
        now = self.clock.now()
        for rack in site.racks:
            self._add_rack(rack, now)
        self.apply_leaks(self.faults.plan.leaks)

    # --- Construction ----------------------------------------------------------------

    def _timings(self, kind: NodeKind) -> PowerTimings:
        s = self.settings
        latency = s.power_latency
        if kind == NodeKind.SHELF and s.shelf_power_latency is not None:
            latency = s.shelf_power_latency
        return PowerTimings(latency=latency, force_latency=s.force_power_latency, lag=s.command_lag)

    def _add_rack(self, rack: Rack, now: float) -> None:
        state = RackState(rack=rack, feed=RackFeed(shelves=[], loads=[]))
        self.racks[rack.core_id] = state
        for comp in rack.components:
            kind = KIND_OF_TYPE[comp.type]
            # A rack Core has not ingested yet stands powered: shelves and
            # switches on, trays off until bring-up powers them on.
            on = rack.ingested or kind != NodeKind.HOST
            ingestion = (
                Ingestion(created=True)
                if rack.ingested
                else Ingestion(
                    created=False,
                    paused=kind == NodeKind.HOST,
                    latency=self.settings.ingestion_latency if kind == NodeKind.HOST else 0.0,
                )
            )
            node = Node(
                id=comp.core_id,
                kind=kind,
                rack=state,
                component=comp,
                serial=comp.serial,
                bmc=comp.bmc,
                family=FAMILY_OF_TYPE[comp.type],
                firmware=dict(comp.firmware),
                power=PowerMachine(Power.ON if on else Power.OFF),
                timings=self._timings(kind),
                ingestion=ingestion,
                controller_state=(
                    self.settings.initial_machine_state
                    if kind == NodeKind.HOST
                    else DEFAULT_SWITCH_STATE
                ),
                desired_power_at=now,
            )
            self._index(node)
            if kind == NodeKind.HOST:
                state.hosts.append(node)
                self.hosts.append(node)
                for dpu in comp.dpus:
                    d = Node(
                        id=dpu.core_id,
                        kind=NodeKind.DPU,
                        rack=state,
                        component=comp,
                        serial=dpu.serial,
                        bmc=dpu.bmc,
                        family=Family.DPU,
                        firmware=dict(dpu.firmware),
                        # A DPU is powered by its tray.
                        power=node.power,
                        timings=node.timings,
                        ingestion=node.ingestion,
                        controller_state=node.controller_state,
                        dpu=dpu,
                        host=node,
                        desired_power_at=now,
                    )
                    node.dpus.append(d)
                    self._index(d)
            elif kind == NodeKind.SWITCH:
                state.switches.append(node)
                self.switches.append(node)
            else:
                state.shelves.append(node)
                self.shelves.append(node)
            if rack.ingested:
                self._expect_from_site(rack, node)
        state.feed = RackFeed(
            shelves=[s.power for s in state.shelves],
            loads=[n.power for n in (*state.switches, *state.hosts)],
        )

    def _index(self, node: Node) -> None:
        self.nodes[node.id] = node
        self.by_ip[node.bmc.ip] = node
        self.by_mac[node.bmc.mac.lower()] = node
        self.by_serial[node.serial] = node

    def _expect_from_site(self, rack: Rack, node: Node) -> None:
        comp = node.component
        labels = {
            "manufacturer": comp.manufacturer,
            "model": comp.model,
            "slot_id": str(comp.position.slot_id),
            "tray_idx": str(comp.position.tray_index),
        }
        if comp.position.host_id is not None:
            labels["host_id"] = str(comp.position.host_id)
        entry = Expected(
            kind=node.kind,
            mac=node.bmc.mac.lower(),
            serial=node.serial,
            ip=node.bmc.ip,
            rack_id=rack.core_id,
            expected_id=comp.expected_id,
            name=comp.name,
            labels=labels,
            dpu_serials=[d.serial for d in comp.dpus],
            pause=True if node.kind == NodeKind.HOST else None,
            nvos_username="admin" if node.kind == NodeKind.SWITCH else None,
            nvos_password=EXPECTED_PASSWORD if node.kind == NodeKind.SWITCH else None,
            node=node,
        )
        self.expected[node.kind][entry.mac] = entry

    # --- Lookups ---------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def exists(self, node: Node) -> bool:
        """Whether Core has the object (machines only after ingestion)."""
        return node.ingestion.exists(self.now())

    def find(self, node_id: str, *kinds: NodeKind) -> Node | None:
        node = self.nodes.get(node_id)
        if node is None or (kinds and node.kind not in kinds) or not self.exists(node):
            return None
        return node

    def node(self, key: str) -> Node:
        """A node by Core ID, serial, BMC IP or MAC (control API and tests)."""
        node = (
            self.nodes.get(key)
            or self.by_serial.get(key)
            or self.by_ip.get(key)
            or self.by_mac.get(key.lower())
        )
        if node is None:
            raise SimError("NOT_FOUND", f"no component {key!r} in the simulated site")
        return node

    def endpoint(self, address: str) -> Node | None:
        """The node behind a BmcEndpointRequest address (a DPU's address
        means its host)."""
        node = self.by_ip.get(address)
        if node is None and not self.settings.strict_bmc_endpoints:
            node = self.nodes.get(address)
        if node is not None and node.host is not None:
            node = node.host
        return node

    # --- Power -----------------------------------------------------------------------

    def power(self, node: Node) -> Power:
        now = self.now()
        node.rack.feed.settle(now)
        state = node.power.read(now)
        if node.kind == NodeKind.HOST and self._power_manager_acts(node, state, now):
            action = PowerAction.ON if node.desired_power else PowerAction.GRACEFUL_SHUTDOWN
            node.power.command(action, now, node.timings)
            state = node.power.read(now)
        return state

    def _power_manager_acts(self, node: Node, state: Power, now: float) -> bool:
        """A settled host that is not where Core wants it, for long enough,
        with input power to get there."""
        delay = self.settings.power_manager_delay
        if delay is None or node.power.settled_at() is not None:
            return False
        if self.faults.failing(node.id, node.serial):
            return False  # its BMC refuses Core's power manager as it refuses us
        if state not in (Power.ON, Power.OFF) or (state == Power.ON) == node.desired_power:
            return False
        return now - node.desired_power_at >= delay and node.rack.feed.is_fed(now)

    def observed_power(self, node: Node) -> Power:
        """Power as a BMC read reports it (flapping components lie)."""
        actual = self.power(node)
        if self.faults.flaps(node.id, node.serial):
            return Power.OFF if actual in (Power.ON, Power.POWERING_OFF) else Power.ON
        return actual

    def fed(self, node: Node) -> bool:
        return node.rack.feed.is_fed(self.now())

    def power_command(self, node: Node, action: PowerAction, *, kick: bool = True) -> Outcome:
        """Send a power action to a host, switch or shelf."""
        now = self.now()
        if self.faults.failing(node.id, node.serial):
            return Outcome(
                ResultStatus.INTERNAL_ERROR,
                f"injected failure: {node.id} rejects power action {action.value}",
            )
        if node.kind == NodeKind.DPU:
            return Outcome(
                ResultStatus.INVALID_ARGUMENT,
                f"{node.id} is a DPU; power is controlled through its host",
            )
        feed = node.rack.feed
        feed.settle(now)
        if node.kind != NodeKind.SHELF and not feed.fed:
            if action.boots:
                return Outcome(
                    ResultStatus.UNAVAILABLE,
                    f"BMC {node.bmc.ip} of {node.id} is unreachable: rack "
                    f"{node.rack.rack.core_id} has no input power (all power shelves are off)",
                )
            return Outcome()
        node.power.command(action, now, node.timings)
        if node.kind == NodeKind.SHELF:
            feed.settle(now)
        if node.kind == NodeKind.HOST and action.boots and kick:
            self._kick_reprovision(node, now)
        return Outcome()

    def set_desired_power(self, node: Node, on: bool) -> None:
        if node.desired_power == on:
            name = "On" if on else "Off"
            raise SimError(
                "INVALID_ARGUMENT",
                f"desired power state of machine {node.id} is already set as {name}",
            )
        self.note_desired_power(node, on)

    def note_desired_power(self, node: Node, on: bool) -> None:
        """Record a desired power state without the "already set" check (Core's
        own paths set it as a side effect of power actions)."""
        if node.desired_power != on:
            node.desired_power = on
            node.desired_power_at = self.now()
            node.desired_power_version += 1

    # --- Firmware --------------------------------------------------------------------

    def desired_entries(self) -> list[tuple[str, str, dict[str, str]]]:
        """(vendor, model, component versions) per device family."""
        return [(MANUFACTURER, MODELS[f], dict(v)) for f, v in self.desired.items()]

    def firmware(self, node: Node) -> dict[str, str]:
        self._settle_firmware(node, self.now())
        return node.firmware

    def bmc_version(self, node: Node) -> str:
        return self.firmware(node).get(BMC_PART[node.family], "")

    def job(self, node: Node) -> FirmwareJob | None:
        self._settle_firmware(node, self.now())
        return node.job

    def firmware_targets(
        self, node: Node, parts: Iterable[str], target_version: str
    ) -> dict[str, str]:
        """Part -> version a request asks for. Empty target: Core's desired
        bundle. A JSON object: versions per part (parts it leaves out keep the
        desired version). Any other text: that version for every part."""
        family_parts = PARTS[node.family]
        chosen = [p for p in parts if p in family_parts]
        desired = self.desired.get(node.family, {})
        if not target_version:
            return {p: desired[p] for p in chosen or family_parts if p in desired}
        try:
            obj = json.loads(target_version)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            named = [p for p in family_parts if p in obj]
            chosen = chosen or named
            if not named:
                raise SimError(
                    "INVALID_ARGUMENT",
                    f"target_version names no firmware part of a {node.family.value} "
                    f"(parts: {', '.join(family_parts)})",
                )
            return {p: str(obj[p]) if p in obj else desired.get(p, "") for p in chosen}
        return dict.fromkeys(chosen or family_parts, target_version)

    def start_firmware(
        self, node: Node, targets: Mapping[str, str], target_version: str
    ) -> Outcome:
        now = self.now()
        self._settle_firmware(node, now)
        feed = node.rack.feed
        if node.kind != NodeKind.SHELF and not feed.is_fed(now):
            return Outcome(
                ResultStatus.UNAVAILABLE,
                f"BMC {node.bmc.ip} of {node.id} is unreachable: rack has no input power",
            )
        job = node.job
        if job is not None and job.state(now).active:
            if job.same_request(targets):
                return Outcome()  # the same update is already under way
            return Outcome(
                ResultStatus.ALREADY_EXISTS,
                f"a firmware update of {node.id} is already {job.state(now).value}",
            )
        node.job = self._new_job(node, targets, now, target_version=target_version)
        return Outcome()

    def _new_job(
        self,
        node: Node,
        targets: Mapping[str, str],
        start: float,
        *,
        target_version: str = "",
        kind: JobKind = JobKind.COMPONENT,
    ) -> FirmwareJob:
        keys = (node.id, node.serial)
        failure = None
        if self.faults.firmware_fails(*keys):
            failure = f"injected failure: firmware update of {node.id} failed during flashing"
        self.jobs_started.setdefault(node.id, []).append((start, failure is not None))
        return FirmwareJob(
            component_id=node.id,
            targets=dict(targets),
            started_at=start,
            timings=FirmwareTimings(self.settings.firmware_latency),
            kind=kind,
            target_version=target_version,
            failure=failure,
            stuck=self.faults.stuck(*keys),
        )

    def set_autoupdate(self, node: Node, value: bool | None) -> None:
        node.autoupdate = value
        now = self.now()
        if value:
            node.armed_at = now
        self._settle_firmware(node, now)

    def set_firmware_window(self, node: Node, start: float, end: float) -> None:
        if start >= end:
            raise SimError("INVALID_ARGUMENT", "firmware window start must be before its end")
        now = self.now()
        node.window = (start, end)
        node.armed_at = now
        self._settle_firmware(node, now)

    def _maybe_start_host_reprovision(self, node: Node, now: float) -> None:
        # Core's host firmware flow: an auto-update machine inside its window
        # whose firmware differs from the desired bundle gets reprovisioned.
        if node.autoupdate is not True or node.window is None:
            return
        job = node.job
        if job is not None and (job.state(now).active or job.started_at >= node.armed_at):
            return
        desired = self.desired.get(Family.COMPUTE, {})
        if matches(node.firmware, desired):
            return
        start = max(node.window[0], node.armed_at)
        if now < start or start >= node.window[1]:
            return
        node.update_complete = False
        node.job = self._new_job(node, desired, start, kind=JobKind.HOST_REPROVISION)

    def _settle_firmware(self, node: Node, now: float) -> None:
        if node.kind == NodeKind.HOST:
            self._maybe_start_host_reprovision(node, now)
        job = node.job
        if job is not None and not job.applied and job.state(now) == JobState.COMPLETED:
            node.firmware.update(job.targets)
            job.applied = True
            if job.kind == JobKind.HOST_REPROVISION:
                node.update_complete = True
        if node.reprovision is not None:
            self._settle_reprovision(node, now)

    # --- Machine state and health ----------------------------------------------------

    def machine_state(self, node: Node) -> str:
        host = node.host or node
        now = self.now()
        self._settle_firmware(host, now)
        job = host.job
        if job is not None and job.kind == JobKind.HOST_REPROVISION:
            state = _HOST_REPROVISION_STATES.get(job.state(now))
            if state:
                return state
        return host.controller_state

    def alerts(self, node: Node) -> list[Alert]:
        """The machine's merged health: hardware alerts plus override reports;
        a Replace override stands alone."""
        replacing = [o for o in node.overrides.values() if o.replace]
        if replacing:
            return list(replacing[-1].alerts)
        out = list(node.alerts.values())
        for o in node.overrides.values():
            out.extend(o.alerts)
        return out

    def has_alert(self, node: Node, alert_id: str) -> bool:
        return any(a.id == alert_id for a in self.alerts(node))

    def insert_override(self, node: Node, source: str, alerts: list[Alert], replace: bool) -> None:
        if not source:
            raise SimError("INVALID_ARGUMENT", "a health report needs a source")
        node.overrides[source] = Override(source, alerts, replace, self.now())

    def remove_override(self, node: Node, source: str) -> None:
        if node.overrides.pop(source, None) is None:
            raise SimError(
                "NOT_FOUND", f"machine {node.id} has no health report override from {source!r}"
            )

    # --- Ingestion -------------------------------------------------------------------

    def ingestion_state(self, node: Node) -> IngestionState:
        return node.ingestion.state(self.now())

    def allow_ingestion(self, host: Node) -> None:
        now = self.now()
        if host.ingestion.exists(now):
            return
        host.ingestion.allow(now)
        if host.kind == NodeKind.HOST:
            # "...AndPowerOn": the tray boots for discovery (if the rack has power).
            self.power_command(host, PowerAction.ON)

    # --- DPU reprovisioning ----------------------------------------------------------

    def trigger_reprovision(
        self, node: Node, mode: str, initiator: str, update_firmware: bool
    ) -> list[Node]:
        if node.kind == NodeKind.HOST:
            dpus = node.dpus
        elif node.kind == NodeKind.DPU:
            dpus = [node]
        else:
            raise SimError("INVALID_ARGUMENT", f"{node.id} is not a machine")
        if not dpus:
            raise SimError("FAILED_PRECONDITION", f"machine {node.id} has no DPUs")
        now = self.now()
        for d in dpus:
            if mode == "clear":
                d.reprovision = None
                self.reprovisioning.pop(d.id, None)
            elif mode == "restart" or d.reprovision is None:
                d.reprovision = Reprovision(now, initiator, update_firmware)
                self.reprovisioning[d.id] = d
        return dpus

    def _kick_reprovision(self, host: Node, now: float) -> None:
        for d in host.dpus:
            if d.reprovision is not None and d.reprovision.kicked_at is None:
                d.reprovision.kicked_at = now

    def reprovision_done_at(self, dpu: Node) -> float | None:
        r = dpu.reprovision
        if r is None or r.kicked_at is None:
            return None
        return r.kicked_at + dpu.timings.latency + self.settings.dpu_reprovision_latency

    def _settle_reprovision(self, dpu: Node, now: float) -> None:
        r = dpu.reprovision
        done = self.reprovision_done_at(dpu)
        if r is None or done is None or now < done:
            return
        if r.update_firmware:
            dpu.firmware.update(self.desired.get(Family.DPU, {}))
        dpu.reprovision = None
        self.reprovisioning.pop(dpu.id, None)

    def waiting_for_reprovisioning(self) -> list[tuple[Node, Reprovision]]:
        now = self.now()
        for d in list(self.reprovisioning.values()):
            self._settle_reprovision(d, now)
        return [(d, d.reprovision) for d in self.reprovisioning.values() if d.reprovision]

    # --- Tenant instances ------------------------------------------------------------

    def assign_instance(self, host: Node) -> str:
        if host.instance_id is None:
            host.instance_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"instance:{host.id}"))
            self.instances[host.instance_id] = host
        return host.instance_id

    def release_instance(self, host: Node) -> None:
        if host.instance_id is not None:
            self.instances.pop(host.instance_id, None)
            host.instance_id = None

    def instance_power_reset(self, instance_id: str, apply_updates: bool) -> Outcome:
        host = self.instances.get(instance_id)
        if host is None:
            raise SimError("NOT_FOUND", f"instance {instance_id} not found")
        return self.power_command(host, PowerAction.FORCE_RESTART, kick=apply_updates)

    # --- Expected inventory ----------------------------------------------------------

    def add_expected(self, entry: Expected) -> None:
        entry.mac = entry.mac.strip().lower()
        if not entry.mac:
            raise SimError("INVALID_ARGUMENT", "bmc_mac_address is required")
        table = self.expected[entry.kind]
        if entry.mac in table:
            raise SimError(
                "ALREADY_EXISTS",
                f"an expected {entry.kind.value} with BMC MAC {entry.mac} already exists",
            )
        if entry.serial and any(e.serial == entry.serial for e in table.values()):
            raise SimError(
                "ALREADY_EXISTS",
                f"an expected {entry.kind.value} with serial {entry.serial} already exists",
            )
        node = self.by_mac.get(entry.mac)
        if node is None or node.kind != entry.kind:
            candidate = self.by_serial.get(entry.serial)
            node = candidate if candidate is not None and candidate.kind == entry.kind else None
        if not entry.expected_id:
            entry.expected_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"expected:{entry.mac}"))
        entry.node = node
        table[entry.mac] = entry
        if node is not None and not node.ingestion.created:
            if entry.kind == NodeKind.HOST:
                node.ingestion.paused = bool(entry.pause)
            node.ingestion.discover(self.now() + self.settings.discovery_latency)

    def linked(self, entry: Expected) -> Node | None:
        """The Core object an expected entry is linked to, once it exists."""
        if entry.node is not None and self.exists(entry.node):
            return entry.node
        return None

    def explored(self, node: Node) -> bool:
        """Whether site exploration has seen the node's BMC."""
        ing = node.ingestion
        if ing.created:
            return True
        return ing.discovered_at is not None and self.now() >= ing.discovered_at

    # --- Searches --------------------------------------------------------------------

    def machine_ids(
        self,
        *,
        include_dpus: bool = False,
        power_state: str | None = None,
        alert: str | None = None,
        rack_id: str | None = None,
    ) -> list[str]:
        if rack_id is not None:
            rack = self.racks.get(rack_id)
            hosts = rack.hosts if rack else []
        else:
            hosts = self.hosts
        wanted_power = power_state.strip().lower() if power_state else None
        out: list[str] = []
        for host in hosts:
            if not self.exists(host):
                continue
            machines = [host, *host.dpus] if include_dpus else [host]
            for m in machines:
                if wanted_power is not None and self.power(m).value != wanted_power:
                    continue
                if alert is not None and not self.has_alert(m, alert):
                    continue
                out.append(m.id)
        return out

    def switch_ids(self, *, alert: str | None = None, rack_id: str | None = None) -> list[str]:
        if rack_id is not None:
            rack = self.racks.get(rack_id)
            switches = rack.switches if rack else []
        else:
            switches = self.switches
        return [
            s.id for s in switches if self.exists(s) and (alert is None or self.has_alert(s, alert))
        ]

    # --- Test and control hooks ------------------------------------------------------

    def set_power(self, node: Node, state: Power) -> None:
        """Jump a component to a power state (no latency)."""
        now = self.now()
        feed = node.rack.feed
        feed.settle(now)
        node.power.set(state)
        feed.settle(now)

    def set_controller_state(self, node: Node, state: str | Mapping[str, Any]) -> None:
        if not isinstance(state, str):
            state = json.dumps(dict(state), separators=(",", ":"))
        target = node.host or node
        target.controller_state = state
        for d in target.dpus:
            d.controller_state = state

    def set_alert(
        self,
        node: Node,
        alert_id: str,
        message: str = "",
        classifications: Iterable[str] = (),
    ) -> None:
        node.alerts[alert_id] = Alert(
            alert_id, message or alert_id, tuple(classifications), self.now()
        )

    def clear_alert(self, node: Node, alert_id: str) -> bool:
        return node.alerts.pop(alert_id, None) is not None

    def set_leak(self, node: Node, leaking: bool = True) -> None:
        if node.kind not in (NodeKind.HOST, NodeKind.SWITCH):
            raise SimError("INVALID_ARGUMENT", "leak sensors are on compute and switch trays")
        if leaking:
            self.set_alert(node, LEAK_ALERT_ID, LEAK_MESSAGE, ("Hardware", "Leak"))
        else:
            self.clear_alert(node, LEAK_ALERT_ID)

    def apply_leaks(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.set_leak(self.node(key), True)

    def set_firmware(self, node: Node, versions: Mapping[str, str]) -> None:
        self._settle_firmware(node, self.now())
        node.firmware.update({str(k): str(v) for k, v in versions.items()})

    def set_desired_firmware(self, family: Family, versions: Mapping[str, str]) -> None:
        self.desired[family] = {str(k): str(v) for k, v in versions.items()}

    def describe(self, node: Node) -> dict[str, Any]:
        """A JSON-able snapshot of one component (control API)."""
        job = self.job(node)
        now = self.now()
        out: dict[str, Any] = {
            "id": node.id,
            "kind": node.kind.value,
            "rack_id": node.rack.rack.core_id,
            "name": node.component.name,
            "serial": node.serial,
            "bmc": {"mac": node.bmc.mac, "ip": node.bmc.ip},
            "exists": self.exists(node),
            "power": self.power(node).value,
            "rack_fed": node.rack.feed.is_fed(now),
            "firmware": dict(self.firmware(node)),
            "alerts": [a.id for a in self.alerts(node)],
            "state": (
                self.machine_state(node)
                if node.kind in (NodeKind.HOST, NodeKind.DPU)
                else node.controller_state
            ),
            "ingestion": self.ingestion_state(node).name,
            "job": None
            if job is None
            else {
                "state": job.state(now).value,
                "kind": job.kind.value,
                "targets": dict(job.targets),
                "failure": job.failure,
                "stuck": job.stuck,
            },
        }
        if node.kind == NodeKind.HOST:
            out["desired_power"] = "on" if node.desired_power else "off"
            out["autoupdate"] = node.autoupdate
            out["update_complete"] = node.update_complete
            out["dpus"] = [d.id for d in node.dpus]
            out["overrides"] = sorted(node.overrides)
            out["instance_id"] = node.instance_id
        if node.kind == NodeKind.DPU:
            out["reprovisioning"] = node.reprovision is not None
        return out
