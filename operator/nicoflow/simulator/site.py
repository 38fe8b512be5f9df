"""The simulated site: GB200 NVL72 racks generated from a rack count and a
seed, or read from a file.

Everything here is pure and deterministic: the same (racks, seed) always gives
the same serials, MACs, BMC addresses and Core IDs, so an exported inventory
matches a simulator started later with the same arguments.

- Serials embed a seed-derived salt and a running index, so they are unique
  within a site and differ between seeds.
- MACs are locally administered unicast (first octet 0x02) with a seed-derived
  prefix and a running counter.
- BMC addresses are 10.64.0.0/10-style private strings; nothing ever dials them.
- Core IDs imitate NICo Core's style: "fm100" + kind + source + 52 base32hex
  characters of a hash (hosts "fm100ht…", DPUs "fm100ds…"); switches and power
  shelves get "fsw100s…" / "fps100s…" in the same spirit."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nicoflow.domain.types import BMCType, ComponentType
from nicoflow.simulator.catalog import (
    COMPUTE_TRAYS_PER_RACK,
    DESIRED_FIRMWARE,
    DPUS_PER_TRAY,
    MANUFACTURER,
    MODELS,
    POWER_SHELVES_PER_RACK,
    RACK_MODEL,
    RACK_PROFILE,
    SHIPPED_FIRMWARE,
    SWITCH_TRAYS_PER_RACK,
    Family,
)

SITE_FORMAT_VERSION = 1
RACKS_PER_ROW = 32
# Compute trays 0-7 sit below the switch trays, 8-17 above; shelves at both ends.
_SHELF_SLOTS = (1, 2, 3, 4, 32, 33, 34, 35)
_SWITCH_FIRST_SLOT = 13
_LOWER_COMPUTE_TRAYS = 8


@dataclass(frozen=True, slots=True)
class Bmc:
    type: BMCType
    mac: str
    ip: str


@dataclass(frozen=True, slots=True)
class Position:
    slot_id: int
    tray_index: int
    host_id: int | None = None


@dataclass(frozen=True, slots=True)
class Dpu:
    core_id: str
    serial: str
    bmc: Bmc
    firmware: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Component:
    """A compute tray (host machine + DPUs), NVLink switch tray or power shelf."""

    name: str
    type: ComponentType
    core_id: str
    serial: str
    manufacturer: str
    model: str
    position: Position
    bmc: Bmc
    firmware: Mapping[str, str]
    expected_id: str
    dpus: tuple[Dpu, ...] = ()
    nvos_ip: str | None = None

    @property
    def bmcs(self) -> list[Bmc]:
        return [self.bmc, *(d.bmc for d in self.dpus)]


@dataclass(frozen=True, slots=True)
class Location:
    region: str
    datacenter: str
    room: str
    position: str


@dataclass(frozen=True, slots=True)
class Rack:
    core_id: str
    name: str
    serial: str
    manufacturer: str
    model: str
    description: str
    location: Location
    components: tuple[Component, ...]
    # False: Core has not ingested this rack yet (bring-up scenarios).
    ingested: bool = True
    profile: str = RACK_PROFILE

    def of_type(self, kind: ComponentType) -> list[Component]:
        return [c for c in self.components if c.type == kind]


@dataclass(frozen=True)
class Site:
    seed: int
    racks: tuple[Rack, ...]
    desired_firmware: Mapping[Family, Mapping[str, str]] = field(
        default_factory=lambda: {f: dict(v) for f, v in DESIRED_FIRMWARE.items()}
    )

    def components(self) -> Iterator[tuple[Rack, Component]]:
        for rack in self.racks:
            for comp in rack.components:
                yield rack, comp

    def counts(self) -> dict[str, int]:
        out = {t.value: 0 for t in FAMILY_TYPES}
        dpus = 0
        for _, comp in self.components():
            out[comp.type.value] += 1
            dpus += len(comp.dpus)
        out["dpu"] = dpus
        out["racks"] = len(self.racks)
        return out


FAMILY_TYPES = (ComponentType.COMPUTE, ComponentType.NVSWITCH, ComponentType.POWERSHELF)


# --- Generation ------------------------------------------------------------------------


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


_B32HEX = "0123456789abcdefghijklmnopqrstuv"
# Every 10-bit value as two base32hex characters: encoding a digest takes 28
# table lookups instead of the stdlib's pure-Python base32 loop.
_B32HEX_PAIRS = [a + b for a in _B32HEX for b in _B32HEX]


def _b32hex(data: bytes) -> str:
    """Unpadded lower-case base32hex of `data` (same text as base64.b32hexencode)."""
    chars = (len(data) * 8 + 4) // 5
    pad = (-len(data)) % 5  # whole 40-bit groups, i.e. whole 10-bit pairs
    n = int.from_bytes(data + bytes(pad), "big")
    bits = (len(data) + pad) * 8
    pairs = [_B32HEX_PAIRS[(n >> s) & 1023] for s in range(bits - 10, -1, -10)]
    return "".join(pairs)[:chars]


def core_style_id(prefix: str, *parts: object) -> str:
    """prefix + 52 lower-case base32hex characters (Core's machine-ID alphabet)."""
    return prefix + _b32hex(_digest(*parts))


def _uuid(*parts: object) -> str:
    return str(uuid.UUID(bytes=_digest(*parts)[:16], version=4))


def row_label(index: int) -> str:
    """0 -> "a", 25 -> "z", 26 -> "aa" (bijective base 26)."""
    label = ""
    n = index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        label = chr(ord("a") + rem) + label
    return label


def rack_label(index: int) -> str:
    row, pos = divmod(index, RACKS_PER_ROW)
    return f"{row_label(row)}{pos + 1:02d}"


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value


class _Generator:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        h = _digest("site", seed)
        self.salt = f"{int.from_bytes(h[:4], 'big') % 10000:04d}"
        self.mac_prefix = h[4:6]
        self.macs = _Counter()
        self.serials = {fam: _Counter() for fam in (*Family, "rack")}

    def serial(self, family: Family | str) -> str:
        n = self.serials[family].next()
        prefix = {
            Family.COMPUTE: "1831",
            Family.NVSWITCH: "1832",
            Family.POWERSHELF: "PS",
            Family.DPU: "MT",
            "rack": "NVR",
        }[family]
        return f"{prefix}{self.salt}{n:07d}"

    def mac(self) -> str:
        n = self.macs.next()
        raw = bytes([0x02, *self.mac_prefix]) + n.to_bytes(3, "big")
        return raw.hex(":")

    def rack(self, index: int, ingested: bool) -> Rack:
        label = rack_label(index)
        row, _ = divmod(index, RACKS_PER_ROW)
        net = f"10.{64 + index // 256}.{index % 256}"
        host_octet = _Counter()

        def ip() -> str:
            return f"{net}.{host_octet.next()}"

        components: list[Component] = []
        for i in range(POWER_SHELVES_PER_RACK):
            serial = self.serial(Family.POWERSHELF)
            components.append(
                Component(
                    name=f"powershelf-{i + 1:02d}",
                    type=ComponentType.POWERSHELF,
                    core_id=core_style_id("fps100s", self.seed, "powershelf", serial),
                    serial=serial,
                    manufacturer=MANUFACTURER,
                    model=MODELS[Family.POWERSHELF],
                    position=Position(slot_id=_SHELF_SLOTS[i], tray_index=i),
                    bmc=Bmc(BMCType.HOST, self.mac(), ip()),
                    firmware=dict(SHIPPED_FIRMWARE[Family.POWERSHELF]),
                    expected_id=_uuid(self.seed, "expected", serial),
                )
            )
        for i in range(SWITCH_TRAYS_PER_RACK):
            serial = self.serial(Family.NVSWITCH)
            components.append(
                Component(
                    name=f"nvswitch-{i + 1:02d}",
                    type=ComponentType.NVSWITCH,
                    core_id=core_style_id("fsw100s", self.seed, "nvswitch", serial),
                    serial=serial,
                    manufacturer=MANUFACTURER,
                    model=MODELS[Family.NVSWITCH],
                    position=Position(slot_id=_SWITCH_FIRST_SLOT + i, tray_index=i),
                    bmc=Bmc(BMCType.HOST, self.mac(), ip()),
                    firmware=dict(SHIPPED_FIRMWARE[Family.NVSWITCH]),
                    expected_id=_uuid(self.seed, "expected", serial),
                    nvos_ip=f"{net}.{200 + i}",
                )
            )
        for i in range(COMPUTE_TRAYS_PER_RACK):
            serial = self.serial(Family.COMPUTE)
            host_bmc = Bmc(BMCType.HOST, self.mac(), ip())
            dpus = []
            for _ in range(DPUS_PER_TRAY):
                dpu_serial = self.serial(Family.DPU)
                dpus.append(
                    Dpu(
                        core_id=core_style_id("fm100ds", self.seed, "dpu", dpu_serial),
                        serial=dpu_serial,
                        bmc=Bmc(BMCType.DPU, self.mac(), ip()),
                        firmware=dict(SHIPPED_FIRMWARE[Family.DPU]),
                    )
                )
            if i < _LOWER_COMPUTE_TRAYS:
                slot = _SHELF_SLOTS[3] + 1 + i
            else:
                slot = _SWITCH_FIRST_SLOT + SWITCH_TRAYS_PER_RACK + (i - _LOWER_COMPUTE_TRAYS)
            components.append(
                Component(
                    name=f"compute-{i + 1:02d}",
                    type=ComponentType.COMPUTE,
                    core_id=core_style_id("fm100ht", self.seed, "host", serial),
                    serial=serial,
                    manufacturer=MANUFACTURER,
                    model=MODELS[Family.COMPUTE],
                    position=Position(slot_id=slot, tray_index=i, host_id=i + 1),
                    bmc=host_bmc,
                    firmware=dict(SHIPPED_FIRMWARE[Family.COMPUTE]),
                    expected_id=_uuid(self.seed, "expected", serial),
                    dpus=tuple(dpus),
                )
            )
        return Rack(
            core_id=f"rack-{label}",
            name=f"rack-{label}",
            serial=self.serial("rack"),
            manufacturer=MANUFACTURER,
            model=RACK_MODEL,
            description=f"Simulated {RACK_MODEL} rack {label}",
            location=Location(
                region="sim-region-1",
                datacenter="sim-dc-1",
                room=f"hall-{1 + row // 8}",
                position=label,
            ),
            components=tuple(components),
            ingested=ingested,
        )


def generate_site(racks: int, seed: int = 0, *, uningested: int = 0) -> Site:
    """`racks` GB200 NVL72 racks; the last `uningested` of them are not yet
    known to Core (no expected inventory, no machines) for bring-up runs."""
    if racks < 0:
        raise ValueError("racks must not be negative")
    if not 0 <= uningested <= racks:
        raise ValueError("uningested must be between 0 and the number of racks")
    gen = _Generator(seed)
    first_new = racks - uningested
    return Site(seed=seed, racks=tuple(gen.rack(i, i < first_new) for i in range(racks)))


# --- Files -----------------------------------------------------------------------------


def _bmc_dict(b: Bmc) -> dict[str, Any]:
    return {"type": b.type.value, "mac": b.mac, "ip": b.ip}


def _position_dict(p: Position) -> dict[str, Any]:
    out: dict[str, Any] = {"slot_id": p.slot_id, "tray_index": p.tray_index}
    if p.host_id is not None:
        out["host_id"] = p.host_id
    return out


def _component_dict(c: Component) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": c.name,
        "type": c.type.value,
        "id": c.core_id,
        "serial_number": c.serial,
        "manufacturer": c.manufacturer,
        "model": c.model,
        "position": _position_dict(c.position),
        "bmc": _bmc_dict(c.bmc),
        "firmware": dict(c.firmware),
        "expected_id": c.expected_id,
    }
    if c.nvos_ip:
        out["nvos_ip"] = c.nvos_ip
    if c.dpus:
        out["dpus"] = [
            {
                "id": d.core_id,
                "serial_number": d.serial,
                "bmc": _bmc_dict(d.bmc),
                "firmware": dict(d.firmware),
            }
            for d in c.dpus
        ]
    return out


