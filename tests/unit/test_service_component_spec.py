"""Pure parts of the component writes: merge patches, BMC merging and PatchRack's plan."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.service.component_spec import (
    component_patch,
    merge_patch,
    new_component,
    patched_entry,
    upsert_bmcs,
)
from nicoflow.service.errors import InvalidArgument
from nicoflow.service.rack_patch import KnownRow, plan_rack_patch


def test_merge_patch_turns_old_into_new() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2], "gone": "x"}
    new = {"a": 1, "b": {"c": 2, "d": 4}, "l": [1], "added": True}
    assert merge_patch(old, new) == {"b": {"d": 4}, "l": [1], "gone": None, "added": True}
    assert merge_patch(old, old) == {}


def test_upsert_bmcs_adds_patches_never_removes() -> None:
    current = [
        {"type": "host", "macAddress": "02:00:00:00:00:01", "ipAddress": "10.0.0.1"},
        {"type": "dpu", "macAddress": "02:00:00:00:00:02"},
    ]
    merged, ops = upsert_bmcs(
        current,
        [
            {"type": "host", "macAddress": "02:00:00:00:00:01"},  # no IP: keeps the old one
            {"type": "host", "macAddress": "02:00:00:00:00:02"},  # re-typed
            {"type": "dpu", "macAddress": "02:00:00:00:00:03"},
        ],
    )
    assert ops == {
        "02:00:00:00:00:01": "NoChange",
        "02:00:00:00:00:02": "Patched",
        "02:00:00:00:00:03": "Added",
    }
    assert [b["macAddress"] for b in merged] == [
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        "02:00:00:00:00:03",
    ]
    assert merged[0]["ipAddress"] == "10.0.0.1"
    assert merged[1]["type"] == "host"
    assert current[1]["type"] == "dpu"  # input untouched


def test_new_component_names_and_messages() -> None:
    comp = pb.Component(type=pb.COMPONENT_TYPE_NVSWITCH, info=pb.DeviceInfo(serial_number="S1"))
    new = new_component(comp, "NVIDIA", {"nvswitch-01"}, "component")
    assert new.entry["name"] == "nvswitch-02"
    assert new.key == ("NVIDIA", "S1")
    with pytest.raises(InvalidArgument, match=r"^component\.info\.manufacturer is required"):
        new_component(comp, None, (), "component")
    bad = pb.Component(
        type=pb.COMPONENT_TYPE_COMPUTE,
        info=pb.DeviceInfo(serial_number="S2"),
        bmcs=[pb.BMCInfo(type=pb.BMC_TYPE_HOST, mac_address="zz")],
    )
    with pytest.raises(InvalidArgument, match=r"^rack\.components\[3\]\.bmcs\[0\]\.mac_address"):
        new_component(bad, "NVIDIA", (), "rack.components[3]")


def test_component_patch_fields() -> None:
    cid = uuid.uuid4()
    patch = component_patch(
        pb.PatchComponentRequest(
            id=pb.UUID(id=str(cid)),
            firmware_version="",
            position=pb.RackPosition(slot_id=3),
            description='{"a": 1}',
        )
    )
    entry = {"name": "c", "type": "compute", "serialNumber": "S", "firmwareVersion": "1"}
    out = patched_entry(entry, patch)
    assert "firmwareVersion" not in out  # "" clears it
    assert out["position"] == {"slotId": 3, "trayIndex": 0, "hostId": 0}
    assert patch.description == {"a": 1}
    assert patch.rack_id is None
    with pytest.raises(InvalidArgument, match=r"^position\.slot_id is -1"):
        component_patch(
            pb.PatchComponentRequest(id=pb.UUID(id=str(cid)), position=pb.RackPosition(slot_id=-1))
        )
    with pytest.raises(InvalidArgument, match=r"^description must be a JSON object"):
        component_patch(pb.PatchComponentRequest(id=pb.UUID(id=str(cid)), description="[1]"))


def _obj() -> dict[str, Any]:
    return {
        "metadata": {"name": "r1"},
        "spec": {
            "identity": {"manufacturer": "NVIDIA", "serialNumber": "R1"},
            "components": [{"name": "compute-01", "type": "compute", "serialNumber": "C1"}],
        },
    }


def test_plan_rack_patch_refuses_rename_and_pins_manufacturer() -> None:
    rid, c1 = uuid.uuid4(), uuid.uuid4()
    rows = {("NVIDIA", "C1"): KnownRow(c1)}
    with pytest.raises(InvalidArgument, match="cannot change"):
        plan_rack_patch(pb.Rack(info=pb.DeviceInfo(name="r2")), _obj(), rid, rows, {})
    plan = plan_rack_patch(pb.Rack(info=pb.DeviceInfo(manufacturer="Acme")), _obj(), rid, rows, {})
    assert plan.report["rack_report"] == "Patched"
    # the component keeps its inventory key (NVIDIA, C1) although the rack's maker changed
    assert plan.spec["components"][0]["manufacturer"] == "NVIDIA"
    assert plan.rekeyed == {}


def test_plan_rack_patch_adopts_and_reports() -> None:
    rid, c1, spare = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    request = pb.Rack(
        info=pb.DeviceInfo(id=pb.UUID(id=str(rid))),
        components=[
            pb.Component(info=pb.DeviceInfo(serial_number="C1"), type=99),
            pb.Component(info=pb.DeviceInfo(serial_number="C1", description="note")),
            pb.Component(type=pb.COMPONENT_TYPE_CDU, info=pb.DeviceInfo(serial_number="S9")),
            pb.Component(
                info=pb.DeviceInfo(id=pb.UUID(id=str(c1)), serial_number="C1-new"),
            ),
        ],
    )
    plan = plan_rack_patch(
        request,
        _obj(),
        rid,
        {("NVIDIA", "C1"): KnownRow(c1)},
        {("NVIDIA", "S9"): KnownRow(spare)},
    )
    reports = [(c["component_id"], c["component_report"]) for c in plan.report["components"]]
    assert reports == [
        ("", "InvalidType"),  # an unknown type number is never applied
        (str(c1), "Patched"),  # description only: a Postgres-side change
        (str(spare), "Added"),  # the unassigned component with that serial joins the rack
        (str(c1), "Patched"),  # serial changed, matched by id
    ]
    assert plan.descriptions == {c1: {"description": "note"}}
    assert [a.id for a in plan.added] == [spare]
    assert plan.rekeyed == {c1: ("NVIDIA", "C1-new")}
    assert [c["name"] for c in plan.spec["components"]] == ["compute-01", "cdu-01"]
