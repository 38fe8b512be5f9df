"""`flow rack`: the expected inventory of racks through the Flow API."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.cli.client_common import Connection, client_command, fail
from nicoflow.cli.client_output import emit, key_values, rack_detail, racks_table
from nicoflow.client.rackjson import racks_from_text


def _rack_text(file: Path | None, text: str | None) -> str:
    if (file is None) == (text is None):
        fail("give the rack as -f/--file FILE or -j/--json JSON (one of them)")
    if file is not None:
        return file.read_text() if str(file) != "-" else sys.stdin.read()
    return str(text)


_FILE = click.option(
    "-f", "--file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Rack JSON file (one rack or a list; '-' reads stdin).",
)  # fmt: skip
_JSON = click.option("-j", "--json", "text", help="Rack JSON given inline.")


@click.group("rack")
def rack() -> None:
    """Racks of the expected inventory."""


@rack.command("create")
@_FILE
@_JSON
@client_command
def create(conn: Connection, file: Path | None, text: str | None) -> None:
    """Register racks with their components and BMCs.

    The JSON is the original CLI's format (info, location, components with type,
    info, firmware_version, component_id, position, bmcs); `flow simulator export
    --format rack-json` writes it. Missing ids are generated."""
    racks = racks_from_text(_rack_text(file, text))
    created = []
    with conn.client() as flow:
        for r in racks:
            created.append({"name": r.info.name, "id": flow.create_rack(r)})
    emit(
        created,
        conn.output,
        lambda: key_values(
            f"{len(created)} rack(s) created", [(c["name"], c["id"]) for c in created]
        ),
    )


@rack.command("get")
@click.argument("rack_id", required=False)
@click.option("--manufacturer", help="With --serial: look the rack up by serial number.")
@click.option("--serial", help="Rack serial number (with --manufacturer).")
@click.option("--no-components", is_flag=True, help="Leave the components out.")
@client_command
def get(
    conn: Connection,
    rack_id: str | None,
    manufacturer: str | None,
    serial: str | None,
    no_components: bool,
) -> None:
    """Show one rack, by RACK_ID or by --manufacturer and --serial."""
    with conn.client() as flow:
        if rack_id:
            found = flow.get_rack(rack_id, with_components=not no_components)
        elif serial and manufacturer:
            found = flow.get_rack_by_serial(manufacturer, serial, with_components=not no_components)
        else:
            fail("give RACK_ID, or --manufacturer and --serial")
    emit(found, conn.output, lambda: rack_detail(found))


def _filter(field: pb.RackFilterField.ValueType, patterns: tuple[str, ...]) -> pb.Filter:
    return pb.Filter(
        rack_field=field, query_info=pb.StringQueryInfo(patterns=list(patterns), is_wildcard=True)
    )


_ORDER = {
    "name": pb.RACK_ORDER_BY_FIELD_NAME,
    "manufacturer": pb.RACK_ORDER_BY_FIELD_MANUFACTURER,
    "model": pb.RACK_ORDER_BY_FIELD_MODEL,
}


@rack.command("list")
@click.option("--name", "names", multiple=True, help="Name pattern ('%' anchors; repeatable).")
@click.option("--manufacturer", "manufacturers", multiple=True, help="Manufacturer pattern.")
@click.option("--model", "models", multiple=True, help="Model pattern.")
@click.option("--with-components", is_flag=True, help="Include the components.")
@click.option("--order-by", type=click.Choice(sorted(_ORDER)), help="Sort field.")
@click.option("--desc", is_flag=True, help="Sort descending.")
@click.option("--offset", type=click.IntRange(0), help="Skip this many racks.")
@click.option("--limit", type=click.IntRange(1), help="At most this many racks (server: 100).")
@client_command
def list_racks(
    conn: Connection,
    names: tuple[str, ...],
    manufacturers: tuple[str, ...],
    models: tuple[str, ...],
    with_components: bool,
    order_by: str | None,
    desc: bool,
    offset: int | None,
    limit: int | None,
) -> None:
    """List racks."""
    filters = [
        _filter(field, patterns)
        for field, patterns in (
            (pb.RACK_FILTER_FIELD_NAME, names),
            (pb.RACK_FILTER_FIELD_MANUFACTURER, manufacturers),
            (pb.RACK_FILTER_FIELD_MODEL, models),
        )
        if patterns
    ]
    order = None
    if order_by:
        order = pb.OrderBy(rack_field=_ORDER[order_by], direction="DESC" if desc else "ASC")
    with conn.client() as flow:
        page = flow.list_racks(
            filters=filters,
            with_components=with_components,
            offset=offset,
            limit=limit,
            order_by=order,
        )
    emit(
        {"racks": page.items, "total": page.total},
        conn.output,
        lambda: racks_table(page.items, page.total),
    )


@rack.command("patch")
@_FILE
@_JSON
@client_command
def patch(conn: Connection, file: Path | None, text: str | None) -> None:
    """Merge rack JSON into the stored rack (found by id or manufacturer + serial)."""
    # the server matches by id or by serial: ids are only sent when the file has them
    found = racks_from_text(_rack_text(file, text), generate_ids=False)
    if len(found) != 1:
        fail("patch takes one rack object")
    msg = found[0]
    with conn.client() as flow:
        report = flow.patch_rack(msg)
    if conn.output == "table":
        click.echo(json.dumps(report, indent=2))
    else:
        emit(report, conn.output, lambda: "")


def _id_command(name: str, verb: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.option("--id", "rack_id", required=True, help="Rack UUID.")
    @client_command
    def command(conn: Connection, rack_id: str) -> None:
        with conn.client() as flow:
            getattr(flow, f"{name}_rack")(rack_id)
        click.echo(f"rack {rack_id} {verb}")

    return command


rack.add_command(
    _id_command("delete", "deleted", "Soft-delete a rack and its components (purge removes it).")
)
rack.add_command(_id_command("purge", "purged", "Permanently remove a soft-deleted rack."))
