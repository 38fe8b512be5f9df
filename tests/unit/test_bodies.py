"""Cached Task bodies: managedFields and last-applied dropped, rule snapshots
shared between Tasks, and the watched body itself never modified."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

from nicoflow.controller.bodies import compact, settled
from nicoflow.controller.tasks import TaskManager

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


def finished(name: str, rv: int, phase: str = "Succeeded") -> dict[str, Any]:
    body = task(name, copy.deepcopy(RULE))
    body["metadata"].update(namespace="ns", resourceVersion=str(rv))
    body["spec"]["taskSpecName"] = "ts"
    body["status"] = {
        "phase": phase,
        "completionTime": "2026-11-29T00:00:00Z",
        "message": "all stages succeeded",
        "commanded": ["compute-01"],
        "stages": [{"number": 1, "steps": [{"components": [{"id": "c1"}] * 35}]}],
    }
    return body


def test_settled_drops_stage_results_only() -> None:
    body = finished("t1", 1)
    out = settled(body)
    assert out["status"] == {
        "phase": "Succeeded",
        "completionTime": "2026-11-29T00:00:00Z",
        "message": "all stages succeeded",
    }
    assert out["spec"] is body["spec"]
    assert out["metadata"] is body["metadata"]
    assert "stages" in body["status"]  # the watched body is untouched


def manager() -> TaskManager:
    return TaskManager(cast(Any, None), cast(Any, None), archive=None)


def test_a_task_seen_finished_is_kept_settled_and_one_seen_running_is_not() -> None:
    tm = manager()
    tm.observe("ADDED", finished("done", 5))
    running = finished("busy", 6, phase="Running")
    tm._store(running)
    assert "stages" not in tm.entries[("ns", "done")].body["status"]
    assert "stages" in tm.entries[("ns", "busy")].body["status"]
    assert not tm.entries[("ns", "busy")].settled


def test_archiving_settles_the_entry_and_later_events_stay_settled() -> None:
    archived: list[dict[str, Any]] = []

    async def archive(body: dict[str, Any]) -> None:
        archived.append(body)

    async def scenario() -> TaskManager:
        tm = TaskManager(cast(Any, None), cast(Any, None), archive=archive)
        entry = tm._store(finished("t1", 7, phase="Running"))
        assert entry is not None
        entry.body = compact(finished("t1", 8))  # the runner wrote the final status
        await tm._archive(entry)
        tm._store(finished("t1", 9))  # the watch event of a later write
        return tm

    tm = asyncio.run(scenario())
    assert "stages" in archived[0]["status"]  # the archive got the whole run
    entry = tm.entries[("ns", "t1")]
    assert entry.settled
    assert entry.body["metadata"]["resourceVersion"] == "9"
    assert "stages" not in entry.body["status"]
