"""Component write RPCs and PatchRack over real gRPC, against a real apiserver and
a real PostgreSQL: every write changes the Rack object and the inventory rows
in the same call, and a component in no rack lives in PostgreSQL only."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from api_support import Api, example_rack, running_api
from sqlalchemy import select

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.inventory.models import BMC, Component
from nicoflow.kube.resources import RACKS

pytestmark = pytest.mark.integration

IDS = "flow.nico.io/component-ids"


@pytest.fixture
async def api(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[Api]:
    async with running_api(control_plane, database_url, namespace) as a:
        yield a


async def _create(api: Api, base: str = "a01") -> tuple[str, str]:
    """A 35-component example rack; returns (name, id). Serials and MACs unique per rack."""
    tag = api.tag if base == "a01" else uuid.uuid4().hex[:6]
    rack = example_rack(name=api.rack_name(base), tag=tag)
    resp = await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))
    return rack.info.name, resp.id.id


async def _obj(api: Api, name: str) -> dict[str, Any]:
    return await api.kube.get(RACKS, name)


def _entries(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in obj["spec"].get("components", [])}


def _ids(obj: dict[str, Any]) -> dict[str, str]:
    ids: dict[str, str] = json.loads(obj["metadata"]["annotations"][IDS])
    return ids


async def _row(api: Api, cid: str) -> Component | None:
    async with api.sessions() as s:
        return await s.scalar(select(Component).where(Component.id == uuid.UUID(cid)))


async def _code(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details() or ""


def _tray(serial: str, **kw: Any) -> pb.Component:
    return pb.Component(
        type=kw.pop("type", pb.COMPONENT_TYPE_COMPUTE),
        info=pb.DeviceInfo(
            name=kw.pop("name", ""),
            manufacturer=kw.pop("manufacturer", "NVIDIA"),
            serial_number=serial,
            **({"id": pb.UUID(id=kw.pop("id"))} if "id" in kw else {}),
        ),
        **kw,
    )


# --- AddComponent ---------------------------------------------------------------------------


async def test_add_component_to_a_rack_writes_object_and_rows(api: Api) -> None:
    name, rack_id = await _create(api)
    serial = f"NEW-{api.tag}"
    added = (
        await api.stub.AddComponent(
            pb.AddComponentRequest(
                component=_tray(
                    serial,
                    rack_id=pb.UUID(id=rack_id),
                    firmware_version="1.4.0",
                    position=pb.RackPosition(slot_id=30, tray_idx=18, host_id=0),
                    bmcs=[pb.BMCInfo(type=pb.BMC_TYPE_HOST, mac_address="02-AA-BB-CC-DD-01")],
                )
            )
        )
    ).component
    cid = added.info.id.id
    uuid.UUID(cid)  # generated
    assert added.info.name == "compute-19"  # first free name after compute-01..18
    assert added.rack_id.id == rack_id
    assert [b.mac_address for b in added.bmcs] == ["02:aa:bb:cc:dd:01"]

    obj = await _obj(api, name)
    entry = _entries(obj)["compute-19"]
    assert entry["serialNumber"] == serial
    assert entry["firmwareVersion"] == "1.4.0"
    assert entry["position"] == {"slotId": 30, "trayIndex": 18, "hostId": 0}
    assert entry["bmcs"] == [{"type": "host", "macAddress": "02:aa:bb:cc:dd:01"}]
    assert _ids(obj)["compute-19"] == cid
    assert len(_ids(obj)) == 36

    row = await _row(api, cid)
    assert row is not None
    assert (row.rack_id, row.name, row.firmware_version, row.slot_id) == (
        uuid.UUID(rack_id),
        "compute-19",
        "1.4.0",
        30,
    )
    rack = (
        await api.stub.GetRackInfoByID(
            pb.GetRackInfoByIDRequest(id=pb.UUID(id=rack_id), with_components=True)
        )
    ).rack
    assert len(rack.components) == 36


async def test_add_component_in_no_rack_lives_in_postgres_only(api: Api) -> None:
    cid = str(uuid.uuid4())
    added = (
        await api.stub.AddComponent(
            pb.AddComponentRequest(
                component=_tray(
                    f"SPARE-{api.tag}",
                    id=cid,
                    name="spare-tray",
                    firmware_version="1.0",
                    component_id=f"machine-{api.tag}",
                    bmcs=[pb.BMCInfo(type=pb.BMC_TYPE_HOST, mac_address="02:aa:bb:cc:dd:02")],
                )
            )
        )
    ).component
    assert added.info.id.id == cid
    assert not added.HasField("rack_id")
    assert added.component_id == f"machine-{api.tag}"
    got = await api.stub.GetComponentInfoByID(
        pb.GetComponentInfoByIDRequest(id=pb.UUID(id=cid), with_rack=True)
    )
    assert got.component.info.name == "spare-tray"
    assert not got.HasField("rack")
    row = await _row(api, cid)
    assert row is not None
    assert row.rack_id is None
    assert [b.mac_address for b in row.bmcs] == ["02:aa:bb:cc:dd:02"]
    assert [o for o in await api.kube.list(RACKS) if o["metadata"]["name"].endswith(api.tag)] == []


async def test_add_component_refuses_bad_input(api: Api) -> None:
    name, rack_id = await _create(api)
    in_rack = pb.UUID(id=rack_id)
    taken_serial = f"CT240120001-{api.tag}"  # compute-01's
    cases = [
        (
            _tray(taken_serial, rack_id=in_rack),
            grpc.StatusCode.ALREADY_EXISTS,
            "already has a component with manufacturer 'NVIDIA' and serial number",
        ),
        (
            _tray(f"X2-{api.tag}", type=pb.COMPONENT_TYPE_UNKNOWN),
            grpc.StatusCode.INVALID_ARGUMENT,
            "component.type is COMPONENT_TYPE_UNKNOWN",
        ),
        (
            _tray(f"X3-{api.tag}", manufacturer=""),
            grpc.StatusCode.INVALID_ARGUMENT,
            "component.info.manufacturer is required",
        ),
        (
            _tray(f"X4-{api.tag}", bmcs=[pb.BMCInfo(type=pb.BMC_TYPE_HOST, mac_address="nope")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "component.bmcs[0].mac_address",
        ),
        (
            _tray(taken_serial),
            grpc.StatusCode.ALREADY_EXISTS,
            "already belong to component",
        ),
    ]
    for comp, code, text in cases:
        got = await _code(api.stub.AddComponent(pb.AddComponentRequest(component=comp)))
        assert got[0] == code, got
        assert text in got[1], got
    assert len(_entries(await _obj(api, name))) == 35  # nothing was added


# --- PatchComponent -------------------------------------------------------------------------


async def test_patch_component_in_a_rack(api: Api) -> None:
    name, _ = await _create(api)
    cid = _ids(await _obj(api, name))["compute-02"]
    host_mac = _entries(await _obj(api, name))["compute-02"]["bmcs"][0]["macAddress"]
    got = (
        await api.stub.PatchComponent(
            pb.PatchComponentRequest(
                id=pb.UUID(id=cid),
                firmware_version="1.5.0",
                position=pb.RackPosition(slot_id=9, tray_idx=1, host_id=0),
                description='{"note": "reseated"}',
                bmcs=[
                    pb.BMCInfo(type=pb.BMC_TYPE_HOST, mac_address=host_mac, ip_address="10.9.9.9"),
                    pb.BMCInfo(type=pb.BMC_TYPE_DPU, mac_address="02:aa:bb:cc:dd:03"),
                ],
            )
        )
    ).component
    assert got.firmware_version == "1.5.0"
    assert got.info.description == '{"note": "reseated"}'
    assert len(got.bmcs) == 4  # three kept, one added

    entry = _entries(await _obj(api, name))["compute-02"]
    assert entry["firmwareVersion"] == "1.5.0"
    assert entry["position"] == {"slotId": 9, "trayIndex": 1, "hostId": 0}
    bmcs = {b["macAddress"]: b for b in entry["bmcs"]}
    assert len(bmcs) == 4
    assert bmcs[host_mac]["ipAddress"] == "10.9.9.9"
    assert bmcs["02:aa:bb:cc:dd:03"] == {"type": "dpu", "macAddress": "02:aa:bb:cc:dd:03"}

    row = await _row(api, cid)
    assert row is not None
    assert (row.firmware_version, row.slot_id, row.tray_index) == ("1.5.0", 9, 1)
    assert row.description == {"note": "reseated"}
    assert {b.mac_address: b.ip_address for b in row.bmcs}[host_mac] == "10.9.9.9"


async def test_patch_component_moves_it_between_racks(api: Api) -> None:
    a, a_id = await _create(api)
    b, b_id = await _create(api, "b01")
    cid = _ids(await _obj(api, a))["compute-01"]
    moved = (
        await api.stub.PatchComponent(
            pb.PatchComponentRequest(id=pb.UUID(id=cid), rack_id=pb.UUID(id=b_id))
        )
    ).component
    assert moved.info.id.id == cid  # keeps its id
    assert moved.rack_id.id == b_id
    # it keeps its name; b's compute-01 holds the object name, so it gets one of its own
    assert moved.info.name == "compute-01"

    obj_a, obj_b = await _obj(api, a), await _obj(api, b)
    assert "compute-01" not in _entries(obj_a)
    assert cid not in _ids(obj_a).values()
    [own] = [n for n, e in _entries(obj_b).items() if e["serialNumber"] == f"CT240120001-{api.tag}"]
    assert own.startswith("compute-01-")
    assert _entries(obj_b)[own]["displayName"] == "compute-01"
    assert _ids(obj_b)[own] == cid
    assert len(_entries(obj_b)[own]["bmcs"]) == 3  # BMCs travel with it

    row = await _row(api, cid)
    assert row is not None
    assert row.rack_id == uuid.UUID(b_id)
    assert len(row.bmcs) == 3
    counts = []
    for rid in (a_id, b_id):
        rack = await api.stub.GetRackInfoByID(
            pb.GetRackInfoByIDRequest(id=pb.UUID(id=rid), with_components=True)
        )
        counts.append(len(rack.rack.components))
    assert counts == [34, 36]


async def test_patch_unassigned_component_then_move_it_into_a_rack(api: Api) -> None:
    name, rack_id = await _create(api)
    cid = (
        await api.stub.AddComponent(
            pb.AddComponentRequest(component=_tray(f"LOOSE-{api.tag}", name="compute-01"))
        )
    ).component.info.id.id
    patched = (
        await api.stub.PatchComponent(
            pb.PatchComponentRequest(
                id=pb.UUID(id=cid),
                firmware_version="2.0",
                bmcs=[pb.BMCInfo(type=pb.BMC_TYPE_HOST, mac_address="02:aa:bb:cc:dd:04")],
            )
        )
    ).component
    assert patched.firmware_version == "2.0"
    assert not patched.HasField("rack_id")
    assert len(_entries(await _obj(api, name))) == 35  # no rack touched

    moved = (
        await api.stub.PatchComponent(
            pb.PatchComponentRequest(id=pb.UUID(id=cid), rack_id=pb.UUID(id=rack_id))
        )
    ).component
    assert moved.rack_id.id == rack_id
    assert moved.info.name == "compute-01"  # its name, though the rack has a compute-01 too
    [entry] = [
        e
        for e in _entries(await _obj(api, name)).values()
        if e["serialNumber"] == f"LOOSE-{api.tag}"
    ]
    assert entry["displayName"] == "compute-01"
    assert entry["firmwareVersion"] == "2.0"
    assert entry["bmcs"] == [{"type": "host", "macAddress": "02:aa:bb:cc:dd:04"}]
    assert _ids(await _obj(api, name))[entry["name"]] == cid


async def test_patch_component_refuses_bad_input(api: Api) -> None:
    name, _ = await _create(api)
    ids = _ids(await _obj(api, name))
    other_mac = _entries(await _obj(api, name))["compute-03"]["bmcs"][0]["macAddress"]
    cid = pb.UUID(id=ids["compute-02"])
    cases = [
        (
            pb.PatchComponentRequest(id=cid, rack_id=pb.UUID(id=str(uuid.uuid4()))),
            grpc.StatusCode.NOT_FOUND,
            "no such rack",
        ),
        (
            pb.PatchComponentRequest(id=cid, description="not json"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "description must be a JSON object",
        ),
        (
            pb.PatchComponentRequest(id=cid, position=pb.RackPosition(slot_id=5000)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "position.slot_id is 5000",
        ),
        (
            pb.PatchComponentRequest(
                id=cid, bmcs=[pb.BMCInfo(type=pb.BMC_TYPE_DPU, mac_address=other_mac)]
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            f"BMC MAC {other_mac} already belongs to component {ids['compute-03']}",
        ),
        (
            pb.PatchComponentRequest(
                id=cid,
                bmcs=[
                    pb.BMCInfo(type=pb.BMC_TYPE_DPU, mac_address=f"02:aa:bb:cc:e{i}:0{i}")
                    for i in range(2)
                ],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "at most 4",
        ),
        (pb.PatchComponentRequest(), grpc.StatusCode.INVALID_ARGUMENT, "id is required"),
    ]
    for request, code, text in cases:
        got = await _code(api.stub.PatchComponent(request))
        assert got[0] == code, got
        assert text in got[1], got
    row = await _row(api, ids["compute-02"])
    assert row is not None
    assert len(row.bmcs) == 3  # nothing changed
    assert row.description == {}


# --- DeleteComponent / PurgeComponent -------------------------------------------------------


async def test_delete_then_purge_a_component_of_a_rack(api: Api) -> None:
    name, rack_id = await _create(api)
    cid = _ids(await _obj(api, name))["compute-05"]
    ident = pb.UUID(id=cid)

    code, message = await _code(api.stub.PurgeComponent(pb.PurgeComponentRequest(id=ident)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "call DeleteComponent first" in message

    await api.stub.DeleteComponent(pb.DeleteComponentRequest(id=ident))
    obj = await _obj(api, name)
    assert "compute-05" not in _entries(obj)
    assert "compute-05" not in _ids(obj)
    row = await _row(api, cid)
    assert row is not None  # soft: the row stays, marked
    assert row.deleted_at is not None
    assert row.rack_id is None
    code, _ = await _code(api.stub.GetComponentInfoByID(pb.GetComponentInfoByIDRequest(id=ident)))
    assert code == grpc.StatusCode.NOT_FOUND
    code, message = await _code(api.stub.DeleteComponent(pb.DeleteComponentRequest(id=ident)))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "already deleted" in message

    await api.stub.PurgeComponent(pb.PurgeComponentRequest(id=ident))
    assert await _row(api, cid) is None
    async with api.sessions() as s:
        assert (await s.scalars(select(BMC).where(BMC.component_id == uuid.UUID(cid)))).all() == []
    code, _ = await _code(api.stub.PurgeComponent(pb.PurgeComponentRequest(id=ident)))
    assert code == grpc.StatusCode.NOT_FOUND
    rack = await api.stub.GetRackInfoByID(
        pb.GetRackInfoByIDRequest(id=pb.UUID(id=rack_id), with_components=True)
    )
    assert len(rack.rack.components) == 34


async def test_delete_unassigned_component(api: Api) -> None:
    cid = (
        await api.stub.AddComponent(pb.AddComponentRequest(component=_tray(f"U-{api.tag}")))
    ).component.info.id.id
    await api.stub.DeleteComponent(pb.DeleteComponentRequest(id=pb.UUID(id=cid)))
    row = await _row(api, cid)
    assert row is not None
    assert row.deleted_at is not None
    # the serial number is free again: a new component takes it over from the tombstone
    again = await api.stub.AddComponent(pb.AddComponentRequest(component=_tray(f"U-{api.tag}")))
    assert again.component.info.id.id != cid
    assert await _row(api, cid) is None


# --- PatchRack ------------------------------------------------------------------------------


async def test_patch_rack_merges_and_reports(api: Api) -> None:
    name, rack_id = await _create(api)
    before = await _obj(api, name)
    c1 = _entries(before)["compute-01"]
    c1_id = _ids(before)["compute-01"]
    c2_id = _ids(before)["compute-02"]
    new_id = str(uuid.uuid4())
    request = pb.Rack(
        info=pb.DeviceInfo(id=pb.UUID(id=rack_id), model="GB200 NVL72 rev2"),
        location=pb.Location(room="hall-2"),
        components=[
            # patched, matched by serial: firmware plus one new and one known BMC
            pb.Component(
                info=pb.DeviceInfo(serial_number=c1["serialNumber"]),
                firmware_version="9.9.9",
                bmcs=[
                    pb.BMCInfo(type=pb.BMC_TYPE_HOST, mac_address=c1["bmcs"][0]["macAddress"]),
                    pb.BMCInfo(type=pb.BMC_TYPE_DPU, mac_address="02:aa:bb:cc:dd:05"),
                ],
            ),
            # matched by id, nothing different
            pb.Component(info=pb.DeviceInfo(id=pb.UUID(id=c2_id))),
            # added, with its id
            pb.Component(
                type=pb.COMPONENT_TYPE_TORSWITCH,
                info=pb.DeviceInfo(id=pb.UUID(id=new_id), serial_number=f"TOR-{api.tag}"),
                bmcs=[pb.BMCInfo(type=pb.BMC_TYPE_HOST, mac_address="02:aa:bb:cc:dd:06")],
            ),
            # skipped: no valid type for a new component
            pb.Component(info=pb.DeviceInfo(serial_number=f"BAD-{api.tag}")),
        ],
    )
    report = json.loads((await api.stub.PatchRack(pb.PatchRackRequest(rack=request))).report)
    assert report["rack_id"] == rack_id
    assert report["rack_report"] == "Patched"
    assert report["rack_serial_info"]["manufacturer"] == "NVIDIA"
    ops = [(c["component_id"], c["component_report"]) for c in report["components"]]
    assert ops == [
        (c1_id, "Patched"),
        (c2_id, "NoChange"),
        (new_id, "Added"),
        ("", "InvalidType"),
    ]
    assert report["components"][0]["bmc_reports"] == {
        c1["bmcs"][0]["macAddress"]: "NoChange",
        "02:aa:bb:cc:dd:05": "Added",
    }
    assert report["components"][2]["bmc_reports"] == {"02:aa:bb:cc:dd:06": "Added"}
    assert report["components"][3]["component_serial_info"] == {
        "manufacturer": "NVIDIA",
        "serial_number": f"BAD-{api.tag}",
    }

    obj = await _obj(api, name)
    assert obj["spec"]["identity"]["model"] == "GB200 NVL72 rev2"
    assert obj["spec"]["location"]["room"] == "hall-2"
    assert obj["spec"]["location"]["datacenter"] == "dc1"  # untouched
    entries = _entries(obj)
    assert entries["compute-01"]["firmwareVersion"] == "9.9.9"
    assert len(entries["compute-01"]["bmcs"]) == 4
    assert entries["compute-02"] == _entries(before)["compute-02"]
    assert entries["torswitch-01"]["serialNumber"] == f"TOR-{api.tag}"
    assert _ids(obj)["torswitch-01"] == new_id
    assert len(entries) == 36

    rack = (
        await api.stub.GetRackInfoByID(
            pb.GetRackInfoByIDRequest(id=pb.UUID(id=rack_id), with_components=True)
        )
    ).rack
    assert rack.info.model == "GB200 NVL72 rev2"
    assert rack.location.room == "hall-2"
    row = await _row(api, c1_id)
    assert row is not None
    assert row.firmware_version == "9.9.9"
    assert len(row.bmcs) == 4
    tor = await _row(api, new_id)
    assert tor is not None
    assert tor.rack_id == uuid.UUID(rack_id)

    # the same request again changes nothing
    again = json.loads((await api.stub.PatchRack(pb.PatchRackRequest(rack=request))).report)
    assert again["rack_report"] == "NoChange"
    assert [c["component_report"] for c in again["components"]] == [
        "NoChange",
        "NoChange",
        "NoChange",
        "InvalidType",
    ]
    assert (await _obj(api, name))["metadata"]["generation"] == obj["metadata"]["generation"]


async def test_patch_rack_unknown_rack_and_bad_input(api: Api) -> None:
    name, rack_id = await _create(api)
    unknown = str(uuid.uuid4())
    report = json.loads(
        (
            await api.stub.PatchRack(
                pb.PatchRackRequest(rack=pb.Rack(info=pb.DeviceInfo(id=pb.UUID(id=unknown))))
            )
        ).report
    )
    assert report["rack_report"] == "NoExistingRack"
    assert report["rack_id"] == unknown
    assert report["components"] == []

    by_serial = json.loads(
        (
            await api.stub.PatchRack(
                pb.PatchRackRequest(
                    rack=pb.Rack(
                        info=pb.DeviceInfo(manufacturer="NVIDIA", serial_number=f"nope-{api.tag}")
                    )
                )
            )
        ).report
    )
    assert by_serial["rack_report"] == "NoExistingRack"

    generation = (await _obj(api, name))["metadata"]["generation"]
    cases = [
        (
            pb.Rack(
                info=pb.DeviceInfo(id=pb.UUID(id=rack_id)),
                components=[
                    _tray(f"M-{api.tag}", bmcs=[pb.BMCInfo(type=pb.BMC_TYPE_HOST, mac_address="x")])
                ],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "rack.components[0].bmcs[0].mac_address",
        ),
        (
            pb.Rack(
                info=pb.DeviceInfo(id=pb.UUID(id=rack_id)),
                components=[_tray(f"N-{api.tag}", name="x" * 256)],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "rack.components[0].info.name is 256 characters long",
        ),
        (pb.Rack(info=pb.DeviceInfo()), grpc.StatusCode.INVALID_ARGUMENT, "names no rack"),
    ]
    for rack, code, text in cases:
        got = await _code(api.stub.PatchRack(pb.PatchRackRequest(rack=rack)))
        assert got[0] == code, got
        assert text in got[1], got
    assert (await _obj(api, name))["metadata"]["generation"] == generation
