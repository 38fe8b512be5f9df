"""Shared base for managers that go through Core's component-manager dispatch
with switch or power-shelf IDs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nicoflow._proto.nico import forge_pb2
from nicoflow.core.client import CoreClient
from nicoflow.core.managers import expectations, firmware_state
from nicoflow.core.managers.base import (
    ComponentManager,
    ExpectationInfo,
    PowerControlTaskInfo,
    Target,
)
from nicoflow.core.managers.ids import power_shelf_id_list, sub_key, switch_id_list
from nicoflow.core.managers.mapping import (
    component_outcomes,
    inventory_power_reading,
    nico_power_action,
)
from nicoflow.core.managers.results import (
    ComponentResults,
    FirmwareStatusMap,
    Outcome,
    PowerStatusMap,
    complete_power,
    complete_results,
)
from nicoflow.domain.types import ComponentType

# Silence on a command means accepted; status checks confirm it.
ACCEPTED = Outcome.success()


class DispatchManager(ComponentManager):
    # firmware parts an update without sub-targets installs, when not the whole bundle
    default_parts: tuple[str, ...] = ()

    def __init__(self, core: CoreClient) -> None:
        self._core = core

    def _target_field(self, ids: Sequence[str]) -> dict[str, Any]:
        """The oneof `target` member for these IDs (switch_ids / power_shelf_ids)."""
        if self.descriptor.type == ComponentType.NVSWITCH:
            return {"switch_ids": switch_id_list(ids)}
        return {"power_shelf_ids": power_shelf_id_list(ids)}

    async def inject_expectation(self, target: Target, info: ExpectationInfo) -> ComponentResults:
        self.check_target(target)
        return await expectations.inject(self._core, target.type, info)

    async def power_control(self, target: Target, info: PowerControlTaskInfo) -> ComponentResults:
        self.check_target(target)
        action = nico_power_action(target.type, info.operation)
        resp = await self._core.component_power_control(
            forge_pb2.ComponentPowerControlRequest(
                action=action,  # type: ignore[arg-type]
                bypass_state_controller=info.override_readiness_check,
                **self._target_field(target.component_ids),
            ),
            idempotency_key=sub_key(info.idempotency_key, "power"),
        )
        return complete_results(
            target.component_ids, component_outcomes(resp.results), missing=ACCEPTED
        )

    async def inventory(self, target: Target) -> forge_pb2.GetComponentInventoryResponse:
        return await self._core.get_component_inventory(
            forge_pb2.GetComponentInventoryRequest(**self._target_field(target.component_ids))
        )

    async def get_power_status(self, target: Target) -> PowerStatusMap:
        self.check_target(target)
        resp = await self.inventory(target)
        got = {e.result.component_id: inventory_power_reading(e) for e in resp.entries}
        return complete_power(target.component_ids, got)

    async def get_firmware_status(
        self, target: Target, sub_targets: Sequence[str] = (), target_version: str = ""
    ) -> FirmwareStatusMap:
        self.check_target(target)
        return await firmware_state.status(
            self._core,
            target.component_ids,
            self._target_field(target.component_ids),
            firmware_state.part_names(sub_targets, default=self.default_parts),
            target_version,
        )

    async def _update_firmware(
        self, target: Target, request: forge_pb2.UpdateComponentFirmwareRequest, key: str
    ) -> ComponentResults:
        resp = await self._core.update_component_firmware(
            request, idempotency_key=sub_key(key, "firmware")
        )
        return complete_results(
            target.component_ids, component_outcomes(resp.results), missing=ACCEPTED
        )
