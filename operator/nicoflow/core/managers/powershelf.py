"""powershelf/nico: power shelves through Core's component-manager dispatch."""

from __future__ import annotations

import logging

from nicoflow._proto.nico import forge_pb2
from nicoflow.core.managers.base import FirmwareControlTaskInfo, Target
from nicoflow.core.managers.catalog import POWERSHELF_NICO
from nicoflow.core.managers.dispatch import DispatchManager
from nicoflow.core.managers.firmware_state import part_names, update_needed
from nicoflow.core.managers.ids import power_shelf_id_list
from nicoflow.core.managers.results import ComponentResults
from nicoflow.core.managers.subtargets import parse_subtargets
from nicoflow.domain.types import ComponentType

log = logging.getLogger(__name__)


class PowerShelfManager(DispatchManager):
    descriptor = POWERSHELF_NICO
    default_parts = ("pmc",)

    async def firmware_control(
        self, target: Target, info: FirmwareControlTaskInfo
    ) -> ComponentResults:
        self.check_target(target)
        # An empty selection means the PMC only (see subtargets).
        sub = parse_subtargets(ComponentType.POWERSHELF, info.sub_targets)

        async def send(ids: list[str]) -> ComponentResults:
            request = forge_pb2.UpdateComponentFirmwareRequest(
                power_shelves=forge_pb2.UpdatePowerShelfFirmwareTarget(
                    power_shelf_ids=power_shelf_id_list(ids),
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
            part_names(info.sub_targets, default=self.default_parts),
            info.target_version,
            send,
        )
