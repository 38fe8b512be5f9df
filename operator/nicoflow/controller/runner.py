"""One Task's engine loop: decide, persist, act, wait — until the Task finishes.

The operator and the deterministic simulation tests run this same loop; what
differs between them (where status is kept, how time passes, how calls are
carried out) comes in through a Host."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from nicoflow.api.taskstatus import TaskStatus
from nicoflow.engine import compaction
from nicoflow.engine.compaction import ComponentRecord
from nicoflow.engine.plan import Call, Options, Outcome, Plan
from nicoflow.engine.task import Decision, advance


class Host(Protocol):
    def now(self) -> datetime: ...

    def plan(self) -> Plan:
        """The Task's plan as of now (a cancel request changes it)."""
        ...

    def generation(self) -> int | None: ...

    async def persist(self, decision: Decision) -> bool:
        """Write the decision's status; False when the Task is gone."""
        ...

    async def archive(self, records: list[ComponentRecord]) -> bool:
        """Store finished steps' per-component results; False when they could
        not be stored (they then stay in status and are offered again)."""
        ...

    async def observe(self, before: TaskStatus, decision: Decision) -> None:
        """Events, metrics and logs of a persisted turn."""
        ...

    async def act(self, calls: list[Call], options: Options) -> list[Outcome]: ...

    async def wait(self, until: datetime | None) -> None:
        """Until `until`, or until something about the Task changed."""
        ...


async def drive(host: Host, status: TaskStatus) -> TaskStatus | None:
    """Run the Task from `status` (as last persisted) until it finishes; the
    final status, or None when the Task disappeared. The first turn is
    `fresh`: whatever was in flight when `status` was written is looked up
    in Core before anything is sent again."""
    outcomes: list[Outcome] = []
    fresh = True
    while True:
        plan = host.plan()
        d = advance(plan, status, outcomes, host.now(), fresh=fresh, generation=host.generation())
        fresh = False
        if d.persist:
            records = compaction.to_archive(d.status)
            if records and await host.archive(records):
                compaction.compact(d.status)
            # the intent must be durable before the calls it announces go out
            if not await host.persist(d):
                return None
        await host.observe(status, d)
        status = d.status
        if d.finished:
            return status
        if d.calls:
            outcomes = await host.act(d.calls, plan.options)
            continue
        outcomes = []
        await host.wait(d.wake_at)
