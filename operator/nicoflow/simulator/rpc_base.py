"""Shared pieces of the forge.Forge handlers: wire tables, request helpers and
the wrapper that applies injected faults and writes the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from nicoflow._proto.nico import common_pb2, forge_pb2
from nicoflow.domain.types import ComponentType
from nicoflow.simulator.firmware import JobState
from nicoflow.simulator.ledger import CallRecord, Ledger
from nicoflow.simulator.power import PowerAction
from nicoflow.simulator.world import Node, NodeKind, Outcome, ResultStatus, SimError, World

SERVICE = "forge.Forge"
REQUEST_ID_METADATA = "x-request-id"

# Calls that change state; each is recorded in the ledger.
WRITE_METHODS = frozenset(
    {
        "ComponentPowerControl",
        "UpdateComponentFirmware",
        "UpdatePowerOption",
        "AdminPowerControl",
        "SetFirmwareUpdateTimeWindow",
        "MachineSetAutoUpdate",
        "AllowIngestionAndPowerOn",
        "InsertHealthReportOverride",
        "RemoveHealthReportOverride",
        "InsertMachineHealthReport",
        "RemoveMachineHealthReport",
        "TriggerDpuReprovisioning",
        "InvokeInstancePower",
        "AddExpectedMachine",
        "AddExpectedSwitch",
        "AddExpectedPowerShelf",
    }
)

SPC = common_pb2
COMPONENT_ACTIONS = {
    SPC.SYSTEM_POWER_CONTROL_ON: PowerAction.ON,
    SPC.SYSTEM_POWER_CONTROL_GRACEFUL_SHUTDOWN: PowerAction.GRACEFUL_SHUTDOWN,
    SPC.SYSTEM_POWER_CONTROL_FORCE_OFF: PowerAction.FORCE_OFF,
    SPC.SYSTEM_POWER_CONTROL_GRACEFUL_RESTART: PowerAction.GRACEFUL_RESTART,
    SPC.SYSTEM_POWER_CONTROL_FORCE_RESTART: PowerAction.FORCE_RESTART,
    SPC.SYSTEM_POWER_CONTROL_AC_POWERCYCLE: PowerAction.POWER_CYCLE,
}
_ADMIN = forge_pb2.AdminPowerControlRequest
ADMIN_ACTIONS = {
    _ADMIN.On: PowerAction.ON,
    _ADMIN.GracefulShutdown: PowerAction.GRACEFUL_SHUTDOWN,
    _ADMIN.ForceOff: PowerAction.FORCE_OFF,
    _ADMIN.GracefulRestart: PowerAction.GRACEFUL_RESTART,
    _ADMIN.ForceRestart: PowerAction.FORCE_RESTART,
    _ADMIN.ACPowercycle: PowerAction.POWER_CYCLE,
}
# Actions Core's backends do not offer per component type.
UNSUPPORTED_ACTIONS = {
    NodeKind.SWITCH: frozenset({PowerAction.POWER_CYCLE}),
    NodeKind.SHELF: frozenset({PowerAction.POWER_CYCLE}),
}

COMPUTE_PARTS: dict[int, tuple[str, ...]] = {
    forge_pb2.COMPUTE_TRAY_COMPONENT_BMC: ("bmc",),
    forge_pb2.COMPUTE_TRAY_COMPONENT_BIOS: ("bios",),
    forge_pb2.COMPUTE_TRAY_COMPONENT_CEC: ("cec",),
    forge_pb2.COMPUTE_TRAY_COMPONENT_NIC: ("nic",),
    forge_pb2.COMPUTE_TRAY_COMPONENT_CPLD_MB: ("cpld_mb",),
    forge_pb2.COMPUTE_TRAY_COMPONENT_CPLD_PDB: ("cpld_pdb",),
    forge_pb2.COMPUTE_TRAY_COMPONENT_HGX_BMC: ("hgx_bmc",),
    forge_pb2.COMPUTE_TRAY_COMPONENT_COMBINED_BMC_UEFI: ("bmc", "bios"),
    forge_pb2.COMPUTE_TRAY_COMPONENT_GPU: ("gpu",),
    forge_pb2.COMPUTE_TRAY_COMPONENT_CX7: ("cx7",),
}
SWITCH_PARTS: dict[int, tuple[str, ...]] = {
    forge_pb2.NV_SWITCH_COMPONENT_BMC: ("bmc",),
    forge_pb2.NV_SWITCH_COMPONENT_CPLD: ("cpld",),
    forge_pb2.NV_SWITCH_COMPONENT_BIOS: ("bios",),
    forge_pb2.NV_SWITCH_COMPONENT_NVOS: ("nvos",),
}
SHELF_PARTS: dict[int, tuple[str, ...]] = {
    forge_pb2.POWER_SHELF_COMPONENT_PMC: ("pmc",),
    forge_pb2.POWER_SHELF_COMPONENT_PSU: ("psu",),
}
PART_ENUM_OF_COMPUTE: dict[str, forge_pb2.ComputeTrayComponent.ValueType] = {
    v[0]: forge_pb2.ComputeTrayComponent.ValueType(k)
    for k, v in COMPUTE_PARTS.items()
    if len(v) == 1
}

FW_STATE = {
    JobState.QUEUED: forge_pb2.FW_STATE_QUEUED,
    JobState.IN_PROGRESS: forge_pb2.FW_STATE_IN_PROGRESS,
    JobState.VERIFYING: forge_pb2.FW_STATE_VERIFYING,
    JobState.COMPLETED: forge_pb2.FW_STATE_COMPLETED,
    JobState.FAILED: forge_pb2.FW_STATE_FAILED,
}

RESULT_CODE = {
    ResultStatus.SUCCESS: forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS,
    ResultStatus.INVALID_ARGUMENT: forge_pb2.COMPONENT_MANAGER_STATUS_CODE_INVALID_ARGUMENT,
    ResultStatus.INTERNAL_ERROR: forge_pb2.COMPONENT_MANAGER_STATUS_CODE_INTERNAL_ERROR,
    ResultStatus.NOT_FOUND: forge_pb2.COMPONENT_MANAGER_STATUS_CODE_NOT_FOUND,
    ResultStatus.ALREADY_EXISTS: forge_pb2.COMPONENT_MANAGER_STATUS_CODE_ALREADY_EXISTS,
    ResultStatus.UNAVAILABLE: forge_pb2.COMPONENT_MANAGER_STATUS_CODE_UNAVAILABLE,
}
# A failed single-machine command surfaces as a gRPC status.
GRPC_OF_RESULT = {
    ResultStatus.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    ResultStatus.INTERNAL_ERROR: "INTERNAL",
    ResultStatus.NOT_FOUND: "NOT_FOUND",
    ResultStatus.ALREADY_EXISTS: "ALREADY_EXISTS",
    ResultStatus.UNAVAILABLE: "UNAVAILABLE",
}

TARGET_KINDS = {
    "machine_ids": (NodeKind.HOST, ComponentType.COMPUTE),
    "switch_ids": (NodeKind.SWITCH, ComponentType.NVSWITCH),
    "power_shelf_ids": (NodeKind.SHELF, ComponentType.POWERSHELF),
}
KIND_NAMES = {NodeKind.HOST: "machine", NodeKind.SWITCH: "switch", NodeKind.SHELF: "power shelf"}

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


def request_id(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_METADATA:
            return str(value)
    return None


def _is_repeated(field: Any) -> bool:
    # Newer protobuf runtimes drop `label` in favour of `is_repeated`.
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return bool(field.label == field.LABEL_REPEATED)


def ids_in(message: Message) -> list[str]:
    """Component IDs a request names, wherever they sit (ledger entries of
    calls refused before they ran)."""
    out: list[str] = []
    for field, value in message.ListFields():
        if field.message_type is not None:
            values = value if _is_repeated(field) else [value]
            for v in values:
                if v.DESCRIPTOR.full_name in (
                    "common.MachineId",
                    "common.SwitchId",
                    "common.PowerShelfId",
                ):
                    out.append(v.id)
                else:
                    out.extend(ids_in(v))
        elif field.name in ("machine_id", "ip_address", "bmc_mac_address"):
            out.append(str(value))
    return out


def target_ids(request: Any) -> tuple[list[str], NodeKind, ComponentType]:
    """(ids, node kind, component type) of a machine/switch/shelf oneof."""
    which = request.WhichOneof("target")
    if which not in TARGET_KINDS:
        raise SimError("INVALID_ARGUMENT", "the request names no target components")
    kind, ctype = TARGET_KINDS[which]
    holder = getattr(request, which)
    items = holder.machine_ids if which == "machine_ids" else holder.ids
    return [i.id for i in items], kind, ctype


def result_of(component_id: str, outcome: Outcome) -> forge_pb2.ComponentResult:
    return forge_pb2.ComponentResult(
        component_id=component_id, status=RESULT_CODE[outcome.status], error=outcome.error
    )


def not_found(kind: NodeKind, component_id: str) -> Outcome:
    return Outcome(ResultStatus.NOT_FOUND, f"{KIND_NAMES[kind]} {component_id} not found")


class RpcBase:
    """State and the call wrapper every group of handlers shares."""

    def __init__(self, world: World, ledger: Ledger) -> None:
        self.world = world
        self.ledger = ledger

    # --- The wrapper -----------------------------------------------------------------

    async def _run(
        self,
        method: str,
        request: Req,
        context: Any,
        handler: Callable[[Req, CallRecord], Resp],
    ) -> Resp:
        faults = self.world.faults
        delay = faults.latency_for(method)
        if delay > 0:
            await asyncio.sleep(delay)
        record = CallRecord(method, request_id(context))
        writes = method in WRITE_METHODS
        rule = faults.error_for(method)
        if rule is not None and rule.when == "before":
            if writes:
                self._touch_named(record, request, rule.code)
                self._commit(record, rule.code, applied=False)
            await context.abort(grpc.StatusCode[rule.code], rule.message)
        failure: SimError | None = None
        response: Resp | None = None
        try:
            response = handler(request, record)
        except SimError as err:
            failure = err
        if failure is not None:
            if writes:
                if not record.touches:
                    self._touch_named(record, request, failure.code)
                self._commit(record, failure.code, applied=False)
            await context.abort(grpc.StatusCode[failure.code], failure.message)
        if rule is not None:  # "after": the change happened, the reply is lost
            if writes:
                self._commit(record, rule.code)
            await context.abort(grpc.StatusCode[rule.code], rule.message)
        if writes:
            self._commit(record, "OK")
        assert response is not None
        return response

    @staticmethod
    def _touch_named(record: CallRecord, request: Message, code: str) -> None:
        """Entries for a call refused before it reached any component."""
        for cid in ids_in(request):
            record.touch(cid, "", result=code, applied=False)

    def _commit(self, record: CallRecord, code: str, *, applied: bool = True) -> None:
        self.ledger.commit(record, code=code, time=self.world.now(), applied=applied)

    def _machine(self, machine_id: str, *kinds: NodeKind) -> Node:
        node = self.world.find(machine_id, *(kinds or (NodeKind.HOST,)))
        if node is None:
            raise SimError("NOT_FOUND", f"machine {machine_id or '(empty)'} not found")
        return node
