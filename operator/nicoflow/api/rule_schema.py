"""CEL rules for the rule-definition models.

The models live in the domain layer and know nothing of Kubernetes; crdgen
attaches these rules to their schemas, by class name, wherever a definition
is embedded (OperationRule.spec.definition, Task.spec.rule.definition). The
same checks run in Python when the models validate, so a client gets the same
message either way."""

from __future__ import annotations

from typing import Any

from nicoflow.api.common import cel, validations
from nicoflow.domain.rules import POLLING_ACTIONS, POWER_CODES


def _quoted(values: Any) -> str:
    return ", ".join(f"'{v}'" for v in values)


_POLLING = _quoted(sorted(a.value for a in POLLING_ACTIONS))
_POWER_CODES = _quoted(c.value for c in POWER_CODES)


def _names_operation(action: str) -> str:
    return (
        f"({action}.name != 'PowerControl' || "
        f"(has({action}.parameters) && has({action}.parameters.operation)))"
    )


SCHEMA_EXTRAS: dict[str, dict[str, Any]] = {
    "ActionConfig": validations(
        cel(
            "self.name != 'Sleep' || (has(self.parameters) && has(self.parameters.duration))",
            "Sleep needs parameters.duration, e.g. duration: 10s",
        ),
        cel(
            "self.name != 'VerifyPowerStatus' || "
            "(has(self.parameters) && has(self.parameters.expectedStatus))",
            "VerifyPowerStatus needs parameters.expectedStatus: on or off",
        ),
        cel(
            "self.name != 'VerifyReachability' || (has(self.parameters) && "
            "has(self.parameters.componentTypes) && size(self.parameters.componentTypes) > 0)",
            "VerifyReachability needs parameters.componentTypes, e.g. [compute, nvswitch]",
        ),
        cel(
            f"!has(self.pollInterval) || self.name in [{_POLLING}]",
            f"pollInterval applies only to the polling actions {_POLLING.replace(chr(39), '')}",
            field_path=".pollInterval",
        ),
        cel(
            "!has(self.parameters) || !has(self.parameters.forceAfter) || "
            "(self.name == 'PowerControl' && (!has(self.parameters.operation) || "
            "self.parameters.operation == 'power_off'))",
            "parameters.forceAfter escalates a graceful power_off and is only valid on a "
            "PowerControl action sending power_off",
        ),
    ),
    "RuleDefinition": validations(
        cel(
            "self.steps.all(s, self.steps.exists_one(t, "
            "t.stage == s.stage && t.componentType == s.componentType))",
            "each component type may have only one step per stage (steps of one stage run in "
            "parallel)",
            field_path=".steps",
        ),
    ),
}


def _power_actions_name_operation(definition: str) -> str:
    step = (
        f"{_names_operation('s.mainOperation')} && "
        f"s.preOperation.all(a, {_names_operation('a')}) && "
        f"s.postOperation.all(a, {_names_operation('a')})"
    )
    return f"{definition}.steps.all(s, {step})"


def operation_needs_explicit_power_ops(code_expr: str) -> str:
    """CEL: in a rule for a non-power operation every PowerControl names its operation."""
    return f"{code_expr} in [{_POWER_CODES}] || {_power_actions_name_operation('self.definition')}"
