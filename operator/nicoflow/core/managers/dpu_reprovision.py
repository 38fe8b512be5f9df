"""DPU firmware through Core's DPU reprovisioning, shared by both compute
managers (the `dpu` firmware sub-target).

Per host: mark the host "HostUpdateInProgress" (keeps tenants off it and alerts
quiet), ask Core to reprovision its DPUs with a firmware update, then reboot the
host so the DPUs pick it up — through the tenant's instance when there is one
(so updates apply on that reboot), otherwise an AC power cycle. Core lists DPUs
until they are done; the health report comes off when they are.

`start`, `status` and `finish` are separate so a controller can poll between
reconciles instead of holding a handler open for an hour; `run` strings them
together for callers that want to wait."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

import grpc

from nicoflow._proto.nico import common_pb2, forge_pb2, health_pb2
from nicoflow.core.client import CoreClient, CoreError
from nicoflow.core.managers.ids import machine_ids, sub_key
from nicoflow.core.managers.results import (
    ComponentResults,
    FirmwareReading,
    FirmwareState,
    FirmwareStatusMap,
    Outcome,
    complete_firmware,
)
from nicoflow.domain.types import Leftover

log = logging.getLogger(__name__)

HOST_UPDATE_SOURCE = "host-update"
HOST_UPDATE_ALERT = "HostUpdateInProgress"
HOST_UPDATE_CLASSIFICATIONS = ("PreventAllocations", "SuppressExternalAlerting")

DEFAULT_POLL_INTERVAL = 30.0
DEFAULT_TIMEOUT = 90 * 60.0


def host_update_report() -> health_pb2.HealthReport:
    return health_pb2.HealthReport(
        source=HOST_UPDATE_SOURCE,
        alerts=[
            health_pb2.HealthProbeAlert(
                id=HOST_UPDATE_ALERT,
                message="DPU firmware update in progress (NICo Flow)",
                classifications=list(HOST_UPDATE_CLASSIFICATIONS),
            )
        ],
    )


class DpuReprovisioner:
    def __init__(
        self,
        core: CoreClient,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = core
        self._sleep = sleep
        self._clock = clock

    async def dpus_of(self, host_ids: Sequence[str]) -> dict[str, list[str]]:
        """DPU machine IDs per host; hosts Core does not know are absent."""
        resp = await self._core.find_machines_by_ids(
            forge_pb2.MachinesByIdsRequest(machine_ids=machine_ids(host_ids))
        )
        return {m.id.id: [d.id for d in m.associated_dpu_machine_ids] for m in resp.machines}

    async def start(self, host_ids: Sequence[str], idempotency_key: str) -> ComponentResults:
        """Kick off reprovisioning host by host; errors are per host."""
        dpus = await self.dpus_of(host_ids)
        current = await self.current(dpus)
        results: ComponentResults = {}
        for host in host_ids:
            if host not in dpus:
                results[host] = Outcome.failure("host not found in NICo Core")
                continue
            if not dpus[host]:
                results[host] = Outcome.failure("host has no associated DPUs to reprovision")
                continue
            if host in current:
                results[host] = Outcome.already()  # no reprovisioning, no reboot
                continue
            results[host] = await self._start_one(host, sub_key(idempotency_key, host, "dpu"))
        return results

    async def current(self, dpus: Mapping[str, Sequence[str]]) -> set[str]:
        """Hosts whose DPUs all run a firmware bundle Core considers desired
        (judged on the parts Core reports for a DPU machine: BMC and UEFI)."""
        ids = [d for ds in dpus.values() for d in ds]
        if not ids:
            return set()
        desired = [
            dict(e.component_versions)
            for e in (await self._core.get_desired_firmware_versions()).entries
            if e.component_versions
        ]
        machines = await self._core.find_machines_by_ids(
            forge_pb2.MachinesByIdsRequest(machine_ids=machine_ids(ids))
        )
        ok: set[str] = set()
        for m in machines.machines:
            known = {"bmc": m.bmc_info.firmware_version}
            if m.HasField("discovery_info"):
                known["uefi"] = m.discovery_info.dmi_data.bios_version
            known = {k: v for k, v in known.items() if v}
            for entry in desired:
                shared = [k for k in known if k in entry]
                if shared and all(entry[k] == known[k] for k in shared):
                    ok.add(m.id.id)
                    break
        return {host for host, ds in dpus.items() if ds and all(d in ok for d in ds)}

    async def _start_one(self, host: str, key: str) -> Outcome:
        """Mark the host, ask for its DPUs' reprovisioning, reboot it — each
        step only if Core's state does not show it done already, so a retry
        after a lost reply or a restart repeats nothing."""
        mid = common_pb2.MachineId(id=host)
        try:
            state = (await self.waiting([host])).get(host, {})
            await self._core.insert_machine_health_report(
                forge_pb2.InsertMachineHealthReportRequest(
                    machine_id=mid,
                    health_report_entry=forge_pb2.HealthReportEntry(
                        report=host_update_report(), mode=forge_pb2.Merge
                    ),
                ),
                idempotency_key=sub_key(key, "health-insert"),
            )
            if not state:
                await self._core.trigger_dpu_reprovisioning(
                    forge_pb2.DpuReprovisioningRequest(
                        machine_id=mid,
                        mode=forge_pb2.DpuReprovisioningRequest.Set,
                        initiator=forge_pb2.AdminCli,
                        update_firmware=True,
                    ),
                    idempotency_key=sub_key(key, "trigger"),
                )
            if not any(kicked for kicked in state.values()):
                await self._reboot(host, mid, key)
        except CoreError as exc:
            # whatever landed is found again by the next try (state first);
            # the report comes off once no DPU of the host is pending
            return Outcome(
                ok=False,
                error=f"DPU reprovisioning not started: {exc}",
                transient=exc.transient,
                cleanup=Leftover.HOST_UPDATE,
            )
        # the report comes off once the DPUs are done, however the step ends
        return Outcome(ok=True, cleanup=Leftover.HOST_UPDATE)

    async def _reboot(self, host: str, mid: common_pb2.MachineId, key: str) -> None:
        """Through the tenant's instance when there is one (updates apply on
        that reboot), otherwise an AC power cycle."""
        instances = await self._core.find_instance_by_machine_id(mid)
        if instances.instances:
            await self._core.invoke_instance_power(
                forge_pb2.InstancePowerRequest(
                    instance_id=instances.instances[0].id,
                    operation=forge_pb2.InstancePowerRequest.POWER_RESET,
                    apply_updates_on_reboot=True,
                ),
                idempotency_key=sub_key(key, "instance-reboot"),
            )
        else:
            await self._core.admin_power_control(
                forge_pb2.AdminPowerControlRequest(
                    machine_id=host, action=forge_pb2.AdminPowerControlRequest.ACPowercycle
                ),
                idempotency_key=sub_key(key, "powercycle"),
            )

    async def waiting(self, host_ids: Sequence[str]) -> dict[str, dict[str, bool]]:
        """Per known host, its DPUs Core lists as waiting for reprovisioning,
        each with whether the reboot that starts it happened."""
        dpus = await self.dpus_of(host_ids)
        listed = {
            item.id.id: item.HasField("initiated_at")
            for item in (await self._core.list_dpu_waiting_for_reprovisioning()).dpus
        }
        return {host: {d: listed[d] for d in ds if d in listed} for host, ds in dpus.items()}

    async def pending(self, host_ids: Sequence[str]) -> dict[str, list[str]]:
        """Per known host, its DPUs Core still lists as waiting for reprovisioning."""
        return {host: list(ds) for host, ds in (await self.waiting(host_ids)).items()}

    async def status(self, host_ids: Sequence[str]) -> FirmwareStatusMap:
        """Queued until the host rebooted, in progress while Core lists a DPU,
        completed when none is left; the host's report has to come off in each case."""
        got: dict[str, FirmwareReading] = {}
        for host, dpus in (await self.waiting(host_ids)).items():
            if not dpus:
                got[host] = FirmwareReading(FirmwareState.COMPLETED, cleanup=Leftover.HOST_UPDATE)
            # under way: the host carries the report (a reading after a lost
            # reply or a restart is how the Task learns it must take it off)
            elif all(dpus.values()):
                got[host] = FirmwareReading(FirmwareState.IN_PROGRESS, cleanup=Leftover.HOST_UPDATE)
            else:
                got[host] = FirmwareReading(FirmwareState.QUEUED, cleanup=Leftover.HOST_UPDATE)
        return complete_firmware(host_ids, got)

    async def release(self, host_ids: Sequence[str]) -> list[str]:
        """Take the update report off hosts whose DPUs are done; the hosts
        still being reprovisioned (their report stays)."""
        pending = await self.pending(host_ids)
        busy = [h for h in host_ids if pending.get(h)]
        left: list[str] = list(busy)
        for host in host_ids:
            if host not in busy and not await self._remove_report(
                host, sub_key(f"release-{uuid.uuid4().hex}", host, "health-remove")
            ):
                left.append(host)
        return left

    async def finish(self, host_ids: Sequence[str], idempotency_key: str) -> None:
        for host in host_ids:
            await self._remove_report(host, sub_key(idempotency_key, host, "dpu", "health-remove"))

    async def run(
        self,
        host_ids: Sequence[str],
        idempotency_key: str,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        give_up_after: float = DEFAULT_TIMEOUT,
    ) -> ComponentResults:
        """start → wait until no DPU of the hosts is listed → finish (always)."""
        results = await self.start(host_ids, idempotency_key)
        started = [h for h, r in results.items() if r.ok]
        try:
            deadline = self._clock() + give_up_after
            remaining: dict[str, list[str]] = {}
            while started:
                pending = await self.pending(started)
                remaining = {h: left for h, left in pending.items() if left}
                if not remaining or self._clock() >= deadline:
                    break
                await self._sleep(poll_interval)
            for host, left in remaining.items():
                results[host] = Outcome.failure(
                    f"DPU reprovisioning did not finish within {give_up_after:g} s "
                    f"(still waiting: {', '.join(left)})"
                )
        finally:
            # Shielded: a cancelled wait must not leave hosts marked unhealthy.
            await asyncio.shield(self.finish(started, idempotency_key))
        return results

    async def _remove_report(self, host: str, key: str) -> bool:
        """Remove Flow's update report from the host; False when that failed."""
        try:
            await self._core.remove_machine_health_report(
                forge_pb2.RemoveMachineHealthReportRequest(
                    machine_id=common_pb2.MachineId(id=host), source=HOST_UPDATE_SOURCE
                ),
                idempotency_key=key,
            )
        except CoreError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                log.warning("could not remove %s health report from %s: %s",
                            HOST_UPDATE_SOURCE, host, exc)  # fmt: skip
                return False
        return True
