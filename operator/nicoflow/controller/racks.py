"""Rack: mirror the spec into the PostgreSQL inventory and summarise it in status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nicoflow.inventory import mirror as inventory_mirror


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    body: dict[str, Any], ctype: str, status: str, reason: str, message: str
) -> dict[str, Any]:
    prev = {c["type"]: c for c in (body.get("status") or {}).get("conditions") or []}
    old = prev.get(ctype)
    since = old["lastTransitionTime"] if old and old.get("status") == status else _now()
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": body["metadata"].get("generation"),
    }


async def mirror(
    sessions: async_sessionmaker[AsyncSession], body: dict[str, Any], patch: kopf.Patch
) -> None:
    """Upsert the Rack into the inventory and summarise it in status."""
    name = body["metadata"]["name"]
    try:
        async with sessions() as session, session.begin():
            await inventory_mirror.upsert_rack(session, body)
    except inventory_mirror.MirrorError as exc:
        # a person must fix the spec (or the other rack); retrying cannot help
        patch.status["observedGeneration"] = body["metadata"].get("generation")
        patch.status["conditions"] = [
            _condition(body, "InventorySynced", "False", "InvalidInventory", str(exc)[:1024])
        ]
        raise kopf.PermanentError(str(exc)) from exc
    async with sessions() as session:
        summary = await inventory_mirror.rack_summary(session, name)
    if summary is not None:  # None: deleted meanwhile
        patch.status.update(summary_status(body, summary))


def summary_status(body: dict[str, Any], summary: inventory_mirror.RackSummary) -> dict[str, Any]:
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
    conditions = [
        _condition(
            body,
            "InventorySynced",
            "True",
            "Mirrored",
            f"{summary.total} components in the inventory",
        ),
    ]
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
    return {
        "observedGeneration": body["metadata"].get("generation"),
        "componentCounts": counts,
        "power": {"state": state, "on": on, "off": off, "unknown": unknown},
        "drift": {
            "missing": summary.drift_missing,
            "unexpected": summary.drift_unexpected,
            "mismatch": summary.drift_mismatch,
        },
        "conditions": conditions,
    }


async def forget(sessions: async_sessionmaker[AsyncSession], name: str) -> None:
    async with sessions() as session, session.begin():
        await inventory_mirror.delete_rack(session, name)
