"""Tasks as v1 `Task` messages, from live Task objects and from the archive.

Pure: the caller fetches objects and rows and resolves rack and component
ids; this module reads them into one shape (`TaskRecord`), writes the
operation text and the JSON report, and builds the message."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.types import ComponentType, OperationCode, TaskPhase
from nicoflow.inventory.models import TaskHistory
from nicoflow.service.enums import task_status

REPORT_VERSION = 1
MAX_ERROR = 512
ACTIVE = frozenset({TaskPhase.PENDING, TaskPhase.WAITING, TaskPhase.RUNNING})


def parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _phase(value: Any) -> TaskPhase:
    try:
        return TaskPhase(value)
    except ValueError:
        return TaskPhase.PENDING


def _code(value: Any) -> OperationCode | None:
    try:
        return OperationCode(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class TaskRecord:
    """One Task, live or archived, in the fields the API shows."""

    uid: str
    namespace: str
    name: str
    phase: TaskPhase
    taskspec: str | None = None
    rack: str | None = None
    rack_id: uuid.UUID | None = None  # archived rows carry it
    operation: OperationCode | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""
    description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    queue_expires_at: datetime | None = None
    # live Tasks name components by (type, name); archived rows by inventory id
    components: tuple[tuple[str, str], ...] = ()
    component_ids: tuple[str, ...] = ()
    stages: tuple[Mapping[str, Any], ...] = ()
    stored_report: Mapping[str, Any] | None = None
    cancel_requested: bool = False
    archived: bool = False
    # the OperationRule the Task ran (None for a built-in rule)
    rule_name: str | None = None
    requested_by: str = ""

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE


def _rule_name(rule: Any) -> str | None:
    if not isinstance(rule, Mapping) or rule.get("source") in (None, "builtin"):
        return None
    return str(rule.get("name") or "") or None


def from_task_object(body: Mapping[str, Any]) -> TaskRecord:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    times = [parse_time(m.get("time")) for m in meta.get("managedFields") or []]
    created = parse_time(meta.get("creationTimestamp"))
    updated = max([t for t in times if t is not None], default=created)
    comps = tuple(
        (str(g.get("type")), str(ref.get("name")))
        for g in spec.get("components") or []
        for ref in g.get("ids") or []
    )
    return TaskRecord(
        uid=str(meta.get("uid") or ""),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        phase=_phase(status.get("phase") or TaskPhase.PENDING.value),
        taskspec=spec.get("taskSpecName"),
        rack=spec.get("rack"),
        operation=_code(spec.get("operation")),
        options=spec.get("options") or {},
        message=str(status.get("message") or ""),
        description=str(spec.get("description") or ""),
        created_at=created,
        updated_at=updated,
        started_at=parse_time(status.get("startTime")),
        finished_at=parse_time(status.get("completionTime")),
        queue_expires_at=parse_time(status.get("queueExpiresAt")),
        components=comps,
        stages=tuple(status.get("stages") or ()),
        cancel_requested=bool(spec.get("cancel")),
        rule_name=_rule_name(spec.get("rule")),
        requested_by=str(spec.get("requestedBy") or ""),
    )


def from_history(row: TaskHistory) -> TaskRecord:
    report = row.report or {}
    stages = report.get("stages") if isinstance(report, Mapping) else None
    return TaskRecord(
        uid=str(row.id),
        namespace=row.namespace,
        name=row.name,
        phase=row.phase,
        taskspec=row.task_spec_name,
        rack=row.rack_name,
        rack_id=row.rack_id,
        operation=row.operation_code,
        message=row.message or "",
        description=row.description or "",
        created_at=row.created_at,
        updated_at=row.archived_at or row.finished_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        component_ids=tuple(i for ids in (row.components or {}).values() for i in ids),
        stages=tuple(stages or ()),
        stored_report=report if isinstance(report, Mapping) and "version" in report else None,
        archived=True,
        rule_name=_rule_name(row.applied_rule),
        requested_by=row.requested_by or "",
    )


# --- operation text -------------------------------------------------------------------------

# The original's text is its operation info's Description(): "<Op>, forced <bool>"
# for power, "<Op>, target version <v>" for firmware, "rack bring-up" / "rack ingest".
_POWER: dict[OperationCode, tuple[str, bool]] = {
    OperationCode.POWER_ON: ("PowerOn", False),
    OperationCode.FORCE_POWER_ON: ("ForcePowerOn", True),
    OperationCode.POWER_OFF: ("PowerOff", False),
    OperationCode.FORCE_POWER_OFF: ("ForcePowerOff", True),
    OperationCode.RESTART: ("Restart", False),
    OperationCode.FORCE_RESTART: ("ForceRestart", True),
    OperationCode.WARM_RESET: ("WarmReset", False),
    OperationCode.COLD_RESET: ("ColdReset", False),
}
_FIRMWARE = {
    OperationCode.UPGRADE: "FirmwareUpgrade",
    OperationCode.DOWNGRADE: "FirmwareDowngrade",
    OperationCode.ROLLBACK: "FirmwareRollback",
}
_BRING_UP = {OperationCode.BRING_UP: "rack bring-up", OperationCode.INGEST: "rack ingest"}


def operation_text(code: OperationCode | None, options: Mapping[str, Any]) -> str:
    """Human text as the original showed it, e.g. "ForcePowerOff, forced true"."""
    if code is None:
        return ""
    if code in _POWER:
        name, forced = _POWER[code]
        return f"{name}, forced {str(forced).lower()}"
    if code in _FIRMWARE:
        return f"{_FIRMWARE[code]}, target version {options.get('targetVersion') or ''}"
    return _BRING_UP[code]


# --- report ---------------------------------------------------------------------------------


def _item_status(phase: Any, started: bool) -> str:
    """The original's five report states; a cancelled item counts as failed once it
    had started and as skipped before."""
    match phase:
        case "Running":
            return "running"
        case "Succeeded":
            return "completed"
        case "Failed":
            return "failed"
        case "Skipped":
            return "skipped"
        case "Cancelled":
            return "failed" if started else "skipped"
        case _:
            return "pending"


def _count(components: Sequence[Mapping[str, Any]], phase: str) -> int:
    return sum(1 for c in components if c.get("phase") == phase)


def _display_type(value: Any) -> str:
    try:
        return ComponentType(value).display
    except ValueError:
        return str(value or "")


def _step(step: Mapping[str, Any]) -> dict[str, Any]:
    comps = step.get("components") or []
    started = parse_time(step.get("startedAt"))
    status = _item_status(step.get("phase"), started is not None)
    error = str(step.get("error") or "")
    if step.get("phase") == "Cancelled" and started is not None and not error:
        error = "cancelled"
    return _omit_empty(
        {
            "component_type": _display_type(step.get("componentType")),
            "status": status,
            "total_components": int(step.get("total") or len(comps)),
            "completed_components": int(step.get("succeeded") or _count(comps, "Succeeded")),
            "failed_components": int(step.get("failed") or _count(comps, "Failed")),
            "started_at": rfc3339(started),
            "finished_at": rfc3339(parse_time(step.get("finishedAt"))),
            "error": error[:MAX_ERROR],
        },
        keep=("component_type", "status"),
    )


def _omit_empty(fields: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """Leave out zero, empty and unset fields, as the original's JSON tags
    (omitempty) did; `keep` are always written."""
    return {k: v for k, v in fields.items() if k in keep or v not in (None, "", 0)}


def build_report(record: TaskRecord) -> dict[str, Any]:
    """The task report, schema version 1 (stages of steps with per-type counters)."""
    if record.stored_report is not None:
        return dict(record.stored_report)
    stages: list[dict[str, Any]] = []
    first_error = ""
    for stage in record.stages:
        started = parse_time(stage.get("startedAt"))
        status = _item_status(stage.get("phase"), started is not None)
        error = str(stage.get("error") or "")
        if stage.get("phase") == "Cancelled" and started is not None and not error:
            error = "cancelled"
        if status == "failed" and not first_error:
            first_error = error or "stage failed"
        stages.append(
            _omit_empty(
                {
                    "number": int(stage.get("number") or len(stages) + 1),
                    "status": status,
                    "steps": [_step(s) for s in stage.get("steps") or []],
                    "started_at": rfc3339(started),
                    "finished_at": rfc3339(parse_time(stage.get("finishedAt"))),
                    "error": error[:MAX_ERROR],
                },
                keep=("number", "status", "steps"),
            )
        )
    if not first_error and record.phase is TaskPhase.FAILED:
        first_error = record.message
    return _omit_empty(
        {"version": REPORT_VERSION, "stages": stages, "error": first_error[:MAX_ERROR]},
        keep=("version", "stages"),
    )


# --- message --------------------------------------------------------------------------------


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def executor_type(record: TaskRecord) -> pb.TaskExecutorType.ValueType:
    """TEMPORAL once the Task was handed to its executor (the operator's engine,
    here; the original's only executor was Temporal, and its clients read
    TEMPORAL as "dispatched"); UNKNOWN while it waits, or when it never ran."""
    if record.phase is TaskPhase.WAITING:
        return pb.TASK_EXECUTOR_TYPE_UNKNOWN
    if record.phase.finished and record.started_at is None:
        return pb.TASK_EXECUTOR_TYPE_UNKNOWN
    return pb.TASK_EXECUTOR_TYPE_TEMPORAL


def task_message(
    record: TaskRecord,
    api_id: uuid.UUID,
    *,
    rack_id: uuid.UUID | None,
    component_ids: Sequence[str],
    description: str,
    with_report: bool,
    applied_rule_id: uuid.UUID | None = None,
) -> pb.Task:
    msg = pb.Task(
        id=pb.UUID(id=str(api_id)),
        operation=operation_text(record.operation, record.options),
        component_uuids=[pb.UUID(id=c) for c in component_ids],
        description=record.description or description,
        execution_id=json.dumps(
            {"workflow_id": f"{record.namespace}/{record.name}", "run_id": record.uid},
            separators=(",", ":"),
        ),
        status=task_status(record.phase),
        message=record.message,
        executor_type=executor_type(record),
        requested_by=record.requested_by,
    )
    if applied_rule_id is not None:
        msg.applied_rule_id.id = str(applied_rule_id)
    if rack_id is not None:
        msg.rack_id.id = str(rack_id)
    if record.created_at is not None:
        msg.created_at.CopyFrom(_ts(record.created_at))
    updated = record.updated_at or record.created_at
    if updated is not None:
        msg.updated_at.CopyFrom(_ts(updated))
    if record.started_at is not None:
        msg.started_at.CopyFrom(_ts(record.started_at))
    if record.finished_at is not None and not record.active:
        msg.finished_at.CopyFrom(_ts(record.finished_at))
    if record.queue_expires_at is not None and record.phase is TaskPhase.WAITING:
        msg.queue_expires_at.CopyFrom(_ts(record.queue_expires_at))
    if with_report:
        msg.report = json.dumps(build_report(record), separators=(",", ":"))
    return msg
