"""How client commands print: rich tables by default, or the v1 messages as
JSON / YAML (snake_case field names, as the proto spells them)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import click
import yaml
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console, RenderableType
from rich.table import Table

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.client.progress import TaskProgress, status_name
from nicoflow.client.targets import component_type_name


def to_data(value: Any) -> Any:
    """Plain JSON-able data from messages, lists of them and dicts of them."""
    if isinstance(value, Message):
        return MessageToDict(
            value, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    return value


def render_data(value: Any, fmt: str) -> str:
    data = to_data(value)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False)
    return json.dumps(data, indent=2) + "\n"


def console() -> Console:
    # tables never wrap into unreadable columns when piped
    width = None if sys.stdout.isatty() else 200
    return Console(soft_wrap=False, width=width)


def emit(
    value: Any, fmt: str, table: Callable[[], RenderableType | Sequence[RenderableType]]
) -> None:
    """Print `value` as JSON/YAML, or the renderables `table()` builds."""
    if fmt in ("json", "yaml"):
        click.echo(render_data(value, fmt), nl=False)
        return
    out = table()
    items = out if isinstance(out, list | tuple) else [out]
    con = console()
    for item in items:
        con.print(item)


# --- cell helpers -------------------------------------------------------------------------


def when(ts: Timestamp, present: bool = True) -> str:
    if not present or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(ts: Timestamp, now: datetime | None = None) -> str:
    if ts.seconds == 0:
        return ""
    seconds = int(((now or datetime.now(UTC)) - ts.ToDatetime(tzinfo=UTC)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def bmc_text(bmcs: Iterable[pb.BMCInfo]) -> str:
    parts = []
    for b in bmcs:
        kind = pb.BMCType.Name(b.type).removeprefix("BMC_TYPE_").lower()
        parts.append(f"{kind} {b.mac_address}" + (f" {b.ip_address}" if b.ip_address else ""))
    return ", ".join(parts)


def _table(title: str | None, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    return table


# --- tables ---------------------------------------------------------------------------------


def racks_table(racks: Sequence[pb.Rack], total: int | None = None) -> Table:
    title = f"{len(racks)} of {total} racks" if total is not None else None
    table = _table(title, "NAME", "ID", "MANUFACTURER", "MODEL", "SERIAL", "LOCATION", "COMPONENTS")
    for r in racks:
        loc = "/".join(
            x for x in (r.location.datacenter, r.location.room, r.location.position) if x
        )
        table.add_row(
            r.info.name,
            r.info.id.id,
            r.info.manufacturer,
            r.info.model,
            r.info.serial_number,
            loc,
            str(len(r.components)) if r.components else "",
        )
    return table


def components_table(comps: Sequence[pb.Component], title: str | None = None) -> Table:
    table = _table(
        title, "NAME", "TYPE", "ID", "CORE ID", "SERIAL", "SLOT/TRAY", "FIRMWARE", "POWER", "BMCS"
    )
    for c in comps:
        table.add_row(
            c.info.name,
            component_type_name(c.type),
            c.info.id.id,
            c.component_id,
            c.info.serial_number,
            f"{c.position.slot_id}/{c.position.tray_idx}",
            c.firmware_version,
            c.power_state,
            bmc_text(c.bmcs),
        )
    return table


def rack_detail(rack: pb.Rack) -> list[RenderableType]:
    out: list[RenderableType] = [racks_table([rack])]
    if rack.components:
        out.append(components_table(rack.components, title="Components"))
    return out


def tasks_table(tasks: Sequence[pb.Task], total: int | None = None) -> Table:
    title = f"{len(tasks)} of {total} tasks" if total is not None else None
    table = _table(title, "ID", "RACK ID", "OPERATION", "STATUS", "MESSAGE", "CREATED", "FINISHED")
    for t in tasks:
        table.add_row(
            t.id.id,
            t.rack_id.id,
            t.operation,
            status_name(t.status),
            t.message,
            when(t.created_at),
            when(t.finished_at, t.HasField("finished_at")),
        )
    return table


def task_ids_table(ids: Sequence[str], what: str) -> Table:
    table = _table(f"{what}: {len(ids)} task(s) submitted, one per rack", "TASK ID")
    for i in ids:
        table.add_row(i)
    return table


def progress_table(tasks: Sequence[TaskProgress], rack_names: dict[str, str]) -> Table:
    """One row per rack: status, current stage and its steps' counters."""
    done = sum(1 for t in tasks if t.finished)
    table = _table(
        f"{done}/{len(tasks)} tasks finished", "RACK", "TASK", "STATUS", "STAGE", "STEPS", "MESSAGE"
    )
    for t in tasks:
        stage = t.current_stage
        stage_text = f"{stage.number}/{len(t.stages)} {stage.status}" if stage else ""
        steps = ""
        if stage is not None:
            steps = ", ".join(
                f"{s.component_type} {s.status}"
                + (f" {s.completed}/{s.total}" if s.total else "")
                + (f" ({s.failed} failed)" if s.failed else "")
                for s in stage.steps
            )
        table.add_row(
            rack_names.get(t.rack_id, t.rack_id),
            t.task_id,
            t.status,
            stage_text,
            steps,
            t.error or t.message,
        )
    return table


