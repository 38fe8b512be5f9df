"""The ledger: one entry per component touched by every state-changing call,
so tests and benchmarks can count hardware operations and find duplicates.

Two views of it: entries per call (what each RPC did, by request id), and the
commands *delivered* to each component whatever request id they came under —
the physical view, where a resend under a fresh key is as visible as a repeat
under the same key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class CommandClass(StrEnum):
    """How a delivered command counts in the physical view."""

    # Reaches the hardware: every delivery Core did not refuse counts, a no-op
    # included (a second power button press is a second press).
    PHYSICAL = "physical"
    # A state Core keeps (desired power, firmware window): counts when Core
    # accepted it; Core refusing a repeat ("already set") changed nothing.
    SETTING = "setting"
    # Keyed records (health-report overrides, expected inventory) that callers
    # may write again by design; never counted, only kept.
    BOOKKEEPING = "bookkeeping"


_PHYSICAL = frozenset(
    {
        "on",
        "graceful_shutdown",
        "force_off",
        "graceful_restart",
        "force_restart",
        "ac_powercycle",
        "update_firmware",
        "allow_ingestion",
        "instance_power_reset",
        "dpu_reprovision_set",
        "dpu_reprovision_restart",
    }
)
_SETTINGS_PREFIXES = ("desired_", "set_firmware_window", "autoupdate_")


def command_class(action: str) -> CommandClass:
    if action in _PHYSICAL:
        return CommandClass.PHYSICAL
    if action.startswith(_SETTINGS_PREFIXES):
        return CommandClass.SETTING
    return CommandClass.BOOKKEEPING


@dataclass(frozen=True, slots=True)
class Delivery:
    """One command as it reached one component."""

    seq: int
    call: int
    time: float
    component_id: str
    command: str
    method: str
    request_id: str | None
    # What the caller was told: "OK", or the gRPC code it got instead (the
    # reply lost after the command applied, or Core refusing the call).
    reply: str
    # Core took the command for this component (False: it refused it).
    accepted: bool
    counted: bool
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "call": self.call,
            "time": self.time,
            "component_id": self.component_id,
            "command": self.command,
            "method": self.method,
            "request_id": self.request_id,
            "reply": self.reply,
            "accepted": self.accepted,
            "counted": self.counted,
            "class": command_class(self.command).value,
            "details": dict(self.details),
        }


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

    def delivered(
        self, *, component_id: str | None = None, since: int = 0
    ) -> dict[str, list[Delivery]]:
        """Per component, every command that reached it, in order. A call
        refused before it reached any component (an injected fault "before",
        a malformed request) delivered nothing."""
        out: dict[str, list[Delivery]] = {}
        for e in self._entries:
            if e.seq <= since or not e.action or not e.component_id:
                continue
            if component_id is not None and e.component_id != component_id:
                continue
            accepted = e.result == "SUCCESS"
            cls = command_class(e.action)
            counted = accepted and cls is not CommandClass.BOOKKEEPING
            out.setdefault(e.component_id, []).append(
                Delivery(
                    seq=e.seq,
                    call=e.call,
                    time=e.time,
                    component_id=e.component_id,
                    command=e.action,
                    method=e.method,
                    request_id=e.request_id,
                    reply=e.code,
                    accepted=accepted,
                    counted=counted,
                    details=e.details,
                )
            )
        return out

    def commands(self, *, since: int = 0) -> dict[str, list[str]]:
        """Per component, the counted commands it received, in order (the
        sequence a test compares with what the rule plans)."""
        return {
            cid: [d.command for d in ds if d.counted]
            for cid, ds in self.delivered(since=since).items()
            if any(d.counted for d in ds)
        }

    def repeats(self, *, since: int = 0) -> dict[str, list[str]]:
        """Components that received a counted command more than once since
        `since`: component -> the repeated commands. In a window where each
        component is meant to get each command once, this must be empty."""
        out: dict[str, list[str]] = {}
        for cid, commands in self.commands(since=since).items():
            seen = Counter(commands)
            again = sorted(c for c, n in seen.items() if n > 1)
            if again:
                out[cid] = again
        return out

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
