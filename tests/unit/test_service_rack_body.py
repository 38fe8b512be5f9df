"""A v1 Rack message as a Kubernetes Rack object (CreateExpectedRack's first step)."""

from __future__ import annotations

import itertools
import json
import uuid

import pytest

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.api.rack import RackSpec
from nicoflow.service.errors import InvalidArgument
from nicoflow.service.inventory_views import component_message
from nicoflow.service.rack_body import (
    ANNOTATION_COMPONENT_IDS,
    LABEL_RACK_ID,
    description_json,
    description_text,
    rack_request,
)


def _tray(name: str, serial: str, **kw: object) -> pb.Component:
    kw.setdefault("type", pb.COMPONENT_TYPE_COMPUTE)
    kw.setdefault("position", pb.RackPosition(slot_id=7, tray_idx=0, host_id=0))
    return pb.Component(
        info=pb.DeviceInfo(name=name, manufacturer="NVIDIA", serial_number=serial),
        firmware_version="1.0",
        bmcs=[
            pb.BMCInfo(
                type=pb.BMC_TYPE_HOST, mac_address="02-6E-66-01-20-01", ip_address="10.0.0.1"
            ),
            pb.BMCInfo(type=pb.BMC_TYPE_DPU, mac_address="026e66012101"),
        ],
        component_id="machine-1",
        **kw,  # type: ignore[arg-type]
    )


def _rack(*components: pb.Component, **info: object) -> pb.Rack:
    base = {"name": "gb200-a01", "manufacturer": "NVIDIA", "serial_number": "R1"}
    base.update(info)  # type: ignore[arg-type]
    return pb.Rack(
        info=pb.DeviceInfo(**base),  # type: ignore[arg-type]
        location=pb.Location(region="us-west", datacenter="dc1"),
        components=list(components),
    )


def _ids() -> itertools.count[int]:
    return itertools.count(1)


def test_rack_object_from_message() -> None:
    counter = _ids()
    req = rack_request(
        _rack(_tray("compute-01", "CT1"), model="GB200 NVL72"),
        new_id=lambda: uuid.UUID(int=next(counter)),
    )
    body = req.body
    assert body["kind"] == "Rack"
    assert body["metadata"]["name"] == "gb200-a01"
    assert req.rack_id == uuid.UUID(int=1)
    assert body["metadata"]["labels"][LABEL_RACK_ID] == str(uuid.UUID(int=1))
    assert json.loads(body["metadata"]["annotations"][ANNOTATION_COMPONENT_IDS]) == {
        "compute-01": str(uuid.UUID(int=2))
    }
    spec = body["spec"]
    assert spec["identity"] == {
        "manufacturer": "NVIDIA",
        "serialNumber": "R1",
        "model": "GB200 NVL72",
    }
    assert spec["location"] == {"region": "us-west", "datacenter": "dc1"}
    (tray,) = spec["components"]
    assert tray["coreId"] == "machine-1"
    assert tray["position"] == {"slotId": 7, "trayIndex": 0, "hostId": 0}
    # MACs normalised to the canonical form the CRD and the inventory key use
    assert [b["macAddress"] for b in tray["bmcs"]] == ["02:6e:66:01:20:01", "02:6e:66:01:21:01"]
    assert tray["bmcs"][1].get("ipAddress") is None
    RackSpec.model_validate(spec)  # what the apiserver will be sent is valid


def test_caller_ids_are_kept_and_names_generated() -> None:
    rid, cid = uuid.uuid4(), uuid.uuid4()
    unnamed = _tray("", "CT2")
    unnamed.bmcs[0].mac_address = "02:00:00:00:00:02"
    unnamed.bmcs[1].mac_address = "02:00:00:00:00:03"
    unnamed.component_id = "machine-2"
    first = _tray("compute-01", "CT1")
    first.info.id.id = str(cid)
    req = rack_request(_rack(first, unnamed, id=pb.UUID(id=str(rid))))
    assert req.rack_id == rid
    assert req.components[0].id == cid
    assert req.components[1].name == "compute-02"  # compute-01 is taken
    assert req.components[1].id not in (rid, cid)


