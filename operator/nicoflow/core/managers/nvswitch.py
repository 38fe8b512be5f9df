"""nvswitch/nico: NVLink switch trays through Core's component-manager dispatch."""

from __future__ import annotations

import logging

from nicoflow._proto.nico import forge_pb2
from nicoflow.core.managers.base import FirmwareControlTaskInfo, Target
from nicoflow.core.managers.catalog import NVSWITCH_NICO
from nicoflow.core.managers.dispatch import DispatchManager
from nicoflow.core.managers.ids import switch_id_list
from nicoflow.core.managers.mapping import consistency_report, matches_any, report_versions
from nicoflow.core.managers.results import ComponentResults, ConsistencyReport, Outcome
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
        if not info.target_version:
            # Without an explicit version Core installs its desired bundle; skip
            # the update when every switch already runs it.
            desired = [
                dict(e.component_versions)
                for e in (await self._core.get_desired_firmware_versions()).entries
                if e.component_versions
            ]
            versions = await self.versions(target)
            if desired and all(matches_any(v, desired) for v in versions.values()):
                log.info("all %d switches already run the desired firmware", len(versions))
                return dict.fromkeys(target.component_ids, Outcome.success())
        request = forge_pb2.UpdateComponentFirmwareRequest(
            switches=forge_pb2.UpdateSwitchFirmwareTarget(
                switch_ids=switch_id_list(target.component_ids),
                components=list(sub.components),  # type: ignore[arg-type]
            ),
            target_version=info.target_version,
            bypass_state_controller=info.override_readiness_check,
        )
        return await self._update_firmware(target, request, info.idempotency_key)

    async def verify_firmware_consistency(self, target: Target) -> ConsistencyReport:
        self.check_target(target)
        return consistency_report(await self.versions(target))
