"""A v1 `Rack` message as a Kubernetes Rack object, plus the inventory ids.

The original required the caller to supply a UUID for the rack and every
component; here missing ones are generated. The rack's id is kept as the
label `flow.nico.io/rack-id` and the component ids as the annotation
`flow.nico.io/component-ids` (JSON, component name -> UUID), so the Rack
object says which inventory rows it stands for.

Names are the client's: a rack named `R1`, a component `GPU Tray 1`, two
components of one name. The object names Kubernetes needs (DNS labels; a
rack's is also a label value on Tasks) are derived from them
(`nicoflow.domain.names`) and the client's text is kept as the display name
(spec.identity.displayName, a component's displayName). An empty component
name is generated from the type (`compute-01`, ...). Component descriptions
have no place in the Rack spec and are kept in the inventory only."""

from __future__ import annotations

import ipaddress
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.api.common import API_VERSION
from nicoflow.api.rack import MAX_BMCS, MAX_COMPONENTS, RackSpec
from nicoflow.domain import names
from nicoflow.domain.rules import describe_validation_error
from nicoflow.domain.types import ComponentType
from nicoflow.inventory.models import normalize_mac
from nicoflow.kube.resources import GROUP
from nicoflow.service.enums import bmc_type, component_type
from nicoflow.service.errors import InvalidArgument
from nicoflow.service.validation import parse_uuid_text

LABEL_RACK_ID = f"{GROUP}/rack-id"
ANNOTATION_COMPONENT_IDS = f"{GROUP}/component-ids"

MAX_TEXT = 256
MAX_SERIAL = 128
MAX_DESCRIPTION = 1024
MAX_POSITION = 1024


def _check_name(value: str, field: str) -> None:
    problem = names.problem(value, field)
    if problem is not None:
        raise InvalidArgument(problem)


def _text(value: str, field: str, limit: int = MAX_TEXT) -> str:
    if len(value) > limit:
        raise InvalidArgument(f"{field} is {len(value)} characters long; at most {limit} allowed")
    return value


