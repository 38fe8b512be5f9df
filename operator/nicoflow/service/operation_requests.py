"""Operation RPC requests read into one shape, and the TaskSpec built from it.

Pure: the rack names and components a request targets are looked up by the
caller (`nicoflow.service.operations`). One request becomes one TaskSpec; the
operator splits it into one Task per rack."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.api.common import API_VERSION
from nicoflow.api.task_spec import (
    DEFAULT_QUEUE_TIMEOUT_SECONDS,
    MAX_COMPONENT_TARGETS,
    MAX_QUEUE_TIMEOUT_SECONDS,
    TaskSpecSpec,
)
from nicoflow.domain.rules import describe_validation_error
from nicoflow.domain.targets import InventoryComponent
from nicoflow.domain.types import (
    DEFAULT_MAX_UNTHROTTLED_RACKS,
    ComponentType,
    ConflictStrategy,
    OperationCode,
)
from nicoflow.kube.resources import GROUP, LABEL_OPERATION
from nicoflow.service.enums import conflict_strategy
from nicoflow.service.errors import InvalidArgument
from nicoflow.service.validation import Targets, parse_uuid, target_spec, timestamp

ANNOTATION_TASK_IDS = f"{GROUP}/task-ids"
LABEL_SOURCE = f"{GROUP}/source"
MAX_DESCRIPTION = 1024
MAX_TARGET_VERSION = 4096
# Annotations share a 256 KiB budget per object; very large requests go without.
MAX_TASK_IDS_ANNOTATION = 100_000


@dataclass(frozen=True)
class OperationRequest:
    code: OperationCode
    targets: Targets
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    rule_id: uuid.UUID | None = None
    conflict: ConflictStrategy = ConflictStrategy.REJECT
    queue_timeout: int = DEFAULT_QUEUE_TIMEOUT_SECONDS


def _description(text: str) -> str:
    if len(text) > MAX_DESCRIPTION:
        raise InvalidArgument(
            f"description is {len(text)} characters long; at most {MAX_DESCRIPTION} allowed"
        )
    return text


def _queue(opts: pb.QueueOptions | None) -> tuple[ConflictStrategy, int]:
    if opts is None:
        return ConflictStrategy.REJECT, DEFAULT_QUEUE_TIMEOUT_SECONDS
    strategy = conflict_strategy(opts.conflict_strategy, "queue_options.conflict_strategy")
    seconds = opts.queue_timeout_seconds
    if seconds < 0 or seconds > MAX_QUEUE_TIMEOUT_SECONDS:
        raise InvalidArgument(
            f"queue_options.queue_timeout_seconds is {seconds}; use 1 to "
            f"{MAX_QUEUE_TIMEOUT_SECONDS}, or 0 for the default of one hour"
        )
    return strategy, seconds or DEFAULT_QUEUE_TIMEOUT_SECONDS


def _rule(msg: pb.UUID | None) -> uuid.UUID | None:
    return parse_uuid(msg, "rule_id") if msg is not None else None


def _override(flag: bool) -> dict[str, Any]:
    return {"overrideReadinessCheck": True} if flag else {}


def power_on(req: pb.PowerOnRackRequest) -> OperationRequest:
    strategy, timeout = _queue(req.queue_options if req.HasField("queue_options") else None)
    return OperationRequest(
        code=OperationCode.POWER_ON,
        targets=target_spec(req.target_spec if req.HasField("target_spec") else None),
        description=_description(req.description),
        options=_override(req.override_readiness_check),
        rule_id=_rule(req.rule_id if req.HasField("rule_id") else None),
        conflict=strategy,
        queue_timeout=timeout,
    )


def power_off(req: pb.PowerOffRackRequest) -> OperationRequest:
    strategy, timeout = _queue(req.queue_options if req.HasField("queue_options") else None)
    return OperationRequest(
        code=OperationCode.FORCE_POWER_OFF if req.forced else OperationCode.POWER_OFF,
        targets=target_spec(req.target_spec if req.HasField("target_spec") else None),
        description=_description(req.description),
        options=_override(req.override_readiness_check),
        rule_id=_rule(req.rule_id if req.HasField("rule_id") else None),
        conflict=strategy,
        queue_timeout=timeout,
    )


def power_reset(req: pb.PowerResetRackRequest) -> OperationRequest:
    strategy, timeout = _queue(req.queue_options if req.HasField("queue_options") else None)
    return OperationRequest(
        code=OperationCode.FORCE_RESTART if req.forced else OperationCode.RESTART,
        targets=target_spec(req.target_spec if req.HasField("target_spec") else None),
        description=_description(req.description),
        options=_override(req.override_readiness_check),
        rule_id=_rule(req.rule_id if req.HasField("rule_id") else None),
        conflict=strategy,
        queue_timeout=timeout,
    )


def _target_version(text: str) -> str:
    if len(text) > MAX_TARGET_VERSION:
        raise InvalidArgument(
            f"target_version is {len(text)} characters long; at most {MAX_TARGET_VERSION}"
        )
    if text.lstrip().startswith("{"):
        try:
            layered = json.loads(text)
        except ValueError as exc:
            raise InvalidArgument(
                f"target_version looks like JSON but does not parse ({exc}); give a plain "
                'version string or an object such as {"compute": "1.2.3"}'
            ) from None
        if not isinstance(layered, dict):
            raise InvalidArgument("target_version JSON must be an object keyed by component type")
        for key in layered:
            try:
                ComponentType.parse(str(key))
            except ValueError as exc:
                raise InvalidArgument(f"target_version: {exc}") from None
    return text


def upgrade_firmware(req: pb.UpgradeFirmwareRequest) -> OperationRequest:
    strategy, timeout = _queue(req.queue_options if req.HasField("queue_options") else None)
    options: dict[str, Any] = _override(req.override_readiness_check)
    if req.HasField("target_version") and req.target_version:
        options["targetVersion"] = _target_version(req.target_version)
    subs = list(req.sub_targets)
    for i, s in enumerate(subs):
        if not s or s != s.lower() or not s.replace("_", "").isalnum() or len(s) > 32:
            raise InvalidArgument(
                f"sub_targets[{i}] is {s!r}; use lower-case firmware part names such as "
                "bmc, bios, cpld, nvos, pmc, psu or dpu"
            )
    if len(set(subs)) != len(subs):
        raise InvalidArgument("sub_targets lists a part twice; name each part once")
    if subs:
        options["subTargets"] = subs
    has_start, has_end = req.HasField("start_time"), req.HasField("end_time")
    if has_start != has_end:
        raise InvalidArgument(
            "start_time and end_time form a maintenance window: give both or neither"
        )
    if has_start:
        start = timestamp(req.start_time, "start_time")
        end = timestamp(req.end_time, "end_time")
        if start >= end:
            raise InvalidArgument("start_time must be before end_time")
        options["firmwareWindow"] = {
            "startTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    return OperationRequest(
        code=OperationCode.UPGRADE,
        targets=target_spec(req.target_spec if req.HasField("target_spec") else None),
        description=_description(req.description),
        options=options,
        rule_id=_rule(req.rule_id if req.HasField("rule_id") else None),
        conflict=strategy,
        queue_timeout=timeout,
    )


def bring_up(req: pb.BringUpRackRequest) -> OperationRequest:
    # bring-up always rejects on conflict (no queue options on the wire)
    return OperationRequest(
        code=OperationCode.BRING_UP,
        targets=target_spec(req.target_spec if req.HasField("target_spec") else None),
        description=_description(req.description),
        options=_override(req.override_readiness_check),
        rule_id=_rule(req.rule_id if req.HasField("rule_id") else None),
    )


def ingest(req: pb.IngestRackRequest) -> OperationRequest:
    # `filters` are accepted for compatibility and not applied, as in the original
    return OperationRequest(
        code=OperationCode.INGEST,
        targets=target_spec(req.target_spec if req.HasField("target_spec") else None),
        description=_description(req.description),
        rule_id=_rule(req.rule_id if req.HasField("rule_id") else None),
    )


# --- TaskSpec ---------------------------------------------------------------------------------


def build_targets(
    rack_targets: Sequence[tuple[str, frozenset[ComponentType]]],
    rack_components: Mapping[str, Sequence[InventoryComponent]],
    component_targets: Sequence[Mapping[str, str]],
) -> dict[str, Any]:
    """TaskSpec targets for the v1 rack and component targets.

    A TaskSpec narrows all its racks by one componentTypes list, while each v1
    RackTarget has its own. Racks sharing the largest group of types (every
    type preferred) are named as racks; the components of the other racks'
    types are listed as component targets by id."""
    merged: dict[str, frozenset[ComponentType]] = {}
    for name, types in rack_targets:
        if name in merged:
            # an empty set means every type, so it absorbs any narrowing
            merged[name] = frozenset() if not types or not merged[name] else merged[name] | types
        else:
            merged[name] = types
    groups: dict[frozenset[ComponentType], list[str]] = {}
    for name, types in merged.items():
        groups.setdefault(types, []).append(name)
    out: dict[str, Any] = {}
    components: list[dict[str, str]] = []
    if groups:
        base = frozenset() if frozenset() in groups else _largest(groups)
        out["racks"] = sorted(groups[base])
        if base:
            out["componentTypes"] = sorted(t.value for t in base)
        for types, names in groups.items():
            if types == base:
                continue
            for name in sorted(names):
                components.extend(
                    {"id": c.id}
                    for c in sorted(rack_components.get(name, ()), key=lambda c: c.id)
                    if c.type in types
                )
    components.extend(dict(c) for c in component_targets)
    if len(components) > MAX_COMPONENT_TARGETS:
        raise InvalidArgument(
            f"the request names {len(components)} components once rack targets with "
            f"different component_types are spelled out; at most {MAX_COMPONENT_TARGETS} fit "
            "one request: split it, or use the same component_types for every rack"
        )
    if components:
        out["components"] = components
    return out


def _largest(groups: Mapping[frozenset[ComponentType], list[str]]) -> frozenset[ComponentType]:
    return max(groups, key=lambda t: (len(groups[t]), sorted(x.value for x in t)))


def taskspec_name(code: OperationCode, suffix: str) -> str:
    return f"{code.value.replace('_', '-')}-{suffix}"


def taskspec_body(
    name: str,
    namespace: str,
    op: OperationRequest,
    targets: Mapping[str, Any],
    *,
    rule_name: str | None,
    task_ids: Mapping[str, uuid.UUID],
    ttl: int = 0,
) -> dict[str, Any]:
    """The TaskSpec object, checked against the CRD model before it is sent."""
    spec: dict[str, Any] = {
        "operation": op.code.value,
        "targets": dict(targets),
        "conflictStrategy": op.conflict.value,
        "queueTimeoutSeconds": op.queue_timeout,
    }
    if op.description:
        spec["description"] = op.description
    if op.options:
        spec["options"] = dict(op.options)
    if rule_name:
        spec["ruleRef"] = {"name": rule_name}
    if ttl:
        spec["ttlSecondsAfterFinished"] = ttl
    if op.code.disruptive and len(task_ids) > DEFAULT_MAX_UNTHROTTLED_RACKS:
        # the operator refuses a disruptive fleet-wide run without a limit; the
        # original's clients know none, so theirs run this many racks at a time
        spec["maxParallelRacks"] = DEFAULT_MAX_UNTHROTTLED_RACKS
    try:
        TaskSpecSpec.model_validate(spec)
    except ValidationError as exc:
        raise InvalidArgument(
            "the request does not make a valid TaskSpec: "
            + "; ".join(describe_validation_error(exc))
        ) from None
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {LABEL_OPERATION: op.code.value, LABEL_SOURCE: "flow-api"},
    }
    ids = json.dumps({rack: str(i) for rack, i in sorted(task_ids.items())}, separators=(",", ":"))
    if len(ids) <= MAX_TASK_IDS_ANNOTATION:
        metadata["annotations"] = {ANNOTATION_TASK_IDS: ids}
    return {"apiVersion": API_VERSION, "kind": "TaskSpec", "metadata": metadata, "spec": spec}
