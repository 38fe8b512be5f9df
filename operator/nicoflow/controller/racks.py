"""Rack: mirror the spec into the PostgreSQL inventory and summarise it in status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nicoflow.controller.conditions import condition
from nicoflow.inventory import mirror as inventory_mirror


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    body: dict[str, Any], ctype: str, status: str, reason: str, message: str
) -> dict[str, Any]:
    return condition(
        body.get("status"),
        ctype,
        status,
        reason,
        message,
        now=_now(),
        generation=body["metadata"].get("generation"),
    )


class InvalidRack(Exception):
    """The spec cannot be stored; `status` says so on the Rack."""

    def __init__(self, message: str, status: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status


async def mirror_status(
    sessions: async_sessionmaker[AsyncSession], body: dict[str, Any]
) -> dict[str, Any] | None:
    """Upsert the Rack into the inventory; its status from the inventory
    summary (None: deleted meanwhile)."""
    name = body["metadata"]["name"]
    try:
        async with sessions() as session, session.begin():
            await inventory_mirror.upsert_rack(session, body)
    except inventory_mirror.MirrorError as exc:
        status = {
            "observedGeneration": body["metadata"].get("generation"),
            "conditions": [
                _condition(body, "InventorySynced", "False", "InvalidInventory", str(exc)[:1024])
            ],
        }
        raise InvalidRack(str(exc), status) from exc
    async with sessions() as session:
        summary = await inventory_mirror.rack_summary(session, name)
    return None if summary is None else summary_status(body, summary)


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


# Rack.status.firmware[].versions holds at most this many entries (CRD limit).
MAX_FIRMWARE_VERSIONS = 32


def summary_status(
    body: dict[str, Any],
    summary: inventory_mirror.RackSummary,
    *,
    core_error: str | None = None,
) -> dict[str, Any]:
    """Rack.status from the inventory summary. `core_error`: the last inventory
    sync could not ask NICo Core (InventorySynced turns False)."""
    counts = {"total": summary.total, **{t.value: n for t, n in summary.counts.items()}}
    on, off, unknown = summary.power_on, summary.power_off, summary.power_unknown
    if on and not off and not unknown:
        state = "On"
    elif off and not on and not unknown:
        state = "Off"
    elif on or off:
        state = "Mixed"
    else:
        state = "Unknown"
    observed = summary.power_observed_at is not None
    if core_error:
        synced = ("False", "CoreUnavailable", f"NICo Core could not be asked: {core_error}")
    elif observed:
        synced = (
            "True",
            "Observed",
            f"{summary.total} components in the inventory, observed through NICo Core",
        )
    else:
        synced = ("True", "Mirrored", f"{summary.total} components in the inventory")
    conditions = [_condition(body, "InventorySynced", *synced)]
    drifted = summary.drift_missing + summary.drift_unexpected + summary.drift_mismatch
    conditions.append(
        _condition(
            body,
            "Drifted",
            "True" if drifted else "False",
            "DriftFound" if drifted else "NoDrift",
            f"{drifted} differences with NICo Core" if drifted else "",
        )
    )
    if summary.leaks_detected:
        leak_state = "Detected"
        names = ", ".join(summary.leaking_components)
        leak_cond = ("True", "LeakDetected", f"coolant leak reported on {names}")
    elif summary.leak_observed:
        leak_state = "NotDetected"
        leak_cond = ("False", "NoLeak", "")
    else:
        leak_state = "Unknown"
        leak_cond = ("Unknown", "NotObserved", "no leak sensor data from NICo Core yet")
    conditions.append(_condition(body, "LeakDetected", *leak_cond))
    power: dict[str, Any] = {"state": state, "on": on, "off": off, "unknown": unknown}
    if summary.power_observed_at is not None:
        power["observedTime"] = _time(summary.power_observed_at)
    drift: dict[str, Any] = {
        "missing": summary.drift_missing,
        "unexpected": summary.drift_unexpected,
        "mismatch": summary.drift_mismatch,
    }
    if summary.drift_checked_at is not None:
        drift["checkedTime"] = _time(summary.drift_checked_at)
    leak: dict[str, Any] = {"state": leak_state}
    if summary.leaking_components:
        leak["components"] = list(summary.leaking_components)
    if summary.leaks_detected and summary.leak_since is not None:
        leak["detectedTime"] = _time(summary.leak_since)
    status: dict[str, Any] = {
        "observedGeneration": body["metadata"].get("generation"),
        "componentCounts": counts,
        "power": power,
        "drift": drift,
        "leak": leak,
        "conditions": conditions,
    }
    firmware = [
        {
            "type": ctype.value,
            "versions": [
                {"version": v, "count": n}
                for v, n in sorted(fw.actual.items(), key=lambda kv: (-kv[1], kv[0]))
            ][:MAX_FIRMWARE_VERSIONS],
        }
        for ctype, fw in summary.firmware.items()
        if fw.actual
    ]
    if firmware:
        status["firmware"] = firmware
    return status


async def forget(sessions: async_sessionmaker[AsyncSession], name: str) -> None:
    """The Rack object is gone: its rows are soft-deleted, as the original's
    DeleteRack did, so PurgeRack still finds them."""
    async with sessions() as session, session.begin():
        await inventory_mirror.soft_delete_rack(session, name)
