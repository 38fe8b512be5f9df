"""Inventory rows as v1 messages (Rack, Component, NVLDomain)."""

from __future__ import annotations

from collections.abc import Iterable

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.inventory.models import Component, NVLDomain, Rack
from nicoflow.service.enums import (
    bmc_type_number,
    component_type_number,
    leak_number,
    operation_type_numbers,
    phase_number,
)
from nicoflow.service.rack_body import description_text


def rack_message(row: Rack, components: Iterable[Component] | None = None) -> pb.Rack:
    info = pb.DeviceInfo(
        id=pb.UUID(id=str(row.id)),
        name=row.name,
        manufacturer=row.manufacturer,
        serial_number=row.serial_number,
    )
    if row.model is not None:
        info.model = row.model
    if row.description is not None:
        info.description = row.description
    msg = pb.Rack(
        info=info,
        location=pb.Location(
            region=row.region or "",
            datacenter=row.datacenter or "",
            room=row.room or "",
            position=row.position or "",
        ),
    )
    if components is not None:
        msg.components.extend(component_message(c) for c in components)
    return msg


def component_message(row: Component) -> pb.Component:
    info = pb.DeviceInfo(
        id=pb.UUID(id=str(row.id)),
        name=row.name,
        manufacturer=row.manufacturer,
        serial_number=row.serial_number,
    )
    if row.model is not None:
        info.model = row.model
    # the original carries a switch tray's NVOS address in the description
    extra = dict(row.description or {})
    if row.nvos_ip:
        extra["nvos_ip"] = str(row.nvos_ip)
    description = description_text(extra)
    if description is not None:
        info.description = description
    msg = pb.Component(
        type=component_type_number(row.type),
        info=info,
        firmware_version=row.firmware_version or "",
        bmcs=[
            pb.BMCInfo(type=bmc_type_number(b.type), mac_address=b.mac_address) for b in row.bmcs
        ],
        component_id=row.external_id or "",
        power_state=row.power_state.value,
        status=pb.ComponentOperationStatus(
            phase=phase_number(row.status_phase),
            reason=row.status_reason or "",
            blocked_operations=operation_type_numbers(list(row.blocked_operations or ())),
        ),
        leak_status=leak_number(row.leak_status),
    )
    for bmc, out in zip(row.bmcs, msg.bmcs, strict=True):
        if bmc.ip_address is not None:
            out.ip_address = bmc.ip_address
    if row.slot_id is not None or row.tray_index is not None or row.host_id is not None:
        msg.position.CopyFrom(
            pb.RackPosition(
                slot_id=row.slot_id or 0, tray_idx=row.tray_index or 0, host_id=row.host_id or 0
            )
        )
    if row.rack_id is not None:
        msg.rack_id.id = str(row.rack_id)
    return msg


def nvl_domain_message(row: NVLDomain) -> pb.NVLDomain:
    return pb.NVLDomain(identifier=pb.Identifier(id=pb.UUID(id=str(row.id)), name=row.name))
