"""`flow task`: list, inspect, cancel and watch tasks (one per rack and request)."""

from __future__ import annotations

import sys

import click
from rich.console import RenderableType

from nicoflow.cli.client_common import Connection, client_command, fail, split_values
from nicoflow.cli.client_output import emit, stages_table, tasks_table
from nicoflow.cli.client_watch import EXIT_TASK_FAILED, taskspec_task_ids, watch_tasks
from nicoflow.client.progress import task_progress


@click.group("task")
def task() -> None:
    """Tasks: one rack's share of an operation request."""


@task.command("list")
@click.option("--rack-id", help="Only tasks of this rack.")
@click.option("--component-id", help="Only tasks touching this component.")
@click.option("--active", is_flag=True, help="Only waiting, pending and running tasks.")
@click.option("--with-report", is_flag=True, help="Include the JSON reports (json/yaml output).")
@click.option("--offset", type=click.IntRange(0))
@click.option("--limit", type=click.IntRange(1))
@client_command
def list_tasks(
    conn: Connection,
    rack_id: str | None,
    component_id: str | None,
    active: bool,
    with_report: bool,
    offset: int | None,
    limit: int | None,
) -> None:
    """List tasks, newest first."""
    with conn.client() as flow:
        page = flow.list_tasks(
            rack_id=rack_id,
            component_id=component_id,
            active_only=active,
            with_report=with_report,
            offset=offset,
            limit=limit,
        )
    emit(
        {"tasks": page.items, "total": page.total},
        conn.output,
        lambda: tasks_table(page.items, page.total),
    )


@task.command("get")
@click.argument("task_ids", nargs=-1, required=True)
@client_command
def get(conn: Connection, task_ids: tuple[str, ...]) -> None:
    """Show tasks with their per-stage report."""
    ids = split_values(task_ids)
    with conn.client() as flow:
        found = flow.get_tasks(ids)
    missing = sorted(set(ids) - {t.id.id for t in found})

    def tables() -> list[RenderableType]:
        out: list[RenderableType] = [tasks_table(found)]
        out += [stages_table(task_progress(t)) for t in found if t.report]
        return out

    emit(found, conn.output, tables)
    if missing:
        fail(f"NotFound: no task with id {', '.join(missing)}", 1)


@task.command("cancel")
@click.argument("task_id")
@client_command
def cancel(conn: Connection, task_id: str) -> None:
    """Ask a waiting, pending or running task to stop."""
    with conn.client() as flow:
        found = flow.cancel_task(task_id)
    emit(found, conn.output, lambda: tasks_table([found]))


@task.command("watch")
@click.argument("task_ids", nargs=-1)
@click.option("--taskspec", help="Watch every task of this TaskSpec (by name).")
@click.option(
    "--interval",
    type=click.FloatRange(0.1),
    default=2.0,
    show_default=True,
    help="Seconds between polls.",
)
@click.option(
    "--for", "limit", type=click.FloatRange(0), help="Stop watching after this many seconds."
)
@client_command
def watch(
    conn: Connection,
    task_ids: tuple[str, ...],
    taskspec: str | None,
    interval: float,
    limit: float | None,
) -> None:
    """Follow tasks until all finish: per rack, the status and current stage.

    Exit status 0 when all completed, 3 when one failed or was cancelled."""
    ids = split_values(task_ids)
    if bool(ids) == bool(taskspec):
        fail("give TASK_ID... or --taskspec NAME (one of them)")
    with conn.client() as flow:
        if taskspec:
            ids = taskspec_task_ids(flow, taskspec)
            if not ids:
                fail(f"NotFound: no tasks of TaskSpec {taskspec!r} (yet)", 1)
        ok = watch_tasks(flow, ids, interval=interval, timeout=limit)
    if not ok:
        sys.exit(EXIT_TASK_FAILED)
