"""`flow import-original`: take over a site run by the original service."""

from __future__ import annotations

import asyncio
import json
import sys

import click


@click.command("import-original")
@click.option(
    "--database-url",
    required=True,
    help="The original service's PostgreSQL, e.g. postgresql://flow@old-db:5432/flow "
    "(read only: nothing is written there).",
)
@click.option(
    "--flow-database-url",
    envvar="DATABASE_URL",
    help="Flow's own PostgreSQL (default: $DATABASE_URL or DB_* variables).",
)
@click.option(
    "-n",
    "--namespace",
    envvar="FLOW_NAMESPACE",
    default="nico-flow",
    show_default=True,
    help="Namespace of the API (schedules, the task archive) and of the credentials Secrets.",
)
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig (default: in-cluster).")
@click.option("--dry-run", is_flag=True, help="Only say what would be created and what not.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def import_original(
    database_url: str,
    flow_database_url: str | None,
    namespace: str,
    kubeconfig: str | None,
    dry_run: bool,
    output: str,
) -> None:
    """Import racks, components, NVL domains, rules and their rack associations,
    schedules and finished tasks from the original service's database.

    The original's ids are kept, so its clients go on working. BMC credentials
    go into one Kubernetes Secret per rack (named by the Rack), never into Flow's
    database. Schedules arrive suspended: resume each when it should fire again.
    Soft-deleted rows are not imported; every row that cannot be mapped is
    listed with the reason. Running it again changes nothing."""
    from nicoflow.inventory.db import DatabaseConfigError
    from nicoflow.kube.config import KubeConfigError
    from nicoflow.service.backend import Backend
    from nicoflow.service.original_import.run import import_original as run_import
    from nicoflow.service.original_import.source import read

    async def run() -> None:
        data = await read(database_url)
        backend = Backend.open(
            database_url=flow_database_url, kubeconfig=kubeconfig, namespace=namespace
        )
        try:
            report = await run_import(backend, data, dry_run=dry_run, secret_namespace=namespace)
        finally:
            await backend.close()
        if output == "json":
            click.echo(json.dumps(report.as_dict(), indent=2, default=str))
        else:
            for line in report.lines():
                click.echo(line)

    try:
        asyncio.run(run())
    except (DatabaseConfigError, KubeConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
