"""What the engine is given and what it asks for.

A Plan is the immutable part of a Task (its spec); Calls are the Core work
the engine wants done next; Outcomes are what the caller observed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from nicoflow.domain.rules import RuleDefinition
from nicoflow.domain.types import ComponentType, Leftover, OperationCode


@dataclass(frozen=True)
class Component:
    id: str  # Core id: every hardware call names a component by it
    name: str = ""


@dataclass(frozen=True)
class Options:
    target_version: str = ""
    sub_targets: tuple[str, ...] = ()
    override_readiness: bool = False
    window_start: int | None = None  # unix seconds, legacy firmware window
    window_end: int | None = None


@dataclass(frozen=True)
class Plan:
    task_uid: str
    operation: OperationCode
    components: Mapping[ComponentType, tuple[Component, ...]]
    rule: RuleDefinition
    options: Options = field(default_factory=Options)
    cancel: bool = False
    # how long a command of unknown outcome is looked for in Core's state
    # before it counts as not received (the operator's --confirm-window)
    confirm_window: float = 30.0
    # poll faster than the rule's pollInterval at first (built-in rules, whose
    # intervals are Flow's own defaults); a rule someone wrote is taken at its word
    adaptive_polling: bool = False

    def of(self, ctype: ComponentType) -> tuple[Component, ...]:
        return self.components.get(ctype, ())


class CallKind(StrEnum):
    POWER_CONTROL = "PowerControl"
    POWER_STATUS = "GetPowerStatus"
    FIRMWARE_CONTROL = "FirmwareControl"
    FIRMWARE_STATUS = "GetFirmwareStatus"
    BRING_UP_CONTROL = "BringUpControl"
    BRING_UP_STATUS = "GetBringUpStatus"
    INJECT_EXPECTATION = "InjectExpectation"
    FIRMWARE_CONSISTENCY = "VerifyFirmwareConsistency"
    # take away what commands left in Core (see domain.types.Leftover)
    RELEASE = "ReleaseLeftovers"

    @property
    def mutating(self) -> bool:
        return self in _MUTATING


_MUTATING = frozenset(
    {
        CallKind.POWER_CONTROL,
        CallKind.FIRMWARE_CONTROL,
        CallKind.BRING_UP_CONTROL,
        CallKind.INJECT_EXPECTATION,
    }
)


@dataclass(frozen=True)
class Call:
    stage: int
    component_type: ComponentType  # the step that asked
    kind: CallKind
    ids: tuple[str, ...]
    target_type: ComponentType | None = None  # reads of another type (VerifyReachability)
    operation: OperationCode | None = None
    target_version: str = ""
    sub_targets: tuple[str, ...] = ()
    key: str | None = None  # idempotency key of a state-changing call
    recovery: bool = False  # a read made to learn whether an earlier call landed
    release: bool = False  # ... after a restart: also undo what the interrupted call left
    settle: bool = False  # a read before a power command: is an earlier one still under way?
    leftover: Leftover | None = None  # RELEASE: what to take away

    @property
    def addressed_type(self) -> ComponentType:
        return self.target_type or self.component_type


class Observed(StrEnum):
    """Per-component observations, normalised across component managers."""

    OK = "ok"
    FAILED = "failed"
    ON = "on"
    OFF = "off"
    POWERING_ON = "powering_on"
    POWERING_OFF = "powering_off"
    UNKNOWN = "unknown"
    IDLE = "idle"  # no firmware update requested
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    NOT_DISCOVERED = "not_discovered"
    WAITING_FOR_INGESTION = "waiting_for_ingestion"
    MACHINE_NOT_CREATED = "machine_not_created"
    MACHINE_CREATED = "machine_created"


@dataclass(frozen=True)
class Result:
    state: Observed
    error: str = ""
    # when a firmware job entered its reported state (a finished job older
    # than a command is not that command's job)
    changed_at: datetime | None = None
    transient: bool = False  # Core could not take the call: retry later, not a failed attempt
    # a command that failed this way may have applied all the same (lost reply)
    uncertain: bool = False
    # the call left this in Core for a RELEASE call to take away
    cleanup: Leftover | None = None


@dataclass(frozen=True)
class Outcome:
    call: Call
    results: Mapping[str, Result] = field(default_factory=dict)
    error: str = ""  # the whole call failed (after the client's own retries)
    transient: bool = False  # ... because Core could not take it
    uncertain: bool = False  # ... in a way that does not prove the call did not apply

    def of(self, component_id: str) -> Result:
        """A component the answer left out is unknown, never a success."""
        if self.error:
            return Result(
                Observed.FAILED, self.error, transient=self.transient, uncertain=self.uncertain
            )
        return self.results.get(
            component_id, Result(Observed.UNKNOWN, "no result for this component")
        )


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str
