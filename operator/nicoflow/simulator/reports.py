"""Protobuf views of the simulated state: exploration reports, machines,
switches, shelves and expected-inventory entries, shaped like NICo Core's."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from nicoflow._proto.nico import (
    common_pb2,
    forge_pb2,
    health_pb2,
    machine_discovery_pb2,
    site_explorer_pb2,
)
from nicoflow.simulator.catalog import PART_DESCRIPTIONS, PARTS, RACK_PROFILE
from nicoflow.simulator.ingestion import IngestionState
from nicoflow.simulator.power import Power
from nicoflow.simulator.site import Rack
from nicoflow.simulator.world import Expected, Node, NodeKind, World

SYSTEM_POWER = {
    Power.ON: site_explorer_pb2.On,
    Power.OFF: site_explorer_pb2.Off,
    Power.POWERING_ON: site_explorer_pb2.PoweringOn,
    Power.POWERING_OFF: site_explorer_pb2.PoweringOff,
}

INGESTION = {
    IngestionState.NOT_DISCOVERED: forge_pb2.NotDiscovered,
    IngestionState.WAITING_FOR_INGESTION: forge_pb2.WaitingForIngestion,
    IngestionState.MACHINE_NOT_CREATED: forge_pb2.IngestionMachineNotCreated,
    IngestionState.MACHINE_CREATED: forge_pb2.IngestionMachineCreated,
}

_ENDPOINT_TYPE = {
    NodeKind.HOST: "Bmc",
    NodeKind.DPU: "Bmc",
    NodeKind.SWITCH: "Bmc",
    NodeKind.SHELF: "Pmc",
}


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    whole = int(seconds // 1)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=int((seconds - whole) * 1e9))


def exploration_report(world: World, node: Node) -> site_explorer_pb2.EndpointExplorationReport:
    """What Core's site explorer last learned from the node's BMC over Redfish."""
    firmware = world.firmware(node)
    report = site_explorer_pb2.EndpointExplorationReport(
        endpoint_type=_ENDPOINT_TYPE[node.kind],
        vendor=node.component.manufacturer,
        systems=[
            site_explorer_pb2.ComputerSystem(
                id="System_0",
                manufacturer=node.component.manufacturer,
                model=node.model,
                serial_number=node.serial,
                power_state=SYSTEM_POWER[world.observed_power(node)],
            )
        ],
        chassis=[
            site_explorer_pb2.Chassis(
                id="Chassis_0",
                model=node.model,
                part_number=f"{node.family.value.upper()}-SIM",
                serial_number=node.serial,
                manufacturer=node.component.manufacturer,
            )
        ],
        service=[
            site_explorer_pb2.Service(
                id="FirmwareInventory",
                inventories=[
                    site_explorer_pb2.Inventory(
                        id=f"FW_{part.upper()}_0",
                        description=PART_DESCRIPTIONS.get(part, f"{part} image"),
                        version=firmware[part],
                    )
                    for part in PARTS[node.family]
                    if part in firmware
                ],
            )
        ],
        firmware_versions=firmware,
    )
    if node.kind in (NodeKind.HOST, NodeKind.DPU) and world.exists(node):
        report.machine_id = node.id
    return report


def bmc_info(world: World, node: Node) -> forge_pb2.BmcInfo:
    return forge_pb2.BmcInfo(
        ip=node.bmc.ip, mac=node.bmc.mac, firmware_version=world.bmc_version(node), port=443
    )


def health_report(world: World, node: Node) -> health_pb2.HealthReport:
    now = world.now()
    return health_pb2.HealthReport(
        source="aggregate-host-health",
        observed_at=timestamp(now),
        alerts=[
            health_pb2.HealthProbeAlert(
                id=a.id,
                in_alert_since=timestamp(a.since),
                message=a.message,
                classifications=list(a.classifications),
            )
            for a in world.alerts(node)
        ],
    )


def machine(world: World, node: Node) -> forge_pb2.Machine:
    firmware = world.firmware(node)
    host = node.host or node
    msg = forge_pb2.Machine(
        id=common_pb2.MachineId(id=node.id),
        state=world.machine_state(node),
        discovery_info=machine_discovery_pb2.DiscoveryInfo(
            dmi_data=machine_discovery_pb2.DmiData(
                board_name=node.model,
                bios_version=firmware.get("bios", firmware.get("uefi", "")),
                product_serial=node.serial,
                board_serial=node.serial,
                chassis_serial=node.serial,
                product_name=node.model,
                sys_vendor=node.component.manufacturer,
            )
        ),
        machine_type=forge_pb2.HOST if node.kind == NodeKind.HOST else forge_pb2.DPU,
        bmc_info=bmc_info(world, node),
        last_observation_time=timestamp(world.now()),
        associated_dpu_machine_ids=[common_pb2.MachineId(id=d.id) for d in node.dpus],
        health=health_report(world, node),
        update_complete=host.update_complete if node.kind == NodeKind.HOST else False,
        rack_id=common_pb2.RackId(id=node.rack.rack.core_id),
    )
    if node.host is not None:
        msg.associated_host_machine_id.id = node.host.id
    if node.kind == NodeKind.HOST and node.autoupdate is not None:
        msg.firmware_autoupdate = node.autoupdate
    return msg


def switch(world: World, node: Node) -> forge_pb2.Switch:
    return forge_pb2.Switch(
        id=common_pb2.SwitchId(id=node.id),
        controller_state=node.controller_state,
        bmc_info=bmc_info(world, node),
        rack_id=common_pb2.RackId(id=node.rack.rack.core_id),
        nvos_info=forge_pb2.SwitchNvosInfo(ip=node.component.nvos_ip or "", port=22),
    )


def power_shelf(world: World, node: Node) -> forge_pb2.PowerShelf:
    return forge_pb2.PowerShelf(
        id=common_pb2.PowerShelfId(id=node.id),
        controller_state=node.controller_state,
        bmc_info=bmc_info(world, node),
        rack_id=common_pb2.RackId(id=node.rack.rack.core_id),
    )


def _metadata(entry: Expected) -> forge_pb2.Metadata:
    return forge_pb2.Metadata(
        name=entry.name,
        description=entry.description,
        labels=[forge_pb2.Label(key=k, value=v) for k, v in entry.labels.items()],
    )


def expected_rack(rack: Rack) -> forge_pb2.ExpectedRack:
    labels = {
        "chassis.manufacturer": rack.manufacturer,
        "chassis.serial-number": rack.serial,
        "chassis.model": rack.model,
        "location.region": rack.location.region,
        "location.datacenter": rack.location.datacenter,
        "location.room": rack.location.room,
        "location.position": rack.location.position,
    }
    return forge_pb2.ExpectedRack(
        rack_id=common_pb2.RackId(id=rack.core_id),
        rack_profile_id=common_pb2.RackProfileId(id=rack.profile or RACK_PROFILE),
        metadata=forge_pb2.Metadata(
            name=rack.name,
            description=rack.description,
            labels=[forge_pb2.Label(key=k, value=v) for k, v in labels.items()],
        ),
    )


def expected_machine(entry: Expected) -> forge_pb2.ExpectedMachine:
    msg = forge_pb2.ExpectedMachine(
        bmc_mac_address=entry.mac,
        bmc_username=entry.username,
        bmc_password=entry.password,
        chassis_serial_number=entry.serial,
        fallback_dpu_serial_numbers=entry.dpu_serials,
        metadata=_metadata(entry),
        id=common_pb2.UUID(value=entry.expected_id),
    )
    if entry.rack_id:
        msg.rack_id.id = entry.rack_id
    if entry.pause is not None:
        msg.default_pause_ingestion_and_poweron = entry.pause
    if entry.ip:
        msg.bmc_ip_address = entry.ip
    return msg


def expected_switch(entry: Expected) -> forge_pb2.ExpectedSwitch:
    msg = forge_pb2.ExpectedSwitch(
        bmc_mac_address=entry.mac,
        bmc_username=entry.username,
        bmc_password=entry.password,
        switch_serial_number=entry.serial,
        metadata=_metadata(entry),
        expected_switch_id=common_pb2.UUID(value=entry.expected_id),
        bmc_ip_address=entry.ip,
    )
    if entry.rack_id:
        msg.rack_id.id = entry.rack_id
    if entry.nvos_username is not None:
        msg.nvos_username = entry.nvos_username
    if entry.nvos_password is not None:
        msg.nvos_password = entry.nvos_password
    return msg


def expected_power_shelf(entry: Expected) -> forge_pb2.ExpectedPowerShelf:
    msg = forge_pb2.ExpectedPowerShelf(
        bmc_mac_address=entry.mac,
        bmc_username=entry.username,
        bmc_password=entry.password,
        shelf_serial_number=entry.serial,
        bmc_ip_address=entry.ip,
        metadata=_metadata(entry),
        expected_power_shelf_id=common_pb2.UUID(value=entry.expected_id),
    )
    if entry.rack_id:
        msg.rack_id.id = entry.rack_id
    return msg


def linked_switch(world: World, entry: Expected) -> forge_pb2.LinkedExpectedSwitch:
    msg = forge_pb2.LinkedExpectedSwitch(
        switch_serial_number=entry.serial,
        bmc_mac_address=entry.mac,
        expected_switch_id=common_pb2.UUID(value=entry.expected_id),
    )
    node = world.linked(entry)
    if node is not None:
        msg.switch_id.id = node.id
        msg.rack_id.id = node.rack.rack.core_id
    if entry.node is not None and world.explored(entry.node):
        msg.explored_endpoint_address = entry.node.bmc.ip
    return msg


def linked_power_shelf(world: World, entry: Expected) -> forge_pb2.LinkedExpectedPowerShelf:
    msg = forge_pb2.LinkedExpectedPowerShelf(
        shelf_serial_number=entry.serial,
        bmc_mac_address=entry.mac,
        expected_power_shelf_id=common_pb2.UUID(value=entry.expected_id),
    )
    node = world.linked(entry)
    if node is not None:
        msg.power_shelf_id.id = node.id
        msg.rack_id.id = node.rack.rack.core_id
    if entry.node is not None and world.explored(entry.node):
        msg.explored_endpoint_address = entry.node.bmc.ip
    return msg
