"""`flow schedule`: task schedules (cron, interval or one-time firings of an operation)."""

from __future__ import annotations

from typing import Any

import click

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.cli.client_common import (
    Connection,
    client_command,
    fail,
    split_values,
    target_options,
)
from nicoflow.cli.client_output import emit, schedules_table, task_ids_table
from nicoflow.client.client import QueueOptions
from nicoflow.client.targets import target_spec

OPERATIONS = ("power-on", "power-off", "power-reset", "bring-up", "ingest", "upgrade-firmware")


def scheduled_operation(
    operation: str,
    spec: pb.OperationTargetSpec,
    *,
    forced: bool = False,
    target_version: str | None = None,
    sub_targets: list[str] | None = None,
    rule_id: str | None = None,
    queue_timeout: int = 0,
) -> pb.ScheduledOperation:
    """The operation a schedule fires (its target spec is the initial scope)."""
    rule = pb.UUID(id=rule_id) if rule_id else None
    # the overlap policy decides queue vs reject; only the timeout is carried here
    queue = QueueOptions(False, queue_timeout).message() if queue_timeout else None
    match operation:
        case "power-on":
            return pb.ScheduledOperation(
                power_on=pb.PowerOnRackRequest(target_spec=spec, rule_id=rule, queue_options=queue)
            )
        case "power-off":
            return pb.ScheduledOperation(
                power_off=pb.PowerOffRackRequest(
                    target_spec=spec, forced=forced, rule_id=rule, queue_options=queue
                )
            )
        case "power-reset":
            return pb.ScheduledOperation(
                power_reset=pb.PowerResetRackRequest(
                    target_spec=spec, forced=forced, rule_id=rule, queue_options=queue
                )
            )
        case "bring-up":
            return pb.ScheduledOperation(
                bring_up=pb.BringUpRackRequest(target_spec=spec, rule_id=rule)
            )
        case "ingest":
            return pb.ScheduledOperation(
                ingest=pb.IngestRackRequest(target_spec=spec, rule_id=rule)
            )
        case "upgrade-firmware":
            return pb.ScheduledOperation(
                upgrade_firmware=pb.UpgradeFirmwareRequest(
                    target_spec=spec,
                    target_version=target_version,
                    sub_targets=sub_targets or [],
                    rule_id=rule,
                    queue_options=queue,
                )
            )
    raise ValueError(f"unknown operation {operation!r}")


def schedule_spec(
    cron: str | None, interval: str | None, at: str | None, timezone: str
) -> pb.ScheduleSpec:
    given = [
        (pb.SCHEDULE_SPEC_TYPE_CRON, cron),
        (pb.SCHEDULE_SPEC_TYPE_INTERVAL, interval),
        (pb.SCHEDULE_SPEC_TYPE_ONE_TIME, at),
    ]
    chosen = [(kind, text) for kind, text in given if text]
    if len(chosen) != 1:
        fail("give exactly one of --cron, --interval or --at")
    kind, text = chosen[0]
    return pb.ScheduleSpec(
        type=kind, spec=str(text), timezone=timezone if kind == pb.SCHEDULE_SPEC_TYPE_CRON else ""
    )


@click.group("schedule")
def schedule() -> None:
    """Task schedules: fire an operation on a cron, an interval or once."""


