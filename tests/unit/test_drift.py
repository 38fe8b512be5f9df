"""Matching expected components to Core's and the drift that follows."""

from __future__ import annotations

import uuid

import pytest

from nicoflow.domain.observations import ObservedComponent, ObservedPosition, TypeObservation
from nicoflow.domain.types import ComponentType
from nicoflow.inventory.drift import (
    ExpectedComponent,
    FieldDiff,
    MatchedBy,
    RackLocator,
    compare_type,
    field_diffs,
    match_components,
)
from nicoflow.inventory.models import DriftType

CT = ComponentType


def expected(
    name: str, serial: str, ext: str | None = None, macs: tuple[str, ...] = (), **kw: object
) -> ExpectedComponent:
    return ExpectedComponent(
        id=uuid.uuid5(uuid.NAMESPACE_DNS, name),
        type=kw.pop("type", CT.NVSWITCH),  # type: ignore[arg-type]
        name=name,
        serial=serial,
        external_id=ext,
        macs=macs,
        **kw,  # type: ignore[arg-type]
    )


def actual(
    core_id: str, serial: str | None = None, mac: str | None = None, **kw: object
) -> ObservedComponent:
    return ObservedComponent(
        type=kw.pop("type", CT.NVSWITCH),  # type: ignore[arg-type]
        core_id=core_id,
        serial=serial,
        bmc_mac=mac,
        **kw,  # type: ignore[arg-type]
    )


def test_matching_prefers_id_then_serial_then_mac() -> None:
    by_id = expected("a", "S-A", ext="core-a")
    by_serial = expected("b", "S-B")
    by_mac = expected("c", "S-C-old", macs=("00:00:00:00:00:0c",))
    lost = expected("d", "S-D", ext="gone")
    matches, missing, unexpected = match_components(
        [by_id, by_serial, by_mac, lost],
        [
            actual("core-a", "S-A"),
            actual("core-b", "S-B"),
            actual("core-c", "S-C-new", "00:00:00:00:00:0c"),
            actual("core-x", "S-X"),
        ],
    )
    assert [(m.expected.name, m.actual.core_id, m.by) for m in matches] == [
        ("a", "core-a", MatchedBy.EXTERNAL_ID),
        ("b", "core-b", MatchedBy.SERIAL),
        ("c", "core-c", MatchedBy.MAC),
    ]
    assert missing == [lost]
    assert [u.core_id for u in unexpected] == ["core-x"]


def test_a_serial_match_cannot_steal_a_core_component_claimed_by_id() -> None:
    # "b" carries the serial Core reports for core-a, but "a" names core-a by id.
    a = expected("a", "S-OLD", ext="core-a")
    b = expected("b", "S-SHARED")
    matches, missing, _ = match_components([b, a], [actual("core-a", "S-SHARED")])
    assert [(m.expected.name, m.by) for m in matches] == [("a", MatchedBy.EXTERNAL_ID)]
    assert missing == [b]


def test_compute_position_firmware_and_serial_diffs() -> None:
    e = expected(
        "tray",
        "S-1",
        type=CT.COMPUTE,
        slot_id=3,
        tray_index=1,
        host_id=None,
        firmware_version="25.01.1",
    )
    a = actual(
        "m-1",
        "S-2",
        type=CT.COMPUTE,
        position=ObservedPosition(slot_id=4, tray_index=1, host_id=7),
        firmware_version="25.04.2",
    )
    assert field_diffs(e, a) == [
        FieldDiff("serial_number", "S-1", "S-2"),
        FieldDiff("slot_id", "3", "4"),
        FieldDiff("host_id", "<unset>", "7"),
        FieldDiff("firmware_version", "25.01.1", "25.04.2"),
    ]
    no_position = actual("m-1", "S-1", type=CT.COMPUTE, firmware_version="25.01.1")
    assert field_diffs(e, no_position) == [
        FieldDiff("slot_id", "3", "<missing>"),
        FieldDiff("tray_index", "1", "<missing>"),
    ]


def test_fields_core_does_not_report_are_not_drift() -> None:
    e = expected("sw", "S-1", firmware_version="88.1")
    assert field_diffs(e, actual("sw-1")) == []  # no serial, no firmware from Core
    # Switches have no position in Core: never a position diff.
    e2 = expected("sw2", "S-2", slot_id=9)
    assert field_diffs(e2, actual("sw-2", "S-2")) == []


