"""What every `flow` client command shares: connection flags, the output
format, list-valued options, and turning failures into one-line errors.

    @click.command()
    @client_command
    def get(conn: Connection, ...) -> None:
        with conn.client() as flow: ...

Failures print `error: <code>: <message>` on stderr and exit 1 (server said no)
or 2 (the command line or a local file is wrong)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from nicoflow.client.client import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_TIMEOUT, FlowClient
from nicoflow.client.errors import ClientConfigError, FlowError
from nicoflow.client.rackjson import RackJsonError
from nicoflow.client.rule_batch import RuleFileError
from nicoflow.client.targets import TargetError
from nicoflow.client.tls import TlsSettings
from nicoflow.domain.rules import RuleError

F = TypeVar("F", bound=Callable[..., Any])

OUTPUTS = ("table", "json", "yaml")
EXIT_SERVER = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class Connection:
    host: str
    port: int
    tls: TlsSettings
    timeout: float
    output: str

    def client(self) -> FlowClient:
        return FlowClient(self.host, self.port, tls=self.tls, timeout=self.timeout)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def split_values(values: Iterable[str]) -> list[str]:
    """Repeated and comma-separated option values, in order, without blanks."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _connection_options(f: F) -> F:
    options = [
        click.option(
            "-H", "--host", envvar="FLOW_HOST", default=DEFAULT_HOST, show_default=True,
            help="Flow API host ($FLOW_HOST).",
        ),
        click.option(
            "-P", "--port", envvar="FLOW_PORT", type=int, default=DEFAULT_PORT,
            show_default=True, help="Flow API port ($FLOW_PORT).",
        ),
        click.option("--ca-cert", type=click.Path(dir_okay=False), help="CA of the server."),
        click.option("--tls-cert", type=click.Path(dir_okay=False), help="Client certificate."),
        click.option("--tls-key", type=click.Path(dir_okay=False), help="Client private key."),
        click.option("--server-name", help="Name expected in the server certificate."),
        click.option(
            "--insecure", is_flag=True,
            help="Plaintext gRPC (development servers without certificates).",
        ),
        click.option(
            "--timeout", "call_timeout", type=float, default=DEFAULT_TIMEOUT,
            show_default=True, help="Seconds per call.",
        ),
        click.option(
            "-o", "--output", type=click.Choice(OUTPUTS), default="table", show_default=True,
            help="Output format.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def client_command(f: F) -> F:
    """Adds the connection flags, passes a `conn: Connection`, and reports failures."""

    @functools.wraps(f)
    def wrapper(
        *args: Any,
        host: str,
        port: int,
        ca_cert: str | None,
        tls_cert: str | None,
        tls_key: str | None,
        server_name: str | None,
        insecure: bool,
        call_timeout: float,
        output: str,
        **kwargs: Any,
    ) -> Any:
        tls = TlsSettings(
            ca_cert=ca_cert,
            tls_cert=tls_cert,
            tls_key=tls_key,
            cert_dir=os.environ.get("CERTDIR"),
            server_name=server_name,
            insecure=insecure,
        )
        conn = Connection(host, port, tls, call_timeout, output)
        try:
            return f(*args, conn=conn, **kwargs)
        except FlowError as err:
            fail(err.describe(), EXIT_SERVER)
        except (ClientConfigError, TargetError, RackJsonError, RuleFileError, RuleError) as err:
            fail(str(err), EXIT_USAGE)

    return _connection_options(wrapper)  # type: ignore[return-value]


def target_options(f: F) -> F:
    """--rack-ids, --rack-names, --component-ids and -t/--type (repeatable or comma lists)."""
    options = [
        click.option("--rack-ids", multiple=True, help="Rack UUIDs (comma list or repeated)."),
        click.option("--rack-names", multiple=True, help="Rack names (comma list or repeated)."),
        click.option(
            "--component-ids", multiple=True,
            help="Component UUIDs, or NICo Core ids with exactly one -t.",
        ),
        click.option(
            "-t", "--type", "types", multiple=True,
            help="Component types: compute, nvswitch, powershelf, torswitch, ums, cdu.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f
