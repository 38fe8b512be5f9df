"""Leader election on a coordination.k8s.io/v1 Lease: acquire, keep renewing,
release. The decisions are in nicoflow.kube.leadership; this module reads and
writes the Lease and keeps time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from nicoflow.kube.client import ApiError, Conflict, KubeClient, NotFound, Resource
from nicoflow.kube.leadership import (
    Candidate,
    Json,
    LeaseRecord,
    Observation,
    Verdict,
    claimed,
    expires_in,
    judge,
    new_lease,
    observe,
    released,
)

log = logging.getLogger(__name__)

LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")

# what a failed attempt may raise; the next attempt starts over with a fresh read
_TRANSIENT = (ApiError, httpx.HTTPError, OSError, TimeoutError)


class LeaseLost(Exception):
    """Another identity holds the Lease now."""


def _wall() -> datetime:
    return datetime.now(UTC)


def _holder(body: Json) -> str:
    return LeaseRecord.from_body(body).holder


class LeaderElector:
    """One candidate's view of one Lease. `renewed_at` is the monotonic time the
    last successful write was sent: a successor counts from no earlier."""

    def __init__(
        self,
        kube: KubeClient,
        candidate: Candidate,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _wall,
    ) -> None:
        self.kube = kube
        self.candidate = candidate
        self._clock = clock
        self._wall = wall
        self._body: Json | None = None  # the Lease as we last wrote it
        self.renewed_at: float | None = None
        self.leader = False

    @property
    def where(self) -> str:
        return f"Lease {self.candidate.namespace}/{self.candidate.name}"

    async def _read(self) -> Json | None:
        try:
            return await self.kube.get(LEASES, self.candidate.name, self.candidate.namespace)
        except NotFound:
            return None

    async def _create(self) -> Json:
        body = new_lease(self.candidate, self._wall())
        return await self.kube.create(LEASES, body, self.candidate.namespace)

    async def _claim(self, body: Json) -> Json:
        mine = claimed(body, self.candidate, self._wall())
        return await self.kube.replace(LEASES, mine, self.candidate.namespace)

    def _won(self, body: Json, sent: float) -> None:
        self._body = body
        self.renewed_at = sent
        self.leader = True

    # -- acquire ---------------------------------------------------------------

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Block until we hold the Lease (True) or `stop` is set (False)."""
        timing = self.candidate.timing
        seen: Observation | None = None
        told: str | None = None
        while not stop.is_set():
            try:
                async with asyncio.timeout(timing.renew_deadline):
                    seen = await self._try_acquire(seen)
                if self.leader:
                    return True
                assert seen is not None
                if told != seen.record.holder:
                    told = seen.record.holder
                    log.info(
                        "waiting for leadership of %s, held by %s (taken over if not renewed "
                        "within %.0fs)",
                        self.where,
                        told,
                        expires_in(seen, self._clock(), timing.lease_duration),
                    )
            except Conflict:
                log.info("another candidate wrote %s first; reading it again", self.where)
            except _TRANSIENT as exc:
                log.warning("could not read or claim %s: %s", self.where, exc or type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timing.retry_period):
                    await stop.wait()
        return False

    async def _try_acquire(self, seen: Observation | None) -> Observation | None:
        body = await self._read()
        if body is None:
            sent = self._clock()
            self._won(await self._create(), sent)
            log.info(
                "acquired leadership of %s as %s (new Lease)", self.where, self.candidate.identity
            )
            return None
        now = self._clock()
        record = LeaseRecord.from_body(body)
        seen = observe(seen, record, now)
        verdict = judge(seen, self.candidate.identity, now, self.candidate.timing.lease_duration)
        if verdict is Verdict.WAIT:
            return seen
        sent = self._clock()
        self._won(await self._claim(body), sent)
        if verdict is Verdict.RENEW:
            log.info("resumed leadership of %s as %s", self.where, self.candidate.identity)
        else:
            log.info(
                "acquired leadership of %s as %s (previous holder: %s)",
                self.where,
                self.candidate.identity,
                record.holder or "none, released",
            )
        return seen

    # -- hold ------------------------------------------------------------------

    async def hold(self) -> str:
        """Renew every retry period while we lead; return why leadership was
        lost: another holder, or no successful renewal within the renew deadline."""
        assert self.leader
        timing = self.candidate.timing
        problem = "no attempt finished"
        while True:
            assert self.renewed_at is not None
            deadline = self.renewed_at + timing.renew_deadline
            await asyncio.sleep(max(0.0, min(timing.retry_period, deadline - self._clock())))
            remaining = deadline - self._clock()
            if remaining <= 0:
                return self._lose(f"not renewed within {timing.renew_deadline:g}s: {problem}")
            try:
                async with asyncio.timeout(remaining):
                    await self._renew()
            except LeaseLost as exc:
                return self._lose(str(exc))
            except TimeoutError:
                problem = "the apiserver did not answer in time"
            except _TRANSIENT as exc:
                problem = str(exc) or type(exc).__name__
                log.warning("renewing %s failed: %s", self.where, problem)

    def _lose(self, reason: str) -> str:
        self.leader = False
        return reason

    async def _renew(self) -> None:
        assert self._body is not None
        sent = self._clock()
        try:
            # no read first: the write carries the version we last wrote, and
            # fails if anyone else has written since
            body = await self._claim(self._body)
        except Conflict:
            fresh = await self._read()
            if fresh is None:
                body = await self._recreate()
            else:
                holder = _holder(fresh)
                if holder != self.candidate.identity:
                    raise LeaseLost(f"{self.where} is held by {holder or 'no one'} now") from None
                sent = self._clock()
                body = await self._claim(fresh)
        except NotFound:
            body = await self._recreate()
        self._won(body, sent)

    async def _recreate(self) -> Json:
        """Someone deleted the Lease under us: whoever creates it first leads."""
        try:
            return await self._create()
        except Conflict:
            fresh = await self._read()
            holder = _holder(fresh) if fresh else "no one"
            raise LeaseLost(f"{self.where} was deleted and is held by {holder} now") from None

    # -- release ---------------------------------------------------------------

    async def release(self, within: float = 5.0) -> None:
        """Give the Lease up so a successor takes over at once (clean shutdown only)."""
        if not self.leader or self._body is None:
            return
        self.leader = False
        try:
            async with asyncio.timeout(within):
                try:
                    await self._release(self._body)
                except Conflict:
                    fresh = await self._read()
                    if fresh is None or _holder(fresh) != self.candidate.identity:
                        return
                    await self._release(fresh)
            log.info("released %s", self.where)
        except _TRANSIENT as exc:
            log.warning("could not release %s: %s", self.where, exc or type(exc).__name__)

    async def _release(self, body: Json) -> None:
        await self.kube.replace(LEASES, released(body, self._wall()), self.candidate.namespace)
