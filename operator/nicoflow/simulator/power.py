"""Power of one component and of a rack's power feed.

State is evaluated lazily: a command plans future transitions as (time, state)
steps and a read settles the steps that are due. No background task runs, so
a site of any size costs nothing while idle and tests drive time by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Power(StrEnum):
    ON = "on"
    OFF = "off"
    POWERING_ON = "powering_on"
    POWERING_OFF = "powering_off"

    @property
    def delivers(self) -> bool:
        """A shelf still feeds the rack while it is shutting down."""
        return self in (Power.ON, Power.POWERING_OFF)


class PowerAction(StrEnum):
    ON = "on"
    GRACEFUL_SHUTDOWN = "graceful_shutdown"
    FORCE_OFF = "force_off"
    GRACEFUL_RESTART = "graceful_restart"
    FORCE_RESTART = "force_restart"
    POWER_CYCLE = "ac_powercycle"

    @property
    def boots(self) -> bool:
        """Whether the action ends with the system starting up."""
        return self not in (PowerAction.GRACEFUL_SHUTDOWN, PowerAction.FORCE_OFF)


@dataclass(frozen=True)
class PowerTimings:
    """`latency`: a graceful transition (shutdown, or boot to on).
    `force_latency`: how long a forced off takes (0 = immediate).
    `lag`: how long an accepted command leaves the power state unchanged
    before its transition shows (a BMC acting on a button press)."""

    latency: float = 2.0
    force_latency: float = 0.0
    lag: float = 0.0


@dataclass(slots=True)
class PowerMachine:
    state: Power = Power.ON
    steps: list[tuple[float, Power]] = field(default_factory=list)

    def settle(self, now: float) -> None:
        while self.steps and self.steps[0][0] <= now:
            self.state = self.steps.pop(0)[1]

    def read(self, now: float) -> Power:
        self.settle(now)
        return self.state

    def settled_at(self) -> float | None:
        """When the last planned step lands (None when nothing is planned)."""
        return self.steps[-1][0] if self.steps else None

    def set(self, state: Power) -> None:
        """Jump to a state (tests, AC loss)."""
        self.state = state
        self.steps.clear()

    def cut(self, at: float) -> None:
        """Input power lost at `at`: the system is off and forgets what it planned."""
        self.settle(at)
        self.set(Power.OFF)

    def command(self, action: PowerAction, now: float, timings: PowerTimings) -> None:
        self.settle(now)
        lat, force = timings.latency, timings.force_latency
        visible = self.state
        # A command waiting out its lag is acted on before this one: judge this
        # one against where that leaves the system, not against what shows now.
        cur = self.steps[-1][1] if self.steps and timings.lag > 0 else visible
        steps: list[tuple[float, Power]] = []
        if action == PowerAction.ON:
            if cur in (Power.ON, Power.POWERING_ON):
                return
            cur = Power.POWERING_ON
            steps = [(now + lat, Power.ON)]
        elif action == PowerAction.GRACEFUL_SHUTDOWN:
            if cur in (Power.OFF, Power.POWERING_OFF):
                return
            cur = Power.POWERING_OFF
            steps = [(now + lat, Power.OFF)]
        elif action == PowerAction.FORCE_OFF:
            if cur == Power.OFF:
                return
            cur, steps = _forced_off(now, force)
        elif action == PowerAction.GRACEFUL_RESTART:
            if cur in (Power.OFF, Power.POWERING_OFF):
                # Nothing to shut down: the restart is a boot.
                cur, steps = Power.POWERING_ON, [(now + lat, Power.ON)]
            else:
                cur = Power.POWERING_OFF
                steps = [(now + lat, Power.POWERING_ON), (now + 2 * lat, Power.ON)]
        else:  # FORCE_RESTART, POWER_CYCLE: drop power now, then boot
            cur, steps = _forced_off(now, force)
            off_at = now + force
            steps = [(off_at, Power.POWERING_ON), (off_at + lat, Power.ON)]
            if force <= 0:
                cur, steps = Power.POWERING_ON, steps[1:]
        if timings.lag > 0:
            # nothing shows until the lag has passed, then the plan runs as if
            # the command had arrived then
            lag = timings.lag
            steps = [(now + lag, cur)] + [(at + lag, state) for at, state in steps]
            cur = visible
        self.state = cur
        self.steps = steps
        self.settle(now)


def _forced_off(now: float, force: float) -> tuple[Power, list[tuple[float, Power]]]:
    if force <= 0:
        return Power.OFF, []
    return Power.POWERING_OFF, [(now + force, Power.OFF)]


@dataclass(slots=True)
class RackFeed:
    """Input power of a rack: trays and switches are fed while at least one
    power shelf delivers. When the last shelf stops, every fed component loses
    power at that instant and stays off until powered on again."""

    shelves: list[PowerMachine]
    loads: list[PowerMachine]
    fed: bool = True

    def __post_init__(self) -> None:
        self.fed = self._delivers()

    def _delivers(self) -> bool:
        # A rack without modelled shelves is fed from elsewhere.
        return not self.shelves or any(s.state.delivers for s in self.shelves)

    def settle(self, now: float) -> None:
        # Walk shelf transitions in time order so an outage between two reads
        # still cuts the loads at the moment it happened.
        due = sorted({at for s in self.shelves for at, _ in s.steps if at <= now})
        for at in due:
            for s in self.shelves:
                s.settle(at)
            self._update(at)
        self._update(now)

    def _update(self, at: float) -> None:
        fed = self._delivers()
        if self.fed and not fed:
            for load in self.loads:
                load.cut(at)
        self.fed = fed

    def is_fed(self, now: float) -> bool:
        self.settle(now)
        return self.fed
