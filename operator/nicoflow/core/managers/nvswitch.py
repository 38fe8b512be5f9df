"""nvswitch/nico: NVLink switch trays through Core's component-manager dispatch."""

from __future__ import annotations

import logging

from nicoflow._proto.nico import forge_pb2
from nicoflow.core.managers.base import FirmwareControlTaskInfo, Target
from nicoflow.core.managers.catalog import NVSWITCH_NICO
from nicoflow.core.managers.dispatch import DispatchManager
from nicoflow.core.managers.firmware_state import part_names, update_needed
from nicoflow.core.managers.ids import switch_id_list
from nicoflow.core.managers.mapping import consistency_report, report_versions
from nicoflow.core.managers.results import ComponentResults, ConsistencyReport
from nicoflow.core.managers.subtargets import parse_subtargets
from nicoflow.domain.types import ComponentType

log = logging.getLogger(__name__)


class NvSwitchManager(DispatchManager):
    descriptor = NVSWITCH_NICO

    async def versions(self, target: Target) -> dict[str, dict[str, str]]:
        """Firmware versions per requested switch ({} when Core has none)."""
        resp = await self.inventory(target)
        got = {
            e.result.component_id: report_versions(e.report)
            for e in resp.entries
            if e.HasField("report")
        }
        return {cid: got.get(cid, {}) for cid in target.component_ids}

    async def firmware_control(
        self, target: Target, info: FirmwareControlTaskInfo
    ) -> ComponentResults:
        self.check_target(target)
        sub = parse_subtargets(ComponentType.NVSWITCH, info.sub_targets)

        async def send(ids: list[str]) -> ComponentResults:
            request = forge_pb2.UpdateComponentFirmwareRequest(
                switches=forge_pb2.UpdateSwitchFirmwareTarget(
                    switch_ids=switch_id_list(ids),
                    components=list(sub.components),  # type: ignore[arg-type]
                ),
                target_version=info.target_version,
                bypass_state_controller=info.override_readiness_check,
            )
            return await self._update_firmware(
                Target(target.type, tuple(ids)), request, info.idempotency_key
            )

        return await update_needed(
            self._core,
            target.component_ids,
            self._target_field,
            part_names(info.sub_targets),
            info.target_version,
            send,
        )

    async def verify_firmware_consistency(self, target: Target) -> ConsistencyReport:
        self.check_target(target)
        return consistency_report(await self.versions(target))
