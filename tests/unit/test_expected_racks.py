"""Core's expected inventory as Rack objects: the pure mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nicoflow._proto.nico import common_pb2, forge_pb2
from nicoflow.api.rack import RackSpec
from nicoflow.core.expected import (
    ANNOTATION_CORE_RACK,
    LABEL_SOURCE,
    CoreExpectedComponent,
    CoreExpectedRack,
    ExpectedInventory,
    dns_label,
    expected_rack_objects,
    inventory_from_messages,
    rack_spec,
)
from nicoflow.domain.observations import ObservedComponent, SiteObservation, TypeObservation
from nicoflow.domain.types import ComponentType

CT = ComponentType
RACK_LABELS = {
    "chassis.manufacturer": "NVIDIA",
    "chassis.serial-number": "RACK-1",
    "chassis.model": "GB200 NVL72",
    "location.region": "r1",
    "location.datacenter": "dc1",
    "location.room": "hall-1",
    "location.position": "a01",
}


def rack(core_id: str = "rack-a01", name: str = "rack-a01", **labels: str) -> CoreExpectedRack:
    return CoreExpectedRack(core_id, name, "a rack", {**RACK_LABELS, **labels})


def comp(
    ctype: CT,
    serial: str,
    mac: str | None,
    rack_id: str | None = "rack-a01",
    name: str = "",
    core_id: str | None = None,
    **labels: str,
) -> CoreExpectedComponent:
    return CoreExpectedComponent(
        type=ctype,
        serial=serial,
        rack_core_id=rack_id,
        bmc_mac=mac,
        bmc_ip="10.0.0.9",
        name=name,
        labels={"manufacturer": "NVIDIA", "model": "m", **labels},
        core_id=core_id,
    )


SHELF = comp(CT.POWERSHELF, "PS-1", "02:00:00:00:00:01", name="powershelf-01", core_id="ps-1",
             slot_id="1", tray_idx="0")  # fmt: skip
SWITCH = comp(CT.NVSWITCH, "SW-1", "02:00:00:00:00:02", name="nvswitch-01", core_id="sw-1",
              slot_id="20", tray_idx="0")  # fmt: skip
TRAY = comp(CT.COMPUTE, "CT-1", "02:00:00:00:00:03", name="compute-01",
            slot_id="10", tray_idx="0", host_id="1")  # fmt: skip


def observed(*components: ObservedComponent) -> SiteObservation:
    return SiteObservation(
        datetime(2025, 6, 1, tzinfo=UTC),
        {CT.COMPUTE: TypeObservation(CT.COMPUTE, tuple(components))},
    )


def test_a_rack_core_expects_becomes_a_rack_spec() -> None:
    obs = observed(ObservedComponent(CT.COMPUTE, "m-1", serial="CT-1"))
    plan = expected_rack_objects(ExpectedInventory((rack(),), (TRAY, SWITCH, SHELF)), [], obs)
    assert plan.skipped == ()
    (created,) = plan.create
    assert (created.name, created.core_id, created.components) == ("rack-a01", "rack-a01", 3)
    meta = created.body["metadata"]
    assert meta["labels"] == {LABEL_SOURCE: "core"}
    assert meta["annotations"] == {ANNOTATION_CORE_RACK: "rack-a01"}
    assert created.body["kind"] == "Rack"
    spec = RackSpec.model_validate(created.body["spec"])
    assert spec.core_id == "rack-a01"
    assert (spec.identity.manufacturer, spec.identity.serial_number) == ("NVIDIA", "RACK-1")
    assert spec.identity.model == "GB200 NVL72"
    assert spec.location is not None
    assert spec.location.position == "a01"
    # shelves, switches, then trays, as a rack powers up
    assert [(c.name, c.type, c.serial_number, c.core_id) for c in spec.components] == [
        ("powershelf-01", CT.POWERSHELF, "PS-1", "ps-1"),
        ("nvswitch-01", CT.NVSWITCH, "SW-1", "sw-1"),
        ("compute-01", CT.COMPUTE, "CT-1", "m-1"),  # Core id from the observation
    ]
    tray = spec.components[2]
    assert tray.position is not None
    assert (tray.position.slot_id, tray.position.tray_index, tray.position.host_id) == (10, 0, 1)
    assert tray.bmcs is not None
    assert [(b.mac_address, b.ip_address) for b in tray.bmcs] == [("02:00:00:00:00:03", "10.0.0.9")]
    assert tray.firmware_version is None  # never mirrored from Core


def body(name: str, serial: str = "OTHER", core_id: str | None = None, comps: Any = ()) -> Any:
    spec: dict[str, Any] = {
        "identity": {"manufacturer": "NVIDIA", "serialNumber": serial},
        "components": [{"name": f"c{i}", "serialNumber": s} for i, s in enumerate(comps)],
    }
    if core_id:
        spec["coreId"] = core_id
    return {"metadata": {"name": name}, "spec": spec}


def test_existing_racks_are_never_replaced() -> None:
    inv = ExpectedInventory((rack(),), (TRAY,))
    # by Core id, or by identity: Flow has it, nothing to do and nothing to say
    assert (
        expected_rack_objects(inv, [body("mine", core_id="rack-a01")])
        == type(expected_rack_objects(inv, []))()
    )
    assert expected_rack_objects(inv, [body("mine", serial="RACK-1")]).create == ()
    # a different rack holding the name, or one of the components: skipped, with a reason
    by_name = expected_rack_objects(inv, [body("rack-a01")])
    assert by_name.create == ()
    assert by_name.skipped == ("Core rack rack-a01: a Rack named rack-a01 exists already",)
    by_comp = expected_rack_objects(inv, [body("other", comps=["CT-1"])])
    assert by_comp.create == ()
    assert "CT-1 is already in Rack other" in by_comp.skipped[0]


def test_racks_without_identity_are_skipped_and_bad_names_cleaned() -> None:
    nameless = rack("Rack_B/02", "", **{"chassis.serial-number": "RACK-2"})
    anonymous = CoreExpectedRack("rack-c", "rack-c", "", {"chassis.manufacturer": "NVIDIA"})
    plan = expected_rack_objects(ExpectedInventory((nameless, anonymous), ()), [])
    (created,) = plan.create
    assert created.name.startswith("rack-b-02-")
    assert created.name == dns_label("Rack_B/02", "Rack_B/02")
    assert len(created.name) <= 63
    assert plan.skipped == (
        "Core rack rack-c: no chassis.manufacturer / chassis.serial-number label; "
        "cannot identify it",
    )
    assert dns_label("ok-name", "x") == "ok-name"
    assert dns_label("A" * 80, "seed") != dns_label("A" * 80, "other seed")


def test_components_get_names_and_bad_values_are_left_out() -> None:
    parts = [
        comp(CT.COMPUTE, "CT-2", "02:00:00:00:00:12", name="Bad Name", tray_idx="1"),
        comp(CT.COMPUTE, "CT-1", "02:00:00:00:00:11", name="", tray_idx="0", slot_id="x"),
        comp(CT.COMPUTE, "CT-1", "02:00:00:00:00:13"),  # same serial again
        comp(CT.COMPUTE, "", "02:00:00:00:00:14"),  # no serial
        comp(CT.NVSWITCH, "SW-9", None, name="nvswitch-01", slot_id="5000"),
    ]
    spec, notes = rack_spec(rack(), parts)
    assert spec is not None
    assert [(c.name, c.serial_number) for c in spec.components] == [
        ("nvswitch-01", "SW-9"),
        ("compute-01", "CT-1"),
        ("compute-02", "CT-2"),
    ]
    switch = spec.components[0]
    assert switch.bmcs is None
    assert switch.position is None  # slot 5000 is out of range
    assert spec.components[1].position is not None
    assert spec.components[1].position.slot_id is None
    assert any("listed twice" in n for n in notes)
    assert any("without a serial number" in n for n in notes)


def test_messages_become_inventory_with_linked_ids() -> None:
    def meta(name: str, **labels: str) -> forge_pb2.Metadata:
        return forge_pb2.Metadata(
            name=name, labels=[forge_pb2.Label(key=k, value=v) for k, v in labels.items()]
        )

    rid = common_pb2.RackId(id="rack-a01")
    inv = inventory_from_messages(
        forge_pb2.ExpectedRackList(
            expected_racks=[
                forge_pb2.ExpectedRack(rack_id=rid, metadata=meta("rack-a01", **RACK_LABELS)),
                forge_pb2.ExpectedRack(metadata=meta("no-id")),
            ]
        ),
        forge_pb2.ExpectedMachineList(
            expected_machines=[
                forge_pb2.ExpectedMachine(
                    bmc_mac_address="02-00-00-00-00-03",
                    chassis_serial_number="CT-1",
                    rack_id=rid,
                    bmc_ip_address="10.0.0.3",
                    metadata=meta("compute-01", slot_id="10"),
                )
            ]
        ),
        forge_pb2.ExpectedSwitchList(
            expected_switches=[
                forge_pb2.ExpectedSwitch(
                    bmc_mac_address="02:00:00:00:00:02", switch_serial_number="SW-1", rack_id=rid
                )
            ]
        ),
        forge_pb2.ExpectedPowerShelfList(
            expected_power_shelves=[
                forge_pb2.ExpectedPowerShelf(
                    bmc_mac_address="02:00:00:00:00:01", shelf_serial_number="PS-1", rack_id=rid
                )
            ]
        ),
        forge_pb2.LinkedExpectedSwitchList(
            expected_switches=[
                forge_pb2.LinkedExpectedSwitch(
                    bmc_mac_address="02:00:00:00:00:02",
                    switch_serial_number="SW-1",
                    switch_id=common_pb2.SwitchId(id="sw-1"),
                )
            ]
        ),
        forge_pb2.LinkedExpectedPowerShelfList(
            expected_power_shelves=[
                # linked by serial only (no MAC in the link)
                forge_pb2.LinkedExpectedPowerShelf(
                    shelf_serial_number="PS-1",
                    power_shelf_id=common_pb2.PowerShelfId(id="ps-1"),
                )
            ]
        ),
    )
    assert [r.core_id for r in inv.racks] == ["rack-a01"]
    assert inv.racks[0].labels["chassis.serial-number"] == "RACK-1"
    by_type = {c.type: c for c in inv.components}
    tray = by_type[CT.COMPUTE]
    assert (tray.bmc_mac, tray.bmc_ip, tray.rack_core_id) == (
        "02:00:00:00:00:03",
        "10.0.0.3",
        "rack-a01",
    )
    assert tray.labels == {"slot_id": "10"}
    assert tray.core_id is None
    assert by_type[CT.NVSWITCH].core_id == "sw-1"
    assert by_type[CT.POWERSHELF].core_id == "ps-1"
