"""Prune the task history in PostgreSQL by age and by count, on a loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nicoflow.inventory import queries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    max_age: timedelta | None = timedelta(days=90)
    max_tasks: int | None = 1_000_000

    @property
    def bounded(self) -> bool:
        return self.max_age is not None or self.max_tasks is not None


async def prune(
    sessions: async_sessionmaker[AsyncSession],
    retention: Retention,
    now: datetime,
    batch: int = queries.PRUNE_BATCH,
) -> queries.Pruned:
    """Delete everything past the bounds, a batch per transaction (a long
    backlog never holds one huge lock)."""
    tasks = results = 0
    while True:
        async with sessions() as session, session.begin():
            got = await queries.prune_history(
                session,
                now=now,
                max_age=retention.max_age,
                max_tasks=retention.max_tasks,
                batch=batch,
            )
        tasks += got.tasks
        results += got.results
        if got.tasks < batch and got.results < batch:
            return queries.Pruned(tasks, results)


class HistoryPruner:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        retention: Retention,
        interval: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.retention = retention
        self.interval = interval
        self.clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                done = await prune(self.sessions, self.retention, self.clock())
                if done.tasks or done.results:
                    log.info(
                        "task history pruned: %d Tasks, %d per-component results",
                        done.tasks,
                        done.results,
                    )
            except Exception as exc:  # the next round tries again
                log.warning("task history pruning failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
