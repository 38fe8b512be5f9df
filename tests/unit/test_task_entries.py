"""The operator's Task index: counts follow every body and runner change."""

from __future__ import annotations

import asyncio
from typing import Any

from nicoflow.controller.task_entries import Entry, TaskIndex


def body(name: str, rack: str, taskspec: str, phase: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"rack": rack, "taskSpecName": taskspec},
    }
    if phase:
        out["status"] = {"phase": phase}
    return out


def entry(name: str, rack: str, taskspec: str = "ts", phase: str | None = None) -> Entry:
    return Entry(("ns", name), body(name, rack, taskspec, phase))


def test_lookups_by_rack_and_taskspec() -> None:
    idx = TaskIndex()
    for e in (entry("a", "r1"), entry("b", "r2"), entry("c", "r1", "other")):
        idx.add(e)
    assert sorted(e.key[1] for e in idx.on_rack("r1")) == ["a", "c"]
    assert sorted(e.key[1] for e in idx.of_taskspec(("ns", "ts"))) == ["a", "b"]
    assert idx.racks() == {"r1", "r2"}
    assert idx.pending_racks(("ns", "ts")) == {"r1", "r2"}
    idx.pop(("ns", "a"))
    assert [e.key[1] for e in idx.on_rack("r1")] == ["c"]
    assert idx.pending_racks(("ns", "ts")) == {"r2"}
    assert idx.on_rack("nowhere") == []


def test_counts_follow_phase_and_runner_changes() -> None:
    async def scenario() -> None:
        idx = TaskIndex()
        a, b = entry("a", "r1"), entry("b", "r2")
        idx.add(a)
        idx.add(b)
        ts = ("ns", "ts")
        assert (idx.in_flight(), idx.active(ts), idx.failed(ts)) == (0, 0, 0)

        a.runner = asyncio.ensure_future(asyncio.sleep(0))
        assert (idx.in_flight(), idx.active(ts)) == (1, 1)
        assert idx.pending_racks(ts) == {"r1", "r2"}  # started, phase not written yet

        a.body = body("a", "r1", "ts", "Running")
        assert idx.pending_racks(ts) == {"r2"}
        a.body = body("a", "r1", "ts", "Failed")
        # the runner may still be removing leftovers, but the Task no longer flies
        assert (idx.in_flight(), idx.active(ts), idx.failed(ts)) == (0, 0, 1)
        await a.runner
        a.runner = None

        # restarted operator: Running on the record, no runner yet
        b.body = body("b", "r2", "ts", "Running")
        assert idx.in_flight() == 1
        idx.pop(b.key)
        assert (idx.in_flight(), idx.active(ts), idx.failed(ts)) == (0, 0, 1)
        b.body = body("b", "r2", "ts", "Failed")  # a popped entry no longer counts
        assert idx.failed(ts) == 1

    asyncio.run(scenario())


def test_adding_a_key_again_replaces_the_old_entry() -> None:
    idx = TaskIndex()
    idx.add(entry("a", "r1", phase="Failed"))
    idx.add(entry("a", "r1", phase="Succeeded"))
    assert len(idx) == 1
    assert idx.failed(("ns", "ts")) == 0
