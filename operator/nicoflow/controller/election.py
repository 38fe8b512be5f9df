"""Run the operator only while this process holds the leader Lease.

Nothing starts before the Lease is ours: no kopf handlers, and none of the
background loops the runtime starts (task runners, inventory sync, schedules,
TTL sweep). Once leading, a renewal task runs beside kopf; if it loses the
Lease it raises kopf's stop flag and the process exits non-zero, and a
watchdog thread ends the process outright if stopping takes longer than a
successor needs to take over, or if the event loop stalls so long that the
Lease could expire unnoticed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable

from nicoflow.kube.client import KubeClient
from nicoflow.kube.leadership import Candidate
from nicoflow.kube.lease import LeaderElector

log = logging.getLogger(__name__)

EXIT_LOST = 1

# kopf.operator's stop and ready flags
Operate = Callable[[asyncio.Event, asyncio.Event], Awaitable[None]]


class _Watchdog(threading.Thread):
    """Ends the process from outside the event loop, which may be the thing stuck."""

    def __init__(self, elector: LeaderElector, grace: float) -> None:
        super().__init__(name="leader-watchdog", daemon=True)
        self.elector = elector
        self.grace = grace
        self.lost_at: float | None = None
        self._done = threading.Event()

    def run(self) -> None:
        lease = self.elector.candidate.timing.lease_duration
        while not self._done.wait(0.25):
            now = time.monotonic()
            if self.lost_at is not None and now > self.lost_at + self.grace:
                _exit(f"the operator did not stop within {self.grace:g}s of losing leadership")
            renewed = self.elector.renewed_at
            if self.elector.leader and renewed is not None and now > renewed + lease:
                _exit(f"no renewal for {lease}s (event loop stalled): the Lease may be taken")

    def disarm(self) -> None:
        self._done.set()


def _exit(reason: str) -> None:
    log.critical("%s; exiting now", reason)
    logging.shutdown()
    os._exit(EXIT_LOST)


async def run_operator(operate: Operate, stop: asyncio.Event | None = None) -> None:
    """Run kopf with SIGINT and SIGTERM raising `stop`. kopf installs handlers
    of its own when it starts; stopped through them, it leaves its waiter on
    our stop flag pending and waits 5 s for it before exiting. So ours go back
    in place once kopf is ready."""
    stop = stop if stop is not None else asyncio.Event()
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()

    def route() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

    async def reroute() -> None:
        await ready.wait()
        route()

    route()
    # created before kopf starts, so kopf's shutdown leaves it alone
    rerouting = asyncio.ensure_future(reroute())
    try:
        await operate(stop, ready)
    finally:
        rerouting.cancel()


async def run_as_leader(candidate: Candidate, kubeconfig: str | None, operate: Operate) -> int:
    """Wait for the Lease, then run the operator until it stops; the exit code
    is 0 after a clean stop (Lease released) and 1 when leadership was lost."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with KubeClient.from_env(kubeconfig) as kube:
        elector = LeaderElector(kube, candidate)
        log.info("leader election on %s as %s", elector.where, candidate.identity)
        if not await elector.acquire(stop):
            log.info("stopped before acquiring leadership")
            return 0
        watchdog = _Watchdog(elector, candidate.timing.stop_grace)
        lost: list[str] = []

        async def guard() -> None:
            try:
                reason = await elector.hold()
            except Exception as exc:  # a bug in renewal must not leave us leading blind
                elector.leader = False
                reason = f"renewal failed: {exc!r}"
            lost.append(reason)
            watchdog.lost_at = time.monotonic()
            log.error("leadership lost (%s); stopping the operator", reason)
            stop.set()

        # created before kopf starts, so kopf's shutdown leaves it alone
        guarding = asyncio.ensure_future(guard())
        watchdog.start()
        try:
            await run_operator(operate, stop)
        finally:
            guarding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guarding
            if not lost:
                watchdog.disarm()
                await elector.release(within=min(5.0, candidate.timing.renew_deadline))
        if lost:
            log.error("exiting after the loss of leadership: %s", lost[0])
            return EXIT_LOST
        return 0
