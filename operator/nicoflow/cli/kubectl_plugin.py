"""`kubectl flow`: a kubectl plugin (the `kubectl-flow` executable on PATH).

    kubectl flow status taskspec/NAME [-n NS]   per-rack, per-stage progress
    kubectl flow status task/NAME [-n NS]       one rack's stages and steps
    kubectl flow cancel taskspec/NAME|task/NAME  request cancellation (final)
    kubectl flow why task/NAME|taskspec/NAME    what it waits for, and what to do

It reads the same kubeconfig as kubectl (KUBECONFIG, or ~/.kube/config, or the
in-cluster ServiceAccount). Rendering is pure (dicts in, rich tables out), so
tests check it without a cluster."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from nicoflow.api.task import TaskRunSpec
from nicoflow.api.taskstatus import TaskStatus
from nicoflow.engine.diagnosis import Diagnosis, OtherTask, TaskRef, diagnose
from nicoflow.kube.client import ApiError, KubeClient, NotFound, Resource
from nicoflow.kube.config import KubeConfigError
from nicoflow.kube.resources import LABEL_RACK, LABEL_TASKSPEC, TASKS, TASKSPECS
from nicoflow.kube.retry import retrying

Json = dict[str, Any]

# One symbol per stage or step phase; a legend is printed under the table.
SYMBOLS = {
    "Succeeded": ("✔", "green"),
    "Running": ("▶", "cyan"),
    "Pending": ("·", "dim"),
    "Failed": ("✘", "red"),
    "Skipped": ("↷", "dim"),
    "Cancelled": ("⊘", "yellow"),
}
PHASE_STYLES = {
    "Succeeded": "green",
    "Complete": "green",
    "Running": "cyan",
    "Waiting": "yellow",
    "Pending": "dim",
    "Suspended": "yellow",
    "Failed": "red",
    "Cancelled": "yellow",
}
KINDS: dict[str, Resource] = {
    "taskspec": TASKSPECS,
    "taskspecs": TASKSPECS,
    "ts": TASKSPECS,
    "task": TASKS,
    "tasks": TASKS,
    "ftask": TASKS,
}


@dataclass(frozen=True)
class Ref:
    resource: Resource
    name: str


def parse_ref(value: str) -> Ref:
    """`taskspec/NAME` or `task/NAME` (kubectl's kind/name form; kinds may carry
    the group, as in taskspecs.flow.nico.io/NAME)."""
    kind, sep, name = value.partition("/")
    kind = kind.lower().split(".", 1)[0]
    if not sep or not name or kind not in KINDS:
        raise click.BadParameter(f"expected taskspec/NAME or task/NAME, got {value!r}")
    return Ref(KINDS[kind], name)


def stage_symbols(stages: Iterable[Json]) -> Text:
    text = Text()
    for stage in stages:
        symbol, style = SYMBOLS.get(str(stage.get("phase", "Pending")), ("?", ""))
        text.append(symbol, style=style)
    return text


def current_step(status: Json) -> str:
    """The step in progress: stage number, component type, action and batch."""
    for stage in status.get("stages") or []:
        if stage.get("phase") not in ("Pending", "Running"):
            continue
        for step in stage.get("steps") or []:
            if step.get("phase") in ("Pending", "Running"):
                parts = [f"{stage.get('number')}: {step.get('componentType', '?')}"]
                if step.get("actionName"):
                    parts.append(str(step["actionName"]))
                if int(step.get("batches") or 0) > 1:
                    parts.append(f"batch {int(step.get('batch') or 0) + 1}/{step['batches']}")
                if int(step.get("attempt") or 1) > 1:
                    parts.append(f"attempt {step['attempt']}")
                return " ".join(parts)
    return ""


def _phase_text(phase: str | None) -> Text:
    value = phase or "Pending"
    return Text(value, style=PHASE_STYLES.get(value, ""))


def taskspec_table(taskspec: Json, tasks: list[Json]) -> Table:
    """One row per rack: phase, stages as symbols, step in progress, message."""
    meta, spec = taskspec["metadata"], taskspec.get("spec") or {}
    status = taskspec.get("status") or {}
    title = (
        f"TaskSpec {meta.get('namespace', '')}/{meta['name']}: {spec.get('operation', '?')} — "
        f"{status.get('phase') or 'Pending'}"
    )
    table = Table(title=title, title_justify="left", caption_justify="left")
    for column in ("Rack", "Phase", "Stages", "Current step", "Message"):
        table.add_column(column, overflow="fold")
    for task in sorted(tasks, key=lambda t: str((t.get("spec") or {}).get("rack", ""))):
        st = task.get("status") or {}
        table.add_row(
            str((task.get("spec") or {}).get("rack", task["metadata"]["name"])),
            _phase_text(st.get("phase")),
            stage_symbols(st.get("stages") or []),
            current_step(st),
            str(st.get("message") or ""),
        )
    counts = ", ".join(
        f"{status[k]} {k}"
        for k in ("racks", "pending", "waiting", "running", "succeeded", "failed", "cancelled")
        if status.get(k)
    )
    table.caption = "  ".join(filter(None, [counts, legend()]))
    return table


def task_table(task: Json) -> Table:
    """One row per step: stage, component type, phase, progress, error."""
    meta, spec = task["metadata"], task.get("spec") or {}
    st = task.get("status") or {}
    title = (
        f"Task {meta.get('namespace', '')}/{meta['name']}: {spec.get('operation', '?')} on rack "
        f"{spec.get('rack', '?')} — {st.get('phase') or 'Pending'}"
    )
    table = Table(title=title, title_justify="left", caption_justify="left")
    for column in ("Stage", "Type", "Phase", "Components", "Action", "Error"):
        table.add_column(column, overflow="fold")
    for stage in st.get("stages") or []:
        for step in stage.get("steps") or []:
            symbol, style = SYMBOLS.get(str(step.get("phase", "Pending")), ("?", ""))
            phase = Text(f"{symbol} {step.get('phase', 'Pending')}", style=style)
            done = f"{step.get('succeeded', 0)}/{step.get('total', 0)}"
            if step.get("failed"):
                done += f" ({step['failed']} failed)"
            table.add_row(
                str(stage.get("number", "")),
                str(step.get("componentType", "")),
                phase,
                done,
                str(step.get("actionName") or ""),
                str(step.get("error") or stage.get("error") or ""),
            )
    if st.get("message"):
        table.caption = str(st["message"])
    return table


def _stamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def diagnose_task(task: Json, rack_tasks: Iterable[Json], now: datetime) -> Diagnosis:
    """The diagnosis of one Task body, beside the other Tasks of its rack."""
    meta = task["metadata"]
    ref = TaskRef(
        meta["name"], meta.get("namespace", ""), (meta.get("labels") or {}).get(LABEL_TASKSPEC)
    )
    others = [
        OtherTask(
            t["metadata"]["name"],
            str((t.get("status") or {}).get("phase") or "Pending"),
            str((t.get("status") or {}).get("message") or ""),
        )
        for t in rack_tasks
    ]
    return diagnose(
        ref,
        TaskRunSpec.model_validate(task.get("spec") or {}),
        TaskStatus.model_validate(task.get("status") or {}),
        now,
        created=_stamp(meta.get("creationTimestamp")),
        rack_tasks=others,
    )


def why_text(task: Json, d: Diagnosis) -> Text:
    """One screen: the cause, the facts, and what to do (commands to copy)."""
    meta, spec = task["metadata"], task.get("spec") or {}
    phase = str((task.get("status") or {}).get("phase") or "Pending")
    out = Text()
    out.append(f"task/{meta['name']}", style="bold")
    out.append(f" ({spec.get('operation', '?')} on rack {spec.get('rack', '?')}): ")
    out.append(phase, style=PHASE_STYLES.get(phase, ""))
    if d.cause.value != phase:
        out.append(f" — {d.cause.value}", style="bold red" if d.stuck else "bold")
    out.append(f"\n{d.summary}\n")
    for fact in d.facts:
        out.append(f"  • {fact}\n")
    if d.actions:
        out.append("What you can do:\n", style="bold")
        for i, action in enumerate(d.actions, 1):
            out.append(f"  {i}. ")
            out.append(action.command, style="cyan")
            out.append(f"\n     {action.effect}\n")
    return out


def why_json(task: Json, d: Diagnosis) -> Json:
    return {
        "task": task["metadata"]["name"],
        "namespace": task["metadata"].get("namespace"),
        "phase": (task.get("status") or {}).get("phase") or "Pending",
        "cause": d.cause.value,
        "stuck": d.stuck,
        "summary": d.summary,
        "facts": d.facts,
        "actions": [asdict(a) for a in d.actions],
    }


def legend() -> str:
    return " ".join(f"{symbol} {phase.lower()}" for phase, (symbol, _) in SYMBOLS.items())


# -- I/O ------------------------------------------------------------------------------


def _client(kubeconfig: str | None) -> KubeClient:
    try:
        return KubeClient.from_env(kubeconfig)
    except KubeConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _namespace(client: KubeClient, namespace: str | None) -> str:
    return namespace or client.config.namespace or "default"


async def _status(ref: Ref, namespace: str | None, kubeconfig: str | None) -> Table:
    async with _client(kubeconfig) as client:
        ns = _namespace(client, namespace)
        # a 429 right after the CRDs were installed means "come back": retried
        body = await retrying(lambda: client.get(ref.resource, ref.name, ns))
        if ref.resource is TASKS:
            return task_table(body)
        tasks = await retrying(
            lambda: client.list(TASKS, ns, label_selector=f"{LABEL_TASKSPEC}={ref.name}")
        )
        return taskspec_table(body, tasks)


async def _rack_tasks(client: KubeClient, ns: str, rack: str) -> list[Json]:
    found: list[Json] = await retrying(
        lambda: client.list(TASKS, ns, label_selector=f"{LABEL_RACK}={rack}")
    )
    return found


async def _why(
    ref: Ref, namespace: str | None, kubeconfig: str | None
) -> list[tuple[Json, Diagnosis]]:
    """Each Task asked about (one, or a TaskSpec's unfinished ones) diagnosed."""
    async with _client(kubeconfig) as client:
        ns = _namespace(client, namespace)
        body = await retrying(lambda: client.get(ref.resource, ref.name, ns))
        if ref.resource is TASKS:
            tasks = [body]
        else:
            selector = f"{LABEL_TASKSPEC}={ref.name}"
            found = await retrying(lambda: client.list(TASKS, ns, label_selector=selector))
            unfinished = [
                t
                for t in found
                if (t.get("status") or {}).get("phase") not in ("Succeeded", "Failed", "Cancelled")
            ]
            tasks = sorted(unfinished or found, key=lambda t: str(t["metadata"]["name"]))
        out = []
        now = datetime.now(UTC)
        for task in tasks:
            rack = (task.get("spec") or {}).get("rack", "")
            neighbours: list[Json] = []
            if (task.get("status") or {}).get("phase") == "Waiting":
                neighbours = await _rack_tasks(client, ns, rack)
            out.append((task, diagnose_task(task, neighbours, now)))
        return out


async def _cancel(ref: Ref, namespace: str | None, kubeconfig: str | None) -> str:
    async with _client(kubeconfig) as client:
        ns = _namespace(client, namespace)
        await client.patch(ref.resource, ref.name, {"spec": {"cancel": True}}, ns)
        return f"{ref.resource.kind.lower()}/{ref.name} in {ns}: cancellation requested"


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except NotFound as exc:
        raise click.ClickException(f"not found: {exc.message}") from exc
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc


_namespace_opt = click.option("-n", "--namespace", help="Namespace (default: the context's).")
_kubeconfig_opt = click.option("--kubeconfig", help="Kubeconfig file (default: KUBECONFIG).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """NICo Flow TaskSpecs and Tasks from kubectl."""


@cli.command()
@click.argument("ref", type=parse_ref, metavar="taskspec/NAME|task/NAME")
@_namespace_opt
@_kubeconfig_opt
def status(ref: Ref, namespace: str | None, kubeconfig: str | None) -> None:
    """Show progress: per rack and stage for a TaskSpec, per step for a Task."""
    table = _run(_status(ref, namespace, kubeconfig))
    Console(soft_wrap=False).print(table)


@cli.command()
@click.argument("ref", type=parse_ref, metavar="taskspec/NAME|task/NAME")
@_namespace_opt
@_kubeconfig_opt
def cancel(ref: Ref, namespace: str | None, kubeconfig: str | None) -> None:
    """Cancel a TaskSpec (all its racks) or one Task: sets spec.cancel=true, which
    cannot be undone. The running step stops; no further stage starts."""
    click.echo(_run(_cancel(ref, namespace, kubeconfig)))


@cli.command()
@click.argument("ref", type=parse_ref, metavar="task/NAME|taskspec/NAME")
@_namespace_opt
@_kubeconfig_opt
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def why(ref: Ref, namespace: str | None, kubeconfig: str | None, output: str) -> None:
    """Say what a Task waits for and what you can do about it (a TaskSpec: each
    of its unfinished Tasks). Exits 2 when one is stuck and needs a person."""
    found = _run(_why(ref, namespace, kubeconfig))
    if output == "json":
        click.echo(json.dumps([why_json(t, d) for t, d in found], indent=2))
    else:
        console = Console(soft_wrap=True)
        for task, d in found:
            console.print(why_text(task, d))
    if any(d.stuck for _, d in found):
        raise SystemExit(2)


def main() -> None:
    cli(prog_name="kubectl flow")
