"""Which rule a rack's Task runs, and why.

Strongest first: the TaskSpec's explicit ruleRef; OperationRules for the
operation whose rackSelector matches the rack's labels (highest priority, ties
by name); the OperationRule marked isDefault for the operation; the built-in
rule. An explicit ruleRef that cannot be used is an error, never a silent
fallback: the person asked for that rule. Invalid candidates are otherwise
skipped, so one broken rule cannot stop every rack.

Pure: the caller turns OperationRule objects into `RuleCandidate`s."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nicoflow.domain.default_rules import builtin_rule, builtin_rule_name
from nicoflow.domain.rules import RuleDefinition, RuleSource
from nicoflow.domain.targets import match_labels
from nicoflow.domain.types import OperationCode


@dataclass(frozen=True)
class RuleCandidate:
    """One OperationRule as selection sees it.

    `valid` is False when its definition failed a check (`problem` says which);
    `rack_selector` is the wire (camelCase) LabelSelector or None."""

    name: str
    operation: OperationCode
    is_default: bool = False
    priority: int = 0
    rack_selector: Mapping[str, Any] | None = None
    definition: RuleDefinition | None = None
    valid: bool = True
    problem: str = ""


@dataclass(frozen=True)
class RuleChoice:
    name: str
    source: RuleSource
    reason: str
    definition: RuleDefinition


@dataclass(frozen=True)
class RuleChoiceError:
    """The explicit ruleRef cannot be used; `message` says why, for people."""

    rule_ref: str
    message: str


def _labels_text(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(labels.items())) + "}"


def _selector_keys(selector: Mapping[str, Any]) -> set[str]:
    keys = set((selector.get("matchLabels") or selector.get("match_labels") or {}).keys())
    for expr in selector.get("matchExpressions") or selector.get("match_expressions") or []:
        if isinstance(expr, Mapping) and expr.get("key"):
            keys.add(str(expr["key"]))
    return keys


def _selects(candidate: RuleCandidate, rack_labels: Mapping[str, str]) -> bool:
    if candidate.rack_selector is None:
        return False
    try:
        return match_labels(candidate.rack_selector, rack_labels)
    except ValueError:
        # A malformed selector selects nothing; the rule's Valid condition reports it.
        return False


def _explicit(
    code: OperationCode, rule_ref: str, candidates: Sequence[RuleCandidate]
) -> RuleChoice | RuleChoiceError:
    found = [c for c in candidates if c.name == rule_ref]
    if not found:
        return RuleChoiceError(
            rule_ref, f"OperationRule {rule_ref} named by ruleRef does not exist"
        )
    rule = found[0]
    if rule.operation != code:
        return RuleChoiceError(
            rule_ref,
            f"OperationRule {rule_ref} named by ruleRef is for "
            f"{OperationCode(rule.operation).value}, not {code.value}",
        )
    if not rule.valid or rule.definition is None:
        problem = rule.problem or "it has no definition"
        return RuleChoiceError(
            rule_ref, f"OperationRule {rule_ref} named by ruleRef is not valid: {problem}"
        )
    return RuleChoice(
        rule.name,
        RuleSource.EXPLICIT,
        f"rule {rule.name} was named by the TaskSpec's ruleRef",
        rule.definition,
    )


def select_rule(
    code: OperationCode | str,
    rack_labels: Mapping[str, str],
    rule_ref: str | None,
    candidates: Sequence[RuleCandidate],
) -> RuleChoice | RuleChoiceError:
    """The rule for operation `code` on a rack with `rack_labels`."""
    code = OperationCode(code)
    if rule_ref:
        return _explicit(code, rule_ref, candidates)

    # (candidate, definition) pairs: the definition is known to be present from here on.
    usable = [
        (c, c.definition)
        for c in candidates
        if c.operation == code and c.valid and c.definition is not None
    ]

    matching = sorted(
        (p for p in usable if _selects(p[0], rack_labels)),
        key=lambda p: (-p[0].priority, p[0].name),
    )
    if matching:
        best, definition = matching[0]
        keys = _selector_keys(best.rack_selector or {})
        shown = {k: v for k, v in rack_labels.items() if k in keys}
        reason = (
            f"rule {best.name} matched rack labels {_labels_text(shown)} "
            f"with priority {best.priority}"
        )
        others = [c.name for c, _ in matching[1:]]
        if others:
            reason += f"; it outranks the other matching rules: {', '.join(others)}"
        return RuleChoice(best.name, RuleSource.SELECTOR, reason, definition)

    defaults = sorted((p for p in usable if p[0].is_default), key=lambda p: p[0].name)
    if defaults:
        first, definition = defaults[0]
        reason = f"rule {first.name} is the default rule for {code.value}"
        if len(defaults) > 1:
            names = ", ".join(c.name for c, _ in defaults)
            reason += (
                f"; {len(defaults)} rules are marked default ({names}), "
                f"so the first by name is used"
            )
        return RuleChoice(first.name, RuleSource.DEFAULT, reason, definition)

    return RuleChoice(
        builtin_rule_name(code),
        RuleSource.BUILTIN,
        f"no OperationRule for {code.value} matches the rack or is marked default; "
        "using the built-in rule",
        builtin_rule(code),
    )
