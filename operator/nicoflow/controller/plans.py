"""Between Kubernetes objects and the engine: a Task body becomes a Plan, an
engine status becomes a status patch."""

from __future__ import annotations

from typing import Any

from nicoflow.api.task import TaskRunSpec
from nicoflow.api.taskstatus import TaskStatus
from nicoflow.domain.conflicts import Footprint
from nicoflow.domain.rules import RuleSource
from nicoflow.domain.types import ComponentType
from nicoflow.engine.plan import Component, Options, Plan


def task_spec(body: dict[str, Any]) -> TaskRunSpec:
    return TaskRunSpec.model_validate(body.get("spec") or {})


def plan_from_task(body: dict[str, Any], *, cancel: bool = False) -> Plan:
    spec = task_spec(body)
    components: dict[ComponentType, tuple[Component, ...]] = {
        group.type: tuple(
            Component(ref.core_id or ref.bmc_mac_address or "", ref.name) for ref in group.ids
        )
        for group in spec.components
    }
    opts = spec.options
    window = opts.firmware_window if opts else None
    options = Options(
        target_version=(opts.target_version or "") if opts else "",
        sub_targets=tuple(opts.sub_targets or ()) if opts else (),
        override_readiness=bool(opts and opts.override_readiness_check),
        window_start=int(window.start_time.timestamp()) if window else None,
        window_end=int(window.end_time.timestamp()) if window else None,
    )
    return Plan(
        task_uid=body["metadata"]["uid"],
        operation=spec.operation,
        components=components,
        rule=spec.rule.definition,
        options=options,
        cancel=cancel or spec.cancel,
        adaptive_polling=spec.rule.source is RuleSource.BUILTIN,
    )


def footprint(body: dict[str, Any]) -> Footprint:
    spec = task_spec(body)
    return Footprint(
        name=body["metadata"]["name"],
        operation_type=spec.operation.operation_type,
        components=frozenset(
            (group.type, ref.core_id or ref.name) for group in spec.components for ref in group.ids
        ),
    )


def status_of(body: dict[str, Any]) -> TaskStatus:
    return TaskStatus.model_validate(body.get("status") or {})


def status_patch(status: TaskStatus) -> dict[str, Any]:
    """A merge patch that replaces the whole status: nested empty values are
    left out, and top-level fields that became empty are removed explicitly."""
    dumped = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    for name, field in TaskStatus.model_fields.items():
        key = field.alias or name
        if key not in dumped:
            dumped[key] = None
    return dumped
