"""Operation rule and rack-association RPCs over real gRPC, against the real
apiserver and PostgreSQL: rules become OperationRule objects, associations
Rack labels that the operator's rule selection honours."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from api_support import Api, example_rack, running_api
from sqlalchemy import select

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.controller.rules import candidate_of
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.domain.default_rules import builtin_rule
from nicoflow.domain.rule_selection import RuleChoice, select_rule
from nicoflow.domain.rules import RuleSource
from nicoflow.domain.types import OperationCode
from nicoflow.inventory.models import Rack
from nicoflow.kube.resources import RACKS, RULES
from nicoflow.service.rules import ANNOTATION_RULE_NAME, NIL_UUID

pytestmark = pytest.mark.integration

POWER = pb.OPERATION_TYPE_POWER_CONTROL
DEFINITION = builtin_rule(OperationCode.POWER_ON).to_json()


@pytest.fixture
async def api(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[Api]:
    async with running_api(control_plane, database_url, namespace) as a:
        try:
            yield a
        finally:
            # rules are cluster-scoped: leave none of this test's behind
            for item in await a.kube.list(RULES):
                shown = (item["metadata"].get("annotations") or {}).get(ANNOTATION_RULE_NAME, "")
                if a.tag in shown:
                    with contextlib.suppress(Exception):
                        await a.kube.delete(RULES, item["metadata"]["name"])


async def _rule(api: Api, name: str, code: str = "cold_reset", default: bool = False) -> str:
    resp = await api.stub.CreateOperationRule(
        pb.CreateOperationRuleRequest(
            name=f"{name} {api.tag}",
            description="made by a test",
            operation_type=POWER,
            operation_code=code,
            rule_definition_json=DEFINITION,
            is_default=default,
        )
    )
    return resp.id.id


async def _rack(api: Api, base: str, n: int) -> str:
    rack = example_rack(name=api.rack_name(base), tag=f"{api.tag[:4]}{n:02d}")
    return (await api.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))).id.id


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code(), err.value.details() or ""


async def test_create_get_list_update_delete_rule(api: Api) -> None:
    rid = await _rule(api, "Graceful Reset!")
    got = await api.stub.GetOperationRule(pb.GetOperationRuleRequest(rule_id=pb.UUID(id=rid)))
    assert got.name == f"Graceful Reset! {api.tag}"
    assert got.operation_code == "cold_reset"
    assert got.operation_type == POWER
    assert json.loads(got.rule_definition_json) == json.loads(DEFINITION)
    assert not got.is_default
    assert got.created_at.seconds > 0

    objs = list(await api.kube.list(RULES, label_selector=f"flow.nico.io/rule-id={rid}"))
    assert len(objs) == 1
    assert objs[0]["metadata"]["name"] == f"graceful-reset-{api.tag}"
    assert objs[0]["spec"]["operation"] == "cold_reset"

    # a second rule with the same name gets a suffixed object name
    rid2 = await _rule(api, "Graceful Reset!")
    assert rid2 != rid
    listed = await api.stub.ListOperationRules(
        pb.ListOperationRulesRequest(operation_type=POWER, is_default=False)
    )
    ids = [r.id.id for r in listed.rules]
    assert rid in ids
    assert rid2 in ids
    assert listed.total_count >= 2
    page = await api.stub.ListOperationRules(pb.ListOperationRulesRequest(offset=0, limit=1))
    assert len(page.rules) == 1
    assert page.total_count >= 2

    await api.stub.UpdateOperationRule(
        pb.UpdateOperationRuleRequest(rule_id=pb.UUID(id=rid), name="renamed " + api.tag)
    )
    got = await api.stub.GetOperationRule(pb.GetOperationRuleRequest(rule_id=pb.UUID(id=rid)))
    assert got.name == "renamed " + api.tag
    assert got.description == "made by a test"

    await api.stub.DeleteOperationRule(pb.DeleteOperationRuleRequest(rule_id=pb.UUID(id=rid)))
    code, message = await _code(
        api.stub.GetOperationRule(pb.GetOperationRuleRequest(rule_id=pb.UUID(id=rid)))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert rid in message


async def test_bad_rule_requests_are_refused_with_reasons(api: Api) -> None:
    bad_pair = pb.CreateOperationRuleRequest(
        name="x", operation_type=pb.OPERATION_TYPE_FIRMWARE_CONTROL,
        operation_code="power_on", rule_definition_json=DEFINITION,
    )  # fmt: skip
    code, message = await _code(api.stub.CreateOperationRule(bad_pair))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "upgrade" in message
    bad_def = pb.CreateOperationRuleRequest(
        name="x", operation_type=POWER, operation_code="power_on",
        rule_definition_json='{"version": "v1", "steps": []}',
    )  # fmt: skip
    code, message = await _code(api.stub.CreateOperationRule(bad_def))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "rule_definition_json" in message
    code, message = await _code(
        api.stub.UpdateOperationRule(
            pb.UpdateOperationRuleRequest(rule_id=pb.UUID(id="nope"), name="y")
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "rule_id" in message
    code, _ = await _code(
        api.stub.DeleteOperationRule(
            pb.DeleteOperationRuleRequest(rule_id=pb.UUID(id=NIL_UUID.replace("0", "1")))
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, message = await _code(api.stub.ListOperationRules(pb.ListOperationRulesRequest(limit=0)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit" in message


async def test_defaults_conflict_and_switch(api: Api) -> None:
    first = await _rule(api, "first", default=True)
    code, message = await _code(api.stub.CreateOperationRule(
        pb.CreateOperationRuleRequest(
            name=f"second {api.tag}", operation_type=POWER, operation_code="cold_reset",
            rule_definition_json=DEFINITION, is_default=True,
        )
    ))  # fmt: skip
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "SetRuleAsDefault" in message
    second = await _rule(api, "second")
    await api.stub.SetRuleAsDefault(pb.SetRuleAsDefaultRequest(rule_id=pb.UUID(id=second)))
    defaults = await api.stub.ListOperationRules(pb.ListOperationRulesRequest(is_default=True))
    cold = [r.id.id for r in defaults.rules if r.operation_code == "cold_reset"]
    assert cold == [second]
    code, _ = await _code(
        api.stub.SetRuleAsDefault(pb.SetRuleAsDefaultRequest(rule_id=pb.UUID(id="")))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert first != second


async def test_association_wins_over_default_in_rule_selection(api: Api) -> None:
    default = await _rule(api, "fleet default", default=True)
    special = await _rule(api, "special")
    rack_x, rack_y = await _rack(api, "x01", 1), await _rack(api, "y01", 2)

    await api.stub.AssociateRuleWithRack(
        pb.AssociateRuleWithRackRequest(rack_id=pb.UUID(id=rack_x), rule_id=pb.UUID(id=special))
    )
    got = await api.stub.GetRackRuleAssociation(
        pb.GetRackRuleAssociationRequest(
            rack_id=pb.UUID(id=rack_x), operation_type=POWER, operation_code="cold_reset"
        )
    )
    assert got.rule_id.id == special
    listed = await api.stub.ListRackRuleAssociations(
        pb.ListRackRuleAssociationsRequest(rack_id=pb.UUID(id=rack_x))
    )
    assert [(a.operation_code, a.rule_id.id) for a in listed.associations] == [
        ("cold_reset", special)
    ]
    assert listed.associations[0].created_at.seconds > 0
    none = await api.stub.GetRackRuleAssociation(
        pb.GetRackRuleAssociationRequest(
            rack_id=pb.UUID(id=rack_y), operation_type=POWER, operation_code="cold_reset"
        )
    )
    assert none.rule_id.id == NIL_UUID

    # the operator's selection, fed the real objects and the mirrored labels
    candidates = [candidate_of(b) for b in await api.kube.list(RULES)]
    async with api.sessions() as session:
        labels = {r.name: r.labels for r in (await session.scalars(select(Rack))).all()}
    names = {
        candidate_of(b).name: (b["metadata"].get("labels") or {}).get("flow.nico.io/rule-id")
        for b in await api.kube.list(RULES)
    }
    on_x = select_rule("cold_reset", labels[api.rack_name("x01")], None, candidates)
    on_y = select_rule("cold_reset", labels[api.rack_name("y01")], None, candidates)
    assert isinstance(on_x, RuleChoice)
    assert isinstance(on_y, RuleChoice)
    assert names[on_x.name] == special
    assert on_x.source is RuleSource.SELECTOR
    assert names[on_y.name] == default
    assert on_y.source is RuleSource.DEFAULT

    await api.stub.DisassociateRuleFromRack(
        pb.DisassociateRuleFromRackRequest(
            rack_id=pb.UUID(id=rack_x), operation_type=POWER, operation_code="cold_reset"
        )
    )
    rack_obj = await api.kube.get(RACKS, api.rack_name("x01"))
    assert "flow.nico.io/rule.cold_reset" not in (rack_obj["metadata"].get("labels") or {})
    code, message = await _code(
        api.stub.DisassociateRuleFromRack(
            pb.DisassociateRuleFromRackRequest(
                rack_id=pb.UUID(id=rack_x), operation_type=POWER, operation_code="cold_reset"
            )
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert "cold_reset" in message
    code, message = await _code(
        api.stub.AssociateRuleWithRack(
            pb.AssociateRuleWithRackRequest(
                rack_id=pb.UUID(id=NIL_UUID.replace("0", "2")), rule_id=pb.UUID(id=special)
            )
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert "rack" in message
    code, message = await _code(
        api.stub.GetRackRuleAssociation(
            pb.GetRackRuleAssociationRequest(
                rack_id=pb.UUID(id=rack_x), operation_type=POWER, operation_code="upgrade"
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await _code(api.stub.ListRackRuleAssociations(pb.ListRackRuleAssociationsRequest()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    # deleting a rule removes its associations
    await api.stub.AssociateRuleWithRack(
        pb.AssociateRuleWithRackRequest(rack_id=pb.UUID(id=rack_y), rule_id=pb.UUID(id=special))
    )
    await api.stub.DeleteOperationRule(pb.DeleteOperationRuleRequest(rule_id=pb.UUID(id=special)))
    rack_obj = await api.kube.get(RACKS, api.rack_name("y01"))
    assert "flow.nico.io/rule.cold_reset" not in (rack_obj["metadata"].get("labels") or {})
