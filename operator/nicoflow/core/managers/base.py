"""The component-manager contract: what a manager is (its descriptor), what it
can do (capabilities), and the task descriptions it is handed.

A manager drives every component of one type in a task with one call; each
call names components by their NICo Core IDs. A manager implements only the
capabilities it advertises; the others raise UnsupportedCapability."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from nicoflow.core.managers.results import (
    BringUpStatusMap,
    ComponentResults,
    ConsistencyReport,
    FirmwareStatusMap,
    PowerStatusMap,
)
from nicoflow.domain.types import ComponentType, Leftover, OperationCode


class Capability(StrEnum):
    INJECT_EXPECTATION = "InjectExpectation"
    POWER_CONTROL = "PowerControl"
    POWER_STATUS = "PowerStatus"
    FIRMWARE_CONTROL = "FirmwareControl"
    FIRMWARE_STATUS = "FirmwareStatus"
    BRING_UP_CONTROL = "BringUpControl"
    BRING_UP_STATUS = "BringUpStatus"
    FIRMWARE_CONSISTENCY_CHECK = "FirmwareConsistencyCheck"


@dataclass(frozen=True)
class Descriptor:
    """Identity (type + implementation) and what the manager can do."""

    type: ComponentType
    implementation: str
    capabilities: frozenset[Capability]
    required_providers: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.type.value}/{self.implementation}"

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True)
class Target:
    """All components of one type that one call acts on, by Core ID."""

    type: ComponentType
    component_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        # Duplicates would make per-component results ambiguous.
        object.__setattr__(self, "component_ids", tuple(dict.fromkeys(self.component_ids)))


@dataclass(frozen=True)
class PowerControlTaskInfo:
    operation: OperationCode
    # Sent as gRPC metadata `x-request-id`; per-component calls derive from it.
    idempotency_key: str
    # Operator asked to skip the readiness gate; Core also skips its state controller.
    override_readiness_check: bool = False


@dataclass(frozen=True)
class FirmwareControlTaskInfo:
    idempotency_key: str
    sub_targets: tuple[str, ...] = ()
    target_version: str = ""
    start: datetime | None = None
    end: datetime | None = None
    override_readiness_check: bool = False


@dataclass(frozen=True)
class BringUpTaskInfo:
    idempotency_key: str


@dataclass(frozen=True)
class ExpectationInfo:
    """Payloads for AddExpected{Machine,Switch,PowerShelf}, one per component
    (field names are those of the Core messages)."""

    idempotency_key: str
    entries: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


class ManagerError(Exception):
    """A manager could not carry out a request (bad input, Core refused)."""


class UnsupportedCapability(ManagerError):
    def __init__(self, descriptor: Descriptor, capability: Capability) -> None:
        have = ", ".join(sorted(c.value for c in descriptor.capabilities)) or "none"
        super().__init__(
            f"component manager {descriptor.key} does not support {capability.value} "
            f"(it supports: {have})"
        )
        self.descriptor = descriptor
        self.capability = capability


class ComponentManager:
    """Base class; subclasses override the methods of the capabilities they
    advertise in `descriptor`."""

    descriptor: Descriptor

    def _unsupported(self, capability: Capability) -> UnsupportedCapability:
        return UnsupportedCapability(self.descriptor, capability)

    async def inject_expectation(self, target: Target, info: ExpectationInfo) -> ComponentResults:
        raise self._unsupported(Capability.INJECT_EXPECTATION)

    async def power_control(self, target: Target, info: PowerControlTaskInfo) -> ComponentResults:
        raise self._unsupported(Capability.POWER_CONTROL)

    async def get_power_status(self, target: Target) -> PowerStatusMap:
        raise self._unsupported(Capability.POWER_STATUS)

    async def release(self, target: Target, leftover: Leftover) -> list[str]:
        """Take away what Flow's commands left in Core for these components (a
        power command interrupted or whose clean-up failed; a DPU update that
        is over); the components that still hold it. Idempotent; nothing to
        do for most managers."""
        return []

    async def firmware_control(
        self, target: Target, info: FirmwareControlTaskInfo
    ) -> ComponentResults:
        raise self._unsupported(Capability.FIRMWARE_CONTROL)

    async def get_firmware_status(
        self, target: Target, sub_targets: Sequence[str] = (), target_version: str = ""
    ) -> FirmwareStatusMap:
        """Progress of the update `sub_targets` and `target_version` asked for
        (as in firmware_control)."""
        raise self._unsupported(Capability.FIRMWARE_STATUS)

    async def bring_up_control(self, target: Target, info: BringUpTaskInfo) -> ComponentResults:
        raise self._unsupported(Capability.BRING_UP_CONTROL)

    async def get_bring_up_status(self, target: Target) -> BringUpStatusMap:
        raise self._unsupported(Capability.BRING_UP_STATUS)

    async def verify_firmware_consistency(self, target: Target) -> ConsistencyReport:
        raise self._unsupported(Capability.FIRMWARE_CONSISTENCY_CHECK)

    def check_target(self, target: Target) -> None:
        if target.type != self.descriptor.type:
            raise ManagerError(
                f"component manager {self.descriptor.key} cannot act on "
                f"{target.type.value} components"
            )
