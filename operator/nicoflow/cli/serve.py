"""`flow serve`: the Flow gRPC API (v1.Flow), wire-compatible with the original service."""

from __future__ import annotations

import asyncio
import sys

import click


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
) -> None:
    """Serve the Flow gRPC API.

    Certificates: all three of --ca-cert/--tls-cert/--tls-key, or ca.crt, tls.crt and
    tls.key in $CERTDIR (default /var/run/secrets/spiffe.io); clients must then present
    a certificate signed by the CA, and --roles decides what each may call. Without
    certificates the server starts only with ALLOW_INSECURE_GRPC=true or --insecure, in
    FLOW_ENV=development (the default); staging and production refuse to start.

    Prints one JSON line when ready: {"event": "ready", "grpc": "HOST:PORT",
    "metrics": "HOST:PORT" or null, ...}.
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
    )
    tracing.configure(tracing.API_SERVICE, otlp_endpoint, os.environ)
    try:
        server = FlowServer(options)
        asyncio.run(serve_until_signalled(server, sys.stdout))
    except (ServeConfigError, DatabaseConfigError, KubeConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        tracing.shutdown()
