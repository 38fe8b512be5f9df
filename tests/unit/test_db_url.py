"""Where the database is: DATABASE_URL, or the original service's DB_* variables."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from nicoflow.inventory.db import (
    DatabaseConfigError,
    display_url,
    make_engine,
    normalize_url,
    resolve_database_url,
)


def test_database_url_wins_over_db_variables() -> None:
    url = resolve_database_url(
        {
            "DATABASE_URL": "postgresql+psycopg://a:b@db1:5433/one",
            "DB_HOST": "db2",
            "DB_USER": "x",
            "DB_NAME": "two",
        }
    )
    assert (url.host, url.port, url.database, url.username) == ("db1", 5433, "one", "a")


@pytest.mark.parametrize(
    "scheme", ["postgres", "postgresql", "postgresql+psycopg2", "postgresql+asyncpg"]
)
def test_postgres_spellings_are_pinned_to_psycopg3(scheme: str) -> None:
    url = resolve_database_url({"DATABASE_URL": f"{scheme}://u@h/d"})
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.database) == ("h", "d")


def test_other_databases_are_refused() -> None:
    with pytest.raises(DatabaseConfigError, match="only PostgreSQL"):
        normalize_url("mysql://u@h/d")


def test_garbage_url_is_refused_with_a_message() -> None:
    with pytest.raises(DatabaseConfigError, match="cannot parse"):
        normalize_url("not a url")


def test_db_variables_assemble_a_url() -> None:
    url = resolve_database_url(
        {
            "DB_HOST": "db.internal",
            "DB_PORT": "6543",
            "DB_USER": "flow",
            "DB_PASSWORD": "p@ss:w/rd %?",
            "DB_NAME": "flowdb",
        }
    )
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.username, url.database) == (
        "db.internal",
        6543,
        "flow",
        "flowdb",
    )
    # Special characters survive rendering and re-parsing (what the engine sees).
    reparsed = make_url(url.render_as_string(hide_password=False))
    assert reparsed.password == "p@ss:w/rd %?"
    assert "sslmode" not in url.query


def test_port_defaults_to_5432_and_password_is_optional() -> None:
    url = resolve_database_url({"DB_HOST": "h", "DB_USER": "u", "DB_NAME": "d"})
    assert url.port == 5432
    assert url.password is None


def test_cert_path_turns_on_full_verification() -> None:
    url = resolve_database_url(
        {"DB_HOST": "h", "DB_USER": "u", "DB_NAME": "d", "DB_CERT_PATH": "/etc/flow/db-ca.crt"}
    )
    assert url.query["sslmode"] == "verify-full"
    assert url.query["sslrootcert"] == "/etc/flow/db-ca.crt"


def test_nothing_set_names_both_ways_to_configure() -> None:
    with pytest.raises(DatabaseConfigError) as info:
        resolve_database_url({"HOME": "/root"})
    message = str(info.value)
    assert "DATABASE_URL" in message
    assert "DB_HOST" in message
    assert "DB_NAME" in message


def test_blank_database_url_counts_as_unset() -> None:
    with pytest.raises(DatabaseConfigError, match="no database configured"):
        resolve_database_url({"DATABASE_URL": "  "})


def test_partial_db_variables_name_the_missing_ones() -> None:
    with pytest.raises(DatabaseConfigError) as info:
        resolve_database_url({"DB_HOST": "h", "DB_PASSWORD": "x"})
    message = str(info.value)
    assert "DB_USER" in message
    assert "DB_NAME" in message
    assert "DB_HOST" not in message.split("not set")[0]


@pytest.mark.parametrize("port", ["abc", "0", "70000"])
def test_bad_port_is_reported(port: str) -> None:
    with pytest.raises(DatabaseConfigError, match="DB_PORT"):
        resolve_database_url({"DB_HOST": "h", "DB_USER": "u", "DB_NAME": "d", "DB_PORT": port})


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DB_HOST", "envhost")
    monkeypatch.setenv("DB_USER", "envuser")
    monkeypatch.setenv("DB_NAME", "envdb")
    assert resolve_database_url().host == "envhost"


def test_display_url_hides_the_password() -> None:
    shown = display_url("postgresql+psycopg://flow:topsecret@h/d")
    assert "topsecret" not in shown
    assert "flow:***@h" in shown


def test_make_engine_uses_psycopg3_without_connecting() -> None:
    engine = make_engine("postgres://u:p@nowhere.invalid/d")
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.url.host == "nowhere.invalid"
    finally:
        engine.dispose()
