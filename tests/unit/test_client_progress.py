"""Task progress from the v1 report JSON."""

from __future__ import annotations

import json

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.client.progress import all_finished, parse_report, task_progress

REPORT = {
    "version": 1,
    "stages": [
        {
            "number": 1,
            "status": "completed",
            "steps": [
                {
                    "component_type": "PowerShelf",
                    "status": "completed",
                    "total_components": 8,
                    "completed_components": 8,
                }
            ],
        },
        {
            "number": 2,
            "status": "running",
            "steps": [
                {
                    "component_type": "NVSwitch",
                    "status": "running",
                    "total_components": 9,
                    "completed_components": 4,
                    "failed_components": 1,
                },
                {"component_type": "Compute", "status": "skipped"},
            ],
        },
        {"number": 3, "status": "pending", "steps": []},
    ],
    "error": "",
}


def _task(status: int, report: object = REPORT) -> pb.Task:
    return pb.Task(
        id=pb.UUID(id="t1"), rack_id=pb.UUID(id="r1"), status=status, report=json.dumps(report)
    )


def test_stages_and_counters() -> None:
    p = task_progress(_task(pb.TASK_STATUS_RUNNING))
    assert p.status == "running"
    assert not p.finished
    assert [s.number for s in p.stages] == [1, 2, 3]
    current = p.current_stage
    assert current is not None
    assert current.number == 2
    nv = current.steps[0]
    assert (nv.component_type, nv.total, nv.completed, nv.failed) == ("NVSwitch", 9, 4, 1)
    assert current.steps[1].total == 0


def test_failed_stage_is_current_when_nothing_runs() -> None:
    report = json.loads(json.dumps(REPORT))
    report["stages"][1]["status"] = "failed"
    report["error"] = "nvswitch tray 3 did not power on"
    p = task_progress(_task(pb.TASK_STATUS_FAILED, report))
    assert p.finished
    assert p.error == "nvswitch tray 3 did not power on"
    assert p.current_stage is not None
    assert p.current_stage.number == 2


def test_unreadable_reports_have_no_stages() -> None:
    assert parse_report("") == ((), "")
    assert parse_report("{not json") == ((), "")
    assert parse_report("[1, 2]") == ((), "")
    assert parse_report(json.dumps({"stages": ["x", {"steps": ["y"]}]}))[0][0].steps == ()


def test_all_finished_needs_every_task_seen() -> None:
    done = task_progress(_task(pb.TASK_STATUS_COMPLETED))
    running = task_progress(_task(pb.TASK_STATUS_WAITING))
    assert all_finished([done], 1)
    assert not all_finished([done], 2)
    assert not all_finished([done, running], 2)
    assert task_progress(_task(pb.TASK_STATUS_TERMINATED)).finished
