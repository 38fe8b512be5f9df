"""Task progress read from a Task message and its JSON report (schema version 1):
stages of steps, each step one component type with counters. Pure, so the
watch view and tests share it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nicoflow._proto.flow.v1 import flow_pb2 as pb

FINISHED = frozenset({pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_FAILED, pb.TASK_STATUS_TERMINATED})


def status_name(number: int) -> str:
    """ "running", "completed", ... from the wire enum."""
    try:
        return pb.TaskStatus.Name(number).removeprefix("TASK_STATUS_").lower()  # type: ignore[arg-type]
    except ValueError:
        return "unknown"


@dataclass(frozen=True)
class StepProgress:
    component_type: str
    status: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    error: str = ""


@dataclass(frozen=True)
class StageProgress:
    number: int
    status: str
    steps: tuple[StepProgress, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class TaskProgress:
    task_id: str
    rack_id: str
    operation: str
    status: str
    message: str
    stages: tuple[StageProgress, ...] = field(default_factory=tuple)
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "terminated")

    @property
    def current_stage(self) -> StageProgress | None:
        """The running stage, else the first not yet completed, else the last."""
        for wanted in ("running", "failed", "pending"):
            for stage in self.stages:
                if stage.status == wanted:
                    return stage
        return self.stages[-1] if self.stages else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_report(text: str) -> tuple[tuple[StageProgress, ...], str]:
    """Stages and top-level error; an empty or unreadable report has no stages."""
    try:
        doc = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return (), ""
    if not isinstance(doc, dict):
        return (), ""
    stages: list[StageProgress] = []
    for raw in doc.get("stages") or []:
        if not isinstance(raw, dict):
            continue
        steps = tuple(
            StepProgress(
                component_type=str(s.get("component_type") or ""),
                status=str(s.get("status") or "pending"),
                total=_int(s.get("total_components")),
                completed=_int(s.get("completed_components")),
                failed=_int(s.get("failed_components")),
                error=str(s.get("error") or ""),
            )
            for s in raw.get("steps") or []
            if isinstance(s, dict)
        )
        stages.append(
            StageProgress(
                number=_int(raw.get("number")) or len(stages) + 1,
                status=str(raw.get("status") or "pending"),
                steps=steps,
                error=str(raw.get("error") or ""),
            )
        )
    return tuple(stages), str(doc.get("error") or "")


def task_progress(task: pb.Task) -> TaskProgress:
    stages, error = parse_report(task.report)
    return TaskProgress(
        task_id=task.id.id,
        rack_id=task.rack_id.id,
        operation=task.operation,
        status=status_name(task.status),
        message=task.message,
        stages=stages,
        error=error,
    )


def all_finished(tasks: list[TaskProgress], wanted: int) -> bool:
    """Every wanted task was seen and none is still active."""
    return len(tasks) >= wanted and all(t.finished for t in tasks)
