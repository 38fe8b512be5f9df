"""Where the database is and how to open it.

The DSN comes from `DATABASE_URL`, or from the original service's variables
(`DB_HOST`, `DB_PORT`, `DB_USER`, `DB_PASSWORD`, `DB_NAME`, `DB_CERT_PATH`) so
existing deployments keep their Secrets. Every URL is pinned to the psycopg 3
driver, whatever spelling the operator used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

DRIVER = "postgresql+psycopg"
DEFAULT_PORT = 5432

# Schemes people commonly write for Postgres; all end up on psycopg 3.
_POSTGRES_SCHEMES = {
    "postgres",
    "postgresql",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgresql+psycopg_async",
    "postgresql+asyncpg",
}


class DatabaseConfigError(ValueError):
    """The database location is missing or malformed; the message says what to set."""


_NOTHING_SET = (
    "no database configured: set DATABASE_URL "
    "(for example postgresql+psycopg://flow:secret@db.example:5432/flow) "
    "or DB_HOST, DB_USER and DB_NAME (optionally DB_PORT, DB_PASSWORD, DB_CERT_PATH)"
)


def normalize_url(url: str | URL) -> URL:
    """Parse a Postgres URL and pin it to the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseConfigError(f"cannot parse database URL: {exc}") from None
    if parsed.drivername not in _POSTGRES_SCHEMES:
        raise DatabaseConfigError(
            f"unsupported database URL scheme {parsed.drivername!r}: only PostgreSQL "
            "(postgresql://...) is supported"
        )
    return parsed.set(drivername=DRIVER)


def resolve_database_url(env: Mapping[str, str] | None = None) -> URL:
    """The database URL from the environment (or the mapping given, for tests).

    `DATABASE_URL` wins when set; otherwise the DB_* variables are assembled.
    `DB_CERT_PATH` names the CA bundle and turns on full certificate checking."""
    env = os.environ if env is None else env
    direct = env.get("DATABASE_URL", "").strip()
    if direct:
        return normalize_url(direct)

    keys = ("DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME", "DB_CERT_PATH")
    values = {k: env.get(k, "").strip() for k in keys}
    if not any(values.values()):
        raise DatabaseConfigError(_NOTHING_SET)
    missing = [k for k in ("DB_HOST", "DB_USER", "DB_NAME") if not values[k]]
    if missing:
        raise DatabaseConfigError(
            f"incomplete database settings: {', '.join(missing)} not set "
            "(or set DATABASE_URL instead)"
        )

    port = DEFAULT_PORT
    if values["DB_PORT"]:
        try:
            port = int(values["DB_PORT"])
        except ValueError:
            raise DatabaseConfigError(
                f"DB_PORT must be a number, got {values['DB_PORT']!r}"
            ) from None
        if not 0 < port < 65536:
            raise DatabaseConfigError(f"DB_PORT out of range: {port}")

    query: dict[str, str] = {}
    if values["DB_CERT_PATH"]:
        query = {"sslmode": "verify-full", "sslrootcert": values["DB_CERT_PATH"]}

    # The password is taken verbatim (not stripped): spaces may be part of it.
    password = env.get("DB_PASSWORD") or None
    return URL.create(
        DRIVER,
        username=values["DB_USER"],
        password=password,
        host=values["DB_HOST"],
        port=port,
        database=values["DB_NAME"],
        query=query,
    )


def display_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str | URL | None = None, **kwargs: Any) -> Engine:
    """A synchronous engine; `url=None` resolves it from the environment."""
    resolved = resolve_database_url() if url is None else normalize_url(url)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(resolved, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit; handlers often report what they wrote.
    return sessionmaker(engine, expire_on_commit=False)


def make_async_engine(url: str | URL | None = None, **kwargs: Any) -> AsyncEngine:
    """An asyncio engine on psycopg 3 for the API and the operator.

    SQLAlchemy's asyncio layer needs the `greenlet` package (the
    `sqlalchemy[asyncio]` extra); the error below says so plainly."""
    try:
        from sqlalchemy.ext.asyncio import create_async_engine
    except ImportError as exc:
        raise RuntimeError(
            "async database access needs the 'greenlet' package (install sqlalchemy[asyncio])"
        ) from exc
    resolved = resolve_database_url() if url is None else normalize_url(url)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(resolved, **kwargs)


def make_async_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    return async_sessionmaker(engine, expire_on_commit=False)
