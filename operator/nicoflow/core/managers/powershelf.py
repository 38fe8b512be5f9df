"""powershelf/nico: power shelves through Core's component-manager dispatch."""

from __future__ import annotations

import logging

from nicoflow._proto.nico import forge_pb2
from nicoflow.core.managers.base import FirmwareControlTaskInfo, Target
from nicoflow.core.managers.catalog import POWERSHELF_NICO
from nicoflow.core.managers.dispatch import DispatchManager
from nicoflow.core.managers.ids import power_shelf_id_list
from nicoflow.core.managers.results import ComponentResults
from nicoflow.core.managers.subtargets import parse_subtargets
from nicoflow.domain.types import ComponentType

log = logging.getLogger(__name__)


class PowerShelfManager(DispatchManager):
    descriptor = POWERSHELF_NICO

    async def firmware_control(
        self, target: Target, info: FirmwareControlTaskInfo
    ) -> ComponentResults:
        self.check_target(target)
        # An empty selection means the PMC only (see subtargets).
        sub = parse_subtargets(ComponentType.POWERSHELF, info.sub_targets)
        request = forge_pb2.UpdateComponentFirmwareRequest(
            power_shelves=forge_pb2.UpdatePowerShelfFirmwareTarget(
                power_shelf_ids=power_shelf_id_list(target.component_ids),
                components=list(sub.components),  # type: ignore[arg-type]
            ),
            target_version=info.target_version,
            bypass_state_controller=info.override_readiness_check,
        )
        return await self._update_firmware(target, request, info.idempotency_key)
