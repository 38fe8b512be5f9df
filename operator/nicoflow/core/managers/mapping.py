"""Pure translations between Flow's vocabulary and NICo Core's messages:
power actions, power/firmware/ingestion states, per-component results."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC

from nicoflow._proto.nico import common_pb2, forge_pb2, site_explorer_pb2
from nicoflow.core.managers.base import ManagerError
from nicoflow.core.managers.results import (
    BringUpState,
    ConsistencyReport,
    FirmwareReading,
    FirmwareState,
    Outcome,
    PowerReading,
    PowerStatus,
)
from nicoflow.domain.types import ComponentType, OperationCode

Op = OperationCode
SPC = common_pb2

# --- Power actions -------------------------------------------------------------------

_NICO_COMPUTE_ACTIONS: dict[OperationCode, int] = {
    Op.POWER_ON: SPC.SYSTEM_POWER_CONTROL_ON,
    Op.FORCE_POWER_ON: SPC.SYSTEM_POWER_CONTROL_ON,
    Op.POWER_OFF: SPC.SYSTEM_POWER_CONTROL_GRACEFUL_SHUTDOWN,
    Op.FORCE_POWER_OFF: SPC.SYSTEM_POWER_CONTROL_FORCE_OFF,
    Op.RESTART: SPC.SYSTEM_POWER_CONTROL_GRACEFUL_RESTART,
    Op.WARM_RESET: SPC.SYSTEM_POWER_CONTROL_GRACEFUL_RESTART,
    Op.FORCE_RESTART: SPC.SYSTEM_POWER_CONTROL_FORCE_RESTART,
    Op.COLD_RESET: SPC.SYSTEM_POWER_CONTROL_AC_POWERCYCLE,
}

NICO_POWER_ACTIONS: dict[ComponentType, dict[OperationCode, int]] = {
    ComponentType.COMPUTE: _NICO_COMPUTE_ACTIONS,
    # Switch trays cannot be AC power-cycled through Core.
    ComponentType.NVSWITCH: {k: v for k, v in _NICO_COMPUTE_ACTIONS.items() if k != Op.COLD_RESET},
    # Power shelves have no warm or cold reset.
    ComponentType.POWERSHELF: {
        k: v for k, v in _NICO_COMPUTE_ACTIONS.items() if k not in (Op.WARM_RESET, Op.COLD_RESET)
    },
}


def nico_power_action(component_type: ComponentType, operation: OperationCode) -> int:
    """`common.SystemPowerControl` value for ComponentPowerControl."""
    table = NICO_POWER_ACTIONS.get(component_type, {})
    if operation not in table:
        allowed = ", ".join(o.value for o in table) or "none"
        raise ManagerError(
            f"{operation.value} is not supported for {component_type.value} components "
            f"(supported: {allowed})"
        )
    return table[operation]


_ADMIN = forge_pb2.AdminPowerControlRequest
LEGACY_ADMIN_ACTIONS: dict[OperationCode, int] = {
    Op.POWER_ON: _ADMIN.On,
    Op.FORCE_POWER_ON: _ADMIN.On,
    Op.POWER_OFF: _ADMIN.GracefulShutdown,
    Op.FORCE_POWER_OFF: _ADMIN.ForceOff,
    Op.RESTART: _ADMIN.GracefulRestart,
    Op.WARM_RESET: _ADMIN.GracefulRestart,
    Op.FORCE_RESTART: _ADMIN.ForceRestart,
    Op.COLD_RESET: _ADMIN.ACPowercycle,
}


def legacy_admin_action(operation: OperationCode) -> int:
    """`AdminPowerControlRequest.SystemPowerControl` value."""
    if operation not in LEGACY_ADMIN_ACTIONS:
        raise ManagerError(f"{operation.value} is not a power operation")
    return LEGACY_ADMIN_ACTIONS[operation]


_OFF_OPS = frozenset({Op.POWER_OFF, Op.FORCE_POWER_OFF})


def legacy_desired_state(operation: OperationCode) -> int:
    """Power-manager desired state: off for the off operations, on otherwise
    (a restart ends powered on, so the power manager must not fight it)."""
    if operation not in LEGACY_ADMIN_ACTIONS:
        raise ManagerError(f"{operation.value} is not a power operation")
    return forge_pb2.Off if operation in _OFF_OPS else forge_pb2.On


# --- Power states --------------------------------------------------------------------


def legacy_power_status(state: int, desired: int | None = None) -> PowerStatus:
    """Power-manager actual state; a disabled power manager reads as off.

    Core's power manager drives a host towards its desired state, so a desired
    state that differs from the actual one is a transition under way."""
    if state == forge_pb2.On:
        return PowerStatus.POWERING_OFF if desired == forge_pb2.Off else PowerStatus.ON
    if state in (forge_pb2.Off, forge_pb2.PowerManagerDisabled):
        return PowerStatus.POWERING_ON if desired == forge_pb2.On else PowerStatus.OFF
    return PowerStatus.UNKNOWN


def system_power_status(state: int) -> PowerStatus:
    """Redfish system power state, transitions included."""
    if state == site_explorer_pb2.On:
        return PowerStatus.ON
    if state == site_explorer_pb2.Off:
        return PowerStatus.OFF
    if state == site_explorer_pb2.PoweringOn:
        return PowerStatus.POWERING_ON
    if state == site_explorer_pb2.PoweringOff:
        return PowerStatus.POWERING_OFF
    return PowerStatus.UNKNOWN


def inventory_power_reading(entry: forge_pb2.ComponentInventoryEntry) -> PowerReading:
    """Power reading from one GetComponentInventory entry (first system only)."""
    if entry.result.status != forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS:
        return PowerReading(PowerStatus.UNKNOWN, result_error(entry.result))
    if not entry.HasField("report") or not entry.report.systems:
        return PowerReading(PowerStatus.UNKNOWN, "Core has no explored system for this component")
    return PowerReading(system_power_status(entry.report.systems[0].power_state))


# --- Command results -----------------------------------------------------------------

_STATUS_NAMES = {
    forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS: "success",
    forge_pb2.COMPONENT_MANAGER_STATUS_CODE_INVALID_ARGUMENT: "invalid argument",
    forge_pb2.COMPONENT_MANAGER_STATUS_CODE_INTERNAL_ERROR: "internal error",
    forge_pb2.COMPONENT_MANAGER_STATUS_CODE_NOT_FOUND: "not found",
    forge_pb2.COMPONENT_MANAGER_STATUS_CODE_ALREADY_EXISTS: "already exists",
    forge_pb2.COMPONENT_MANAGER_STATUS_CODE_UNAVAILABLE: "unavailable",
}


def result_error(result: forge_pb2.ComponentResult) -> str:
    name = _STATUS_NAMES.get(result.status, f"status {result.status}")
    return f"{name}: {result.error}" if result.error else name


def component_outcomes(results: Iterable[forge_pb2.ComponentResult]) -> dict[str, Outcome]:
    """Per-component outcome; any status other than SUCCESS is a failure."""
    out: dict[str, Outcome] = {}
    for r in results:
        if r.status == forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS:
            out.setdefault(r.component_id, Outcome.success())
        else:
            out[r.component_id] = Outcome.failure(result_error(r))
    return out


# --- Firmware states -----------------------------------------------------------------

_FW_STATES: dict[int, FirmwareState] = {
    forge_pb2.FW_STATE_UNKNOWN: FirmwareState.UNKNOWN,
    forge_pb2.FW_STATE_QUEUED: FirmwareState.QUEUED,
    forge_pb2.FW_STATE_IN_PROGRESS: FirmwareState.IN_PROGRESS,
    forge_pb2.FW_STATE_VERIFYING: FirmwareState.VERIFYING,
    forge_pb2.FW_STATE_COMPLETED: FirmwareState.COMPLETED,
    forge_pb2.FW_STATE_FAILED: FirmwareState.FAILED,
    forge_pb2.FW_STATE_CANCELLED: FirmwareState.FAILED,
}

# Least advanced first: a component is as far along as its slowest part.
_PROGRESS_ORDER = (
    FirmwareState.UNKNOWN,
    FirmwareState.IDLE,
    FirmwareState.QUEUED,
    FirmwareState.IN_PROGRESS,
    FirmwareState.VERIFYING,
    FirmwareState.COMPLETED,
)


def firmware_state(state: int) -> FirmwareState:
    return _FW_STATES.get(state, FirmwareState.UNKNOWN)


def status_reading(status: forge_pb2.FirmwareUpdateStatus) -> FirmwareReading:
    """One status entry (one sub-part of a component)."""
    code = status.result.status
    if code == forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS:
        state = firmware_state(status.state)
        error = status.result.error if state == FirmwareState.FAILED else ""
        if status.state == forge_pb2.FW_STATE_CANCELLED and not error:
            error = "firmware update was cancelled"
        changed = None
        if status.HasField("updated_at"):
            changed = status.updated_at.ToDatetime(tzinfo=UTC)
        return FirmwareReading(state, error, changed)
    # Not found / unavailable say nothing about the update itself.
    if code in (
        forge_pb2.COMPONENT_MANAGER_STATUS_CODE_NOT_FOUND,
        forge_pb2.COMPONENT_MANAGER_STATUS_CODE_UNAVAILABLE,
    ):
        return FirmwareReading(FirmwareState.UNKNOWN, result_error(status.result))
    return FirmwareReading(FirmwareState.FAILED, result_error(status.result))


def combine_readings(parts: Sequence[FirmwareReading]) -> FirmwareReading:
    """One reading per component from the readings of its sub-parts: any
    failure fails it (errors joined); otherwise it is as far along as its
    least advanced part."""
    if not parts:
        return FirmwareReading(FirmwareState.UNKNOWN, "no firmware status reported")
    stamps = [p.changed_at for p in parts if p.changed_at is not None]
    changed = max(stamps) if stamps else None
    # a part that is over may leave something to take away (the DPUs' report)
    cleanup = next((p.cleanup for p in parts if p.cleanup is not None), None)
    failed = [p for p in parts if p.state == FirmwareState.FAILED]
    if failed:
        errors = "; ".join(dict.fromkeys(p.error for p in failed if p.error))
        return FirmwareReading(
            FirmwareState.FAILED, errors or "firmware update failed", changed, cleanup
        )
    slowest = min(parts, key=lambda p: _PROGRESS_ORDER.index(p.state))
    return FirmwareReading(slowest.state, slowest.error, changed, cleanup)


def aggregate_firmware(
    statuses: Iterable[forge_pb2.FirmwareUpdateStatus],
) -> dict[str, FirmwareReading]:
    grouped: dict[str, list[FirmwareReading]] = {}
    for s in statuses:
        grouped.setdefault(s.result.component_id, []).append(status_reading(s))
    return {cid: combine_readings(parts) for cid, parts in grouped.items()}


def versions_match(actual: Mapping[str, str], desired: Mapping[str, str]) -> bool:
    """Every desired component version is present in `actual` (subset match)."""
    return bool(desired) and all(actual.get(k) == v for k, v in desired.items())


def matches_any(actual: Mapping[str, str], desired_entries: Iterable[Mapping[str, str]]) -> bool:
    return any(versions_match(actual, d) for d in desired_entries)


HOST_REPROVISION = "HostReprovision"
FAILED_FIRMWARE_UPGRADE = "FailedFirmwareUpgrade"


def legacy_firmware_reading(
    *,
    found: bool,
    state: str,
    update_complete: bool,
    armed: bool = True,
    actual_versions: Mapping[str, str],
    desired_entries: Sequence[Mapping[str, str]],
) -> FirmwareReading:
    """Host firmware progress as the machine-centric API exposes it."""
    if not found:
        return FirmwareReading(FirmwareState.UNKNOWN, "machine not found in Core")
    reprovisioning = HOST_REPROVISION in state
    if matches_any(actual_versions, desired_entries):
        # Versions already match but Core is still finishing the reprovision.
        return FirmwareReading(
            FirmwareState.VERIFYING if reprovisioning else FirmwareState.COMPLETED
        )
    if update_complete:
        return FirmwareReading(FirmwareState.COMPLETED)
    if reprovisioning and FAILED_FIRMWARE_UPGRADE in state:
        return FirmwareReading(FirmwareState.FAILED, f"host firmware upgrade failed: {state}")
    if reprovisioning:
        return FirmwareReading(FirmwareState.VERIFYING)
    if not armed:
        # auto-update off: Core will not update this host until asked
        return FirmwareReading(FirmwareState.IDLE)
    return FirmwareReading(FirmwareState.QUEUED)


def report_versions(report: site_explorer_pb2.EndpointExplorationReport) -> dict[str, str]:
    """Firmware versions from an exploration report: the parsed map when Core
    has one, otherwise the Redfish firmware inventory (id -> version)."""
    if report.firmware_versions:
        return dict(report.firmware_versions)
    out: dict[str, str] = {}
    for service in report.service:
        for inv in service.inventories:
            if inv.HasField("version"):
                out[inv.id] = inv.version
    return out


def consistency_report(versions: Mapping[str, Mapping[str, str]]) -> ConsistencyReport:
    """Every component must report versions, and all must report the same ones."""
    problems = [f"{cid}: no firmware version data" for cid, v in versions.items() if not v]
    present = {cid: dict(v) for cid, v in versions.items() if v}
    distinct = {tuple(sorted(v.items())) for v in present.values()}
    if len(distinct) > 1:
        # Compare against the most common version set so the odd one out is
        # the one named (ties: the set of the lowest ID).
        key_of = {cid: tuple(sorted(v.items())) for cid, v in present.items()}
        votes = Counter(key_of.values())
        reference_id = min(present, key=lambda cid: (-votes[key_of[cid]], cid))
        reference = present[reference_id]
        for cid in sorted(present):
            diff = sorted(
                k
                for k in set(reference) | set(present[cid])
                if reference.get(k) != present[cid].get(k)
            )
            if diff:
                problems.append(f"{cid}: differs from {reference_id} in {', '.join(diff)}")
    return ConsistencyReport(
        consistent=not problems,
        versions={k: dict(v) for k, v in versions.items()},
        problems=tuple(problems),
    )


# --- Ingestion -----------------------------------------------------------------------

_INGESTION: dict[int, BringUpState] = {
    forge_pb2.NotDiscovered: BringUpState.NOT_DISCOVERED,
    forge_pb2.WaitingForIngestion: BringUpState.WAITING_FOR_INGESTION,
    forge_pb2.IngestionMachineNotCreated: BringUpState.INGESTION_MACHINE_NOT_CREATED,
    forge_pb2.IngestionMachineCreated: BringUpState.INGESTION_MACHINE_CREATED,
}


def ingestion_state(state: int) -> BringUpState:
    return _INGESTION.get(state, BringUpState.UNKNOWN)
