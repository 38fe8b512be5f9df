"""Per-key work that coalesces: at most one run per key at a time, and kicks
that arrive during a run cause exactly one more run after it. Events come in
bursts (a watch replays, several Tasks of one rack change together), while the
work itself (admission on a rack, the mirror of a Rack) only needs the newest
state, so a burst costs one or two runs instead of one per event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Coalescer:
    def __init__(self, work: Callable[[str], Awaitable[bool]]) -> None:
        """`work(key)` returns True when it wants to run again at once (it saw
        something change under it); it handles its own errors."""
        self._work = work
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closing = False

    def kick(self, key: str) -> None:
        if self._closing:
            return
        run = self._runs.get(key)
        if run is not None and not run.done():
            self._again.add(key)
            return
        self._runs[key] = asyncio.ensure_future(self._run(key))

    def kick_later(self, key: str, delay: float) -> None:
        """Kick after `delay` seconds; replaces the key's earlier pending timer."""
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self.kick, key)

    async def _run(self, key: str) -> None:
        while True:
            self._again.discard(key)
            if await self._work(key):
                self._again.add(key)
            if key not in self._again:
                return

    def running(self) -> list[asyncio.Task[None]]:
        return [t for t in self._runs.values() if not t.done()]

    def stop(self) -> list[asyncio.Task[None]]:
        """No more kicks or timers; the runs still going are cancelled and
        returned for the caller to await."""
        self._closing = True
        for timer in self._timers.values():
            timer.cancel()
        runs = self.running()
        for t in runs:
            t.cancel()
        return runs
