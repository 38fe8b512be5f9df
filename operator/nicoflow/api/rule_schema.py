"""CEL rules for the rule-definition models.

The models live in the domain layer and know nothing of Kubernetes; crdgen
attaches these rules to their schemas, by class name, wherever a definition
is embedded (OperationRule.spec.definition, Task.spec.rule.definition). The
same checks run in Python when the models validate, so a client gets the same
message either way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic.alias_generators import to_camel

from nicoflow.api.common import cel, validations
from nicoflow.domain.rules import (
    ACTION_DEFAULTS,
    ACTION_PARAMETERS,
    CYCLES,
    POLLING_ACTIONS,
    POWER_CODES,
    ActionName,
)
from nicoflow.domain.types import OperationCode, OperationType


def _quoted(values: Any) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _either(values: Any) -> str:
    *head, last = [str(v) for v in values]
    return f"{', '.join(head)} or {last}" if head else last


_POLLING_NAMES = sorted(a.value for a in POLLING_ACTIONS)
_POLLING = _quoted(_POLLING_NAMES)
_POWER_CODES = _quoted(c.value for c in POWER_CODES)
_FIRMWARE_CODES = _either(
    c.value for c in OperationCode if c.operation_type is OperationType.FIRMWARE_CONTROL
)

# A duration matching DURATION_PATTERN is zero exactly when it has no digit
# 1-9 ("0", "0s", "0.0m", "0h0m"); a regex keeps CEL away from duration(),
# which fails at runtime on values past Go's ~292-year limit.
_NONZERO = "matches('[1-9]')"


def _defaults(index: int) -> str:
    """CEL map literal: polling action name -> its default timeout (0) or pollInterval (1)."""
    pairs = (f"'{a}': '{ACTION_DEFAULTS[ActionName(a)][index]}'" for a in _POLLING_NAMES)
    return "{" + ", ".join(pairs) + "}[self.name]"


def _defaults_text() -> str:
    by_values: dict[tuple[str | None, str | None], list[str]] = {}
    for name in _POLLING_NAMES:
        by_values.setdefault(ACTION_DEFAULTS[ActionName(name)], []).append(name)
    return ", ".join(
        f"{' and '.join(names)} {timeout}/{interval}"
        for (timeout, interval), names in by_values.items()
    )


# Effective timeout and poll interval of a polling action, as ActionConfig
# computes them: explicit value, then FirmwareControl's pollTimeout, then the
# action's default. duration() cannot parse values past Go's ~292-year limit,
# so such a rule is refused here (an evaluation error, still a 422) although
# the model would read it.
_POLL_TIMEOUT = "(has(self.parameters) && has(self.parameters.pollTimeout))"
_TIMEOUT = (
    f"(has(self.timeout) ? self.timeout : {_POLL_TIMEOUT} ? self.parameters.pollTimeout : "
    f"{_defaults(0)})"
)
_INTERVAL = f"(has(self.pollInterval) ? self.pollInterval : {_defaults(1)})"
_INTERVAL_WITHIN_TIMEOUT = (
    f"!(self.name in [{_POLLING}]) || "
    f"!(has(self.pollInterval) || has(self.timeout) || {_POLL_TIMEOUT}) || "
    f"duration({_INTERVAL}) <= duration({_TIMEOUT})"
)


def _takers() -> dict[str, list[str]]:
    """camelCase parameter -> the actions that read it."""
    takers: dict[str, list[str]] = {}
    for action in ActionName:
        for param in sorted(ACTION_PARAMETERS[action]):
            takers.setdefault(to_camel(param), []).append(action.value)
    return takers


def _parameter_rules() -> list[dict[str, Any]]:
    # forceAfter has its own, more specific rule below
    return [
        cel(
            f"!has(self.parameters) || !has(self.parameters.{param}) || "
            f"self.name in [{_quoted(actions)}]",
            f"parameters.{param} applies only to {' and '.join(actions)}: remove it",
            field_path=f".parameters.{param}",
        )
        for param, actions in sorted(_takers().items())
        if param != "forceAfter"
    ]


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
            "self.name != 'Sleep' || !has(self.timeout)",
            "Sleep takes parameters.duration, not timeout: remove timeout",
            field_path=".timeout",
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
        *_parameter_rules(),
        cel(
            f"!has(self.timeout) || self.timeout.{_NONZERO}",
            "timeout must be greater than 0: give a duration such as 5m, or leave timeout out "
            "for the action's default",
            field_path=".timeout",
        ),
        cel(
            f"has(self.timeout) || !{_POLL_TIMEOUT} || self.parameters.pollTimeout.{_NONZERO}",
            "parameters.pollTimeout is the action's timeout and must be greater than 0: give a "
            "duration such as 30m, or leave it out for the default",
            field_path=".parameters.pollTimeout",
        ),
        cel(
            f"!has(self.pollInterval) || self.pollInterval.{_NONZERO}",
            "pollInterval must be greater than 0: give a duration such as 10s, or leave "
            "pollInterval out for the action's default",
            field_path=".pollInterval",
        ),
        cel(
            _INTERVAL_WITHIN_TIMEOUT,
            "pollInterval is longer than the action's timeout: shorten pollInterval or lengthen "
            "timeout (defaults, timeout/pollInterval: "
            f"{_defaults_text()})",
        ),
    ),
    "RetryPolicy": validations(
        cel(
            f"self.initialInterval.{_NONZERO}",
            "retry.initialInterval must be greater than 0, e.g. 1s",
            field_path=".initialInterval",
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


def _every_action(check: Callable[[str], str]) -> str:
    """CEL: `check(action)` holds for every action of every step of self.definition.
    preOperation and postOperation have no schema default, so they may be absent."""
    return (
        f"self.definition.steps.all(s, {check('s.mainOperation')} && "
        f"(!has(s.preOperation) || s.preOperation.all(a, {check('a')})) && "
        f"(!has(s.postOperation) || s.postOperation.all(a, {check('a')})))"
    )


def _not_firmware(action: str) -> str:
    return f"{action}.name != '{ActionName.FIRMWARE_CONTROL.value}'"


def _force_after_names_operation(action: str) -> str:
    return (
        f"({action}.name != 'PowerControl' || !has({action}.parameters) || "
        f"!has({action}.parameters.forceAfter) || has({action}.parameters.operation))"
    )


def operation_needs_explicit_power_ops(code_expr: str) -> str:
    """CEL: in a rule for a non-power operation every PowerControl names its operation."""
    return f"{code_expr} in [{_POWER_CODES}] || {_every_action(_names_operation)}"


def power_rule_has_no_firmware(code_expr: str) -> str:
    """CEL: a rule for a power operation has no FirmwareControl action."""
    return f"!({code_expr} in [{_POWER_CODES}]) || {_every_action(_not_firmware)}"


def inherited_power_op_allows_force_after(code_expr: str) -> str:
    """CEL: forceAfter on a PowerControl that sends the rule's own operation only when that
    operation is power_off (the model's rule_problems_for_operation)."""
    return (
        f"{code_expr} == '{OperationCode.POWER_OFF.value}' || "
        f"{_every_action(_force_after_names_operation)}"
    )


_CYCLE_CODES = _quoted(sorted(c.value for c in CYCLES))


def _cycle(action: str, code_expr: str) -> str:
    """CEL: `action` restarts or resets (naming it, or inheriting the rule's own operation)."""
    return (
        f"({action}.name == 'PowerControl' && ((has({action}.parameters) && "
        f"has({action}.parameters.operation)) ? {action}.parameters.operation in "
        f"[{_CYCLE_CODES}] : {code_expr} in [{_CYCLE_CODES}]))"
    )


def _any_action(step: str, check: Callable[[str], str]) -> str:
    return (
        f"({check(f'{step}.mainOperation')} || "
        f"(has({step}.preOperation) && {step}.preOperation.exists(a, {check('a')})) || "
        f"(has({step}.postOperation) && {step}.postOperation.exists(a, {check('a')})))"
    )


def cycles_verified(code_expr: str) -> str:
    """CEL twin of the model's check (domain.rules._unverified_cycles): a step that
    restarts or resets has a VerifyPowerStatus post-operation when a later stage
    sends a power command to its type (to any type, after the power shelves)."""
    cycle = _any_action("s", lambda a: _cycle(a, code_expr))
    verified = "(has(s.postOperation) && s.postOperation.exists(a, a.name == 'VerifyPowerStatus'))"
    power = _any_action("t", lambda a: f"{a}.name == 'PowerControl'")
    later = (
        "self.definition.steps.exists(t, t.stage > s.stage && "
        f"(t.componentType == s.componentType || s.componentType == 'powershelf') && {power})"
    )
    return f"self.definition.steps.all(s, !{cycle} || {verified} || !{later})"


CYCLES_VERIFIED_MESSAGE = (
    "a restart or reset (restart, force_restart, warm_reset, cold_reset) needs a "
    "VerifyPowerStatus (expectedStatus: on) in its step's postOperation when a later stage "
    "sends a power command to the same component type (to any type, after the power shelves): "
    "otherwise the cycle's power-on could land after that command and undo it"
)


FIRMWARE_IN_POWER_RULE_MESSAGE = (
    "FirmwareControl updates firmware and does not belong in a power operation rule: remove it, "
    f"or put it in a rule for {_FIRMWARE_CODES}"
)
INHERITED_FORCE_AFTER_MESSAGE = (
    "a PowerControl action without parameters.operation sends the rule's own operation, and "
    "parameters.forceAfter only escalates power_off: set parameters.operation: power_off or "
    "remove forceAfter"
)
