"""Per-component results of manager calls.

Every map is keyed by Core component ID and, unlike the original service,
always holds every requested ID: a component Core did not report on is
filled in as unknown with an error, so "no news" never reads as success."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from nicoflow.core.client import CoreError
from nicoflow.domain.types import Leftover


@dataclass(frozen=True)
class Outcome:
    """Result of a state-changing call for one component."""

    ok: bool
    error: str = ""
    transient: bool = False  # Core could not take the call; a later try may succeed
    # The call may have applied all the same (its reply was lost): Core's
    # state must be read before it is sent again.
    uncertain: bool = False
    # The call left this in Core for the caller to take away (release) later.
    cleanup: Leftover | None = None
    # Nothing was needed: the component already is where the call would take it.
    done: bool = False

    @classmethod
    def success(cls) -> Outcome:
        return cls(ok=True)

    @classmethod
    def already(cls) -> Outcome:
        """Success with nothing to do (e.g. firmware already at the target)."""
        return cls(ok=True, done=True)

    @classmethod
    def failure(cls, error: str, *, transient: bool = False, uncertain: bool = False) -> Outcome:
        return cls(ok=False, error=error, transient=transient, uncertain=uncertain)

    @classmethod
    def from_error(cls, exc: CoreError, prefix: str = "") -> Outcome:
        """A failed Core call, with what its status code says about whether it applied."""
        text = f"{prefix}{exc}"
        return cls(ok=False, error=text, transient=exc.transient, uncertain=exc.uncertain)


ComponentResults = dict[str, Outcome]


def all_ok(results: Mapping[str, Outcome]) -> bool:
    return all(r.ok for r in results.values())


def failures(results: Mapping[str, Outcome]) -> dict[str, str]:
    return {cid: r.error for cid, r in results.items() if not r.ok}


class PowerStatus(StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"
    REBOOTING = "rebooting"
    # In transition: the command has landed, the hardware has not settled yet.
    # The engine relies on these after a restart to tell a call that reached
    # Core from one that did not.
    POWERING_ON = "powering_on"
    POWERING_OFF = "powering_off"


@dataclass(frozen=True)
class PowerReading:
    state: PowerStatus
    error: str = ""


PowerStatusMap = dict[str, PowerReading]


class FirmwareState(StrEnum):
    # no update is requested for the component (nothing queued or running)
    IDLE = "idle"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in (FirmwareState.COMPLETED, FirmwareState.FAILED)


@dataclass(frozen=True)
class FirmwareReading:
    state: FirmwareState
    error: str = ""
    # when the update entered this state, as Core reports it (None: not said)
    changed_at: datetime | None = None
    # the update is over and left this for the caller to take away (release)
    cleanup: Leftover | None = None


FirmwareStatusMap = dict[str, FirmwareReading]


class BringUpState(StrEnum):
    NOT_DISCOVERED = "not_discovered"
    WAITING_FOR_INGESTION = "waiting_for_ingestion"
    INGESTION_MACHINE_NOT_CREATED = "ingestion_machine_not_created"
    INGESTION_MACHINE_CREATED = "ingestion_machine_created"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class BringUpReading:
    state: BringUpState
    error: str = ""


BringUpStatusMap = dict[str, BringUpReading]


@dataclass(frozen=True)
class ConsistencyReport:
    """Whether all components run the same firmware versions."""

    consistent: bool
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


MISSING_FROM_CORE = "Core returned no status for this component"


def complete_power(requested: Iterable[str], got: Mapping[str, PowerReading]) -> PowerStatusMap:
    """Exactly the requested IDs; absent ones become unknown with an error."""
    missing = PowerReading(PowerStatus.UNKNOWN, MISSING_FROM_CORE)
    return {cid: got.get(cid, missing) for cid in requested}


def complete_firmware(
    requested: Iterable[str], got: Mapping[str, FirmwareReading]
) -> FirmwareStatusMap:
    missing = FirmwareReading(FirmwareState.UNKNOWN, MISSING_FROM_CORE)
    return {cid: got.get(cid, missing) for cid in requested}


def complete_bring_up(
    requested: Iterable[str], got: Mapping[str, BringUpReading]
) -> BringUpStatusMap:
    missing = BringUpReading(BringUpState.UNKNOWN, MISSING_FROM_CORE)
    return {cid: got.get(cid, missing) for cid in requested}


def complete_results(
    requested: Iterable[str], got: Mapping[str, Outcome], *, missing: Outcome
) -> ComponentResults:
    """Exactly the requested IDs; the caller decides what silence means for a
    command (Core answers only for components it had something to say about)."""
    return {cid: got.get(cid, missing) for cid in requested}
