"""`flow operator`: the kopf operator that drives TaskSpecs and Tasks."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import click


@click.command("operator")
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig (default: in-cluster).")
@click.option("--database-url", envvar="DATABASE_URL", help="PostgreSQL URL (or DB_* variables).")
@click.option(
    "-c",
    "--component-config",
    envvar="COMPONENT_MANAGER_CONFIG",
    type=click.Path(exists=True, dir_okay=False),
    help="Component-manager YAML (default: embedded).",
)
@click.option("--core-url", envvar="NICO_CORE_API_URL", help="NICo Core address host:port.")
@click.option(
    "--peering",
    "peering",
    default=None,
    help="kopf peering object; with it, only one operator of the highest priority is active.",
)
@click.option("--standalone", is_flag=True, help="Run without peering (a single operator).")
@click.option("--priority", type=int, default=0, show_default=True, help="Peering priority.")
@click.option(
    "--liveness", default=None, help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
)
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch TaskSpecs and Tasks only in this namespace (repeatable; default: all).",
)
@click.option("--stage-events", is_flag=True, help="Post a Normal Event for every stage.")
@click.option(
    "--resolve-grace",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a TaskSpec waits for targets that do not resolve yet (Racks applied with it).",
)
@click.option(
    "--inventory-interval",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds between inventory syncs with NICo Core (power, firmware, drift, leaks); 0 = off.",
)
@click.option(
    "--leak-namespace",
    default="nico-flow",
    show_default=True,
    help="Namespace of the force_power_off TaskSpecs created for leaks.",
)
@click.option("--alert-webhook", default=None, help="POST alerts as JSON to this URL.")
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve Prometheus metrics on this port (0 = any free port; default: off).",
)
@click.option(
    "--ttl-sweep",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds between checks for TaskSpecs past ttlSecondsAfterFinished.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line with task, rack and stage fields.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logs.")
def operator(
    kubeconfig: str | None,
    database_url: str | None,
    component_config: str | None,
    core_url: str | None,
    peering: str | None,
    standalone: bool,
    priority: int,
    liveness: str | None,
    namespaces: tuple[str, ...],
    stage_events: bool,
    resolve_grace: float,
    inventory_interval: float,
    leak_namespace: str,
    alert_webhook: str | None,
    metrics_port: int | None,
    ttl_sweep: float,
    log_format: str,
    verbose: bool,
) -> None:
    """Watch Racks, OperationRules, TaskSpecs and Tasks, and run Tasks through NICo Core."""
    import kopf

    from nicoflow import logfmt
    from nicoflow.controller import handlers

    logfmt.configure(log_format, verbose=verbose)
    if not verbose:
        # kopf reports every handled event at INFO: thousands of lines per run
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
    handlers.OPTIONS.kubeconfig = kubeconfig
    handlers.OPTIONS.database_url = database_url
    handlers.OPTIONS.component_config = component_config
    handlers.OPTIONS.core_url = core_url
    handlers.OPTIONS.stage_events = stage_events
    handlers.OPTIONS.namespaces = namespaces
    handlers.OPTIONS.resolve_grace_seconds = resolve_grace
    handlers.OPTIONS.ttl_sweep_seconds = ttl_sweep
    handlers.OPTIONS.inventory_interval = inventory_interval
    handlers.OPTIONS.leak_namespace = leak_namespace
    handlers.OPTIONS.alert_webhook = alert_webhook
    handlers.OPTIONS.metrics_port = metrics_port

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=standalone or None,
            peering_name=peering,
            priority=priority,
            liveness_endpoint=liveness,
            stop_flag=stop,
        )

    asyncio.run(main())
