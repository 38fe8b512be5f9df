"""Machine-centric RPCs: machines, the power manager, host firmware,
ingestion, health reports, DPU reprovisioning and tenant instances."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from nicoflow._proto.nico import common_pb2, forge_pb2, site_explorer_pb2
from nicoflow.simulator import reports
from nicoflow.simulator.ledger import CallRecord
from nicoflow.simulator.power import Power
from nicoflow.simulator.rpc_base import ADMIN_ACTIONS, GRPC_OF_RESULT, RpcBase
from nicoflow.simulator.world import Alert, Node, NodeKind, SimError


class MachineRpcs(RpcBase):
    """Machines, power manager, host firmware, ingestion, health, DPUs, instances."""

    # --- Machines --------------------------------------------------------------------

    async def Version(self, request: forge_pb2.VersionRequest, context: Any) -> forge_pb2.BuildInfo:
        return await self._run("Version", request, context, self._version)

    def _version(
        self, request: forge_pb2.VersionRequest, record: CallRecord
    ) -> forge_pb2.BuildInfo:
        return forge_pb2.BuildInfo(
            build_version=self.world.settings.build_version,
            build_date="1970-01-01",
            git_sha="simulator",
            rust_version="n/a (NICo Core simulator)",
            build_user="nicoflow",
            build_hostname="nico-core-simulator",
        )

    async def FindMachineIds(
        self, request: forge_pb2.MachineSearchConfig, context: Any
    ) -> common_pb2.MachineIdList:
        return await self._run("FindMachineIds", request, context, self._find_machine_ids)

    def _find_machine_ids(
        self, request: forge_pb2.MachineSearchConfig, record: CallRecord
    ) -> common_pb2.MachineIdList:
        ids = self.world.machine_ids(
            include_dpus=request.include_dpus,
            power_state=(
                request.only_with_power_state if request.HasField("only_with_power_state") else None
            ),
            alert=(
                request.only_with_health_alert
                if request.HasField("only_with_health_alert")
                else None
            ),
            rack_id=request.rack_id.id if request.HasField("rack_id") else None,
        )
        return common_pb2.MachineIdList(machine_ids=[common_pb2.MachineId(id=i) for i in ids])

    async def FindMachinesByIds(
        self, request: forge_pb2.MachinesByIdsRequest, context: Any
    ) -> forge_pb2.MachineList:
        return await self._run("FindMachinesByIds", request, context, self._machines)

    def _machines(
        self, request: forge_pb2.MachinesByIdsRequest, record: CallRecord
    ) -> forge_pb2.MachineList:
        out = []
        for mid in request.machine_ids:
            node = self.world.find(mid.id, NodeKind.HOST, NodeKind.DPU)
            if node is not None:
                out.append(reports.machine(self.world, node))
        return forge_pb2.MachineList(machines=out)

    async def GetMachinePositionInfo(
        self, request: forge_pb2.MachinePositionQuery, context: Any
    ) -> forge_pb2.MachinePositionInfoList:
        return await self._run("GetMachinePositionInfo", request, context, self._positions)

    def _positions(
        self, request: forge_pb2.MachinePositionQuery, record: CallRecord
    ) -> forge_pb2.MachinePositionInfoList:
        out = []
        for mid in request.machine_ids:
            node = self.world.find(mid.id, NodeKind.HOST)
            if node is None:
                continue
            pos = node.component.position
            info = forge_pb2.MachinePositionInfo(
                machine_id=common_pb2.MachineId(id=node.id),
                physical_slot_number=pos.slot_id,
                compute_tray_index=pos.tray_index,
            )
            if pos.host_id is not None:
                info.topology_id = pos.host_id
            out.append(info)
        return forge_pb2.MachinePositionInfoList(machine_position_info=out)

    # --- Power manager and direct BMC actions ----------------------------------------

    def _power_options(self, node: Node) -> forge_pb2.PowerOptions:
        now = self.world.now()
        observed = self.world.observed_power(node)
        actual = forge_pb2.On if observed in (Power.ON, Power.POWERING_OFF) else forge_pb2.Off
        return forge_pb2.PowerOptions(
            desired_state=forge_pb2.On if node.desired_power else forge_pb2.Off,
            desired_state_updated_at=reports.timestamp(node.desired_power_at),
            actual_state=actual,
            actual_state_updated_at=reports.timestamp(now),
            host_id=common_pb2.MachineId(id=node.id),
            desired_power_state_version=(
                f"V{node.desired_power_version}-T{int(node.desired_power_at * 1e6)}"
            ),
        )

    async def GetPowerOptions(
        self, request: forge_pb2.PowerOptionRequest, context: Any
    ) -> forge_pb2.PowerOptionResponse:
        return await self._run("GetPowerOptions", request, context, self._get_power_options)

    def _get_power_options(
        self, request: forge_pb2.PowerOptionRequest, record: CallRecord
    ) -> forge_pb2.PowerOptionResponse:
        if request.machine_id:
            found = (self.world.find(m.id, NodeKind.HOST) for m in request.machine_id)
            nodes = [n for n in found if n is not None]
        else:
            nodes = [h for h in self.world.hosts if self.world.exists(h)]
        return forge_pb2.PowerOptionResponse(response=[self._power_options(n) for n in nodes])

    async def UpdatePowerOption(
        self, request: forge_pb2.PowerOptionUpdateRequest, context: Any
    ) -> forge_pb2.PowerOptionResponse:
        return await self._run("UpdatePowerOption", request, context, self._update_power_option)

    def _update_power_option(
        self, request: forge_pb2.PowerOptionUpdateRequest, record: CallRecord
    ) -> forge_pb2.PowerOptionResponse:
        node = self._machine(request.machine_id.id)
        if request.power_state not in (forge_pb2.On, forge_pb2.Off):
            raise SimError("INVALID_ARGUMENT", "desired power state must be On or Off")
        on = request.power_state == forge_pb2.On
        action = "desired_on" if on else "desired_off"
        try:
            self.world.set_desired_power(node, on)
        except SimError as err:
            record.touch(node.id, action, result=err.code, applied=False)
            raise
        record.touch(node.id, action)
        return forge_pb2.PowerOptionResponse(response=[self._power_options(node)])

    async def AdminPowerControl(
        self, request: forge_pb2.AdminPowerControlRequest, context: Any
    ) -> forge_pb2.AdminPowerControlResponse:
        return await self._run("AdminPowerControl", request, context, self._admin_power)

    def _admin_power(
        self, request: forge_pb2.AdminPowerControlRequest, record: CallRecord
    ) -> forge_pb2.AdminPowerControlResponse:
        if request.HasField("machine_id"):
            node = self._machine(request.machine_id)
        elif request.HasField("bmc_endpoint_request"):
            address = request.bmc_endpoint_request.ip_address
            found = self.world.endpoint(address)
            if found is None or not self.world.exists(found):
                raise SimError("NOT_FOUND", f"no machine behind BMC endpoint {address}")
            node = found
        else:
            raise SimError("INVALID_ARGUMENT", "machine_id or bmc_endpoint_request is required")
        action = ADMIN_ACTIONS.get(request.action)
        if action is None:
            raise SimError("INVALID_ARGUMENT", f"unsupported power action {request.action}")
        outcome = self.world.power_command(node, action)
        record.touch(node.id, action.value, result=outcome.status.value, applied=outcome.ok)
        if not outcome.ok:
            raise SimError(GRPC_OF_RESULT[outcome.status], outcome.error)
        return forge_pb2.AdminPowerControlResponse(
            msg=f"{action.value} sent to the BMC of machine {node.id}"
        )

    # --- Host firmware ---------------------------------------------------------------

    async def SetFirmwareUpdateTimeWindow(
        self, request: forge_pb2.SetFirmwareUpdateTimeWindowRequest, context: Any
    ) -> forge_pb2.SetFirmwareUpdateTimeWindowResponse:
        return await self._run("SetFirmwareUpdateTimeWindow", request, context, self._window)

    def _window(
        self, request: forge_pb2.SetFirmwareUpdateTimeWindowRequest, record: CallRecord
    ) -> forge_pb2.SetFirmwareUpdateTimeWindowResponse:
        if not (request.HasField("start_timestamp") and request.HasField("end_timestamp")):
            raise SimError("INVALID_ARGUMENT", "start_timestamp and end_timestamp are required")
        start = request.start_timestamp.seconds + request.start_timestamp.nanos / 1e9
        end = request.end_timestamp.seconds + request.end_timestamp.nanos / 1e9
        if start >= end:
            raise SimError("INVALID_ARGUMENT", "start_timestamp must be before end_timestamp")
        nodes = [self._machine(m.id) for m in request.machine_ids]
        for node in nodes:
            self.world.set_firmware_window(node, start, end)
            record.touch(node.id, "set_firmware_window", start=start, end=end)
        return forge_pb2.SetFirmwareUpdateTimeWindowResponse()

    async def MachineSetAutoUpdate(
        self, request: forge_pb2.MachineSetAutoUpdateRequest, context: Any
    ) -> forge_pb2.MachineSetAutoUpdateResponse:
        return await self._run("MachineSetAutoUpdate", request, context, self._autoupdate)

    def _autoupdate(
        self, request: forge_pb2.MachineSetAutoUpdateRequest, record: CallRecord
    ) -> forge_pb2.MachineSetAutoUpdateResponse:
        node = self._machine(request.machine_id.id)
        req = forge_pb2.MachineSetAutoUpdateRequest
        value = {req.Enable: True, req.Disable: False, req.Clear: None}.get(request.action)
        if request.action not in (req.Enable, req.Disable, req.Clear):
            raise SimError("INVALID_ARGUMENT", f"unknown auto-update action {request.action}")
        self.world.set_autoupdate(node, value)
        record.touch(node.id, f"autoupdate_{req.SetAutoupdateAction.Name(request.action).lower()}")
        return forge_pb2.MachineSetAutoUpdateResponse()

    async def GetDesiredFirmwareVersions(
        self, request: forge_pb2.GetDesiredFirmwareVersionsRequest, context: Any
    ) -> forge_pb2.GetDesiredFirmwareVersionsResponse:
        return await self._run("GetDesiredFirmwareVersions", request, context, self._desired)

    def _desired(
        self, request: forge_pb2.GetDesiredFirmwareVersionsRequest, record: CallRecord
    ) -> forge_pb2.GetDesiredFirmwareVersionsResponse:
        return forge_pb2.GetDesiredFirmwareVersionsResponse(
            entries=[
                forge_pb2.DesiredFirmwareVersionEntry(
                    vendor=vendor, model=model, component_versions=versions
                )
                for vendor, model, versions in self.world.desired_entries()
            ]
        )

    async def FindExploredEndpointsByIds(
        self, request: site_explorer_pb2.ExploredEndpointsByIdsRequest, context: Any
    ) -> site_explorer_pb2.ExploredEndpointList:
        return await self._run("FindExploredEndpointsByIds", request, context, self._explored)

    def _explored(
        self, request: site_explorer_pb2.ExploredEndpointsByIdsRequest, record: CallRecord
    ) -> site_explorer_pb2.ExploredEndpointList:
        out = []
        for address in request.endpoint_ids:
            node = self.world.by_ip.get(address)
            if node is None or not self.world.explored(node):
                continue
            out.append(
                site_explorer_pb2.ExploredEndpoint(
                    address=address,
                    report=reports.exploration_report(self.world, node),
                    report_version=f"V1-T{int(self.world.now() * 1e6)}",
                )
            )
        return site_explorer_pb2.ExploredEndpointList(endpoints=out)

    # --- Ingestion -------------------------------------------------------------------

    async def AllowIngestionAndPowerOn(
        self, request: forge_pb2.BmcEndpointRequest, context: Any
    ) -> empty_pb2.Empty:
        return await self._run("AllowIngestionAndPowerOn", request, context, self._allow)

    def _allow(self, request: forge_pb2.BmcEndpointRequest, record: CallRecord) -> empty_pb2.Empty:
        node = self.world.endpoint(request.ip_address)
        if node is None:
            raise SimError("NOT_FOUND", f"no BMC endpoint {request.ip_address or '(empty)'}")
        self.world.allow_ingestion(node)
        record.touch(node.id, "allow_ingestion", address=request.ip_address)
        return empty_pb2.Empty()

    async def DetermineMachineIngestionState(
        self, request: forge_pb2.BmcEndpointRequest, context: Any
    ) -> forge_pb2.MachineIngestionStateResponse:
        return await self._run(
            "DetermineMachineIngestionState", request, context, self._ingestion_state
        )

    def _ingestion_state(
        self, request: forge_pb2.BmcEndpointRequest, record: CallRecord
    ) -> forge_pb2.MachineIngestionStateResponse:
        node = self.world.endpoint(request.ip_address)
        state = forge_pb2.NotDiscovered
        if node is not None:
            state = reports.INGESTION[self.world.ingestion_state(node)]
        return forge_pb2.MachineIngestionStateResponse(machine_ingestion_state=state)

    # --- Health reports --------------------------------------------------------------

    def _insert_report(
        self, request: forge_pb2.InsertMachineHealthReportRequest, record: CallRecord
    ) -> empty_pb2.Empty:
        node = self._machine(request.machine_id.id, NodeKind.HOST, NodeKind.DPU)
        entry = request.health_report_entry
        now = self.world.now()
        alerts = [
            Alert(a.id, a.message, tuple(a.classifications), now) for a in entry.report.alerts
        ]
        self.world.insert_override(
            node, entry.report.source, alerts, entry.mode == forge_pb2.Replace
        )
        record.touch(
            node.id,
            "insert_health_report",
            source=entry.report.source,
            alerts=[a.id for a in alerts],
        )
        return empty_pb2.Empty()

    def _remove_report(
        self, request: forge_pb2.RemoveMachineHealthReportRequest, record: CallRecord
    ) -> empty_pb2.Empty:
        node = self._machine(request.machine_id.id, NodeKind.HOST, NodeKind.DPU)
        try:
            self.world.remove_override(node, request.source)
        except SimError as err:
            record.touch(node.id, "remove_health_report", result=err.code, applied=False)
            raise
        record.touch(node.id, "remove_health_report", source=request.source)
        return empty_pb2.Empty()

    async def InsertHealthReportOverride(
        self, request: forge_pb2.InsertMachineHealthReportRequest, context: Any
    ) -> empty_pb2.Empty:
        return await self._run("InsertHealthReportOverride", request, context, self._insert_report)

    async def RemoveHealthReportOverride(
        self, request: forge_pb2.RemoveMachineHealthReportRequest, context: Any
    ) -> empty_pb2.Empty:
        return await self._run("RemoveHealthReportOverride", request, context, self._remove_report)

    async def InsertMachineHealthReport(
        self, request: forge_pb2.InsertMachineHealthReportRequest, context: Any
    ) -> empty_pb2.Empty:
        return await self._run("InsertMachineHealthReport", request, context, self._insert_report)

    async def RemoveMachineHealthReport(
        self, request: forge_pb2.RemoveMachineHealthReportRequest, context: Any
    ) -> empty_pb2.Empty:
        return await self._run("RemoveMachineHealthReport", request, context, self._remove_report)

    # --- DPU reprovisioning and instances --------------------------------------------

    async def TriggerDpuReprovisioning(
        self, request: forge_pb2.DpuReprovisioningRequest, context: Any
    ) -> empty_pb2.Empty:
        return await self._run("TriggerDpuReprovisioning", request, context, self._reprovision)

    def _reprovision(
        self, request: forge_pb2.DpuReprovisioningRequest, record: CallRecord
    ) -> empty_pb2.Empty:
        target = request.machine_id.id if request.HasField("machine_id") else ""
        target = target or (request.dpu_id.id if request.HasField("dpu_id") else "")
        node = self._machine(target, NodeKind.HOST, NodeKind.DPU)
        req = forge_pb2.DpuReprovisioningRequest
        mode = req.Mode.Name(request.mode).lower()
        initiator = forge_pb2.UpdateInitiator.Name(request.initiator)
        dpus = self.world.trigger_reprovision(node, mode, initiator, request.update_firmware)
        for d in dpus:
            record.touch(
                d.id,
                f"dpu_reprovision_{mode}",
                host=node.host.id if node.host else node.id,
                update_firmware=request.update_firmware,
            )
        return empty_pb2.Empty()

    async def ListDpuWaitingForReprovisioning(
        self, request: forge_pb2.DpuReprovisioningListRequest, context: Any
    ) -> forge_pb2.DpuReprovisioningListResponse:
        return await self._run(
            "ListDpuWaitingForReprovisioning", request, context, self._reprovision_list
        )

    def _reprovision_list(
        self, request: forge_pb2.DpuReprovisioningListRequest, record: CallRecord
    ) -> forge_pb2.DpuReprovisioningListResponse:
        item = forge_pb2.DpuReprovisioningListResponse.DpuReprovisioningListItem
        items = []
        for dpu, rep in self.world.waiting_for_reprovisioning():
            msg = item(
                id=common_pb2.MachineId(id=dpu.id),
                state="Reprovisioning" if rep.kicked_at is not None else "WaitingForReboot",
                initiator=rep.initiator,
                requested_at=reports.timestamp(rep.requested_at),
                update_firmware=rep.update_firmware,
                user_approval_received=True,
            )
            if rep.kicked_at is not None:
                msg.initiated_at.CopyFrom(reports.timestamp(rep.kicked_at))
            items.append(msg)
        return forge_pb2.DpuReprovisioningListResponse(dpus=items)

    async def FindInstanceByMachineID(
        self, request: common_pb2.MachineId, context: Any
    ) -> forge_pb2.InstanceList:
        return await self._run("FindInstanceByMachineID", request, context, self._instances)

    def _instances(
        self, request: common_pb2.MachineId, record: CallRecord
    ) -> forge_pb2.InstanceList:
        node = self.world.find(request.id, NodeKind.HOST)
        if node is None or node.instance_id is None:
            return forge_pb2.InstanceList()
        return forge_pb2.InstanceList(
            instances=[
                forge_pb2.Instance(
                    id=common_pb2.InstanceId(value=node.instance_id),
                    machine_id=common_pb2.MachineId(id=node.id),
                )
            ]
        )

    async def InvokeInstancePower(
        self, request: forge_pb2.InstancePowerRequest, context: Any
    ) -> forge_pb2.InstancePowerResult:
        return await self._run("InvokeInstancePower", request, context, self._instance_power)

    def _instance_power(
        self, request: forge_pb2.InstancePowerRequest, record: CallRecord
    ) -> forge_pb2.InstancePowerResult:
        instance_id = request.instance_id.value if request.HasField("instance_id") else ""
        if not instance_id and request.HasField("machine_id"):
            host = self.world.find(request.machine_id.id, NodeKind.HOST)
            instance_id = (host.instance_id if host else None) or ""
        if not instance_id:
            raise SimError("NOT_FOUND", "instance not found")
        outcome = self.world.instance_power_reset(instance_id, request.apply_updates_on_reboot)
        host = self.world.instances[instance_id]
        record.touch(
            host.id,
            "instance_power_reset",
            result=outcome.status.value,
            applied=outcome.ok,
            instance_id=instance_id,
            apply_updates_on_reboot=request.apply_updates_on_reboot,
        )
        if not outcome.ok:
            raise SimError(GRPC_OF_RESULT[outcome.status], outcome.error)
        return forge_pb2.InstancePowerResult()
