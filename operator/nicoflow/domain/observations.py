"""What NICo Core reports about the hardware, in Flow's vocabulary.

The core layer fills these from Core's messages (`core.observe`); the inventory
layer compares them with the expected inventory (`inventory.sync`). Neither side
needs the other's types, so both depend only on this module.

Also here: the mapping of Core's controller states onto a component phase and
the operations the readiness gate refuses in that phase."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from nicoflow.domain.types import ComponentType, OperationType, PowerState

LEAK_ALERT_ID = "hardware-health.tray-leak-detection"

# Component types whose actual state Core reports.
OBSERVED_TYPES: tuple[ComponentType, ...] = (
    ComponentType.COMPUTE,
    ComponentType.NVSWITCH,
    ComponentType.POWERSHELF,
)


class Phase(StrEnum):
    """Readiness of a component as Core reports it; same values as the
    inventory's `ComponentPhase` column."""

    UNKNOWN = "unknown"
    INITIALIZING = "initializing"
    READY = "ready"
    IN_USE = "in_use"
    ERROR = "error"
    DELETING = "deleting"


_BLOCK_ALL: frozenset[OperationType] = frozenset(
    {OperationType.POWER_CONTROL, OperationType.FIRMWARE_CONTROL}
)


@dataclass(frozen=True)
class ControllerStatus:
    phase: Phase
    reason: str  # Core's raw state, so a person can see what Core said
    blocked: frozenset[OperationType]


def _status(phase: Phase, reason: str) -> ControllerStatus:
    # Ready and unknown let every operation through; any other phase is a
    # component Core is busy with (or has given up on).
    blocked = frozenset() if phase in (Phase.READY, Phase.UNKNOWN) else _BLOCK_ALL
    return ControllerStatus(phase, reason, blocked)


_COMPUTE_PHASES: Mapping[str, Phase] = {
    "Ready": Phase.READY,
    "StartAssignmentCycle": Phase.READY,
    "Assigned": Phase.IN_USE,
    "WaitingForCleanup": Phase.IN_USE,
    "Reprovisioning": Phase.IN_USE,
    "HostReprovisioning": Phase.IN_USE,
    "Failed": Phase.ERROR,
    "ForceDeletion": Phase.DELETING,
    # Created, DPUDiscovering, HostInitializing, Measuring, BomValidating ... and
    # any state Core adds later are initializing (see compute_status).
}

_SWITCH_PHASES: Mapping[str, Phase] = {
    "ready": Phase.READY,
    "created": Phase.INITIALIZING,
    "initializing": Phase.INITIALIZING,
    "configuring": Phase.INITIALIZING,
    "validating": Phase.INITIALIZING,
    "bomvalidating": Phase.INITIALIZING,
    "reprovisioning": Phase.IN_USE,
    "error": Phase.ERROR,
    "deleting": Phase.DELETING,
}

_SHELF_PHASES: Mapping[str, Phase] = {
    "ready": Phase.READY,
    "initializing": Phase.INITIALIZING,
    "fetchingdata": Phase.INITIALIZING,
    "configuring": Phase.INITIALIZING,
    "maintenance": Phase.IN_USE,
    "error": Phase.ERROR,
    "deleting": Phase.DELETING,
}


def compute_status(state: str) -> ControllerStatus:
    """A machine's display state, e.g. "Assigned/Provisioning": the part before
    the first "/" decides. Unknown states count as initializing, so the gate
    holds operations on a machine whose state Flow does not understand."""
    key = state.split("/", 1)[0].strip()
    if not key:
        return _status(Phase.UNKNOWN, state)
    return _status(_COMPUTE_PHASES.get(key, Phase.INITIALIZING), state)


def _state_tag(controller_state: str) -> str | None:
    try:
        decoded = json.loads(controller_state)
    except (ValueError, TypeError):
        return None
    if not isinstance(decoded, dict):
        return None
    tag = decoded.get("state")
    return tag.strip().lower() if isinstance(tag, str) else None


def switch_status(controller_state: str) -> ControllerStatus:
    """A switch's controller state JSON, e.g. {"state":"ready"}. Unknown or
    undecodable states are UNKNOWN and block nothing."""
    tag = _state_tag(controller_state)
    return _status(_SWITCH_PHASES.get(tag or "", Phase.UNKNOWN), controller_state)


def shelf_status(controller_state: str) -> ControllerStatus:
    """A power shelf's controller state JSON; unknown states block nothing."""
    tag = _state_tag(controller_state)
    return _status(_SHELF_PHASES.get(tag or "", Phase.UNKNOWN), controller_state)


_MAC_SEPARATORS = re.compile(r"[\s:.\-]")
_MAC_HEX = re.compile(r"[0-9a-f]{12}")


def canonical_mac(raw: str | None) -> str | None:
    """aa:bb:cc:dd:ee:ff for any common spelling; None when it is not a MAC."""
    if not raw:
        return None
    bare = _MAC_SEPARATORS.sub("", raw).lower()
    if not _MAC_HEX.fullmatch(bare):
        return None
    return ":".join(bare[i : i + 2] for i in range(0, 12, 2))


@dataclass(frozen=True)
class ObservedPosition:
    slot_id: int | None = None
    tray_index: int | None = None
    host_id: int | None = None


@dataclass(frozen=True)
class ObservedComponent:
    """One component as Core reports it."""

    type: ComponentType
    core_id: str
    serial: str | None = None
    bmc_mac: str | None = None  # canonical form (see canonical_mac)
    bmc_ip: str | None = None
    power: PowerState = PowerState.UNKNOWN
    # The one comparable version (the management controller's "BMC image"),
    # and every part Core listed.
    firmware_version: str | None = None
    firmware: Mapping[str, str] = field(default_factory=dict)
    status: ControllerStatus = field(
        default_factory=lambda: ControllerStatus(Phase.UNKNOWN, "", frozenset())
    )
    # Only compute trays have a position in Core.
    position: ObservedPosition | None = None
    # None: Core cannot say (no leak sensor data for this component).
    leaking: bool | None = None
    leak_since: datetime | None = None
    rack_core_id: str | None = None
    nvos_ip: str | None = None


@dataclass(frozen=True)
class TypeObservation:
    """Everything Core reported for one component type. With `error` set the
    type was not observed: its components say nothing (not even "absent")."""

    type: ComponentType
    components: tuple[ObservedComponent, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class SiteObservation:
    observed_at: datetime
    types: Mapping[ComponentType, TypeObservation]

    @property
    def errors(self) -> dict[ComponentType, str]:
        return {t: o.error for t, o in self.types.items() if o.error is not None}

    @property
    def complete(self) -> bool:
        return not self.errors
