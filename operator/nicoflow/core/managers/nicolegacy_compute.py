"""compute/nicolegacy: compute trays through Core's machine-centric API
(power manager + direct BMC power actions, host firmware windows)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from nicoflow._proto.nico import common_pb2, forge_pb2, health_pb2, site_explorer_pb2
from nicoflow.core.client import CoreClient, CoreError
from nicoflow.core.managers.base import (
    FirmwareControlTaskInfo,
    ManagerError,
    PowerControlTaskInfo,
    Target,
)
from nicoflow.core.managers.catalog import COMPUTE_NICOLEGACY
from nicoflow.core.managers.compute_shared import ComputeManagerBase
from nicoflow.core.managers.dpu_reprovision import DpuReprovisioner
from nicoflow.core.managers.ids import machine_ids, sub_key
from nicoflow.core.managers.mapping import (
    legacy_admin_action,
    legacy_desired_state,
    legacy_firmware_reading,
    legacy_power_status,
    matches_any,
)
from nicoflow.core.managers.outcomes import merge
from nicoflow.core.managers.results import (
    ComponentResults,
    FirmwareStatusMap,
    Outcome,
    PowerReading,
    PowerStatusMap,
    complete_firmware,
    complete_power,
)
from nicoflow.core.managers.subtargets import parse_subtargets
from nicoflow.domain.types import ComponentType, Leftover

log = logging.getLogger(__name__)

POWER_OVERRIDE_SOURCE = "flow-power-control"
POWER_OVERRIDE_ALERT = "Maintenance"
POWER_OVERRIDE_CLASSIFICATION = "SuppressExternalAlerting"
ALREADY_SET = "already set as"
DEFAULT_WINDOW = timedelta(hours=24)


def power_override_report() -> health_pb2.HealthReport:
    return health_pb2.HealthReport(
        source=POWER_OVERRIDE_SOURCE,
        alerts=[
            health_pb2.HealthProbeAlert(
                id=POWER_OVERRIDE_ALERT,
                message="power operation in progress (NICo Flow)",
                classifications=[POWER_OVERRIDE_CLASSIFICATION],
            )
        ],
    )


def firmware_window(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The window Core may update host firmware in: the one given (both ends,
    start before end) or the next 24 hours."""
    if start is None and end is None:
        return now, now + DEFAULT_WINDOW
    if start is None or end is None:
        raise ManagerError("a firmware window needs both start and end")
    if start >= end:
        raise ManagerError(f"firmware window start {start} is not before end {end}")
    return start, end


