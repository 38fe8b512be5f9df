"""The `flow` command. Subcommands live in their own modules and load lazily,
so `flow --help` stays fast and a client command never imports kopf."""

from __future__ import annotations

import importlib
import importlib.util

import click

from nicoflow import __version__

# command name -> (module under nicoflow.cli, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "crds": ("crds", "crds", "Render the CRD YAML from the Python models."),
    "db": ("db", "db", "Database schema migrations."),
    "import-original": (
        "import_original",
        "import_original",
        "Take over a site from the original service's database.",
    ),
    "dev": ("dev", "dev", "Run the local development stack (apiserver, etcd, PostgreSQL)."),
    "simulator": ("simulator", "simulator", "Run the NICo Core simulator."),
    "operator": ("operator", "operator", "Run the operator (kopf)."),
    "serve": ("serve", "serve", "Serve the Flow gRPC API (v1.Flow)."),
    "rack": ("client_rack", "rack", "Racks of the expected inventory (Flow API client)."),
    "component": ("client_component", "component", "Components of the expected inventory."),
    "nvl": ("client_nvl", "nvl", "NVLink domains."),
    "power": ("client_ops", "power", "Power racks or components on, off, or reset them."),
    "firmware": ("client_ops", "firmware", "Firmware upgrades."),
    "bringup": ("client_ops", "bringup", "Bring racks up."),
    "ingest": ("client_ops", "ingest", "Ingest racks into NICo Core."),
    "task": ("client_task", "task", "List, inspect, cancel and watch tasks."),
    "rule": ("client_rule", "rule", "Operation rules and rack associations."),
    "schedule": ("client_schedule", "schedule", "Task schedules."),
    "version": ("client_version", "version", "Client and server versions."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in COMMANDS if _module_exists(COMMANDS[n][0]))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None or not _module_exists(entry[0]):
            return None
        module = importlib.import_module(f"nicoflow.cli.{entry[0]}")
        command = getattr(module, entry[1])
        assert isinstance(command, click.Command)
        return command


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"nicoflow.cli.{name}") is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flow")
def cli() -> None:
    """NICo Flow: rack-level power and firmware operations for GPU racks."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
