"""Bad requests over real gRPC: each gets the right status code and a message
that says what is wrong — never UNKNOWN, never INTERNAL.

One server, database and namespace for the module; every request here is
refused, so the cases cannot disturb each other."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from api_support import Api, example_rack, running_api
from google.protobuf.timestamp_pb2 import Timestamp

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.postgres import Postgres

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED


@dataclass
class Ctx:
    api: Api
    rack: pb.Rack
    rack_id: str
    bare_rack_id: str  # a rack whose components have no Core id yet


@pytest.fixture(scope="module")
async def ctx(
    control_plane: ControlPlane, crds_installed: list[str], postgres: Postgres
) -> AsyncIterator[Ctx]:
    dbname = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(dbname)
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", namespace)
    try:
        async with running_api(control_plane, url, namespace) as api:
            rack = example_rack(name=api.rack_name(), tag=api.tag)
            made = await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))
            bare = example_rack(name=api.rack_name("b01"), tag=f"{api.tag[:4]}77", core_ids=False)
            made_bare = await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=bare))
            yield Ctx(api, rack, made.id.id, made_bare.id.id)
    finally:
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        postgres.drop_database(dbname)


def racks(*targets: pb.RackTarget) -> pb.OperationTargetSpec:
    return pb.OperationTargetSpec(racks=pb.RackTargets(targets=list(targets)))


def comps(*targets: pb.ComponentTarget) -> pb.OperationTargetSpec:
    return pb.OperationTargetSpec(components=pb.ComponentTargets(targets=list(targets)))


def by_id(c: Ctx) -> pb.OperationTargetSpec:
    return racks(pb.RackTarget(id=pb.UUID(id=c.rack_id)))


def query(*patterns: str) -> pb.StringQueryInfo:
    return pb.StringQueryInfo(patterns=list(patterns))


def ts(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def bad_rack(c: Ctx, change: Callable[[pb.Rack], None]) -> pb.CreateExpectedRackRequest:
    rack = example_rack(name=c.api.rack_name("x01"), tag=f"{c.api.tag[:4]}88")
    change(rack)
    return pb.CreateExpectedRackRequest(rack=rack)


def _set_bmc_ip(rack: pb.Rack, ip: str) -> None:
    rack.components[0].bmcs[0].ip_address = ip


def _duplicate_serial(rack: pb.Rack) -> None:
    rack.components[1].info.serial_number = rack.components[0].info.serial_number


Build = Callable[[Ctx], Any]
UNKNOWN_ID = "6d1f3bbf-0f8e-4a0e-9a3e-2a8f7c1b0d55"

# (id, rpc, request builder, code, message substring)
CASES: list[tuple[str, str, Build, grpc.StatusCode, str]] = [
    (
        "too-many-task-ids",
        "GetTasksByIDs",
        lambda c: pb.GetTasksByIDsRequest(task_ids=[pb.UUID(id=str(uuid.uuid4()))] * 1001),
        INVALID,
        "task_ids holds 1001 ids; ask for at most 1000 at a time",
    ),
    (
        "request-too-large",
        "GetTasksByIDs",
        # 5 MiB of ids: refused by the transport before anything parses it
        lambda c: pb.GetTasksByIDsRequest(task_ids=[pb.UUID(id="x" * 1024 * 1024)] * 5),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "Received message larger than max",
    ),
    (
        "rack-id-missing",
        "GetRackInfoByID",
        lambda c: pb.GetRackInfoByIDRequest(),
        INVALID,
        "id is required",
    ),
    (
        "rack-id-malformed",
        "GetRackInfoByID",
        lambda c: pb.GetRackInfoByIDRequest(id=pb.UUID(id="rack-1")),
        INVALID,
        "is not a UUID",
    ),
    (
        "rack-id-unknown",
        "GetRackInfoByID",
        lambda c: pb.GetRackInfoByIDRequest(id=pb.UUID(id=UNKNOWN_ID)),
        NOT_FOUND,
        UNKNOWN_ID,
    ),
    (
        "rack-serial-no-maker",
        "GetRackInfoBySerial",
        lambda c: pb.GetRackInfoBySerialRequest(
            serial_info=pb.DeviceSerialInfo(serial_number="S1")
        ),
        INVALID,
        "manufacturer is required",
    ),
    (
        "rack-serial-unknown",
        "GetRackInfoBySerial",
        lambda c: pb.GetRackInfoBySerialRequest(
            serial_info=pb.DeviceSerialInfo(manufacturer="NVIDIA", serial_number="nope")
        ),
        NOT_FOUND,
        "nope",
    ),
    (
        "list-negative-offset",
        "GetListOfRacks",
        lambda c: pb.GetListOfRacksRequest(pagination=pb.Pagination(offset=-1, limit=10)),
        INVALID,
        "offset",
    ),
    (
        "list-zero-limit",
        "GetListOfRacks",
        lambda c: pb.GetListOfRacksRequest(pagination=pb.Pagination(offset=0, limit=0)),
        INVALID,
        "limit",
    ),
    (
        "list-component-field",
        "GetListOfRacks",
        lambda c: pb.GetListOfRacksRequest(
            filters=[
                pb.Filter(component_field=pb.COMPONENT_FILTER_FIELD_NAME, query_info=query("a"))
            ]
        ),
        INVALID,
        "rack_field",
    ),
    (
        "list-unspecified-field",
        "GetListOfRacks",
        lambda c: pb.GetListOfRacksRequest(
            filters=[pb.Filter(rack_field=pb.RACK_FILTER_FIELD_UNSPECIFIED, query_info=query("a"))]
        ),
        INVALID,
        "RACK_FILTER_FIELD_NAME",
    ),
    (
        "list-no-patterns",
        "GetListOfRacks",
        lambda c: pb.GetListOfRacksRequest(
            filters=[pb.Filter(rack_field=pb.RACK_FILTER_FIELD_NAME)]
        ),
        INVALID,
        "no patterns",
    ),
    (
        "list-bad-direction",
        "GetListOfRacks",
        lambda c: pb.GetListOfRacksRequest(
            order_by=pb.OrderBy(rack_field=pb.RACK_ORDER_BY_FIELD_NAME, direction="UP")
        ),
        INVALID,
        "ASC or DESC",
    ),
    (
        "components-unknown-type-name",
        "GetComponents",
        lambda c: pb.GetComponentsRequest(
            filters=[
                pb.Filter(component_field=pb.COMPONENT_FILTER_FIELD_TYPE, query_info=query("Blade"))
            ]
        ),
        INVALID,
        "unknown component type",
    ),
    (
        "components-empty-target",
        "GetComponents",
        lambda c: pb.GetComponentsRequest(target_spec=pb.OperationTargetSpec()),
        INVALID,
        "target_spec is empty",
    ),
    (
        "components-unknown-rack",
        "GetComponents",
        lambda c: pb.GetComponentsRequest(target_spec=racks(pb.RackTarget(name="no-such-rack"))),
        NOT_FOUND,
        "no-such-rack",
    ),
    (
        "component-id-malformed",
        "GetComponentInfoByID",
        lambda c: pb.GetComponentInfoByIDRequest(id=pb.UUID(id="12345")),
        INVALID,
        "is not a UUID",
    ),
    (
        "component-serial-missing",
        "GetComponentInfoBySerial",
        lambda c: pb.GetComponentInfoBySerialRequest(
            serial_info=pb.DeviceSerialInfo(manufacturer="NVIDIA")
        ),
        INVALID,
        "serial_number is required",
    ),
    (
        "create-no-info",
        "CreateExpectedRack",
        lambda c: pb.CreateExpectedRackRequest(rack=pb.Rack()),
        INVALID,
        "rack.info is required",
    ),
    (
        "create-bad-name",
        "CreateExpectedRack",
        lambda c: bad_rack(c, lambda r: setattr(r.info, "name", "Rack\tA01")),
        INVALID,
        "rack.info.name contains control characters",
    ),
    (
        "create-unknown-type",
        "CreateExpectedRack",
        lambda c: bad_rack(
            c, lambda r: setattr(r.components[0], "type", pb.COMPONENT_TYPE_UNKNOWN)
        ),
        INVALID,
        "COMPONENT_TYPE_UNKNOWN",
    ),
    (
        "create-duplicate-serial",
        "CreateExpectedRack",
        lambda c: bad_rack(c, _duplicate_serial),
        INVALID,
        "its own serial number",
    ),
    (
        "create-bad-mac",
        "CreateExpectedRack",
        lambda c: bad_rack(c, lambda r: setattr(r.components[0].bmcs[0], "mac_address", "zz:00")),
        INVALID,
        "invalid MAC",
    ),
    (
        "create-bad-ip",
        "CreateExpectedRack",
        lambda c: bad_rack(c, lambda r: _set_bmc_ip(r, "10.0.0.300")),
        INVALID,
        "not an IP address",
    ),
    (
        "create-bad-rack-id",
        "CreateExpectedRack",
        lambda c: bad_rack(c, lambda r: setattr(r.info.id, "id", "xyz")),
        INVALID,
        "rack.info.id",
    ),
    (
        "create-duplicate-rack",
        "CreateExpectedRack",
        lambda c: pb.CreateExpectedRackRequest(rack=c.rack),
        EXISTS,
        "already",
    ),
    (
        "op-empty-target",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(),
        INVALID,
        "target_spec is empty",
    ),
    (
        "op-no-rack-targets",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(target_spec=racks()),
        INVALID,
        "no targets",
    ),
    (
        "op-rack-neither-id-nor-name",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(target_spec=racks(pb.RackTarget())),
        INVALID,
        "names no rack",
    ),
    (
        "op-unknown-type",
        "PowerOffRack",
        lambda c: pb.PowerOffRackRequest(
            target_spec=racks(
                pb.RackTarget(id=pb.UUID(id=c.rack_id), component_types=[pb.COMPONENT_TYPE_UNKNOWN])
            )
        ),
        INVALID,
        "COMPONENT_TYPE_UNKNOWN",
    ),
    (
        "op-unknown-type-number",
        "PowerOffRack",
        lambda c: pb.PowerOffRackRequest(
            target_spec=racks(pb.RackTarget(id=pb.UUID(id=c.rack_id), component_types=[42]))
        ),
        INVALID,
        "42",
    ),
    (
        "op-component-neither",
        "PowerResetRack",
        lambda c: pb.PowerResetRackRequest(target_spec=comps(pb.ComponentTarget())),
        INVALID,
        "names no component",
    ),
    (
        "op-external-unknown-type",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(
            target_spec=comps(pb.ComponentTarget(external=pb.ExternalRef(id="m-1")))
        ),
        INVALID,
        "external.type",
    ),
    (
        "op-external-empty-id",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(
            target_spec=comps(
                pb.ComponentTarget(external=pb.ExternalRef(type=pb.COMPONENT_TYPE_COMPUTE))
            )
        ),
        INVALID,
        "external.id is empty",
    ),
    (
        "op-rack-id-malformed",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(target_spec=racks(pb.RackTarget(id=pb.UUID(id="r1")))),
        INVALID,
        "is not a UUID",
    ),
    (
        "op-unknown-rack-id",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(
            target_spec=racks(pb.RackTarget(id=pb.UUID(id=UNKNOWN_ID)))
        ),
        NOT_FOUND,
        f"rack id {UNKNOWN_ID}",
    ),
    (
        "op-unknown-rack-name",
        "BringUpRack",
        lambda c: pb.BringUpRackRequest(target_spec=racks(pb.RackTarget(name="ghost"))),
        NOT_FOUND,
        "'ghost'",
    ),
    (
        "op-unknown-component",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(
            target_spec=comps(pb.ComponentTarget(id=pb.UUID(id=UNKNOWN_ID)))
        ),
        NOT_FOUND,
        "component id",
    ),
    (
        "op-unknown-core-id",
        "IngestRack",
        lambda c: pb.IngestRackRequest(
            target_spec=comps(
                pb.ComponentTarget(
                    external=pb.ExternalRef(type=pb.COMPONENT_TYPE_NVSWITCH, id="sw-missing")
                )
            )
        ),
        NOT_FOUND,
        "sw-missing",
    ),
    (
        "op-rule-id-malformed",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(target_spec=by_id(c), rule_id=pb.UUID(id="rule-1")),
        INVALID,
        "rule_id",
    ),
    (
        "op-rule-unknown",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(target_spec=by_id(c), rule_id=pb.UUID(id=UNKNOWN_ID)),
        NOT_FOUND,
        "operation rule",
    ),
    (
        "op-negative-queue-timeout",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(
            target_spec=by_id(c), queue_options=pb.QueueOptions(queue_timeout_seconds=-5)
        ),
        INVALID,
        "queue_timeout_seconds",
    ),
    (
        "op-unknown-strategy",
        "PowerOffRack",
        lambda c: pb.PowerOffRackRequest(
            target_spec=by_id(c), queue_options=pb.QueueOptions(conflict_strategy=7)
        ),
        INVALID,
        "conflict_strategy",
    ),
    (
        "op-description-too-long",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(target_spec=by_id(c), description="x" * 2000),
        INVALID,
        "description",
    ),
    (
        "op-no-core-ids",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(
            target_spec=racks(pb.RackTarget(id=pb.UUID(id=c.bare_rack_id)))
        ),
        PRECONDITION,
        "NICo Core id",
    ),
    (
        "op-types-absent-in-rack",
        "PowerOnRack",
        lambda c: pb.PowerOnRackRequest(
            target_spec=racks(
                pb.RackTarget(id=pb.UUID(id=c.rack_id), component_types=[pb.COMPONENT_TYPE_CDU])
            )
        ),
        PRECONDITION,
        "no cdu components",
    ),
    (
        "fw-window-half",
        "UpgradeFirmware",
        lambda c: pb.UpgradeFirmwareRequest(target_spec=by_id(c), start_time=ts(1_700_000_000)),
        INVALID,
        "give both or neither",
    ),
    (
        "fw-window-reversed",
        "UpgradeFirmware",
        lambda c: pb.UpgradeFirmwareRequest(
            target_spec=by_id(c), start_time=ts(1_700_000_100), end_time=ts(1_700_000_000)
        ),
        INVALID,
        "before end_time",
    ),
    (
        "fw-sub-target-case",
        "UpgradeFirmware",
        lambda c: pb.UpgradeFirmwareRequest(target_spec=by_id(c), sub_targets=["BMC"]),
        INVALID,
        "lower-case",
    ),
    (
        "fw-version-bad-json",
        "UpgradeFirmware",
        lambda c: pb.UpgradeFirmwareRequest(target_spec=by_id(c), target_version='{"compute": '),
        INVALID,
        "does not parse",
    ),
    (
        "fw-version-unknown-type",
        "UpgradeFirmware",
        lambda c: pb.UpgradeFirmwareRequest(target_spec=by_id(c), target_version='{"gpu": "1.0"}'),
        INVALID,
        "unknown component type",
    ),
    (
        "tasks-zero-limit",
        "ListTasks",
        lambda c: pb.ListTasksRequest(pagination=pb.Pagination(limit=0)),
        INVALID,
        "limit",
    ),
    (
        "tasks-bad-rack-id",
        "ListTasks",
        lambda c: pb.ListTasksRequest(rack_id=pb.UUID(id="r")),
        INVALID,
        "rack_id",
    ),
    (
        "tasks-ids-malformed",
        "GetTasksByIDs",
        lambda c: pb.GetTasksByIDsRequest(task_ids=[pb.UUID(id="t-1")]),
        INVALID,
        "task_ids[0]",
    ),
    (
        "cancel-missing-id",
        "CancelTask",
        lambda c: pb.CancelTaskRequest(),
        INVALID,
        "task_id is required",
    ),
    (
        "cancel-unknown",
        "CancelTask",
        lambda c: pb.CancelTaskRequest(task_id=pb.UUID(id=UNKNOWN_ID)),
        NOT_FOUND,
        UNKNOWN_ID,
    ),
    (
        "purge-before-delete",
        "PurgeRack",
        lambda c: pb.PurgeRackRequest(id=pb.UUID(id=c.rack_id)),
        PRECONDITION,
        "call DeleteRack first",
    ),
    (
        "delete-unknown",
        "DeleteRack",
        lambda c: pb.DeleteRackRequest(id=pb.UUID(id=UNKNOWN_ID)),
        NOT_FOUND,
        "not found",
    ),
    (
        "nvl-both-identifiers",
        "GetRacksForNVLDomain",
        lambda c: pb.GetRacksForNVLDomainRequest(
            nvl_domain_identifier=pb.Identifier(id=pb.UUID(id=UNKNOWN_ID), name="d")
        ),
        INVALID,
        "both id and name",
    ),
    (
        "nvl-no-identifier",
        "GetRacksForNVLDomain",
        lambda c: pb.GetRacksForNVLDomainRequest(),
        INVALID,
        "give its id",
    ),
    (
        "nvl-negative-offset",
        "GetListOfNVLDomains",
        lambda c: pb.GetListOfNVLDomainsRequest(pagination=pb.Pagination(offset=-3, limit=1)),
        INVALID,
        "offset",
    ),
    (
        "nvl-create-no-name",
        "CreateNVLDomain",
        lambda c: pb.CreateNVLDomainRequest(),
        INVALID,
        "nvl_domain.identifier.name is required",
    ),
    (
        "patch-rack-no-info",
        "PatchRack",
        lambda c: pb.PatchRackRequest(),
        INVALID,
        "rack.info is required",
    ),
    (
        "patch-rack-rename",
        "PatchRack",
        lambda c: pb.PatchRackRequest(
            rack=pb.Rack(info=pb.DeviceInfo(id=pb.UUID(id=c.rack_id), name="other-name"))
        ),
        INVALID,
        "cannot change",
    ),
    (
        "add-component-unknown-rack",
        "AddComponent",
        lambda c: pb.AddComponentRequest(
            component=pb.Component(
                type=pb.COMPONENT_TYPE_COMPUTE,
                info=pb.DeviceInfo(manufacturer="NVIDIA", serial_number="S-unknown-rack"),
                rack_id=pb.UUID(id=UNKNOWN_ID),
            )
        ),
        NOT_FOUND,
        "component.rack_id",
    ),
    (
        "patch-component-unknown",
        "PatchComponent",
        lambda c: pb.PatchComponentRequest(id=pb.UUID(id=UNKNOWN_ID), firmware_version="2"),
        NOT_FOUND,
        "not found",
    ),
    (
        "delete-component-bad-id",
        "DeleteComponent",
        lambda c: pb.DeleteComponentRequest(id=pb.UUID(id="c-1")),
        INVALID,
        "is not a UUID",
    ),
    (
        "purge-component-unknown",
        "PurgeComponent",
        lambda c: pb.PurgeComponentRequest(id=pb.UUID(id=UNKNOWN_ID)),
        NOT_FOUND,
        "not found",
    ),
    (
        "rules-zero-limit",
        "ListOperationRules",
        lambda c: pb.ListOperationRulesRequest(limit=0),
        INVALID,
        "limit is 0",
    ),
    (
        "unimplemented-operation-runs",
        "GetOperationRun",
        lambda c: pb.GetOperationRunRequest(),
        UNIMPLEMENTED,
        "operation runs are not supported",
    ),
]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("rpc", "build", "code", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_bad_request(
    ctx: Ctx, rpc: str, build: Build, code: grpc.StatusCode, text: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(ctx.api.stub, rpc)(build(ctx))
    details = err.value.details() or ""
    assert err.value.code() == code, details
    assert text in details


async def test_refused_requests_left_no_taskspec(ctx: Ctx) -> None:
    from nicoflow.kube.resources import TASKSPECS

    assert await ctx.api.kube.list(TASKSPECS, ctx.api.namespace) == []
