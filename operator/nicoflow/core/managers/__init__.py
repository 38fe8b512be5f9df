"""Component managers: one per component type, selected by configuration,
driving components through NICo Core."""

from nicoflow.core.managers.base import (
    BringUpTaskInfo,
    Capability,
    ComponentManager,
    Descriptor,
    ExpectationInfo,
    FirmwareControlTaskInfo,
    ManagerError,
    PowerControlTaskInfo,
    Target,
    UnsupportedCapability,
)
from nicoflow.core.managers.results import (
    BringUpReading,
    BringUpState,
    ComponentResults,
    ConsistencyReport,
    FirmwareReading,
    FirmwareState,
    Outcome,
    PowerReading,
    PowerStatus,
)

__all__ = [
    "BringUpReading",
    "BringUpState",
    "BringUpTaskInfo",
    "Capability",
    "ComponentManager",
    "ComponentResults",
    "ConsistencyReport",
    "Descriptor",
    "ExpectationInfo",
    "FirmwareControlTaskInfo",
    "FirmwareReading",
    "FirmwareState",
    "ManagerError",
    "Outcome",
    "PowerControlTaskInfo",
    "PowerReading",
    "PowerStatus",
    "Target",
    "UnsupportedCapability",
]