def stages_table(progress: TaskProgress) -> Table:
    table = _table(
        f"Task {progress.task_id} stages",
        "STAGE",
        "STATUS",
        "STEP",
        "STEP STATUS",
        "COMPONENTS",
        "ERROR",
    )
    for stage in progress.stages:
        for i, s in enumerate(stage.steps or ()):
            table.add_row(
                str(stage.number) if i == 0 else "",
                stage.status if i == 0 else "",
                s.component_type,
                s.status,
                f"{s.completed}/{s.total}" + (f", {s.failed} failed" if s.failed else ""),
                s.error or (stage.error if i == 0 else ""),
            )
    return table


def rules_table(rules: Sequence[pb.OperationRule], total: int | None = None) -> Table:
    title = f"{len(rules)} of {total} rules" if total is not None else None
    table = _table(title, "ID", "NAME", "TYPE", "OPERATION", "DEFAULT", "DESCRIPTION", "UPDATED")
    for r in rules:
        table.add_row(
            r.id.id,
            r.name,
            pb.OperationType.Name(r.operation_type).removeprefix("OPERATION_TYPE_").lower(),
            r.operation_code,
            "yes" if r.is_default else "",
            r.description,
            when(r.updated_at),
        )
    return table


def schedules_table(items: Sequence[pb.TaskSchedule], total: int | None = None) -> Table:
    title = f"{len(items)} of {total} schedules" if total is not None else None
    table = _table(title, "ID", "NAME", "SPEC", "OPERATION", "ENABLED", "NEXT RUN", "LAST RUN")
    for s in items:
        kind = pb.ScheduleSpecType.Name(s.spec.type).removeprefix("SCHEDULE_SPEC_TYPE_").lower()
        spec = f"{kind} {s.spec.spec}" + (f" ({s.spec.timezone})" if s.spec.timezone else "")
        table.add_row(
            s.id.id,
            s.name,
            spec,
            s.description or s.operation_type,
            "yes" if s.enabled else "no",
            when(s.next_run_at, s.HasField("next_run_at")),
            when(s.last_run_at, s.HasField("last_run_at")),
        )
    return table


def nvl_table(domains: Sequence[pb.NVLDomain], total: int | None = None) -> Table:
    title = f"{len(domains)} of {total} NVL domains" if total is not None else None
    table = _table(title, "NAME", "ID")
    for d in domains:
        table.add_row(d.identifier.name, d.identifier.id.id)
    return table


def diffs_table(resp: pb.ValidateComponentsResponse) -> Table:
    title = (
        f"{resp.total_diffs} differences: {resp.missing_count} missing, "
        f"{resp.unexpected_count} unexpected, {resp.mismatch_count} mismatched"
        + (f", {resp.match_count} match" if resp.match_count else "")
    )
    table = _table(title, "DIFF", "ID", "CORE ID", "FIELD", "EXPECTED", "ACTUAL")
    for d in resp.diffs:
        kind = pb.DiffType.Name(d.type).removeprefix("DIFF_TYPE_").lower()
        fields = list(d.field_diffs) or [pb.FieldDiff()]
        for i, f in enumerate(fields):
            table.add_row(
                kind if i == 0 else "",
                d.id.id if i == 0 else "",
                d.component_id if i == 0 else "",
                f.field_name,
                f.expected_value,
                f.actual_value,
            )
    return table


def key_values(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for k, v in rows:
        table.add_row(k, v)
    return table
