"""Only Tasks the operator made for a live TaskSpec run.

The admission policy keeps everyone but the operator (and cluster admins)
from creating Tasks; this is the second line, in the operator itself: before
a Task first runs in this process it must be owned by the TaskSpec it names
(same uid), carry the name the operator gives it, run that TaskSpec's
operation, target a rack from the inventory with that rack's own components,
and be allowed by the namespace's RackAccessPolicy grants. A Task failing any
of these is failed with a condition saying which, and never sends a command.
Conflict admission is keyed on the Task's rack, so a made-up rack name can
never slip past a conflicting run."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nicoflow.controller.tenancy import AccessPolicies
from nicoflow.domain.targets import InventoryRack
from nicoflow.domain.types import OperationCode
from nicoflow.kube.client import KubeClient, NotFound
from nicoflow.kube.resources import GROUP, TASKSPECS, task_name

log = logging.getLogger(__name__)

Key = tuple[str, str]
Json = dict[str, Any]
RackLoader = Callable[[list[str]], Awaitable[Sequence[InventoryRack]]]


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


def owner_refusal(task: Mapping[str, Any], taskspec: Mapping[str, Any] | None) -> Refusal | None:
    """The Task is owned (as controller) by the TaskSpec it names, by uid, under
    the name the operator gives it, and runs that TaskSpec's operation."""
    meta, spec = task.get("metadata") or {}, task.get("spec") or {}
    ns, name = meta.get("namespace", ""), spec.get("taskSpecName", "")
    controllers = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
    if not controllers:
        return Refusal(
            "Orphaned",
            f"not created by the operator: the Task has no controlling owner, while the "
            f"operator makes every Task owned by its TaskSpec ({name}); create a TaskSpec instead",
        )
    owner = controllers[0]
    group = str(owner.get("apiVersion", "")).split("/", 1)[0]
    if owner.get("kind") != TASKSPECS.kind or group != GROUP or owner.get("name") != name:
        return Refusal(
            "OwnerMismatch",
            f"the Task is owned by {owner.get('kind')} {owner.get('name')}, not by TaskSpec "
            f"{name} that spec.taskSpecName names",
        )
    if taskspec is None:
        return Refusal("Orphaned", f"TaskSpec {ns}/{name}, which owns this Task, does not exist")
    uid = (taskspec.get("metadata") or {}).get("uid")
    if owner.get("uid") != uid:
        return Refusal(
            "OwnerMismatch",
            f"the Task's owner reference names TaskSpec {name} with uid {owner.get('uid')}, but "
            f"TaskSpec {ns}/{name} has uid {uid}: the Task was not made for it",
        )
    expected = task_name(name, str(spec.get("rack", "")))
    if meta.get("name") != expected:
        return Refusal(
            "OwnerMismatch",
            f"TaskSpec {name}'s Task on rack {spec.get('rack')} is named {expected}, not "
            f"{meta.get('name')}",
        )
    wanted = (taskspec.get("spec") or {}).get("operation")
    if spec.get("operation") != wanted:
        return Refusal(
            "OwnerMismatch",
            f"the Task runs {spec.get('operation')}, but its TaskSpec {name} asks for {wanted}",
        )
    return None


def inventory_refusal(task: Mapping[str, Any], rack: InventoryRack | None) -> Refusal | None:
    """The Task's rack is an inventory rack and every component it names is one of
    that rack's, with the inventory's NICo Core id."""
    spec = task.get("spec") or {}
    name = spec.get("rack", "")
    if rack is None:
        return Refusal(
            "UnknownRack",
            f"rack {name} is not in the inventory (no Rack object of that name); a Task's rack "
            "comes from the inventory, never from free text",
        )
    known = {(c.type.value, c.name): c for c in rack.components}
    known.update({(c.type.value, c.serial): c for c in rack.components if c.serial})
    for group in spec.get("components") or ():
        for ref in group.get("ids") or ():
            found = known.get((group.get("type"), ref.get("name")))
            if found is None:
                return Refusal(
                    "ComponentNotInRack",
                    f"{group.get('type')} {ref.get('name')} is not a component of rack {name} "
                    "in the inventory",
                )
            if ref.get("coreId") and ref["coreId"] != found.core_id:
                return Refusal(
                    "ComponentNotInRack",
                    f"{group.get('type')} {ref.get('name')} of rack {name} has NICo Core id "
                    f"{found.core_id or '(none)'} in the inventory, not {ref['coreId']}",
                )
    return None


class TaskGuard:
    """Checks each Task once per process (by uid) before the operator runs it."""

    def __init__(
        self, kube: KubeClient, racks: RackLoader, access: AccessPolicies | None = None
    ) -> None:
        self.kube = kube
        self.racks = racks
        self.access = access
        self._passed: set[str] = set()

    def passed(self, task: Mapping[str, Any]) -> bool:
        return str((task.get("metadata") or {}).get("uid")) in self._passed

    async def check(
        self, tasks: Iterable[Mapping[str, Any]], taskspecs: Mapping[Key, Json]
    ) -> dict[Key, Refusal]:
        """Refusals by Task key; Tasks that pass are remembered and not checked again.
        Raises when the inventory or the apiserver cannot answer (nothing is run blind)."""
        todo = [t for t in tasks if not self.passed(t)]
        if not todo:
            return {}
        names = sorted({str((t.get("spec") or {}).get("rack", "")) for t in todo})
        inventory = {r.name: r for r in await self.racks(names)}
        refused: dict[Key, Refusal] = {}
        for task in todo:
            meta = task.get("metadata") or {}
            key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            refusal = owner_refusal(task, await self._taskspec(task, taskspecs))
            rack = inventory.get(str((task.get("spec") or {}).get("rack", "")))
            refusal = refusal or inventory_refusal(task, rack)
            if refusal is None and self.access is not None and rack is not None:
                operation = OperationCode(str((task.get("spec") or {}).get("operation")))
                verdict = await self.access.verdict(key[0], operation, [rack])
                if not verdict.allowed:
                    refusal = Refusal("AccessDenied", verdict.message)
            if refusal is None:
                self._passed.add(str(meta.get("uid")))
            else:
                log.warning(
                    "task %s/%s refused: %s",
                    *key,
                    refusal.message,
                    extra={"task": key[1], "namespace": key[0], "reason": refusal.reason},
                )
                refused[key] = refusal
        return refused

    async def check_owners(
        self, tasks: Iterable[Mapping[str, Any]], taskspecs: Mapping[Key, Json]
    ) -> dict[Key, Refusal]:
        """Ownership alone, for leak responses while the inventory cannot
        answer: a leaking tray must go dark anyway, and its TaskSpec (made by
        the operator) names the rack and component itself."""
        refused: dict[Key, Refusal] = {}
        for task in tasks:
            meta = task.get("metadata") or {}
            key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            refusal = owner_refusal(task, await self._taskspec(task, taskspecs))
            if refusal is None:
                self._passed.add(str(meta.get("uid")))
            else:
                refused[key] = refusal
        return refused

    async def _taskspec(self, task: Mapping[str, Any], cached: Mapping[Key, Json]) -> Json | None:
        ns = str((task.get("metadata") or {}).get("namespace", ""))
        name = str((task.get("spec") or {}).get("taskSpecName", ""))
        found = cached.get((ns, name))
        if found is not None:
            return found
        # the TaskSpec's watch event may simply not have arrived yet: ask
        try:
            return await self.kube.get(TASKSPECS, name, ns)
        except NotFound:
            return None
