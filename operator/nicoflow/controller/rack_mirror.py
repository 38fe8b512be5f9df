"""Racks: the spec mirrored into PostgreSQL, the summary written to status, a
finalizer so a deleted Rack leaves the inventory too.

Driven by watch events rather than kopf's change handlers: those keep a copy
of the whole spec in an annotation (one more write per change) and deep-copy
every event's body to diff it, which for a 35-component Rack cost more than
the mirror itself. The mirror is an idempotent upsert, so the state needed is
small: which (uid, generation) this process has mirrored. Work is coalesced
per Rack (the latest body wins) and bounded across Racks; transient failures
are retried with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nicoflow.controller import events
from nicoflow.controller.coalesce import Coalescer
from nicoflow.controller.metrics import timed
from nicoflow.controller.racks import InvalidRack, forget, mirror_status
from nicoflow.controller.resources import GROUP, RACKS
from nicoflow.kube.client import Conflict, KubeClient, NotFound

log = logging.getLogger(__name__)

# Not kopf's finalizer name (flow.nico.io/finalizer): kopf removes that one from
# objects it has no deletion handler for, which includes Racks from earlier
# versions, so they are released as before.
FINALIZER = f"{GROUP}/inventory"
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


def _finalizers(body: dict[str, Any]) -> list[str]:
    return list(body["metadata"].get("finalizers") or [])


def _version(body: dict[str, Any]) -> tuple[str, Any]:
    meta = body["metadata"]
    return str(meta.get("uid", "")), meta.get("generation")


# what deciding "is there work" needs; a Rack with nothing to do is cached as
# this alone (a 35-component Rack's body is ~150 KB in memory, half of it
# managedFields), and the next change arrives with a full body anyway
_KEPT_METADATA = ("name", "uid", "generation", "resourceVersion", "finalizers", "deletionTimestamp")


def _slim(body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {"metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta}}


def _newer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    try:
        return int(a["metadata"]["resourceVersion"]) >= int(b["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return True


class RackController:
    def __init__(
        self,
        kube: KubeClient,
        sessions: async_sessionmaker[AsyncSession],
        *,
        concurrency: int = 8,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.kube = kube
        self.sessions = sessions
        self.retry_delays = retry_delays
        self._latest: dict[str, dict[str, Any]] = {}
        self._mirrored: dict[str, tuple[str, Any]] = {}
        self._work = Coalescer(self._step)
        self._failures: dict[str, int] = {}
        self._slots = asyncio.Semaphore(concurrency)

    # -- events ----------------------------------------------------------------

    def observe(self, event_type: str, body: dict[str, Any]) -> None:
        name = str(body["metadata"]["name"])
        if event_type == "DELETED":
            self._latest.pop(name, None)
            self._mirrored.pop(name, None)
            return
        known = self._latest.get(name)
        if self._keep(body if known is None or _newer(body, known) else known):
            self.kick(name)

    def _keep(self, body: dict[str, Any]) -> bool:
        """Cache the Rack's newest body, whole only while there is work for it;
        True when there is."""
        work = self._needs_work(body)
        self._latest[str(body["metadata"]["name"])] = body if work else _slim(body)
        return work

    def _needs_work(self, body: dict[str, Any]) -> bool:
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            return FINALIZER in _finalizers(body)
        if FINALIZER not in _finalizers(body):
            return True
        return self._mirrored.get(str(meta["name"])) != _version(body)

    def kick(self, name: str) -> None:
        self._work.kick(name)

    async def _step(self, name: str) -> bool:
        body = self._latest.get(name)
        if body is None or not self._needs_work(body):
            return False
        async with self._slots:
            try:
                await self._handle(body)
                self._failures.pop(name, None)
                latest = self._latest.get(name)
                if latest is not None:
                    self._keep(latest)
            except Conflict:
                await asyncio.sleep(0.2)
                return True  # a newer body is on its way; act on that
            except NotFound:
                pass  # gone meanwhile
            except Exception as exc:  # database or apiserver trouble: try again later
                self._retry_later(name, exc)
        return False

    def _retry_later(self, name: str, exc: BaseException) -> None:
        n = self._failures.get(name, 0)
        self._failures[name] = n + 1
        delay = self.retry_delays[min(n, len(self.retry_delays) - 1)]
        log.warning("rack %s: %s; retrying in %.0fs", name, exc, delay)
        self._work.kick_later(name, delay)

    # -- work ------------------------------------------------------------------

    @timed("Rack")
    async def _handle(self, body: dict[str, Any]) -> None:
        name = str(body["metadata"]["name"])
        if body["metadata"].get("deletionTimestamp"):
            await forget(self.sessions, name)
            await self._release(body)
            self._mirrored.pop(name, None)
            return
        if FINALIZER not in _finalizers(body):
            body = await self.kube.patch(
                RACKS,
                name,
                {
                    "metadata": {
                        "finalizers": [*_finalizers(body), FINALIZER],
                        "resourceVersion": body["metadata"]["resourceVersion"],
                    }
                },
            )
            self._remember(body)
        try:
            status = await mirror_status(self.sessions, body)
        except InvalidRack as exc:
            # a person must fix the spec (or the other rack): say so once per generation
            await self._write_status(body, exc.status)
            await events.post(self.kube, body, "Warning", "InvalidInventory", str(exc))
            self._mirrored[name] = _version(body)
            return
        if status is not None:
            await self._write_status(body, status)
        self._mirrored[name] = _version(body)

    async def _write_status(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        current = body.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return  # nothing new: no write
        self._remember(await self.kube.patch_status(RACKS, body["metadata"]["name"], status))

    async def _release(self, body: dict[str, Any]) -> None:
        rest = [f for f in _finalizers(body) if f != FINALIZER]
        await self.kube.patch(
            RACKS,
            body["metadata"]["name"],
            {
                "metadata": {
                    "finalizers": rest or None,
                    "resourceVersion": body["metadata"]["resourceVersion"],
                }
            },
        )

    def _remember(self, body: dict[str, Any]) -> None:
        name = str(body["metadata"]["name"])
        known = self._latest.get(name)
        if known is None or _newer(body, known):
            self._latest[name] = body

    async def close(self) -> None:
        for t in self._work.stop():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
