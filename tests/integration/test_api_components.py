"""NVL domain writes, ValidateComponents and the operation-run answer, over
real gRPC against the real apiserver and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from api_support import Api, example_rack, running_api
from sqlalchemy import select

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.domain.types import ComponentType
from nicoflow.inventory.models import Component, ComponentDrift, DriftType, Rack
from nicoflow.kube.resources import RACKS

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[Api]:
    async with running_api(control_plane, database_url, namespace) as a:
        yield a


async def _rack(api: Api, base: str, n: int) -> str:
    rack = example_rack(name=api.rack_name(base), tag=f"{api.tag[:4]}{n:02d}")
    return (await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))).id.id


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code(), err.value.details() or ""


def _domain(name: str) -> pb.Identifier:
    return pb.Identifier(name=name)


async def test_nvl_domains_create_attach_detach(api: Api) -> None:
    a, b = await _rack(api, "a01", 1), await _rack(api, "b01", 2)
    d1 = f"dom1-{api.tag}"
    created = await api.stub.CreateNVLDomain(
        pb.CreateNVLDomainRequest(nvl_domain=pb.NVLDomain(identifier=_domain(d1)))
    )
    code, message = await _code(
        api.stub.CreateNVLDomain(
            pb.CreateNVLDomainRequest(nvl_domain=pb.NVLDomain(identifier=_domain(d1)))
        )
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert d1 in message
    code, message = await _code(
        api.stub.CreateNVLDomain(
            pb.CreateNVLDomainRequest(nvl_domain=pb.NVLDomain(identifier=_domain("x" * 256)))
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 255" in message

    await api.stub.AttachRacksToNVLDomain(
        pb.AttachRacksToNVLDomainRequest(
            nvl_domain_identifier=pb.Identifier(id=created.id),
            rack_identifiers=[
                pb.Identifier(id=pb.UUID(id=a)),
                pb.Identifier(name=api.rack_name("b01")),
            ],
        )
    )
    racks = await api.stub.GetRacksForNVLDomain(
        pb.GetRacksForNVLDomainRequest(nvl_domain_identifier=_domain(d1))
    )
    assert sorted(r.info.id.id for r in racks.racks) == sorted([a, b])
    obj = await api.kube.get(RACKS, api.rack_name("a01"))
    assert obj["spec"]["nvlDomain"] == d1
    # attaching again to the same domain is a no-op
    await api.stub.AttachRacksToNVLDomain(
        pb.AttachRacksToNVLDomainRequest(
            nvl_domain_identifier=_domain(d1), rack_identifiers=[pb.Identifier(id=pb.UUID(id=a))]
        )
    )

    d2 = f"dom2-{api.tag}"
    await api.stub.CreateNVLDomain(
        pb.CreateNVLDomainRequest(nvl_domain=pb.NVLDomain(identifier=_domain(d2)))
    )
    code, message = await _code(
        api.stub.AttachRacksToNVLDomain(
            pb.AttachRacksToNVLDomainRequest(
                nvl_domain_identifier=_domain(d2),
                rack_identifiers=[pb.Identifier(id=pb.UUID(id=a))],
            )
        )
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert d1 in message

    await api.stub.DetachRacksFromNVLDomain(
        pb.DetachRacksFromNVLDomainRequest(rack_identifiers=[pb.Identifier(id=pb.UUID(id=a))])
    )
    obj = await api.kube.get(RACKS, api.rack_name("a01"))
    assert "nvlDomain" not in obj["spec"]
    async with api.sessions() as session:
        row = await session.scalar(select(Rack).where(Rack.name == api.rack_name("a01")))
        assert row is not None
        assert row.nvl_domain_id is None
    code, _ = await _code(api.stub.DetachRacksFromNVLDomain(pb.DetachRacksFromNVLDomainRequest()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, message = await _code(
        api.stub.AttachRacksToNVLDomain(
            pb.AttachRacksToNVLDomainRequest(
                nvl_domain_identifier=_domain("no-such-domain"),
                rack_identifiers=[pb.Identifier(id=pb.UUID(id=a))],
            )
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert "no-such-domain" in message


async def test_validate_components_reads_recorded_drift(api: Api) -> None:
    a = await _rack(api, "a01", 1)
    await _rack(api, "b01", 2)
    async with api.sessions() as session, session.begin():
        comps = {
            (rack_name, c.name): c
            for c, rack_name in (
                await session.execute(
                    select(Component, Rack.name).join(Rack).where(Rack.name.like(f"%{api.tag}"))
                )
            ).all()
        }
        missing = comps[(api.rack_name("a01"), "compute-01")]
        mismatched = comps[(api.rack_name("a01"), "nvswitch-01")]
        other = comps[(api.rack_name("b01"), "compute-01")]
        session.add_all(
            [
                ComponentDrift(
                    component_id=missing.id, component_type=ComponentType.COMPUTE,
                    drift_type=DriftType.MISSING,
                ),
                ComponentDrift(
                    component_id=mismatched.id, external_id=mismatched.external_id,
                    component_type=ComponentType.NVSWITCH, drift_type=DriftType.MISMATCH,
                    diffs=[{"field_name": "firmware_version", "expected_value": "1",
                            "actual_value": "2"}],
                ),
                ComponentDrift(
                    component_id=other.id, component_type=ComponentType.COMPUTE,
                    drift_type=DriftType.MISSING,
                ),
                ComponentDrift(
                    external_id="stray-1", component_type=ComponentType.COMPUTE,
                    drift_type=DriftType.UNEXPECTED,
                ),
            ]
        )  # fmt: skip
        rack_a_size = sum(1 for k in comps if k[0] == api.rack_name("a01"))

    everything = await api.stub.ValidateComponents(pb.ValidateComponentsRequest())
    assert (everything.total_diffs, everything.missing_count) == (4, 2)
    assert (everything.unexpected_count, everything.mismatch_count) == (1, 1)
    assert everything.match_count == 0
    by_type = {d.type: d for d in everything.diffs}
    assert by_type[pb.DIFF_TYPE_UNEXPECTED].component_id == "stray-1"
    mm = by_type[pb.DIFF_TYPE_MISMATCH]
    assert mm.id.id == str(mismatched.id)
    assert mm.expected.firmware_version != "2"
    assert mm.actual.firmware_version == "2"
    assert [f.field_name for f in mm.field_diffs] == ["firmware_version"]

    target = pb.OperationTargetSpec(racks=pb.RackTargets(targets=[pb.RackTarget(id=pb.UUID(id=a))]))
    scoped = await api.stub.ValidateComponents(pb.ValidateComponentsRequest(target_spec=target))
    assert (scoped.total_diffs, scoped.missing_count, scoped.mismatch_count) == (2, 1, 1)
    assert scoped.unexpected_count == 0
    assert scoped.match_count == rack_a_size - 2

    filtered = await api.stub.ValidateComponents(
        pb.ValidateComponentsRequest(
            target_spec=target,
            filters=[
                pb.Filter(
                    component_field=pb.COMPONENT_FILTER_FIELD_TYPE,
                    query_info=pb.StringQueryInfo(patterns=["NVSwitch"]),
                )
            ],
        )
    )
    assert [d.type for d in filtered.diffs] == [pb.DIFF_TYPE_MISMATCH]
    assert filtered.match_count == 9 - 1

    code, message = await _code(
        api.stub.ValidateComponents(
            pb.ValidateComponentsRequest(pagination=pb.Pagination(offset=-1, limit=5))
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "offset" in message


async def test_operation_runs_answer_unimplemented_with_the_reason(api: Api) -> None:
    code, message = await _code(api.stub.CreateOperationRun(pb.CreateOperationRunRequest()))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert "never executed them" in message
    assert "maxParallelRacks" in message
