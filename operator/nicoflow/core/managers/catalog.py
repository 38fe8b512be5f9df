"""Static catalog of the component managers this build ships, by type and
implementation name. Pure data: config validation reads it without pulling in
gRPC."""

from __future__ import annotations

from nicoflow.core.managers.base import Capability, Descriptor
from nicoflow.domain.types import ComponentType

NICO_PROVIDER = "nico"

# Types that have component managers; ToR switches, UMS and CDUs have none.
MANAGED_TYPES: tuple[ComponentType, ...] = (
    ComponentType.COMPUTE,
    ComponentType.NVSWITCH,
    ComponentType.POWERSHELF,
)

_COMPUTE_CAPS = frozenset(
    {
        Capability.INJECT_EXPECTATION,
        Capability.POWER_CONTROL,
        Capability.POWER_STATUS,
        Capability.FIRMWARE_CONTROL,
        Capability.FIRMWARE_STATUS,
        Capability.BRING_UP_CONTROL,
        Capability.BRING_UP_STATUS,
    }
)

_MOCK_CAPS = _COMPUTE_CAPS

COMPUTE_NICOLEGACY = Descriptor(
    ComponentType.COMPUTE, "nicolegacy", _COMPUTE_CAPS, (NICO_PROVIDER,)
)
COMPUTE_NICO = Descriptor(ComponentType.COMPUTE, "nico", _COMPUTE_CAPS, (NICO_PROVIDER,))
NVSWITCH_NICO = Descriptor(
    ComponentType.NVSWITCH,
    "nico",
    frozenset(
        {
            Capability.INJECT_EXPECTATION,
            Capability.POWER_CONTROL,
            Capability.POWER_STATUS,
            Capability.FIRMWARE_CONTROL,
            Capability.FIRMWARE_STATUS,
            Capability.FIRMWARE_CONSISTENCY_CHECK,
        }
    ),
    (NICO_PROVIDER,),
)
POWERSHELF_NICO = Descriptor(
    ComponentType.POWERSHELF,
    "nico",
    frozenset(
        {
            Capability.INJECT_EXPECTATION,
            Capability.POWER_CONTROL,
            Capability.POWER_STATUS,
            Capability.FIRMWARE_CONTROL,
            Capability.FIRMWARE_STATUS,
        }
    ),
    (NICO_PROVIDER,),
)


def mock_descriptor(component_type: ComponentType) -> Descriptor:
    return Descriptor(component_type, "mock", _MOCK_CAPS)


CATALOG: dict[tuple[ComponentType, str], Descriptor] = {
    (d.type, d.implementation): d
    for d in (
        COMPUTE_NICOLEGACY,
        COMPUTE_NICO,
        NVSWITCH_NICO,
        POWERSHELF_NICO,
        *(mock_descriptor(t) for t in MANAGED_TYPES),
    )
}


def implementations(component_type: ComponentType) -> list[str]:
    return sorted(impl for (t, impl) in CATALOG if t == component_type)


def lookup(component_type: ComponentType, implementation: str) -> Descriptor:
    try:
        return CATALOG[(component_type, implementation)]
    except KeyError:
        allowed = ", ".join(implementations(component_type)) or "none"
        raise ValueError(
            f"unknown {component_type.value} component manager {implementation!r}; "
            f"expected one of: {allowed}"
        ) from None
