"""PatchRack's merge, decided without I/O: a v1 Rack message over a Rack object's spec.

Non-empty fields of the message replace the rack's; components are matched
by id, else by manufacturer and serial number; a known one is patched with
its non-empty fields and its BMCs merged by MAC (never removed), an unknown
one is added (with its id, the id of an unassigned component it adopts, or a
new one), and one whose type is not a known component type is skipped and
reported as InvalidType. The report lists what happened to each, as the
original's JSON did. The rack's name is its Rack object's name and cannot
change here."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.api.rack import RackSpec
from nicoflow.domain import names
from nicoflow.domain.rules import describe_validation_error
from nicoflow.service.component_spec import (
    Key,
    NewComponent,
    Op,
    bmc_entries,
    entry_key,
    new_component,
    position_entry,
    upsert_bmcs,
)
from nicoflow.service.enums import COMPONENT_TYPES
from nicoflow.service.errors import InvalidArgument
from nicoflow.service.rack_body import description_json
from nicoflow.service.validation import parse_uuid_text


@dataclass(frozen=True)
class KnownRow:
    """An inventory row of the rack (or an unassigned one it may adopt)."""

    id: uuid.UUID
    description: dict[str, Any] = field(default_factory=dict)


@dataclass
class RackPatchPlan:
    spec: dict[str, Any]
    report: dict[str, Any]
    added: list[NewComponent] = field(default_factory=list)
    rekeyed: dict[uuid.UUID, Key] = field(default_factory=dict)  # id -> new key
    descriptions: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)


def serial_info(key: Key) -> dict[str, str]:
    return {"manufacturer": key[0], "serial_number": key[1]}


def no_existing_rack(request: pb.Rack) -> dict[str, Any]:
    info = request.info
    return {
        "rack_id": info.id.id if info.HasField("id") else "",
        "rack_serial_info": serial_info((info.manufacturer, info.serial_number)),
        "rack_report": Op.NO_EXISTING_RACK,
        "components": [],
    }


def _patch_rack_fields(request: pb.Rack, name: str, spec: dict[str, Any]) -> bool:
    info = request.info
    if info.name and info.name != name:
        raise InvalidArgument(
            f"rack.info.name {info.name!r} differs from the rack's name {name!r}; a rack's name "
            "cannot change (leave it empty, or give the same)"
        )
    ident = spec["identity"]
    changed = False
    old_maker = ident["manufacturer"]
    for value, key in (
        (info.manufacturer, "manufacturer"),
        (info.serial_number, "serialNumber"),
        (info.model, "model"),
        (info.description, "description"),
    ):
        if value and ident.get(key) != value:
            ident[key] = value
            changed = True
    if ident["manufacturer"] != old_maker:
        # components that inherit the rack's manufacturer keep their inventory key
        for entry in spec.get("components") or []:
            entry.setdefault("manufacturer", old_maker)
    if request.HasField("location"):
        loc = request.location
        for value, key in (
            (loc.region, "region"),
            (loc.datacenter, "datacenter"),
            (loc.room, "room"),
            (loc.position, "position"),
        ):
            location = spec.setdefault("location", {})
            if value and location.get(key) != value:
                location[key] = value
                changed = True
        if not spec.get("location"):
            spec.pop("location", None)
    return changed


def _patch_entry(
    entry: dict[str, Any], comp: pb.Component, taken: set[str], maker: str, where: str
) -> dict[str, str]:
    """Apply the message's non-empty fields to a known entry; returns BMC ops."""
    info = comp.info
    if info.name and info.name != (entry.get("displayName") or entry["name"]):
        problem = names.problem(info.name, f"{where}.info.name")
        if problem is not None:
            raise InvalidArgument(problem)
        # a rename changes what clients see; the object name (which Tasks
        # refer to) stays
        if info.name == entry["name"]:
            entry.pop("displayName", None)
        else:
            entry["displayName"] = info.name
    if comp.type in COMPONENT_TYPES:
        entry["type"] = COMPONENT_TYPES[comp.type].value
    if info.manufacturer and entry_key(entry, maker)[0] != info.manufacturer:
        entry["manufacturer"] = info.manufacturer
    if info.serial_number and entry["serialNumber"] != info.serial_number:
        entry["serialNumber"] = info.serial_number
    if info.HasField("model") and info.model:
        entry["model"] = info.model
    if comp.firmware_version:
        entry["firmwareVersion"] = comp.firmware_version
    if comp.HasField("position"):
        entry["position"] = position_entry(comp.position, where)
    if comp.component_id:
        entry["coreId"] = comp.component_id
    if not comp.bmcs:
        return {}
    merged, ops = upsert_bmcs(entry.get("bmcs") or [], bmc_entries(comp.bmcs, where))
    entry["bmcs"] = merged
    return ops


