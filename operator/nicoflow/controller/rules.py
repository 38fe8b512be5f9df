"""OperationRules: validated once per change, kept in memory for rule selection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from nicoflow.api.operation_rule import OperationRuleSpec
from nicoflow.controller.conditions import condition
from nicoflow.domain.rule_selection import RuleCandidate
from nicoflow.domain.rules import describe_validation_error
from nicoflow.domain.types import OperationCode


class RuleCache:
    def __init__(self) -> None:
        self._rules: dict[str, RuleCandidate] = {}

    def candidates(self) -> list[RuleCandidate]:
        return list(self._rules.values())

    def observe(self, event_type: str | None, body: dict[str, Any]) -> RuleCandidate | None:
        name = body["metadata"]["name"]
        if event_type == "DELETED" or body["metadata"].get("deletionTimestamp"):
            self._rules.pop(name, None)
            return None
        candidate = candidate_of(body)
        self._rules[name] = candidate
        return candidate

    def default_conflict(self, candidate: RuleCandidate) -> str | None:
        """Another default rule for the same operation that was there first."""
        if not candidate.is_default:
            return None
        others = sorted(
            c.name
            for c in self._rules.values()
            if c.is_default and c.operation is candidate.operation and c.name != candidate.name
        )
        first = [n for n in others if n < candidate.name]
        return first[0] if first else None


def candidate_of(body: dict[str, Any]) -> RuleCandidate:
    name = body["metadata"]["name"]
    raw = body.get("spec") or {}
    try:
        spec = OperationRuleSpec.model_validate(raw)
    except ValidationError as exc:
        problem = "; ".join(describe_validation_error(exc))
        try:
            operation = OperationCode(str(raw.get("operation")))
        except ValueError:
            operation = OperationCode.POWER_ON
        return RuleCandidate(name=name, operation=operation, valid=False, problem=problem)
    return RuleCandidate(
        name=name,
        operation=spec.operation,
        is_default=spec.is_default,
        priority=spec.priority,
        rack_selector=spec.rack_selector.to_k8s() if spec.rack_selector else None,
        definition=spec.definition,
    )


def rule_status(
    body: dict[str, Any], candidate: RuleCandidate, shadowed_by: str | None
) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    generation = body["metadata"].get("generation")

    def cond(ctype: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return condition(
            body.get("status"), ctype, status, reason, message, now=now, generation=generation
        )

    if not candidate.valid:
        conditions = [
            cond("Valid", "False", "InvalidDefinition", candidate.problem),
            cond("Accepted", "False", "InvalidDefinition", "the rule is not used until fixed"),
        ]
    elif shadowed_by:
        conditions = [
            cond("Valid", "True", "DefinitionValid", ""),
            cond(
                "Accepted",
                "False",
                "DuplicateDefault",
                f"OperationRule {shadowed_by} is already the default for "
                f"{candidate.operation.value}; set isDefault: false on one of them",
            ),
        ]
    else:
        conditions = [
            cond("Valid", "True", "DefinitionValid", ""),
            cond("Accepted", "True", "InUse", "the rule is used for matching Tasks"),
        ]
    return {
        "observedGeneration": generation,
        "operationType": candidate.operation.operation_type.value,
        "conditions": conditions,
    }
