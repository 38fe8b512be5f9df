"""Cached Task bodies: managedFields and last-applied dropped, rule snapshots
shared between Tasks, and the watched body itself never modified."""

from __future__ import annotations

import copy
from typing import Any

from nicoflow.controller.bodies import compact

RULE = {"stages": [{"stage": 1, "steps": [{"componentType": "compute", "timeout": "20m"}]}]}


def task(name: str, rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "managedFields": [{"manager": "nico-flow", "fieldsV1": {"f:spec": {}}}],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                "keep": "me",
            },
        },
        "spec": {"rack": "a01", "rule": {"name": "builtin-restart", "definition": rule}},
        "status": {"phase": "Pending"},
    }


def test_managed_fields_and_last_applied_are_dropped() -> None:
    body = task("t1", copy.deepcopy(RULE))
    original = copy.deepcopy(body)
    out = compact(body)
    assert "managedFields" not in out["metadata"]
    assert out["metadata"]["annotations"] == {"keep": "me"}
    assert out["spec"]["rack"] == "a01"
    assert out["status"] == {"phase": "Pending"}
    assert body == original  # the watched body is untouched


def test_equal_rule_snapshots_become_one_object() -> None:
    a = compact(task("t1", copy.deepcopy(RULE)))
    b = compact(task("t2", copy.deepcopy(RULE)))
    assert a["spec"]["rule"]["definition"] is b["spec"]["rule"]["definition"]
    other = copy.deepcopy(RULE)
    other["stages"][0]["steps"][0]["timeout"] = "5m"
    c = compact(task("t3", other))
    assert c["spec"]["rule"]["definition"] == other
    assert c["spec"]["rule"]["definition"] is not a["spec"]["rule"]["definition"]


def test_bodies_without_spec_or_metadata_pass_through() -> None:
    assert compact({"kind": "Task"}) == {"kind": "Task"}
    assert compact({"metadata": {"name": "x"}, "spec": {}}) == {
        "metadata": {"name": "x"},
        "spec": {},
    }


def test_a_racks_component_list_is_shared_between_its_tasks() -> None:
    comps = [{"type": "compute", "ids": [{"name": "compute-01", "coreId": "m1"}]}]
    a = task("restart-a01", copy.deepcopy(RULE))
    a["spec"]["components"] = copy.deepcopy(comps)
    b = task("upgrade-a01", copy.deepcopy(RULE))
    b["spec"]["components"] = copy.deepcopy(comps)
    assert compact(a)["spec"]["components"] is compact(b)["spec"]["components"]
    assert compact(a)["spec"]["components"] == comps
