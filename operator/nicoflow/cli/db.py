"""`flow db`: apply, roll back and inspect the inventory schema migrations."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from nicoflow.inventory import migrate as migrations
from nicoflow.inventory.db import (
    DatabaseConfigError,
    display_url,
    normalize_url,
    resolve_database_url,
)

BASE_LABEL = "base"

_database_url = click.option(
    "--database-url",
    metavar="URL",
    help=(
        "PostgreSQL URL, e.g. postgresql://flow:secret@db:5432/flow. Default: DATABASE_URL, "
        "else DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME and DB_CERT_PATH."
    ),
)


@click.group()
def db() -> None:
    """Database schema migrations."""


@db.command()
@click.option(
    "--to",
    "target",
    default=migrations.HEAD,
    show_default=True,
    metavar="REVISION",
    help="Revision to move to, up or down. 'base' removes every Flow table.",
)
@_database_url
def migrate(target: str, database_url: str | None) -> None:
    """Bring the schema to the newest revision (or to --to REVISION).

    Safe to run from several pods at once: they take turns on a database lock."""
    url = _url(database_url)
    _show_alembic_progress()
    with _friendly_errors(url):
        result = migrations.migrate_to(url, target)
    where = display_url(url)
    if result.changed:
        click.echo(f"Migrated {where}: {_label(result.before)} -> {_label(result.after)}")
    else:
        click.echo(f"{where} is already at {_label(result.after)}; nothing to do.")


@db.command()
@_database_url
def current(database_url: str | None) -> None:
    """Show the revision the database is at."""
    url = _url(database_url)
    with _friendly_errors(url):
        rev = migrations.current(url)
    heads = migrations.heads()
    click.echo(_label(rev))
    if rev not in heads:
        click.echo(
            f"The newest revision is {', '.join(heads)}; run `flow db migrate` to apply it.",
            err=True,
        )


@db.command()
@_database_url
def history(database_url: str | None) -> None:
    """List the known revisions, newest first; marks the database's revision when
    a database is configured."""
    url = _optional_url(database_url)
    at: str | None = None
    if url is not None:
        with _friendly_errors(url):
            at = migrations.current(url)
    for info in migrations.history():
        marks = []
        if info.is_head:
            marks.append("head")
        if url is not None and info.revision == at:
            marks.append("current")
        suffix = f" ({', '.join(marks)})" if marks else ""
        click.echo(f"{info.down_revision or BASE_LABEL} -> {info.revision}{suffix}: {info.message}")
    if url is not None and at is None:
        click.echo("The database has no migrations applied (base).")


@db.command()
@click.option(
    "--max-age-days",
    type=click.IntRange(min=0),
    default=90,
    show_default=True,
    help="Delete finished Tasks older than this (0: no age bound).",
)
@click.option(
    "--max-tasks",
    type=click.IntRange(min=0),
    default=1_000_000,
    show_default=True,
    help="Keep at most this many finished Tasks, the newest (0: no bound).",
)
@_database_url
def prune(max_age_days: int, max_tasks: int, database_url: str | None) -> None:
    """Delete task history past the bounds, with the Tasks' per-component results
    (the operator does the same every --history-prune-interval)."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from nicoflow.controller.retention import Retention, prune
    from nicoflow.inventory.db import make_async_engine, make_async_session_factory

    if not max_age_days and not max_tasks:
        raise click.UsageError("nothing to prune by: give --max-age-days or --max-tasks")
    url = _url(database_url)
    retention = Retention(
        max_age=timedelta(days=max_age_days) if max_age_days else None,
        max_tasks=max_tasks or None,
    )

    async def run() -> tuple[int, int]:
        engine = make_async_engine(url)
        try:
            done = await prune(make_async_session_factory(engine), retention, datetime.now(UTC))
        finally:
            await engine.dispose()
        return done.tasks, done.results

    with _friendly_errors(url):
        tasks, results = asyncio.run(run())
    click.echo(f"Pruned {tasks} Tasks and {results} per-component results from {display_url(url)}")


def _label(revision: str | None) -> str:
    if revision is None:
        return f"{BASE_LABEL} (empty schema)"
    if revision in migrations.heads():
        return f"{revision} (head)"
    return revision


def _url(database_url: str | None) -> URL:
    try:
        return normalize_url(database_url) if database_url else resolve_database_url()
    except DatabaseConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _optional_url(database_url: str | None) -> URL | None:
    """Like _url, but no configured database at all is fine (None)."""
    if database_url:
        return _url(database_url)
    try:
        return resolve_database_url()
    except DatabaseConfigError:
        return None


@contextmanager
def _friendly_errors(url: URL) -> Iterator[None]:
    try:
        yield
    except migrations.MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise click.ClickException(
            f"cannot reach the database at {display_url(url)}: {reason}"
        ) from None


def _show_alembic_progress(echo: Callable[[str], None] = click.echo) -> None:
    """Print each revision as Alembic applies it ("Running upgrade -> 0001 ...")."""
    logger = logging.getLogger("alembic.runtime.migration")
    if any(isinstance(h, _EchoHandler) for h in logger.handlers):
        return
    logger.setLevel(logging.INFO)
    logger.addHandler(_EchoHandler(echo))
    logger.propagate = False


class _EchoHandler(logging.Handler):
    def __init__(self, echo: Callable[[str], None]) -> None:
        super().__init__(level=logging.INFO)
        self._echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # Alembic also logs its context setup ("Context impl ..."); only revisions matter here.
        if message.startswith(("Running upgrade", "Running downgrade")):
            self._echo(message)
