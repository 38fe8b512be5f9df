"""Operation RPCs: one request becomes one TaskSpec; the answer is one task id
per rack that will get a Task.

Targets are resolved here, against the same inventory and with the same
resolver the operator uses, so the racks answered for are the racks the
operator creates Tasks for: racks with at least one targeted component the
operation can address (a NICo Core id; for ingest, a BMC MAC is enough). As
in the original, racks that cannot run are left out and the call fails only
when no rack can; a rack the operator would reject for a conflict (or a full
queue) is refused here, before any id is handed out
(`nicoflow.service.admission`). Task ids are name-based (see
`nicoflow.domain.task_ids`)."""

from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

from nicoflow.domain.targets import InventoryComponent, addressable, resolve_targets
from nicoflow.domain.task_ids import task_id
from nicoflow.domain.types import OperationCode
from nicoflow.inventory.queries import load_for_targets, load_racks
from nicoflow.kube.client import Conflict, Invalid
from nicoflow.kube.client import NotFound as KubeNotFound
from nicoflow.kube.resources import GROUP, RULES, TASKSPECS, task_name
from nicoflow.kube.retry import retrying
from nicoflow.service import admission
from nicoflow.service.authz import stamp_caller
from nicoflow.service.backend import Backend
from nicoflow.service.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from nicoflow.service.lookups import components_for_refs, racks_for_refs
from nicoflow.service.operation_requests import (
    OperationRequest,
    build_targets,
    taskspec_body,
    taskspec_name,
)

log = logging.getLogger(__name__)

LABEL_RULE_ID = f"{GROUP}/rule-id"
_NAME_ATTEMPTS = 3
_LISTED = 5


async def _rule_name(backend: Backend, op: OperationRequest) -> str | None:
    """The OperationRule `rule_id` names: the rule labelled with that id, else
    the rule whose object name is the id itself."""
    if op.rule_id is None:
        return None
    selector = f"{LABEL_RULE_ID}={op.rule_id}"
    items = await retrying(lambda: backend.kube.list(RULES, label_selector=selector))
    body: dict[str, Any] | None = items[0] if items else None
    if body is None:
        try:
            body = await retrying(lambda: backend.kube.get(RULES, str(op.rule_id)))
        except KubeNotFound:
            raise NotFound(
                f"operation rule {op.rule_id} not found (no OperationRule with label "
                f"{LABEL_RULE_ID}={op.rule_id} or with that name)"
            ) from None
    name = str(body["metadata"]["name"])
    for_op = (body.get("spec") or {}).get("operation")
    if for_op != op.code.value:
        raise FailedPrecondition(
            f"operation rule {name} is for {for_op}, not {op.code.value}; pick a rule for "
            f"{op.code.value} or leave rule_id unset"
        )
    return name


async def _targets(
    backend: Backend, op: OperationRequest
) -> tuple[dict[str, Any], dict[str, tuple[InventoryComponent, ...]]]:
    """TaskSpec targets, and the racks that will get a Task with their components."""
    async with backend.sessions() as session:
        racks = await racks_for_refs(session, op.targets.racks)
        comps = await components_for_refs(session, op.targets.components)
        orphans = [
            ref.describe() for ref in op.targets.components if comps[ref.index].rack_id is None
        ]
        if orphans:
            raise FailedPrecondition(
                "operations run per rack, and these components belong to no rack: "
                + ", ".join(orphans[:_LISTED])
            )
        rack_targets = [(racks[r.index].name, r.types) for r in op.targets.racks]
        narrowed = sorted({name for name, types in rack_targets if types})
        inventory = {r.name: r.components for r in await load_racks(session, names=narrowed)}
        component_targets = [
            {"id": str(comps[ref.index].id)}
            if ref.id is not None
            else {"coreId": ref.core_id or "", "type": ref.core_type.value if ref.core_type else ""}
            for ref in op.targets.components
        ]
        targets = build_targets(rack_targets, inventory, component_targets)
        loaded = await load_for_targets(session, targets)
    resolution = resolve_targets(targets, loaded)
    ready = sorted(
        name for name, cs in resolution.per_rack.items() if any(addressable(op.code, c) for c in cs)
    )
    if not ready:
        reasons = [message for _, message in resolution.errors[:_LISTED]]
        waiting = sorted(set(resolution.per_rack) - set(ready))
        if waiting and op.code is OperationCode.INGEST:
            reasons.append(
                "no targeted component of rack(s) "
                + ", ".join(waiting[:_LISTED])
                + " has a NICo Core id or a BMC MAC address; give the components their BMCs "
                "(mac_address) so NICo Core can be told what to expect"
            )
        elif waiting:
            reasons.append(
                "no targeted component of rack(s) "
                + ", ".join(waiting[:_LISTED])
                + " has a NICo Core id yet; set component_id on the rack's components, "
                "ingest the rack, or wait for inventory sync"
            )
        raise FailedPrecondition(
            "nothing to run: " + ("; ".join(reasons) or "the targets select no component")
        )
    for target, message in resolution.errors:
        log.info("operation %s: target %s left out: %s", op.code.value, target, message)
    return targets, {name: resolution.per_rack[name] for name in ready}


async def _admitted(
    backend: Backend,
    op: OperationRequest,
    targets: dict[str, Any],
    per_rack: dict[str, tuple[InventoryComponent, ...]],
) -> list[str]:
    """The racks that get a Task; the refused ones are left out of `targets`."""
    refused = await admission.refusals(backend, op.code, op.conflict, per_rack)
    if not refused:
        return sorted(per_rack)
    left_out = {r.rack for r in refused}
    accepted = sorted(set(per_rack) - left_out)
    text = admission.describe(refused, {})
    if not accepted:
        error = ResourceExhausted if all(r.queue_full for r in refused) else FailedPrecondition
        raise error(f"failed to create any tasks: {text}")
    log.info("operation %s: racks refused at submission: %s", op.code.value, text)
    targets["excludeRacks"] = sorted(left_out)
    return accepted


async def submit(backend: Backend, op: OperationRequest) -> list[uuid.UUID]:
    targets, per_rack = await _targets(backend, op)
    rule_name = await _rule_name(backend, op)
    racks = await _admitted(backend, op, targets, per_rack)
    ns = backend.namespace
    for _ in range(_NAME_ATTEMPTS):
        name = taskspec_name(op.code, uuid.uuid4().hex[:8])
        ids = {rack: task_id(ns, task_name(name, rack)) for rack in racks}
        body = taskspec_body(
            name, ns, op, targets, rule_name=rule_name, task_ids=ids, ttl=backend.taskspec_ttl
        )
        stamp_caller(body)  # audit: who asked
        try:
            await retrying(functools.partial(backend.kube.create, TASKSPECS, body, ns))
        except Conflict:
            continue  # the generated name is taken: draw another
        except Invalid as exc:
            raise InvalidArgument(f"Kubernetes refused the TaskSpec: {exc.message}") from None
        except KubeNotFound:
            raise FailedPrecondition(
                f"namespace {ns} does not exist; create it or start the server with a "
                "--namespace that does"
            ) from None
        log.info("operation %s: TaskSpec %s/%s for %d racks", op.code.value, ns, name, len(racks))
        return [ids[r] for r in racks]
    raise FailedPrecondition("could not find a free TaskSpec name; retry")
