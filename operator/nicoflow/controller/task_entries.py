"""The operator's Tasks in memory, indexed by rack and by TaskSpec.

Admission, rollout limits and wake-ups each need one rack's Tasks or one
TaskSpec's counts; scanning every Task for them made a 1,000-rack TaskSpec cost
quadratic time. An Entry tells its index whenever its body or runner changes,
so the indexes and counters stay exact without anyone remembering to update
them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from nicoflow.controller.resources import LABEL_LEAK_RESPONSE
from nicoflow.domain.types import TaskPhase

Key = tuple[str, str]  # (namespace, name)


class Entry:
    """One Task as the operator knows it: its (compacted) body and its engine loop."""

    def __init__(self, key: Key, body: dict[str, Any]) -> None:
        self.key = key
        self._body = body
        self._runner: asyncio.Task[None] | None = None
        self._index: TaskIndex | None = None
        self.wake = asyncio.Event()
        self.blocked_since: datetime | None = None
        # finished and archived: its body is kept without stage results
        self.settled = False
        # cancelled (in this process) to make way for this leak response TaskSpec
        self.preempted_by: str | None = None
        spec = body["spec"]
        self.rack = str(spec["rack"])
        self.taskspec: Key = (key[0], str(spec["taskSpecName"]))
        self.created = str(body["metadata"].get("creationTimestamp", ""))
        labels = body["metadata"].get("labels") or {}
        # forces a leaking component off: pre-empts conflicting work, never waits
        self.leak_response = labels.get(LABEL_LEAK_RESPONSE) == "true"

    @property
    def body(self) -> dict[str, Any]:
        return self._body

    @body.setter
    def body(self, value: dict[str, Any]) -> None:
        self._body = value
        if self._index is not None:
            self._index.touch(self)

    @property
    def runner(self) -> asyncio.Task[None] | None:
        return self._runner

    @runner.setter
    def runner(self, value: asyncio.Task[None] | None) -> None:
        self._runner = value
        if self._index is not None:
            self._index.touch(self)

    @property
    def phase(self) -> TaskPhase:
        return TaskPhase((self._body.get("status") or {}).get("phase") or TaskPhase.PENDING)

    @property
    def running(self) -> bool:
        # a runner may outlive the final phase, removing what the Task left in Core
        return self.phase is TaskPhase.RUNNING or (
            self._runner is not None and not self.phase.finished
        )

    @property
    def releasing(self) -> bool:
        """Finished, but something it left in Core still has to be removed."""
        return self.phase.finished and bool((self._body.get("status") or {}).get("releases"))


class TaskIndex:
    """Entries by key, by rack and by TaskSpec, with the counts admission reads."""

    def __init__(self) -> None:
        self._all: dict[Key, Entry] = {}
        self._by_rack: dict[str, dict[Key, Entry]] = {}
        self._by_taskspec: dict[Key, dict[Key, Entry]] = {}
        self._flying: set[Key] = set()
        self._active: dict[Key, set[Key]] = {}  # TaskSpec -> its running Tasks
        self._failed: dict[Key, set[Key]] = {}  # TaskSpec -> its failed Tasks
        self._pending: dict[Key, set[Key]] = {}  # TaskSpec -> its Pending Tasks

    def __len__(self) -> int:
        return len(self._all)

    def __contains__(self, key: object) -> bool:
        return key in self._all

    def __getitem__(self, key: Key) -> Entry:
        return self._all[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._all)

    def get(self, key: Key) -> Entry | None:
        return self._all.get(key)

    def values(self) -> list[Entry]:
        return list(self._all.values())

    def add(self, entry: Entry) -> None:
        old = self._all.get(entry.key)
        if old is not None:
            self.pop(entry.key)
        self._all[entry.key] = entry
        self._by_rack.setdefault(entry.rack, {})[entry.key] = entry
        self._by_taskspec.setdefault(entry.taskspec, {})[entry.key] = entry
        entry._index = self
        self.touch(entry)

    def pop(self, key: Key) -> Entry | None:
        entry = self._all.pop(key, None)
        if entry is None:
            return None
        entry._index = None
        _discard(self._by_rack, entry.rack, key)
        _discard(self._by_taskspec, entry.taskspec, key)
        self._flying.discard(key)
        for counts in (self._active, self._failed, self._pending):
            _discard(counts, entry.taskspec, key)
        return entry

    def touch(self, entry: Entry) -> None:
        """Re-file an entry after its body or runner changed."""
        key, ts, phase = entry.key, entry.taskspec, entry.phase
        _file(self._flying, key, entry.running)
        _file(self._active.setdefault(ts, set()), key, entry.running)
        _file(self._failed.setdefault(ts, set()), key, phase is TaskPhase.FAILED)
        _file(self._pending.setdefault(ts, set()), key, phase is TaskPhase.PENDING)

    # -- reads -------------------------------------------------------------------

    def on_rack(self, rack: str) -> list[Entry]:
        return list(self._by_rack.get(rack, {}).values())

    def of_taskspec(self, taskspec: Key) -> list[Entry]:
        return list(self._by_taskspec.get(taskspec, {}).values())

    def racks(self) -> set[str]:
        return set(self._by_rack)

    def in_flight(self) -> int:
        """Tasks running (or resuming) across all TaskSpecs."""
        return len(self._flying)

    def active(self, taskspec: Key) -> int:
        return len(self._active.get(taskspec, ()))

    def failed(self, taskspec: Key) -> int:
        return len(self._failed.get(taskspec, ()))

    def pending_racks(self, taskspec: Key) -> set[str]:
        return {self._all[k].rack for k in self._pending.get(taskspec, ())}


def _file(members: set[Key], key: Key, belongs: bool) -> None:
    if belongs:
        members.add(key)
    else:
        members.discard(key)


def _discard(index: dict[Any, Any], group: Any, key: Key) -> None:
    members = index.get(group)
    if members is None:
        return
    if isinstance(members, dict):
        members.pop(key, None)
    else:
        members.discard(key)
    if not members:
        del index[group]
