"""Compare the expected inventory of one component type with what Core reports.

Pure: rows in, matches and drift out. Matching tries Core's id first (the
id the inventory already holds), then the serial number, then the BMC MAC,
each Core component being claimed at most once; ids first so a serial or MAC
match can never take a Core component another expected component names by id.

Every drift row names its rack where one is known: the expected component's
rack, or for a component nobody expects, the rack Core places it in (when Flow
knows that rack by its Core id), else the rack whose expected layout has a
component with its serial number or BMC MAC."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nicoflow.domain.observations import ObservedComponent, TypeObservation
from nicoflow.domain.types import ComponentType
from nicoflow.inventory.models import DriftType

MISSING_VALUE = "<missing>"
UNSET_VALUE = "<unset>"


class MatchedBy(StrEnum):
    EXTERNAL_ID = "external_id"
    SERIAL = "serial"
    MAC = "mac"


@dataclass(frozen=True)
class ExpectedComponent:
    """The fields of an inventory component the comparison needs."""

    id: uuid.UUID
    type: ComponentType
    name: str
    serial: str
    external_id: str | None = None
    macs: tuple[str, ...] = ()
    slot_id: int | None = None
    tray_index: int | None = None
    host_id: int | None = None
    firmware_version: str | None = None
    rack: str | None = None
    rack_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Match:
    expected: ExpectedComponent
    actual: ObservedComponent
    by: MatchedBy


@dataclass(frozen=True)
class FieldDiff:
    field_name: str
    expected_value: str
    actual_value: str

    def to_json(self) -> dict[str, str]:
        return {
            "field_name": self.field_name,
            "expected_value": self.expected_value,
            "actual_value": self.actual_value,
        }


@dataclass(frozen=True)
class Drift:
    component_type: ComponentType
    drift_type: DriftType
    component_id: uuid.UUID | None  # None for unexpected
    external_id: str | None
    diffs: tuple[FieldDiff, ...] = ()
    rack_id: uuid.UUID | None = None

    def diffs_json(self) -> list[dict[str, Any]]:
        return [d.to_json() for d in self.diffs]


@dataclass(frozen=True)
class Comparison:
    matches: tuple[Match, ...] = ()
    missing: tuple[ExpectedComponent, ...] = ()
    unexpected: tuple[ObservedComponent, ...] = ()
    drift: tuple[Drift, ...] = field(default=())


def match_components(
    expected: Sequence[ExpectedComponent], actual: Sequence[ObservedComponent]
) -> tuple[list[Match], list[ExpectedComponent], list[ObservedComponent]]:
    """(matches, expected without a Core component, Core components nobody expects)."""
    by_id: dict[str, ObservedComponent] = {}
    by_serial: dict[str, ObservedComponent] = {}
    by_mac: dict[str, ObservedComponent] = {}
    for a in actual:
        by_id.setdefault(a.core_id, a)
        if a.serial:
            by_serial.setdefault(a.serial.strip(), a)
        if a.bmc_mac:
            by_mac.setdefault(a.bmc_mac, a)
    taken: set[str] = set()
    matched: dict[uuid.UUID, Match] = {}

    def claim(e: ExpectedComponent, a: ObservedComponent | None, by: MatchedBy) -> None:
        if a is not None and a.core_id not in taken and e.id not in matched:
            taken.add(a.core_id)
            matched[e.id] = Match(e, a, by)

    for e in expected:
        if e.external_id:
            claim(e, by_id.get(e.external_id), MatchedBy.EXTERNAL_ID)
    for e in expected:
        claim(e, by_serial.get(e.serial.strip()), MatchedBy.SERIAL)
    for e in expected:
        for mac in e.macs:
            claim(e, by_mac.get(mac), MatchedBy.MAC)
    matches = [matched[e.id] for e in expected if e.id in matched]
    missing = [e for e in expected if e.id not in matched]
    unexpected = [a for a in actual if a.core_id not in taken]
    return matches, missing, unexpected


def _text(value: object | None, absent: str) -> str:
    return absent if value is None or value == "" else str(value)


def field_diffs(e: ExpectedComponent, a: ObservedComponent) -> list[FieldDiff]:
    """Fields where the inventory and Core disagree. A field Core does not
    report is no evidence either way, except the position of a compute tray,
    which Core always has for a placed tray (absent shows as <missing>)."""
    out: list[FieldDiff] = []
    if a.serial and a.serial.strip() != e.serial.strip():
        out.append(FieldDiff("serial_number", e.serial, a.serial))
    if e.type is ComponentType.COMPUTE:
        pos = a.position
        for name, want, got in (
            ("slot_id", e.slot_id, pos.slot_id if pos else None),
            ("tray_index", e.tray_index, pos.tray_index if pos else None),
            ("host_id", e.host_id, pos.host_id if pos else None),
        ):
            if want != got:
                out.append(FieldDiff(name, _text(want, UNSET_VALUE), _text(got, MISSING_VALUE)))
    if e.firmware_version and a.firmware_version and e.firmware_version != a.firmware_version:
        out.append(FieldDiff("firmware_version", e.firmware_version, a.firmware_version))
    return out


class RackLocator:
    """Places a component nobody expects in a rack, if anything does.

    Core's word comes first: the rack it reports, when Flow knows a rack with
    that Core id. Otherwise a rack whose expected layout lists a component with
    the same serial number or BMC MAC (e.g. a tray swapped in under another Core
    id) claims it. Built once per type: lookups are dictionary hits."""

    def __init__(
        self,
        racks_by_core_id: Mapping[str, uuid.UUID],
        expected: Iterable[ExpectedComponent] = (),
    ) -> None:
        self._racks = dict(racks_by_core_id)
        self._by_serial: dict[str, uuid.UUID] = {}
        self._by_mac: dict[str, uuid.UUID] = {}
        for e in expected:
            if e.rack_id is None:
                continue
            self._by_serial.setdefault(e.serial.strip(), e.rack_id)
            for mac in e.macs:
                self._by_mac.setdefault(mac, e.rack_id)

    def locate(self, a: ObservedComponent) -> uuid.UUID | None:
        if a.rack_core_id and a.rack_core_id in self._racks:
            return self._racks[a.rack_core_id]
        if a.serial and a.serial.strip() in self._by_serial:
            return self._by_serial[a.serial.strip()]
        if a.bmc_mac and a.bmc_mac in self._by_mac:
            return self._by_mac[a.bmc_mac]
        return None


def compare_type(
    expected: Iterable[ExpectedComponent],
    obs: TypeObservation,
    racks_by_core_id: Mapping[str, uuid.UUID] | None = None,
) -> Comparison:
    """Matches and drift for one observed type (call only when `obs.ok`).

    `racks_by_core_id`: Flow's racks by their Core id, to place unexpected
    components in the rack Core reports for them."""
    if not obs.ok:
        raise ValueError(f"{obs.type.value} was not observed: {obs.error}")
    rows = [e for e in expected if e.type is obs.type]
    matches, missing, unexpected = match_components(rows, obs.components)
    drift: list[Drift] = []
    for e in missing:
        drift.append(
            Drift(
                obs.type,
                DriftType.MISSING,
                e.id,
                e.external_id,
                (FieldDiff("core_id", _text(e.external_id, UNSET_VALUE), MISSING_VALUE),),
                e.rack_id,
            )
        )
    locator = RackLocator(racks_by_core_id or {}, rows) if unexpected else None
    for a in unexpected:
        diffs = [FieldDiff("core_id", MISSING_VALUE, a.core_id)]
        if a.serial:
            diffs.append(FieldDiff("serial_number", MISSING_VALUE, a.serial))
        if a.bmc_mac:
            diffs.append(FieldDiff("bmc_mac", MISSING_VALUE, a.bmc_mac))
        rack_id = locator.locate(a) if locator is not None else None
        drift.append(Drift(obs.type, DriftType.UNEXPECTED, None, a.core_id, tuple(diffs), rack_id))
    for m in matches:
        diffs = field_diffs(m.expected, m.actual)
        if diffs:
            drift.append(
                Drift(
                    obs.type,
                    DriftType.MISMATCH,
                    m.expected.id,
                    m.actual.core_id,
                    tuple(diffs),
                    m.expected.rack_id,
                )
            )
    return Comparison(tuple(matches), tuple(missing), tuple(unexpected), tuple(drift))
