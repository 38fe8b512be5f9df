"""compute/nico: compute trays through Core's component-manager dispatch
(ComponentPowerControl, GetComponentInventory, UpdateComponentFirmware,
GetComponentFirmwareStatus)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nicoflow._proto.nico import forge_pb2
from nicoflow.core.managers import firmware_state
from nicoflow.core.managers.base import (
    FirmwareControlTaskInfo,
    PowerControlTaskInfo,
    Target,
)
from nicoflow.core.managers.catalog import COMPUTE_NICO
from nicoflow.core.managers.compute_shared import ComputeManagerBase
from nicoflow.core.managers.firmware_state import part_names, update_needed
from nicoflow.core.managers.ids import machine_id_list, sub_key
from nicoflow.core.managers.mapping import (
    component_outcomes,
    inventory_power_reading,
    nico_power_action,
)
from nicoflow.core.managers.outcomes import merge
from nicoflow.core.managers.results import (
    ComponentResults,
    FirmwareStatusMap,
    Outcome,
    PowerStatusMap,
    complete_power,
    complete_results,
)
from nicoflow.core.managers.subtargets import parse_subtargets
from nicoflow.domain.types import ComponentType

log = logging.getLogger(__name__)

# Core reports per-component results only for components it has something to
# say about; silence on a command means it was accepted (status checks follow).
ACCEPTED = Outcome.success()


class NicoComputeManager(ComputeManagerBase):
    descriptor = COMPUTE_NICO

    async def power_control(self, target: Target, info: PowerControlTaskInfo) -> ComponentResults:
        self.check_target(target)
        action = nico_power_action(ComponentType.COMPUTE, info.operation)
        resp = await self._core.component_power_control(
            forge_pb2.ComponentPowerControlRequest(
                machine_ids=machine_id_list(target.component_ids),
                action=action,  # type: ignore[arg-type]
                bypass_state_controller=info.override_readiness_check,
            ),
            idempotency_key=sub_key(info.idempotency_key, "power"),
        )
        return complete_results(
            target.component_ids, component_outcomes(resp.results), missing=ACCEPTED
        )

    async def get_power_status(self, target: Target) -> PowerStatusMap:
        self.check_target(target)
        resp = await self._core.get_component_inventory(
            forge_pb2.GetComponentInventoryRequest(
                machine_ids=machine_id_list(target.component_ids)
            )
        )
        got = {e.result.component_id: inventory_power_reading(e) for e in resp.entries}
        return complete_power(target.component_ids, got)

    async def firmware_control(
        self, target: Target, info: FirmwareControlTaskInfo
    ) -> ComponentResults:
        self.check_target(target)
        sub = parse_subtargets(ComponentType.COMPUTE, info.sub_targets)
        if info.start or info.end:
            log.warning("compute/nico ignores the firmware start/end window")
        parts: list[ComponentResults] = []
        if sub.tray_update:

            async def send(ids: list[str]) -> ComponentResults:
                resp = await self._core.update_component_firmware(
                    forge_pb2.UpdateComponentFirmwareRequest(
                        compute_trays=forge_pb2.UpdateComputeTrayFirmwareTarget(
                            machine_ids=machine_id_list(ids),
                            components=list(sub.components),  # type: ignore[arg-type]
                        ),
                        target_version=info.target_version,
                        bypass_state_controller=info.override_readiness_check,
                    ),
                    idempotency_key=sub_key(info.idempotency_key, "firmware"),
                )
                return complete_results(ids, component_outcomes(resp.results), missing=ACCEPTED)

            parts.append(
                await update_needed(
                    self._core,
                    target.component_ids,
                    lambda ids: {"machine_ids": machine_id_list(ids)},
                    part_names(info.sub_targets),
                    info.target_version,
                    send,
                )
            )
        if sub.dpu:
            parts.append(await self._dpu.start(target.component_ids, info.idempotency_key))
        return merge(*parts)

    async def tray_firmware_status(
        self, target: Target, sub_targets: Sequence[str] = (), target_version: str = ""
    ) -> FirmwareStatusMap:
        return await firmware_state.status(
            self._core,
            target.component_ids,
            {"machine_ids": machine_id_list(target.component_ids)},
            firmware_state.part_names(sub_targets),
            target_version,
        )
