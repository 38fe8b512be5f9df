"""The simulated site as Flow inventory: the JSON `flow rack create` takes,
and Kubernetes `Rack` objects (validated against the CRD models)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import yaml

from nicoflow.api.common import API_VERSION
from nicoflow.api.rack import (
    BMC,
    ComponentPosition,
    RackComponent,
    RackIdentity,
    RackLocation,
    RackSpec,
)
from nicoflow.simulator.catalog import BMC_PART, FAMILY_OF_TYPE
from nicoflow.simulator.site import Component, Rack, Site

SIMULATED_LABEL = "flow.nico.io/simulated"


class ExportFormat(StrEnum):
    RACK_JSON = "rack-json"
    K8S = "k8s"


def component_firmware_version(comp: Component) -> str:
    """The single version Flow keeps per component: its management controller's."""
    return comp.firmware.get(BMC_PART[FAMILY_OF_TYPE[comp.type]], "")


def rack_json(rack: Rack) -> dict[str, Any]:
    """One rack in the shape `flow rack create -f` reads."""
    return {
        "info": {
            "name": rack.name,
            "manufacturer": rack.manufacturer,
            "model": rack.model,
            "serial_number": rack.serial,
            "description": rack.description,
        },
        "location": {
            "region": rack.location.region,
            "datacenter": rack.location.datacenter,
            "room": rack.location.room,
            "position": rack.location.position,
        },
        "components": [
            {
                "type": c.type.value,
                "info": {
                    "name": c.name,
                    "manufacturer": c.manufacturer,
                    "model": c.model,
                    "serial_number": c.serial,
                },
                "firmware_version": component_firmware_version(c),
                "component_id": c.core_id,
                "position": {
                    "slot_id": c.position.slot_id,
                    "tray_index": c.position.tray_index,
                    "host_id": c.position.host_id or 0,
                },
                "bmcs": [{"type": b.type.value, "mac": b.mac, "ip": b.ip} for b in c.bmcs],
            }
            for c in rack.components
        ],
    }


def rack_spec(rack: Rack) -> RackSpec:
    return RackSpec(
        identity=RackIdentity(
            manufacturer=rack.manufacturer,
            serial_number=rack.serial,
            model=rack.model,
            description=rack.description,
        ),
        location=RackLocation(
            region=rack.location.region,
            datacenter=rack.location.datacenter,
            room=rack.location.room,
            position=rack.location.position,
        ),
        # An NVL72 rack is one NVLink domain.
        nvl_domain=f"nvl-{rack.name}",
        core_id=rack.core_id,
        components=[
            RackComponent(
                name=c.name,
                type=c.type,
                manufacturer=c.manufacturer,
                model=c.model,
                serial_number=c.serial,
                firmware_version=component_firmware_version(c),
                position=ComponentPosition(
                    slot_id=c.position.slot_id,
                    tray_index=c.position.tray_index,
                    host_id=c.position.host_id,
                ),
                bmcs=[BMC(type=b.type, mac_address=b.mac, ip_address=b.ip) for b in c.bmcs],
                core_id=c.core_id,
            )
            for c in rack.components
        ],
    )


def rack_object(rack: Rack) -> dict[str, Any]:
    """A cluster-scoped `Rack` object ready for `kubectl apply`."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Rack",
        "metadata": {"name": rack.name, "labels": {SIMULATED_LABEL: "true"}},
        "spec": rack_spec(rack).to_k8s(),
    }


def export_site(site: Site, fmt: ExportFormat, *, yaml_output: bool) -> str:
    """rack-json: a JSON array of racks. k8s: multi-document YAML, or a JSON
    `List` when `yaml_output` is false (both are what kubectl apply takes)."""
    if fmt == ExportFormat.RACK_JSON:
        return json.dumps([rack_json(r) for r in site.racks], indent=2) + "\n"
    objects = [rack_object(r) for r in site.racks]
    if yaml_output:
        return yaml.safe_dump_all(objects, sort_keys=False)
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
