"""Rule selection: explicit ruleRef > matching rackSelector (priority, then name) >
isDefault > built-in, with reasons a person can read."""

from __future__ import annotations

from typing import Any

import pytest

from nicoflow.domain.default_rules import builtin_rule, builtin_rule_name
from nicoflow.domain.rule_selection import (
    RuleCandidate,
    RuleChoice,
    RuleChoiceError,
    select_rule,
)
from nicoflow.domain.rules import RuleDefinition, RuleSource
from nicoflow.domain.types import OperationCode

ON, OFF = OperationCode.POWER_ON, OperationCode.POWER_OFF
LABELS = {"row": "a", "site": "dc1", "model": "gb200"}


def definition(marker: str) -> RuleDefinition:
    # A distinct, valid definition per rule so the test can tell which one was returned.
    return RuleDefinition.model_validate(
        {
            "steps": [
                {
                    "componentType": "compute",
                    "stage": 1,
                    "timeout": marker,
                    "mainOperation": {"name": "PowerControl"},
                }
            ]
        }
    )


def cand(
    name: str,
    *,
    op: OperationCode = ON,
    default: bool = False,
    priority: int = 0,
    selector: dict[str, Any] | None = None,
    valid: bool = True,
    problem: str = "",
    timeout: str = "1m",
) -> RuleCandidate:
    return RuleCandidate(
        name=name,
        operation=op,
        is_default=default,
        priority=priority,
        rack_selector=selector,
        definition=definition(timeout),
        valid=valid,
        problem=problem,
    )


ROW_A = {"matchLabels": {"row": "a"}}
ROW_B = {"matchLabels": {"row": "b"}}
SITE_DC1 = {"matchExpressions": [{"key": "site", "operator": "In", "values": ["dc1"]}]}


def choose(candidates: list[RuleCandidate], ref: str | None = None) -> RuleChoice:
    got = select_rule(ON, LABELS, ref, candidates)
    assert isinstance(got, RuleChoice), got
    return got


def test_explicit_ref_wins_over_everything() -> None:
    got = choose(
        [
            cand("sel", selector=ROW_A, priority=100),
            cand("dflt", default=True),
            cand("mine", timeout="7m"),
        ],
        ref="mine",
    )
    assert (got.name, got.source) == ("mine", RuleSource.EXPLICIT)
    assert got.definition.steps[0].timeout == "7m"
    assert got.reason == "rule mine was named by the TaskSpec's ruleRef"


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        ([cand("other")], "OperationRule mine named by ruleRef does not exist"),
        (
            [cand("mine", op=OFF), cand("dflt", default=True)],
            "OperationRule mine named by ruleRef is for power_off, not power_on",
        ),
        (
            [cand("mine", valid=False, problem="stage 1 compute: bad"), cand("dflt", default=True)],
            "OperationRule mine named by ruleRef is not valid: stage 1 compute: bad",
        ),
        (
            [RuleCandidate(name="mine", operation=ON, definition=None)],
            "OperationRule mine named by ruleRef is not valid: it has no definition",
        ),
    ],
)
def test_explicit_ref_errors_never_fall_back(candidates: list[RuleCandidate], message: str) -> None:
    got = select_rule(ON, LABELS, "mine", candidates)
    assert got == RuleChoiceError("mine", message)


def test_selector_match_beats_default() -> None:
    got = choose([cand("dflt", default=True), cand("nightly-power", selector=ROW_A, priority=10)])
    assert (got.name, got.source) == ("nightly-power", RuleSource.SELECTOR)
    assert got.reason == "rule nightly-power matched rack labels {row: a} with priority 10"


def test_highest_priority_wins_and_others_are_named() -> None:
    got = choose(
        [
            cand("low", selector=ROW_A, priority=1),
            cand("high", selector=SITE_DC1, priority=5, timeout="5m"),
            cand("nomatch", selector=ROW_B, priority=99),
        ]
    )
    assert got.name == "high"
    assert got.definition.steps[0].timeout == "5m"
    assert got.reason == (
        "rule high matched rack labels {site: dc1} with priority 5; "
        "it outranks the other matching rules: low"
    )


def test_priority_tie_broken_by_name() -> None:
    got = choose(
        [cand("zeta", selector=ROW_A, priority=3), cand("alpha", selector=SITE_DC1, priority=3)]
    )
    assert got.name == "alpha"
    # the order of the input does not matter
    got2 = choose(
        [cand("alpha", selector=SITE_DC1, priority=3), cand("zeta", selector=ROW_A, priority=3)]
    )
    assert got2.name == "alpha"


def test_selector_rules_of_other_operations_are_ignored() -> None:
    got = choose([cand("off-rule", op=OFF, selector=ROW_A, priority=9)])
    assert got.source is RuleSource.BUILTIN


def test_invalid_candidates_are_skipped_silently() -> None:
    got = choose(
        [
            cand("broken-sel", selector=ROW_A, priority=50, valid=False, problem="x"),
            cand("ok-sel", selector=ROW_A, priority=1),
        ]
    )
    assert got.name == "ok-sel"
    assert "broken" not in got.reason
    got = choose(
        [cand("broken-default", default=True, valid=False), cand("ok-default", default=True)]
    )
    assert (got.name, got.source) == ("ok-default", RuleSource.DEFAULT)
    assert "broken" not in got.reason


def test_malformed_selector_selects_nothing() -> None:
    bad = {"matchExpressions": [{"key": "row", "operator": "Near", "values": ["a"]}]}
    got = choose([cand("weird", selector=bad, priority=9), cand("dflt", default=True)])
    assert got.name == "dflt"


def test_rule_without_selector_and_not_default_is_only_used_by_ref() -> None:
    got = choose([cand("plain")])
    assert got.source is RuleSource.BUILTIN


def test_default_rule() -> None:
    got = choose([cand("dflt", default=True), cand("dflt-off", op=OFF, default=True)])
    assert (got.name, got.source) == ("dflt", RuleSource.DEFAULT)
    assert got.reason == "rule dflt is the default rule for power_on"


def test_several_defaults_take_the_first_by_name_and_say_so() -> None:
    got = choose([cand("b-default", default=True), cand("a-default", default=True, timeout="3m")])
    assert got.name == "a-default"
    assert got.definition.steps[0].timeout == "3m"
    assert got.reason == (
        "rule a-default is the default rule for power_on; 2 rules are marked default "
        "(a-default, b-default), so the first by name is used"
    )


@pytest.mark.parametrize("code", list(OperationCode))
def test_builtin_when_nothing_else(code: OperationCode) -> None:
    got = select_rule(
        code, {}, None, [cand("dflt-other", op=OFF if code != OFF else ON, default=True)]
    )
    assert isinstance(got, RuleChoice)
    assert got.source is RuleSource.BUILTIN
    assert got.name == builtin_rule_name(code)
    assert got.definition == builtin_rule(code)
    assert got.reason == (
        f"no OperationRule for {code.value} matches the rack or is marked default; "
        "using the built-in rule"
    )


def test_accepts_string_codes() -> None:
    got = select_rule("power_on", LABELS, None, [cand("dflt", default=True)])
    assert isinstance(got, RuleChoice)
    assert got.name == "dflt"


def test_empty_selector_matches_every_rack() -> None:
    got = select_rule(ON, {}, None, [cand("all", selector={}, priority=0), cand("d", default=True)])
    assert isinstance(got, RuleChoice)
    assert (got.name, got.source) == ("all", RuleSource.SELECTOR)
    assert got.reason == "rule all matched rack labels {} with priority 0"