def site_to_dict(site: Site) -> dict[str, Any]:
    return {
        "version": SITE_FORMAT_VERSION,
        "seed": site.seed,
        "desired_firmware": {f.value: dict(v) for f, v in site.desired_firmware.items()},
        "racks": [
            {
                "id": r.core_id,
                "name": r.name,
                "serial_number": r.serial,
                "manufacturer": r.manufacturer,
                "model": r.model,
                "description": r.description,
                "profile": r.profile,
                "ingested": r.ingested,
                "location": {
                    "region": r.location.region,
                    "datacenter": r.location.datacenter,
                    "room": r.location.room,
                    "position": r.location.position,
                },
                "components": [_component_dict(c) for c in r.components],
            }
            for r in site.racks
        ],
    }


class SiteFileError(ValueError):
    pass


def _req(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise SiteFileError(f"{where}: missing {key!r}")
    return d[key]


def _bmc_from(d: Mapping[str, Any], where: str, default: BMCType) -> Bmc:
    return Bmc(
        BMCType(d.get("type", default.value)),
        str(_req(d, "mac", where)).lower(),
        str(_req(d, "ip", where)),
    )


def _versions(d: Any, where: str) -> dict[str, str]:
    if not isinstance(d, Mapping):
        raise SiteFileError(f"{where}: firmware must be a mapping of part -> version")
    return {str(k): str(v) for k, v in d.items()}


def _component_from(d: Mapping[str, Any], where: str) -> Component:
    kind = ComponentType.parse(str(_req(d, "type", where)))
    if kind not in FAMILY_TYPES:
        raise SiteFileError(f"{where}: the simulator models {', '.join(FAMILY_TYPES)} only")
    pos = d.get("position") or {}
    dpus = tuple(
        Dpu(
            core_id=str(_req(x, "id", f"{where}.dpus[{i}]")),
            serial=str(_req(x, "serial_number", f"{where}.dpus[{i}]")),
            bmc=_bmc_from(_req(x, "bmc", f"{where}.dpus[{i}]"), where, BMCType.DPU),
            firmware=_versions(x.get("firmware", {}), where),
        )
        for i, x in enumerate(d.get("dpus") or [])
    )
    serial = str(_req(d, "serial_number", where))
    return Component(
        name=str(_req(d, "name", where)),
        type=kind,
        core_id=str(_req(d, "id", where)),
        serial=serial,
        manufacturer=str(d.get("manufacturer", MANUFACTURER)),
        model=str(d.get("model", "")),
        position=Position(
            slot_id=int(pos.get("slot_id", 0)),
            tray_index=int(pos.get("tray_index", 0)),
            host_id=None if pos.get("host_id") is None else int(pos["host_id"]),
        ),
        bmc=_bmc_from(_req(d, "bmc", where), where, BMCType.HOST),
        firmware=_versions(d.get("firmware", {}), where),
        expected_id=str(d.get("expected_id") or _uuid("expected", serial)),
        dpus=dpus,
        nvos_ip=d.get("nvos_ip"),
    )


def site_from_dict(data: Mapping[str, Any]) -> Site:
    version = data.get("version", SITE_FORMAT_VERSION)
    if version != SITE_FORMAT_VERSION:
        raise SiteFileError(f"unsupported site file version {version!r}")
    if "racks" in data and isinstance(data["racks"], int):
        # Shorthand: {racks: N, seed: S, uningested: K}
        return generate_site(
            data["racks"], int(data.get("seed", 0)), uningested=int(data.get("uningested", 0))
        )
    racks = []
    for i, r in enumerate(_req(data, "racks", "site")):
        where = f"racks[{i}]"
        loc = r.get("location") or {}
        racks.append(
            Rack(
                core_id=str(_req(r, "id", where)),
                name=str(r.get("name") or r["id"]),
                serial=str(_req(r, "serial_number", where)),
                manufacturer=str(r.get("manufacturer", MANUFACTURER)),
                model=str(r.get("model", RACK_MODEL)),
                description=str(r.get("description", "")),
                location=Location(
                    region=str(loc.get("region", "")),
                    datacenter=str(loc.get("datacenter", "")),
                    room=str(loc.get("room", "")),
                    position=str(loc.get("position", "")),
                ),
                components=tuple(
                    _component_from(c, f"{where}.components[{j}]")
                    for j, c in enumerate(r.get("components") or [])
                ),
                ingested=bool(r.get("ingested", True)),
                profile=str(r.get("profile", RACK_PROFILE)),
            )
        )
    desired = {f: dict(v) for f, v in DESIRED_FIRMWARE.items()}
    for fam, versions in (data.get("desired_firmware") or {}).items():
        desired[Family(fam)] = _versions(versions, f"desired_firmware.{fam}")
    site = Site(seed=int(data.get("seed", 0)), racks=tuple(racks), desired_firmware=desired)
    check_unique(site)
    return site


def check_unique(site: Site) -> None:
    """Core IDs, serials, MACs and BMC IPs must each be unique across the site."""
    seen: dict[str, set[str]] = {"id": set(), "serial": set(), "mac": set(), "ip": set()}

    def add(kind: str, value: str, where: str) -> None:
        if value in seen[kind]:
            raise SiteFileError(f"duplicate {kind} {value!r} ({where})")
        seen[kind].add(value)

    rack_ids: set[str] = set()
    for rack in site.racks:
        if rack.core_id in rack_ids:
            raise SiteFileError(f"duplicate rack id {rack.core_id!r}")
        rack_ids.add(rack.core_id)
        for comp in rack.components:
            where = f"{rack.core_id}/{comp.name}"
            add("id", comp.core_id, where)
            add("serial", comp.serial, where)
            for d in comp.dpus:
                add("id", d.core_id, where)
                add("serial", d.serial, where)
            for b in comp.bmcs:
                add("mac", b.mac, where)
                add("ip", b.ip, where)


def dump_site(site: Site, path: Path) -> None:
    """JSON for *.json, YAML otherwise."""
    data = site_to_dict(site)
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=1) + "\n")
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False))


def load_site(path: Path) -> Site:
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise SiteFileError(f"{path}: expected a mapping at the top level")
    return site_from_dict(data)
