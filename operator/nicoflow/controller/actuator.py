"""Carries out the engine's Calls through the component managers and turns
their answers into the engine's Outcomes. Errors become data: a failed call
is an Outcome with an error, never an exception that would lose the others."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from nicoflow.controller.expectations import ExpectationLoader
from nicoflow.core.client import CoreError
from nicoflow.core.managers.base import (
    BringUpTaskInfo,
    ExpectationInfo,
    FirmwareControlTaskInfo,
    ManagerError,
    PowerControlTaskInfo,
    Target,
)
from nicoflow.core.managers.registry import ManagerRegistry
from nicoflow.core.managers.results import (
    BringUpState,
    ComponentResults,
    FirmwareState,
    PowerStatus,
)
from nicoflow.domain.types import Leftover
from nicoflow.engine.plan import Call, CallKind, Observed, Options, Outcome, Result

log = logging.getLogger(__name__)

_POWER = {
    PowerStatus.ON: Observed.ON,
    PowerStatus.OFF: Observed.OFF,
    PowerStatus.UNKNOWN: Observed.UNKNOWN,
    PowerStatus.REBOOTING: Observed.POWERING_ON,
    PowerStatus.POWERING_ON: Observed.POWERING_ON,
    PowerStatus.POWERING_OFF: Observed.POWERING_OFF,
}
_FIRMWARE = {
    FirmwareState.IDLE: Observed.IDLE,
    FirmwareState.QUEUED: Observed.QUEUED,
    FirmwareState.IN_PROGRESS: Observed.IN_PROGRESS,
    FirmwareState.VERIFYING: Observed.VERIFYING,
    FirmwareState.COMPLETED: Observed.COMPLETED,
    FirmwareState.FAILED: Observed.FAILED,
    FirmwareState.UNKNOWN: Observed.UNKNOWN,
}
_BRING_UP = {
    BringUpState.NOT_DISCOVERED: Observed.NOT_DISCOVERED,
    BringUpState.WAITING_FOR_INGESTION: Observed.WAITING_FOR_INGESTION,
    BringUpState.INGESTION_MACHINE_NOT_CREATED: Observed.MACHINE_NOT_CREATED,
    BringUpState.INGESTION_MACHINE_CREATED: Observed.MACHINE_CREATED,
    BringUpState.UNKNOWN: Observed.UNKNOWN,
}


def _controls(results: ComponentResults) -> dict[str, Result]:
    return {
        cid: Result(Observed.COMPLETED if r.done else Observed.OK, cleanup=r.cleanup)
        if r.ok
        else Result(
            Observed.FAILED,
            r.error,
            transient=r.transient,
            uncertain=r.uncertain,
            cleanup=r.cleanup,
        )
        for cid, r in results.items()
    }


class Actuator:
    def __init__(
        self, managers: ManagerRegistry, expectations: ExpectationLoader | None = None
    ) -> None:
        self.managers = managers
        self.expectations = expectations

    async def run(self, call: Call, options: Options) -> Outcome:
        try:
            results = await self._dispatch(call, options)
        except (CoreError, ManagerError) as exc:
            log.warning(
                "%s on %s %s failed: %s", call.kind, len(call.ids), call.addressed_type, exc
            )
            core = exc if isinstance(exc, CoreError) else None
            return Outcome(
                call,
                error=str(exc)[:512],
                transient=core is not None and core.transient,
                # a manager refusing (bad input, no such capability), or a read
                # failing before the command, sent nothing
                uncertain=core is not None and core.uncertain and call.kind.mutating,
            )
        return Outcome(call, results)

    async def _dispatch(self, call: Call, options: Options) -> dict[str, Result]:
        manager = self.managers.get_manager(call.addressed_type)
        target = Target(call.addressed_type, call.ids)
        key = call.key or ""
        match call.kind:
            case CallKind.POWER_CONTROL:
                assert call.operation is not None
                info = PowerControlTaskInfo(
                    operation=call.operation,
                    idempotency_key=key,
                    override_readiness_check=options.override_readiness,
                )
                return _controls(await manager.power_control(target, info))
            case CallKind.POWER_STATUS:
                left: list[str] = []
                if call.release:
                    # after a restart: undo what an interrupted power call left
                    # behind (the legacy manager's maintenance overrides), whether
                    # or not the read that follows succeeds
                    left = await manager.release(target, Leftover.POWER_OVERRIDE)
                readings = await manager.get_power_status(target)
                return {
                    cid: Result(
                        _POWER.get(r.state, Observed.UNKNOWN),
                        r.error,
                        cleanup=Leftover.POWER_OVERRIDE if cid in left else None,
                    )
                    for cid, r in readings.items()
                }
            case CallKind.RELEASE:
                assert call.leftover is not None
                left = await manager.release(target, call.leftover)
                return {
                    cid: Result(Observed.FAILED, f"{call.leftover.value} still set")
                    if cid in left
                    else Result(Observed.OK)
                    for cid in call.ids
                }
            case CallKind.FIRMWARE_CONTROL:
                fw = FirmwareControlTaskInfo(
                    idempotency_key=key,
                    sub_targets=call.sub_targets,
                    target_version=call.target_version,
                    start=_ts(options.window_start),
                    end=_ts(options.window_end),
                    override_readiness_check=options.override_readiness,
                )
                return _controls(await manager.firmware_control(target, fw))
            case CallKind.FIRMWARE_STATUS:
                readings_fw = await manager.get_firmware_status(
                    target, call.sub_targets, call.target_version
                )
                return {
                    cid: Result(
                        _FIRMWARE[r.state], r.error, changed_at=r.changed_at, cleanup=r.cleanup
                    )
                    for cid, r in readings_fw.items()
                }
            case CallKind.BRING_UP_CONTROL:
                return _controls(await manager.bring_up_control(target, BringUpTaskInfo(key)))
            case CallKind.BRING_UP_STATUS:
                readings_bu = await manager.get_bring_up_status(target)
                return {cid: Result(_BRING_UP[r.state], r.error) for cid, r in readings_bu.items()}
            case CallKind.INJECT_EXPECTATION:
                return await self._inject(call, key)
            case CallKind.FIRMWARE_CONSISTENCY:
                report = await manager.verify_firmware_consistency(target)
                state = Observed.OK if report.consistent else Observed.FAILED
                problem = "; ".join(report.problems) or "firmware versions differ"
                return {
                    cid: Result(state, "" if report.consistent else problem) for cid in call.ids
                }
        raise ManagerError(f"unsupported call {call.kind}")  # pragma: no cover

    async def _inject(self, call: Call, key: str) -> dict[str, Result]:
        if self.expectations is None:
            raise ManagerError("this operator has no inventory to build expectations from")
        payloads, problems = await self.expectations(call.addressed_type, call.ids)
        out = {cid: Result(Observed.FAILED, why) for cid, why in problems.items()}
        if payloads:
            manager = self.managers.get_manager(call.addressed_type)
            info = ExpectationInfo(idempotency_key=key, entries=tuple(payloads.values()))
            by_mac = _controls(
                await manager.inject_expectation(Target(call.addressed_type, call.ids), info)
            )
            # Core answers per BMC MAC; the Task names components by Core id or MAC
            for cid, entry in payloads.items():
                mac = str(entry["bmc_mac_address"])
                out[cid] = by_mac.get(mac) or Result(Observed.FAILED, "no answer from NICo Core")
        return out


def _ts(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)
