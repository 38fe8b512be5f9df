"""Rack JSON (the original CLI's format) → v1 messages."""

from __future__ import annotations

import json
import uuid

import pytest

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.client.rackjson import RackJsonError, bmcs_from_json, rack_from_json, racks_from_text
from nicoflow.simulator.export import ExportFormat, export_site
from nicoflow.simulator.site import generate_site

TRAY = {
    "type": "compute",
    "info": {
        "name": "compute-01",
        "manufacturer": "NVIDIA",
        "serial_number": "CT-1",
        "model": "GB200",
    },
    "firmware_version": "1.2.3",
    "component_id": "fm100ht0",
    "position": {"slot_id": 36, "tray_index": 16, "host_id": 1},
    "bmcs": [
        {
            "type": "host",
            "mac": "02:00:00:00:00:01",
            "ip": "10.0.0.1",
            "user": "u",
            "password": "p",
        },
        {"type": "dpu", "mac": "02:00:00:00:00:02"},
    ],
}
RACK = {
    "info": {
        "name": "a01",
        "manufacturer": "NVIDIA",
        "serial_number": "R-1",
        "model": "GB200 NVL72",
        "description": "row A",
    },
    "location": {"region": "us-west", "datacenter": "dc1", "room": "hall-2", "position": "a/01"},
    "components": [TRAY],
}


def test_every_field_lands_in_the_message() -> None:
    ids = iter(["11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"])
    rack = rack_from_json(RACK, new_id=lambda: next(ids))
    assert rack.info.id.id == "11111111-1111-1111-1111-111111111111"
    assert (rack.info.name, rack.info.serial_number, rack.info.model) == (
        "a01",
        "R-1",
        "GB200 NVL72",
    )
    assert rack.info.description == "row A"
    assert rack.location == pb.Location(
        region="us-west", datacenter="dc1", room="hall-2", position="a/01"
    )
    [comp] = rack.components
    assert comp.type == pb.COMPONENT_TYPE_COMPUTE
    assert comp.info.id.id == "22222222-2222-2222-2222-222222222222"
    assert comp.info.model == "GB200"
    assert comp.firmware_version == "1.2.3"
    assert comp.component_id == "fm100ht0"
    assert comp.position == pb.RackPosition(slot_id=36, tray_idx=16, host_id=1)
    assert [(b.type, b.mac_address, b.ip_address) for b in comp.bmcs] == [
        (pb.BMC_TYPE_HOST, "02:00:00:00:00:01", "10.0.0.1"),
        (pb.BMC_TYPE_DPU, "02:00:00:00:00:02", ""),
    ]
    assert not comp.bmcs[1].HasField("ip_address")


def test_given_ids_are_kept_and_missing_ids_generated_or_left_out() -> None:
    doc = json.loads(json.dumps(RACK))
    doc["info"]["id"] = "33333333-3333-3333-3333-333333333333"
    rack = rack_from_json(doc)
    assert rack.info.id.id == "33333333-3333-3333-3333-333333333333"
    uuid.UUID(rack.components[0].info.id.id)  # generated
    [bare] = racks_from_text(json.dumps(RACK), generate_ids=False)
    assert not bare.info.HasField("id")
    assert not bare.components[0].info.HasField("id")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["components"][0].update(type="gpu"), "components[0].type"),
        (lambda d: d["components"][0]["bmcs"][0].update(type="ilo"), "components[0].bmcs[0].type"),
        (lambda d: d["components"][0]["position"].update(slot_id="36"), "position.slot_id"),
        (lambda d: d["info"].update(id="not-a-uuid"), "info.id"),
        (lambda d: d.update(components={"a": 1}), "components: expected a list"),
    ],
)
def test_errors_name_the_field(mutate: object, message: str) -> None:
    doc = json.loads(json.dumps(RACK))
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(RackJsonError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rack_from_json(doc)


def test_text_errors() -> None:
    with pytest.raises(RackJsonError, match="not valid JSON"):
        racks_from_text("{")
    with pytest.raises(RackJsonError, match="no rack"):
        racks_from_text("[]")
    bad = json.loads(json.dumps(RACK))
    bad["components"][0]["type"] = "gpu"
    with pytest.raises(RackJsonError, match=r"^rack 2: components\[0\]\.type"):
        racks_from_text(json.dumps([RACK, bad]))


def test_simulator_export_round_trips_into_messages() -> None:
    site = generate_site(2, seed=3)
    racks = racks_from_text(export_site(site, ExportFormat.RACK_JSON, yaml_output=False))
    assert [r.info.name for r in racks] == [r.name for r in site.racks]
    for msg, sim in zip(racks, site.racks, strict=True):
        assert msg.info.serial_number == sim.serial
        assert len(msg.components) == len(sim.components)
        by_serial = {c.info.serial_number: c for c in msg.components}
        for c in sim.components:
            got = by_serial[c.serial]
            assert got.component_id == c.core_id
            assert got.position.slot_id == c.position.slot_id
            assert sorted(b.mac_address for b in got.bmcs) == sorted(b.mac for b in c.bmcs)
        assert len({c.info.id.id for c in msg.components}) == len(msg.components)


def test_bmcs_from_json_accepts_long_key_names() -> None:
    [b] = bmcs_from_json(
        [{"type": "DPU", "mac_address": "aa:bb:cc:dd:ee:ff", "ip_address": "10.1.1.1"}]
    )
    assert (b.type, b.mac_address, b.ip_address) == (
        pb.BMC_TYPE_DPU,
        "aa:bb:cc:dd:ee:ff",
        "10.1.1.1",
    )
