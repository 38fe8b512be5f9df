"""Before a firmware update goes out through Core's component-manager dispatch:
which components already run what it would install (nothing to do), and which
already have an update under way (started by an earlier try whose reply was
lost, or by a retry of another part). Neither gets a second update."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from nicoflow._proto.nico import forge_pb2
from nicoflow.core.client import CoreClient
from nicoflow.core.managers.mapping import aggregate_firmware, report_versions, versions_match
from nicoflow.core.managers.results import (
    ComponentResults,
    FirmwareReading,
    FirmwareState,
    FirmwareStatusMap,
    Outcome,
    complete_firmware,
)
from nicoflow.core.managers.subtargets import DPU

_ACTIVE = {FirmwareState.QUEUED, FirmwareState.IN_PROGRESS, FirmwareState.VERIFYING}


def wanted_versions(
    parts: Sequence[str], target_version: str, desired: Sequence[Mapping[str, str]]
) -> list[dict[str, str]]:
    """The version sets any of which means the update is already done: per
    desired bundle when no version is given, else the version asked for. An
    empty list means it cannot be told (the update is always sent)."""
    names = [p for p in parts if p != DPU]
    if not target_version:
        sets = [{p: d[p] for p in names if p in d} if names else dict(d) for d in desired]
        return [s for s in sets if s]
    try:
        asked = json.loads(target_version)
    except ValueError:
        asked = None
    if isinstance(asked, dict):
        chosen = names or list(asked)
        return [{p: str(asked[p]) for p in chosen if p in asked}] if chosen else []
    return [dict.fromkeys(names, target_version)] if names else []


async def already_current(
    core: CoreClient,
    ids: Sequence[str],
    target: Mapping[str, Any],
    parts: Sequence[str],
    target_version: str,
) -> set[str]:
    """Components that already run the versions the update would install.
    `target` is the request's oneof member (machine_ids=..., switch_ids=...)."""
    desired = [
        dict(e.component_versions)
        for e in (await core.get_desired_firmware_versions()).entries
        if e.component_versions
    ]
    wanted = wanted_versions(parts, target_version, desired)
    if not wanted:
        return set()
    inventory = await core.get_component_inventory(forge_pb2.GetComponentInventoryRequest(**target))
    current = set()
    for e in inventory.entries:
        versions = report_versions(e.report) if e.HasField("report") else {}
        if any(versions_match(versions, w) for w in wanted):
            current.add(e.result.component_id)
    return current & set(ids)


async def readings(core: CoreClient, target: Mapping[str, Any]) -> dict[str, FirmwareReading]:
    """Core's update status per component it reports on."""
    statuses = await core.get_component_firmware_status(
        forge_pb2.GetComponentFirmwareStatusRequest(**target)
    )
    return aggregate_firmware(statuses.statuses)


async def status(
    core: CoreClient,
    ids: Sequence[str],
    target: Mapping[str, Any],
    parts: Sequence[str],
    target_version: str,
) -> FirmwareStatusMap:
    """Update progress per component; one with no update on record that
    already runs the wanted versions is complete (no job was needed)."""
    got = await readings(core, target)
    missing = [cid for cid in ids if cid not in got]
    if missing:
        for cid in await already_current(core, missing, target, parts, target_version):
            got[cid] = FirmwareReading(FirmwareState.COMPLETED)
    return complete_firmware(ids, got)


def part_names(sub_targets: Sequence[str], default: Sequence[str] = ()) -> list[str]:
    names = [n.strip().lower() for n in sub_targets if n.strip()]
    return names or list(default)


async def update_needed(
    core: CoreClient,
    ids: Sequence[str],
    target_field: Callable[[Sequence[str]], Mapping[str, Any]],
    parts: Sequence[str],
    target_version: str,
    send: Callable[[list[str]], Awaitable[ComponentResults]],
) -> ComponentResults:
    """Send the update (`send`) only to the components that need it: those
    already at the wanted versions are done, those with an update under way
    are left to it."""
    field = target_field(ids)
    current = await already_current(core, ids, field, parts, target_version)
    running = {cid for cid, r in (await readings(core, field)).items() if r.state in _ACTIVE}
    results: ComponentResults = {cid: Outcome.already() for cid in current}
    results.update((cid, Outcome.success()) for cid in running - current if cid in ids)
    rest = [cid for cid in ids if cid not in results]
    if rest:
        results.update(await send(rest))
    return {cid: results[cid] for cid in ids}