def plan_rack_patch(
    request: pb.Rack,
    obj: Mapping[str, Any],
    rack_id: uuid.UUID,
    rows: Mapping[Key, KnownRow],
    adoptable: Mapping[Key, KnownRow],
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> RackPatchPlan:
    """The new spec, the rows to add, re-key and describe, and the report.

    rows: the rack's live components by key; adoptable: unassigned live
    components holding serial numbers the request names."""
    spec = copy.deepcopy(dict(obj.get("spec") or {}))
    name = str(spec["identity"].get("displayName") or obj["metadata"]["name"])
    rack_changed = _patch_rack_fields(request, name, spec)
    maker = spec["identity"]["manufacturer"]
    entries: list[dict[str, Any]] = spec.setdefault("components", [])
    ids: list[uuid.UUID | None] = []
    for entry in entries:
        row = rows.get(entry_key(entry, maker))
        ids.append(row.id if row else None)
    descriptions = {row.id: row.description for row in rows.values()}
    taken = {str(e["name"]) for e in entries}
    plan = RackPatchPlan(spec=spec, report={})
    reports: list[dict[str, Any]] = []

    for n, comp in enumerate(request.components):
        where = f"rack.components[{n}]"
        info = comp.info
        cid = (
            parse_uuid_text(info.id.id, f"{where}.info.id")
            if info.HasField("id") and info.id.id
            else None
        )
        index = ids.index(cid) if cid is not None and cid in ids else None
        if index is None and info.serial_number:
            want = (info.manufacturer or maker, info.serial_number)
            index = next((i for i, e in enumerate(entries) if entry_key(e, maker) == want), None)
        known_type = comp.type in COMPONENT_TYPES
        if not known_type and (index is None or comp.type != pb.COMPONENT_TYPE_UNKNOWN):
            reports.append(
                {
                    "component_id": str(cid) if cid else "",
                    "component_serial_info": serial_info(
                        (info.manufacturer or maker, info.serial_number)
                    ),
                    "component_report": Op.INVALID_TYPE,
                    "bmc_reports": {},
                }
            )
            continue
        description = (
            description_json(info.description)
            if info.HasField("description") and info.description
            else None
        )
        if index is None:
            new = new_component(comp, maker, taken, where)
            if new.key in adoptable:
                new = dataclasses.replace(new, id=adoptable[new.key].id)
            elif cid is None:
                new = dataclasses.replace(new, id=new_id())
            taken.add(new.entry["name"])
            entries.append(new.entry)
            ids.append(new.id)
            plan.added.append(new)
            if description is not None:
                plan.descriptions[new.id] = description
            reports.append(
                {
                    "component_id": str(new.id),
                    "component_serial_info": serial_info(new.key),
                    "component_report": Op.ADDED,
                    "bmc_reports": {b["macAddress"]: Op.ADDED for b in new.entry.get("bmcs", [])},
                }
            )
            continue
        entry = entries[index]
        before = copy.deepcopy(entry)
        old_key = entry_key(entry, maker)
        bmc_ops = _patch_entry(entry, comp, taken, maker, where)
        row_id = ids[index]
        new_key = entry_key(entry, maker)
        if row_id is not None and new_key != old_key:
            plan.rekeyed[row_id] = new_key
        described = (
            row_id is not None
            and description is not None
            and descriptions.get(row_id) != description
        )
        if described and row_id is not None and description is not None:
            plan.descriptions[row_id] = description
        reports.append(
            {
                "component_id": str(row_id) if row_id else "",
                "component_serial_info": serial_info(new_key),
                "component_report": Op.PATCHED if entry != before or described else Op.NO_CHANGE,
                "bmc_reports": bmc_ops,
            }
        )

    if not entries:
        spec.pop("components", None)
    try:
        RackSpec.model_validate(spec)
    except ValidationError as exc:
        raise InvalidArgument("rack: " + "; ".join(describe_validation_error(exc))) from None
    ident = spec["identity"]
    plan.report = {
        "rack_id": str(rack_id),
        "rack_serial_info": serial_info((ident["manufacturer"], ident["serialNumber"])),
        "rack_report": Op.PATCHED if rack_changed else Op.NO_CHANGE,
        "components": reports,
    }
    return plan
