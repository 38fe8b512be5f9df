"""`flow component`: components of the expected inventory through the Flow API."""

from __future__ import annotations

import json

import click
from rich.console import RenderableType

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.cli.client_common import (
    Connection,
    client_command,
    fail,
    split_values,
    target_options,
)
from nicoflow.cli.client_output import components_table, diffs_table, emit, racks_table
from nicoflow.client.rackjson import RackJsonError, bmcs_from_json
from nicoflow.client.targets import component_type_number, target_spec


@click.group("component")
def component() -> None:
    """Components of the expected inventory."""


@component.command("add")
@click.option("--rack-id", help="Rack UUID (optional).")
@click.option("--name", required=True, help="Component name.")
@click.option("-t", "--type", "ctype", required=True, help="compute, nvswitch, powershelf, ...")
@click.option("--manufacturer", required=True)
@click.option("--serial-number", required=True)
@click.option("--model")
@click.option("--firmware-version", default="")
@click.option("--component-id", default="", help="NICo Core id (machine id for compute).")
@click.option("--slot-id", type=int, default=0)
@click.option("--tray-index", type=int, default=0)
@click.option("--host-id", type=int, default=0)
@click.option("--description", help="Description (JSON text).")
@click.option("--bmc-mac", help="BMC MAC address.")
@click.option("--bmc-ip", help="BMC IP address.")
@click.option("--bmc-type", type=click.Choice(["host", "dpu"]), default="host", show_default=True)
@client_command
def add(
    conn: Connection,
    rack_id: str | None,
    name: str,
    ctype: str,
    manufacturer: str,
    serial_number: str,
    model: str | None,
    firmware_version: str,
    component_id: str,
    slot_id: int,
    tray_index: int,
    host_id: int,
    description: str | None,
    bmc_mac: str | None,
    bmc_ip: str | None,
    bmc_type: str,
) -> None:
    """Add one component, with or without a rack."""
    comp = pb.Component(
        type=component_type_number(ctype),
        info=pb.DeviceInfo(
            name=name,
            manufacturer=manufacturer,
            serial_number=serial_number,
            model=model,
            description=description,
        ),
        firmware_version=firmware_version,
        component_id=component_id,
        position=pb.RackPosition(slot_id=slot_id, tray_idx=tray_index, host_id=host_id),
    )
    if rack_id:
        comp.rack_id.id = rack_id
    if bmc_mac:
        comp.bmcs.extend(bmcs_from_json([{"type": bmc_type, "mac": bmc_mac, "ip": bmc_ip}]))
    with conn.client() as flow:
        added = flow.add_component(comp)
    emit(added, conn.output, lambda: components_table([added]))


@component.command("get")
@click.argument("component_id", required=False)
@click.option("--manufacturer", help="With --serial: look the component up by serial number.")
@click.option("--serial", help="Component serial number (with --manufacturer).")
@click.option("--with-rack", is_flag=True, help="Also show the component's rack.")
@client_command
def get(
    conn: Connection,
    component_id: str | None,
    manufacturer: str | None,
    serial: str | None,
    with_rack: bool,
) -> None:
    """Show one component, by COMPONENT_ID or by --manufacturer and --serial."""
    with conn.client() as flow:
        if component_id:
            info = flow.get_component(component_id, with_rack=with_rack)
        elif manufacturer and serial:
            info = flow.get_component_by_serial(manufacturer, serial, with_rack=with_rack)
        else:
            fail("give COMPONENT_ID, or --manufacturer and --serial")
    data = {"component": info.component, **({"rack": info.rack} if info.rack else {})}

    def table() -> list[RenderableType]:
        out: list[RenderableType] = [components_table([info.component])]
        if info.rack is not None:
            out.append(racks_table([info.rack]))
        return out

    emit(data, conn.output, table)


def _type_filter(types: list[str]) -> list[pb.Filter]:
    if not types:
        return []
    return [
        pb.Filter(
            component_field=pb.COMPONENT_FILTER_FIELD_TYPE,
            query_info=pb.StringQueryInfo(patterns=types, use_or=True),
        )
    ]


def _optional_targets(
    rack_ids: tuple[str, ...],
    rack_names: tuple[str, ...],
    component_ids: tuple[str, ...],
    types: list[str],
) -> pb.OperationTargetSpec | None:
    if not (rack_ids or rack_names or component_ids):
        return None
    return target_spec(
        rack_ids=split_values(rack_ids),
        rack_names=split_values(rack_names),
        component_ids=split_values(component_ids),
        types=types,
    )


