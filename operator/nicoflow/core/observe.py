"""One read-only pass over NICo Core: what it reports about every compute tray,
NVLink switch and power shelf.

Each component type is observed independently: an RPC that fails marks that
type as not observed (with the error), never as empty, so the inventory does
not mistake an outage for hardware that vanished. Per-component gaps (one
inventory entry Core could not fetch) only leave that component's fields
unknown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from nicoflow._proto.nico import common_pb2, forge_pb2, site_explorer_pb2
from nicoflow.core.client import CoreClient, CoreError
from nicoflow.domain.observations import (
    LEAK_ALERT_ID,
    ObservedComponent,
    ObservedPosition,
    SiteObservation,
    TypeObservation,
    canonical_mac,
    compute_status,
    shelf_status,
    switch_status,
)
from nicoflow.domain.types import ComponentType, PowerState

# IDs per request: keeps each response well under the message size limit.
BATCH = 500
BMC_IMAGE = "BMC image"

T = TypeVar("T")


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def _batched(
    ids: Sequence[str], size: int, fetch: Callable[[Sequence[str]], Awaitable[Iterable[T]]]
) -> list[T]:
    out: list[T] = []
    for chunk in _chunks(ids, size):
        out.extend(await fetch(chunk))
    return out


def _timestamp(ts: object) -> datetime | None:
    seconds = getattr(ts, "seconds", 0)
    nanos = getattr(ts, "nanos", 0)
    if not seconds and not nanos:
        return None
    return datetime.fromtimestamp(seconds + nanos / 1e9, UTC)


# --- compute ---------------------------------------------------------------------------

_MACHINE_POWER = {
    forge_pb2.On: PowerState.ON,
    forge_pb2.Off: PowerState.OFF,
    forge_pb2.PowerManagerDisabled: PowerState.DISABLED,
}


def machine_component(
    machine: forge_pb2.Machine,
    power: PowerState,
    position: forge_pb2.MachinePositionInfo | None,
) -> ObservedComponent:
    serial = None
    if machine.HasField("discovery_info"):
        serial = machine.discovery_info.dmi_data.chassis_serial or None
    bmc = machine.bmc_info
    version = bmc.firmware_version if bmc.HasField("firmware_version") else None
    parts: dict[str, str] = {}
    if version:
        parts["bmc"] = version
    if machine.HasField("discovery_info") and machine.discovery_info.dmi_data.bios_version:
        parts["bios"] = machine.discovery_info.dmi_data.bios_version
    leak = next((a for a in machine.health.alerts if a.id == LEAK_ALERT_ID), None)
    pos = None
    if position is not None:
        pos = ObservedPosition(
            slot_id=(
                position.physical_slot_number if position.HasField("physical_slot_number") else None
            ),
            tray_index=(
                position.compute_tray_index if position.HasField("compute_tray_index") else None
            ),
            host_id=position.topology_id if position.HasField("topology_id") else None,
        )
    return ObservedComponent(
        type=ComponentType.COMPUTE,
        core_id=machine.id.id,
        serial=serial,
        bmc_mac=canonical_mac(bmc.mac if bmc.HasField("mac") else None),
        bmc_ip=(bmc.ip or None) if bmc.HasField("ip") else None,
        power=power,
        firmware_version=version or None,
        firmware=parts,
        status=compute_status(machine.state),
        position=pos,
        leaking=leak is not None,
        leak_since=(
            _timestamp(leak.in_alert_since)
            if leak is not None and leak.HasField("in_alert_since")
            else None
        ),
        rack_core_id=machine.rack_id.id if machine.HasField("rack_id") else None,
    )


async def observe_compute(client: CoreClient, batch: int = BATCH) -> TypeObservation:
    ctype = ComponentType.COMPUTE
    try:
        found = await client.find_machine_ids(forge_pb2.MachineSearchConfig(include_dpus=False))
        ids = list(dict.fromkeys(m.id for m in found.machine_ids if m.id))

        async def machines(chunk: Sequence[str]) -> Iterable[forge_pb2.Machine]:
            req = forge_pb2.MachinesByIdsRequest(
                machine_ids=[common_pb2.MachineId(id=i) for i in chunk]
            )
            return (await client.find_machines_by_ids(req)).machines

        async def power(chunk: Sequence[str]) -> Iterable[forge_pb2.PowerOptions]:
            req = forge_pb2.PowerOptionRequest(
                machine_id=[common_pb2.MachineId(id=i) for i in chunk]
            )
            return (await client.get_power_options(req)).response

        async def positions(chunk: Sequence[str]) -> Iterable[forge_pb2.MachinePositionInfo]:
            req = forge_pb2.MachinePositionQuery(
                machine_ids=[common_pb2.MachineId(id=i) for i in chunk]
            )
            return (await client.get_machine_position_info(req)).machine_position_info

        found_machines = await _batched(ids, batch, machines)
        hosts = [m for m in found_machines if m.machine_type != forge_pb2.DPU]
        host_ids = [m.id.id for m in hosts]
        power_by_id = {
            p.host_id.id: _MACHINE_POWER.get(p.actual_state, PowerState.UNKNOWN)
            for p in await _batched(host_ids, batch, power)
        }
        position_by_id = {p.machine_id.id: p for p in await _batched(host_ids, batch, positions)}
    except CoreError as exc:
        return TypeObservation(ctype, error=str(exc))
    return TypeObservation(
        ctype,
        tuple(
            machine_component(
                m,
                power_by_id.get(m.id.id, PowerState.UNKNOWN),
                position_by_id.get(m.id.id),
            )
            for m in hosts
        ),
    )


# --- switches and power shelves --------------------------------------------------------

_SYSTEM_POWER = {
    site_explorer_pb2.On: PowerState.ON,
    site_explorer_pb2.Off: PowerState.OFF,
}


def report_power(entry: forge_pb2.ComponentInventoryEntry | None) -> PowerState:
    if entry is None or entry.result.status != forge_pb2.COMPONENT_MANAGER_STATUS_CODE_SUCCESS:
        return PowerState.UNKNOWN
    if not entry.HasField("report") or not entry.report.systems:
        return PowerState.UNKNOWN
    # A transition under way is neither on nor off yet.
    return _SYSTEM_POWER.get(entry.report.systems[0].power_state, PowerState.UNKNOWN)


def report_firmware(
    entry: forge_pb2.ComponentInventoryEntry | None,
) -> tuple[str | None, dict[str, str]]:
    """(the "BMC image" version, every part's version) from an inventory entry."""
    if entry is None or not entry.HasField("report"):
        return None, {}
    report = entry.report
    parts = dict(report.firmware_versions)
    bmc_image = None
    for service in report.service:
        for inv in service.inventories:
            if not inv.HasField("version"):
                continue
            if not report.firmware_versions:
                parts[inv.id] = inv.version
            if bmc_image is None and inv.description == BMC_IMAGE:
                bmc_image = inv.version
    if bmc_image is None:
        bmc_image = parts.get("bmc") or parts.get("pmc")
    return bmc_image or None, parts


def report_serial(entry: forge_pb2.ComponentInventoryEntry | None) -> str | None:
    if entry is None or not entry.HasField("report"):
        return None
    for chassis in entry.report.chassis:
        if chassis.serial_number:
            return chassis.serial_number
    for system in entry.report.systems:
        if system.serial_number:
            return system.serial_number
    return None


def _entries_by_id(
    entries: Iterable[forge_pb2.ComponentInventoryEntry],
) -> dict[str, forge_pb2.ComponentInventoryEntry]:
    return {e.result.component_id: e for e in entries if e.result.component_id}


async def observe_switches(client: CoreClient, batch: int = BATCH) -> TypeObservation:
    ctype = ComponentType.NVSWITCH
    try:
        linked = await client.get_all_expected_switches_linked()
        listed = await client.find_switch_ids(forge_pb2.SwitchSearchFilter())
        leaking_ids = await client.find_switch_ids(
            forge_pb2.SwitchSearchFilter(only_with_health_alert=LEAK_ALERT_ID)
        )
        linked_by_id = {
            e.switch_id.id: e for e in linked.expected_switches if e.HasField("switch_id")
        }
        # Core's switches: every listed one, plus any linked one the list missed.
        ids = list(dict.fromkeys([*(s.id for s in listed.ids if s.id), *linked_by_id]))

        async def details(chunk: Sequence[str]) -> Iterable[forge_pb2.Switch]:
            req = forge_pb2.SwitchesByIdsRequest(
                switch_ids=[common_pb2.SwitchId(id=i) for i in chunk]
            )
            return (await client.find_switches_by_ids(req)).switches

        async def inventory(chunk: Sequence[str]) -> Iterable[forge_pb2.ComponentInventoryEntry]:
            req = forge_pb2.GetComponentInventoryRequest(
                switch_ids=forge_pb2.SwitchIdList(ids=[common_pb2.SwitchId(id=i) for i in chunk])
            )
            return (await client.get_component_inventory(req)).entries

        switches = {s.id.id: s for s in await _batched(ids, batch, details)}
        entries = _entries_by_id(await _batched(ids, batch, inventory))
    except CoreError as exc:
        return TypeObservation(ctype, error=str(exc))
    leaking = {s.id for s in leaking_ids.ids}
    out = []
    for sid in ids:
        sw = switches.get(sid)
        link = linked_by_id.get(sid)
        entry = entries.get(sid)
        version, parts = report_firmware(entry)
        bmc = sw.bmc_info if sw is not None else None
        if version is None and bmc is not None and bmc.firmware_version:
            version = bmc.firmware_version
        mac = canonical_mac(bmc.mac if bmc is not None and bmc.mac else None)
        out.append(
            ObservedComponent(
                type=ctype,
                core_id=sid,
                serial=report_serial(entry) or (link.switch_serial_number if link else None),
                bmc_mac=mac or canonical_mac(link.bmc_mac_address if link else None),
                bmc_ip=(bmc.ip or None) if bmc is not None else None,
                power=report_power(entry),
                firmware_version=version,
                firmware=parts,
                status=switch_status(sw.controller_state if sw is not None else ""),
                leaking=sid in leaking,
                rack_core_id=(
                    sw.rack_id.id
                    if sw is not None and sw.HasField("rack_id")
                    else (link.rack_id.id if link and link.HasField("rack_id") else None)
                ),
                nvos_ip=(sw.nvos_info.ip or None) if sw is not None else None,
            )
        )
    return TypeObservation(ctype, tuple(out))


async def observe_power_shelves(client: CoreClient, batch: int = BATCH) -> TypeObservation:
    ctype = ComponentType.POWERSHELF
    try:
        linked = await client.get_all_expected_power_shelves_linked()
        linked_by_id = {
            e.power_shelf_id.id: e
            for e in linked.expected_power_shelves
            if e.HasField("power_shelf_id") and e.power_shelf_id.id
        }
        ids = list(linked_by_id)

        async def details(chunk: Sequence[str]) -> Iterable[forge_pb2.PowerShelf]:
            req = forge_pb2.PowerShelvesByIdsRequest(
                power_shelf_ids=[common_pb2.PowerShelfId(id=i) for i in chunk]
            )
            return (await client.find_power_shelves_by_ids(req)).power_shelves

        async def inventory(chunk: Sequence[str]) -> Iterable[forge_pb2.ComponentInventoryEntry]:
            req = forge_pb2.GetComponentInventoryRequest(
                power_shelf_ids=forge_pb2.PowerShelfIdList(
                    ids=[common_pb2.PowerShelfId(id=i) for i in chunk]
                )
            )
            return (await client.get_component_inventory(req)).entries

        shelves = {s.id.id: s for s in await _batched(ids, batch, details)}
        entries = _entries_by_id(await _batched(ids, batch, inventory))
    except CoreError as exc:
        return TypeObservation(ctype, error=str(exc))
    out = []
    for sid in ids:
        shelf = shelves.get(sid)
        link = linked_by_id[sid]
        entry = entries.get(sid)
        version, parts = report_firmware(entry)
        bmc = shelf.bmc_info if shelf is not None else None
        if version is None and bmc is not None and bmc.firmware_version:
            version = bmc.firmware_version
        out.append(
            ObservedComponent(
                type=ctype,
                core_id=sid,
                serial=report_serial(entry) or link.shelf_serial_number or None,
                bmc_mac=canonical_mac(bmc.mac if bmc is not None and bmc.mac else None)
                or canonical_mac(link.bmc_mac_address),
                bmc_ip=(bmc.ip or None) if bmc is not None else None,
                power=report_power(entry),
                firmware_version=version,
                firmware=parts,
                status=shelf_status(shelf.controller_state if shelf is not None else ""),
                # Shelves carry no leak sensor: never leaking, as far as Core can tell.
                leaking=False,
                rack_core_id=(
                    shelf.rack_id.id
                    if shelf is not None and shelf.HasField("rack_id")
                    else (link.rack_id.id if link.HasField("rack_id") else None)
                ),
            )
        )
    return TypeObservation(ctype, tuple(out))


async def observe_site(
    client: CoreClient, *, now: Callable[[], datetime] | None = None, batch: int = BATCH
) -> SiteObservation:
    """Observe the three types concurrently; a failure in one leaves the others."""
    clock = now or (lambda: datetime.now(UTC))
    compute, switches, shelves = await asyncio.gather(
        observe_compute(client, batch),
        observe_switches(client, batch),
        observe_power_shelves(client, batch),
    )
    return SiteObservation(
        observed_at=clock(),
        types={o.type: o for o in (compute, switches, shelves)},
    )
