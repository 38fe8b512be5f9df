"""`flow nvl`: NVLink domains and the racks in them."""

from __future__ import annotations

import click

from nicoflow.cli.client_common import Connection, client_command
from nicoflow.cli.client_output import emit, key_values, nvl_table, racks_table


@click.group("nvl")
def nvl() -> None:
    """NVLink domains (racks sharing one NVLink fabric)."""


@nvl.command("create")
@click.argument("name")
@client_command
def create(conn: Connection, name: str) -> None:
    """Create a domain named NAME."""
    with conn.client() as flow:
        domain_id = flow.create_nvl_domain(name)
    emit(
        {"name": name, "id": domain_id},
        conn.output,
        lambda: key_values("NVL domain created", [(name, domain_id)]),
    )


@nvl.command("list")
@click.argument("patterns", nargs=-1)
@click.option("--offset", type=click.IntRange(0))
@click.option("--limit", type=click.IntRange(1))
@client_command
def list_domains(
    conn: Connection, patterns: tuple[str, ...], offset: int | None, limit: int | None
) -> None:
    """List domains whose name matches PATTERNS (wildcards; default all)."""
    with conn.client() as flow:
        page = flow.list_nvl_domains(list(patterns) or ["%"], offset=offset, limit=limit)
    emit(
        {"nvl_domains": page.items, "total": page.total},
        conn.output,
        lambda: nvl_table(page.items, page.total),
    )


@nvl.command("attach")
@click.argument("domain")
@click.argument("racks", nargs=-1, required=True)
@client_command
def attach(conn: Connection, domain: str, racks: tuple[str, ...]) -> None:
    """Put RACKS (ids or names) into DOMAIN (id or name)."""
    with conn.client() as flow:
        flow.attach_racks(domain, list(racks))
    click.echo(f"{len(racks)} rack(s) attached to {domain}")


@nvl.command("detach")
@click.argument("racks", nargs=-1, required=True)
@client_command
def detach(conn: Connection, racks: tuple[str, ...]) -> None:
    """Take RACKS (ids or names) out of their domain."""
    with conn.client() as flow:
        flow.detach_racks(list(racks))
    click.echo(f"{len(racks)} rack(s) detached")


@nvl.command("racks")
@click.argument("domain")
@client_command
def racks(conn: Connection, domain: str) -> None:
    """List the racks of DOMAIN (id or name)."""
    with conn.client() as flow:
        found = flow.racks_for_nvl_domain(domain)
    emit(found, conn.output, lambda: racks_table(found, len(found)))