def parse_target_version(text: str) -> dict[str, str]:
    """nicolegacy's target_version is a JSON object of component versions."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManagerError(f"target_version must be a JSON object of versions: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ManagerError('target_version must be a JSON object like {"bmc": "1.2.3"}')
    return data


def _ts(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when.astimezone(UTC))
    return ts


class NicoLegacyComputeManager(ComputeManagerBase):
    descriptor = COMPUTE_NICOLEGACY

    def __init__(
        self,
        core: CoreClient,
        *,
        power_delay: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        dpu: DpuReprovisioner | None = None,
    ) -> None:
        super().__init__(core, dpu or DpuReprovisioner(core, sleep=sleep))
        self._power_delay = power_delay
        self._sleep = sleep
        self._now = now

    # --- power -----------------------------------------------------------------------

    async def power_control(self, target: Target, info: PowerControlTaskInfo) -> ComponentResults:
        """Machine by machine, `power_delay` apart to spread inrush current."""
        self.check_target(target)
        admin_action = legacy_admin_action(info.operation)
        desired = legacy_desired_state(info.operation)
        results: ComponentResults = {}
        overridden: list[str] = []
        try:
            for i, cid in enumerate(target.component_ids):
                if i:
                    await self._sleep(self._power_delay)
                key = sub_key(info.idempotency_key, cid)
                if await self._insert_override(cid, key):
                    overridden.append(cid)
                results[cid] = await self._power_one(cid, key, desired, admin_action)
        finally:
            # Shielded so a cancelled task still clears the maintenance overrides.
            left = await asyncio.shield(self._remove_overrides(overridden, info.idempotency_key))
        # an override left on suppresses the tray's alerts: the caller must
        # come back and remove it (release_power_control)
        return {
            cid: replace(outcome, cleanup=Leftover.POWER_OVERRIDE) if cid in left else outcome
            for cid, outcome in results.items()
        }

    async def _insert_override(self, cid: str, key: str) -> bool:
        """Insert Flow's override; whether it has to be removed afterwards."""
        try:
            await self._core.insert_health_report_override(
                forge_pb2.InsertMachineHealthReportRequest(
                    machine_id=common_pb2.MachineId(id=cid),
                    health_report_entry=forge_pb2.HealthReportEntry(
                        report=power_override_report(), mode=forge_pb2.Merge
                    ),
                ),
                idempotency_key=sub_key(key, "override-insert"),
            )
        except CoreError as exc:
            # Only suppresses alert noise; the power action goes ahead without it.
            log.warning("could not insert maintenance override on %s: %s", cid, exc)
        # removed afterwards in any case: a lost reply may hide an override
        # that did go in, and removing an absent one is harmless
        return True

    async def _power_one(self, cid: str, key: str, desired: int, action: int) -> Outcome:
        try:
            await self._core.update_power_option(
                forge_pb2.PowerOptionUpdateRequest(
                    machine_id=common_pb2.MachineId(id=cid),
                    power_state=desired,  # type: ignore[arg-type]
                ),
                idempotency_key=sub_key(key, "power-option"),
            )
        except CoreError as exc:
            if not (exc.code == grpc.StatusCode.INVALID_ARGUMENT and ALREADY_SET in exc.details):
                return Outcome.from_error(exc, "setting desired power state failed: ")
        try:
            await self._core.admin_power_control(
                forge_pb2.AdminPowerControlRequest(machine_id=cid, action=action),  # type: ignore[arg-type]
                idempotency_key=sub_key(key, "admin-power"),
            )
        except CoreError as exc:
            return Outcome.from_error(exc)
        return Outcome.success()

    async def release(self, target: Target, leftover: Leftover) -> list[str]:
        """Also the maintenance overrides of power commands; removing an
        absent override is harmless."""
        if leftover is not Leftover.POWER_OVERRIDE:
            return await super().release(target, leftover)
        self.check_target(target)
        return await self._remove_overrides(target.component_ids, f"release-{uuid.uuid4().hex}")

    async def _remove_overrides(self, ids: Sequence[str], key: str) -> list[str]:
        """Remove Flow's override from each machine; those it could not."""
        left: list[str] = []
        for cid in ids:
            try:
                await self._core.remove_health_report_override(
                    forge_pb2.RemoveMachineHealthReportRequest(
                        machine_id=common_pb2.MachineId(id=cid), source=POWER_OVERRIDE_SOURCE
                    ),
                    idempotency_key=sub_key(key, cid, "override-remove"),
                )
            except CoreError as exc:
                if exc.code == grpc.StatusCode.NOT_FOUND:
                    continue  # not there (any more): nothing to remove
                log.warning("could not remove maintenance override from %s: %s", cid, exc)
                left.append(cid)
        return left

    async def get_power_status(self, target: Target) -> PowerStatusMap:
        self.check_target(target)
        resp = await self._core.get_power_options(
            forge_pb2.PowerOptionRequest(machine_id=machine_ids(target.component_ids))
        )
        got = {
            o.host_id.id: PowerReading(legacy_power_status(o.actual_state, o.desired_state))
            for o in resp.response
        }
        return complete_power(target.component_ids, got)

    # --- firmware --------------------------------------------------------------------

    async def _desired_entries(self) -> list[dict[str, str]]:
        resp = await self._core.get_desired_firmware_versions()
        return [dict(e.component_versions) for e in resp.entries if e.component_versions]

    async def _machines(self, ids: Sequence[str]) -> dict[str, forge_pb2.Machine]:
        resp = await self._core.find_machines_by_ids(
            forge_pb2.MachinesByIdsRequest(machine_ids=machine_ids(ids))
        )
        return {m.id.id: m for m in resp.machines}

    async def _actual_versions(
        self, machines: Mapping[str, forge_pb2.Machine]
    ) -> dict[str, dict[str, str]]:
        """Firmware versions per machine from the exploration of its BMC."""
        ip_of = {cid: m.bmc_info.ip for cid, m in machines.items() if m.bmc_info.ip}
        if not ip_of:
            return {}
        resp = await self._core.find_explored_endpoints_by_ids(
            site_explorer_pb2.ExploredEndpointsByIdsRequest(
                endpoint_ids=sorted(set(ip_of.values()))
            )
        )
        by_ip = {e.address: dict(e.report.firmware_versions) for e in resp.endpoints}
        return {cid: by_ip.get(ip, {}) for cid, ip in ip_of.items()}

    async def firmware_control(
        self, target: Target, info: FirmwareControlTaskInfo
    ) -> ComponentResults:
        self.check_target(target)
        sub = parse_subtargets(ComponentType.COMPUTE, info.sub_targets)
        parts: list[ComponentResults] = []
        ids = list(target.component_ids)
        if sub.dpu:
            # DPUs first: their start reads Core's state before each step, so
            # sending it again repeats nothing; the host's window is armed
            # only once they started, so a retry of the DPU part never arms
            # (and so reprovisions) a host a second time
            dpus = await self._dpu.start(ids, info.idempotency_key)
            parts.append(dpus)
            ids = [cid for cid in ids if dpus[cid].ok]
        if sub.tray_update and ids:
            if sub.components:
                log.warning(
                    "compute/nicolegacy applies the whole host firmware bundle; "
                    "sub-targets %s are not honoured",
                    ", ".join(s for s in info.sub_targets if s.strip().lower() != "dpu"),
                )
            try:
                parts.append(await self._tray_firmware(ids, info))
            except (CoreError, ManagerError) as exc:
                if not sub.dpu:
                    raise
                # per host, so the DPU part's outcome (and the report it left) is kept
                failed = (
                    Outcome.from_error(exc, "host firmware: ")
                    if isinstance(exc, CoreError)
                    else Outcome.failure(f"host firmware: {exc}")
                )
                parts.append(dict.fromkeys(ids, failed))
        return merge(*parts)

    async def _tray_firmware(
        self, ids: Sequence[str], info: FirmwareControlTaskInfo
    ) -> ComponentResults:
        start, end = firmware_window(info.start, info.end, self._now())
        desired = await self._desired_entries()
        wanted = desired
        if info.target_version:
            requested = parse_target_version(info.target_version)
            if requested not in desired:
                raise ManagerError(
                    "target_version does not match any firmware version set NICo Core "
                    "considers desired"
                )
            wanted = [requested]
        machines = await self._machines(ids)
        actual = await self._actual_versions(machines)
        results: ComponentResults = {}
        pending: list[str] = []
        for cid in ids:
            if cid not in machines:
                results[cid] = Outcome.failure("machine not found in NICo Core")
            elif matches_any(actual.get(cid, {}), wanted):
                results[cid] = Outcome.already()
            else:
                pending.append(cid)
        if not pending:
            return results
        for cid in pending:
            if machines[cid].HasField("firmware_autoupdate") and machines[cid].firmware_autoupdate:
                continue
            try:
                await self._core.machine_set_auto_update(
                    forge_pb2.MachineSetAutoUpdateRequest(
                        machine_id=common_pb2.MachineId(id=cid),
                        action=forge_pb2.MachineSetAutoUpdateRequest.Enable,
                    ),
                    idempotency_key=sub_key(info.idempotency_key, cid, "autoupdate"),
                )
            except CoreError as exc:
                results[cid] = Outcome.from_error(exc, "enabling firmware auto-update failed: ")
        window_ids = [c for c in pending if c not in results]
        if window_ids:
            try:
                await self._core.set_firmware_update_time_window(
                    forge_pb2.SetFirmwareUpdateTimeWindowRequest(
                        machine_ids=machine_ids(window_ids),
                        start_timestamp=_ts(start),
                        end_timestamp=_ts(end),
                    ),
                    idempotency_key=sub_key(info.idempotency_key, "window"),
                )
                results.update(dict.fromkeys(window_ids, Outcome.success()))
            except CoreError as exc:
                results.update(
                    dict.fromkeys(
                        window_ids, Outcome.from_error(exc, "setting firmware window failed: ")
                    )
                )
        return {cid: results[cid] for cid in ids}

    async def tray_firmware_status(
        self, target: Target, sub_targets: Sequence[str] = (), target_version: str = ""
    ) -> FirmwareStatusMap:
        desired = await self._desired_entries()
        machines = await self._machines(target.component_ids)
        actual = await self._actual_versions(machines)
        got = {
            cid: legacy_firmware_reading(
                found=cid in machines,
                state=machines[cid].state if cid in machines else "",
                update_complete=machines[cid].update_complete if cid in machines else False,
                armed=cid in machines
                and machines[cid].HasField("firmware_autoupdate")
                and machines[cid].firmware_autoupdate,
                actual_versions=actual.get(cid, {}),
                desired_entries=desired,
            )
            for cid in target.component_ids
        }
        return complete_firmware(target.component_ids, got)
