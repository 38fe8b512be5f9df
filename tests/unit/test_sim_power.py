from __future__ import annotations

import pytest

from nicoflow.simulator.power import Power, PowerAction, PowerMachine, PowerTimings, RackFeed

T = PowerTimings(latency=2.0, force_latency=0.0)


def machine(state: Power = Power.ON) -> PowerMachine:
    return PowerMachine(state)


def test_graceful_shutdown_takes_the_latency() -> None:
    m = machine()
    m.command(PowerAction.GRACEFUL_SHUTDOWN, 100.0, T)
    assert m.read(100.0) == Power.POWERING_OFF
    assert m.read(101.9) == Power.POWERING_OFF
    assert m.read(102.0) == Power.OFF


def test_forced_off_is_immediate_or_takes_the_force_latency() -> None:
    m = machine()
    m.command(PowerAction.FORCE_OFF, 0.0, T)
    assert m.read(0.0) == Power.OFF
    slow = machine()
    slow.command(PowerAction.FORCE_OFF, 0.0, PowerTimings(latency=10.0, force_latency=0.5))
    assert slow.read(0.4) == Power.POWERING_OFF
    assert slow.read(0.5) == Power.OFF


def test_power_on_from_off() -> None:
    m = machine(Power.OFF)
    m.command(PowerAction.ON, 0.0, T)
    assert m.read(1.0) == Power.POWERING_ON
    assert m.read(2.0) == Power.ON


def test_commands_that_change_nothing_plan_nothing() -> None:
    m = machine(Power.ON)
    m.command(PowerAction.ON, 0.0, T)
    assert m.steps == []
    off = machine(Power.OFF)
    off.command(PowerAction.GRACEFUL_SHUTDOWN, 0.0, T)
    off.command(PowerAction.FORCE_OFF, 0.0, T)
    assert off.read(0.0) == Power.OFF
    assert off.steps == []


def test_graceful_restart_is_off_then_on() -> None:
    m = machine()
    m.command(PowerAction.GRACEFUL_RESTART, 0.0, T)
    assert m.read(1.0) == Power.POWERING_OFF
    assert m.read(2.0) == Power.POWERING_ON
    assert m.read(3.9) == Power.POWERING_ON
    assert m.read(4.0) == Power.ON


@pytest.mark.parametrize("action", [PowerAction.FORCE_RESTART, PowerAction.POWER_CYCLE])
def test_forced_restart_drops_power_at_once_then_boots(action: PowerAction) -> None:
    m = machine()
    m.command(action, 0.0, T)
    assert m.read(0.0) == Power.POWERING_ON
    assert m.read(2.0) == Power.ON


def test_restart_of_an_off_system_boots_it() -> None:
    m = machine(Power.OFF)
    m.command(PowerAction.GRACEFUL_RESTART, 0.0, T)
    assert m.read(2.0) == Power.ON


def _rack(
    shelves: int = 3, loads: int = 2
) -> tuple[list[PowerMachine], list[PowerMachine], RackFeed]:
    s = [machine() for _ in range(shelves)]
    ld = [machine() for _ in range(loads)]
    return s, ld, RackFeed(shelves=s, loads=ld)


def test_loads_stay_up_while_one_shelf_delivers() -> None:
    shelves, loads, feed = _rack()
    for s in shelves[:-1]:
        s.command(PowerAction.FORCE_OFF, 0.0, T)
    assert feed.is_fed(0.0)
    assert all(ld.read(0.0) == Power.ON for ld in loads)


def test_last_shelf_off_cuts_every_load() -> None:
    shelves, loads, feed = _rack()
    for s in shelves:
        s.command(PowerAction.FORCE_OFF, 0.0, T)
    assert not feed.is_fed(0.0)
    assert all(ld.read(0.0) == Power.OFF for ld in loads)


def test_cut_happens_when_the_last_shelf_finishes_shutting_down() -> None:
    shelves, loads, feed = _rack(shelves=2, loads=1)
    shelves[0].command(PowerAction.GRACEFUL_SHUTDOWN, 0.0, T)
    shelves[1].command(PowerAction.GRACEFUL_SHUTDOWN, 1.0, T)
    # A load booting meanwhile is cut mid-boot at t=3 when shelf 1 is off.
    loads[0].set(Power.OFF)
    loads[0].command(PowerAction.ON, 2.0, PowerTimings(latency=5.0))
    assert feed.is_fed(2.9)
    assert loads[0].read(2.9) == Power.POWERING_ON
    assert not feed.is_fed(3.0)
    assert loads[0].read(10.0) == Power.OFF


def test_an_outage_between_two_reads_still_cuts_the_loads() -> None:
    shelves, loads, feed = _rack(shelves=1, loads=1)
    shelves[0].command(PowerAction.GRACEFUL_RESTART, 0.0, T)  # off at 2, on at 4
    assert feed.is_fed(10.0)  # first look after power is back
    assert loads[0].read(10.0) == Power.OFF


def test_loads_stay_off_when_power_returns() -> None:
    shelves, loads, feed = _rack(shelves=1, loads=1)
    shelves[0].command(PowerAction.FORCE_OFF, 0.0, T)
    feed.settle(0.0)
    shelves[0].command(PowerAction.ON, 1.0, T)
    assert not feed.is_fed(2.9)
    assert feed.is_fed(3.0)
    assert loads[0].read(3.0) == Power.OFF
