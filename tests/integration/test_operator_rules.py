"""OperationRules end to end: the apiserver refuses a rule it cannot run, and a
rule with a rackSelector is the one matching racks' Tasks run — recorded in
the Task's spec and status, and seen in the order the hardware was driven."""

from __future__ import annotations

import json
from typing import Any

from operator_fixtures import Env, condition, module_env

from nicoflow.devstack.flowstack import phase

LABEL = "flow.nico.io/e2e-rule-group"


env = module_env(
    racks=2,
    seed=13,
    rack_labels={0: {LABEL: "blue"}},
)


def _verify_on() -> dict[str, Any]:
    return {
        "name": "VerifyPowerStatus",
        "timeout": "1m",
        "pollInterval": "1s",
        "parameters": {"expectedStatus": "on"},
    }


def operation_rule(name: str, main_action: str = "PowerControl") -> dict[str, Any]:
    """power_on in two stages: shelves, then switches and compute side by side."""
    steps = [
        {
            "componentType": ctype,
            "stage": stage,
            "mainOperation": {"name": main_action},
            "postOperation": [_verify_on()],
        }
        for ctype, stage in (("powershelf", 1), ("nvswitch", 2), ("compute", 2))
    ]
    return {
        "apiVersion": "flow.nico.io/v1alpha1",
        "kind": "OperationRule",
        "metadata": {"name": name},
        "spec": {
            "operation": "power_on",
            "description": "blue racks power up in two stages",
            "rackSelector": {"matchLabels": {LABEL: "blue"}},
            "priority": 10,
            "definition": {"version": "v1", "steps": steps},
        },
    }


def test_rule_with_an_unknown_action_is_refused_by_the_apiserver(env: Env) -> None:
    body = operation_rule("e2e-unknown-action", main_action="Reboot")
    result = env.flow.cp.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    err = result.stderr
    assert "mainOperation.name" in err, err
    assert 'Unsupported value: "Reboot"' in err, err
    assert '"PowerControl"' in err, err  # it says what would be accepted
    got = env.flow.cp.kubectl("get", "operationrule", "e2e-unknown-action", check=False)
    assert got.returncode != 0
    assert "NotFound" in got.stderr


def test_rule_with_rack_selector_runs_on_matching_racks_only(env: Env) -> None:
    blue, other = env.racks
    rule = "e2e-blue-power-on"
    env.flow.apply(operation_rule(rule))
    try:
        accepted = env.flow.wait_for(
            "operationrule",
            rule,
            None,
            lambda o: (condition(o, "Accepted") or {}).get("status") == "True",
            timeout=30,
        )
        valid = condition(accepted, "Valid")
        assert valid is not None
        assert valid["status"] == "True"

        start = env.last_seq()
        ts = env.run("rule-power-on", "power_on", [blue, other])
        assert phase(ts) == "Complete", ts["status"]

        chosen = env.task(env.task_name("rule-power-on", blue))
        assert chosen["spec"]["rule"]["name"] == rule
        assert chosen["spec"]["rule"]["source"] == "selector"
        assert LABEL in chosen["spec"]["rule"]["reason"], chosen["spec"]["rule"]
        applied = chosen["status"]["appliedRule"]
        assert applied["name"] == rule, chosen["status"]
        assert applied["source"] == "selector"
        assert chosen["status"]["stageCount"] == 2
        stage2 = {s["componentType"] for s in chosen["status"]["stages"][1]["steps"]}
        assert stage2 == {"nvswitch", "compute"}
        # the hardware saw the rule's order: shelves first, then the rest together
        sequence = env.power_sequence(blue, start)
        assert sequence[0] == "powershelf on", sequence
        assert set(sequence[1:]) == {"nvswitch on", "compute on"}, sequence

        builtin = env.task(env.task_name("rule-power-on", other))
        assert builtin["spec"]["rule"]["name"] == "builtin-power-on"
        assert builtin["spec"]["rule"]["source"] == "builtin"
        assert builtin["status"]["appliedRule"]["name"] == "builtin-power-on"
        assert builtin["status"]["stageCount"] == 3
        assert env.power_sequence(other, start) == [
            "powershelf on",
            "nvswitch on",
            "compute on",
        ]
    finally:
        env.flow.cp.kubectl("delete", "operationrule", rule, "--ignore-not-found", check=False)
