"""The forge.Forge handlers, called directly with protobuf requests."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, timestamp_pb2

from nicoflow._proto.nico import (
    common_pb2,
    forge_pb2,
    forge_pb2_grpc,
    health_pb2,
    site_explorer_pb2,
)
from nicoflow.domain.types import ComponentType
from nicoflow.simulator.catalog import DESIRED_FIRMWARE, LEAK_ALERT_ID, Family
from nicoflow.simulator.clock import FakeClock
from nicoflow.simulator.faults import ErrorRule, FaultPlan, Injector
from nicoflow.simulator.ledger import Ledger
from nicoflow.simulator.servicer import WRITE_METHODS, ForgeSimulator
from nicoflow.simulator.settings import SimSettings
from nicoflow.simulator.site import generate_site
from nicoflow.simulator.world import World

SPC = common_pb2


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class Context:
    """The two things a handler asks of its grpc.aio context."""

    def __init__(self, request_id: str | None = None) -> None:
        self._md = (("x-request-id", request_id),) if request_id else ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._md

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


class Env:
    def __init__(self, racks: int = 2, **settings: Any) -> None:
        self.clock = FakeClock()
        self.injector = Injector()
        self.world = World(
            generate_site(racks, seed=3),
            SimSettings(power_latency=2.0, firmware_latency=10.0, **settings),
            self.clock,
            self.injector,
        )
        self.ledger = Ledger()
        self.svc = ForgeSimulator(self.world, self.ledger)
        self.rack = next(iter(self.world.racks.values()))

    def ids(self, kind: ComponentType) -> list[str]:
        nodes = {
            ComponentType.COMPUTE: self.rack.hosts,
            ComponentType.NVSWITCH: self.rack.switches,
            ComponentType.POWERSHELF: self.rack.shelves,
        }[kind]
        return [n.id for n in nodes]

    async def call(self, method: str, request: Any, request_id: str | None = None) -> Any:
        fn: Callable[[Any, Any], Awaitable[Any]] = getattr(self.svc, method)
        return await fn(request, Context(request_id))


def machine_ids(*ids: str) -> common_pb2.MachineIdList:
    return common_pb2.MachineIdList(machine_ids=[common_pb2.MachineId(id=i) for i in ids])


def shelf_ids(*ids: str) -> forge_pb2.PowerShelfIdList:
    return forge_pb2.PowerShelfIdList(ids=[common_pb2.PowerShelfId(id=i) for i in ids])


def switch_ids(*ids: str) -> forge_pb2.SwitchIdList:
    return forge_pb2.SwitchIdList(ids=[common_pb2.SwitchId(id=i) for i in ids])


def ts(seconds: float) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(seconds))


def test_every_rpc_of_the_service_is_implemented() -> None:
    service = forge_pb2.DESCRIPTOR.services_by_name["Forge"]
    missing = [
        m.name
        for m in service.methods
        if getattr(ForgeSimulator, m.name) is getattr(forge_pb2_grpc.ForgeServicer, m.name)
    ]
    assert missing == []
    assert {m.name for m in service.methods} >= WRITE_METHODS


async def test_component_power_control_reports_per_id_results() -> None:
    env = Env()
    shelves = env.ids(ComponentType.POWERSHELF)
    host = env.ids(ComponentType.COMPUTE)[0]
    resp = await env.call(
        "ComponentPowerControl",
        forge_pb2.ComponentPowerControlRequest(
            power_shelf_ids=shelf_ids(*shelves, "missing", host),
            action=SPC.SYSTEM_POWER_CONTROL_FORCE_OFF,
        ),
        request_id="task-1/stage-0",
    )
    codes = {r.component_id: r.status for r in resp.results}
    assert all(codes[s] == forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS for s in shelves)
    # Unknown IDs, and IDs of another type, are per-ID NOT_FOUND results.
    assert codes["missing"] == forge_pb2.COMPONENT_MANAGER_STATUS_CODE_NOT_FOUND
    assert codes[host] == forge_pb2.COMPONENT_MANAGER_STATUS_CODE_NOT_FOUND
    entries = env.ledger.entries(method="ComponentPowerControl")
    assert len(entries) == 10
    assert {e.request_id for e in entries} == {"task-1/stage-0"}
    assert {e.action for e in entries} == {"force_off"}
    assert sum(e.applied for e in entries) == 8

    inv = await env.call(
        "GetComponentInventory",
        forge_pb2.GetComponentInventoryRequest(
            machine_ids=machine_ids(*env.ids(ComponentType.COMPUTE))
        ),
    )
    assert len(inv.entries) == 18
    assert {e.report.systems[0].power_state for e in inv.entries} == {site_explorer_pb2.Off}


async def test_graceful_power_shows_transitions_in_the_inventory() -> None:
    env = Env()
    switch = env.ids(ComponentType.NVSWITCH)[0]
    req = forge_pb2.GetComponentInventoryRequest(switch_ids=switch_ids(switch))
    await env.call(
        "ComponentPowerControl",
        forge_pb2.ComponentPowerControlRequest(
            switch_ids=switch_ids(switch), action=SPC.SYSTEM_POWER_CONTROL_GRACEFUL_SHUTDOWN
        ),
    )
    inv = await env.call("GetComponentInventory", req)
    assert inv.entries[0].report.systems[0].power_state == site_explorer_pb2.PoweringOff
    env.clock.advance(2.0)
    inv = await env.call("GetComponentInventory", req)
    assert inv.entries[0].report.systems[0].power_state == site_explorer_pb2.Off


async def test_unsupported_actions_and_state_controller() -> None:
    env = Env(state_controller=frozenset({ComponentType.POWERSHELF}))
    switch = env.ids(ComponentType.NVSWITCH)[0]
    resp = await env.call(
        "ComponentPowerControl",
        forge_pb2.ComponentPowerControlRequest(
            switch_ids=switch_ids(switch), action=SPC.SYSTEM_POWER_CONTROL_AC_POWERCYCLE
        ),
    )
    assert resp.results[0].status == forge_pb2.COMPONENT_MANAGER_STATUS_CODE_INVALID_ARGUMENT
    shelf_req = forge_pb2.ComponentPowerControlRequest(
        power_shelf_ids=shelf_ids(env.ids(ComponentType.POWERSHELF)[0]),
        action=SPC.SYSTEM_POWER_CONTROL_ON,
    )
    with pytest.raises(Aborted) as err:
        await env.call("ComponentPowerControl", shelf_req)
    assert err.value.code == grpc.StatusCode.UNIMPLEMENTED
    shelf_req.bypass_state_controller = True
    resp = await env.call("ComponentPowerControl", shelf_req)
    assert resp.results[0].status == forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS
    with pytest.raises(Aborted) as err:
        await env.call(
            "ComponentPowerControl",
            forge_pb2.ComponentPowerControlRequest(action=SPC.SYSTEM_POWER_CONTROL_ON),
        )
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_inventory_report_carries_firmware_and_serial() -> None:
    env = Env()
    switch = env.world.node(env.ids(ComponentType.NVSWITCH)[0])
    inv = await env.call(
        "GetComponentInventory",
        forge_pb2.GetComponentInventoryRequest(switch_ids=switch_ids(switch.id, "nope")),
    )
    ok, missing = inv.entries
    assert missing.result.status == forge_pb2.COMPONENT_MANAGER_STATUS_CODE_NOT_FOUND
    assert not missing.HasField("report")
    report = ok.report
    assert report.chassis[0].serial_number == switch.serial
    bmc_image = [i for s in report.service for i in s.inventories if i.description == "BMC image"]
    assert [i.version for i in bmc_image] == [switch.firmware["bmc"]]
    assert dict(report.firmware_versions) == switch.firmware


async def test_firmware_update_and_status_over_time() -> None:
    env = Env()
    switches = env.ids(ComponentType.NVSWITCH)[:2]
    resp = await env.call(
        "UpdateComponentFirmware",
        forge_pb2.UpdateComponentFirmwareRequest(
            switches=forge_pb2.UpdateSwitchFirmwareTarget(
                switch_ids=switch_ids(*switches),
                components=[forge_pb2.NV_SWITCH_COMPONENT_BMC, forge_pb2.NV_SWITCH_COMPONENT_NVOS],
            )
        ),
        request_id="fw-1",
    )
    assert [r.status for r in resp.results] == [forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS] * 2
    status_req = forge_pb2.GetComponentFirmwareStatusRequest(switch_ids=switch_ids(*switches))
    status = await env.call("GetComponentFirmwareStatus", status_req)
    assert len(status.statuses) == 4  # two parts each
    assert {s.state for s in status.statuses} == {forge_pb2.FW_STATE_QUEUED}
    env.clock.advance(5.0)
    status = await env.call("GetComponentFirmwareStatus", status_req)
    assert {s.state for s in status.statuses} == {forge_pb2.FW_STATE_IN_PROGRESS}
    env.clock.advance(5.0)
    status = await env.call("GetComponentFirmwareStatus", status_req)
    assert {s.state for s in status.statuses} == {forge_pb2.FW_STATE_COMPLETED}
    inv = await env.call(
        "GetComponentInventory",
        forge_pb2.GetComponentInventoryRequest(switch_ids=switch_ids(switches[0])),
    )
    desired = DESIRED_FIRMWARE[Family.NVSWITCH]
    assert inv.entries[0].report.firmware_versions["nvos"] == desired["nvos"]
    # By rack: only components with a job report anything.
    by_rack = await env.call(
        "GetComponentFirmwareStatus",
        forge_pb2.GetComponentFirmwareStatusRequest(
            rack_ids=forge_pb2.RackIdList(rack_ids=[common_pb2.RackId(id=env.rack.rack.core_id)])
        ),
    )
    assert {s.result.component_id for s in by_rack.statuses} == set(switches)


async def test_failed_firmware_status_carries_the_error() -> None:
    env = Env()
    shelf = env.ids(ComponentType.POWERSHELF)[0]
    env.injector.install(FaultPlan(failing=frozenset({shelf})))
    await env.call(
        "UpdateComponentFirmware",
        forge_pb2.UpdateComponentFirmwareRequest(
            power_shelves=forge_pb2.UpdatePowerShelfFirmwareTarget(
                power_shelf_ids=shelf_ids(shelf), components=[forge_pb2.POWER_SHELF_COMPONENT_PMC]
            ),
            target_version="1.9.9",
        ),
    )
    env.clock.advance(60)
    status = await env.call(
        "GetComponentFirmwareStatus",
        forge_pb2.GetComponentFirmwareStatusRequest(power_shelf_ids=shelf_ids(shelf)),
    )
    (s,) = status.statuses
    assert s.state == forge_pb2.FW_STATE_FAILED
    assert "injected failure" in s.result.error
    assert s.target_version == "1.9.9"


async def test_compute_firmware_results_keyed_by_bmc_ip_when_configured() -> None:
    env = Env(firmware_results_by_bmc_ip=True)
    host = env.world.node(env.ids(ComponentType.COMPUTE)[0])
    resp = await env.call(
        "UpdateComponentFirmware",
        forge_pb2.UpdateComponentFirmwareRequest(
            compute_trays=forge_pb2.UpdateComputeTrayFirmwareTarget(
                machine_ids=machine_ids(host.id),
                components=[forge_pb2.COMPUTE_TRAY_COMPONENT_COMBINED_BMC_UEFI],
            )
        ),
    )
    assert resp.results[0].component_id == host.bmc.ip
    assert set(host.job.targets if host.job else {}) == {"bmc", "bios"}


async def test_legacy_power_path() -> None:
    env = Env()
    host = env.ids(ComponentType.COMPUTE)[0]
    mid = common_pb2.MachineId(id=host)
    with pytest.raises(Aborted) as err:
        await env.call(
            "UpdatePowerOption",
            forge_pb2.PowerOptionUpdateRequest(machine_id=mid, power_state=forge_pb2.On),
        )
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "already set as" in err.value.details
    await env.call(
        "UpdatePowerOption",
        forge_pb2.PowerOptionUpdateRequest(machine_id=mid, power_state=forge_pb2.Off),
    )
    await env.call(
        "AdminPowerControl",
        forge_pb2.AdminPowerControlRequest(
            machine_id=host, action=forge_pb2.AdminPowerControlRequest.ForceOff
        ),
    )
    opts = await env.call("GetPowerOptions", forge_pb2.PowerOptionRequest(machine_id=[mid]))
    (o,) = opts.response
    assert (o.desired_state, o.actual_state, o.host_id.id) == (forge_pb2.Off, forge_pb2.Off, host)
    with pytest.raises(Aborted) as err:
        await env.call(
            "AdminPowerControl",
            forge_pb2.AdminPowerControlRequest(
                machine_id="nope", action=forge_pb2.AdminPowerControlRequest.On
            ),
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert [(e.component_id, e.action, e.code, e.applied) for e in env.ledger.entries()] == [
        (host, "desired_on", "INVALID_ARGUMENT", False),
        (host, "desired_off", "OK", True),
        (host, "force_off", "OK", True),
        ("nope", "", "NOT_FOUND", False),
    ]


async def test_injected_errors_before_and_after_the_change() -> None:
    env = Env()
    switch = env.ids(ComponentType.NVSWITCH)[0]
    req = forge_pb2.ComponentPowerControlRequest(
        switch_ids=switch_ids(switch), action=SPC.SYSTEM_POWER_CONTROL_FORCE_OFF
    )
    env.injector.install(FaultPlan(errors=(ErrorRule(method="ComponentPowerControl", times=1),)))
    with pytest.raises(Aborted) as err:
        await env.call("ComponentPowerControl", req, request_id="k1")
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert env.world.describe(env.world.node(switch))["power"] == "on"
    (entry,) = env.ledger.entries()
    assert (entry.component_id, entry.code, entry.applied) == (switch, "UNAVAILABLE", False)

    env.injector.install(
        FaultPlan(errors=(ErrorRule(method="*", code="DEADLINE_EXCEEDED", when="after", times=1),))
    )
    with pytest.raises(Aborted) as err:
        await env.call("ComponentPowerControl", req, request_id="k2")
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert env.world.describe(env.world.node(switch))["power"] == "off"
    await env.call("ComponentPowerControl", req, request_id="k2")  # the client's retry
    (dup,) = env.ledger.duplicates()
    assert (dup.request_id, dup.component_id) == ("k2", switch)


async def test_machine_queries() -> None:
    env = Env()
    hosts = env.ids(ComponentType.COMPUTE)
    env.world.set_leak(env.world.node(hosts[2]))
    found = await env.call(
        "FindMachineIds",
        forge_pb2.MachineSearchConfig(
            only_with_power_state="on",
            only_with_health_alert=LEAK_ALERT_ID,
            rack_id=common_pb2.RackId(id=env.rack.rack.core_id),
        ),
    )
    assert [m.id for m in found.machine_ids] == [hosts[2]]
    every = await env.call("FindMachineIds", forge_pb2.MachineSearchConfig())
    assert len(every.machine_ids) == 36
    machines = await env.call(
        "FindMachinesByIds",
        forge_pb2.MachinesByIdsRequest(
            machine_ids=[common_pb2.MachineId(id=hosts[2]), common_pb2.MachineId(id="nope")]
        ),
    )
    (m,) = machines.machines
    node = env.world.node(hosts[2])
    assert m.state == "Ready"
    assert m.machine_type == forge_pb2.HOST
    assert m.discovery_info.dmi_data.chassis_serial == node.serial
    assert m.bmc_info.ip == node.bmc.ip
    assert [d.id for d in m.associated_dpu_machine_ids] == [d.id for d in node.dpus]
    assert [a.id for a in m.health.alerts] == [LEAK_ALERT_ID]
    assert m.rack_id.id == env.rack.rack.core_id
    pos = await env.call(
        "GetMachinePositionInfo", forge_pb2.MachinePositionQuery(machine_ids=[m.id])
    )
    (p,) = pos.machine_position_info
    assert (p.physical_slot_number, p.compute_tray_index, p.topology_id) == (
        node.component.position.slot_id,
        2,
        3,
    )
    switches = await env.call(
        "FindSwitchIds",
        forge_pb2.SwitchSearchFilter(rack_id=common_pb2.RackId(id=env.rack.rack.core_id)),
    )
    assert len(switches.ids) == 9
    found_sw = await env.call(
        "FindSwitchesByIds", forge_pb2.SwitchesByIdsRequest(switch_ids=switches.ids[:2])
    )
    assert [json.loads(s.controller_state) for s in found_sw.switches] == [{"state": "ready"}] * 2
    assert all(s.rack_id.id == env.rack.rack.core_id and s.nvos_info.ip for s in found_sw.switches)
    shelves = await env.call(
        "FindPowerShelvesByIds",
        forge_pb2.PowerShelvesByIdsRequest(
            power_shelf_ids=[
                common_pb2.PowerShelfId(id=i) for i in env.ids(ComponentType.POWERSHELF)
            ]
        ),
    )
    assert len(shelves.power_shelves) == 8


async def test_legacy_firmware_flow() -> None:
    env = Env()
    host = env.ids(ComponentType.COMPUTE)[0]
    mid = common_pb2.MachineId(id=host)
    desired = await env.call(
        "GetDesiredFirmwareVersions", forge_pb2.GetDesiredFirmwareVersionsRequest()
    )
    entry = next(e for e in desired.entries if e.model.endswith("Compute Tray"))
    assert dict(entry.component_versions) == DESIRED_FIRMWARE[Family.COMPUTE]
    await env.call(
        "MachineSetAutoUpdate",
        forge_pb2.MachineSetAutoUpdateRequest(
            machine_id=mid, action=forge_pb2.MachineSetAutoUpdateRequest.Enable
        ),
    )
    now = env.clock.now()
    await env.call(
        "SetFirmwareUpdateTimeWindow",
        forge_pb2.SetFirmwareUpdateTimeWindowRequest(
            machine_ids=[mid], start_timestamp=ts(now), end_timestamp=ts(now + 3600)
        ),
    )
    env.clock.advance(5.0)
    (m,) = (
        await env.call("FindMachinesByIds", forge_pb2.MachinesByIdsRequest(machine_ids=[mid]))
    ).machines
    assert "HostReprovision" in m.state
    assert m.firmware_autoupdate is True
    env.clock.advance(10.0)
    (m,) = (
        await env.call("FindMachinesByIds", forge_pb2.MachinesByIdsRequest(machine_ids=[mid]))
    ).machines
    assert m.update_complete
    explored = await env.call(
        "FindExploredEndpointsByIds",
        site_explorer_pb2.ExploredEndpointsByIdsRequest(endpoint_ids=[m.bmc_info.ip, "10.0.0.0"]),
    )
    (ep,) = explored.endpoints
    assert dict(ep.report.firmware_versions) == DESIRED_FIRMWARE[Family.COMPUTE]
    with pytest.raises(Aborted):
        await env.call(
            "SetFirmwareUpdateTimeWindow",
            forge_pb2.SetFirmwareUpdateTimeWindowRequest(
                machine_ids=[mid], start_timestamp=ts(now)
            ),
        )


async def test_bring_up_through_the_ingestion_rpcs() -> None:
    env = Env(racks=2)
    env.world = World(
        generate_site(2, seed=3, uningested=1), SimSettings(discovery_latency=1.0), env.clock
    )
    env.svc = ForgeSimulator(env.world, env.ledger)
    new_rack = list(env.world.racks.values())[1]
    host = new_rack.hosts[0]
    endpoint = forge_pb2.BmcEndpointRequest(ip_address=host.bmc.ip)

    async def state() -> int:
        resp = await env.call("DetermineMachineIngestionState", endpoint)
        return int(resp.machine_ingestion_state)

    assert await state() == forge_pb2.NotDiscovered
    await env.call(
        "AddExpectedMachine",
        forge_pb2.ExpectedMachine(
            bmc_mac_address=host.bmc.mac,
            chassis_serial_number=host.serial,
            rack_id=common_pb2.RackId(id=new_rack.rack.core_id),
            default_pause_ingestion_and_poweron=True,
        ),
    )
    with pytest.raises(Aborted) as err:
        await env.call(
            "AddExpectedMachine", forge_pb2.ExpectedMachine(bmc_mac_address=host.bmc.mac)
        )
    assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
    env.clock.advance(1.0)
    assert await state() == forge_pb2.WaitingForIngestion
    await env.call("AllowIngestionAndPowerOn", endpoint, request_id="bring-up")
    assert await state() == forge_pb2.IngestionMachineNotCreated
    env.clock.advance(5.0)
    assert await state() == forge_pb2.IngestionMachineCreated
    # Flow's original passes the machine ID where the BMC IP belongs.
    by_id = forge_pb2.BmcEndpointRequest(ip_address=host.id)
    assert (await env.call("DetermineMachineIngestionState", by_id)).machine_ingestion_state == (
        forge_pb2.IngestionMachineCreated
    )
    machines = await env.call("GetAllExpectedMachines", empty_pb2.Empty())
    assert len(machines.expected_machines) == 19
    assert env.ledger.count(method="AllowIngestionAndPowerOn", component_id=host.id) == 1


async def test_expected_inventory_lists() -> None:
    env = Env()
    racks = await env.call("GetAllExpectedRacks", empty_pb2.Empty())
    assert len(racks.expected_racks) == 2
    labels = {lb.key: lb.value for lb in racks.expected_racks[0].metadata.labels}
    assert labels["chassis.serial-number"] == env.rack.rack.serial
    assert labels["location.position"] == "a01"
    switches = await env.call("GetAllExpectedSwitches", empty_pb2.Empty())
    shelves = await env.call("GetAllExpectedPowerShelves", empty_pb2.Empty())
    assert (len(switches.expected_switches), len(shelves.expected_power_shelves)) == (18, 16)
    linked = await env.call("GetAllExpectedSwitchesLinked", empty_pb2.Empty())
    first = env.world.node(linked.expected_switches[0].switch_id.id)
    assert first.bmc.mac == linked.expected_switches[0].bmc_mac_address
    linked_ps = await env.call("GetAllExpectedPowerShelvesLinked", empty_pb2.Empty())
    assert all(e.HasField("power_shelf_id") for e in linked_ps.expected_power_shelves)


async def test_health_reports_and_dpu_reprovisioning() -> None:
    env = Env()
    host = env.ids(ComponentType.COMPUTE)[0]
    mid = common_pb2.MachineId(id=host)
    report = forge_pb2.InsertMachineHealthReportRequest(
        machine_id=mid,
        health_report_entry=forge_pb2.HealthReportEntry(
            report=health_pb2.HealthReport(
                source="host-update",
                alerts=[health_pb2.HealthProbeAlert(id="HostUpdateInProgress", message="x")],
            )
        ),
    )
    await env.call("InsertMachineHealthReport", report)
    await env.call(
        "TriggerDpuReprovisioning",
        forge_pb2.DpuReprovisioningRequest(machine_id=mid, update_firmware=True),
    )
    listed = await env.call(
        "ListDpuWaitingForReprovisioning", forge_pb2.DpuReprovisioningListRequest()
    )
    assert {d.id.id for d in listed.dpus} == {d.id for d in env.world.node(host).dpus}
    instances = await env.call("FindInstanceByMachineID", mid)
    assert list(instances.instances) == []
    await env.call(
        "AdminPowerControl",
        forge_pb2.AdminPowerControlRequest(
            machine_id=host, action=forge_pb2.AdminPowerControlRequest.ACPowercycle
        ),
    )
    env.clock.advance(60)
    listed = await env.call(
        "ListDpuWaitingForReprovisioning", forge_pb2.DpuReprovisioningListRequest()
    )
    assert list(listed.dpus) == []
    await env.call(
        "RemoveMachineHealthReport",
        forge_pb2.RemoveMachineHealthReportRequest(machine_id=mid, source="host-update"),
    )
    with pytest.raises(Aborted) as err:
        await env.call(
            "RemoveHealthReportOverride",
            forge_pb2.RemoveMachineHealthReportRequest(machine_id=mid, source="host-update"),
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_instance_power() -> None:
    env = Env()
    node = env.world.node(env.ids(ComponentType.COMPUTE)[0])
    iid = env.world.assign_instance(node)
    found = await env.call("FindInstanceByMachineID", common_pb2.MachineId(id=node.id))
    assert [i.id.value for i in found.instances] == [iid]
    await env.call(
        "InvokeInstancePower",
        forge_pb2.InstancePowerRequest(
            instance_id=common_pb2.InstanceId(value=iid), apply_updates_on_reboot=True
        ),
    )
    assert env.world.describe(node)["power"] == "powering_on"
    with pytest.raises(Aborted) as err:
        await env.call(
            "InvokeInstancePower",
            forge_pb2.InstancePowerRequest(instance_id=common_pb2.InstanceId(value="nope")),
        )
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_version_and_firmware_version_listing() -> None:
    env = Env()
    info = await env.call("Version", forge_pb2.VersionRequest())
    assert info.build_version.startswith("nico-core-simulator-")
    host = env.ids(ComponentType.COMPUTE)[0]
    listed = await env.call(
        "ListComponentFirmwareVersions",
        forge_pb2.ListComponentFirmwareVersionsRequest(machine_ids=machine_ids(host)),
    )
    (dev,) = listed.devices
    assert len(dev.versions) == 2  # shipped and desired BMC image
    bmc = next(
        v for v in dev.compute_fw_versions if v.component == forge_pb2.COMPUTE_TRAY_COMPONENT_BMC
    )
    assert DESIRED_FIRMWARE[Family.COMPUTE]["bmc"] in bmc.versions
