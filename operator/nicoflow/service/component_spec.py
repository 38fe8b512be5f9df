"""Pure edits of a Rack object's `spec.components` for the component write RPCs.

A component entry is validated exactly as CreateExpectedRack validates one:
the message is checked through `rack_request` inside a one-component probe
rack, and its field paths are renamed to the caller's. Everything here is
data in, data out; the RPC modules do the reads and writes."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain import names
from nicoflow.domain.types import ComponentType
from nicoflow.inventory.models import Component
from nicoflow.service.errors import InvalidArgument
from nicoflow.service.rack_body import ANNOTATION_COMPONENT_IDS, rack_request
from nicoflow.service.validation import parse_uuid, parse_uuid_text

Key = tuple[str, str]  # (manufacturer, serial number): the inventory's unique key

_PROBE_PATH = "rack.components[0]"


class Op:
    """What a write did to one rack, component or BMC (PatchRack's report vocabulary)."""

    NO_EXISTING_RACK = "NoExistingRack"
    PATCHED = "Patched"
    NO_CHANGE = "NoChange"
    ADDED = "Added"
    INVALID_TYPE = "InvalidType"


# --- generic -------------------------------------------------------------------------------


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`.

    Lists are replaced whole, which is what a merge patch does to them anyway."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return copy.deepcopy(new)
    out: dict[str, Any] = {}
    for key in old:
        if key not in new:
            out[key] = None
    for key, value in new.items():
        if key not in old:
            out[key] = copy.deepcopy(value)
        elif old[key] != value:
            out[key] = merge_patch(old[key], value)
    return out


def entry_key(entry: Mapping[str, Any], rack_maker: str) -> Key:
    """The inventory key of a spec entry: its own manufacturer, else the rack's."""
    return (str(entry.get("manufacturer") or rack_maker), str(entry["serialNumber"]))


def free_name(ctype: ComponentType, taken: Iterable[str]) -> str:
    """The first `<type>-NN` not taken in the rack."""
    used = set(taken)
    n = 1
    while f"{ctype.value}-{n:02d}" in used:
        n += 1
    return f"{ctype.value}-{n:02d}"


def ids_annotation(ids: Mapping[str, uuid.UUID]) -> str:
    """The `flow.nico.io/component-ids` value: component name -> UUID, compact and sorted."""
    return json.dumps(
        {name: str(cid) for name, cid in ids.items()}, separators=(",", ":"), sort_keys=True
    )


def annotation_ids(obj: Mapping[str, Any]) -> dict[str, str]:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_COMPONENT_IDS)
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}


def description_object(text: str, field: str) -> dict[str, Any]:
    """A description given as JSON text: an object, or "" to clear it."""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidArgument(
            f'{field} must be a JSON object such as {{"note": "spare tray"}} (or empty to clear it)'
        )
    return parsed


# --- one component as a spec entry -----------------------------------------------------------


@dataclass(frozen=True)
class NewComponent:
    """A component to add: its spec entry, inventory id and key, and what only Postgres keeps."""

    id: uuid.UUID
    entry: dict[str, Any]
    key: Key
    type: ComponentType
    description: dict[str, Any] | None


def _probe(comp: pb.Component, rack_maker: str, where: str) -> tuple[dict[str, Any], Any]:
    """Validate one component as CreateExpectedRack would; messages name `where`
    (empty: the fields are the request's own)."""
    rack = pb.Rack(info=pb.DeviceInfo(name="probe", manufacturer=rack_maker, serial_number="-"))
    rack.components.append(comp)
    try:
        req = rack_request(rack)
    except InvalidArgument as exc:
        message = exc.message.replace("rack: ", "")
        for path in (_PROBE_PATH, "components[0]"):
            message = message.replace(f"{path}.", f"{where}." if where else "")
            message = message.replace(path, where or "request")
        raise InvalidArgument(message) from None
    return req.body["spec"]["components"][0], req.components[0]


def new_component(
    comp: pb.Component, rack_maker: str | None, taken: Iterable[str], where: str
) -> NewComponent:
    """A component for a rack (rack_maker given) or for no rack.

    An empty name becomes the first free `<type>-NN`; a name already used in
    the rack gets an object name of its own (the name stays what is shown)."""
    if rack_maker is None and not comp.info.manufacturer:
        raise InvalidArgument(
            f"{where}.info.manufacturer is required for a component that is in no rack"
        )
    entry, ids = _probe(comp, rack_maker or comp.info.manufacturer, where)
    used = set(taken)
    if comp.info.name:
        set_names(entry, comp.info.name, ids.serial, used)
    else:
        entry["name"] = free_name(ids.type, used)
    return NewComponent(
        id=ids.id,
        entry=entry,
        key=(ids.manufacturer, ids.serial),
        type=ids.type,
        description=ids.description,
    )


def set_names(entry: dict[str, Any], shown: str, serial: str, taken: Iterable[str]) -> None:
    """The entry's object name for the name `shown`, free in the rack, and
    its displayName when the two differ."""
    [obj] = names.component_names([(shown, serial)], taken)
    entry["name"] = obj
    display = names.display_name(shown, obj)
    if display is None:
        entry.pop("displayName", None)
    else:
        entry["displayName"] = display


def bmc_entries(bmcs: Iterable[pb.BMCInfo], where: str) -> list[dict[str, Any]]:
    """BMCs as spec entries (type, canonical MAC, IP when given), validated."""
    probe = pb.Component(type=pb.COMPONENT_TYPE_COMPUTE, info=pb.DeviceInfo(serial_number="-"))
    probe.bmcs.extend(bmcs)
    entry, _ = _probe(probe, "-", where)
    return list(entry.get("bmcs") or [])


def position_entry(pos: pb.RackPosition, where: str = "") -> dict[str, Any]:
    probe = pb.Component(
        type=pb.COMPONENT_TYPE_COMPUTE, info=pb.DeviceInfo(serial_number="-"), position=pos
    )
    entry, _ = _probe(probe, "-", where)
    return dict(entry["position"])


def upsert_bmcs(
    current: Iterable[Mapping[str, Any]], incoming: Iterable[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """BMCs merged by MAC: new ones added, known ones re-typed (and re-addressed when an
    IP is given), none removed. Returns the list and an Op per incoming MAC."""
    wanted = [dict(b) for b in incoming]
    merged = [dict(b) for b in current]
    before = {b["macAddress"]: dict(b) for b in merged}
    by_mac = {b["macAddress"]: b for b in merged}
    for b in wanted:
        mac = b["macAddress"]
        old = by_mac.get(mac)
        if old is None:
            by_mac[mac] = dict(b)
            merged.append(by_mac[mac])
            continue
        old["type"] = b["type"]
        if b.get("ipAddress"):
            old["ipAddress"] = b["ipAddress"]
    ops = {
        b["macAddress"]: (
            Op.ADDED
            if b["macAddress"] not in before
            else Op.NO_CHANGE
            if by_mac[b["macAddress"]] == before[b["macAddress"]]
            else Op.PATCHED
        )
        for b in wanted
    }
    return merged, ops


def entry_from_row(row: Component, name: str) -> dict[str, Any]:
    """A rack spec entry for an inventory row (a component moving into a rack)."""
    entry: dict[str, Any] = {
        "name": name,
        "type": row.type.value,
        "manufacturer": row.manufacturer,
        "serialNumber": row.serial_number,
    }
    if row.display_name:
        entry["displayName"] = row.display_name
    if row.model:
        entry["model"] = row.model
    if row.firmware_version:
        entry["firmwareVersion"] = row.firmware_version
    position = {
        k: v
        for k, v in (
            ("slotId", row.slot_id),
            ("trayIndex", row.tray_index),
            ("hostId", row.host_id),
        )
        if v is not None
    }
    if position:
        entry["position"] = position
    bmcs = []
    for b in row.bmcs:
        bmc: dict[str, Any] = {"type": b.type.value, "macAddress": b.mac_address}
        if b.ip_address:
            bmc["ipAddress"] = b.ip_address
        bmcs.append(bmc)
    if bmcs:
        entry["bmcs"] = bmcs
    if row.external_id:
        entry["coreId"] = row.external_id
    return entry


# --- PatchComponent's request ----------------------------------------------------------------


@dataclass(frozen=True)
class ComponentPatch:
    """What PatchComponent changes; None means "leave as is"."""

    id: uuid.UUID
    firmware_version: str | None = None  # "" clears it
    position: dict[str, Any] | None = None
    description: dict[str, Any] | None = None
    rack_id: uuid.UUID | None = None
    bmcs: tuple[dict[str, Any], ...] = ()


def component_patch(request: pb.PatchComponentRequest) -> ComponentPatch:
    cid = parse_uuid(request.id if request.HasField("id") else None, "id")
    firmware = None
    if request.HasField("firmware_version"):
        firmware = request.firmware_version
        if len(firmware) > 256:
            raise InvalidArgument(
                f"firmware_version is {len(firmware)} characters long; at most 256 allowed"
            )
    return ComponentPatch(
        id=cid,
        firmware_version=firmware,
        position=(position_entry(request.position) if request.HasField("position") else None),
        description=(
            description_object(request.description, "description")
            if request.HasField("description")
            else None
        ),
        rack_id=(
            parse_uuid_text(request.rack_id.id, "rack_id") if request.HasField("rack_id") else None
        ),
        bmcs=tuple(bmc_entries(request.bmcs, "")) if request.bmcs else (),
    )


def patched_entry(entry: Mapping[str, Any], patch: ComponentPatch) -> dict[str, Any]:
    """The spec entry with PatchComponent's spec fields applied."""
    out = copy.deepcopy(dict(entry))
    if patch.firmware_version is not None:
        if patch.firmware_version:
            out["firmwareVersion"] = patch.firmware_version
        else:
            out.pop("firmwareVersion", None)
    if patch.position is not None:
        out["position"] = dict(patch.position)
    if patch.bmcs:
        merged, _ = upsert_bmcs(out.get("bmcs") or [], patch.bmcs)
        out["bmcs"] = merged
    return out
