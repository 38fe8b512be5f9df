"""`flow version`: this client's version and the server's build."""

from __future__ import annotations

import click

from nicoflow import __version__
from nicoflow.cli.client_common import Connection, client_command
from nicoflow.cli.client_output import emit, key_values


@click.command("version")
@client_command
def version(conn: Connection) -> None:
    """Show client and server versions."""
    with conn.client() as flow:
        info = flow.version()
    data = {"client": __version__, "server": info}
    emit(
        data,
        conn.output,
        lambda: key_values(
            "flow",
            [
                ("client version", __version__),
                ("server version", info.version),
                ("server build time", info.build_time),
                ("server git commit", info.git_commit),
            ],
        ),
    )
