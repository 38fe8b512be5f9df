"""Batch rule files for `flow rule create --from-yaml` (the original CLI's format):

    version: v1
    rules:
      - name: staggered-power-on
        description: shelves, then switches, then compute
        operation_type: power_control
        operation: power_on
        is_default: false          # optional
        steps: [ {component_type: powershelf, stage: 1, main_operation: {...}}, ... ]

Every rule is checked here before anything is sent, with the same rule model
the operator runs, so a dry run finds the mistakes a real run would."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.rules import RuleError, parse_rule_definition, validate_rule_for_operation
from nicoflow.domain.types import OperationCode, OperationType

# The API can only create power and firmware rules (its enum has no bring_up).
API_OPERATION_TYPES: dict[OperationType, pb.OperationType.ValueType] = {
    OperationType.POWER_CONTROL: pb.OPERATION_TYPE_POWER_CONTROL,
    OperationType.FIRMWARE_CONTROL: pb.OPERATION_TYPE_FIRMWARE_CONTROL,
}
OPERATION_TYPE_NAMES = {n: t for t, n in API_OPERATION_TYPES.items()}


@dataclass(frozen=True)
class RuleRequest:
    name: str
    description: str
    operation_type: OperationType
    operation: OperationCode
    definition_json: str
    is_default: bool = False

    @property
    def type_number(self) -> pb.OperationType.ValueType:
        return API_OPERATION_TYPES[self.operation_type]


@dataclass(frozen=True)
class RuleProblem:
    index: int
    name: str
    problems: tuple[str, ...]

    def __str__(self) -> str:
        label = f"rules[{self.index}]" + (f" ({self.name})" if self.name else "")
        return f"{label}: " + "; ".join(self.problems)


class RuleFileError(ValueError):
    """The file as a whole is unusable (not YAML, wrong version, no rules)."""


def parse_operation(type_text: str, code_text: str) -> tuple[OperationType, OperationCode]:
    """Operation type and code that the API accepts together; ValueError otherwise."""
    try:
        otype = OperationType(type_text.strip().lower())
    except ValueError:
        raise ValueError(
            f"operation_type {type_text!r} is unknown; use power_control or firmware_control"
        ) from None
    if otype not in API_OPERATION_TYPES:
        raise ValueError(f"{otype.value} rules cannot be created through the API")
    try:
        code = OperationCode(code_text.strip().lower())
    except ValueError:
        raise ValueError(f"operation {code_text!r} is unknown") from None
    if code.operation_type is not otype:
        valid = ", ".join(c.value for c in OperationCode if c.operation_type is otype)
        raise ValueError(f"operation {code.value} is not a {otype.value} operation ({valid})")
    return otype, code


def rule_request(
    *,
    name: str,
    description: str,
    operation_type: str,
    operation: str,
    definition: Mapping[str, Any] | str,
    is_default: bool = False,
) -> RuleRequest:
    """One rule, checked; RuleError with every problem found."""
    problems: list[str] = []
    if not name.strip():
        problems.append("name is required")
    elif len(name) > 128:
        problems.append(f"name is {len(name)} characters long; at most 128 allowed")
    parsed: tuple[OperationType, OperationCode] | None = None
    try:
        parsed = parse_operation(operation_type, operation)
    except ValueError as exc:
        problems.append(str(exc))
    try:
        rule = parse_rule_definition(definition)
        if parsed is not None:
            validate_rule_for_operation(rule, parsed[1])
    except RuleError as exc:
        problems.extend(exc.problems)
    if problems or parsed is None:
        raise RuleError(problems)
    return RuleRequest(
        name=name,
        description=description,
        operation_type=parsed[0],
        operation=parsed[1],
        definition_json=rule.to_json(),
        is_default=is_default,
    )


def parse_rule_file(text: str) -> tuple[list[RuleRequest], list[RuleProblem]]:
    """Valid rules and the problems of the others, in file order."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleFileError(f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise RuleFileError("expected a mapping with 'version' and 'rules'")
    version = str(doc.get("version", "v1"))
    if version != "v1":
        raise RuleFileError(f"version {version!r} is not supported; use v1")
    items = doc.get("rules")
    if not isinstance(items, list) or not items:
        raise RuleFileError("'rules' must be a non-empty list")
    good: list[RuleRequest] = []
    bad: list[RuleProblem] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            bad.append(RuleProblem(i, "", ("expected a mapping",)))
            continue
        name = str(item.get("name") or "")
        if name and name in seen:
            bad.append(RuleProblem(i, name, ("the name is used twice in this file",)))
            continue
        seen.add(name)
        definition = {"version": "v1", "steps": item.get("steps") or []}
        try:
            good.append(
                rule_request(
                    name=name,
                    description=str(item.get("description") or ""),
                    operation_type=str(item.get("operation_type") or ""),
                    operation=str(item.get("operation") or item.get("operation_code") or ""),
                    definition=definition,
                    is_default=bool(item.get("is_default", False)),
                )
            )
        except RuleError as exc:
            bad.append(RuleProblem(i, name, tuple(exc.problems)))
    return good, bad
