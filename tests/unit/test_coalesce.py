"""Coalescer: one run per key at a time, a burst of kicks costs one more run."""

from __future__ import annotations

import asyncio

from nicoflow.controller.coalesce import Coalescer


class Recorder:
    def __init__(self, again: int = 0, hold: float = 0.0) -> None:
        self.runs: list[str] = []
        self.again = again  # how many times work asks to run again
        self.hold = hold
        self.inside: set[str] = set()
        self.overlaps = 0

    async def work(self, key: str) -> bool:
        if key in self.inside:
            self.overlaps += 1
        self.inside.add(key)
        self.runs.append(key)
        await asyncio.sleep(self.hold)
        self.inside.discard(key)
        if self.again:
            self.again -= 1
            return True
        return False


async def settle(c: Coalescer) -> None:
    while c.running():
        await asyncio.gather(*c.running())


def test_a_burst_during_a_run_costs_exactly_one_more_run() -> None:
    async def scenario() -> Recorder:
        rec = Recorder(hold=0.02)
        c = Coalescer(rec.work)
        c.kick("r1")
        await asyncio.sleep(0.005)  # r1 is running now
        for _ in range(10):
            c.kick("r1")
        c.kick("r2")
        await settle(c)
        return rec

    rec = asyncio.run(scenario())
    assert rec.runs.count("r1") == 2
    assert rec.runs.count("r2") == 1
    assert rec.overlaps == 0


def test_work_asking_again_runs_again_without_a_kick() -> None:
    async def scenario() -> Recorder:
        rec = Recorder(again=2)
        c = Coalescer(rec.work)
        c.kick("r1")
        await settle(c)
        return rec

    assert asyncio.run(scenario()).runs == ["r1", "r1", "r1"]


def test_kick_later_replaces_the_pending_timer() -> None:
    async def scenario() -> Recorder:
        rec = Recorder()
        c = Coalescer(rec.work)
        c.kick_later("r1", 0.05)
        c.kick_later("r1", 0.01)  # the first timer is gone
        await asyncio.sleep(0.1)
        await settle(c)
        return rec

    assert asyncio.run(scenario()).runs == ["r1"]


def test_stop_cancels_runs_and_timers_and_refuses_kicks() -> None:
    async def scenario() -> tuple[Recorder, list[bool]]:
        rec = Recorder(hold=1.0)
        c = Coalescer(rec.work)
        c.kick("r1")
        c.kick_later("r2", 0.01)
        await asyncio.sleep(0.005)
        stopped = c.stop()
        await asyncio.gather(*stopped, return_exceptions=True)
        c.kick("r3")
        await asyncio.sleep(0.05)
        return rec, [t.cancelled() for t in stopped]

    rec, cancelled = asyncio.run(scenario())
    assert rec.runs == ["r1"]
    assert cancelled == [True]
