"""Core's view of a machine during bring-up: the BMC is explored, ingestion
waits for permission (when paused), then the machine object is created."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class IngestionState(IntEnum):
    # Values are the wire numbers of forge.MachineIngestionState.
    NOT_DISCOVERED = 0
    WAITING_FOR_INGESTION = 1
    MACHINE_NOT_CREATED = 2
    MACHINE_CREATED = 3


@dataclass(slots=True)
class Ingestion:
    """`created`: ingested before the simulator started. Otherwise the BMC is
    explored from `discovered_at` (None: Core does not know the endpoint yet,
    e.g. no expected-inventory entry), and with `paused` the machine waits for
    AllowIngestionAndPowerOn (`allowed_at`); creation takes `latency`."""

    created: bool = True
    discovered_at: float | None = None
    paused: bool = True
    allowed_at: float | None = None
    latency: float = 5.0

    def created_at(self) -> float | None:
        if self.created:
            return float("-inf")
        if self.discovered_at is None:
            return None
        if not self.paused:
            return self.discovered_at + self.latency
        if self.allowed_at is None:
            return None
        return max(self.discovered_at, self.allowed_at) + self.latency

    def state(self, now: float) -> IngestionState:
        done = self.created_at()
        if done is not None and now >= done:
            return IngestionState.MACHINE_CREATED
        if self.discovered_at is None or now < self.discovered_at:
            return IngestionState.NOT_DISCOVERED
        if self.paused and self.allowed_at is None:
            return IngestionState.WAITING_FOR_INGESTION
        return IngestionState.MACHINE_NOT_CREATED

    def exists(self, now: float) -> bool:
        return self.state(now) == IngestionState.MACHINE_CREATED

    def discover(self, at: float) -> None:
        if self.discovered_at is None or at < self.discovered_at:
            self.discovered_at = at

    def allow(self, at: float) -> None:
        if self.allowed_at is None:
            self.allowed_at = at