def _ip(value: str, field: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidArgument(
            f"{field} {value!r} is not an IP address; write an IPv4 or IPv6 address such as "
            "10.0.0.12"
        ) from None


def description_json(text: str) -> dict[str, Any]:
    """How a component description is stored (JSONB): a JSON object as is,
    anything else under the key "description"."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"description": text}


def description_text(stored: dict[str, Any] | None) -> str | None:
    """The inverse of description_json for reads."""
    if not stored:
        return None
    if set(stored) == {"description"} and isinstance(stored["description"], str):
        return stored["description"]
    return json.dumps(stored, sort_keys=True)


@dataclass(frozen=True)
class ComponentIds:
    id: uuid.UUID
    manufacturer: str
    serial: str
    type: ComponentType
    name: str  # the object name (the spec entry's name)
    description: dict[str, Any] | None = None
    display_name: str | None = None


@dataclass(frozen=True)
class RackRequest:
    """What CreateExpectedRack writes: the Rack object and the ids of its rows."""

    body: dict[str, Any]
    rack_id: uuid.UUID
    name: str  # the object name
    manufacturer: str
    serial: str
    components: tuple[ComponentIds, ...] = field(default_factory=tuple)
    display_name: str | None = None


def _bmcs(comp: pb.Component, where: str) -> list[dict[str, Any]]:
    if len(comp.bmcs) > MAX_BMCS:
        raise InvalidArgument(f"{where}.bmcs has {len(comp.bmcs)} entries; at most {MAX_BMCS}")
    out = []
    for j, b in enumerate(comp.bmcs):
        bw = f"{where}.bmcs[{j}]"
        btype = bmc_type(b.type, f"{bw}.type")
        try:
            mac = normalize_mac(b.mac_address)
        except ValueError as exc:
            raise InvalidArgument(f"{bw}.mac_address: {exc}") from None
        entry: dict[str, Any] = {"type": btype.value, "macAddress": mac}
        if b.HasField("ip_address") and b.ip_address:
            entry["ipAddress"] = _ip(b.ip_address, f"{bw}.ip_address")
        out.append(entry)
    return out


def _generated_name(ctype: ComponentType, taken: set[str]) -> str:
    n = 1
    while f"{ctype.value}-{n:02d}" in taken:
        n += 1
    return f"{ctype.value}-{n:02d}"


def rack_request(rack: pb.Rack | None, new_id: Any = uuid.uuid4) -> RackRequest:
    """Validate the message and build the Rack object; InvalidArgument says what to fix."""
    if rack is None or not rack.HasField("info"):
        raise InvalidArgument("rack.info is required: give at least name, manufacturer and serial")
    info = rack.info
    _check_name(info.name, "rack.info.name")
    obj_name = names.object_name(info.name)
    shown = names.display_name(info.name, obj_name)
    if not info.manufacturer:
        raise InvalidArgument("rack.info.manufacturer is required")
    if not info.serial_number:
        raise InvalidArgument("rack.info.serial_number is required")
    _text(info.manufacturer, "rack.info.manufacturer")
    _text(info.serial_number, "rack.info.serial_number", MAX_SERIAL)
    rack_id = (
        parse_uuid_text(info.id.id, "rack.info.id")
        if info.HasField("id") and info.id.id
        else new_id()
    )
    identity: dict[str, Any] = {
        "manufacturer": info.manufacturer,
        "serialNumber": info.serial_number,
    }
    if info.HasField("model") and info.model:
        identity["model"] = _text(info.model, "rack.info.model")
    if info.HasField("description") and info.description:
        identity["description"] = _text(info.description, "rack.info.description", MAX_DESCRIPTION)
    if shown is not None:
        identity["displayName"] = shown
    spec: dict[str, Any] = {"identity": identity}
    if rack.HasField("location"):
        loc = rack.location
        location = {
            key: _text(value, f"rack.location.{key}")
            for key, value in (
                ("region", loc.region),
                ("datacenter", loc.datacenter),
                ("room", loc.room),
                ("position", loc.position),
            )
            if value
        }
        if location:
            spec["location"] = location

    if len(rack.components) > MAX_COMPONENTS:
        raise InvalidArgument(
            f"rack.components has {len(rack.components)} entries; a rack holds at most "
            f"{MAX_COMPONENTS}"
        )
    explicit_names = {c.info.name for c in rack.components if c.info.name}
    # names as given are kept; the object names come from them (a repeated name
    # is told apart by its serial number)
    given = [(c.info.name, c.info.serial_number) for c in rack.components if c.info.name]
    derived = iter(names.component_names(given))
    taken: set[str] = set()
    keys: dict[tuple[str, str], str] = {}
    ids_seen: dict[uuid.UUID, str] = {rack_id: "the rack"}
    components: list[dict[str, Any]] = []
    ids: list[ComponentIds] = []
    for i, comp in enumerate(rack.components):
        where = f"rack.components[{i}]"
        ctype = component_type(comp.type, f"{where}.type")
        cinfo = comp.info
        shown_name: str | None = None
        if cinfo.name:
            _check_name(cinfo.name, f"{where}.info.name")
            name = next(derived)
            shown_name = names.display_name(cinfo.name, name)
        else:
            name = _generated_name(ctype, taken | explicit_names)
        taken.add(name)
        if not cinfo.serial_number:
            raise InvalidArgument(f"{where}.info.serial_number is required")
        serial = _text(cinfo.serial_number, f"{where}.info.serial_number", MAX_SERIAL)
        maker = _text(cinfo.manufacturer, f"{where}.info.manufacturer") or info.manufacturer
        key = (maker, serial)
        if key in keys:
            raise InvalidArgument(
                f"{where} has manufacturer {maker!r} and serial {serial!r}, like component "
                f"{keys[key]!r}; each component needs its own serial number"
            )
        keys[key] = name
        cid = (
            parse_uuid_text(cinfo.id.id, f"{where}.info.id")
            if cinfo.HasField("id") and cinfo.id.id
            else new_id()
        )
        if cid in ids_seen:
            raise InvalidArgument(f"{where}.info.id {cid} is also the id of {ids_seen[cid]}")
        ids_seen[cid] = f"component {name!r}"
        entry: dict[str, Any] = {"name": name, "type": ctype.value, "serialNumber": serial}
        if shown_name is not None:
            entry["displayName"] = shown_name
        if cinfo.manufacturer:
            entry["manufacturer"] = maker
        if cinfo.HasField("model") and cinfo.model:
            entry["model"] = _text(cinfo.model, f"{where}.info.model")
        if comp.firmware_version:
            entry["firmwareVersion"] = _text(comp.firmware_version, f"{where}.firmware_version")
        if comp.HasField("position"):
            pos = comp.position
            for key_name, value in (
                ("slot_id", pos.slot_id),
                ("tray_idx", pos.tray_idx),
                ("host_id", pos.host_id),
            ):
                if not 0 <= value <= MAX_POSITION:
                    raise InvalidArgument(
                        f"{where}.position.{key_name} is {value}; use 0 to {MAX_POSITION}"
                    )
            entry["position"] = {
                "slotId": pos.slot_id,
                "trayIndex": pos.tray_idx,
                "hostId": pos.host_id,
            }
        bmcs = _bmcs(comp, where)
        if bmcs:
            entry["bmcs"] = bmcs
        if comp.component_id:
            entry["coreId"] = _text(comp.component_id, f"{where}.component_id", MAX_SERIAL)
        components.append(entry)
        description = (
            description_json(cinfo.description)
            if cinfo.HasField("description") and cinfo.description
            else None
        )
        ids.append(ComponentIds(cid, maker, serial, ctype, name, description, shown_name))
    if components:
        spec["components"] = components

    try:
        RackSpec.model_validate(spec)
    except ValidationError as exc:
        raise InvalidArgument("rack: " + "; ".join(describe_validation_error(exc))) from None

    body = {
        "apiVersion": API_VERSION,
        "kind": "Rack",
        "metadata": {
            "name": obj_name,
            "labels": {LABEL_RACK_ID: str(rack_id)},
            "annotations": {
                ANNOTATION_COMPONENT_IDS: json.dumps(
                    {c.name: str(c.id) for c in ids}, separators=(",", ":"), sort_keys=True
                )
            },
        },
        "spec": spec,
    }
    return RackRequest(
        body=body,
        rack_id=rack_id,
        name=obj_name,
        manufacturer=info.manufacturer,
        serial=info.serial_number,
        components=tuple(ids),
        display_name=shown,
    )
