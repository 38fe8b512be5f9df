"""The leak response as a decision: whether a leaking component needs another
forced power-off.

An incident is one leak alert on one component, identified by the alert's
start (Core's alert time, else when Flow first saw the leak). Within an
incident the power-offs Flow requests are numbered rounds 0, 1, 2 ...:

- round 0 as soon as the leak is seen, whatever the power state (the
  observation may be stale, and forcing off a dark tray is harmless);
- round n+1 only when round n has finished and the component is seen powered
  on in an observation that began after that finish: the tray was switched
  back on while still leaking, or (round n failed) it never went dark;
- nothing while a round is pending or running, once a person cancelled a
  round (asking to cancel its TaskSpec is how a person takes the incident
  over; a round that ended cancelled for any other reason counts as failed),
  or after MAX_ROUNDS rounds (something keeps powering it on; a person must
  step in).

The rounds are whatever power-off requests exist (the caller reads them back
from Kubernetes each pass), so the decision after an operator restart is the
one it would have been without the restart. Deleting a round's request makes
it look never requested: Flow asks again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from nicoflow.domain.types import ComponentType, PowerState

MAX_ROUNDS = 8
# Finish times are stored with whole seconds: an observation must begin this long
# after the recorded finish to be sure it began after the real one.
SETTLE = timedelta(seconds=1)


class RoundOutcome(StrEnum):
    UNFINISHED = "unfinished"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class PowerOffRound:
    """One forced power-off requested for the incident."""

    number: int
    outcome: RoundOutcome = RoundOutcome.UNFINISHED
    finished_at: datetime | None = None
    # who asked to cancel it (CANCELLED rounds), as the apiserver recorded it
    cancelled_by: str = ""

    @property
    def finished(self) -> bool:
        # A finished round without a finish time cannot be ordered against an
        # observation, so it counts as still running.
        return self.outcome is not RoundOutcome.UNFINISHED and self.finished_at is not None


@dataclass(frozen=True)
class LeakingComponent:
    """A component NICo Core reports leaking."""

    core_id: str
    type: ComponentType
    name: str
    rack: str | None
    since: datetime  # start of the incident: Core's alert time, else when first seen
    power: PowerState = PowerState.UNKNOWN
    new: bool = True  # first seen leaking now (announced once)


class LeakAction(StrEnum):
    FIRST = "first"  # request round 0
    REPOWERED = "repowered"  # the last round succeeded, yet the component is on again
    STILL_ON = "still_on"  # the last round failed and the component is still on
    WAIT = "wait"  # the last round has not finished
    NONE = "none"  # the component stays off (or may not have been seen since the round)
    HELD = "held"  # a person cancelled the last round
    EXHAUSTED = "exhausted"  # MAX_ROUNDS rounds requested already


@dataclass(frozen=True)
class LeakDecision:
    action: LeakAction
    round: int | None = None  # the round to request, when `request`
    reason: str = ""

    @property
    def request(self) -> bool:
        return self.round is not None


def decide(
    rounds: Iterable[PowerOffRound],
    power: PowerState,
    observed_from: datetime,
    *,
    max_rounds: int = MAX_ROUNDS,
    settle: timedelta = SETTLE,
) -> LeakDecision:
    """What to do about one leaking component.

    `rounds`: the power-offs already requested for its current incident;
    `power`: its power state in this observation; `observed_from`: when this
    observation began."""
    done = sorted(rounds, key=lambda r: r.number)
    if not done:
        return LeakDecision(LeakAction.FIRST, 0, "leak detected")
    last = done[-1]
    if last.outcome is RoundOutcome.CANCELLED:
        who = f" ({last.cancelled_by})" if last.cancelled_by else ""
        return LeakDecision(
            LeakAction.HELD,
            reason=f"power-off round {last.number} was cancelled by a person{who}",
        )
    if not last.finished:
        return LeakDecision(LeakAction.WAIT, reason=f"power-off round {last.number} not finished")
    if power is not PowerState.ON:
        return LeakDecision(LeakAction.NONE, reason=f"component is {power.value}")
    assert last.finished_at is not None  # finished implies a finish time
    if observed_from < last.finished_at + settle:
        return LeakDecision(
            LeakAction.NONE, reason="observation began before the last power-off finished"
        )
    if last.number + 1 >= max_rounds:
        return LeakDecision(
            LeakAction.EXHAUSTED,
            reason=f"powered on again after {last.number + 1} forced power-offs; giving up",
        )
    if last.outcome is RoundOutcome.SUCCEEDED:
        return LeakDecision(
            LeakAction.REPOWERED,
            last.number + 1,
            f"powered on again after power-off round {last.number} while still leaking",
        )
    return LeakDecision(
        LeakAction.STILL_ON,
        last.number + 1,
        f"still powered on after power-off round {last.number} failed",
    )
