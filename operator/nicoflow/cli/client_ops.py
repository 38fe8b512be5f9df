"""`flow power`, `flow firmware`, `flow bringup`, `flow ingest`: submit rack
operations. Each prints the task ids (one per rack); --watch follows them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.cli.client_common import Connection, client_command, split_values, target_options
from nicoflow.cli.client_output import emit, task_ids_table
from nicoflow.cli.client_watch import watch_tasks
from nicoflow.client.client import FlowClient, QueueOptions
from nicoflow.client.targets import target_spec

F = TypeVar("F", bound=Callable[..., Any])


def _common(f: F) -> F:
    options = [
        click.option("--description", default="", help="Free text stored on every task."),
        click.option("--rule-id", help="Run this operation rule instead of the resolved one."),
        click.option(
            "--override-readiness-check", is_flag=True,
            help="Run even on components reporting they are not ready (logged).",
        ),
        click.option("--watch", is_flag=True, help="Follow the tasks until they finish."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return target_options(f)


def _queue(f: F) -> F:
    f = click.option(
        "--queue-timeout", type=click.IntRange(0), default=0,
        help="Longest wait in the queue, seconds (0: server default, 1h).",
    )(f)  # fmt: skip
    return click.option(
        "--queue", is_flag=True, help="Wait for a busy rack instead of rejecting the request."
    )(f)


def _targets(kw: dict[str, Any]) -> pb.OperationTargetSpec:
    return target_spec(
        rack_ids=split_values(kw.pop("rack_ids")),
        rack_names=split_values(kw.pop("rack_names")),
        component_ids=split_values(kw.pop("component_ids")),
        types=split_values(kw.pop("types")),
    )


def _submit(
    conn: Connection, what: str, watch: bool, send: Callable[[FlowClient], list[str]]
) -> None:
    with conn.client() as flow:
        ids = send(flow)
        emit({"task_ids": ids}, conn.output, lambda: task_ids_table(ids, what))
        if watch and ids:
            watch_tasks(flow, ids)


@click.group("power")
def power() -> None:
    """Power racks or components on, off, or reset them."""


def _power(name: str, method: str, title: str, forceable: bool) -> click.Command:
    @click.command(name, help=f"{title}; one task per rack.")
    @_common
    @_queue
    @client_command
    def command(conn: Connection, **kw: Any) -> None:
        spec = _targets(kw)
        watch = kw.pop("watch")
        queue = QueueOptions(kw.pop("queue"), kw.pop("queue_timeout"))
        extra = {"forced": kw.pop("forced")} if forceable else {}

        def send(flow: FlowClient) -> list[str]:
            call: Callable[..., list[str]] = getattr(flow, method)
            return call(
                spec,
                description=kw["description"],
                queue=queue,
                rule_id=kw["rule_id"],
                override_readiness_check=kw["override_readiness_check"],
                **extra,
            )

        _submit(conn, title, watch, send)

    if forceable:
        command = click.option("--forced", is_flag=True, help="Hard, not graceful.")(command)
    return command


power.add_command(_power("on", "power_on", "Power on", False))
power.add_command(_power("off", "power_off", "Power off", True))
power.add_command(_power("reset", "power_reset", "Power reset", True))


@click.group("firmware")
def firmware() -> None:
    """Firmware operations."""


@firmware.command("upgrade")
@_common
@_queue
@click.option("--target-version", help="Version, or JSON with a version per component type.")
@click.option(
    "--sub-target", "sub_targets", multiple=True, help="Firmware part (bmc, nvos, psu ...)."
)
@click.option("-s", "--start", type=click.DateTime(), help="Window start (legacy compute only).")
@click.option("-e", "--end", type=click.DateTime(), help="Window end (legacy compute only).")
@client_command
def upgrade(conn: Connection, **kw: Any) -> None:
    """Upgrade firmware; one task per rack."""
    spec = _targets(kw)
    start: datetime | None = kw["start"]
    end: datetime | None = kw["end"]
    queue = QueueOptions(kw["queue"], kw["queue_timeout"])
    _submit(
        conn,
        "Firmware upgrade",
        kw["watch"],
        lambda flow: flow.upgrade_firmware(
            spec,
            target_version=kw["target_version"],
            sub_targets=split_values(kw["sub_targets"]),
            start_time=start,
            end_time=end,
            description=kw["description"],
            queue=queue,
            rule_id=kw["rule_id"],
            override_readiness_check=kw["override_readiness_check"],
        ),
    )


@click.command("bringup")
@_common
@client_command
def bringup(conn: Connection, **kw: Any) -> None:
    """Bring racks up stage by stage (always rejects when a rack is busy)."""
    spec = _targets(kw)
    _submit(
        conn,
        "Bring-up",
        kw["watch"],
        lambda flow: flow.bring_up(
            spec,
            description=kw["description"],
            rule_id=kw["rule_id"],
            override_readiness_check=kw["override_readiness_check"],
        ),
    )


@click.command("ingest")
@target_options
@click.option("--description", default="", help="Free text stored on every task.")
@click.option("--rule-id", help="Run this ingestion rule instead of the resolved one.")
@click.option("--watch", is_flag=True, help="Follow the tasks until they finish.")
@client_command
def ingest(conn: Connection, **kw: Any) -> None:
    """Ingest racks into NICo Core (the bring-up workflow with the ingestion rule)."""
    spec = _targets(kw)
    _submit(
        conn,
        "Ingest",
        kw["watch"],
        lambda flow: flow.ingest(spec, description=kw["description"], rule_id=kw["rule_id"]),
    )
