"""The ledger: one entry per component touched by every state-changing call,
so tests and benchmarks can count hardware operations and find duplicates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    seq: int
    # Entries of one RPC share its call number.
    call: int
    time: float
    method: str
    component_id: str
    action: str
    request_id: str | None
    # gRPC status of the whole call ("OK", "UNAVAILABLE", ...).
    code: str
    # Per-component outcome ("SUCCESS", "NOT_FOUND", ...).
    result: str
    # Whether the simulated hardware state changed (or would have, for no-ops
    # that were accepted): false when the call was refused or failed first.
    applied: bool
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "call": self.call,
            "time": self.time,
            "method": self.method,
            "component_id": self.component_id,
            "action": self.action,
            "request_id": self.request_id,
            "code": self.code,
            "result": self.result,
            "applied": self.applied,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class Duplicate:
    request_id: str
    component_id: str
    method: str
    calls: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "component_id": self.component_id,
            "method": self.method,
            "calls": list(self.calls),
        }


@dataclass(slots=True)
class _Touch:
    component_id: str
    action: str
    result: str
    applied: bool
    details: Mapping[str, Any]


class CallRecord:
    """Entries of one RPC, buffered until its final status is known."""

    def __init__(self, method: str, request_id: str | None) -> None:
        self.method = method
        self.request_id = request_id
        self.touches: list[_Touch] = []

    def touch(
        self,
        component_id: str,
        action: str,
        *,
        result: str = "SUCCESS",
        applied: bool = True,
        **details: Any,
    ) -> None:
        self.touches.append(_Touch(component_id, action, result, applied, details))


class Ledger:
    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._calls = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(list(self._entries))

    def commit(self, record: CallRecord, *, code: str, time: float, applied: bool = True) -> int:
        """Store the call's entries with its final code. `applied=False`
        marks every touch as not applied (the call was refused up front)."""
        self._calls += 1
        touches = record.touches or [_Touch("", "", "", False, {})]
        for t in touches:
            self._seq += 1
            self._entries.append(
                LedgerEntry(
                    seq=self._seq,
                    call=self._calls,
                    time=time,
                    method=record.method,
                    component_id=t.component_id,
                    action=t.action,
                    request_id=record.request_id,
                    code=code,
                    result=t.result if applied else (t.result or code),
                    applied=t.applied and applied,
                    details=t.details,
                )
            )
        return self._calls

    def clear(self) -> None:
        self._entries.clear()

    def entries(
        self,
        *,
        method: str | None = None,
        component_id: str | None = None,
        request_id: str | None = None,
        action: str | None = None,
        code: str | None = None,
        applied: bool | None = None,
        since: int = 0,
    ) -> list[LedgerEntry]:
        """Entries matching every given filter; `since`: seq greater than this."""
        out = []
        for e in self._entries:
            if e.seq <= since:
                continue
            if method is not None and e.method != method:
                continue
            if component_id is not None and e.component_id != component_id:
                continue
            if request_id is not None and e.request_id != request_id:
                continue
            if action is not None and e.action != action:
                continue
            if code is not None and e.code != code:
                continue
            if applied is not None and e.applied != applied:
                continue
            out.append(e)
        return out

    def count(self, **filters: Any) -> int:
        return len(self.entries(**filters))

    def counts(self, by: str = "method", *, applied: bool | None = None) -> dict[str, int]:
        """Entries per value of one field (method, action, code, component_id...)."""
        c: Counter[str] = Counter()
        for e in self._entries:
            if applied is None or e.applied == applied:
                c[str(getattr(e, by))] += 1
        return dict(c)

    def duplicates(self, *, applied_only: bool = True) -> list[Duplicate]:
        """(request id, component, method) seen in more than one call. Calls
        without a request ID cannot be told apart and are ignored. With
        `applied_only`, only calls that changed state count (a retry of a call
        refused up front is not a duplicate)."""
        seen: dict[tuple[str, str, str], list[int]] = {}
        for e in self._entries:
            if not e.request_id or (applied_only and not e.applied):
                continue
            calls = seen.setdefault((e.request_id, e.component_id, e.method), [])
            if e.call not in calls:
                calls.append(e.call)
        return [
            Duplicate(rid, cid, m, tuple(calls))
            for (rid, cid, m), calls in seen.items()
            if len(calls) > 1
        ]
