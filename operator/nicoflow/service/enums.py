"""Wire numbers of the v1 enums against the shared vocabulary (nicoflow.domain.types).

Proto3 enums are open: a client can send a number this server does not know.
Every parse here rejects those (and the UNKNOWN zero value) with a message
naming the accepted values."""

from __future__ import annotations

from typing import cast

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.types import (
    BMCType,
    ComponentType,
    ConflictStrategy,
    OperationType,
    PowerState,
    TaskPhase,
)
from nicoflow.inventory.models import ComponentPhase, LeakStatus
from nicoflow.service.errors import InvalidArgument

COMPONENT_TYPES: dict[int, ComponentType] = {
    pb.COMPONENT_TYPE_COMPUTE: ComponentType.COMPUTE,
    pb.COMPONENT_TYPE_NVSWITCH: ComponentType.NVSWITCH,
    pb.COMPONENT_TYPE_POWERSHELF: ComponentType.POWERSHELF,
    pb.COMPONENT_TYPE_TORSWITCH: ComponentType.TORSWITCH,
    pb.COMPONENT_TYPE_UMS: ComponentType.UMS,
    pb.COMPONENT_TYPE_CDU: ComponentType.CDU,
}
_COMPONENT_TYPE_NUMBERS = {
    v: cast(pb.ComponentType.ValueType, k) for k, v in COMPONENT_TYPES.items()
}

_BMC_TYPES: dict[int, BMCType] = {pb.BMC_TYPE_HOST: BMCType.HOST, pb.BMC_TYPE_DPU: BMCType.DPU}
_BMC_TYPE_NUMBERS = {v: cast(pb.BMCType.ValueType, k) for k, v in _BMC_TYPES.items()}

_PHASES: dict[ComponentPhase, pb.Phase.ValueType] = {
    ComponentPhase.UNKNOWN: pb.PHASE_UNKNOWN,
    ComponentPhase.INITIALIZING: pb.PHASE_INITIALIZING,
    ComponentPhase.READY: pb.PHASE_READY,
    ComponentPhase.IN_USE: pb.PHASE_IN_USE,
    ComponentPhase.ERROR: pb.PHASE_ERROR,
    ComponentPhase.DELETING: pb.PHASE_DELETING,
}

_LEAKS: dict[LeakStatus, pb.LeakStatus.ValueType] = {
    LeakStatus.UNKNOWN: pb.LEAK_STATUS_UNKNOWN,
    LeakStatus.DETECTED: pb.LEAK_STATUS_DETECTED,
    LeakStatus.NOT_DETECTED: pb.LEAK_STATUS_NOT_DETECTED,
}

# bring_up has no wire value (the original's enum lacks it); it is left out.
_OPERATION_TYPES: dict[str, pb.OperationType.ValueType] = {
    OperationType.POWER_CONTROL.value: pb.OPERATION_TYPE_POWER_CONTROL,
    OperationType.FIRMWARE_CONTROL.value: pb.OPERATION_TYPE_FIRMWARE_CONTROL,
}

TASK_STATUS: dict[TaskPhase, pb.TaskStatus.ValueType] = {
    TaskPhase.PENDING: pb.TASK_STATUS_PENDING,
    TaskPhase.WAITING: pb.TASK_STATUS_WAITING,
    TaskPhase.RUNNING: pb.TASK_STATUS_RUNNING,
    TaskPhase.SUCCEEDED: pb.TASK_STATUS_COMPLETED,
    TaskPhase.FAILED: pb.TASK_STATUS_FAILED,
    TaskPhase.CANCELLED: pb.TASK_STATUS_TERMINATED,
}

_TYPE_NAMES = ", ".join(pb.ComponentType.Name(n) for n in _COMPONENT_TYPE_NUMBERS.values())


def component_type(number: int, field: str) -> ComponentType:
    """The component type a request names; UNKNOWN and unknown numbers are refused."""
    found = COMPONENT_TYPES.get(number)
    if found is None:
        shown = "COMPONENT_TYPE_UNKNOWN" if number == pb.COMPONENT_TYPE_UNKNOWN else str(number)
        raise InvalidArgument(f"{field} is {shown}; set one of {_TYPE_NAMES}")
    return found


def component_type_number(ctype: ComponentType) -> pb.ComponentType.ValueType:
    return _COMPONENT_TYPE_NUMBERS[ctype]


def bmc_type(number: int, field: str) -> BMCType:
    found = _BMC_TYPES.get(number)
    if found is None:
        raise InvalidArgument(
            f"{field} is not set or unknown ({number}); use BMC_TYPE_HOST or BMC_TYPE_DPU"
        )
    return found


def bmc_type_number(btype: BMCType) -> pb.BMCType.ValueType:
    return _BMC_TYPE_NUMBERS[btype]


def phase_number(phase: ComponentPhase) -> pb.Phase.ValueType:
    return _PHASES[phase]


def leak_number(leak: LeakStatus) -> pb.LeakStatus.ValueType:
    return _LEAKS[leak]


def operation_type_numbers(values: list[str]) -> list[pb.OperationType.ValueType]:
    return [_OPERATION_TYPES[v] for v in values if v in _OPERATION_TYPES]


def power_state_text(state: PowerState) -> str:
    return state.value


def task_status(phase: TaskPhase) -> pb.TaskStatus.ValueType:
    return TASK_STATUS[phase]


def conflict_strategy(number: int, field: str) -> ConflictStrategy:
    if number in (pb.CONFLICT_STRATEGY_UNSPECIFIED, pb.CONFLICT_STRATEGY_REJECT):
        return ConflictStrategy.REJECT
    if number == pb.CONFLICT_STRATEGY_QUEUE:
        return ConflictStrategy.QUEUE
    raise InvalidArgument(
        f"{field} {number} is unknown; use CONFLICT_STRATEGY_REJECT or CONFLICT_STRATEGY_QUEUE"
    )
