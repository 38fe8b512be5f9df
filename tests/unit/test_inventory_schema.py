"""Pure checks of the inventory models and of migration planning (no database)."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Enum

from nicoflow.domain.types import ComponentType
from nicoflow.inventory import migrate
from nicoflow.inventory.models import BMC, Base, Component, normalize_mac


@pytest.mark.parametrize(
    "raw",
    [
        "AA:BB:CC:00:11:22",
        "aa-bb-cc-00-11-22",
        "aabb.cc00.1122",
        "AABBCC001122",
        " aa:bb:cc:00:11:22 ",
    ],
)
def test_mac_spellings_normalize_to_one_key(raw: str) -> None:
    assert normalize_mac(raw) == "aa:bb:cc:00:11:22"


@pytest.mark.parametrize("raw", ["", "aa:bb:cc:00:11", "aa:bb:cc:00:11:22:33", "gg:bb:cc:00:11:22"])
def test_invalid_macs_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="invalid MAC"):
        normalize_mac(raw)


def test_bmc_model_normalizes_on_assignment() -> None:
    assert BMC(mac_address="AA-BB-CC-00-11-22").mac_address == "aa:bb:cc:00:11:22"


def test_every_component_type_is_allowed_by_the_column() -> None:
    column_type = Component.__table__.c.type.type
    assert isinstance(column_type, Enum)
    assert set(column_type.enums) == {t.value for t in ComponentType}


def test_no_column_can_hold_a_bmc_password() -> None:
    columns = set(BMC.__table__.c.keys())
    assert not {"password", "user", "username"} & columns
    assert "credentials_secret_ref" in columns


def test_constraint_names_follow_the_convention() -> None:
    assert Base.metadata.naming_convention["uq"] == "uq_%(table_name)s_%(column_0_N_name)s"


@pytest.fixture(scope="module")
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.config())


def test_single_linear_head(scripts: ScriptDirectory) -> None:
    assert len(migrate.heads()) == 1
    assert [r.revision for r in migrate.history()][-1] == "0001"
    assert migrate.history()[-1].down_revision is None


@pytest.mark.parametrize(
    ("current", "target", "direction"),
    [
        (None, "head", "up"),
        (None, "0001", "up"),
        (None, "base", "none"),
        ("0001", "head", "up"),
        ("0001", "0001", "none"),
        ("0001", "base", "down"),
        ("0002", "head", "up"),
        ("0002", "0001", "down"),
        ("0003", "head", "up"),
        ("0004", "head", "up"),
        ("0005", "head", "up"),
        ("0006", "head", "none"),
    ],
)
def test_plan_direction(
    scripts: ScriptDirectory, current: str | None, target: str, direction: str
) -> None:
    assert migrate.plan_direction(scripts, current, target) == direction


def test_unknown_target_is_a_readable_error(scripts: ScriptDirectory) -> None:
    with pytest.raises(migrate.MigrationError, match="known revisions: 0001"):
        migrate.plan_direction(scripts, "0001", "does-not-exist")


def test_database_ahead_of_the_code_is_explained(scripts: ScriptDirectory) -> None:
    with pytest.raises(migrate.MigrationError, match="newer release"):
        migrate.plan_direction(scripts, "9999", "0001")
