"""Tasks as v1 messages: phases, operation text, the report with per-type
counters, and the API ids of records sharing a name."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.task_ids import task_id
from nicoflow.domain.types import OperationCode, TaskPhase
from nicoflow.inventory.models import TaskHistory
from nicoflow.service.task_view import (
    TaskRecord,
    build_report,
    from_history,
    from_task_object,
    operation_text,
    task_message,
)
from nicoflow.service.tasks import assign_ids


def _task(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "restart-1-a01",
            "namespace": "nico-flow",
            "uid": "5e0c4b1a-8e39-4d3a-9d4e-0a5f1c2b3d4e",
            "creationTimestamp": "2030-01-01T00:00:00Z",
            "managedFields": [{"time": "2030-01-01T00:00:05Z"}, {"time": "2030-01-01T00:01:00Z"}],
        },
        "spec": {
            "taskSpecName": "restart-1",
            "rack": "a01",
            "operation": "restart",
            "components": [
                {"type": "compute", "ids": [{"name": "compute-01"}, {"name": "compute-02"}]}
            ],
            **spec,
        },
        "status": status or {},
    }


@pytest.mark.parametrize(
    ("phase", "status"),
    [
        (None, pb.TASK_STATUS_PENDING),
        ("Pending", pb.TASK_STATUS_PENDING),
        ("Waiting", pb.TASK_STATUS_WAITING),
        ("Running", pb.TASK_STATUS_RUNNING),
        ("Succeeded", pb.TASK_STATUS_COMPLETED),
        ("Failed", pb.TASK_STATUS_FAILED),
        ("Cancelled", pb.TASK_STATUS_TERMINATED),
    ],
)
def test_phases(phase: str | None, status: int) -> None:
    record = from_task_object(_task({"phase": phase} if phase else {}))
    msg = task_message(
        record, uuid.uuid4(), rack_id=None, component_ids=[], description="", with_report=False
    )
    assert msg.status == status


def test_live_task_fields() -> None:
    record = from_task_object(
        _task(
            {
                "phase": "Waiting",
                "message": "Queued",
                "queueExpiresAt": "2030-01-01T01:00:00Z",
            },
            cancel=True,
        )
    )
    assert record.components == (("compute", "compute-01"), ("compute", "compute-02"))
    assert record.cancel_requested
    assert record.updated_at == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    rid = uuid.uuid4()
    api_id = task_id("nico-flow", "restart-1-a01")
    msg = task_message(
        record, api_id, rack_id=rid, component_ids=["c1"], description="d", with_report=False
    )
    assert msg.id.id == str(api_id)
    assert msg.operation == "Restart, forced false"
    assert msg.rack_id.id == str(rid)
    assert [u.id for u in msg.component_uuids] == ["c1"]
    assert msg.description == "d"
    assert msg.message == "Queued"
    assert msg.queue_expires_at.ToDatetime(tzinfo=UTC) == datetime(2030, 1, 1, 1, tzinfo=UTC)
    assert msg.updated_at.ToDatetime(tzinfo=UTC) == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    assert not msg.HasField("finished_at")
    assert msg.report == ""
    assert json.loads(msg.execution_id) == {
        "workflow_id": "nico-flow/restart-1-a01",
        "run_id": "5e0c4b1a-8e39-4d3a-9d4e-0a5f1c2b3d4e",
    }


@pytest.mark.parametrize(
    ("code", "options", "text"),
    [
        (OperationCode.POWER_OFF, {}, "PowerOff, forced false"),
        (OperationCode.FORCE_POWER_OFF, {}, "ForcePowerOff, forced true"),
        (OperationCode.FORCE_RESTART, {}, "ForceRestart, forced true"),
        (OperationCode.POWER_ON, {}, "PowerOn, forced false"),
        (
            OperationCode.UPGRADE,
            {"targetVersion": "1.4", "subTargets": ["bmc"]},
            "FirmwareUpgrade, target version 1.4",
        ),
        (OperationCode.UPGRADE, {}, "FirmwareUpgrade, target version "),
        (OperationCode.INGEST, {}, "rack ingest"),
        (OperationCode.BRING_UP, {}, "rack bring-up"),
        (None, {}, ""),
    ],
)
def test_operation_text(code: OperationCode | None, options: dict[str, Any], text: str) -> None:
    assert operation_text(code, options) == text


def test_report_counts_components_and_marks_the_failure() -> None:
    stages = [
        {
            "number": 1,
            "phase": "Succeeded",
            "startedAt": "2030-01-01T00:00:00Z",
            "finishedAt": "2030-01-01T00:02:00+00:00",
            "steps": [
                {
                    "componentType": "powershelf",
                    "phase": "Succeeded",
                    "components": [{"id": "p1", "phase": "Succeeded"}] * 8,
                }
            ],
        },
        {
            "number": 2,
            "phase": "Failed",
            "startedAt": "2030-01-01T00:02:00Z",
            "error": "nvswitch-03: timeout",
            "steps": [
                {
                    "componentType": "nvswitch",
                    "phase": "Failed",
                    "total": 9,
                    "succeeded": 8,
                    "failed": 1,
                    "error": "nvswitch-03: timeout",
                }
            ],
        },
        {
            "number": 3,
            "phase": "Cancelled",
            "steps": [{"componentType": "compute", "phase": "Cancelled", "total": 18}],
        },
    ]
    record = from_task_object(_task({"phase": "Failed", "stages": stages}))
    report = build_report(record)
    assert report["version"] == 1
    assert report["error"] == "nvswitch-03: timeout"
    one, two, three = report["stages"]
    # empty fields are left out, as the original's omitempty tags did
    assert one["steps"][0] == {
        "component_type": "PowerShelf",
        "status": "completed",
        "total_components": 8,
        "completed_components": 8,
    }
    assert "error" not in one
    assert one["finished_at"] == "2030-01-01T00:02:00Z"
    assert (two["status"], two["steps"][0]["failed_components"]) == ("failed", 1)
    # never started, then cancelled: skipped, as the original reports untouched stages
    assert three["status"] == "skipped"
    assert three["steps"][0]["status"] == "skipped"

    msg = task_message(
        record, uuid.uuid4(), rack_id=None, component_ids=[], description="", with_report=True
    )
    assert json.loads(msg.report) == report


def test_failed_task_without_stages_reports_its_message() -> None:
    record = from_task_object(_task({"phase": "Failed", "message": "rule not found"}))
    assert build_report(record) == {"version": 1, "stages": [], "error": "rule not found"}


def test_archived_row() -> None:
    row = TaskHistory(
        id=uuid.uuid4(),
        name="restart-1-a01",
        namespace="nico-flow",
        task_spec_name="restart-1",
        rack_id=uuid.uuid4(),
        rack_name="a01",
        operation_code=OperationCode.FORCE_POWER_OFF,
        phase=TaskPhase.SUCCEEDED,
        message="Succeeded",
        description="leak",
        components={"compute": ["c1", "c2"]},
        report={"stages": [{"number": 1, "phase": "Succeeded", "steps": []}]},
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        finished_at=datetime(2030, 1, 1, 1, tzinfo=UTC),
    )
    record = from_history(row)
    assert record.archived
    assert record.component_ids == ("c1", "c2")
    msg = task_message(
        record,
        uuid.uuid4(),
        rack_id=record.rack_id,
        component_ids=record.component_ids,
        description=record.description,
        with_report=True,
    )
    assert msg.status == pb.TASK_STATUS_COMPLETED
    assert msg.operation == "ForcePowerOff, forced true"
    assert msg.description == "leak"
    assert msg.finished_at.ToDatetime(tzinfo=UTC) == datetime(2030, 1, 1, 1, tzinfo=UTC)
    assert json.loads(msg.report)["stages"][0]["status"] == "completed"


def test_reused_names_keep_the_name_based_id_for_the_newest_run() -> None:
    def rec(uid: str, created: int, name: str = "ts-a01") -> TaskRecord:
        return TaskRecord(
            uid=uid,
            namespace="ns",
            name=name,
            phase=TaskPhase.SUCCEEDED,
            created_at=datetime(2030, 1, created, tzinfo=UTC),
        )

    old_uid, new_uid = str(uuid.uuid4()), str(uuid.uuid4())
    old, new, other = rec(old_uid, 1), rec(new_uid, 2), rec(str(uuid.uuid4()), 1, "ts-b01")
    ids = {r.uid: i for r, i in assign_ids([old, new, other])}
    assert ids[new_uid] == task_id("ns", "ts-a01")
    assert ids[old_uid] == uuid.UUID(old_uid)
    assert ids[other.uid] == task_id("ns", "ts-b01")
