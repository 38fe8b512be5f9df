"""Compare the expected inventory of one component type with what Core reports.

Pure: rows in, matches and drift out. Matching tries Core's id first (the
id the inventory already holds), then the serial number, then the BMC MAC,
each Core component being claimed at most once; ids first so a serial or MAC
match can never take a Core component another expected component names by id."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
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


def compare_type(expected: Iterable[ExpectedComponent], obs: TypeObservation) -> Comparison:
    """Matches and drift for one observed type (call only when `obs.ok`)."""
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
            )
        )
    for a in unexpected:
        diffs = [FieldDiff("core_id", MISSING_VALUE, a.core_id)]
        if a.serial:
            diffs.append(FieldDiff("serial_number", MISSING_VALUE, a.serial))
        if a.bmc_mac:
            diffs.append(FieldDiff("bmc_mac", MISSING_VALUE, a.bmc_mac))
        drift.append(Drift(obs.type, DriftType.UNEXPECTED, None, a.core_id, tuple(diffs)))
    for m in matches:
        diffs = field_diffs(m.expected, m.actual)
        if diffs:
            drift.append(
                Drift(obs.type, DriftType.MISMATCH, m.expected.id, m.actual.core_id, tuple(diffs))
            )
    return Comparison(tuple(matches), tuple(missing), tuple(unexpected), tuple(drift))
