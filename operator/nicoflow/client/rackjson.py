"""The rack JSON `flow rack create` reads (the original CLI's format) as v1 messages.

    {"info": {"id"?, "name", "manufacturer", "model", "serial_number", "description"},
     "location": {"region", "datacenter", "room", "position"},
     "components": [{"type": "compute", "info": {...}, "firmware_version",
                     "component_id", "position": {"slot_id", "tray_index", "host_id"},
                     "bmcs": [{"type": "host"|"dpu", "mac", "ip"}]}]}

A file may hold one rack or a list of them (what `flow simulator export
--format rack-json` writes). Like the original CLI, ids missing from the file
are generated here, so the ids the command prints are the stored ones. BMC
`user`/`password` keys are accepted and dropped: credentials are not inventory."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.client.targets import TargetError, component_type_number
from nicoflow.domain.types import BMCType

_BMC_TYPES = {BMCType.HOST.value: pb.BMC_TYPE_HOST, BMCType.DPU.value: pb.BMC_TYPE_DPU}


IdMaker = Callable[[], str] | None


def _uuid4() -> str:
    return str(uuid.uuid4())


class RackJsonError(ValueError):
    """The document is not a rack in the expected shape; the message names the field."""


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RackJsonError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RackJsonError(f"{where}.{key}: expected a string")
    return str(value)


def _int(data: Mapping[str, Any], keys: tuple[str, ...], where: str) -> int:
    for key in keys:
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise RackJsonError(f"{where}.{key}: expected a whole number")
        return value
    return 0


def _info(data: Mapping[str, Any], where: str, new_id: IdMaker) -> pb.DeviceInfo:
    info = pb.DeviceInfo(
        name=_str(data, "name", where),
        manufacturer=_str(data, "manufacturer", where),
        serial_number=_str(data, "serial_number", where),
    )
    given = data.get("id")
    if isinstance(given, Mapping):  # the proto's own JSON spelling {"id": {"id": ...}}
        given = given.get("id")
    if given:
        try:
            info.id.id = str(uuid.UUID(str(given)))
        except ValueError:
            raise RackJsonError(f"{where}.id: {given!r} is not a UUID") from None
    elif new_id is not None:
        info.id.id = new_id()
    for key in ("model", "description"):
        if data.get(key) is not None:
            setattr(info, key, _str(data, key, where))
    return info


def _bmc(data: Mapping[str, Any], where: str) -> pb.BMCInfo:
    kind = _str(data, "type", where).lower() or BMCType.HOST.value
    if kind not in _BMC_TYPES:
        raise RackJsonError(f"{where}.type: {kind!r} is not a BMC type; use host or dpu")
    bmc = pb.BMCInfo(type=_BMC_TYPES[kind], mac_address=_str(data, "mac", where))
    if not bmc.mac_address:
        bmc.mac_address = _str(data, "mac_address", where)
    ip = _str(data, "ip", where) or _str(data, "ip_address", where)
    if ip:
        bmc.ip_address = ip
    return bmc


def bmcs_from_json(items: list[Any]) -> list[pb.BMCInfo]:
    """BMC objects ({"type", "mac", "ip"}) as v1 messages."""
    return [_bmc(_obj(b, f"bmcs[{i}]"), f"bmcs[{i}]") for i, b in enumerate(items)]


def _component(data: Mapping[str, Any], where: str, new_id: IdMaker) -> pb.Component:
    try:
        ctype = component_type_number(_str(data, "type", where))
    except TargetError as exc:
        raise RackJsonError(f"{where}.type: {exc}") from None
    pos = _obj(data.get("position"), f"{where}.position")
    comp = pb.Component(
        type=ctype,
        info=_info(_obj(data.get("info"), f"{where}.info"), f"{where}.info", new_id),
        firmware_version=_str(data, "firmware_version", where),
        component_id=_str(data, "component_id", where),
        position=pb.RackPosition(
            slot_id=_int(pos, ("slot_id",), f"{where}.position"),
            tray_idx=_int(pos, ("tray_index", "tray_idx"), f"{where}.position"),
            host_id=_int(pos, ("host_id",), f"{where}.position"),
        ),
    )
    bmcs = data.get("bmcs") or []
    if not isinstance(bmcs, list):
        raise RackJsonError(f"{where}.bmcs: expected a list")
    for i, b in enumerate(bmcs):
        comp.bmcs.append(_bmc(_obj(b, f"{where}.bmcs[{i}]"), f"{where}.bmcs[{i}]"))
    return comp


def rack_from_json(data: Mapping[str, Any], *, new_id: IdMaker = _uuid4) -> pb.Rack:
    """One rack object as a v1 Rack, with ids generated where the file has none."""
    data = _obj(data, "rack")
    loc = _obj(data.get("location"), "location")
    rack = pb.Rack(
        info=_info(_obj(data.get("info"), "info"), "info", new_id),
        location=pb.Location(
            region=_str(loc, "region", "location"),
            datacenter=_str(loc, "datacenter", "location"),
            room=_str(loc, "room", "location"),
            position=_str(loc, "position", "location"),
        ),
    )
    comps = data.get("components") or []
    if not isinstance(comps, list):
        raise RackJsonError("components: expected a list")
    for i, c in enumerate(comps):
        rack.components.append(_component(_obj(c, f"components[{i}]"), f"components[{i}]", new_id))
    return rack


def racks_from_text(text: str, *, generate_ids: bool = True) -> list[pb.Rack]:
    """A JSON document with one rack or a list of racks; `generate_ids=False`
    leaves missing ids unset (a patch matches by serial then)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RackJsonError(f"not valid JSON: {exc}") from None
    items = doc if isinstance(doc, list) else [doc]
    racks = []
    for i, item in enumerate(items):
        try:
            racks.append(rack_from_json(item, new_id=_uuid4 if generate_ids else None))
        except RackJsonError as exc:
            raise RackJsonError(f"rack {i + 1}: {exc}" if len(items) > 1 else str(exc)) from None
    if not racks:
        raise RackJsonError("the document holds no rack")
    return racks
