"""Operation targets from command-line values."""

from __future__ import annotations

import pytest

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.client.targets import TargetError, identifier, target_spec

RID = "6b2d7f4c-9a41-4e2b-8d7a-1f0e3c5b9a21"


def test_racks_by_id_and_name_share_the_types() -> None:
    spec = target_spec(rack_ids=[RID], rack_names=["a01"], types=["Compute", "nvswitch"])
    types = [pb.COMPONENT_TYPE_COMPUTE, pb.COMPONENT_TYPE_NVSWITCH]
    assert spec == pb.OperationTargetSpec(
        racks=pb.RackTargets(
            targets=[
                pb.RackTarget(id=pb.UUID(id=RID), component_types=types),
                pb.RackTarget(name="a01", component_types=types),
            ]
        )
    )


def test_components_by_uuid_or_core_id_with_one_type() -> None:
    spec = target_spec(component_ids=[RID, "fm100ht0"], types=["compute"])
    assert [t.WhichOneof("identifier") for t in spec.components.targets] == ["id", "external"]
    assert spec.components.targets[1].external == pb.ExternalRef(
        type=pb.COMPONENT_TYPE_COMPUTE, id="fm100ht0"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no targets"),
        ({"rack_ids": [RID], "component_ids": [RID]}, "not both"),
        ({"rack_ids": ["a01"]}, "not a UUID"),
        ({"component_ids": ["fm1"]}, "exactly one component type"),
        ({"component_ids": ["fm1"], "types": ["compute", "nvswitch"]}, "exactly one"),
        ({"rack_names": ["a01"], "types": ["gpu"]}, "unknown component type"),
    ],
)
def test_refused_targets_say_why(kwargs: dict[str, list[str]], message: str) -> None:
    with pytest.raises(TargetError, match=message):
        target_spec(**kwargs)


def test_identifier_is_id_for_uuids_else_name() -> None:
    assert identifier(RID) == pb.Identifier(id=pb.UUID(id=RID))
    assert identifier("nvl-a01") == pb.Identifier(name="nvl-a01")
