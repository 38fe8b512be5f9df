"""Refuse at submit time what the operator would reject, as the original did.

The original decided conflicts when the request came in: a rack with a
conflicting task (strategy Reject) or a full waiting queue got no task id,
and the caller learned why. Here the operator admits Tasks later, so the
server asks the same question first (the same rules, `domain.conflicts`)
over what already holds each rack in its namespace: unfinished Tasks, and
the racks of TaskSpecs the operator has not split into Tasks yet. A refused
rack is left out of the TaskSpec; when every rack is refused the request
fails and no TaskSpec is made. The operator stays the judge: a request that
races another one past this check gets a Task the operator rejects."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from nicoflow.api.task import TaskRunSpec
from nicoflow.api.task_spec import TaskSpecPhase
from nicoflow.domain.conflicts import Footprint, Queue, Reject, Waiting, admit
from nicoflow.domain.targets import InventoryComponent, addressable, resolve_targets
from nicoflow.domain.task_ids import task_id
from nicoflow.domain.types import ConflictStrategy, OperationCode, TaskPhase
from nicoflow.inventory.queries import load_for_targets
from nicoflow.kube.resources import LABEL_RACK, TASKS, TASKSPECS, task_name
from nicoflow.kube.retry import retrying
from nicoflow.service.backend import Backend

Json = dict[str, Any]
# racks per label selector: keeps the selector well under the apiserver's URL limits
_SELECTOR_BATCH = 100


@dataclass(frozen=True)
class Refusal:
    rack: str
    reason: str
    queue_full: bool


@dataclass
class _Rack:
    holding: list[Footprint]
    waiting: list[Waiting]


def incoming(name: str, code: OperationCode, components: Iterable[InventoryComponent]) -> Footprint:
    """The footprint the Task for these components will have (as the operator
    names them: Core id, else name)."""
    return Footprint(
        name,
        code.operation_type,
        frozenset(
            (c.type, c.core_id or c.name or c.serial) for c in components if addressable(code, c)
        ),
    )


def _task_footprint(body: Mapping[str, Any]) -> tuple[str, TaskPhase, Footprint] | None:
    try:
        spec = TaskRunSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None
    raw = (body.get("status") or {}).get("phase") or TaskPhase.PENDING.value
    try:
        phase = TaskPhase(raw)
    except ValueError:
        return None
    fp = Footprint(
        body["metadata"]["name"],
        spec.operation.operation_type,
        frozenset(
            (group.type, ref.core_id or ref.name) for group in spec.components for ref in group.ids
        ),
    )
    return spec.rack, phase, fp


async def _tasks_on(backend: Backend, racks: Sequence[str]) -> list[Json]:
    ns = backend.namespace
    out: list[Json] = []
    for i in range(0, len(racks), _SELECTOR_BATCH):
        chunk = ",".join(racks[i : i + _SELECTOR_BATCH])
        selector = f"{LABEL_RACK} in ({chunk})"
        out += await retrying(
            functools.partial(backend.kube.list, TASKS, ns, label_selector=selector)
        )
    return out


async def _unresolved(backend: Backend, racks: set[str]) -> dict[str, list[Footprint]]:
    """Footprints on `racks` of TaskSpecs the operator has not split yet."""
    ns = backend.namespace
    pending = [
        ts
        for ts in await retrying(lambda: backend.kube.list(TASKSPECS, ns))
        if (ts.get("status") or {}).get("racks") is None
        and (ts.get("status") or {}).get("phase") != TaskSpecPhase.FAILED.value
        and not ts["metadata"].get("deletionTimestamp")
    ]
    out: dict[str, list[Footprint]] = {}
    if not pending:
        return out
    async with backend.sessions() as session:
        for ts in pending:
            spec = ts.get("spec") or {}
            try:
                code = OperationCode(str(spec.get("operation")))
            except ValueError:
                continue
            targets = spec.get("targets") or {}
            resolution = resolve_targets(targets, await load_for_targets(session, targets))
            for rack, comps in resolution.per_rack.items():
                if rack in racks:
                    name = task_name(ts["metadata"]["name"], rack)
                    out.setdefault(rack, []).append(incoming(name, code, comps))
    return out


async def refusals(
    backend: Backend,
    code: OperationCode,
    strategy: ConflictStrategy,
    per_rack: Mapping[str, Sequence[InventoryComponent]],
) -> list[Refusal]:
    """The racks the operator would reject a new Task on, with the reason."""
    if not per_rack:
        return []
    racks: dict[str, _Rack] = {r: _Rack([], []) for r in per_rack}
    now = datetime.now(UTC)
    for body in await _tasks_on(backend, sorted(racks)):
        read = _task_footprint(body)
        if read is None or read[0] not in racks or read[1].finished:
            continue
        rack, phase, fp = read
        if phase is TaskPhase.WAITING:
            racks[rack].waiting.append(Waiting(fp, now, now + timedelta(hours=1)))
        else:
            racks[rack].holding.append(fp)  # pending ones start first: they hold it too
    for rack, fps in (await _unresolved(backend, set(racks))).items():
        racks[rack].holding += fps
    out = []
    for rack, comps in sorted(per_rack.items()):
        mine = incoming("this request", code, comps)
        decision = admit(mine, strategy, racks[rack].holding, racks[rack].waiting)
        if isinstance(decision, Reject):
            out.append(_refusal(backend.namespace, rack, decision, racks[rack]))
        elif isinstance(decision, Queue):
            continue  # it will wait, and it has a task id, as in the original
    return out


def _refusal(namespace: str, rack: str, decision: Reject, held: _Rack) -> Refusal:
    names = [fp.name for fp in (*held.holding, *(w.footprint for w in held.waiting))]
    reason = decision.reason
    for name in names:  # name the task as the API knows it
        if f"Task {name} " in f"{reason} ":
            reason = reason.replace(f"Task {name}", f"task {task_id(namespace, name)} ({name})")
            break
    return Refusal(rack, reason, "queue is full" in decision.reason)


def describe(refused: Sequence[Refusal], display: Mapping[str, str]) -> str:
    return "; ".join(f"rack {display.get(r.rack, r.rack)}: {r.reason}" for r in refused)
