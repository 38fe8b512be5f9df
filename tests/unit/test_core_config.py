from __future__ import annotations

from pathlib import Path

import pytest

from nicoflow.core.config import (
    ConfigError,
    load_config,
    parse_config,
)
from nicoflow.core.durations import format_duration, parse_duration
from nicoflow.core.managers.base import Capability, ManagerError, UnsupportedCapability
from nicoflow.core.managers.mock import MockManager
from nicoflow.core.managers.registry import ManagerRegistry
from nicoflow.domain.types import ComponentType as CT


def test_embedded_default() -> None:
    loaded = load_config(env={})
    cfg = loaded.config
    assert loaded.source == "embedded default"
    assert cfg.component_managers == {
        CT.COMPUTE: "nicolegacy",
        CT.NVSWITCH: "nico",
        CT.POWERSHELF: "nico",
    }
    assert cfg.nico_timeout == 60.0
    assert cfg.compute_power_delay == 2.0


def test_explicit_path_beats_env(tmp_path: Path) -> None:
    explicit = tmp_path / "a.yaml"
    explicit.write_text("component_managers: {compute: mock}\n")
    from_env = tmp_path / "b.yaml"
    from_env.write_text("component_managers: {nvswitch: mock}\n")
    loaded = load_config(explicit, env={"COMPONENT_MANAGER_CONFIG": str(from_env)})
    assert loaded.config.component_managers == {CT.COMPUTE: "mock"}
    assert loaded.source == str(explicit)


def test_env_file_beats_default_and_is_not_merged(tmp_path: Path) -> None:
    f = tmp_path / "cm.yaml"
    f.write_text("component_managers: {nvswitch: nico}\nproviders: {nico: {timeout: 90s}}\n")
    loaded = load_config(env={"COMPONENT_MANAGER_CONFIG": str(f)})
    # Partial maps leave other types unconfigured.
    assert loaded.config.component_managers == {CT.NVSWITCH: "nico"}
    assert loaded.config.nico_timeout == 90.0
    assert "COMPONENT_MANAGER_CONFIG" in loaded.source


def test_compute_override_replaces_only_compute(tmp_path: Path) -> None:
    loaded = load_config(env={"COMPONENT_MANAGER_COMPUTE": " nico "})
    cfg = loaded.config
    assert cfg.component_managers[CT.COMPUTE] == "nico"
    assert cfg.component_managers[CT.NVSWITCH] == "nico"
    # The nicolegacy settings were dropped with the manager they belonged to.
    assert cfg.manager_configs.compute is None or cfg.manager_configs.compute.nicolegacy is None
    assert "compute=nico" in loaded.source


def test_compute_override_rejects_unknown_name() -> None:
    with pytest.raises(
        ConfigError, match=r"COMPONENT_MANAGER_COMPUTE.*expected one of: mock, nico, nicolegacy"
    ):
        load_config(env={"COMPONENT_MANAGER_COMPUTE": "psm"})


def test_required_provider_added_with_defaults() -> None:
    cfg = parse_config("component_managers: {powershelf: nico}")
    assert cfg.providers.nico is not None
    assert cfg.nico_timeout == 60.0
    only_mock = parse_config("component_managers: {compute: mock}")
    assert only_mock.providers.nico is None


