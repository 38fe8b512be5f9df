"""Component-manager dispatch RPCs: power, inventory and firmware of compute
trays, NVLink switches and power shelves addressed by Core ID."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from nicoflow._proto.nico import forge_pb2
from nicoflow.domain.types import ComponentType
from nicoflow.simulator import reports
from nicoflow.simulator.catalog import BMC_PART, PARTS, Family
from nicoflow.simulator.firmware import JobState
from nicoflow.simulator.ledger import CallRecord
from nicoflow.simulator.rpc_base import (
    COMPONENT_ACTIONS,
    COMPUTE_PARTS,
    FW_STATE,
    PART_ENUM_OF_COMPUTE,
    SHELF_PARTS,
    SWITCH_PARTS,
    UNSUPPORTED_ACTIONS,
    RpcBase,
    not_found,
    result_of,
    target_ids,
)
from nicoflow.simulator.world import Node, NodeKind, Outcome, ResultStatus, SimError


class ComponentRpcs(RpcBase):
    """ComponentPowerControl, GetComponentInventory and the firmware RPCs."""

    # --- Component-manager dispatch --------------------------------------------------

    async def ComponentPowerControl(
        self, request: forge_pb2.ComponentPowerControlRequest, context: Any
    ) -> forge_pb2.ComponentPowerControlResponse:
        return await self._run("ComponentPowerControl", request, context, self._power_control)

    def _power_control(
        self, request: forge_pb2.ComponentPowerControlRequest, record: CallRecord
    ) -> forge_pb2.ComponentPowerControlResponse:
        ids, kind, ctype = target_ids(request)
        action = COMPONENT_ACTIONS.get(request.action)
        if action is None:
            raise SimError("INVALID_ARGUMENT", f"unsupported power action {request.action}")
        uses_controller = ctype in self.world.settings.state_controller
        if uses_controller and not request.bypass_state_controller and kind != NodeKind.SWITCH:
            raise SimError(
                "UNIMPLEMENTED",
                f"power control of {ctype.value} through the state controller is not "
                "implemented; set bypass_state_controller",
            )
        results = []
        for cid in ids:
            node = self.world.find(cid, kind)
            if node is None:
                outcome = not_found(kind, cid)
            elif action in UNSUPPORTED_ACTIONS.get(kind, ()):
                outcome = Outcome(
                    ResultStatus.INVALID_ARGUMENT,
                    f"{action.value} is not supported for {ctype.value} components",
                )
            else:
                outcome = self.world.power_command(node, action)
                if outcome.ok and kind == NodeKind.HOST:
                    # Core's direct compute path also sets the power manager's desired state.
                    self.world.note_desired_power(node, action.boots)
            results.append(result_of(cid, outcome))
            record.touch(
                cid,
                action.value,
                result=outcome.status.value,
                applied=outcome.ok,
                bypass_state_controller=request.bypass_state_controller,
            )
        return forge_pb2.ComponentPowerControlResponse(results=results)

    async def GetComponentInventory(
        self, request: forge_pb2.GetComponentInventoryRequest, context: Any
    ) -> forge_pb2.GetComponentInventoryResponse:
        return await self._run("GetComponentInventory", request, context, self._inventory)

    def _inventory(
        self, request: forge_pb2.GetComponentInventoryRequest, record: CallRecord
    ) -> forge_pb2.GetComponentInventoryResponse:
        ids, kind, _ = target_ids(request)
        entries = []
        for cid in ids:
            node = self.world.find(cid, kind)
            if node is None:
                entries.append(
                    forge_pb2.ComponentInventoryEntry(result=result_of(cid, not_found(kind, cid)))
                )
                continue
            entries.append(
                forge_pb2.ComponentInventoryEntry(
                    result=result_of(cid, Outcome()),
                    report=reports.exploration_report(self.world, node),
                )
            )
        return forge_pb2.GetComponentInventoryResponse(entries=entries)

    async def UpdateComponentFirmware(
        self, request: forge_pb2.UpdateComponentFirmwareRequest, context: Any
    ) -> forge_pb2.UpdateComponentFirmwareResponse:
        return await self._run("UpdateComponentFirmware", request, context, self._update_firmware)

    def _update_firmware(
        self, request: forge_pb2.UpdateComponentFirmwareRequest, record: CallRecord
    ) -> forge_pb2.UpdateComponentFirmwareResponse:
        which = request.WhichOneof("target")
        settings = self.world.settings
        ids: list[str]
        parts_of: dict[int, tuple[str, ...]]
        enums: Iterable[int]
        if which == "compute_trays":
            kind, ctype = NodeKind.HOST, ComponentType.COMPUTE
            ids = [m.id for m in request.compute_trays.machine_ids.machine_ids]
            parts_of, enums = COMPUTE_PARTS, request.compute_trays.components
        elif which == "switches":
            kind, ctype = NodeKind.SWITCH, ComponentType.NVSWITCH
            ids = [s.id for s in request.switches.switch_ids.ids]
            parts_of, enums = SWITCH_PARTS, request.switches.components
        elif which == "power_shelves":
            kind, ctype = NodeKind.SHELF, ComponentType.POWERSHELF
            ids = [s.id for s in request.power_shelves.power_shelf_ids.ids]
            parts_of, enums = SHELF_PARTS, request.power_shelves.components
        elif which == "racks":
            raise SimError("UNIMPLEMENTED", "rack-level firmware objects are not simulated")
        else:
            raise SimError("INVALID_ARGUMENT", "the request names no target components")
        parts: list[str] = []
        for e in enums:
            if e not in parts_of:
                raise SimError("INVALID_ARGUMENT", f"unknown {ctype.value} firmware component {e}")
            parts.extend(p for p in parts_of[e] if p not in parts)
        controlled = ctype in settings.state_controller
        if controlled and kind == NodeKind.SHELF:
            raise SimError(
                "UNIMPLEMENTED",
                "power shelf firmware through the state controller is not implemented",
            )
        if controlled and kind == NodeKind.HOST and not request.bypass_state_controller:
            try:
                sot = json.loads(request.target_version)
            except ValueError:
                sot = None
            if not isinstance(sot, dict):
                raise SimError(
                    "INVALID_ARGUMENT",
                    "rack maintenance needs target_version as a JSON object of firmware versions",
                )
        results = []
        for cid in ids:
            node = self.world.find(cid, kind)
            extra: dict[str, bool] = {}
            if node is None:
                outcome = not_found(kind, cid)
                targets: dict[str, str] = {}
            else:
                targets = self.world.firmware_targets(node, parts, request.target_version)
                running = node.job
                outcome = self.world.start_firmware(node, targets, request.target_version)
                job = node.job
                if outcome.ok and job is not None:
                    # whether this delivery started a job, and whether that job
                    # will fail (a repeat is legitimate only after a failure)
                    extra = {"new_job": job is not running, "job_fails": job.failure is not None}
            key = cid
            if node is not None and kind == NodeKind.HOST and settings.firmware_results_by_bmc_ip:
                key = node.bmc.ip
            results.append(result_of(key, outcome))
            record.touch(
                cid,
                "update_firmware",
                result=outcome.status.value,
                applied=outcome.ok,
                targets=targets,
                target_version=request.target_version,
                **extra,
            )
        return forge_pb2.UpdateComponentFirmwareResponse(results=results)

    def _firmware_nodes(self, request: Any) -> list[tuple[str, Node | None, NodeKind]]:
        which = request.WhichOneof("target")
        if which == "rack_ids":
            out: list[tuple[str, Node | None, NodeKind]] = []
            for rid in request.rack_ids.rack_ids:
                rack = self.world.racks.get(rid.id)
                if rack is None:
                    continue
                for n in (*rack.shelves, *rack.switches, *rack.hosts):
                    if self.world.exists(n):
                        out.append((n.id, n, n.kind))
            return out
        ids, kind, _ = target_ids(request)
        return [(cid, self.world.find(cid, kind), kind) for cid in ids]

    async def GetComponentFirmwareStatus(
        self, request: forge_pb2.GetComponentFirmwareStatusRequest, context: Any
    ) -> forge_pb2.GetComponentFirmwareStatusResponse:
        return await self._run("GetComponentFirmwareStatus", request, context, self._fw_status)

    def _fw_status(
        self, request: forge_pb2.GetComponentFirmwareStatusRequest, record: CallRecord
    ) -> forge_pb2.GetComponentFirmwareStatusResponse:
        now = self.world.now()
        statuses = []
        for cid, node, kind in self._firmware_nodes(request):
            if node is None:
                statuses.append(
                    forge_pb2.FirmwareUpdateStatus(
                        result=result_of(cid, not_found(kind, cid)),
                        state=forge_pb2.FW_STATE_UNKNOWN,
                    )
                )
                continue
            job = self.world.job(node)
            if job is None:
                continue
            state = job.state(now)
            error = (job.failure or "") if state == JobState.FAILED else ""
            for part, version in job.targets.items():
                statuses.append(
                    forge_pb2.FirmwareUpdateStatus(
                        result=forge_pb2.ComponentResult(
                            component_id=cid,
                            status=forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS,
                            error=f"{part}: {error}" if error else "",
                        ),
                        state=FW_STATE[state],
                        target_version=job.target_version or version,
                        updated_at=reports.timestamp(job.changed_at(now)),
                    )
                )
        return forge_pb2.GetComponentFirmwareStatusResponse(statuses=statuses)

    async def ListComponentFirmwareVersions(
        self, request: forge_pb2.ListComponentFirmwareVersionsRequest, context: Any
    ) -> forge_pb2.ListComponentFirmwareVersionsResponse:
        return await self._run(
            "ListComponentFirmwareVersions", request, context, self._list_versions
        )

    def _list_versions(
        self, request: forge_pb2.ListComponentFirmwareVersionsRequest, record: CallRecord
    ) -> forge_pb2.ListComponentFirmwareVersionsResponse:
        devices = []
        for cid, node, kind in self._firmware_nodes(request):
            if node is None:
                devices.append(
                    forge_pb2.DeviceFirmwareVersions(result=result_of(cid, not_found(kind, cid)))
                )
                continue
            current = self.world.firmware(node)
            desired = self.world.desired.get(node.family, {})

            def available(
                part: str, current: dict[str, str] = current, desired: dict[str, str] = desired
            ) -> list[str]:
                return sorted({v for v in (current.get(part), desired.get(part)) if v})

            msg = forge_pb2.DeviceFirmwareVersions(result=result_of(cid, Outcome()))
            if node.family == Family.COMPUTE:
                msg.compute_fw_versions.extend(
                    forge_pb2.ComputeTrayFirmwareVersions(
                        component=PART_ENUM_OF_COMPUTE[p], versions=available(p)
                    )
                    for p in PARTS[Family.COMPUTE]
                    if p in PART_ENUM_OF_COMPUTE
                )
            msg.versions.extend(available(BMC_PART[node.family]))
            devices.append(msg)
        return forge_pb2.ListComponentFirmwareVersionsResponse(devices=devices)