@pytest.mark.parametrize(
    ("rack", "message"),
    [
        (None, "rack.info is required"),
        (_rack(name=""), "rack.info.name is empty"),
        (_rack(name="a" * 256), "at most 255"),
        (_rack(name="tab\there"), "control characters"),
        (_rack(manufacturer=""), "manufacturer is required"),
        (_rack(serial_number=""), "serial_number is required"),
        (_rack(id=pb.UUID(id="r-1")), "rack.info.id 'r-1' is not a UUID"),
        (_rack(_tray("compute-01", "")), "components[0].info.serial_number is required"),
        (_rack(_tray("compute-01", "CT1"), _tray("compute-02", "CT1")), "its own serial number"),
        (
            _rack(_tray("compute-01", "CT1", type=pb.COMPONENT_TYPE_UNKNOWN)),
            "COMPONENT_TYPE_UNKNOWN",
        ),
        (_rack(_tray("compute-01", "CT1", position=pb.RackPosition(slot_id=-1))), "slot_id is -1"),
    ],
)
def test_refused(rack: pb.Rack | None, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        rack_request(rack)
    assert message in err.value.message


def test_refused_bmcs() -> None:
    bad_mac = _tray("compute-01", "CT1")
    bad_mac.bmcs[0].mac_address = "not-a-mac"
    with pytest.raises(InvalidArgument, match=r"bmcs\[0\].mac_address"):
        rack_request(_rack(bad_mac))
    bad_ip = _tray("compute-01", "CT1")
    bad_ip.bmcs[0].ip_address = "10.0.0"
    with pytest.raises(InvalidArgument, match="not an IP address"):
        rack_request(_rack(bad_ip))
    no_type = _tray("compute-01", "CT1")
    no_type.bmcs[0].type = pb.BMC_TYPE_UNKNOWN
    with pytest.raises(InvalidArgument, match="BMC_TYPE_HOST or BMC_TYPE_DPU"):
        rack_request(_rack(no_type))


def test_same_id_twice_is_refused() -> None:
    rid = str(uuid.uuid4())
    tray = _tray("compute-01", "CT1")
    tray.info.id.id = rid
    with pytest.raises(InvalidArgument, match="also the id of the rack"):
        rack_request(_rack(tray, id=pb.UUID(id=rid)))


def test_descriptions_round_trip() -> None:
    assert description_json("free text") == {"description": "free text"}
    assert description_json('{"nvos_ip": "10.0.0.9"}') == {"nvos_ip": "10.0.0.9"}
    assert description_json("[1, 2]") == {"description": "[1, 2]"}
    for text in ("free text", '{"nvos_ip": "10.0.0.9"}'):
        stored = description_json(text)
        assert description_json(description_text(stored) or "") == stored
    assert description_text({}) is None


def test_component_message_from_rows() -> None:
    from nicoflow.domain.types import BMCType, ComponentType, PowerState
    from nicoflow.inventory.models import BMC, Component, ComponentPhase, LeakStatus

    cid, rid = uuid.uuid4(), uuid.uuid4()
    row = Component(
        id=cid,
        rack_id=rid,
        name="nvswitch-01",
        type=ComponentType.NVSWITCH,
        manufacturer="NVIDIA",
        model=None,
        serial_number="SW1",
        description={"nvos_ip": "10.1.1.1"},
        firmware_version="2.0",
        slot_id=20,
        tray_index=1,
        host_id=None,
        external_id="switch-9",
        power_state=PowerState.OFF,
        status_phase=ComponentPhase.ERROR,
        status_reason="error",
        blocked_operations=["power_control", "bring_up"],
        leak_status=LeakStatus.NOT_DETECTED,
    )
    row.bmcs = [BMC(mac_address="02:00:00:00:00:09", type=BMCType.HOST, ip_address=None)]
    msg = component_message(row)
    assert msg.type == pb.COMPONENT_TYPE_NVSWITCH
    assert msg.info.id.id == str(cid)
    assert not msg.info.HasField("model")
    assert json.loads(msg.info.description) == {"nvos_ip": "10.1.1.1"}
    assert (msg.position.slot_id, msg.position.tray_idx, msg.position.host_id) == (20, 1, 0)
    assert msg.component_id == "switch-9"
    assert msg.rack_id.id == str(rid)
    assert msg.power_state == "off"
    assert msg.status.phase == pb.PHASE_ERROR
    # bring_up has no wire value in the original's OperationType
    assert list(msg.status.blocked_operations) == [pb.OPERATION_TYPE_POWER_CONTROL]
    assert msg.leak_status == pb.LEAK_STATUS_NOT_DETECTED
    assert msg.bmcs[0].type == pb.BMC_TYPE_HOST
    assert not msg.bmcs[0].HasField("ip_address")


def test_the_originals_names_are_kept_and_object_names_derived() -> None:
    """A rack called R1 with two trays called "GPU Tray 1" (the original was
    unique on manufacturer and serial only)."""
    first, second = _tray("GPU Tray 1", "CT1"), _tray("GPU Tray 1", "CT2")
    second.bmcs[0].mac_address = "02:00:00:00:00:02"
    second.bmcs[1].mac_address = "02:00:00:00:00:03"
    second.component_id = "machine-2"
    req = rack_request(_rack(first, second, name="R1"))
    obj = req.body["metadata"]["name"]
    assert obj.startswith("r1-")
    assert len(obj) == len("r1-") + 6
    assert req.name == obj
    assert req.display_name == "R1"
    assert req.body["spec"]["identity"]["displayName"] == "R1"
    one, two = req.body["spec"]["components"]
    assert one["name"] != two["name"]
    assert one["name"].startswith("gpu-tray-1-")
    assert (one["displayName"], two["displayName"]) == ("GPU Tray 1", "GPU Tray 1")
    RackSpec.model_validate(req.body["spec"])
    # the same names give the same object names
    again = rack_request(_rack(first, second, name="R1"))
    assert again.body["metadata"]["name"] == obj
    assert [c["name"] for c in again.body["spec"]["components"]] == [one["name"], two["name"]]
    # a name that is an object name is used as it is
    plain = rack_request(_rack(_tray("compute-01", "CT1"), name="rack-01"))
    assert plain.body["metadata"]["name"] == "rack-01"
    assert "displayName" not in plain.body["spec"]["identity"]
    assert "displayName" not in plain.body["spec"]["components"][0]
