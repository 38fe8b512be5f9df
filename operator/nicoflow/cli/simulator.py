"""`flow simulator`: run the NICo Core simulator, or export its inventory.

flow simulator --racks 3 --port 0 --dev-mode --control-port 0
flow simulator export --racks 3 --seed 1 --format k8s | kubectl apply -f -
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from nicoflow.domain.durations import parse_duration
from nicoflow.domain.types import ComponentType
from nicoflow.simulator.export import ExportFormat, export_site
from nicoflow.simulator.faults import ErrorRule, FaultPlan, parse_latency
from nicoflow.simulator.server import Simulator, TlsFiles, serve_until_signalled
from nicoflow.simulator.settings import SimSettings
from nicoflow.simulator.site import Site, dump_site, generate_site, load_site

FC = TypeVar("FC", bound=Callable[..., Any])


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err


def _duration_option(name: str, default: str, help: str | None = None) -> Callable[[FC], FC]:
    return click.option(
        name, default=default, show_default=True, callback=_duration, metavar="DURATION", help=help
    )


_FILE = click.Path(dir_okay=False, path_type=Path)
_EXISTING = click.Path(exists=True, dir_okay=False, path_type=Path)


def _site_options(f: FC) -> FC:
    f = click.option(
        "--site",
        "site_file",
        type=_EXISTING,
        help="Site file (YAML or JSON, as written by --dump-site); overrides --racks/--seed.",
    )(f)
    f = click.option(
        "--uningested",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="How many of the racks (the last ones) Core has not ingested yet.",
    )(f)
    f = click.option("--seed", type=int, default=0, show_default=True)(f)
    return click.option(
        "--racks",
        type=click.IntRange(min=0),
        default=3,
        show_default=True,
        help="GB200 NVL72 racks.",
    )(f)


def _site(racks: int, seed: int, uningested: int, site_file: Path | None) -> Site:
    if site_file is not None:
        return load_site(site_file)
    if uningested > racks:
        raise click.BadParameter("cannot exceed --racks", param_hint="--uningested")
    return generate_site(racks, seed, uningested=uningested)


def _write_export(site: Site, fmt: ExportFormat, output: Path | None) -> None:
    as_yaml = output is None or output.suffix in (".yaml", ".yml")
    text = export_site(site, fmt, yaml_output=as_yaml and fmt == ExportFormat.K8S)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)


_FORMAT = click.Choice([f.value for f in ExportFormat])


@click.group(invoke_without_command=True)
@_site_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="0 = pick a free port.",
)
@click.option(
    "--control-port",
    type=click.IntRange(-1, 65535),
    default=0,
    show_default=True,
    help="Port of the JSON control API (0 = pick a free port, -1 = no control API).",
)
@click.option("--dev-mode", is_flag=True, help="Serve gRPC reflection and health.")
@click.option("--tls-cert", type=_EXISTING, help="Server certificate (PEM).")
@click.option("--tls-key", type=_EXISTING, help="Server private key (PEM).")
@click.option("--ca-cert", type=_EXISTING, help="CA for client certificates (turns on mTLS).")
@_duration_option("--latency-power", "2s")
@_duration_option("--latency-force-power", "0s", "Duration of a forced power off.")
@_duration_option("--latency-firmware", "30s")
@_duration_option("--latency-ingestion", "5s")
@_duration_option("--latency-dpu-reprovision", "10s")
@_duration_option(
    "--command-lag",
    "0s",
    "How long an accepted power command leaves the power state unchanged before it shows.",
)
@click.option("--faults", "faults_file", type=_EXISTING, help="Fault plan (YAML or JSON).")
@click.option(
    "--error",
    "errors",
    multiple=True,
    metavar="METHOD[:RATE[:CODE[:WHEN]]]",
    help="Inject gRPC errors, e.g. '*:0.05:UNAVAILABLE' (repeatable; adds to --faults).",
)
@click.option(
    "--latency",
    "latencies",
    multiple=True,
    metavar="METHOD=DURATION",
    help="Added latency per RPC, e.g. '*=20ms' (repeatable; adds to --faults).",
)
@click.option(
    "--state-controller",
    type=click.Choice(["compute", "nvswitch", "powershelf"]),
    multiple=True,
    help="Turn on Core's <type>_use_state_controller flag (repeatable).",
)
@click.option(
    "--strict-bmc-endpoints",
    is_flag=True,
    help="Accept only BMC IPs in BmcEndpointRequest (as real Core), not machine IDs.",
)
@click.option("--dump-site", "dump_site_path", type=_FILE, help="Also write the site to this file.")
@click.option("--export-racks", type=_FILE, help="Also write the inventory to this file.")
@click.option("--export-format", type=_FORMAT, default=ExportFormat.K8S.value, show_default=True)
@click.option("--log-level", default="INFO", show_default=True)
@click.pass_context
def simulator(
    ctx: click.Context,
    racks: int,
    seed: int,
    uningested: int,
    site_file: Path | None,
    host: str,
    port: int,
    control_port: int,
    dev_mode: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    ca_cert: Path | None,
    latency_power: float,
    latency_force_power: float,
    latency_firmware: float,
    latency_ingestion: float,
    latency_dpu_reprovision: float,
    command_lag: float,
    faults_file: Path | None,
    errors: tuple[str, ...],
    latencies: tuple[str, ...],
    state_controller: tuple[str, ...],
    strict_bmc_endpoints: bool,
    dump_site_path: Path | None,
    export_racks: Path | None,
    export_format: str,
    log_level: str,
) -> None:
    """Run the NICo Core simulator (forge.Forge over gRPC).

    Prints one JSON line when ready: {"event": "ready", "grpc": "127.0.0.1:PORT",
    "control": "http://127.0.0.1:PORT", ...}. Stops on SIGINT/SIGTERM."""
    if ctx.invoked_subcommand is not None:
        return
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if ca_cert is not None and tls_cert is None:
        raise click.UsageError("--ca-cert needs --tls-cert and --tls-key")
    site = _site(racks, seed, uningested, site_file)
    if dump_site_path is not None:
        dump_site(site, dump_site_path)
    if export_racks is not None:
        _write_export(site, ExportFormat(export_format), export_racks)
    plan = _fault_plan(faults_file, errors, latencies)
    settings = SimSettings(
        power_latency=latency_power,
        force_power_latency=latency_force_power,
        firmware_latency=latency_firmware,
        ingestion_latency=latency_ingestion,
        dpu_reprovision_latency=latency_dpu_reprovision,
        command_lag=command_lag,
        state_controller=frozenset(ComponentType(t) for t in state_controller),
        strict_bmc_endpoints=strict_bmc_endpoints,
    )
    tls = None
    if tls_cert is not None and tls_key is not None:
        tls = TlsFiles(cert=tls_cert, key=tls_key, ca=ca_cert)
    sim = Simulator(
        site,
        faults=plan,
        settings=settings,
        host=host,
        port=port,
        control_port=None if control_port < 0 else control_port,
        dev_mode=dev_mode,
        tls=tls,
    )
    asyncio.run(serve_until_signalled(sim, sys.stdout))


def _fault_plan(
    faults_file: Path | None, errors: tuple[str, ...], latencies: tuple[str, ...]
) -> FaultPlan:
    plan = FaultPlan()
    try:
        if faults_file is not None:
            plan = FaultPlan.from_dict(yaml.safe_load(faults_file.read_text()) or {})
        rules = [ErrorRule.parse(e) for e in errors]
        latency = dict(plan.latency)
        latency.update(parse_latency(spec) for spec in latencies)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    return replace(plan.with_errors(*rules), latency=latency)


@simulator.command("export")
@_site_options
@click.option("--format", "fmt", type=_FORMAT, default=ExportFormat.K8S.value, show_default=True)
@click.option(
    "-o",
    "--output",
    type=_FILE,
    help="File to write (default stdout). k8s: YAML, or a JSON List for *.json.",
)
def export(
    racks: int,
    seed: int,
    uningested: int,
    site_file: Path | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Write the simulated site's inventory: `flow rack create` JSON or Kubernetes Rack objects."""
    _write_export(_site(racks, seed, uningested, site_file), ExportFormat(fmt), output)