@pytest.mark.parametrize("ctype", [CT.COMPUTE, CT.NVSWITCH, CT.POWERSHELF])
def test_compare_type_reports_every_kind_of_drift_for_every_type(ctype: ComponentType) -> None:
    ok = expected("ok", "S-OK", ext="c-ok", type=ctype)
    gone = expected("gone", "S-GONE", ext="c-gone", type=ctype)
    changed = expected("fw", "S-FW", ext="c-fw", type=ctype, firmware_version="1.0")
    pos = ObservedPosition(None, None, None)
    obs = TypeObservation(
        ctype,
        (
            actual("c-ok", "S-OK", type=ctype, position=pos),
            actual("c-fw", "S-FW", type=ctype, firmware_version="2.0", position=pos),
            actual("c-new", "S-NEW", "00:00:00:00:00:01", type=ctype, position=pos),
        ),
    )
    cmp = compare_type([ok, gone, changed], obs)
    kinds = {(d.drift_type, d.external_id) for d in cmp.drift}
    assert kinds == {
        (DriftType.MISSING, "c-gone"),
        (DriftType.UNEXPECTED, "c-new"),
        (DriftType.MISMATCH, "c-fw"),
    }
    unexpected = next(d for d in cmp.drift if d.drift_type is DriftType.UNEXPECTED)
    assert unexpected.component_id is None
    assert {
        "field_name": "serial_number",
        "expected_value": "<missing>",
        "actual_value": "S-NEW",
    } in (unexpected.diffs_json())
    mismatch = next(d for d in cmp.drift if d.drift_type is DriftType.MISMATCH)
    assert mismatch.component_id == changed.id
    assert mismatch.diffs == (FieldDiff("firmware_version", "1.0", "2.0"),)


def test_compare_type_refuses_an_unobserved_type() -> None:
    with pytest.raises(ValueError, match="not observed"):
        compare_type([], TypeObservation(CT.COMPUTE, error="UNAVAILABLE"))


RACK_A = uuid.uuid5(uuid.NAMESPACE_DNS, "rack-a")
RACK_B = uuid.uuid5(uuid.NAMESPACE_DNS, "rack-b")


def test_unexpected_components_are_placed_by_core_rack_then_layout() -> None:
    # rack A expects tray "a1" (serial S-A1, MAC ...a1) under Core id m-a1.
    a1 = expected(
        "a1", "S-A1", ext="m-a1", macs=("00:00:00:00:00:a1",), type=CT.COMPUTE, rack_id=RACK_A
    )
    locator = RackLocator({"core-rack-b": RACK_B}, [a1])
    # Core says where it is, and Flow knows that rack: Core wins.
    assert locator.locate(actual("x", "S-A1", rack_core_id="core-rack-b")) == RACK_B
    # Core names a rack Flow does not know: the layout that lists its serial or MAC.
    assert locator.locate(actual("x", "S-A1", rack_core_id="core-rack-z")) == RACK_A
    assert locator.locate(actual("x", "S-other", "00:00:00:00:00:a1")) == RACK_A
    # nothing places it
    assert locator.locate(actual("x", "S-other", "00:00:00:00:00:ff")) is None
    assert locator.locate(actual("x", rack_core_id="core-rack-z")) is None


def test_every_drift_row_carries_its_rack() -> None:
    ctype = CT.COMPUTE
    pos = ObservedPosition(None, None, None)

    gone = expected("gone", "S-GONE", ext="m-gone", type=ctype, rack_id=RACK_A)
    fw = expected("fw", "S-FW", ext="m-fw", type=ctype, rack_id=RACK_B, firmware_version="1")
    # m-swapped reports the serial rack A expects for "gone"'s neighbour; m-b sits in rack B
    # by Core's word; m-lost is nowhere Flow knows.
    neighbour = expected("neighbour", "S-N", ext="m-n-old", type=ctype, rack_id=RACK_A)
    obs = TypeObservation(
        ctype,
        (
            actual("m-fw", "S-FW", type=ctype, firmware_version="2", position=pos),
            actual("m-n-old", "S-N2", type=ctype, position=pos),
            actual("m-swapped", "S-N", type=ctype, position=pos),
            actual("m-b", "S-B", type=ctype, position=pos, rack_core_id="rb"),
            actual("m-lost", "S-L", type=ctype, position=pos, rack_core_id="rz"),
        ),
    )
    cmp = compare_type([gone, fw, neighbour], obs, {"rb": RACK_B})
    racks = {(d.drift_type, d.external_id): d.rack_id for d in cmp.drift}
    assert racks == {
        (DriftType.MISSING, "m-gone"): RACK_A,
        (DriftType.MISMATCH, "m-fw"): RACK_B,
        (DriftType.MISMATCH, "m-n-old"): RACK_A,
        (DriftType.UNEXPECTED, "m-swapped"): RACK_A,
        (DriftType.UNEXPECTED, "m-b"): RACK_B,
        (DriftType.UNEXPECTED, "m-lost"): None,
    }
    # without Flow's racks by Core id only the layout places anything
    bare = compare_type([gone, fw, neighbour], obs)
    assert {
        d.external_id: d.rack_id for d in bare.drift if d.drift_type is DriftType.UNEXPECTED
    } == {
        "m-swapped": RACK_A,
        "m-b": None,
        "m-lost": None,
    }
