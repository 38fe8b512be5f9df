"""Live view of tasks until all of them finish: polls GetTasksByIDs and shows,
per rack, the task status and the current stage's steps from the report."""

from __future__ import annotations

import json
import sys
import time

from rich.live import Live

from nicoflow.cli.client_output import console, progress_table
from nicoflow.client.client import FlowClient
from nicoflow.client.errors import FlowError
from nicoflow.client.progress import TaskProgress, all_finished, task_progress

EXIT_TASK_FAILED = 3


def _rack_names(flow: FlowClient, tasks: list[TaskProgress], known: dict[str, str]) -> None:
    for t in tasks:
        if t.rack_id and t.rack_id not in known:
            try:
                known[t.rack_id] = flow.get_rack(t.rack_id, with_components=False).info.name
            except FlowError:
                known[t.rack_id] = t.rack_id  # deleted racks still show by id


def taskspec_task_ids(flow: FlowClient, taskspec: str, page_size: int = 500) -> list[str]:
    """Ids of the tasks of one TaskSpec: task names are `<taskspec>-<rack>`."""
    found: list[str] = []
    offset = 0
    while True:
        page = flow.list_tasks(offset=offset, limit=page_size)
        for t in page.items:
            try:
                workflow = str(json.loads(t.execution_id or "{}").get("workflow_id") or "")
            except (json.JSONDecodeError, AttributeError):
                continue
            if workflow.split("/", 1)[-1].startswith(f"{taskspec}-"):
                found.append(t.id.id)
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return found


def watch_tasks(
    flow: FlowClient, task_ids: list[str], *, interval: float = 2.0, timeout: float | None = None
) -> bool:
    """Follow the tasks until all finished (or `timeout`); True when all completed."""
    names: dict[str, str] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    live_view = sys.stdout.isatty()
    con = console()
    progress: list[TaskProgress] = []
    with Live(console=con, auto_refresh=False, transient=False) if live_view else _NoLive() as live:
        while True:
            progress = [task_progress(t) for t in flow.get_tasks(task_ids)]
            _rack_names(flow, progress, names)
            table = progress_table(progress, names)
            if live is not None:
                live.update(table, refresh=True)
            if all_finished(progress, len(task_ids)):
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(interval)
    if not live_view:
        con.print(progress_table(progress, names))
    return all_finished(progress, len(task_ids)) and all(t.status == "completed" for t in progress)


class _NoLive:
    """Stands in for rich's Live when stdout is not a terminal."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
