"""Firmware update jobs: queued -> in_progress -> verifying -> completed, or
failed, over a configurable duration. Evaluated lazily like power."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (JobState.QUEUED, JobState.IN_PROGRESS, JobState.VERIFYING)


@dataclass(frozen=True)
class FirmwareTimings:
    """A job spends `total` seconds: 10% queued, 70% installing, 20% verifying."""

    total: float = 30.0

    @property
    def queued(self) -> float:
        return self.total * 0.1

    @property
    def install(self) -> float:
        return self.total * 0.7

    @property
    def verify(self) -> float:
        return self.total * 0.2


class JobKind(StrEnum):
    # UpdateComponentFirmware (Core's component manager).
    COMPONENT = "component"
    # Core's host reprovisioning (auto-update inside a firmware window).
    HOST_REPROVISION = "host_reprovision"


@dataclass(slots=True)
class FirmwareJob:
    component_id: str
    targets: dict[str, str]
    started_at: float
    timings: FirmwareTimings
    kind: JobKind = JobKind.COMPONENT
    # What the caller asked for, echoed in status (empty: the desired bundle).
    target_version: str = ""
    # Set when the job will fail during installation.
    failure: str | None = None
    # A stuck job never leaves installation.
    stuck: bool = False
    applied: bool = False
    history: list[str] = field(default_factory=list)

    def state(self, now: float) -> JobState:
        t = now - self.started_at
        t_install = self.timings.queued
        t_verify = t_install + self.timings.install
        t_done = t_verify + self.timings.verify
        if t < t_install:
            return JobState.QUEUED
        if t < t_verify or self.stuck:
            return JobState.IN_PROGRESS
        if self.failure is not None:
            return JobState.FAILED
        if t < t_done:
            return JobState.VERIFYING
        return JobState.COMPLETED

    def changed_at(self, now: float) -> float:
        """When the job entered its current state."""
        marks = {
            JobState.QUEUED: self.started_at,
            JobState.IN_PROGRESS: self.started_at + self.timings.queued,
            JobState.VERIFYING: self.started_at + self.timings.queued + self.timings.install,
            JobState.FAILED: self.started_at + self.timings.queued + self.timings.install,
            JobState.COMPLETED: self.started_at + self.timings.total,
        }
        return marks[self.state(now)]

    def same_request(self, targets: Mapping[str, str]) -> bool:
        return dict(targets) == self.targets


def matches(actual: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Every wanted part is at the wanted version (extra parts don't matter)."""
    return all(actual.get(k) == v for k, v in wanted.items())
