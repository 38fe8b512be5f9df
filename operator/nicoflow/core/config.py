"""Component-manager configuration: which manager drives each component type,
per-manager settings, and provider settings.

    component_managers: {compute: nicolegacy, nvswitch: nico, powershelf: nico}
    manager_configs:    {compute: {nicolegacy: {compute_power_delay: 2s}}}
    providers:          {nico: {timeout: 1m}}

Sources, first found wins (a file is authoritative, never merged with the
default): explicit path > $COMPONENT_MANAGER_CONFIG > embedded default. Then
$COMPONENT_MANAGER_COMPUTE replaces only the compute entry (the migration knob
from nicolegacy to nico). Unknown keys are rejected."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from nicoflow.core.durations import parse_duration
from nicoflow.core.managers.catalog import MANAGED_TYPES, NICO_PROVIDER, lookup
from nicoflow.domain.types import ComponentType

ENV_CONFIG = "COMPONENT_MANAGER_CONFIG"
ENV_COMPUTE = "COMPONENT_MANAGER_COMPUTE"

DEFAULT_CONFIG_YAML = """\
component_managers:
  compute: nicolegacy
  nvswitch: nico
  powershelf: nico
manager_configs:
  compute:
    nicolegacy:
      compute_power_delay: 2s
providers:
  nico:
    timeout: 1m
"""


class ConfigError(ValueError):
    """The component-manager configuration cannot be used; the message says why."""


def _seconds(value: Any) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError(f"expected a duration such as '2s' or '1m', got {value!r}")


Seconds = Annotated[float, BeforeValidator(_seconds)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NicoProviderConfig(_Strict):
    # Per-call deadline for Core RPCs.
    timeout: Seconds = 60.0

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("timeout must be greater than zero")
        return v


class ProvidersConfig(_Strict):
    nico: NicoProviderConfig | None = None


class NicoLegacyComputeConfig(_Strict):
    # Pause between consecutive machines in one power action, to spread inrush load.
    compute_power_delay: Seconds = 2.0


class ComputeManagerConfigs(_Strict):
    nicolegacy: NicoLegacyComputeConfig | None = None


class ManagerConfigs(_Strict):
    compute: ComputeManagerConfigs | None = None


def _parse_type_keys(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    out: dict[ComponentType, Any] = {}
    for key, impl in value.items():
        ctype = ComponentType.parse(str(key))
        if ctype not in MANAGED_TYPES:
            allowed = ", ".join(t.value for t in MANAGED_TYPES)
            raise ValueError(f"no component managers exist for {ctype.value}; configure: {allowed}")
        out[ctype] = impl
    return out


class ComponentManagerConfig(_Strict):
    component_managers: Annotated[dict[ComponentType, str], BeforeValidator(_parse_type_keys)] = (
        Field(default_factory=dict)
    )
    manager_configs: ManagerConfigs = Field(default_factory=ManagerConfigs)
    providers: ProvidersConfig = Field(default_factory=ProvidersConfig)

    @model_validator(mode="after")
    def _consistent(self) -> ComponentManagerConfig:
        for ctype, impl in self.component_managers.items():
            lookup(ctype, impl)  # raises with the allowed names
        compute = self.manager_configs.compute
        selected = self.component_managers.get(ComponentType.COMPUTE)
        if compute is not None and compute.nicolegacy is not None and selected != "nicolegacy":
            raise ValueError(
                "manager_configs.compute.nicolegacy is set but compute uses "
                f"{selected or 'no manager'}; remove it or select nicolegacy"
            )
        # Providers a selected manager needs are added with their defaults.
        if self.providers.nico is None and NICO_PROVIDER in self.required_providers():
            self.providers = ProvidersConfig(nico=NicoProviderConfig())
        return self

    def required_providers(self) -> set[str]:
        return {
            p
            for ctype, impl in self.component_managers.items()
            for p in lookup(ctype, impl).required_providers
        }

    def implementation(self, ctype: ComponentType) -> str | None:
        return self.component_managers.get(ctype)

    @property
    def nico_timeout(self) -> float:
        return (self.providers.nico or NicoProviderConfig()).timeout

    @property
    def compute_power_delay(self) -> float:
        compute = self.manager_configs.compute
        legacy = compute.nicolegacy if compute else None
        return (legacy or NicoLegacyComputeConfig()).compute_power_delay


@dataclass(frozen=True)
class LoadedConfig:
    config: ComponentManagerConfig
    # Where it came from, for logs: a path, "$COMPONENT_MANAGER_CONFIG=...", "embedded default".
    source: str


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def parse_config(text: str, source: str = "<string>") -> ComponentManagerConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        return ComponentManagerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"{source}: invalid component-manager config:\n{_format_errors(exc)}"
        ) from exc


def default_config() -> ComponentManagerConfig:
    return parse_config(DEFAULT_CONFIG_YAML, "embedded default")


def override_compute(config: ComponentManagerConfig, implementation: str) -> ComponentManagerConfig:
    """Select another compute manager, dropping settings of the one replaced."""
    name = implementation.strip()
    try:
        lookup(ComponentType.COMPUTE, name)
    except ValueError as exc:
        raise ConfigError(f"${ENV_COMPUTE}: {exc}") from None
    data = config.model_dump(mode="json", exclude_none=True)
    data["component_managers"]["compute"] = name
    compute_cfgs = data.get("manager_configs", {}).get("compute", {})
    for other in [k for k in compute_cfgs if k != name]:
        del compute_cfgs[other]
    try:
        return ComponentManagerConfig.model_validate(data)
    except ValidationError as exc:  # pragma: no cover - inputs were valid already
        raise ConfigError(f"${ENV_COMPUTE}: {_format_errors(exc)}") from exc


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Resolve the configuration from its sources in priority order."""
    env = os.environ if env is None else env
    if path is not None:
        config = _read(Path(path), str(path))
        source = str(path)
    elif env.get(ENV_CONFIG):
        config = _read(Path(env[ENV_CONFIG]), f"${ENV_CONFIG}={env[ENV_CONFIG]}")
        source = f"${ENV_CONFIG}={env[ENV_CONFIG]}"
    else:
        config = default_config()
        source = "embedded default"
    if env.get(ENV_COMPUTE):
        config = override_compute(config, env[ENV_COMPUTE])
        source += f" (compute={env[ENV_COMPUTE].strip()} from ${ENV_COMPUTE})"
    return LoadedConfig(config, source)


def _read(path: Path, label: str) -> ComponentManagerConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read component-manager config: {exc}") from exc
    return parse_config(text, label)
