"""RackAccessPolicy decisions (nicoflow.domain.tenancy), as a table."""

from __future__ import annotations

import pytest

from nicoflow.domain.tenancy import Grant, OperationGrant, decide, grant_for, grant_from
from nicoflow.domain.types import OperationCode

POWER = frozenset({OperationGrant.POWER})
RACKS = [("a01", {"row": "a"}), ("a02", {"row": "a"}), ("b01", {"row": "b"})]
PLATFORM = ("nico-flow",)

TEAM_A = Grant(
    "team-a",
    POWER,
    namespace_selector={"matchLabels": {"team": "a"}},
    rack_selector={"matchLabels": {"row": "a"}},
)
B01 = Grant(
    "b01-fw",
    frozenset({OperationGrant.FIRMWARE}),
    namespaces=frozenset({"fw"}),
    racks=frozenset({"b01"}),
)
EVERYTHING = Grant(
    "ops",
    frozenset(OperationGrant),
    namespaces=frozenset({"ops"}),
    rack_selector={},
)


@pytest.mark.parametrize(
    ("namespace", "labels", "operation", "racks", "grants", "denied"),
    [
        # no policy at all: the platform namespace only
        ("nico-flow", {}, OperationCode.POWER_OFF, RACKS, [], []),
        ("team-a", {"team": "a"}, OperationCode.POWER_OFF, RACKS, [], ["a01", "a02", "b01"]),
        # a grant by namespace label and rack label
        ("t1", {"team": "a"}, OperationCode.POWER_OFF, RACKS[:2], [TEAM_A], []),
        ("t1", {"team": "a"}, OperationCode.RESTART, RACKS, [TEAM_A], ["b01"]),
        ("t1", {"team": "b"}, OperationCode.POWER_ON, RACKS[:1], [TEAM_A], ["a01"]),
        # power is not firmware
        ("t1", {"team": "a"}, OperationCode.UPGRADE, RACKS[:1], [TEAM_A], ["a01"]),
        # grants add up
        ("fw", {}, OperationCode.UPGRADE, RACKS[2:], [TEAM_A, B01], []),
        ("fw", {}, OperationCode.POWER_OFF, RACKS[2:], [TEAM_A, B01], ["b01"]),
        # {} selects every rack; ingest is its own grant
        ("ops", {}, OperationCode.INGEST, RACKS, [EVERYTHING], []),
        ("fw", {}, OperationCode.INGEST, RACKS[2:], [B01], ["b01"]),
        # the platform namespace keeps its grant once policies exist
        ("nico-flow", {}, OperationCode.FORCE_POWER_OFF, RACKS, [TEAM_A], []),
    ],
)
def test_decide(
    namespace: str,
    labels: dict[str, str],
    operation: OperationCode,
    racks: list[tuple[str, dict[str, str]]],
    grants: list[Grant],
    denied: list[str],
) -> None:
    verdict = decide(namespace, labels, operation, racks, grants, PLATFORM)
    assert list(verdict.denied) == denied
    assert verdict.allowed == (not denied)
    for rack in denied:
        assert rack in verdict.message
    if denied:
        assert namespace in verdict.message
        assert operation.value in verdict.message


def test_without_the_platform_grant_policies_bind_the_platform_namespace_too() -> None:
    args = ("nico-flow", {}, OperationCode.POWER_OFF, RACKS[:1])
    assert decide(*args, [TEAM_A], PLATFORM, platform_grant=False).denied == ("a01",)
    assert decide(*args, [], PLATFORM, platform_grant=False).allowed


def test_message_lists_ten_racks_and_counts_the_rest() -> None:
    racks = [(f"r{i:02}", {}) for i in range(25)]
    verdict = decide("t", {}, OperationCode.POWER_ON, racks, [TEAM_A], PLATFORM)
    assert "r09" in verdict.message
    assert "r10" not in verdict.message
    assert "and 15 more" in verdict.message
    assert "(25 of 25 targeted)" in verdict.message


def test_operation_grants_cover_every_operation() -> None:
    assert {grant_for(op) for op in OperationCode} == set(OperationGrant)
    assert grant_for(OperationCode.COLD_RESET) is OperationGrant.POWER
    assert grant_for(OperationCode.ROLLBACK) is OperationGrant.FIRMWARE


def test_grant_from_object_ignores_unknown_operations_and_keeps_selectors() -> None:
    grant = grant_from(
        {
            "metadata": {"name": "g"},
            "spec": {
                "namespaceSelector": {},
                "racks": ["a01"],
                "operations": ["power", "teleport"],
            },
        }
    )
    assert grant.operations == POWER
    assert grant.applies_to("anything", {})
    assert grant.covers("a01", {})
    assert not grant.covers("a02", {})
    # a malformed selector never widens a grant
    near = {"matchExpressions": [{"key": "x", "operator": "Near"}]}
    bad = Grant("bad", POWER, namespaces=frozenset({"t"}), rack_selector=near)
    assert not bad.covers("a01", {"x": "1"})
