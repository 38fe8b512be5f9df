"""Vocabulary shared by every layer: component types, operations, phases.

String values are the ones users write in CRDs and YAML; wire numbers of the
gRPC enums live with the protocol adapters, not here."""

from __future__ import annotations

from enum import StrEnum


class ComponentType(StrEnum):
    COMPUTE = "compute"
    NVSWITCH = "nvswitch"
    POWERSHELF = "powershelf"
    TORSWITCH = "torswitch"
    UMS = "ums"
    CDU = "cdu"

    @classmethod
    def parse(cls, text: str) -> ComponentType:
        """Case-insensitive parse that accepts the original's display names
        ("Compute", "NVSwitch", "PowerShelf", "ToRSwitch")."""
        key = text.strip().lower()
        for member in cls:
            if member.value == key:
                return member
        allowed = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown component type {text!r}; expected one of: {allowed}")

    @property
    def display(self) -> str:
        return _DISPLAY[self]


_DISPLAY = {
    ComponentType.COMPUTE: "Compute",
    ComponentType.NVSWITCH: "NVSwitch",
    ComponentType.POWERSHELF: "PowerShelf",
    ComponentType.TORSWITCH: "ToRSwitch",
    ComponentType.UMS: "UMS",
    ComponentType.CDU: "CDU",
}


class Leftover(StrEnum):
    """What a command may leave in NICo Core that Flow must take away again."""

    # the legacy compute manager's maintenance override (silences the tray's alerts)
    POWER_OVERRIDE = "power-override"
    # the report that keeps tenants off a host while its DPUs are updated
    HOST_UPDATE = "host-update"


class OperationType(StrEnum):
    POWER_CONTROL = "power_control"
    FIRMWARE_CONTROL = "firmware_control"
    BRING_UP = "bring_up"


class OperationCode(StrEnum):
    POWER_ON = "power_on"
    POWER_OFF = "power_off"
    FORCE_POWER_ON = "force_power_on"
    FORCE_POWER_OFF = "force_power_off"
    RESTART = "restart"
    FORCE_RESTART = "force_restart"
    WARM_RESET = "warm_reset"
    COLD_RESET = "cold_reset"
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    ROLLBACK = "rollback"
    BRING_UP = "bring_up"
    INGEST = "ingest"

    @property
    def operation_type(self) -> OperationType:
        return OPERATION_TYPE_OF[self]

    @property
    def disruptive(self) -> bool:
        """Takes running hardware down or changes it (power off, resets,
        firmware, bring-up's power cycle): bounded in how many racks it may
        hit at once."""
        return self not in _GENTLE


_GENTLE = frozenset({OperationCode.POWER_ON, OperationCode.FORCE_POWER_ON, OperationCode.INGEST})
# A disruptive operation on more racks than this needs maxParallelRacks (the
# operator's --max-unthrottled-racks); the API runs larger ones this many at a time.
DEFAULT_MAX_UNTHROTTLED_RACKS = 20

OPERATION_TYPE_OF: dict[OperationCode, OperationType] = {
    **dict.fromkeys(
        (
            OperationCode.POWER_ON,
            OperationCode.POWER_OFF,
            OperationCode.FORCE_POWER_ON,
            OperationCode.FORCE_POWER_OFF,
            OperationCode.RESTART,
            OperationCode.FORCE_RESTART,
            OperationCode.WARM_RESET,
            OperationCode.COLD_RESET,
        ),
        OperationType.POWER_CONTROL,
    ),
    OperationCode.UPGRADE: OperationType.FIRMWARE_CONTROL,
    OperationCode.DOWNGRADE: OperationType.FIRMWARE_CONTROL,
    OperationCode.ROLLBACK: OperationType.FIRMWARE_CONTROL,
    OperationCode.BRING_UP: OperationType.BRING_UP,
    OperationCode.INGEST: OperationType.BRING_UP,
}


class ConflictStrategy(StrEnum):
    REJECT = "Reject"
    QUEUE = "Queue"


class TaskPhase(StrEnum):
    """Life of one rack's Task. Waiting = queued behind a conflicting Task."""

    PENDING = "Pending"
    WAITING = "Waiting"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskPhase.SUCCEEDED, TaskPhase.FAILED, TaskPhase.CANCELLED)


class BMCType(StrEnum):
    HOST = "host"
    DPU = "dpu"


class PowerState(StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"
    DISABLED = "disabled"
