"""The leak response decision, as a table of situations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nicoflow.domain.leaks import (
    MAX_ROUNDS,
    SETTLE,
    LeakAction,
    PowerOffRound,
    RoundOutcome,
    decide,
)
from nicoflow.domain.types import PowerState

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ON, OFF, UNKNOWN = PowerState.ON, PowerState.OFF, PowerState.UNKNOWN
OK, FAIL, STOP, OPEN = (
    RoundOutcome.SUCCEEDED,
    RoundOutcome.FAILED,
    RoundOutcome.CANCELLED,
    RoundOutcome.UNFINISHED,
)


def r(n: int, outcome: RoundOutcome = OPEN, finished: datetime | None = None) -> PowerOffRound:
    return PowerOffRound(n, outcome, finished)


LATER = T0 + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("rounds", "power", "observed_from", "action", "round_"),
    [
        # a new leak: one power-off, whatever the power state says
        ([], ON, T0, LeakAction.FIRST, 0),
        ([], OFF, T0, LeakAction.FIRST, 0),
        ([], UNKNOWN, T0, LeakAction.FIRST, 0),
        # round 0 asked for, not finished: every later pass waits
        ([r(0)], ON, LATER, LeakAction.WAIT, None),
        # finished, and the tray stays dark
        ([r(0, OK, T0)], OFF, LATER, LeakAction.NONE, None),
        ([r(0, OK, T0)], UNKNOWN, LATER, LeakAction.NONE, None),
        # on again after the power-off finished: exactly one more round
        ([r(0, OK, T0)], ON, LATER, LeakAction.REPOWERED, 1),
        ([r(0, OK, T0), r(1)], ON, LATER, LeakAction.WAIT, None),
        ([r(0, OK, T0), r(1, OK, T0)], ON, LATER, LeakAction.REPOWERED, 2),
        # an observation that began before the finish (within its whole second) says nothing
        ([r(0, OK, T0)], ON, T0 - timedelta(seconds=30), LeakAction.NONE, None),
        ([r(0, OK, T0)], ON, T0 + SETTLE - timedelta(microseconds=1), LeakAction.NONE, None),
        ([r(0, OK, T0)], ON, T0 + SETTLE, LeakAction.REPOWERED, 1),
        # the power-off failed and the tray is still on: try again
        ([r(0, FAIL, T0)], ON, LATER, LeakAction.STILL_ON, 1),
        ([r(0, FAIL, T0)], OFF, LATER, LeakAction.NONE, None),
        # a person cancelled: theirs from now on, even if it is on
        ([r(0, STOP, T0)], ON, LATER, LeakAction.HELD, None),
        ([r(0, OK, T0), r(1, STOP, None)], ON, LATER, LeakAction.HELD, None),
        # finished without a finish time cannot be ordered: wait
        ([r(0, OK, None)], ON, LATER, LeakAction.WAIT, None),
        # the latest round decides, in whatever order rounds are given
        ([r(1, OK, T0), r(0, FAIL, T0)], ON, LATER, LeakAction.REPOWERED, 2),
    ],
)
def test_decision_table(
    rounds: list[PowerOffRound],
    power: PowerState,
    observed_from: datetime,
    action: LeakAction,
    round_: int | None,
) -> None:
    decision = decide(rounds, power, observed_from)
    assert (decision.action, decision.round) == (action, round_)
    assert decision.request is (round_ is not None)
    assert decision.reason


def test_gives_up_after_max_rounds() -> None:
    rounds = [r(n, OK, T0) for n in range(MAX_ROUNDS)]
    assert decide(rounds[:-1], ON, LATER).round == MAX_ROUNDS - 1
    decision = decide(rounds, ON, LATER)
    assert decision.action is LeakAction.EXHAUSTED
    assert decision.round is None
    assert f"{MAX_ROUNDS} forced power-offs" in decision.reason
    assert decide([r(0, OK, T0)], ON, LATER, max_rounds=1).action is LeakAction.EXHAUSTED


def test_one_leak_seen_many_times_asks_once_then_once_more_when_repowered() -> None:
    """A run of passes: the requests a syncer would make, pass by pass."""
    rounds: list[PowerOffRound] = []
    requests = []
    passes = [
        (T0, ON),  # leak seen: round 0
        (T0 + timedelta(minutes=1), ON),  # round 0 still running
        (T0 + timedelta(minutes=3), OFF),  # finished at +2 min; dark
        (T0 + timedelta(minutes=4), OFF),
        (T0 + timedelta(minutes=5), ON),  # someone powered it on: round 1
        (T0 + timedelta(minutes=6), ON),  # round 1 running
        (T0 + timedelta(minutes=8), OFF),  # finished at +7 min
    ]
    finish = {0: T0 + timedelta(minutes=2), 1: T0 + timedelta(minutes=7)}
    for at, power in passes:
        # rounds finish (as the operator would record) once their time has come
        rounds = [
            PowerOffRound(x.number, OK, finish[x.number])
            if finish[x.number] <= at
            else PowerOffRound(x.number)
            for x in rounds
        ]
        decision = decide(rounds, power, at)
        if decision.round is not None:
            requests.append((at, decision.action, decision.round))
            rounds.append(PowerOffRound(decision.round))
    assert requests == [
        (T0, LeakAction.FIRST, 0),
        (T0 + timedelta(minutes=5), LeakAction.REPOWERED, 1),
    ]
