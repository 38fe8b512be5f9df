"""`flow serve`: the Flow gRPC API (v1.Flow), wire-compatible with the original service."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from nicoflow.service.server import FlowServer


@click.command("serve")
@click.option(
    "-p", "--listen-port", type=int, default=50051, show_default=True, help="gRPC port (0: any)."
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to bind.")
@click.option(
    "--dev-mode",
    is_flag=True,
    help="gRPC reflection and debug logs (refused with FLOW_ENV=staging or production).",
)
@click.option("--ca-cert", type=click.Path(dir_okay=False), help="CA that signs client certs.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="Server certificate.")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="Server private key.")
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve plaintext gRPC when no certificates are given (development only; the same as "
    "ALLOW_INSECURE_GRPC=true). Every caller may then do everything.",
)
@click.option(
    "--roles",
    "roles_file",
    envvar="FLOW_API_ROLES",
    type=click.Path(dir_okay=False),
    help="YAML mapping client certificate identities to viewer, operator or admin "
    "(see docs/security.md).",
)
@click.option(
    "-n",
    "--namespace",
    envvar="FLOW_NAMESPACE",
    default="nico-flow",
    show_default=True,
    help="Namespace where operation RPCs create TaskSpecs and tasks are read.",
)
@click.option("--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig (default: in-cluster).")
@click.option("--database-url", envvar="DATABASE_URL", help="PostgreSQL URL (or DB_* variables).")
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve Prometheus metrics on this port (0 = any free port; default: off).",
)
@click.option(
    "--taskspec-ttl",
    envvar="FLOW_TASKSPEC_TTL_SECONDS",
    type=click.IntRange(0, 31536000),
    default=86400,
    show_default=True,
    help="Delete the TaskSpecs (and Tasks) that operation RPCs create this many seconds "
    "after they finish; their history stays in PostgreSQL (0: keep them).",
)
@click.option(
    "--otlp-endpoint",
    default=None,
    help="Send trace spans over OTLP/gRPC, e.g. http://collector:4317 "
    "(default: $OTEL_EXPORTER_OTLP_ENDPOINT; unset: no tracing).",
)
@click.option(
    "--workers",
    envvar="FLOW_API_WORKERS",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="API processes sharing the port (SO_REUSEPORT); one process uses one core. "
    "Metrics are summed across them.",
)
@click.option("--reuse-port", is_flag=True, hidden=True, help="Set by --workers in each worker.")
@click.option("--metrics-host", hidden=True, help="Set by --workers in each worker.")
def serve(
    listen_port: int,
    host: str,
    dev_mode: bool,
    ca_cert: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    insecure: bool,
    roles_file: str | None,
    namespace: str,
    kubeconfig: str | None,
    database_url: str | None,
    metrics_port: int | None,
    taskspec_ttl: int,
    otlp_endpoint: str | None,
    workers: int,
    reuse_port: bool,
    metrics_host: str | None,
) -> None:
    """Serve the Flow gRPC API.

    Certificates: all three of --ca-cert/--tls-cert/--tls-key, or ca.crt, tls.crt and
    tls.key in $CERTDIR (default /var/run/secrets/spiffe.io); clients must then present
    a certificate signed by the CA, and --roles decides what each may call. Without
    certificates the server starts only with ALLOW_INSECURE_GRPC=true or --insecure, in
    FLOW_ENV=development (the default); staging and production refuse to start.

    Prints one JSON line when ready: {"event": "ready", "grpc": "HOST:PORT",
    "metrics": "HOST:PORT" or null, ...}; with --workers above 1 it also names
    each worker's pid.
    """
    import os

    from nicoflow import tracing
    from nicoflow.inventory.db import DatabaseConfigError
    from nicoflow.kube.config import KubeConfigError
    from nicoflow.service import logs
    from nicoflow.service.config import ServeConfigError
    from nicoflow.service.server import FlowServer, ServeOptions, serve_until_signalled

    logs.configure(dev_mode)
    options = ServeOptions(
        host=host,
        port=listen_port,
        dev_mode=dev_mode,
        ca_cert=ca_cert,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure=insecure,
        roles_file=roles_file,
        namespace=namespace,
        kubeconfig=kubeconfig,
        database_url=database_url,
        metrics_port=metrics_port,
        taskspec_ttl=taskspec_ttl,
        reuse_port=reuse_port,
        metrics_host=metrics_host,
    )
    try:
        server = FlowServer(options)  # refuses unsafe configurations before any worker starts
        if workers > 1:
            sys.exit(_run_workers(server, workers, otlp_endpoint))
        tracing.configure(tracing.API_SERVICE, otlp_endpoint, os.environ)
        asyncio.run(serve_until_signalled(server, sys.stdout))
    except (ServeConfigError, DatabaseConfigError, KubeConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        tracing.shutdown()


def _run_workers(server: FlowServer, count: int, otlp_endpoint: str | None) -> int:
    """This process supervises; each worker is `flow serve` with the same
    options on the same port."""
    from nicoflow.service import workers

    o = server.options
    reserved = workers.reserve_port(o.host, o.port)
    port = reserved.getsockname()[1]
    args = ["--host", o.host, "--listen-port", str(port), "--namespace", o.namespace]
    args += ["--taskspec-ttl", str(o.taskspec_ttl), "--reuse-port"]
    for flag, value in (
        ("--ca-cert", o.ca_cert),
        ("--tls-cert", o.tls_cert),
        ("--tls-key", o.tls_key),
        ("--roles", o.roles_file),
        ("--otlp-endpoint", otlp_endpoint),
    ):
        if value:
            args += [flag, value]
    args += ["--dev-mode"] if o.dev_mode else []
    args += ["--insecure"] if o.insecure else []
    if o.metrics_port is not None:
        # each worker's own endpoint on loopback; this process serves the sum
        args += ["--metrics-port", "0", "--metrics-host", "127.0.0.1"]
    env = dict(server.env)
    # secrets through the environment: a command line is readable by anyone on the node
    if o.database_url:
        env["DATABASE_URL"] = o.database_url
    if o.kubeconfig:
        env["KUBECONFIG"] = o.kubeconfig
    plan = workers.WorkerPlan(
        argv=workers.worker_argv(args),
        env=env,
        host=o.host,
        port=port,
        metrics_port=o.metrics_port,
        count=count,
    )
    host = f"[{o.host}]" if ":" in o.host else o.host
    base = {
        "event": "ready",
        "grpc": f"{host}:{port}",
        "tls": server.security.tls is not None,
        "dev_mode": o.dev_mode,
    }
    return asyncio.run(workers.run(plan, base, sys.stdout, reserved))
