"""Behaviour both compute managers share: bring-up through Core's ingestion
gate, expectations, and DPU reprovisioning."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nicoflow._proto.nico import forge_pb2
from nicoflow.core.client import CoreClient, CoreError
from nicoflow.core.managers import expectations
from nicoflow.core.managers.base import (
    BringUpTaskInfo,
    Capability,
    ComponentManager,
    ExpectationInfo,
    Target,
)
from nicoflow.core.managers.dpu_reprovision import DpuReprovisioner
from nicoflow.core.managers.ids import is_ip_address, machine_ids, sub_key
from nicoflow.core.managers.mapping import combine_readings, ingestion_state
from nicoflow.core.managers.results import (
    BringUpReading,
    BringUpState,
    BringUpStatusMap,
    ComponentResults,
    FirmwareStatusMap,
    Outcome,
    complete_bring_up,
)
from nicoflow.core.managers.subtargets import parse_subtargets
from nicoflow.domain.types import ComponentType, Leftover

log = logging.getLogger(__name__)


class ComputeManagerBase(ComponentManager):
    def __init__(self, core: CoreClient, dpu: DpuReprovisioner | None = None) -> None:
        self._core = core
        self._dpu = dpu or DpuReprovisioner(core)

    @property
    def dpu(self) -> DpuReprovisioner:
        return self._dpu

    async def inject_expectation(self, target: Target, info: ExpectationInfo) -> ComponentResults:
        self.check_target(target)
        return await expectations.inject(self._core, target.type, info)

    async def bmc_addresses(self, ids: Sequence[str]) -> dict[str, str]:
        """BMC IP per machine. The original passed the machine ID where Core
        expects a BMC IP; we look the IP up, and accept an ID that already is
        an IP (a host not yet ingested is known only by its BMC)."""
        resp = await self._core.find_machines_by_ids(
            forge_pb2.MachinesByIdsRequest(machine_ids=machine_ids(ids))
        )
        found = {m.id.id: m.bmc_info.ip for m in resp.machines if m.bmc_info.ip}
        for cid in ids:
            if cid not in found and is_ip_address(cid):
                found[cid] = cid
        return found

    async def bring_up_control(self, target: Target, info: BringUpTaskInfo) -> ComponentResults:
        self.check_target(target)
        ips = await self.bmc_addresses(target.component_ids)
        results: ComponentResults = {}
        for cid in target.component_ids:
            ip = ips.get(cid)
            if ip is None:
                results[cid] = Outcome.failure("cannot resolve the BMC address in NICo Core")
                continue
            try:
                await self._core.allow_ingestion_and_power_on(
                    forge_pb2.BmcEndpointRequest(ip_address=ip),
                    idempotency_key=sub_key(info.idempotency_key, cid, "allow-ingestion"),
                )
                results[cid] = Outcome.success()
            except CoreError as exc:
                results[cid] = Outcome.from_error(exc)
        return results

    async def get_bring_up_status(self, target: Target) -> BringUpStatusMap:
        self.check_target(target)
        ips = await self.bmc_addresses(target.component_ids)
        got: BringUpStatusMap = {}
        for cid in target.component_ids:
            ip = ips.get(cid)
            if ip is None:
                got[cid] = BringUpReading(
                    BringUpState.UNKNOWN, "cannot resolve the BMC address in NICo Core"
                )
                continue
            try:
                resp = await self._core.determine_machine_ingestion_state(
                    forge_pb2.BmcEndpointRequest(ip_address=ip)
                )
                got[cid] = BringUpReading(ingestion_state(resp.machine_ingestion_state))
            except CoreError as exc:
                got[cid] = BringUpReading(BringUpState.UNKNOWN, str(exc))
        return complete_bring_up(target.component_ids, got)

    async def get_firmware_status(
        self, target: Target, sub_targets: Sequence[str] = (), target_version: str = ""
    ) -> FirmwareStatusMap:
        """The tray update's progress, the DPUs' with the `dpu` sub-target;
        a host is as far along as the slower of the two."""
        self.check_target(target)
        sub = parse_subtargets(ComponentType.COMPUTE, sub_targets)
        parts: list[FirmwareStatusMap] = []
        if sub.tray_update:
            parts.append(await self.tray_firmware_status(target, sub_targets, target_version))
        if sub.dpu:
            parts.append(await self._dpu.status(target.component_ids))
        return {cid: combine_readings([p[cid] for p in parts]) for cid in target.component_ids}

    async def tray_firmware_status(
        self, target: Target, sub_targets: Sequence[str], target_version: str
    ) -> FirmwareStatusMap:
        raise self._unsupported(Capability.FIRMWARE_STATUS)

    async def release(self, target: Target, leftover: Leftover) -> list[str]:
        """The update report of hosts whose DPUs are done."""
        if leftover is not Leftover.HOST_UPDATE:
            return await super().release(target, leftover)
        self.check_target(target)
        return await self._dpu.release(target.component_ids)
