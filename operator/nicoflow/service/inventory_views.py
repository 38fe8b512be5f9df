"""Inventory rows as v1 messages (Rack, Component, NVLDomain)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.types import BMCType, ComponentType, PowerState
from nicoflow.inventory.models import Component, ComponentPhase, LeakStatus, NVLDomain, Rack
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
        name=row.display_name or row.name,
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


@dataclass(frozen=True)
class BmcRow:
    type: BMCType
    mac_address: str
    ip_address: str | None


@dataclass(frozen=True)
class ComponentRow:
    """A component read as a plain row (hot read paths), shaped like the ORM
    object for component_message."""

    id: uuid.UUID
    name: str
    display_name: str | None
    type: ComponentType
    manufacturer: str
    model: str | None
    serial_number: str
    description: dict[str, Any] | None
    nvos_ip: str | None
    firmware_version: str | None
    external_id: str | None
    power_state: PowerState
    status_phase: ComponentPhase
    status_reason: str | None
    blocked_operations: list[str]
    leak_status: LeakStatus
    slot_id: int | None
    tray_index: int | None
    host_id: int | None
    rack_id: uuid.UUID | None
    bmcs: list[BmcRow]

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ComponentRow:
        """From component columns plus `bmc_list`, a JSON list of {type, mac, ip}."""
        names = [f.name for f in fields(cls) if f.name != "bmcs"]
        return cls(
            **{n: row[n] for n in names},
            bmcs=[BmcRow(BMCType(b["type"]), b["mac"], b["ip"]) for b in row["bmc_list"]],
        )


def component_message(row: Component | ComponentRow) -> pb.Component:
    info = pb.DeviceInfo(
        id=pb.UUID(id=str(row.id)),
        name=row.display_name or row.name,
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
    ips: list[str | None] = [b.ip_address for b in row.bmcs]
    for ip, out in zip(ips, msg.bmcs, strict=True):
        if ip is not None:
            out.ip_address = ip
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
    return pb.NVLDomain(
        identifier=pb.Identifier(id=pb.UUID(id=str(row.id)), name=row.display_name or row.name)
    )
