"""Which Tasks the operator refuses to run (nicoflow.controller.ownership), and
who asked for an object (nicoflow.api.admission.requester)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nicoflow.api.admission import requester
from nicoflow.controller.ownership import inventory_refusal, owner_refusal
from nicoflow.domain.targets import InventoryComponent, InventoryRack
from nicoflow.domain.types import ComponentType

TASKSPEC = {
    "metadata": {"name": "cycle", "namespace": "t", "uid": "u-1"},
    "spec": {"operation": "restart"},
}
TASK: dict[str, Any] = {
    "metadata": {
        "name": "cycle-a01",
        "namespace": "t",
        "uid": "task-1",
        "ownerReferences": [
            {
                "apiVersion": "flow.nico.io/v1alpha1",
                "kind": "TaskSpec",
                "name": "cycle",
                "uid": "u-1",
                "controller": True,
            }
        ],
    },
    "spec": {
        "taskSpecName": "cycle",
        "rack": "a01",
        "operation": "restart",
        "components": [{"type": "compute", "ids": [{"name": "c1", "coreId": "core-1"}]}],
    },
}
RACK = InventoryRack(
    "a01",
    components=(InventoryComponent("id-1", "c1", ComponentType.COMPUTE, "S1", core_id="core-1"),),
)


def _task(change: dict[str, Any]) -> dict[str, Any]:
    task = copy.deepcopy(TASK)
    for path, value in change.items():
        *parents, leaf = path.split(".")
        node = task
        for p in parents:
            node = node[p]
        node[leaf] = value
    return task


def test_the_operators_own_task_passes() -> None:
    assert owner_refusal(TASK, TASKSPEC) is None
    assert inventory_refusal(TASK, RACK) is None


@pytest.mark.parametrize(
    ("change", "taskspec", "reason", "words"),
    [
        ({"metadata.ownerReferences": []}, TASKSPEC, "Orphaned", "no controlling owner"),
        ({}, None, "Orphaned", "does not exist"),
        (
            {"metadata.ownerReferences": [{**TASK["metadata"]["ownerReferences"][0], "uid": "x"}]},
            TASKSPEC,
            "OwnerMismatch",
            "uid x",
        ),
        (
            {"metadata.ownerReferences": [{"kind": "ConfigMap", "name": "c", "controller": True}]},
            TASKSPEC,
            "OwnerMismatch",
            "ConfigMap c",
        ),
        ({"metadata.name": "sneaky"}, TASKSPEC, "OwnerMismatch", "is named cycle-a01"),
        ({"spec.operation": "power_off"}, TASKSPEC, "OwnerMismatch", "asks for restart"),
    ],
)
def test_owner_refusals(
    change: dict[str, Any], taskspec: dict[str, Any] | None, reason: str, words: str
) -> None:
    refusal = owner_refusal(_task(change), taskspec)
    assert refusal is not None
    assert refusal.reason == reason
    assert words in refusal.message


@pytest.mark.parametrize(
    ("change", "rack", "words"),
    [
        ({}, None, "rack a01 is not in the inventory"),
        ({"spec.components": [{"type": "compute", "ids": [{"name": "c9"}]}]}, RACK, "c9"),
        (
            {"spec.components": [{"type": "nvswitch", "ids": [{"name": "c1"}]}]},
            RACK,
            "nvswitch c1",
        ),
        (
            {"spec.components": [{"type": "compute", "ids": [{"name": "c1", "coreId": "x"}]}]},
            RACK,
            "core-1",
        ),
    ],
)
def test_inventory_refusals(change: dict[str, Any], rack: InventoryRack | None, words: str) -> None:
    refusal = inventory_refusal(_task(change), rack)
    assert refusal is not None
    assert words in refusal.message


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, None),
        ({"flow.nico.io/requested-by": "alice"}, "alice"),
        (
            {
                "flow.nico.io/requested-by": "system:serviceaccount:nf:api",
                "flow.nico.io/on-behalf-of": "spiffe://example.org/ops",
            },
            "spiffe://example.org/ops (via system:serviceaccount:nf:api)",
        ),
        ({"flow.nico.io/on-behalf-of": "cn:bob"}, "cn:bob"),
    ],
)
def test_requester(annotations: dict[str, str], expected: str | None) -> None:
    assert requester({"annotations": annotations}) == expected
