"""Schema migrations, driven from code.

The Alembic configuration is built here rather than read from an alembic.ini,
so the installed wheel can migrate a database on its own (`flow db migrate`,
or an init container). Every change runs in one transaction holding a Postgres
advisory lock: two pods migrating at once take turns, and the second finds the
work already done. Postgres DDL is transactional, so a failed revision leaves
the schema as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from nicoflow.inventory.db import make_engine, normalize_url

SCRIPT_LOCATION = "nicoflow.inventory:migrations"

# The bytes of "nicoflow" as a signed 64-bit key: easy to spot in pg_locks
# (classid 0x6e69636f, objid 0x666c6f77) and unlikely to collide.
MIGRATION_LOCK_KEY = int.from_bytes(b"nicoflow", "big", signed=True)

BASE = "base"
HEAD = "head"


class MigrationError(RuntimeError):
    """A migration could not be planned or applied; the message is for people."""


@dataclass(frozen=True)
class MigrationResult:
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class RevisionInfo:
    revision: str
    down_revision: str | None
    message: str
    is_head: bool


def config(url: str | URL | None = None) -> Config:
    """An Alembic Config for our migrations; with `url`, usable by any Alembic
    command (for example `command.revision(config(url), "...", autogenerate=True)`)."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        rendered = normalize_url(url).render_as_string(hide_password=False)
        # Config values go through configparser interpolation, where % is special.
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def heads() -> list[str]:
    return list(_scripts().get_heads())


def history() -> list[RevisionInfo]:
    """Known revisions, newest first."""
    script = _scripts()
    head_set = set(script.get_heads())
    out = []
    for rev in script.walk_revisions():
        down = rev.down_revision
        if isinstance(down, tuple | list):  # a merge point; we keep history linear
            down = ",".join(down)
        out.append(
            RevisionInfo(
                revision=rev.revision,
                down_revision=down,
                message=(rev.doc or "").strip(),
                is_head=rev.revision in head_set,
            )
        )
    return out


def _current_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current(url: str | URL) -> str | None:
    """The revision the database is at; None for an empty (unmigrated) database."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return _current_of(connection)
    finally:
        engine.dispose()


def is_up_to_date(url: str | URL) -> bool:
    """True when the database is at the newest revision this code knows."""
    return current(url) in set(heads())


def upgrade(url: str | URL, revision: str = HEAD) -> MigrationResult:
    return _locked(url, lambda cfg, _before: command.upgrade(cfg, revision))


def downgrade(url: str | URL, revision: str) -> MigrationResult:
    return _locked(url, lambda cfg, _before: command.downgrade(cfg, revision))


def migrate_to(url: str | URL, revision: str = HEAD) -> MigrationResult:
    """Move the database up or down to `revision` ("head", "base" or a revision id).

    The direction is decided under the lock, against the revision the database
    is actually at."""

    def step(cfg: Config, before: str | None) -> None:
        direction = plan_direction(_scripts(), before, revision)
        if direction == "up":
            command.upgrade(cfg, revision)
        elif direction == "down":
            command.downgrade(cfg, revision)

    return _locked(url, step)


def plan_direction(script: ScriptDirectory, current_rev: str | None, target: str) -> str:
    """ "up", "down" or "none": which way the database at `current_rev` must move."""
    try:
        if target == BASE:
            return "none" if current_rev is None else "down"
        if target in (HEAD, "heads"):
            return "none" if current_rev in set(script.get_heads()) else "up"
        wanted = script.get_revision(target)
        if wanted is None:  # e.g. "base" spelled another way
            return "none" if current_rev is None else "down"
        if current_rev is None:
            return "up"
        if wanted.revision == current_rev:
            return "none"
        below_current = {r.revision for r in script.iterate_revisions(current_rev, BASE)}
        return "down" if wanted.revision in below_current else "up"
    except (CommandError, RevisionError) as exc:
        raise MigrationError(_explain(exc, current_rev)) from None


def _locked(url: str | URL, action: Callable[[Config, str | None], None]) -> MigrationResult:
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            # Transaction-scoped: released by commit, rollback or a dropped connection,
            # so a killed migrator cannot leave the lock behind.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            before = _current_of(connection)
            cfg = config()
            cfg.attributes["connection"] = connection
            try:
                action(cfg, before)
            except (CommandError, RevisionError) as exc:
                raise MigrationError(_explain(exc, before)) from None
            after = _current_of(connection)
        return MigrationResult(before=before, after=after)
    finally:
        engine.dispose()


def _explain(exc: Exception, current_rev: str | None) -> str:
    known = {r.revision for r in _scripts().walk_revisions()}
    if current_rev is not None and current_rev not in known:
        return (
            f"the database is at revision {current_rev!r}, which this version of Flow does "
            f"not know (was it migrated by a newer release?); known revisions: "
            f"{', '.join(sorted(known))}"
        )
    return f"{exc} (known revisions: {', '.join(sorted(known))}, or 'head' / 'base')"