@component.command("list")
@target_options
@click.option("--name", "names", multiple=True, help="Name pattern ('%' anchors; repeatable).")
@click.option("--offset", type=click.IntRange(0))
@click.option("--limit", type=click.IntRange(1))
@client_command
def list_components(
    conn: Connection,
    rack_ids: tuple[str, ...],
    rack_names: tuple[str, ...],
    component_ids: tuple[str, ...],
    types: tuple[str, ...],
    names: tuple[str, ...],
    offset: int | None,
    limit: int | None,
) -> None:
    """List components, of some racks or all; -t narrows by type."""
    type_list = split_values(types)
    spec = _optional_targets(rack_ids, rack_names, component_ids, type_list)
    filters = [] if spec is not None else _type_filter(type_list)
    if names:
        filters.append(
            pb.Filter(
                component_field=pb.COMPONENT_FILTER_FIELD_NAME,
                query_info=pb.StringQueryInfo(patterns=list(names), is_wildcard=True, use_or=True),
            )
        )
    with conn.client() as flow:
        page = flow.list_components(target_spec=spec, filters=filters, offset=offset, limit=limit)
    emit(
        {"components": page.items, "total": page.total},
        conn.output,
        lambda: components_table(page.items, title=f"{len(page.items)} of {page.total} components"),
    )


@component.command("update")
@click.option("--id", "component_id", required=True, help="Component UUID.")
@click.option("--firmware-version")
@click.option("--slot-id", type=int)
@click.option("--tray-index", type=int)
@click.option("--host-id", type=int)
@click.option("--description", help="Description (JSON text).")
@click.option("--rack-id", help="Move the component to this rack.")
@click.option("--bmcs", help='BMCs as JSON: [{"type": "host", "mac": "...", "ip": "..."}].')
@client_command
def update(
    conn: Connection,
    component_id: str,
    firmware_version: str | None,
    slot_id: int | None,
    tray_index: int | None,
    host_id: int | None,
    description: str | None,
    rack_id: str | None,
    bmcs: str | None,
) -> None:
    """Change selected fields of one component (BMCs are upserted by MAC)."""
    position = None
    if slot_id is not None or tray_index is not None or host_id is not None:
        position = pb.RackPosition(
            slot_id=slot_id or 0, tray_idx=tray_index or 0, host_id=host_id or 0
        )
    bmc_msgs: list[pb.BMCInfo] = []
    if bmcs:
        try:
            raw = json.loads(bmcs)
        except json.JSONDecodeError as exc:
            raise RackJsonError(f"--bmcs is not valid JSON: {exc}") from None
        bmc_msgs = bmcs_from_json(raw if isinstance(raw, list) else [raw])
    with conn.client() as flow:
        patched = flow.patch_component(
            component_id,
            firmware_version=firmware_version,
            position=position,
            description=description,
            rack_id=rack_id,
            bmcs=bmc_msgs,
        )
    emit(patched, conn.output, lambda: components_table([patched]))


def _id_command(name: str, verb: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.option("--id", "component_id", required=True, help="Component UUID.")
    @client_command
    def command(conn: Connection, component_id: str) -> None:
        with conn.client() as flow:
            getattr(flow, f"{name}_component")(component_id)
        click.echo(f"component {component_id} {verb}")

    return command


component.add_command(_id_command("delete", "deleted", "Soft-delete one component."))
component.add_command(
    _id_command("purge", "purged", "Permanently remove a soft-deleted component.")
)


@component.command("diff")
@target_options
@click.option("--offset", type=click.IntRange(0))
@click.option("--limit", type=click.IntRange(1))
@client_command
def diff(
    conn: Connection,
    rack_ids: tuple[str, ...],
    rack_names: tuple[str, ...],
    component_ids: tuple[str, ...],
    types: tuple[str, ...],
    offset: int | None,
    limit: int | None,
) -> None:
    """Differences between expected and actual inventory (found by the last sync)."""
    type_list = split_values(types)
    spec = _optional_targets(rack_ids, rack_names, component_ids, type_list)
    with conn.client() as flow:
        resp = flow.validate_components(
            target_spec=spec,
            filters=_type_filter(type_list) if spec is not None else [],
            offset=offset,
            limit=limit,
        )
    emit(resp, conn.output, lambda: diffs_table(resp))
