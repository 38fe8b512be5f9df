"""Task schedule RPCs, over TaskSchedule objects in the server's namespace.

Mapping of the original's tables onto the object:

- id: label `flow.nico.io/schedule-id=<uuid>`; name (unique per namespace):
  annotation `flow.nico.io/schedule-name` (the object name is a DNS-safe form
  of it, with a suffix when taken); created/updated times: annotations
  `flow.nico.io/created-at` / `flow.nico.io/updated-at` (microseconds, so
  listing oldest-first is exact);
- ScheduleSpec: interval -> spec.schedule.interval (Go duration), cron ->
  spec.schedule.cron + timeZone, one-time -> spec.schedule.at;
  overlap policy -> spec.overlapPolicy; enabled = not spec.suspend (and a
  fired one-time schedule is no longer enabled);
- operation_template: spec.taskSpecTemplate.spec, built like the operation
  RPCs build a TaskSpec;
- scopes: annotation `flow.nico.io/scopes` (JSON, one entry per rack with its
  component filter); the template's targets are rebuilt from them on every
  scope change, so the next firing uses the new scope. A scope's id is a
  name-based UUID of (schedule id, rack id), stable per rack;
- next/last run: status.nextScheduleTime / status.lastScheduleTime and
  lastTriggerTime, written by the operator's schedule controller, which does
  the firing. Until the controller has seen a change of the spec (a new
  schedule, a resume) the next run is computed here from the spec, so every
  answer carries it;
- a scope's last_task_id: the Task of the scope's rack in the newest
  TaskSpec the schedule created that includes the rack.

TriggerTaskSchedule sets the annotation `flow.nico.io/trigger-now` to a fresh
token (and `flow.nico.io/triggered-at`, the last run until the controller
writes lastTriggerTime); the controller creates the TaskSpec named
`domain.schedules.trigger_name(schedule, token)`, whose Task ids are computed
here the same way the operation RPCs compute them. As in the original, a
triggered one-time schedule has run and cannot be triggered again.
ResumeTaskSchedule stamps `flow.nico.io/resumed-at`: the controller runs
nothing scheduled before it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.api.common import API_VERSION
from nicoflow.api.task_schedule import Schedule, TaskScheduleSpec
from nicoflow.domain import schedules as timing
from nicoflow.domain.conflicts import Footprint, conflict
from nicoflow.domain.durations import parse_duration
from nicoflow.domain.rules import describe_validation_error
from nicoflow.domain.targets import addressable, resolve_targets
from nicoflow.domain.task_ids import task_id
from nicoflow.domain.types import ComponentType, ConflictStrategy, OperationCode
from nicoflow.inventory.models import Rack
from nicoflow.inventory.queries import load_for_targets, load_racks
from nicoflow.kube.client import Conflict, Invalid
from nicoflow.kube.client import NotFound as KubeNotFound
from nicoflow.kube.resources import (
    ANNOTATION_RESUMED_AT,
    ANNOTATION_SCHEDULED_TIME,
    GROUP,
    LABEL_SCHEDULE,
    SCHEDULES,
    TASKSPECS,
    task_name,
)
from nicoflow.kube.retry import retrying
from nicoflow.service import operation_requests as requests
from nicoflow.service import operations
from nicoflow.service.authz import stamp_caller
from nicoflow.service.backend import Backend
from nicoflow.service.enums import component_type_number
from nicoflow.service.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from nicoflow.service.lookups import components_for_refs, racks_for_refs
from nicoflow.service.rules import object_name
from nicoflow.service.validation import Targets, page, parse_uuid, target_spec

Json = dict[str, Any]

LABEL_SCHEDULE_ID = f"{GROUP}/schedule-id"
ANNOTATION_NAME = f"{GROUP}/schedule-name"
ANNOTATION_CREATED = f"{GROUP}/created-at"
ANNOTATION_UPDATED = f"{GROUP}/updated-at"
ANNOTATION_SCOPES = f"{GROUP}/scopes"
ANNOTATION_TRIGGER_NOW = f"{GROUP}/trigger-now"
ANNOTATION_TRIGGERED_AT = f"{GROUP}/triggered-at"
MAX_NAME = 255
_OBJECT_NAME_MAX = 40  # TaskSpec names add a suffix to it
MASK_PATHS = ("schedule.name", "schedule.overlap_policy", "schedule.spec", "schedule.spec.timezone")

_OPERATION_TYPES = {
    OperationCode.POWER_ON: "POWER_ON",
    OperationCode.FORCE_POWER_ON: "POWER_ON",
    OperationCode.POWER_OFF: "POWER_OFF",
    OperationCode.FORCE_POWER_OFF: "POWER_OFF",
    OperationCode.RESTART: "POWER_RESET",
    OperationCode.FORCE_RESTART: "POWER_RESET",
    OperationCode.BRING_UP: "BRING_UP",
    OperationCode.INGEST: "INGEST",
    OperationCode.UPGRADE: "UPGRADE_FIRMWARE",
    OperationCode.DOWNGRADE: "DOWNGRADE_FIRMWARE",
    OperationCode.ROLLBACK: "ROLLBACK_FIRMWARE",
}
_FORCED = {OperationCode.FORCE_POWER_ON, OperationCode.FORCE_POWER_OFF, OperationCode.FORCE_RESTART}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ts(text: str | None) -> Timestamp:
    out = Timestamp()
    if text:
        out.FromDatetime(datetime.fromisoformat(text.replace("Z", "+00:00")))
    return out


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return timing.parse_timestamp(text)
    except ValueError:
        return None


# --- request pieces -----------------------------------------------------------------------


def operation_request(
    op: pb.ScheduledOperation, field: str = "operation"
) -> requests.OperationRequest:
    which = op.WhichOneof("operation")
    if which is None:
        raise InvalidArgument(
            f"{field} is empty: set one of power_on, power_off, power_reset, bring_up, "
            "upgrade_firmware or ingest"
        )
    build = {
        "power_on": requests.power_on,
        "power_off": requests.power_off,
        "power_reset": requests.power_reset,
        "bring_up": requests.bring_up,
        "upgrade_firmware": requests.upgrade_firmware,
        "ingest": requests.ingest,
    }[which]
    result: requests.OperationRequest = build(getattr(op, which))  # type: ignore[operator]
    return result


def schedule_field(spec: pb.ScheduleSpec) -> Json:
    """ScheduleSpec -> spec.schedule of the TaskSchedule."""
    text = spec.spec.strip()
    if not text:
        raise InvalidArgument("schedule.spec.spec is required (a duration, cron or RFC 3339 time)")
    out: Json
    if spec.type == pb.SCHEDULE_SPEC_TYPE_INTERVAL:
        try:
            parse_duration(text)
        except ValueError as exc:
            raise InvalidArgument(
                f"schedule.spec.spec {text!r} is not a duration ({exc}); write it like 90m or 24h"
            ) from None
        out = {"interval": text}
    elif spec.type == pb.SCHEDULE_SPEC_TYPE_CRON:
        out = {"cron": text}
        if spec.timezone:
            out["timeZone"] = spec.timezone
    elif spec.type == pb.SCHEDULE_SPEC_TYPE_ONE_TIME:
        try:
            at = timing.parse_timestamp(text)
        except ValueError:
            raise InvalidArgument(
                f"schedule.spec.spec {text!r} is not an RFC 3339 time such as 2030-01-02T03:04:05Z"
            ) from None
        out = {"at": timing.format_timestamp(at)}
    else:
        raise InvalidArgument(
            "schedule.spec.type is required: SCHEDULE_SPEC_TYPE_INTERVAL, _CRON or _ONE_TIME"
        )
    if spec.timezone and spec.type != pb.SCHEDULE_SPEC_TYPE_CRON:
        raise InvalidArgument("schedule.spec.timezone applies only to cron schedules")
    try:
        Schedule.model_validate(out)
    except ValidationError as exc:
        raise InvalidArgument(
            "schedule.spec: " + "; ".join(describe_validation_error(exc))
        ) from None
    return out


def _overlap(number: int) -> str:
    if number in (pb.OVERLAP_POLICY_UNSPECIFIED, pb.OVERLAP_POLICY_SKIP):
        return "Skip"
    if number == pb.OVERLAP_POLICY_QUEUE:
        return "Queue"
    raise InvalidArgument(f"schedule.overlap_policy {number} is unknown; use SKIP or QUEUE")


def _display_name(text: str) -> str:
    if not text.strip():
        raise InvalidArgument("schedule.name is required")
    if len(text) > MAX_NAME:
        raise InvalidArgument(f"schedule.name is {len(text)} characters long; at most {MAX_NAME}")
    return text


# --- scopes ---------------------------------------------------------------------------------


def scope_id(schedule_id: str, rack_id: str) -> str:
    return str(uuid.uuid5(uuid.UUID(schedule_id), rack_id))


async def scopes_for(session: AsyncSession, targets: Targets, schedule_id: str) -> list[Json]:
    """One scope per rack: rack targets give a type filter (none = whole
    rack), component targets are grouped by rack into a component filter."""
    out: dict[str, Json] = {}
    now = _now()
    racks = await racks_for_refs(session, targets.racks)
    for ref in targets.racks:
        row = racks[ref.index]
        if str(row.id) in out:
            raise InvalidArgument(f"{ref.describe()} is named twice; name each rack once")
        entry: Json = {"id": scope_id(schedule_id, str(row.id)), "rackId": str(row.id)}
        entry |= {"rack": row.name, "createdAt": now}
        if ref.types:
            entry["types"] = sorted(t.value for t in ref.types)
        out[str(row.id)] = entry
    comps = await components_for_refs(session, targets.components)
    seen: set[str] = set()
    names = {r.id: r.name for r in await _racks_by_id(session, comps.values())}
    for cref in targets.components:
        comp = comps[cref.index]
        if comp.rack_id is None:
            raise FailedPrecondition(
                f"{cref.describe()} belongs to no rack; schedules run per rack"
            )
        if str(comp.id) in seen:
            raise InvalidArgument(f"{cref.describe()} is named twice; name each component once")
        seen.add(str(comp.id))
        rid = str(comp.rack_id)
        entry = out.setdefault(
            rid,
            {
                "id": scope_id(schedule_id, rid),
                "rackId": rid,
                "rack": names.get(comp.rack_id, ""),
                "createdAt": now,
                "components": [],
            },
        )
        entry["components"].append(str(comp.id))
    return [out[k] for k in sorted(out, key=lambda k: out[k]["rack"])]


async def _racks_by_id(session: AsyncSession, comps: Any) -> list[Any]:
    ids = {c.rack_id for c in comps if c.rack_id is not None}
    if not ids:
        return []
    return list((await session.scalars(select(Rack).where(Rack.id.in_(ids)))).all())


def merge_scopes(current: list[Json], adding: list[Json]) -> tuple[list[Json], int, int]:
    """Add scopes; a rack already in scope gets its filter merged (no filter
    absorbs anything, types unite, components unite, types with components is
    refused). Returns (scopes, added, updated)."""
    by_rack = {s["rackId"]: dict(s) for s in current}
    added = updated = 0
    for new in adding:
        old = by_rack.get(new["rackId"])
        if old is None:
            by_rack[new["rackId"]] = new
            added += 1
            continue
        merged = dict(old)
        if "types" not in old and "components" not in old:
            continue
        if "types" not in new and "components" not in new:
            merged.pop("types", None)
            merged.pop("components", None)
        elif ("types" in old) != ("types" in new):
            raise InvalidArgument(
                f"rack {old['rack']} is scoped by "
                + ("component types" if "types" in old else "components")
                + "; a scope cannot mix component types and components"
            )
        elif "types" in new:
            merged["types"] = sorted(set(old["types"]) | set(new["types"]))
        else:
            merged["components"] = sorted(set(old["components"]) | set(new["components"]))
        if merged != old:
            by_rack[new["rackId"]] = merged
            updated += 1
    return sorted(by_rack.values(), key=lambda s: s["rack"]), added, updated


def scope_message(
    schedule_id: str, entry: Json, last_task: uuid.UUID | None = None
) -> pb.TaskScheduleScope:
    out = pb.TaskScheduleScope(
        id=pb.UUID(id=entry["id"]),
        schedule_id=pb.UUID(id=schedule_id),
        rack_id=pb.UUID(id=entry["rackId"]),
        created_at=_ts(entry.get("createdAt")),
    )
    if last_task is not None:
        out.last_task_id.id = str(last_task)
    if "types" in entry:
        out.types.CopyFrom(
            pb.ComponentTypes(
                types=[component_type_number(ComponentType(t)) for t in entry["types"]]
            )
        )
    elif "components" in entry:
        out.components.CopyFrom(
            pb.ComponentTargets(
                targets=[pb.ComponentTarget(id=pb.UUID(id=c)) for c in entry["components"]]
            )
        )
    return out


async def targets_of(session: AsyncSession, scopes: Sequence[Json]) -> Json:
    """TaskSpec targets that run the scopes (the template's targets)."""
    rack_targets = [
        (s["rack"], frozenset(ComponentType(t) for t in s.get("types") or ()))
        for s in scopes
        if "components" not in s
    ]
    narrowed = sorted({name for name, types in rack_targets if types})
    inventory = {r.name: r.components for r in await load_racks(session, names=narrowed)}
    components = [{"id": c} for s in scopes for c in s.get("components") or ()]
    return requests.build_targets(rack_targets, inventory, components)


# --- objects --------------------------------------------------------------------------------


def _scopes(body: Json) -> list[Json]:
    raw = (body["metadata"].get("annotations") or {}).get(ANNOTATION_SCOPES) or "[]"
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def schedule_id_of(body: Json) -> str:
    return str((body["metadata"].get("labels") or {}).get(LABEL_SCHEDULE_ID) or "")


def _display(body: Json) -> str:
    return str(
        (body["metadata"].get("annotations") or {}).get(ANNOTATION_NAME) or body["metadata"]["name"]
    )


def _completed(body: Json) -> bool:
    status = body.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Completed" and cond.get("status") == "True":
            return True
    # a one-time schedule triggered by hand has run (before the controller says so)
    one_time = bool(((body.get("spec") or {}).get("schedule") or {}).get("at"))
    triggered = (body["metadata"].get("annotations") or {}).get(ANNOTATION_TRIGGERED_AT)
    return one_time and bool(triggered or status.get("lastTriggerTime"))


def enabled(body: Json) -> bool:
    return not (body.get("spec") or {}).get("suspend") and not _completed(body)


def describe(spec: Json) -> tuple[str, str]:
    """(operation_type, description) of the v1 TaskSchedule."""
    code = OperationCode(spec["operation"])
    kind = _OPERATION_TYPES.get(code, code.value.upper())
    text = kind.replace("_", " ").title()
    if code in _FORCED:
        text += " (forced)"
    version = (spec.get("options") or {}).get("targetVersion")
    if version:
        text += f" to {version}"
    return kind, text


def last_run(body: Json) -> datetime | None:
    """The latest firing, on schedule or by trigger."""
    status = body.get("status") or {}
    stamps = (
        status.get("lastScheduleTime"),
        status.get("lastTriggerTime"),
        (body["metadata"].get("annotations") or {}).get(ANNOTATION_TRIGGERED_AT),
    )
    times = [t for t in (_when(x) for x in stamps) if t is not None]
    return max(times) if times else None


def next_run(body: Json, now: datetime | None = None) -> datetime | None:
    """When the schedule fires next: the controller's word once it has seen the
    current spec, else computed here from the spec (nothing before now, the
    last run or the last resume: a resume never brings back a missed time)."""
    if not enabled(body):
        return None
    meta, spec = body["metadata"], body.get("spec") or {}
    status = body.get("status") or {}
    if status.get("observedGeneration") == meta.get("generation") and meta.get("generation"):
        return _when(status.get("nextScheduleTime"))
    created = _when(meta.get("creationTimestamp")) or datetime.now(UTC)
    try:
        schedule = timing.from_spec(spec.get("schedule") or {}, created)
    except ValueError:
        return None
    floor = [
        now or datetime.now(UTC),
        *(
            t
            for t in (
                _when(status.get("lastScheduleTime")),
                _when(status.get("lastSkippedTime")),
                _when((meta.get("annotations") or {}).get(ANNOTATION_RESUMED_AT)),
            )
            if t is not None
        ),
    ]
    return timing.next_after(schedule, max(floor))


def schedule_message(body: Json) -> pb.TaskSchedule:
    meta, spec = body["metadata"], body.get("spec") or {}
    sched = spec.get("schedule") or {}
    annotations = meta.get("annotations") or {}
    if sched.get("cron"):
        sspec = pb.ScheduleSpec(
            type=pb.SCHEDULE_SPEC_TYPE_CRON,
            spec=sched["cron"],
            timezone=sched.get("timeZone") or "UTC",
        )
    elif sched.get("interval"):
        sspec = pb.ScheduleSpec(type=pb.SCHEDULE_SPEC_TYPE_INTERVAL, spec=str(sched["interval"]))
    else:
        sspec = pb.ScheduleSpec(
            type=pb.SCHEDULE_SPEC_TYPE_ONE_TIME, spec=str(sched.get("at") or "")
        )
    kind, text = describe(spec["taskSpecTemplate"]["spec"])
    created = annotations.get(ANNOTATION_CREATED) or meta.get("creationTimestamp")
    out = pb.TaskSchedule(
        id=pb.UUID(id=schedule_id_of(body)),
        name=_display(body),
        spec=sspec,
        overlap_policy=pb.OVERLAP_POLICY_QUEUE
        if spec.get("overlapPolicy") == "Queue"
        else pb.OVERLAP_POLICY_SKIP,
        enabled=enabled(body),
        created_at=_ts(created),
        updated_at=_ts(annotations.get(ANNOTATION_UPDATED) or created),
        operation_type=kind,
        description=text,
    )
    upcoming = next_run(body)
    if upcoming is not None:
        out.next_run_at.FromDatetime(upcoming)
    latest = last_run(body)
    if latest is not None:
        out.last_run_at.FromDatetime(latest)
    return out


def _racks_of(taskspec: Json) -> dict[str, str] | None:
    """rack -> Task name of a TaskSpec; None while it has not resolved its racks."""
    status = taskspec.get("status") or {}
    if status.get("racks") is None or status.get("tasksTruncated"):
        return None
    return {str(t["rack"]): str(t["name"]) for t in status.get("tasks") or []}


def last_tasks(namespace: str, body: Json, taskspecs: Sequence[Json]) -> dict[str, uuid.UUID]:
    """Per rack of the scope, the id of the Task of the newest firing that
    included the rack (the original's last_task_id)."""
    uid = body["metadata"].get("uid")
    owned = [
        ts
        for ts in taskspecs
        if any(ref.get("uid") == uid for ref in ts["metadata"].get("ownerReferences") or [])
    ]
    owned.sort(
        key=lambda ts: (
            (ts["metadata"].get("annotations") or {}).get(ANNOTATION_SCHEDULED_TIME) or "",
            ts["metadata"].get("creationTimestamp") or "",
        ),
        reverse=True,
    )
    out: dict[str, uuid.UUID] = {}
    for scope in _scopes(body):
        rack = str(scope.get("rack") or "")
        for ts in owned:
            name = ts["metadata"]["name"]
            resolved = _racks_of(ts)
            if resolved is not None:
                if rack in resolved:
                    out[rack] = task_id(namespace, resolved[rack])
                    break
                continue
            left_out = ((ts.get("spec") or {}).get("targets") or {}).get("excludeRacks") or ()
            if rack not in left_out:  # not resolved yet: its Task will have this name
                out[rack] = task_id(namespace, task_name(name, rack))
                break
    return out


async def _scope_messages(
    backend: Backend, body: Json, scopes: Sequence[Json] | None = None
) -> list[pb.TaskScheduleScope]:
    ns = backend.namespace
    selector = f"{LABEL_SCHEDULE}={timing.label_value(body['metadata']['name'])}"
    taskspecs = await retrying(
        lambda: backend.kube.list(TASKSPECS, namespace=ns, label_selector=selector)
    )
    latest = last_tasks(ns, body, taskspecs)
    sid = schedule_id_of(body)
    return [
        scope_message(sid, s, latest.get(str(s.get("rack") or "")))
        for s in (_scopes(body) if scopes is None else scopes)
    ]


async def _all(backend: Backend) -> list[Json]:
    ns = backend.namespace
    try:
        items = await retrying(lambda: backend.kube.list(SCHEDULES, namespace=ns))
    except KubeNotFound:
        return []
    return [i for i in items if not i["metadata"].get("deletionTimestamp")]


async def _find(backend: Backend, msg: pb.UUID | None, field: str = "id") -> Json:
    sid = parse_uuid(msg, field)
    ns = backend.namespace
    items = await retrying(
        lambda: backend.kube.list(
            SCHEDULES, namespace=ns, label_selector=f"{LABEL_SCHEDULE_ID}={sid}"
        )
    )
    # a deleted schedule lingers until the garbage collector orphans its TaskSpecs
    live = [i for i in items if not i["metadata"].get("deletionTimestamp")]
    if not live:
        raise NotFound(f"task schedule {sid} not found")
    return dict(live[0])


async def find_schedule(backend: Backend, schedule_id: uuid.UUID) -> Json:
    """The TaskSchedule with this v1 id; NotFound when there is none."""
    return await _find(backend, pb.UUID(id=str(schedule_id)))


async def _patch(backend: Backend, body: Json, patch: Json) -> Json:
    patch.setdefault("metadata", {}).setdefault("annotations", {})[ANNOTATION_UPDATED] = _now()
    name, ns = body["metadata"]["name"], backend.namespace
    try:
        return dict(await retrying(lambda: backend.kube.patch(SCHEDULES, name, patch, ns)))
    except KubeNotFound:
        raise NotFound(f"task schedule {_display(body)} was deleted meanwhile") from None
    except Invalid as exc:
        raise InvalidArgument(f"Kubernetes refused the change: {exc.message}") from None


def _check_unique(existing: list[Json], name: str, but: str | None = None) -> None:
    for other in existing:
        if _display(other) == name and schedule_id_of(other) != but:
            raise AlreadyExists(
                f"a task schedule named {name!r} already exists (id {schedule_id_of(other)})"
            )


# --- RPCs -----------------------------------------------------------------------------------


async def create_schedule(
    backend: Backend,
    request: pb.CreateTaskScheduleRequest,
    *,
    schedule_id: uuid.UUID | None = None,
    suspend: bool = False,
) -> pb.TaskSchedule:
    """`schedule_id` and `suspend`: what an import keeps of the original's schedule."""
    config = request.schedule
    name = _display_name(config.name)
    when = schedule_field(config.spec)
    overlap = _overlap(config.overlap_policy)
    op = operation_request(request.operation)
    existing = await _all(backend)
    _check_unique(existing, name)
    sid = str(schedule_id or uuid.uuid4())
    async with backend.sessions() as session:
        scopes = await scopes_for(session, op.targets, sid)
        targets = await targets_of(session, scopes)
    if not scopes:
        raise InvalidArgument("operation.target_spec selects no rack; a schedule needs one")
    rule_name = await operations._rule_name(backend, op)
    op_spec = requests.taskspec_body(
        "template", backend.namespace, op, targets, rule_name=rule_name, task_ids={}
    )["spec"]
    op_spec.pop("description", None)  # replaced at fire time, as in the original
    op_spec["conflictStrategy"] = (
        ConflictStrategy.QUEUE if overlap == "Queue" else ConflictStrategy.REJECT
    ).value
    spec: Json = {
        "schedule": when,
        "overlapPolicy": overlap,
        "taskSpecTemplate": {"spec": op_spec},
    }
    if suspend:
        spec["suspend"] = True
    try:
        TaskScheduleSpec.model_validate(spec)
    except ValidationError as exc:
        raise InvalidArgument(
            "the schedule is not a valid TaskSchedule: " + "; ".join(describe_validation_error(exc))
        ) from None
    taken = {b["metadata"]["name"] for b in existing}
    base = _object_name(name)
    obj = base if base not in taken else f"{base}-{sid[:6]}"
    now = _now()
    body = {
        "apiVersion": API_VERSION,
        "kind": "TaskSchedule",
        "metadata": {
            "name": obj,
            "namespace": backend.namespace,
            "labels": {LABEL_SCHEDULE_ID: sid},
            "annotations": {
                ANNOTATION_NAME: name,
                ANNOTATION_CREATED: now,
                ANNOTATION_UPDATED: now,
                ANNOTATION_SCOPES: json.dumps(scopes, sort_keys=True),
            },
        },
        "spec": spec,
    }
    ns = backend.namespace
    stamp_caller(body)  # audit: who asked
    try:
        created = await retrying(lambda: backend.kube.create(SCHEDULES, body, ns))
    except Conflict:
        raise AlreadyExists(
            f"a TaskSchedule object named {obj} appeared meanwhile; retry"
        ) from None
    except Invalid as exc:
        raise InvalidArgument(f"Kubernetes refused the TaskSchedule: {exc.message}") from None
    except KubeNotFound:
        raise FailedPrecondition(f"namespace {ns} does not exist") from None
    return schedule_message(dict(created))


def _object_name(display: str) -> str:
    return object_name(display)[:_OBJECT_NAME_MAX].strip("-") or "schedule"


async def get_schedule(backend: Backend, request: pb.GetTaskScheduleRequest) -> pb.TaskSchedule:
    return schedule_message(await _find(backend, request.id if request.HasField("id") else None))


async def list_schedules(
    backend: Backend, request: pb.ListTaskSchedulesRequest
) -> tuple[list[pb.TaskSchedule], int]:
    window = page(request.pagination if request.HasField("pagination") else None)
    rack = str(parse_uuid(request.rack_id, "rack_id")) if request.HasField("rack_id") else None
    found = [b for b in await _all(backend) if schedule_id_of(b)]
    if rack is not None:
        found = [b for b in found if any(s.get("rackId") == rack for s in _scopes(b))]
    if request.HasField("enabled_only") and request.enabled_only:
        found = [b for b in found if enabled(b)]
    found.sort(
        key=lambda b: (
            (b["metadata"].get("annotations") or {}).get(ANNOTATION_CREATED)
            or b["metadata"].get("creationTimestamp")
            or "",
            b["metadata"]["name"],
        )
    )
    chosen = found[window.offset : window.offset + window.limit]
    return [schedule_message(b) for b in chosen], len(found)


async def update_schedule(
    backend: Backend, request: pb.UpdateTaskScheduleRequest
) -> pb.TaskSchedule:
    body = await _find(backend, request.id if request.HasField("id") else None)
    paths = list(request.update_mask.paths)
    if not paths:
        raise InvalidArgument(
            "update_mask is empty; name the fields to change: " + ", ".join(MASK_PATHS)
        )
    unknown = [p for p in paths if p not in MASK_PATHS]
    if unknown:
        raise InvalidArgument(
            f"update_mask path(s) {', '.join(unknown)} cannot be changed; allowed: "
            + ", ".join(MASK_PATHS)
            + " (delete and re-create the schedule to change its operation)"
        )
    config = request.schedule
    patch: Json = {"metadata": {"annotations": {}}, "spec": {}}
    if "schedule.name" in paths:
        name = _display_name(config.name)
        _check_unique(await _all(backend), name, but=schedule_id_of(body))
        patch["metadata"]["annotations"][ANNOTATION_NAME] = name
    if "schedule.overlap_policy" in paths:
        overlap = _overlap(config.overlap_policy)
        patch["spec"]["overlapPolicy"] = overlap
    if "schedule.spec" in paths or "schedule.spec.timezone" in paths:
        if _completed(body):
            raise FailedPrecondition(
                "this one-time schedule has fired; its time cannot change (create a new one)"
            )
        old = dict((body.get("spec") or {}).get("schedule") or {})
        if "schedule.spec" in paths:
            new = schedule_field(config.spec)
        else:
            if not old.get("cron"):
                raise InvalidArgument("schedule.spec.timezone applies only to cron schedules")
            new = {"cron": old["cron"]}
            if config.spec.timezone:
                new["timeZone"] = config.spec.timezone
            try:
                Schedule.model_validate(new)
            except ValidationError as exc:
                raise InvalidArgument(
                    "schedule.spec.timezone: " + "; ".join(describe_validation_error(exc))
                ) from None
        # merge patch: clear the kinds that are no longer used
        patch["spec"]["schedule"] = dict.fromkeys(("cron", "interval", "at", "timeZone")) | new
    updated = await _patch(backend, body, patch)
    if "schedule.overlap_policy" in paths:
        # the template's conflict strategy follows the overlap policy
        strategy = ConflictStrategy.QUEUE if overlap == "Queue" else ConflictStrategy.REJECT
        updated = await _patch(
            backend,
            updated,
            {"spec": {"taskSpecTemplate": {"spec": {"conflictStrategy": strategy.value}}}},
        )
    return schedule_message(updated)


async def pause_schedule(backend: Backend, request: pb.PauseTaskScheduleRequest) -> pb.TaskSchedule:
    body = await _find(backend, request.id if request.HasField("id") else None)
    if _completed(body):
        raise FailedPrecondition("this one-time schedule has already fired; nothing to pause")
    if (body.get("spec") or {}).get("suspend"):
        return schedule_message(body)
    return schedule_message(await _patch(backend, body, {"spec": {"suspend": True}}))


async def resume_schedule(
    backend: Backend, request: pb.ResumeTaskScheduleRequest
) -> pb.TaskSchedule:
    body = await _find(backend, request.id if request.HasField("id") else None)
    if _completed(body):
        raise FailedPrecondition(
            "this one-time schedule has already fired and cannot be resumed; create a new one"
        )
    if not (body.get("spec") or {}).get("suspend"):
        return schedule_message(body)  # already enabled: no effect, as in the original
    # from now on: whatever fell due while paused is not run late
    patch = {
        "metadata": {"annotations": {ANNOTATION_RESUMED_AT: _now()}},
        "spec": {"suspend": False},
    }
    return schedule_message(await _patch(backend, body, patch))


async def delete_schedule(backend: Backend, request: pb.DeleteTaskScheduleRequest) -> None:
    body = await _find(backend, request.id if request.HasField("id") else None)
    name, ns = body["metadata"]["name"], backend.namespace
    # Orphan: TaskSpecs already created go on, as in-flight tasks did in the original
    try:
        await retrying(lambda: backend.kube.delete(SCHEDULES, name, ns, propagation="Orphan"))
    except KubeNotFound:
        raise NotFound(f"task schedule {schedule_id_of(body)} not found") from None


async def ready_racks(session: AsyncSession, targets: Json, code: OperationCode) -> list[str]:
    """Racks that will get a Task (as in the operation RPCs)."""
    resolution = resolve_targets(targets, await load_for_targets(session, targets))
    return sorted(
        name for name, cs in resolution.per_rack.items() if any(addressable(code, c) for c in cs)
    )


async def trigger_schedule(
    backend: Backend, request: pb.TriggerTaskScheduleRequest
) -> list[uuid.UUID]:
    body = await _find(backend, request.id if request.HasField("id") else None)
    if _completed(body):
        raise FailedPrecondition(
            "this one-time schedule has already fired; it cannot be triggered again"
        )
    template = body["spec"]["taskSpecTemplate"]["spec"]
    async with backend.sessions() as session:
        racks = await ready_racks(
            session, template["targets"], OperationCode(template["operation"])
        )
    if not racks:
        raise FailedPrecondition(
            "nothing to run: no rack in the schedule's scope has a component with a NICo Core id"
        )
    token = uuid.uuid4().hex
    annotations = {ANNOTATION_TRIGGER_NOW: token, ANNOTATION_TRIGGERED_AT: _now()}
    await _patch(backend, body, {"metadata": {"annotations": annotations}})
    spec_name = timing.trigger_name(body["metadata"]["name"], token)
    return [task_id(backend.namespace, task_name(spec_name, r)) for r in racks]


# --- scope RPCs -----------------------------------------------------------------------------


async def _write_scopes(backend: Backend, body: Json, scopes: list[Json]) -> Json:
    async with backend.sessions() as session:
        targets = await targets_of(session, scopes)
    # one JSON patch: the targets object is replaced whole, with the scopes beside it
    ops = [
        {"op": "replace", "path": "/spec/taskSpecTemplate/spec/targets", "value": targets},
        {"op": "replace", "path": f"/metadata/annotations/{_escape(ANNOTATION_SCOPES)}",
         "value": json.dumps(scopes, sort_keys=True)},
        {"op": "replace", "path": f"/metadata/annotations/{_escape(ANNOTATION_UPDATED)}",
         "value": _now()},
    ]  # fmt: skip
    name, ns = body["metadata"]["name"], backend.namespace
    try:
        updated = await retrying(
            lambda: backend.kube.patch(SCHEDULES, name, ops, ns, patch_type="json")
        )
    except KubeNotFound:
        raise NotFound(f"task schedule {_display(body)} was deleted meanwhile") from None
    except Invalid as exc:
        raise InvalidArgument(f"Kubernetes refused the change: {exc.message}") from None
    return dict(updated)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


async def add_scope(
    backend: Backend, request: pb.AddTaskScheduleScopeRequest
) -> list[pb.TaskScheduleScope]:
    body = await _find(
        backend, request.schedule_id if request.HasField("schedule_id") else None, "schedule_id"
    )
    sid = schedule_id_of(body)
    targets = target_spec(request.target_spec if request.HasField("target_spec") else None)
    async with backend.sessions() as session:
        adding = await scopes_for(session, targets, sid)
    scopes, _, _ = merge_scopes(_scopes(body), adding)
    updated = await _write_scopes(backend, body, scopes)
    return await _scope_messages(backend, updated)


async def remove_scope(backend: Backend, request: pb.RemoveTaskScheduleScopeRequest) -> None:
    wanted = str(parse_uuid(request.scope_id if request.HasField("scope_id") else None, "scope_id"))
    for body in await _all(backend):
        scopes = _scopes(body)
        if not any(s["id"] == wanted for s in scopes):
            continue
        if len(scopes) == 1:
            raise FailedPrecondition(
                "this is the schedule's last scope; a schedule needs one (delete the schedule "
                "instead)"
            )
        await _write_scopes(backend, body, [s for s in scopes if s["id"] != wanted])
        return
    raise NotFound(f"task schedule scope {wanted} not found")


async def update_scopes(
    backend: Backend, request: pb.UpdateTaskScheduleScopeRequest
) -> tuple[list[pb.TaskScheduleScope], int, int, int]:
    body = await _find(
        backend, request.schedule_id if request.HasField("schedule_id") else None, "schedule_id"
    )
    sid = schedule_id_of(body)
    targets = target_spec(
        request.desired_scope if request.HasField("desired_scope") else None, "desired_scope"
    )
    async with backend.sessions() as session:
        desired = await scopes_for(session, targets, sid)
    current = {s["rackId"]: s for s in _scopes(body)}
    wanted = {s["rackId"]: s for s in desired}
    added = len(set(wanted) - set(current))
    removed = len(set(current) - set(wanted))
    updated = 0
    result = []
    for rid, entry in wanted.items():
        old = current.get(rid)
        if old is not None:
            same = old.get("types") == entry.get("types") and old.get("components") == entry.get(
                "components"
            )
            updated += 0 if same else 1
            entry = dict(entry, createdAt=old.get("createdAt", entry["createdAt"]))
        result.append(entry)
    result.sort(key=lambda s: s["rack"])
    written = await _write_scopes(backend, body, result)
    return await _scope_messages(backend, written), added, removed, updated


async def list_scopes(
    backend: Backend, request: pb.ListTaskScheduleScopesRequest
) -> list[pb.TaskScheduleScope]:
    body = await _find(
        backend, request.schedule_id if request.HasField("schedule_id") else None, "schedule_id"
    )
    return await _scope_messages(backend, body)


def _footprint(name: str, code: OperationCode, types: Sequence[str] | None) -> Footprint:
    kinds = [ComponentType(t) for t in types] if types else list(ComponentType)
    # coarse on purpose, as in the original: any shared type counts as overlap
    return Footprint(name, code.operation_type, frozenset((t, "*") for t in kinds))


async def check_conflicts(
    backend: Backend, request: pb.CheckScheduleConflictsRequest
) -> list[pb.TaskSchedule]:
    op = operation_request(request.operation)
    exclude = (
        str(parse_uuid(request.exclude_schedule_id, "exclude_schedule_id"))
        if request.HasField("exclude_schedule_id")
        else None
    )
    async with backend.sessions() as session:
        proposed = {
            s["rackId"]: s for s in await scopes_for(session, op.targets, str(uuid.uuid4()))
        }
    out = []
    for body in await _all(backend):
        sid = schedule_id_of(body)
        if not sid or sid == exclude or not enabled(body):
            continue
        code = OperationCode(body["spec"]["taskSpecTemplate"]["spec"]["operation"])
        for scope in _scopes(body):
            mine = proposed.get(scope["rackId"])
            if mine is None:
                continue
            incoming = _footprint("proposed", op.code, mine.get("types"))
            other = _footprint(sid, code, scope.get("types"))
            if conflict(incoming, other) is not None:
                out.append(body)
                break
    out.sort(key=lambda b: (b["metadata"].get("annotations") or {}).get(ANNOTATION_CREATED) or "")
    return [schedule_message(b) for b in out]
