"""kubectl flow: argument parsing and the tables it prints, from plain dicts."""

from __future__ import annotations

from typing import Any

import click
import pytest
from rich.console import Console

from nicoflow.cli.kubectl_plugin import (
    current_step,
    parse_ref,
    stage_symbols,
    task_table,
    taskspec_table,
)
from nicoflow.kube.resources import TASKS, TASKSPECS


def _render(table: Any) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return console.export_text()


@pytest.mark.parametrize(
    ("value", "resource", "name"),
    [
        ("taskspec/restart-a", TASKSPECS, "restart-a"),
        ("ts/restart-a", TASKSPECS, "restart-a"),
        ("taskspecs.flow.nico.io/restart-a", TASKSPECS, "restart-a"),
        ("task/restart-a-a01", TASKS, "restart-a-a01"),
        ("Task/x", TASKS, "x"),
    ],
)
def test_parse_ref(value: str, resource: object, name: str) -> None:
    ref = parse_ref(value)
    assert ref.resource is resource
    assert ref.name == name


@pytest.mark.parametrize("value", ["restart-a", "rack/a01", "task/", "/x"])
def test_parse_ref_rejects(value: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_ref(value)


def test_stage_symbols_one_per_stage() -> None:
    stages = [{"phase": p} for p in ("Succeeded", "Failed", "Running", "Pending", "Cancelled")]
    assert stage_symbols(stages).plain == "✔✘▶·⊘"


def test_current_step_names_stage_type_action_batch_and_attempt() -> None:
    status = {
        "stages": [
            {"number": 1, "phase": "Succeeded", "steps": [{"phase": "Succeeded"}]},
            {
                "number": 2,
                "phase": "Running",
                "steps": [
                    {"componentType": "powershelf", "phase": "Succeeded"},
                    {
                        "componentType": "compute",
                        "phase": "Running",
                        "actionName": "PowerControl",
                        "batch": 1,
                        "batches": 3,
                        "attempt": 2,
                    },
                ],
            },
        ]
    }
    assert current_step(status) == "2: compute PowerControl batch 2/3 attempt 2"
    assert current_step({"stages": [{"number": 1, "phase": "Succeeded", "steps": []}]}) == ""


def test_taskspec_table_rows_sorted_by_rack() -> None:
    ts = {
        "metadata": {"name": "restart-a", "namespace": "ops"},
        "spec": {"operation": "restart"},
        "status": {"phase": "Running", "racks": 2, "running": 1, "succeeded": 1},
    }
    tasks = [
        {
            "metadata": {"name": "restart-a-b02"},
            "spec": {"rack": "b02"},
            "status": {
                "phase": "Running",
                "message": "stage 1 of 2",
                "stages": [
                    {
                        "number": 1,
                        "phase": "Running",
                        "steps": [{"componentType": "nvswitch", "phase": "Running"}],
                    },
                    {"number": 2, "phase": "Pending"},
                ],
            },
        },
        {
            "metadata": {"name": "restart-a-a01"},
            "spec": {"rack": "a01"},
            "status": {"phase": "Succeeded", "stages": [{"number": 1, "phase": "Succeeded"}]},
        },
    ]
    text = _render(taskspec_table(ts, tasks))
    assert "TaskSpec ops/restart-a: restart — Running" in text
    a01, b02 = text.index("a01"), text.index("b02")
    assert a01 < b02
    assert "1: nvswitch" in text
    assert "▶·" in text
    assert "2 racks, 1 running, 1 succeeded" in text


def test_task_table_one_row_per_step() -> None:
    task = {
        "metadata": {"name": "restart-a-a01", "namespace": "ops"},
        "spec": {"operation": "restart", "rack": "a01"},
        "status": {
            "phase": "Failed",
            "message": "compute-02 failed",
            "stages": [
                {
                    "number": 1,
                    "phase": "Succeeded",
                    "steps": [
                        {
                            "componentType": "powershelf",
                            "phase": "Succeeded",
                            "total": 8,
                            "succeeded": 8,
                        }
                    ],
                },
                {
                    "number": 2,
                    "phase": "Failed",
                    "steps": [
                        {
                            "componentType": "compute",
                            "phase": "Failed",
                            "total": 18,
                            "succeeded": 17,
                            "failed": 1,
                            "error": "compute-02: BMC timeout",
                        }
                    ],
                },
            ],
        },
    }
    text = _render(task_table(task))
    assert "on rack a01 — Failed" in text
    assert "8/8" in text
    assert "17/18 (1 failed)" in text
    assert "compute-02: BMC timeout" in text
