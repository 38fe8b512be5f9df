"""Builds the active component manager for each configured type, and answers
"which manager handles X, and can it do Y"."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from nicoflow.core.client import CoreClient, CoreClientSettings
from nicoflow.core.config import ComponentManagerConfig
from nicoflow.core.managers.base import (
    Capability,
    ComponentManager,
    Descriptor,
    ManagerError,
    UnsupportedCapability,
)
from nicoflow.core.managers.catalog import NICO_PROVIDER, lookup
from nicoflow.core.managers.mock import MockManager
from nicoflow.core.managers.nico_compute import NicoComputeManager
from nicoflow.core.managers.nicolegacy_compute import NicoLegacyComputeManager
from nicoflow.core.managers.nvswitch import NvSwitchManager
from nicoflow.core.managers.powershelf import PowerShelfManager
from nicoflow.domain.types import ComponentType

Sleep = Callable[[float], Awaitable[None]]
Now = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _build(
    descriptor: Descriptor,
    config: ComponentManagerConfig,
    core: CoreClient | None,
    sleep: Sleep,
    now: Now,
) -> ComponentManager:
    if descriptor.implementation == "mock":
        return MockManager(descriptor.type)
    if core is None:
        raise ManagerError(
            f"component manager {descriptor.key} needs the {NICO_PROVIDER} provider "
            "(a NICo Core client) but none was given"
        )
    match (descriptor.type, descriptor.implementation):
        case (ComponentType.COMPUTE, "nicolegacy"):
            return NicoLegacyComputeManager(
                core, power_delay=config.compute_power_delay, sleep=sleep, now=now
            )
        case (ComponentType.COMPUTE, "nico"):
            return NicoComputeManager(core)
        case (ComponentType.NVSWITCH, "nico"):
            return NvSwitchManager(core)
        case (ComponentType.POWERSHELF, "nico"):
            return PowerShelfManager(core)
    raise ManagerError(f"no factory for component manager {descriptor.key}")  # pragma: no cover


class ManagerRegistry:
    def __init__(self, managers: Mapping[ComponentType, ComponentManager]) -> None:
        self._managers = dict(managers)

    @classmethod
    def build(
        cls,
        config: ComponentManagerConfig,
        *,
        core: CoreClient | None,
        sleep: Sleep = asyncio.sleep,
        now: Now = _utcnow,
    ) -> ManagerRegistry:
        managers = {
            ctype: _build(lookup(ctype, impl), config, core, sleep, now)
            for ctype, impl in config.component_managers.items()
        }
        return cls(managers)

    @property
    def descriptors(self) -> list[Descriptor]:
        return [m.descriptor for m in self._managers.values()]

    def find_manager(self, ctype: ComponentType) -> ComponentManager | None:
        return self._managers.get(ctype)

    def get_manager(self, ctype: ComponentType) -> ComponentManager:
        manager = self._managers.get(ctype)
        if manager is None:
            configured = ", ".join(t.value for t in self._managers) or "none"
            raise ManagerError(
                f"no component manager is configured for {ctype.value} (configured: {configured})"
            )
        return manager

    def check_capability(self, ctype: ComponentType, capability: Capability) -> None:
        manager = self.get_manager(ctype)
        if not manager.descriptor.supports(capability):
            raise UnsupportedCapability(manager.descriptor, capability)

    def get_capable_manager(self, ctype: ComponentType, capability: Capability) -> ComponentManager:
        self.check_capability(ctype, capability)
        return self.get_manager(ctype)


def core_settings(
    config: ComponentManagerConfig, env: Mapping[str, str] | None = None, **kwargs: Any
) -> CoreClientSettings:
    """Client settings for the nico provider: its timeout plus the usual
    environment ($NICO_CORE_API_URL, $CERTDIR, $ALLOW_INSECURE_GRPC)."""
    return CoreClientSettings.from_env(env, timeout=config.nico_timeout, **kwargs)
