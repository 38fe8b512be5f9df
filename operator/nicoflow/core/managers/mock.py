"""An in-memory component manager for any type, for narrow unit tests of
callers (never a stand-in for Core in integration tests).

Power commands take effect at once; firmware jobs complete after a set number
of status reads; bring-up opens the ingestion gate. Components listed in
`failing` fail every command. Every command is recorded in `calls`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nicoflow.core.managers.base import (
    BringUpTaskInfo,
    ComponentManager,
    ExpectationInfo,
    FirmwareControlTaskInfo,
    PowerControlTaskInfo,
    Target,
)
from nicoflow.core.managers.catalog import mock_descriptor
from nicoflow.core.managers.results import (
    BringUpReading,
    BringUpState,
    BringUpStatusMap,
    ComponentResults,
    FirmwareReading,
    FirmwareState,
    FirmwareStatusMap,
    Outcome,
    PowerReading,
    PowerStatus,
    PowerStatusMap,
)
from nicoflow.domain.types import ComponentType, OperationCode

_OFF = frozenset({OperationCode.POWER_OFF, OperationCode.FORCE_POWER_OFF})


@dataclass(frozen=True)
class MockCall:
    method: str
    idempotency_key: str
    component_ids: tuple[str, ...]


@dataclass
class MockManager(ComponentManager):
    component_type: ComponentType
    firmware_polls_to_complete: int = 1
    initial_power: PowerStatus = PowerStatus.OFF
    failing: set[str] = field(default_factory=set)
    power: dict[str, PowerStatus] = field(default_factory=dict)
    firmware_left: dict[str, int] = field(default_factory=dict)
    ingested: set[str] = field(default_factory=set)
    expectations: list[dict[str, object]] = field(default_factory=list)
    calls: list[MockCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.descriptor = mock_descriptor(self.component_type)

    def _record(self, method: str, key: str, target: Target) -> None:
        self.check_target(target)
        self.calls.append(MockCall(method, key, target.component_ids))

    def _outcomes(self, ids: tuple[str, ...]) -> ComponentResults:
        return {
            cid: Outcome.failure("mock failure") if cid in self.failing else Outcome.success()
            for cid in ids
        }

    async def inject_expectation(self, target: Target, info: ExpectationInfo) -> ComponentResults:
        self._record("InjectExpectation", info.idempotency_key, target)
        self.expectations.extend(dict(e) for e in info.entries)
        return {
            str(e.get("bmc_mac_address", i)): Outcome.success() for i, e in enumerate(info.entries)
        }

    async def power_control(self, target: Target, info: PowerControlTaskInfo) -> ComponentResults:
        self._record("PowerControl", info.idempotency_key, target)
        state = PowerStatus.OFF if info.operation in _OFF else PowerStatus.ON
        results = self._outcomes(target.component_ids)
        for cid, outcome in results.items():
            if outcome.ok:
                self.power[cid] = state
        return results

    async def get_power_status(self, target: Target) -> PowerStatusMap:
        self.check_target(target)
        return {
            cid: PowerReading(self.power.get(cid, self.initial_power))
            for cid in target.component_ids
        }

    async def firmware_control(
        self, target: Target, info: FirmwareControlTaskInfo
    ) -> ComponentResults:
        self._record("FirmwareControl", info.idempotency_key, target)
        results = self._outcomes(target.component_ids)
        for cid, outcome in results.items():
            if outcome.ok:
                self.firmware_left[cid] = self.firmware_polls_to_complete
        return results

    async def get_firmware_status(
        self, target: Target, sub_targets: Sequence[str] = (), target_version: str = ""
    ) -> FirmwareStatusMap:
        self.check_target(target)
        out: FirmwareStatusMap = {}
        for cid in target.component_ids:
            if cid in self.failing:
                out[cid] = FirmwareReading(FirmwareState.FAILED, "mock failure")
            elif cid not in self.firmware_left:
                out[cid] = FirmwareReading(FirmwareState.UNKNOWN, "no firmware job")
            elif self.firmware_left[cid] > 0:
                self.firmware_left[cid] -= 1
                out[cid] = FirmwareReading(FirmwareState.IN_PROGRESS)
            else:
                out[cid] = FirmwareReading(FirmwareState.COMPLETED)
        return out

    async def bring_up_control(self, target: Target, info: BringUpTaskInfo) -> ComponentResults:
        self._record("BringUpControl", info.idempotency_key, target)
        results = self._outcomes(target.component_ids)
        self.ingested.update(cid for cid, r in results.items() if r.ok)
        return results

    async def get_bring_up_status(self, target: Target) -> BringUpStatusMap:
        self.check_target(target)
        return {
            cid: BringUpReading(
                BringUpState.INGESTION_MACHINE_CREATED
                if cid in self.ingested
                else BringUpState.WAITING_FOR_INGESTION
            )
            for cid in target.component_ids
        }
