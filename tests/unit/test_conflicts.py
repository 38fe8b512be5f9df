from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nicoflow.domain.conflicts import (
    Footprint,
    Queue,
    Reject,
    Start,
    Waiting,
    admit,
    conflict,
    promotable,
)
from nicoflow.domain.types import ComponentType, ConflictStrategy, OperationType

P, F, B = OperationType.POWER_CONTROL, OperationType.FIRMWARE_CONTROL, OperationType.BRING_UP
C, NVS, PS = ComponentType.COMPUTE, ComponentType.NVSWITCH, ComponentType.POWERSHELF
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fp(name: str, op: OperationType, *comps: tuple[ComponentType, str]) -> Footprint:
    return Footprint(name, op, frozenset(comps))


@pytest.mark.parametrize(
    ("a", "b", "conflicts"),
    [
        # power shelves take the whole rack for power and firmware work
        (fp("a", P, (PS, "ps1")), fp("b", P, (C, "c1")), True),
        (fp("a", P, (PS, "ps1")), fp("b", F, (NVS, "s1")), True),
        (fp("a", F, (NVS, "s1")), fp("b", P, (PS, "ps1")), True),  # symmetric
        # compute and switch power only where components overlap
        (fp("a", P, (C, "c1")), fp("b", P, (C, "c2")), False),
        (fp("a", P, (C, "c1")), fp("b", P, (C, "c1")), True),
        (fp("a", P, (NVS, "s1")), fp("b", P, (NVS, "s1")), True),
        (fp("a", P, (C, "c1")), fp("b", P, (NVS, "s1")), False),
        (fp("a", P, (C, "c1")), fp("b", F, (C, "c1")), True),
        (fp("a", P, (C, "c1")), fp("b", F, (C, "c9")), False),
        (fp("a", F, (C, "c1")), fp("b", F, (C, "c1")), True),
        (fp("a", F, (C, "c1")), fp("b", F, (NVS, "s1")), False),
        # bring-up takes the rack against anything
        (fp("a", B, (C, "c1")), fp("b", F, (NVS, "s1")), True),
        (fp("a", P, (C, "c1")), fp("b", B, (NVS, "s1")), True),
    ],
)
def test_conflict_table(a: Footprint, b: Footprint, conflicts: bool) -> None:
    assert (conflict(a, b) is not None) is conflicts
    assert (conflict(b, a) is not None) is conflicts


def test_reject_names_the_running_task() -> None:
    running = [fp("restart-r1", P, (PS, "ps1"))]
    decision = admit(fp("new", P, (C, "c1")), ConflictStrategy.REJECT, running, [])
    assert isinstance(decision, Reject)
    assert "restart-r1" in decision.reason


def test_queue_until_full() -> None:
    running = [fp("busy", B, (C, "c1"))]
    waiting = [
        Waiting(fp(f"w{i}", P, (C, "c1")), T0 + timedelta(seconds=i), T0 + timedelta(hours=1))
        for i in range(4)
    ]
    decision = admit(fp("fifth", P, (C, "c1")), ConflictStrategy.QUEUE, running, waiting)
    assert decision == Queue(position=5, behind="busy")
    full = [*waiting, Waiting(fp("w4", P, (C, "c1")), T0, T0 + timedelta(hours=1))]
    decision = admit(fp("sixth", P, (C, "c1")), ConflictStrategy.QUEUE, running, full)
    assert isinstance(decision, Reject)
    assert "5/5" in decision.reason


def test_no_queue_jumping_over_a_conflicting_waiter() -> None:
    waiting = [Waiting(fp("older", P, (C, "c1")), T0, T0 + timedelta(hours=1))]
    decision = admit(fp("newer", P, (C, "c1")), ConflictStrategy.QUEUE, [], waiting)
    assert decision == Queue(position=2, behind="older")
    assert admit(fp("other", P, (C, "c7")), ConflictStrategy.QUEUE, [], waiting) == Start()


def test_promotion_is_strict_fifo_and_expires() -> None:
    running = [fp("run", P, (C, "c1"))]
    waiting = [
        Waiting(fp("w1", P, (C, "c1")), T0, T0 + timedelta(hours=1)),  # blocked by run
        Waiting(fp("w2", P, (C, "c2")), T0 + timedelta(seconds=1), T0 + timedelta(hours=1)),
        Waiting(fp("old", P, (C, "c3")), T0 - timedelta(hours=2), T0 - timedelta(hours=1)),
    ]
    start, expired = promotable(running, waiting, T0 + timedelta(minutes=1))
    assert expired == ["old"]
    assert start == []  # w2 may not overtake w1
    start, _ = promotable([], waiting, T0 + timedelta(minutes=1))
    assert start == ["w1", "w2"]
