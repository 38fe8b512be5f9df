"""Task history retention on a real PostgreSQL: by age, by count, with the
per-component results, through the operator's loop and `flow db prune`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from nicoflow.controller.retention import HistoryPruner, Retention, prune
from nicoflow.inventory import migrate
from nicoflow.inventory.db import make_async_engine, make_async_session_factory, make_engine

FLOW = Path(sys.executable).parent / "flow"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate.upgrade(database_url)
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def add_task(engine: Engine, finished_days_ago: float, results: int = 2) -> uuid.UUID:
    uid = uuid.uuid4()
    finished = NOW - timedelta(days=finished_days_ago)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO task_history (id, name, namespace, operation_code, operation_type, "
                "phase, created_at, finished_at) VALUES (:id, :name, 'ns', 'power_on', "
                "'power_control', 'Succeeded', :at, :at)"
            ),
            {"id": uid, "name": f"t-{uid.hex[:8]}", "at": finished},
        )
        add_results(conn, uid, results, finished)
    return uid


def add_results(conn: object, uid: uuid.UUID, n: int, at: datetime) -> None:
    for i in range(n):
        conn.execute(  # type: ignore[attr-defined]
            text(
                "INSERT INTO task_result (task_id, stage, component_type, component_id, phase, "
                "recorded_at) VALUES (:id, 1, 'compute', :cid, 'Succeeded', :at)"
            ),
            {"id": uid, "cid": f"c{i}", "at": at},
        )


def kept(engine: Engine) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    with engine.connect() as conn:
        tasks = set(conn.scalars(text("SELECT id FROM task_history")))
        results = set(conn.scalars(text("SELECT DISTINCT task_id FROM task_result")))
    return tasks, results


def run_prune(database_url: str, retention: Retention, batch: int = 5000) -> tuple[int, int]:
    async def go() -> tuple[int, int]:
        eng = make_async_engine(database_url)
        try:
            done = await prune(make_async_session_factory(eng), retention, NOW, batch=batch)
        finally:
            await eng.dispose()
        return done.tasks, done.results

    return asyncio.run(go())


def test_age_bound_deletes_old_tasks_with_their_results(database_url: str, engine: Engine) -> None:
    old = [add_task(engine, 100), add_task(engine, 91)]
    young = [add_task(engine, 89), add_task(engine, 1)]
    # results of a Task deleted while it ran never reach the history: old ones go too
    orphan_old, orphan_young = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        add_results(conn, orphan_old, 3, NOW - timedelta(days=120))
        add_results(conn, orphan_young, 3, NOW - timedelta(hours=1))

    assert run_prune(database_url, Retention(max_age=timedelta(days=90), max_tasks=None)) == (
        2,
        2 * 2 + 3,
    )
    tasks, results = kept(engine)
    assert tasks == set(young)
    assert results == {*young, orphan_young}
    assert not set(old) & results


def test_count_bound_keeps_the_newest(database_url: str, engine: Engine) -> None:
    made = [add_task(engine, days) for days in (5, 4, 3, 2, 1)]  # oldest first
    # small batches: the loop goes on until nothing is left past the bound
    assert run_prune(database_url, Retention(max_age=None, max_tasks=2), batch=1) == (3, 6)
    tasks, results = kept(engine)
    assert tasks == results == set(made[-2:])


def test_both_bounds_apply_together(database_url: str, engine: Engine) -> None:
    made = [add_task(engine, days) for days in (200, 3, 2, 1)]
    assert run_prune(database_url, Retention(max_age=timedelta(days=90), max_tasks=2))[0] == 2
    assert kept(engine)[0] == set(made[-2:])


def test_the_operator_loop_prunes_on_its_own(database_url: str, engine: Engine) -> None:
    old, young = add_task(engine, 100), add_task(engine, 1)

    async def go() -> None:
        eng = make_async_engine(database_url)
        stop = asyncio.Event()
        pruner = HistoryPruner(
            make_async_session_factory(eng), Retention(), interval=0.05, clock=lambda: NOW
        )
        loop = asyncio.ensure_future(pruner.run(stop))
        try:
            for _ in range(100):
                if old not in kept(engine)[0]:
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await loop
            await eng.dispose()

    asyncio.run(go())
    assert kept(engine)[0] == {young}


def test_flow_db_prune(database_url: str, engine: Engine) -> None:
    made = [add_task(engine, days) for days in (3, 2, 1)]
    out = subprocess.run(
        [str(FLOW), "db", "prune", "--max-tasks", "1", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Pruned 2 Tasks and 4 per-component results" in out.stdout
    assert kept(engine)[0] == {made[-1]}

    none = subprocess.run(
        [str(FLOW), "db", "prune", "--max-tasks", "0", "--max-age-days", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert none.returncode == 2
    assert "nothing to prune by" in none.stderr
