"""Inventory RPCs over real gRPC: the server in-process, a real apiserver and a
real PostgreSQL. A rack created through the API is a Rack object and rows in
one call, and every read sees it at once."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from api_support import Api, example_rack, running_api
from sqlalchemy import select

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.inventory.mirror import upsert_rack
from nicoflow.inventory.models import Component, LeakStatus, Rack
from nicoflow.kube.client import NotFound as KubeNotFound
from nicoflow.kube.resources import RACKS


@pytest.fixture
async def api(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[Api]:
    async with running_api(control_plane, database_url, namespace) as a:
        yield a


async def _create(api: Api, **kw: Any) -> tuple[pb.Rack, str]:
    rack = example_rack(name=api.rack_name(), tag=api.tag, **kw)
    resp = await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))
    return rack, resp.id.id


async def test_created_rack_is_readable_at_once_and_exists_in_kubernetes(api: Api) -> None:
    rack, rack_id = await _create(api)
    uuid.UUID(rack_id)  # generated, since the message carried none

    got = (
        await api.stub.GetRackInfoByID(
            pb.GetRackInfoByIDRequest(id=pb.UUID(id=rack_id), with_components=True)
        )
    ).rack
    assert got.info.id.id == rack_id
    assert got.info.name == rack.info.name
    assert got.info.manufacturer == "NVIDIA"
    assert got.info.serial_number == rack.info.serial_number
    assert got.info.model == "GB200 NVL72"
    assert got.info.HasField("description")
    assert got.location.datacenter == "dc1"
    assert got.location.position == "row-a/01"
    assert len(got.components) == len(rack.components) == 35

    by_name = {c.info.name: c for c in got.components}
    tray = by_name["compute-01"]
    assert tray.type == pb.COMPONENT_TYPE_COMPUTE
    assert tray.component_id == f"{rack.info.name}-compute-01"
    assert tray.rack_id.id == rack_id
    assert tray.firmware_version == "1.3.2-gb200"
    assert tray.info.model == "GB200 Compute Tray (P4975)"
    assert (tray.position.slot_id, tray.position.tray_idx, tray.position.host_id) == (7, 0, 0)
    assert sorted(b.type for b in tray.bmcs) == [pb.BMC_TYPE_HOST, pb.BMC_TYPE_DPU, pb.BMC_TYPE_DPU]
    assert all(b.HasField("ip_address") for b in tray.bmcs)
    # observed fields before any inventory sync
    assert tray.power_state == "unknown"
    assert tray.status.phase == pb.PHASE_UNKNOWN
    assert tray.leak_status == pb.LEAK_STATUS_UNKNOWN

    without = (
        await api.stub.GetRackInfoByID(pb.GetRackInfoByIDRequest(id=pb.UUID(id=rack_id)))
    ).rack
    assert len(without.components) == 0

    by_serial = (
        await api.stub.GetRackInfoBySerial(
            pb.GetRackInfoBySerialRequest(
                serial_info=pb.DeviceSerialInfo(
                    manufacturer="NVIDIA", serial_number=rack.info.serial_number
                )
            )
        )
    ).rack
    assert by_serial.info.id.id == rack_id

    obj = await api.kube.get(RACKS, rack.info.name)
    assert obj["metadata"]["labels"]["flow.nico.io/rack-id"] == rack_id
    ids = json.loads(obj["metadata"]["annotations"]["flow.nico.io/component-ids"])
    assert ids["compute-01"] == tray.info.id.id
    assert obj["spec"]["identity"]["serialNumber"] == rack.info.serial_number
    spec_tray = next(c for c in obj["spec"]["components"] if c["name"] == "compute-01")
    assert spec_tray["coreId"] == tray.component_id
    assert spec_tray["position"] == {"slotId": 7, "trayIndex": 0, "hostId": 0}

    # the rows record the object they mirror, so the operator's mirror has nothing to do
    async with api.sessions() as session:
        row = await session.get(Rack, uuid.UUID(rack_id))
        assert row is not None
        assert row.source_uid == obj["metadata"]["uid"]
        result = await upsert_rack(session, obj)
        assert not result.changed


async def test_caller_supplied_ids_are_kept(api: Api) -> None:
    rack_id = str(uuid.uuid4())
    rack = example_rack(name=api.rack_name(), tag=api.tag, rack_id=rack_id)
    comp_ids = []
    for c in rack.components:
        c.info.id.id = str(uuid.uuid4())
        comp_ids.append(c.info.id.id)
    rack.components[0].info.description = "first shelf"
    rack.components[1].info.description = '{"nvos_ip": "10.0.0.9"}'
    resp = await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))
    assert resp.id.id == rack_id

    for cid in (comp_ids[0], comp_ids[-1]):
        got = await api.stub.GetComponentInfoByID(
            pb.GetComponentInfoByIDRequest(id=pb.UUID(id=cid), with_rack=True)
        )
        assert got.component.info.id.id == cid
        assert got.rack.info.id.id == rack_id
        assert len(got.rack.components) == 0
    first = await api.stub.GetComponentInfoByID(
        pb.GetComponentInfoByIDRequest(id=pb.UUID(id=comp_ids[0]))
    )
    assert first.component.info.description == "first shelf"
    assert not first.HasField("rack")
    second = await api.stub.GetComponentInfoByID(
        pb.GetComponentInfoByIDRequest(id=pb.UUID(id=comp_ids[1]))
    )
    assert json.loads(second.component.info.description) == {"nvos_ip": "10.0.0.9"}


async def test_component_by_serial_with_rack(api: Api) -> None:
    rack, rack_id = await _create(api)
    serial = next(c for c in rack.components if c.info.name == "nvswitch-01").info.serial_number
    got = await api.stub.GetComponentInfoBySerial(
        pb.GetComponentInfoBySerialRequest(
            serial_info=pb.DeviceSerialInfo(manufacturer="NVIDIA", serial_number=serial),
            with_rack=True,
        )
    )
    assert got.component.type == pb.COMPONENT_TYPE_NVSWITCH
    assert got.component.info.name == "nvswitch-01"
    assert got.rack.info.id.id == rack_id


async def test_observed_state_is_shown(api: Api) -> None:
    _, rack_id = await _create(api)
    async with api.sessions() as session, session.begin():
        comp = await session.scalar(
            select(Component).where(
                Component.rack_id == uuid.UUID(rack_id), Component.name == "compute-02"
            )
        )
        assert comp is not None
        comp.power_state = "on"  # type: ignore[assignment]
        comp.leak_status = LeakStatus.DETECTED
        comp.status_phase = "in_use"  # type: ignore[assignment]
        comp.status_reason = "Assigned"
        comp.blocked_operations = ["power_control", "firmware_control"]
        cid = str(comp.id)
    got = (
        await api.stub.GetComponentInfoByID(pb.GetComponentInfoByIDRequest(id=pb.UUID(id=cid)))
    ).component
    assert got.power_state == "on"
    assert got.leak_status == pb.LEAK_STATUS_DETECTED
    assert got.status.phase == pb.PHASE_IN_USE
    assert got.status.reason == "Assigned"
    assert list(got.status.blocked_operations) == [
        pb.OPERATION_TYPE_POWER_CONTROL,
        pb.OPERATION_TYPE_FIRMWARE_CONTROL,
    ]


async def test_list_racks_filters_orders_and_pages(api: Api) -> None:
    names = [api.rack_name(b) for b in ("a01", "a02", "b01")]
    for i, name in enumerate(names):
        rack = example_rack(name=name, tag=f"{api.tag[:4]}{i:02d}")
        if i == 2:
            rack.info.manufacturer = "Foxconn"
            rack.info.model = "GB300 NVL72"
        await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))

    async def listed(**kw: Any) -> tuple[list[str], int]:
        resp = await api.stub.GetListOfRacks(pb.GetListOfRacksRequest(**kw))
        return [r.info.name for r in resp.racks], resp.total

    assert await listed() == (names, 3)

    def f(field: int, *patterns: str, wildcard: bool = False, use_or: bool = False) -> pb.Filter:
        return pb.Filter(
            rack_field=field,
            query_info=pb.StringQueryInfo(
                patterns=list(patterns), is_wildcard=wildcard, use_or=use_or
            ),
        )

    assert await listed(filters=[f(pb.RACK_FILTER_FIELD_MANUFACTURER, "NVIDIA")]) == (
        names[:2],
        2,
    )
    assert await listed(filters=[f(pb.RACK_FILTER_FIELD_NAME, "a0", wildcard=True)]) == (
        names[:2],
        2,
    )
    # leading '%' = suffix match; without is_wildcard the pattern must match exactly
    assert await listed(
        filters=[f(pb.RACK_FILTER_FIELD_NAME, f"%01-{api.tag}", wildcard=True)]
    ) == (
        [names[0], names[2]],
        2,
    )
    assert await listed(filters=[f(pb.RACK_FILTER_FIELD_NAME, "a0")]) == ([], 0)
    assert await listed(filters=[f(pb.RACK_FILTER_FIELD_MODEL, "GB300%", wildcard=True)]) == (
        [names[2]],
        1,
    )
    both = f(pb.RACK_FILTER_FIELD_NAME, names[0], names[2], use_or=True)
    assert await listed(filters=[both]) == ([names[0], names[2]], 2)
    assert await listed(filters=[f(pb.RACK_FILTER_FIELD_NAME, names[0], names[2])]) == ([], 0)

    desc = pb.OrderBy(rack_field=pb.RACK_ORDER_BY_FIELD_NAME, direction="DESC")
    assert await listed(order_by=desc) == (list(reversed(names)), 3)
    by_maker = pb.OrderBy(rack_field=pb.RACK_ORDER_BY_FIELD_MANUFACTURER, direction="asc")
    assert (await listed(order_by=by_maker))[0][0] == names[2]
    assert await listed(pagination=pb.Pagination(offset=1, limit=1)) == ([names[1]], 3)
    assert await listed(pagination=pb.Pagination(offset=5, limit=10)) == ([], 3)

    resp = await api.stub.GetListOfRacks(
        pb.GetListOfRacksRequest(with_components=True, pagination=pb.Pagination(limit=1))
    )
    assert len(resp.racks[0].components) == 35


async def test_get_components_filters_targets_and_pages(api: Api) -> None:
    rack, rack_id = await _create(api)
    total = len(rack.components)

    async def comps(**kw: Any) -> tuple[list[pb.Component], int]:
        resp = await api.stub.GetComponents(pb.GetComponentsRequest(**kw))
        return list(resp.components), resp.total

    everything, n = await comps()
    assert n == total
    assert len(everything) == total  # under the default limit of 100

    def type_filter(*names: str, use_or: bool = False) -> pb.Filter:
        return pb.Filter(
            component_field=pb.COMPONENT_FILTER_FIELD_TYPE,
            query_info=pb.StringQueryInfo(patterns=list(names), use_or=use_or),
        )

    switches, n = await comps(filters=[type_filter("NVSwitch")])
    assert n == 9
    assert {c.type for c in switches} == {pb.COMPONENT_TYPE_NVSWITCH}
    _, n = await comps(filters=[type_filter("nvswitch", "PowerShelf", use_or=True)])
    assert n == 17

    page, n = await comps(
        filters=[type_filter("compute")],
        order_by=pb.OrderBy(component_field=pb.COMPONENT_ORDER_BY_FIELD_NAME, direction="DESC"),
        pagination=pb.Pagination(offset=0, limit=3),
    )
    assert n == 18
    assert [c.info.name for c in page] == ["compute-18", "compute-17", "compute-16"]

    rack_target = pb.OperationTargetSpec(
        racks=pb.RackTargets(
            targets=[
                pb.RackTarget(
                    id=pb.UUID(id=rack_id), component_types=[pb.COMPONENT_TYPE_POWERSHELF]
                )
            ]
        )
    )
    shelves, n = await comps(target_spec=rack_target)
    assert n == 8
    assert {c.type for c in shelves} == {pb.COMPONENT_TYPE_POWERSHELF}

    comp_target = pb.OperationTargetSpec(
        components=pb.ComponentTargets(
            targets=[
                pb.ComponentTarget(
                    external=pb.ExternalRef(
                        type=pb.COMPONENT_TYPE_COMPUTE, id=f"{rack.info.name}-compute-03"
                    )
                ),
                pb.ComponentTarget(id=pb.UUID(id=everything[0].info.id.id)),
            ]
        )
    )
    picked, n = await comps(target_spec=comp_target)
    assert n == 2
    assert "compute-03" in {c.info.name for c in picked}


async def test_nvl_domains(api: Api) -> None:
    await _create(api)
    # a Rack declared in Kubernetes with an NVL domain, as the operator mirrors it
    other = {
        "metadata": {"name": f"b01-{api.tag}", "uid": "u-b01", "generation": 1},
        "spec": {
            "identity": {"manufacturer": "NVIDIA", "serialNumber": f"S-{api.tag}"},
            "nvlDomain": f"nvl-{api.tag}",
        },
    }
    async with api.sessions() as session, session.begin():
        await upsert_rack(session, other)

    resp = await api.stub.GetListOfNVLDomains(
        pb.GetListOfNVLDomainsRequest(info=pb.StringQueryInfo(patterns=[f"nvl-{api.tag}"]))
    )
    assert resp.total == 1
    domain = resp.nvl_domains[0].identifier
    assert domain.name == f"nvl-{api.tag}"
    everything = await api.stub.GetListOfNVLDomains(pb.GetListOfNVLDomainsRequest())
    assert everything.total == 1

    for ident in (pb.Identifier(name=domain.name), pb.Identifier(id=domain.id)):
        racks = await api.stub.GetRacksForNVLDomain(
            pb.GetRacksForNVLDomainRequest(nvl_domain_identifier=ident)
        )
        assert [r.info.name for r in racks.racks] == [f"b01-{api.tag}"]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.GetRacksForNVLDomain(
            pb.GetRacksForNVLDomainRequest(nvl_domain_identifier=pb.Identifier(name="nope"))
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_delete_then_purge(api: Api) -> None:
    rack, rack_id = await _create(api)
    rid = pb.UUID(id=rack_id)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.PurgeRack(pb.PurgeRackRequest(id=rid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "DeleteRack first" in (err.value.details() or "")

    await api.stub.DeleteRack(pb.DeleteRackRequest(id=rid))
    with pytest.raises(KubeNotFound):
        await api.kube.get(RACKS, rack.info.name)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.GetRackInfoByID(pb.GetRackInfoByIDRequest(id=rid))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "deleted" in (err.value.details() or "")
    listed = await api.stub.GetListOfRacks(pb.GetListOfRacksRequest())
    assert listed.total == 0
    comps = await api.stub.GetComponents(pb.GetComponentsRequest())
    assert comps.total == 0
    # soft delete: the rows are still there
    async with api.sessions() as session:
        row = await session.get(Rack, uuid.UUID(rack_id))
        assert row is not None
        assert row.deleted_at is not None

    await api.stub.PurgeRack(pb.PurgeRackRequest(id=rid))
    async with api.sessions() as session:
        assert await session.get(Rack, uuid.UUID(rack_id)) is None
        assert await session.scalar(select(Component.id).limit(1)) is None
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.PurgeRack(pb.PurgeRackRequest(id=rid))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_recreate_after_delete_reuses_the_identity(api: Api) -> None:
    rack, rack_id = await _create(api)
    await api.stub.DeleteRack(pb.DeleteRackRequest(id=pb.UUID(id=rack_id)))
    again = await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))
    assert again.id.id != rack_id
    got = await api.stub.GetRackInfoByID(
        pb.GetRackInfoByIDRequest(id=again.id, with_components=True)
    )
    assert len(got.rack.components) == 35


async def test_duplicates_are_refused_and_nothing_is_left_behind(api: Api) -> None:
    rack, _ = await _create(api)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert rack.info.name in (err.value.details() or "")

    # same serial number under another name: refused, and no object is created
    clone = pb.Rack()
    clone.CopyFrom(rack)
    clone.info.name = api.rack_name("z09")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=clone))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "serial number" in (err.value.details() or "")
    with pytest.raises(KubeNotFound):
        await api.kube.get(RACKS, clone.info.name)

    # a Rack object of that name exists only in Kubernetes: refused, database untouched
    ghost = example_rack(name=api.rack_name("g01"), tag=f"{api.tag[:4]}99")
    await api.kube.create(
        RACKS,
        {
            "apiVersion": "flow.nico.io/v1alpha1",
            "kind": "Rack",
            "metadata": {"name": ghost.info.name},
            "spec": {"identity": {"manufacturer": "X", "serialNumber": "Y"}},
        },
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=ghost))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "Kubernetes" in (err.value.details() or "")
    async with api.sessions() as session:
        assert await session.scalar(select(Rack.id).where(Rack.name == ghost.info.name)) is None


async def test_serial_lookup_reads_the_same_component_as_id_lookup(api: Api) -> None:
    # the serial lookup reads plain rows on its own fast path: it must say
    # exactly what the ORM-based reads say, BMCs and observed state included
    rack, _ = await _create(api)
    async with api.sessions() as session, session.begin():
        comp = await session.scalar(
            select(Component).where(
                Component.serial_number == rack.components[0].info.serial_number
            )
        )
        assert comp is not None
        comp.power_state = "off"  # type: ignore[assignment]
        comp.status_phase = "in_use"  # type: ignore[assignment]
        comp.blocked_operations = ["power_control"]
    with_bmcs = 0
    for c in rack.components:
        by_serial = await api.stub.GetComponentInfoBySerial(
            pb.GetComponentInfoBySerialRequest(
                serial_info=pb.DeviceSerialInfo(
                    manufacturer=c.info.manufacturer, serial_number=c.info.serial_number
                )
            )
        )
        by_id = await api.stub.GetComponentInfoByID(
            pb.GetComponentInfoByIDRequest(id=by_serial.component.info.id)
        )
        assert by_serial.component == by_id.component
        with_bmcs += bool(by_serial.component.bmcs)
    assert with_bmcs > 0