@schedule.command("create")
@click.option("--name", required=True, help="Unique schedule name.")
@click.option("--cron", help="Five-field cron expression.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone for --cron.")
@click.option("--interval", help="Interval such as 24h or 90m.")
@click.option("--at", help="One time, RFC 3339 (2030-01-02T03:04:05Z).")
@click.option(
    "--overlap",
    type=click.Choice(["skip", "queue"]),
    default="skip",
    show_default=True,
    help="When the previous task of a rack is still active.",
)
@click.option("--operation", type=click.Choice(OPERATIONS), required=True)
@click.option("--forced", is_flag=True, help="power-off/power-reset: hard, not graceful.")
@click.option("--target-version", help="upgrade-firmware: version (or JSON per type).")
@click.option("--sub-target", "sub_targets", multiple=True, help="upgrade-firmware: firmware part.")
@click.option("--rule-id", help="Run this operation rule.")
@click.option(
    "--queue-timeout", type=click.IntRange(0), default=0, help="Seconds a queued firing may wait."
)
@target_options
@client_command
def create(conn: Connection, **kw: Any) -> None:
    """Create a schedule; the targets become its first scope."""
    spec = target_spec(
        rack_ids=split_values(kw["rack_ids"]),
        rack_names=split_values(kw["rack_names"]),
        component_ids=split_values(kw["component_ids"]),
        types=split_values(kw["types"]),
    )
    config = pb.ScheduleConfig(
        name=kw["name"],
        spec=schedule_spec(kw["cron"], kw["interval"], kw["at"], kw["timezone"]),
        overlap_policy=pb.OVERLAP_POLICY_QUEUE
        if kw["overlap"] == "queue"
        else pb.OVERLAP_POLICY_SKIP,
    )
    op = scheduled_operation(
        kw["operation"],
        spec,
        forced=kw["forced"],
        target_version=kw["target_version"],
        sub_targets=split_values(kw["sub_targets"]),
        rule_id=kw["rule_id"],
        queue_timeout=kw["queue_timeout"],
    )
    with conn.client() as flow:
        created = flow.create_schedule(config, op)
    emit(created, conn.output, lambda: schedules_table([created]))


@schedule.command("get")
@click.argument("schedule_id")
@client_command
def get(conn: Connection, schedule_id: str) -> None:
    """Show one schedule and its scope."""
    with conn.client() as flow:
        found = flow.get_schedule(schedule_id)
        scopes = flow.list_schedule_scopes(schedule_id)
    emit({"schedule": found, "scopes": scopes}, conn.output, lambda: schedules_table([found]))


@schedule.command("list")
@click.option("--rack-id", help="Only schedules with this rack in scope.")
@click.option("--enabled-only", is_flag=True)
@click.option("--offset", type=click.IntRange(0))
@click.option("--limit", type=click.IntRange(1))
@client_command
def list_schedules(
    conn: Connection, rack_id: str | None, enabled_only: bool, offset: int | None, limit: int | None
) -> None:
    """List schedules, oldest first."""
    with conn.client() as flow:
        page = flow.list_schedules(
            rack_id=rack_id, enabled_only=enabled_only or None, offset=offset, limit=limit
        )
    emit(
        {"task_schedules": page.items, "total": page.total},
        conn.output,
        lambda: schedules_table(page.items, page.total),
    )


def _state_command(name: str, method: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.argument("schedule_id")
    @client_command
    def command(conn: Connection, schedule_id: str) -> None:
        with conn.client() as flow:
            changed: pb.TaskSchedule = getattr(flow, method)(schedule_id)
        emit(changed, conn.output, lambda: schedules_table([changed]))

    return command


schedule.add_command(_state_command("pause", "pause_schedule", "Stop a schedule from firing."))
schedule.add_command(_state_command("resume", "resume_schedule", "Re-enable a paused schedule."))


@schedule.command("trigger")
@click.argument("schedule_id")
@client_command
def trigger(conn: Connection, schedule_id: str) -> None:
    """Fire a schedule now; prints the task ids."""
    with conn.client() as flow:
        ids = flow.trigger_schedule(schedule_id)
    emit({"task_ids": ids}, conn.output, lambda: task_ids_table(ids, "Triggered"))


@schedule.command("delete")
@click.argument("schedule_id")
@client_command
def delete(conn: Connection, schedule_id: str) -> None:
    """Delete a schedule (running tasks go on)."""
    with conn.client() as flow:
        flow.delete_schedule(schedule_id)
    click.echo(f"schedule {schedule_id} deleted")
