"""Compatibility with the original service's clients: requests built exactly
as its CLI and Go client build them (tests/integration/original_client.py)
go to `flow serve`, and the answers are checked field by field, the way an
unchanged client reads them.

The operator does not run here; where an answer depends on a Task, the test
creates the Task object the operator would create (deterministic name)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from api_support import Api, running_api
from original_client import rule_batch

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.kube.resources import RULES
from nicoflow.service.rules import ANNOTATION_RULE_NAME

pytestmark = pytest.mark.integration


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


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code(), err.value.details() or ""


# --- item 2: rules from the original's YAML batch ----------------------------------------------

RULES_YAML = """
version: v1
rules:
  - name: staged-force-on-{tag}
    description: shelves, then switches, then compute with a pause
    operation_type: power_control
    operation: force_power_on
    steps:
      - component_type: powershelf
        stage: 1
        max_parallel: 0
        timeout: 15m
        retry: {{max_attempts: 3, initial_interval: 5s, backoff_coefficient: 2.0}}
        main_operation: {{name: PowerControl}}
        post_operation:
          - name: VerifyPowerStatus
            timeout: 5m
            poll_interval: 10s
            parameters: {{expected_status: "on"}}
      - component_type: nvswitch
        stage: 2
        main_operation: {{name: PowerControl}}
      - component_type: compute
        stage: 3
        max_parallel: 4
        pre_operation:
          - name: Sleep
            parameters: {{duration: 10s}}
        main_operation: {{name: PowerControl}}
  - name: gentle-restart-{tag}
    operation_type: power_control
    operation: force_restart
    steps:
      - component_type: compute
        stage: 1
        main_operation: {{name: PowerControl, parameters: {{operation: force_power_off}}}}
        post_operation:
          - name: Sleep
            parameters: {{duration: 1m30s}}
      - component_type: compute
        stage: 2
        main_operation: {{name: PowerControl, parameters: {{operation: force_power_on}}}}
"""


async def test_rules_from_the_original_yaml_batch_are_created_as_sent(api: Api) -> None:
    """The original CLI sends "0s" for every unset duration and a Sleep's
    duration as integer nanoseconds; every rule of a batch is a default."""
    batch = rule_batch(RULES_YAML.format(tag=api.tag))
    sent = json.loads(batch[0].request.rule_definition_json)
    assert sent["steps"][2]["pre_operation"][0]["parameters"]["duration"] == 10_000_000_000
    assert sent["steps"][1]["timeout"] == "0s"

    ids = []
    for rule in batch:
        resp = await api.stub.CreateOperationRule(rule.request)
        ids.append(resp.id.id)
    got = await api.stub.GetOperationRule(pb.GetOperationRuleRequest(rule_id=pb.UUID(id=ids[0])))
    assert got.id.id == ids[0]
    assert got.name == f"staged-force-on-{api.tag}"
    assert got.description == "shelves, then switches, then compute with a pause"
    assert got.operation_type == pb.OPERATION_TYPE_POWER_CONTROL
    assert got.operation_code == "force_power_on"
    assert got.is_default
    assert got.HasField("created_at")
    assert got.HasField("updated_at")
    steps = json.loads(got.rule_definition_json)["steps"]
    assert [(s["component_type"], s["stage"]) for s in steps] == [
        ("powershelf", 1),
        ("nvswitch", 2),
        ("compute", 3),
    ]
    shelves, switches, compute = steps
    assert shelves["timeout"] == "15m0s"
    assert shelves["retry"]["initial_interval"] == "5s"
    assert shelves["retry"]["max_attempts"] == 3
    assert shelves["post_operation"][0]["timeout"] == "5m0s"
    assert shelves["post_operation"][0]["poll_interval"] == "10s"
    assert "timeout" not in switches  # "0s" was "use the default"
    assert "timeout" not in shelves["main_operation"]
    assert compute["max_parallel"] == 4
    assert compute["pre_operation"][0]["parameters"]["duration"] == "10s"
    second = await api.stub.GetOperationRule(pb.GetOperationRuleRequest(rule_id=pb.UUID(id=ids[1])))
    post = json.loads(second.rule_definition_json)["steps"][0]["post_operation"][0]
    assert post["parameters"]["duration"] == "1m30s"

    listed = await api.stub.ListOperationRules(
        pb.ListOperationRulesRequest(
            operation_type=pb.OPERATION_TYPE_POWER_CONTROL, is_default=True
        )
    )
    assert set(ids) <= {r.id.id for r in listed.rules}


async def test_overwrite_as_the_original_cli_does_it_replaces_the_rule(api: Api) -> None:
    """`rule create --from-yaml --overwrite` finds the rule of the same
    operation type and code, deletes it, and creates the new one: the create
    must succeed, or the operation is left without its rule."""
    [first] = rule_batch(RULES_YAML.format(tag=api.tag))[1:]
    old_id = (await api.stub.CreateOperationRule(first.request)).id.id

    changed = RULES_YAML.format(tag=api.tag).replace("1m30s", "45s")
    [replacement] = rule_batch(changed)[1:]
    # findExistingRule: list everything, match type and code
    listed = await api.stub.ListOperationRules(pb.ListOperationRulesRequest())
    [existing] = [
        r
        for r in listed.rules
        if r.operation_type == replacement.operation_type
        and r.operation_code == replacement.operation
        and api.tag in r.name
    ]
    assert existing.id.id == old_id
    await api.stub.DeleteOperationRule(pb.DeleteOperationRuleRequest(rule_id=existing.id))
    new_id = (await api.stub.CreateOperationRule(replacement.request)).id.id

    got = await api.stub.GetOperationRule(pb.GetOperationRuleRequest(rule_id=pb.UUID(id=new_id)))
    assert got.is_default
    post = json.loads(got.rule_definition_json)["steps"][0]["post_operation"][0]
    assert post["parameters"]["duration"] == "45s"
    code, _ = await _code(
        api.stub.GetOperationRule(pb.GetOperationRuleRequest(rule_id=pb.UUID(id=old_id)))
    )
    assert code == grpc.StatusCode.NOT_FOUND
