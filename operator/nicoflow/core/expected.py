"""Core's expected inventory as Rack objects.

NICo Core can hold the expected inventory (racks, machines, switches, power
shelves, as ingested from a site plan). When asked to, Flow mirrors the racks
Core expects and Flow has no Rack object for into new Rack objects, so a site
whose plan lives in Core needs no hand-written Racks. It only ever creates:
a Rack that exists (by Core id, serial number or name) belongs to whoever
made it and is left alone, and a rack whose components another Rack already
lists is skipped rather than made to conflict.

`read_expected_inventory` does the I/O (six read RPCs); everything else here
is pure: `expected_rack_objects` turns what Core expects, the Racks that exist
and the latest observation (for Core ids) into the Rack objects to create."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from nicoflow._proto.nico import forge_pb2
from nicoflow.api.common import API_VERSION, GROUP, LABEL_VALUE_MAX
from nicoflow.api.rack import (
    BMC,
    MAX_COMPONENTS,
    ComponentPosition,
    RackComponent,
    RackIdentity,
    RackLocation,
    RackSpec,
)
from nicoflow.core.client import CoreClient
from nicoflow.domain.observations import SiteObservation, canonical_mac
from nicoflow.domain.types import BMCType, ComponentType

LABEL_SOURCE = f"{GROUP}/source"
SOURCE_CORE = "core"
ANNOTATION_CORE_RACK = f"{GROUP}/core-rack-id"

# Rack labels in Core's ExpectedRack metadata, and the component labels.
RACK_MANUFACTURER = "chassis.manufacturer"
RACK_SERIAL = "chassis.serial-number"
RACK_MODEL = "chassis.model"
LOCATION_LABELS = {
    "region": "location.region",
    "datacenter": "location.datacenter",
    "room": "location.room",
    "position": "location.position",
}
POSITION_LABELS = {"slot_id": "slot_id", "tray_index": "tray_idx", "host_id": "host_id"}
POSITION_MAX = 1024

# The order components are listed in a mirrored Rack (as racks are powered up).
TYPE_ORDER = (ComponentType.POWERSHELF, ComponentType.NVSWITCH, ComponentType.COMPUTE)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_INVALID = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class CoreExpectedRack:
    core_id: str
    name: str = ""
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CoreExpectedComponent:
    """One expected machine, switch or power shelf."""

    type: ComponentType
    serial: str
    rack_core_id: str | None = None
    bmc_mac: str | None = None  # canonical (see canonical_mac)
    bmc_ip: str | None = None
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    core_id: str | None = None  # Core's switch / power-shelf id when Core linked it


@dataclass(frozen=True)
class ExpectedInventory:
    racks: tuple[CoreExpectedRack, ...] = ()
    components: tuple[CoreExpectedComponent, ...] = ()


# --- reading Core -----------------------------------------------------------------------


def _labels(metadata: forge_pb2.Metadata) -> dict[str, str]:
    return {lb.key: lb.value for lb in metadata.labels if lb.key}


def _linked_ids(entries: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """MAC and serial -> Core id, from (mac, serial, id) of a linked list."""
    out: dict[str, str] = {}
    for mac, serial, core_id in entries:
        if not core_id:
            continue
        key = canonical_mac(mac)
        if key:
            out.setdefault(key, core_id)
        if serial:
            out.setdefault(f"serial:{serial.strip()}", core_id)
    return out


def _linked(links: Mapping[str, str], mac: str | None, serial: str) -> str | None:
    return (links.get(mac) if mac else None) or links.get(f"serial:{serial.strip()}")


def inventory_from_messages(
    racks: forge_pb2.ExpectedRackList,
    machines: forge_pb2.ExpectedMachineList,
    switches: forge_pb2.ExpectedSwitchList,
    shelves: forge_pb2.ExpectedPowerShelfList,
    linked_switches: forge_pb2.LinkedExpectedSwitchList,
    linked_shelves: forge_pb2.LinkedExpectedPowerShelfList,
) -> ExpectedInventory:
    """Core's messages in Flow's terms (pure)."""
    switch_ids = _linked_ids(
        (e.bmc_mac_address, e.switch_serial_number, e.switch_id.id)
        for e in linked_switches.expected_switches
        if e.HasField("switch_id")
    )
    shelf_ids = _linked_ids(
        (e.bmc_mac_address, e.shelf_serial_number, e.power_shelf_id.id)
        for e in linked_shelves.expected_power_shelves
        if e.HasField("power_shelf_id")
    )
    out_racks = tuple(
        CoreExpectedRack(
            core_id=r.rack_id.id,
            name=r.metadata.name,
            description=r.metadata.description,
            labels=_labels(r.metadata),
        )
        for r in racks.expected_racks
        if r.HasField("rack_id") and r.rack_id.id
    )
    comps: list[CoreExpectedComponent] = []
    for m in machines.expected_machines:
        comps.append(
            CoreExpectedComponent(
                type=ComponentType.COMPUTE,
                serial=m.chassis_serial_number,
                rack_core_id=m.rack_id.id if m.HasField("rack_id") else None,
                bmc_mac=canonical_mac(m.bmc_mac_address),
                bmc_ip=m.bmc_ip_address if m.HasField("bmc_ip_address") else None,
                name=m.metadata.name,
                labels=_labels(m.metadata),
            )
        )
    for s in switches.expected_switches:
        mac = canonical_mac(s.bmc_mac_address)
        comps.append(
            CoreExpectedComponent(
                type=ComponentType.NVSWITCH,
                serial=s.switch_serial_number,
                rack_core_id=s.rack_id.id if s.HasField("rack_id") else None,
                bmc_mac=mac,
                bmc_ip=s.bmc_ip_address or None,
                name=s.metadata.name,
                labels=_labels(s.metadata),
                core_id=_linked(switch_ids, mac, s.switch_serial_number),
            )
        )
    for p in shelves.expected_power_shelves:
        mac = canonical_mac(p.bmc_mac_address)
        comps.append(
            CoreExpectedComponent(
                type=ComponentType.POWERSHELF,
                serial=p.shelf_serial_number,
                rack_core_id=p.rack_id.id if p.HasField("rack_id") else None,
                bmc_mac=mac,
                bmc_ip=p.bmc_ip_address or None,
                name=p.metadata.name,
                labels=_labels(p.metadata),
                core_id=_linked(shelf_ids, mac, p.shelf_serial_number),
            )
        )
    return ExpectedInventory(out_racks, tuple(comps))


async def read_expected_inventory(client: CoreClient) -> ExpectedInventory:
    """Everything Core expects. Raises CoreError when any list cannot be read:
    half an inventory would make whole racks look smaller than they are."""
    results = await asyncio.gather(
        client.get_all_expected_racks(),
        client.get_all_expected_machines(),
        client.get_all_expected_switches(),
        client.get_all_expected_power_shelves(),
        client.get_all_expected_switches_linked(),
        client.get_all_expected_power_shelves_linked(),
    )
    return inventory_from_messages(*results)


# --- Rack objects ---------------------------------------------------------------------


@dataclass(frozen=True)
class MirroredRack:
    """A Rack object to create for a rack Core expects."""

    name: str
    core_id: str
    body: dict[str, Any]
    components: int


@dataclass(frozen=True)
class MirrorPlan:
    create: tuple[MirroredRack, ...] = ()
    # Why a rack Core expects is not created (one line each, for the log).
    skipped: tuple[str, ...] = ()


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _position(labels: Mapping[str, str]) -> ComponentPosition | None:
    values: dict[str, int] = {}
    for attr, key in POSITION_LABELS.items():
        try:
            n = int(labels.get(key, "").strip())
        except ValueError:
            continue
        if 0 <= n <= POSITION_MAX:
            values[attr] = n
    return ComponentPosition(**values) if values else None


def _ip(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return None


def dns_label(raw: str, fallback_seed: str) -> str:
    """`raw` when it is a valid DNS label, else a cleaned form of it; a hash of
    `fallback_seed` keeps cleaned names of different inputs apart."""
    if _DNS_LABEL.fullmatch(raw) and len(raw) <= LABEL_VALUE_MAX:
        return raw
    cleaned = _INVALID.sub("-", raw.lower()).strip("-")
    digest = hashlib.sha256(fallback_seed.encode()).hexdigest()[:8]
    room = LABEL_VALUE_MAX - len(digest) - 1
    cleaned = cleaned[:room].strip("-")
    return f"{cleaned}-{digest}" if cleaned else f"rack-{digest}"


def _sort_key(c: CoreExpectedComponent) -> tuple[int, int, int, str]:
    pos = _position(c.labels)
    tray = pos.tray_index if pos and pos.tray_index is not None else POSITION_MAX + 1
    slot = pos.slot_id if pos and pos.slot_id is not None else POSITION_MAX + 1
    return (
        TYPE_ORDER.index(c.type) if c.type in TYPE_ORDER else len(TYPE_ORDER),
        tray,
        slot,
        c.serial,
    )


def _observed_ids(obs: SiteObservation | None) -> dict[tuple[ComponentType, str], str]:
    """(type, serial or MAC) -> Core id, from what Core reported this pass."""
    out: dict[tuple[ComponentType, str], str] = {}
    if obs is None:
        return out
    for tobs in obs.types.values():
        if not tobs.ok:
            continue
        for a in tobs.components:
            if a.serial:
                out.setdefault((a.type, f"serial:{a.serial.strip()}"), a.core_id)
            if a.bmc_mac:
                out.setdefault((a.type, a.bmc_mac), a.core_id)
    return out


def rack_spec(
    rack: CoreExpectedRack,
    components: Sequence[CoreExpectedComponent],
    observed_ids: Mapping[tuple[ComponentType, str], str] | None = None,
) -> tuple[RackSpec | None, list[str]]:
    """The Rack spec for one rack Core expects, and what had to be left out.

    None when the rack cannot be identified (Core gives no manufacturer or
    serial number) or the spec would not be valid."""
    where = f"Core rack {rack.core_id}"
    manufacturer = _text(rack.labels.get(RACK_MANUFACTURER))
    serial = _text(rack.labels.get(RACK_SERIAL))
    if manufacturer is None or serial is None:
        return None, [f"{where}: no {RACK_MANUFACTURER} / {RACK_SERIAL} label; cannot identify it"]
    ids = observed_ids or {}
    notes: list[str] = []
    out: list[RackComponent] = []
    names: set[str] = set()
    serials: set[str] = set()
    macs: set[str] = set()
    counters: dict[ComponentType, int] = defaultdict(int)
    for c in sorted(components, key=_sort_key):
        counters[c.type] += 1
        comp_serial = _text(c.serial)
        if comp_serial is None:
            notes.append(f"{where}: a {c.type.value} without a serial number left out")
            continue
        if comp_serial in serials:
            notes.append(f"{where}: {c.type.value} {comp_serial} listed twice; kept once")
            continue
        name = c.name.strip()
        if not (_DNS_LABEL.fullmatch(name) and len(name) <= LABEL_VALUE_MAX) or name in names:
            name = f"{c.type.value}-{counters[c.type]:02d}"
            while name in names:
                counters[c.type] += 1
                name = f"{c.type.value}-{counters[c.type]:02d}"
        bmcs = []
        if c.bmc_mac and c.bmc_mac not in macs:
            bmcs.append(BMC(type=BMCType.HOST, mac_address=c.bmc_mac, ip_address=_ip(c.bmc_ip)))
            macs.add(c.bmc_mac)
        core_id = (
            c.core_id
            or ids.get((c.type, f"serial:{comp_serial}"))
            or (ids.get((c.type, c.bmc_mac)) if c.bmc_mac else None)
        )
        try:
            out.append(
                RackComponent(
                    name=name,
                    type=c.type,
                    manufacturer=_text(c.labels.get("manufacturer")),
                    model=_text(c.labels.get("model")),
                    serial_number=comp_serial,
                    position=_position(c.labels),
                    bmcs=bmcs or None,
                    core_id=core_id,
                )
            )
        except ValidationError as exc:
            notes.append(
                f"{where}: {c.type.value} {comp_serial} left out: {exc.errors()[0]['msg']}"
            )
            continue
        names.add(name)
        serials.add(comp_serial)
    if len(out) > MAX_COMPONENTS:
        return None, [*notes, f"{where}: {len(out)} components, more than a Rack holds"]
    location = {attr: _text(rack.labels.get(key)) for attr, key in LOCATION_LABELS.items()}
    try:
        spec = RackSpec(
            identity=RackIdentity(
                manufacturer=manufacturer,
                serial_number=serial,
                model=_text(rack.labels.get(RACK_MODEL)),
                description=_text(rack.description),
            ),
            location=RackLocation(**location) if any(location.values()) else None,
            core_id=rack.core_id,
            components=out,
        )
    except ValidationError as exc:
        return None, [*notes, f"{where}: not a valid Rack: {exc.errors()[0]['msg']}"]
    return spec, notes


@dataclass(frozen=True)
class _Existing:
    names: frozenset[str]
    core_ids: frozenset[str]
    identities: frozenset[tuple[str, str]]
    # component (manufacturer or "", serial) -> the Rack listing it
    components: Mapping[tuple[str, str], str]


def _existing(racks: Iterable[Mapping[str, Any]]) -> _Existing:
    names: set[str] = set()
    core_ids: set[str] = set()
    identities: set[tuple[str, str]] = set()
    components: dict[tuple[str, str], str] = {}
    for body in racks:
        name = str((body.get("metadata") or {}).get("name") or "")
        spec = body.get("spec") or {}
        names.add(name)
        if spec.get("coreId"):
            core_ids.add(str(spec["coreId"]))
        ident = spec.get("identity") or {}
        maker = str(ident.get("manufacturer") or "")
        identities.add((maker, str(ident.get("serialNumber") or "")))
        for comp in spec.get("components") or []:
            serial = str(comp.get("serialNumber") or "")
            components[(str(comp.get("manufacturer") or maker), serial)] = name
    return _Existing(frozenset(names), frozenset(core_ids), frozenset(identities), components)


def expected_rack_objects(
    inventory: ExpectedInventory,
    existing_racks: Iterable[Mapping[str, Any]],
    obs: SiteObservation | None = None,
) -> MirrorPlan:
    """The Rack objects to create: one per rack Core expects that no existing
    Rack names (by Core id, manufacturer + serial number, or name) and whose
    components no existing Rack lists. `obs` supplies Core ids of compute
    trays (the expected-machine list has none)."""
    have = _existing(existing_racks)
    by_rack: dict[str, list[CoreExpectedComponent]] = defaultdict(list)
    for c in inventory.components:
        if c.rack_core_id:
            by_rack[c.rack_core_id].append(c)
    ids = _observed_ids(obs)
    create: list[MirroredRack] = []
    skipped: list[str] = []
    taken = set(have.names)
    for rack in sorted(inventory.racks, key=lambda r: r.core_id):
        if rack.core_id in have.core_ids:
            continue  # Flow has it: the common case, nothing to say
        spec, notes = rack_spec(rack, by_rack.get(rack.core_id, ()), ids)
        if spec is None:
            skipped.extend(notes)
            continue
        ident = spec.identity
        if (ident.manufacturer, ident.serial_number) in have.identities:
            continue  # a Rack without the Core id describes it already
        clash = next(
            (
                (c.serial_number, have.components[key])
                for c in spec.components
                if (key := (c.manufacturer or ident.manufacturer, c.serial_number))
                in have.components
            ),
            None,
        )
        if clash is not None:
            skipped.append(
                f"Core rack {rack.core_id}: component {clash[0]} is already in Rack {clash[1]}"
            )
            continue
        name = dns_label(rack.name or rack.core_id, rack.core_id)
        if name in taken:
            skipped.append(f"Core rack {rack.core_id}: a Rack named {name} exists already")
            continue
        taken.add(name)
        skipped.extend(notes)
        body = {
            "apiVersion": API_VERSION,
            "kind": "Rack",
            "metadata": {
                "name": name,
                "labels": {LABEL_SOURCE: SOURCE_CORE},
                "annotations": {ANNOTATION_CORE_RACK: rack.core_id},
            },
            "spec": spec.to_k8s(),
        }
        create.append(MirroredRack(name, rack.core_id, body, len(spec.components)))
    return MirrorPlan(tuple(create), tuple(skipped))
