"""The Task the operator makes for a rack carries the TaskSpec's description,
so the v1 API still shows it once the Task is archived and the TaskSpec gone."""

from __future__ import annotations

from typing import Any

from nicoflow.api.task import TaskRunSpec
from nicoflow.api.task_spec import TaskSpecSpec
from nicoflow.controller.taskspecs import TaskSpecController
from nicoflow.domain.default_rules import builtin_rule
from nicoflow.domain.rule_selection import RuleChoice
from nicoflow.domain.rules import RuleSource
from nicoflow.domain.targets import InventoryComponent, InventoryRack
from nicoflow.domain.types import ComponentType, OperationCode


def _body(description: str | None) -> tuple[dict[str, Any], TaskSpecSpec]:
    spec: dict[str, Any] = {"operation": "force_power_off", "targets": {"racks": ["r1"]}}
    if description is not None:
        spec["description"] = description
    owner = {"metadata": {"name": "ts", "namespace": "ns", "uid": "u1"}, "spec": spec}
    return owner, TaskSpecSpec.model_validate(spec)


def test_the_task_carries_the_taskspec_description() -> None:
    ctl = TaskSpecController(None, None, None, None)  # type: ignore[arg-type]
    comp = InventoryComponent(
        id="c1", name="compute-01", type=ComponentType.COMPUTE, serial="s", core_id="m1"
    )
    choice = RuleChoice(
        "builtin-force_power_off",
        RuleSource.BUILTIN,
        "built in",
        builtin_rule(OperationCode.FORCE_POWER_OFF),
    )
    for description in ("drain row a", None):
        owner, spec = _body(description)
        task = ctl._task_body(owner, spec, InventoryRack(name="r1"), [comp], choice)
        assert task["spec"].get("description") == description
        TaskRunSpec.model_validate(task["spec"])
