"""`flow rule`: operation rules (stages of steps) and their rack associations."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import click

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.cli.client_common import EXIT_SERVER, EXIT_USAGE, Connection, client_command, fail
from nicoflow.cli.client_output import emit, key_values, rules_table
from nicoflow.client.client import FlowClient
from nicoflow.client.errors import FlowError
from nicoflow.client.rule_batch import (
    API_OPERATION_TYPES,
    RuleRequest,
    parse_operation,
    parse_rule_file,
    rule_request,
)
from nicoflow.domain.types import OperationType

_TYPES = click.Choice([t.value for t in API_OPERATION_TYPES])


@click.group("rule")
def rule() -> None:
    """Operation rules: how an operation runs on a rack, stage by stage."""


def _create_one(flow: FlowClient, r: RuleRequest) -> str:
    return flow.create_rule(
        name=r.name,
        operation_type=r.type_number,
        operation_code=r.operation.value,
        rule_definition_json=r.definition_json,
        description=r.description,
        is_default=r.is_default,
    )


def _batch(conn: Connection, path: Path, dry_run: bool, overwrite: bool) -> None:
    """All or nothing: every rule is checked before anything is written, and
    when the server refuses one, the rules already created are deleted and
    the ones already overwritten are put back."""
    good, bad = parse_rule_file(path.read_text())
    for problem in bad:
        click.echo(f"invalid: {problem}", err=True)
    if dry_run:
        rows = [(r.name, f"{r.operation_type.value}/{r.operation.value} valid") for r in good]
        emit(
            {"valid": [r.name for r in good], "invalid": [str(p) for p in bad]},
            conn.output,
            lambda: key_values(f"dry run: {len(good)} valid, {len(bad)} invalid", rows),
        )
        if bad:
            sys.exit(EXIT_USAGE)
        return
    if bad:
        fail(f"{len(bad)} rule(s) invalid; nothing was created")
    results: list[dict[str, str]] = []
    failed = False
    with conn.client() as flow:
        existing = {r.name: r.id.id for r in flow.list_rules(limit=1000).items}
        undo: list[tuple[dict[str, str], Callable[[], None]]] = []
        for r in good:
            try:
                if r.name in existing and overwrite:
                    rid = existing[r.name]
                    old = flow.get_rule(rid)
                    flow.update_rule(
                        rid, description=r.description, rule_definition_json=r.definition_json
                    )
                    row = {"name": r.name, "id": rid, "result": "updated"}
                    undo.append((row, _restore(flow, old)))
                elif r.name in existing:
                    row = {
                        "name": r.name,
                        "id": existing[r.name],
                        "result": "exists (use --overwrite)",
                    }
                else:
                    rid = _create_one(flow, r)
                    row = {"name": r.name, "id": rid, "result": "created"}
                    undo.append((row, functools.partial(flow.delete_rule, rid)))
                results.append(row)
            except FlowError as err:
                failed = True
                results.append({"name": r.name, "id": "", "result": f"error: {err.describe()}"})
                break
        if failed:
            for row, revert in reversed(undo):
                try:
                    revert()
                    row["result"] += ", rolled back"
                except FlowError as err:
                    row["result"] += f", roll back failed: {err.describe()}"
    emit(
        results,
        conn.output,
        lambda: key_values("rules", [(x["name"], f"{x['result']} {x['id']}") for x in results]),
    )
    if failed:
        sys.exit(EXIT_SERVER)


def _restore(flow: FlowClient, old: pb.OperationRule) -> Callable[[], None]:
    return functools.partial(
        flow.update_rule,
        old.id.id,
        description=old.description,
        rule_definition_json=old.rule_definition_json,
    )


@rule.command("create")
@click.option("--name", help="Rule name (single rule).")
@click.option("--description", default="")
@click.option("--operation-type", type=_TYPES, help="power_control or firmware_control.")
@click.option("--operation", help="Operation code, e.g. power_on, force_restart, upgrade.")
@click.option(
    "--rule-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Rule definition (JSON or YAML).",
)
@click.option("--is-default", is_flag=True, help="Make it the default for its operation.")
@click.option(
    "--from-yaml",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Batch file: version, rules[...].",
)
@click.option("--dry-run", is_flag=True, help="With --from-yaml: only validate.")
@click.option(
    "--overwrite", is_flag=True, help="With --from-yaml: update rules that exist by name."
)
@client_command
def create(
    conn: Connection,
    name: str | None,
    description: str,
    operation_type: str | None,
    operation: str | None,
    rule_file: Path | None,
    is_default: bool,
    from_yaml: Path | None,
    dry_run: bool,
    overwrite: bool,
) -> None:
    """Create one rule, or many from a YAML file (--from-yaml)."""
    if from_yaml is not None:
        if name or rule_file:
            fail("--from-yaml cannot be combined with --name/--rule-file")
        _batch(conn, from_yaml, dry_run, overwrite)
        return
    if not (name and operation_type and operation and rule_file):
        fail("give --name, --operation-type, --operation and --rule-file (or --from-yaml FILE)")
    req = rule_request(
        name=name,
        description=description,
        operation_type=operation_type,
        operation=operation,
        definition=rule_file.read_text(),
        is_default=is_default,
    )
    if dry_run:
        click.echo(f"rule {name} is valid")
        return
    with conn.client() as flow:
        rule_id = _create_one(flow, req)
    emit(
        {"name": name, "id": rule_id},
        conn.output,
        lambda: key_values("rule created", [(name, rule_id)]),
    )


@rule.command("get")
@click.argument("rule_id")
@client_command
def get(conn: Connection, rule_id: str) -> None:
    """Show one rule with its definition."""
    with conn.client() as flow:
        found = flow.get_rule(rule_id)
    emit(found, conn.output, lambda: [rules_table([found]), found.rule_definition_json])


@rule.command("list")
@click.option("--operation-type", type=_TYPES)
@click.option("--default-only", is_flag=True)
@click.option("--offset", type=click.IntRange(0))
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@client_command
def list_rules(
    conn: Connection, operation_type: str | None, default_only: bool, offset: int | None, limit: int
) -> None:
    """List rules."""
    otype = API_OPERATION_TYPES[OperationType(operation_type)] if operation_type else None
    with conn.client() as flow:
        page = flow.list_rules(
            operation_type=otype,
            is_default=True if default_only else None,
            offset=offset,
            limit=limit,
        )
    emit(
        {"rules": page.items, "total": page.total},
        conn.output,
        lambda: rules_table(page.items, page.total),
    )


@rule.command("delete")
@click.argument("rule_id")
@client_command
def delete(conn: Connection, rule_id: str) -> None:
    """Delete a rule and its rack associations."""
    with conn.client() as flow:
        flow.delete_rule(rule_id)
    click.echo(f"rule {rule_id} deleted")


@rule.command("set-default")
@click.option("--id", "rule_id", required=True, help="Rule UUID.")
@client_command
def set_default(conn: Connection, rule_id: str) -> None:
    """Make a rule the default for its operation."""
    with conn.client() as flow:
        flow.set_default_rule(rule_id)
    click.echo(f"rule {rule_id} is now the default for its operation")


@rule.command("associate")
@click.option("--rack-id", required=True)
@click.option("--rule-id", required=True)
@client_command
def associate(conn: Connection, rack_id: str, rule_id: str) -> None:
    """Make a rack use a rule for the rule's operation."""
    with conn.client() as flow:
        flow.associate_rule(rack_id, rule_id)
    click.echo(f"rack {rack_id} uses rule {rule_id}")


@rule.command("disassociate")
@click.option("--rack-id", required=True)
@click.option("--operation-type", type=_TYPES, required=True)
@click.option("--operation", required=True, help="Operation code, e.g. power_on.")
@client_command
def disassociate(conn: Connection, rack_id: str, operation_type: str, operation: str) -> None:
    """Remove a rack's rule for one operation."""
    try:
        otype, code = parse_operation(operation_type, operation)
    except ValueError as exc:
        fail(str(exc))
    with conn.client() as flow:
        flow.disassociate_rule(rack_id, API_OPERATION_TYPES[otype], code.value)
    click.echo(f"rack {rack_id} no longer has a rule for {code.value}")
