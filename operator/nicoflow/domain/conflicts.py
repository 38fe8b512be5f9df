"""Which Tasks may run together on one rack, as data, and per-rack admission.

The table is the original service's: power on power shelves takes the whole
rack; power or firmware work on compute or switches conflicts only where the
component sets overlap; bring-up takes the whole rack. Only running Tasks block;
waiting ones queue behind them in strict FIFO order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from nicoflow.domain.types import ComponentType, ConflictStrategy, OperationType

MAX_WAITING_PER_RACK = 5
DEFAULT_QUEUE_TIMEOUT_SECONDS = 3600


@dataclass(frozen=True)
class Footprint:
    """What a Task touches on its rack."""

    name: str
    operation_type: OperationType
    components: frozenset[tuple[ComponentType, str]]

    @property
    def types(self) -> frozenset[ComponentType]:
        return frozenset(t for t, _ in self.components)


class Scope(StrEnum):
    RACK = "rack"
    OVERLAP = "overlapping components"


@dataclass(frozen=True)
class Rule:
    a_operation: OperationType | None  # None: any operation
    a_type: ComponentType | None  # None: any component type
    b_operation: OperationType | None
    b_type: ComponentType | None
    scope: Scope


P, F, B = OperationType.POWER_CONTROL, OperationType.FIRMWARE_CONTROL, OperationType.BRING_UP
PS, NVS, C = ComponentType.POWERSHELF, ComponentType.NVSWITCH, ComponentType.COMPUTE

RULES: tuple[Rule, ...] = (
    Rule(P, PS, P, None, Scope.RACK),
    Rule(P, PS, F, None, Scope.RACK),
    Rule(P, C, P, C, Scope.OVERLAP),
    Rule(P, NVS, P, NVS, Scope.OVERLAP),
    Rule(P, C, F, C, Scope.OVERLAP),
    Rule(P, NVS, F, NVS, Scope.OVERLAP),
    Rule(F, None, F, None, Scope.OVERLAP),
    Rule(B, None, None, None, Scope.RACK),
)


def _side_matches(fp: Footprint, op: OperationType | None, ctype: ComponentType | None) -> bool:
    if op is not None and fp.operation_type != op:
        return False
    return ctype is None or ctype in fp.types


def _directed(rule: Rule, a: Footprint, b: Footprint) -> bool:
    if not (
        _side_matches(a, rule.a_operation, rule.a_type)
        and _side_matches(b, rule.b_operation, rule.b_type)
    ):
        return False
    if rule.scope is Scope.RACK:
        return True
    return bool(a.components & b.components)


def conflict(incoming: Footprint, running: Footprint) -> Rule | None:
    """The first rule under which the two Tasks may not run together, if any."""
    for rule in RULES:
        if _directed(rule, incoming, running) or _directed(rule, running, incoming):
            return rule
    return None


def first_conflict(
    incoming: Footprint, running: Iterable[Footprint]
) -> tuple[Footprint, Rule] | None:
    for other in running:
        rule = conflict(incoming, other)
        if rule is not None:
            return other, rule
    return None


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Queue:
    position: int  # 1 = next in line
    behind: str


@dataclass(frozen=True)
class Reject:
    reason: str


Admission = Start | Queue | Reject


@dataclass(frozen=True)
class Waiting:
    footprint: Footprint
    queued_at: datetime
    expires_at: datetime


def admit(
    incoming: Footprint,
    strategy: ConflictStrategy,
    running: Sequence[Footprint],
    waiting: Sequence[Waiting],
    *,
    max_waiting: int = MAX_WAITING_PER_RACK,
) -> Admission:
    """Decide for a new Task on a rack given what runs and waits there.

    A Task that conflicts with nothing running still queues when older Tasks
    wait and it conflicts with one of them: jumping the queue would starve them."""
    hit = first_conflict(incoming, running)
    blocker = hit[0].name if hit else None
    if blocker is None:
        ahead = first_conflict(incoming, (w.footprint for w in waiting))
        if ahead is None:
            return Start()
        blocker = ahead[0].name
    if strategy is ConflictStrategy.REJECT:
        rule = hit[1] if hit else None
        scope = f" ({rule.scope})" if rule else " (queued ahead)"
        return Reject(f"conflicts with Task {blocker} on the same rack{scope}")
    if len(waiting) >= max_waiting:
        return Reject(
            f"the rack's waiting queue is full ({len(waiting)}/{max_waiting}); "
            f"retry after Task {blocker} finishes"
        )
    return Queue(position=len(waiting) + 1, behind=blocker)


def promotable(
    running: Sequence[Footprint], waiting: Sequence[Waiting], now: datetime
) -> tuple[list[str], list[str]]:
    """(names to start now, names whose queue time ran out), oldest first.

    Strict FIFO: the first waiting Task that still conflicts stops promotion,
    so a later, smaller Task never overtakes an earlier one."""
    expired = [w.footprint.name for w in waiting if w.expires_at <= now]
    active = list(running)
    start: list[str] = []
    for w in sorted(waiting, key=lambda w: (w.queued_at, w.footprint.name)):
        if w.footprint.name in expired:
            continue
        if first_conflict(w.footprint, active) is not None:
            break
        start.append(w.footprint.name)
        active.append(w.footprint)
    return start, expired
