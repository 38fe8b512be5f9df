"""`flow operator`: the kopf operator that drives TaskSpecs and Tasks."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path

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
@click.option(
    "--leader-elect/--no-leader-elect",
    default=None,
    help="Act only while holding a coordination.k8s.io Lease; standby otherwise "
    "(default: on when POD_NAMESPACE is set, i.e. in a cluster).",
)
@click.option(
    "--leader-election-namespace",
    default=None,
    help="Namespace of the Lease (default: POD_NAMESPACE, else nico-flow).",
)
@click.option(
    "--leader-election-id",
    default="nico-flow-operator",
    show_default=True,
    help="Name of the Lease.",
)
@click.option(
    "--leader-identity",
    default=None,
    help="Holder identity (default: POD_NAME, else host name and process id).",
)
@click.option(
    "--leader-elect-lease-duration",
    type=click.IntRange(min=1),
    default=15,
    show_default=True,
    help="Seconds a standby waits for an unrenewed Lease before taking it.",
)
@click.option(
    "--leader-elect-renew-deadline",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds the leader keeps failing to renew before it stops and exits 1.",
)
@click.option(
    "--leader-elect-retry-period",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between attempts to acquire or renew.",
)
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
    "--leak-interval",
    type=click.FloatRange(min=0.0),
    default=60.0,
    show_default=True,
    help="Seconds between the leak watch's questions to NICo Core (which trays leak); a leaking "
    "tray is forced off within this plus the power-off time. 0 = off (not for production).",
)
@click.option(
    "--history-max-age-days",
    type=click.IntRange(min=0),
    default=90,
    show_default=True,
    help="Prune finished Tasks (and their per-component results) from the PostgreSQL "
    "history after this many days. 0 = no age bound.",
)
@click.option(
    "--history-max-tasks",
    type=click.IntRange(min=0),
    default=1_000_000,
    show_default=True,
    help="Keep at most this many finished Tasks in the history, the newest. 0 = no bound.",
)
@click.option(
    "--history-prune-interval",
    type=click.FloatRange(min=1.0),
    default=3600.0,
    show_default=True,
    help="Seconds between history prunings.",
)
@click.option(
    "--mirror-expected-racks",
    is_flag=True,
    envvar="FLOW_MIRROR_EXPECTED_RACKS",
    help="Create a Rack for every rack NICo Core expects that Flow lacks "
    "(labelled flow.nico.io/source=core; existing Racks are never changed).",
)
@click.option(
    "--leak-namespace",
    default="nico-flow",
    show_default=True,
    help="Namespace of the force_power_off TaskSpecs created for leaks.",
)
@click.option(
    "--platform-namespace",
    envvar="FLOW_PLATFORM_NAMESPACE",
    default=None,
    help="nico-flow's own namespace: while no RackAccessPolicy exists, only it (and the "
    "leak namespace) may operate (default: POD_NAMESPACE, else the one --namespace, "
    "else nico-flow).",
)
@click.option(
    "--platform-grant/--no-platform-grant",
    default=True,
    show_default=True,
    help="The platform and leak namespaces may run every operation on every rack, whatever "
    "the RackAccessPolicies say (without it they need a policy once any exists).",
)
@click.option(
    "--alert-webhook",
    envvar="FLOW_ALERT_WEBHOOK_URL",
    default=None,
    help="POST alerts as JSON to this URL. It usually holds a token: prefer "
    "--alert-webhook-file or $FLOW_ALERT_WEBHOOK_URL (from a Secret) to an argument.",
)
@click.option(
    "--alert-webhook-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Read the webhook URL from this file (a mounted Secret key).",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve Prometheus metrics on this port (0 = any free port; default: off).",
)
@click.option(
    "--otlp-endpoint",
    default=None,
    help="Send trace spans over OTLP/gRPC, e.g. http://collector:4317 "
    "(default: $OTEL_EXPORTER_OTLP_ENDPOINT; unset: no tracing).",
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
@click.option(
    "--confirm-window",
    type=click.FloatRange(min=0.0),
    default=30.0,
    show_default=True,
    help="Seconds a command whose reply was lost (or that was in flight when the operator "
    "restarted) is looked for in NICo Core's state before it counts as not received and is "
    "sent again. Raise it for BMCs that take longer to show a command they accepted.",
)
@click.option(
    "--max-racks-in-flight",
    type=click.IntRange(min=0),
    default=500,
    show_default=True,
    help="Racks with a Task running at once, across all TaskSpecs; further Tasks wait for a "
    "slot (0 = no limit).",
)
@click.option(
    "--core-calls-per-second",
    type=click.FloatRange(min=0.0),
    default=300.0,
    show_default=True,
    help="NICo Core calls the operator starts per second at most, reads and writes alike "
    "(0 = no limit).",
)
@click.option(
    "--max-unthrottled-racks",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="A disruptive operation (anything but power on and ingest) on more racks than this "
    "is refused unless its TaskSpec sets maxParallelRacks (0 = no such check).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logs.")
def operator(
    kubeconfig: str | None,
    database_url: str | None,
    component_config: str | None,
    core_url: str | None,
    peering: str | None,
    standalone: bool,
    leader_elect: bool | None,
    leader_election_namespace: str | None,
    leader_election_id: str,
    leader_identity: str | None,
    leader_elect_lease_duration: int,
    leader_elect_renew_deadline: float,
    leader_elect_retry_period: float,
    priority: int,
    liveness: str | None,
    namespaces: tuple[str, ...],
    stage_events: bool,
    resolve_grace: float,
    inventory_interval: float,
    leak_interval: float,
    history_max_age_days: int,
    history_max_tasks: int,
    history_prune_interval: float,
    mirror_expected_racks: bool,
    leak_namespace: str,
    platform_namespace: str | None,
    platform_grant: bool,
    alert_webhook: str | None,
    alert_webhook_file: str | None,
    metrics_port: int | None,
    otlp_endpoint: str | None,
    ttl_sweep: float,
    log_format: str,
    confirm_window: float,
    max_racks_in_flight: int,
    core_calls_per_second: float,
    max_unthrottled_racks: int,
    verbose: bool,
) -> None:
    """Watch Racks, OperationRules, TaskSpecs and Tasks, and run Tasks through NICo Core."""
    from nicoflow.kube import leadership

    elect = (
        leader_elect if leader_elect is not None else leadership.leader_election_default(os.environ)
    )
    if elect and peering:
        raise click.UsageError("--peering and leader election exclude each other")
    try:
        timing = leadership.Timing(
            leader_elect_lease_duration, leader_elect_renew_deadline, leader_elect_retry_period
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    import kopf

    from nicoflow import logfmt, tracing
    from nicoflow.controller import handlers
    from nicoflow.controller.retention import Retention

    logfmt.configure(log_format, verbose=verbose)
    traced_to = tracing.configure(tracing.OPERATOR_SERVICE, otlp_endpoint, os.environ)
    if traced_to:
        logging.getLogger(__name__).info("tracing: spans go to %s over OTLP/gRPC", traced_to)
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
    handlers.OPTIONS.confirm_window = confirm_window
    handlers.OPTIONS.max_racks_in_flight = max_racks_in_flight
    handlers.OPTIONS.core_calls_per_second = core_calls_per_second
    handlers.OPTIONS.max_unthrottled_racks = max_unthrottled_racks
    handlers.OPTIONS.namespaces = namespaces
    handlers.OPTIONS.resolve_grace_seconds = resolve_grace
    handlers.OPTIONS.ttl_sweep_seconds = ttl_sweep
    handlers.OPTIONS.inventory_interval = inventory_interval
    handlers.OPTIONS.leak_interval = leak_interval
    handlers.OPTIONS.history = Retention(
        max_age=timedelta(days=history_max_age_days) if history_max_age_days else None,
        max_tasks=history_max_tasks or None,
    )
    handlers.OPTIONS.history_prune_interval = history_prune_interval
    handlers.OPTIONS.leak_namespace = leak_namespace
    handlers.OPTIONS.platform_namespace = (
        platform_namespace
        or os.environ.get("POD_NAMESPACE")
        or (namespaces[0] if len(namespaces) == 1 else "nico-flow")
    )
    handlers.OPTIONS.platform_grant = platform_grant
    handlers.OPTIONS.mirror_expected_racks = mirror_expected_racks
    if alert_webhook and alert_webhook_file:
        raise click.UsageError("give the webhook URL once: --alert-webhook or --alert-webhook-file")
    if alert_webhook_file:
        alert_webhook = Path(alert_webhook_file).read_text().strip() or None
    handlers.OPTIONS.alert_webhook = alert_webhook
    handlers.OPTIONS.metrics_port = metrics_port

    async def operate(stop: asyncio.Event, ready: asyncio.Event) -> None:
        await kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            # leader election decides who runs: kopf's peering would only add a pause
            standalone=True if elect else (standalone or None),
            peering_name=None if elect else peering,
            priority=priority,
            liveness_endpoint=liveness,
            stop_flag=stop,
            ready_flag=ready,
        )

    from nicoflow.controller import election

    if not elect:
        asyncio.run(election.run_operator(operate))
        return
    candidate = leadership.resolve_candidate(
        namespace=leader_election_namespace,
        name=leader_election_id,
        identity=leader_identity,
        timing=timing,
        env=os.environ,
    )
    sys.exit(asyncio.run(election.run_as_leader(candidate, kubeconfig, operate)))