def test_durations_in_go_syntax() -> None:
    cfg = parse_config(
        "component_managers: {compute: nicolegacy}\n"
        "manager_configs: {compute: {nicolegacy: {compute_power_delay: 1m30s}}}\n"
        "providers: {nico: {timeout: 500ms}}\n"
    )
    assert cfg.compute_power_delay == 90.0
    assert cfg.nico_timeout == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("component_managers: {compute: psm}", "unknown compute component manager 'psm'"),
        ("component_managers: {nvswitch: nicolegacy}", "expected one of: mock, nico"),
        ("component_managers: {torswitch: nico}", "no component managers exist for torswitch"),
        ("component_managers: {gpu: nico}", "unknown component type 'gpu'"),
        ("component_managers: {compute: nico}\nextra: 1", "extra: Extra inputs are not permitted"),
        ("providers: {nico: {timeout: 5 minutes}}", "providers.nico.timeout: invalid duration"),
        ("providers: {nico: {timeout: 0s}}", "timeout must be greater than zero"),
        ("providers: {nico: {timout: 1m}}", "providers.nico.timout: Extra inputs"),
        (
            "component_managers: {compute: nico}\n"
            "manager_configs: {compute: {nicolegacy: {compute_power_delay: 1s}}}",
            "manager_configs.compute.nicolegacy is set but compute uses nico",
        ),
        (
            "component_managers: {compute: nicolegacy}\n"
            "manager_configs: {compute: {nicolegacy: {power_delay: 1s}}}",
            "manager_configs.compute.nicolegacy.power_delay: Extra inputs are not permitted",
        ),
        (
            "component_managers: {compute: nico}\nmanager_configs: {compute: {nico: {}}}",
            "manager_configs.compute.nico: Extra inputs are not permitted",
        ),
        (
            "component_managers: {nvswitch: nico}\nmanager_configs: {nvswitch: {nico: {}}}",
            "manager_configs.nvswitch: Extra inputs are not permitted",
        ),
        ("providers: {psm: {timeout: 1s}}", "providers.psm: Extra inputs are not permitted"),
        (
            "manager_configs: {compute: {nicolegacy: {compute_power_delay: 1s}}}",
            "manager_configs.compute.nicolegacy is set but compute uses no manager",
        ),
        (
            "component_managers: {compute: nicolegacy}\n"
            "manager_configs: {compute: {nicolegacy: {compute_power_delay: -1}}}",
            "compute_power_delay: duration must not be negative",
        ),
        (
            "component_managers: {powershelf: psm}",
            "unknown powershelf component manager 'psm'; expected one of: mock, nico",
        ),
        ("component_managers: {compute: [nico]}", "component_managers.compute: Input should be"),
        ("component_managers: nico", "component_managers: Input should be a valid dictionary"),
        ("- a\n- b", "expected a mapping at the top level"),
        ("component_managers: [", "not valid YAML"),
    ],
)
def test_invalid_configs_have_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cm.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("cm.yaml")


def test_display_names_accepted_as_keys() -> None:
    cfg = parse_config("component_managers: {Compute: mock, NVSwitch: mock}")
    assert set(cfg.component_managers) == {CT.COMPUTE, CT.NVSWITCH}


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})


def test_empty_file_configures_nothing(tmp_path: Path) -> None:
    f = tmp_path / "empty.yaml"
    f.write_text("")
    assert load_config(f, env={}).config.component_managers == {}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2s", 2.0),
        ("1m", 60.0),
        ("1h2m3s", 3723.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("0", 0.0),
        (3, 3.0),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "2", "s", "2x", "1m 2s", "-1s", -1, True])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - message is checked elsewhere
        parse_duration(bad)  # type: ignore[arg-type]


def test_format_duration_round_trips() -> None:
    for seconds in (2.0, 60.0, 90.0, 3723.0, 0.25):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_registry_refuses_nico_managers_without_a_core_client() -> None:
    cfg = parse_config("component_managers: {compute: mock, nvswitch: nico}")
    with pytest.raises(ManagerError, match=r"nvswitch/nico needs the nico provider"):
        ManagerRegistry.build(cfg, core=None)


def test_registry_answers_for_configured_types_only() -> None:
    registry = ManagerRegistry.build(parse_config("component_managers: {compute: mock}"), core=None)
    assert isinstance(registry.get_manager(CT.COMPUTE), MockManager)
    assert registry.find_manager(CT.NVSWITCH) is None
    with pytest.raises(
        ManagerError,
        match=r"no component manager is configured for nvswitch \(configured: compute\)",
    ):
        registry.get_manager(CT.NVSWITCH)
    with pytest.raises(UnsupportedCapability, match="compute/mock does not support"):
        registry.check_capability(CT.COMPUTE, Capability.FIRMWARE_CONSISTENCY_CHECK)
    assert registry.get_capable_manager(CT.COMPUTE, Capability.POWER_CONTROL) is not None
