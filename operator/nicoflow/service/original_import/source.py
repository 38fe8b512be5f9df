"""The original service's tables, read in one read-only transaction.

Only live rows are read (soft-deleted racks, components and NVL domains are
not imported); the BMC credentials are read to be moved into Secrets and are
never logged or kept anywhere else."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL

from nicoflow.inventory.db import make_async_engine

Row = dict[str, Any]


@dataclass
class OriginalData:
    nvl_domains: list[Row] = field(default_factory=list)
    racks: list[Row] = field(default_factory=list)
    components: list[Row] = field(default_factory=list)
    bmcs: list[Row] = field(default_factory=list)
    rules: list[Row] = field(default_factory=list)
    associations: list[Row] = field(default_factory=list)
    schedules: list[Row] = field(default_factory=list)
    scopes: list[Row] = field(default_factory=list)
    tasks: list[Row] = field(default_factory=list)
    # soft-deleted rows seen, per table: reported, never imported
    deleted: dict[str, list[Row]] = field(default_factory=dict)


_QUERIES = {
    "nvl_domains": "SELECT id, name, created_at, deleted_at FROM nvldomain ORDER BY created_at, id",
    "racks": (
        "SELECT id, name, manufacturer, serial_number, description, location, nvldomain_id, "
        "external_id, created_at, deleted_at FROM rack ORDER BY created_at, id"
    ),
    "components": (
        "SELECT id, name, type, manufacturer, model, serial_number, description, "
        "firmware_version, rack_id, slot_id, tray_index, host_id, external_id, deleted_at "
        # no ORDER BY in the original's reads: its answers came in table order
        "FROM component ORDER BY rack_id NULLS LAST, ctid"
    ),
    "bmcs": (
        'SELECT mac_address, type, component_id, ip_address::text AS ip_address, "user", '
        "password FROM bmc ORDER BY mac_address"
    ),
    "rules": (
        "SELECT id, name, description, operation_type, operation_code, rule_definition, "
        "is_default, created_at, updated_at FROM operation_rules ORDER BY created_at, id"
    ),
    "associations": (
        "SELECT rack_id, operation_type, operation_code, rule_id, created_at, updated_at "
        "FROM rack_rule_associations ORDER BY created_at, rack_id"
    ),
    "schedules": (
        "SELECT id, name, spec_type, spec, timezone, operation_template, overlap_policy, "
        "enabled, next_run_at, last_run_at, created_at, updated_at FROM task_schedule "
        "ORDER BY created_at, id"
    ),
    "scopes": (
        "SELECT id, schedule_id, rack_id, component_filter, last_task_id, created_at "
        "FROM task_schedule_scope ORDER BY created_at, id"
    ),
    "tasks": (
        "SELECT id, type, information, description, rack_id, attributes, status, message, "
        "report, applied_rule_id, created_at, updated_at, started_at, finished_at "
        "FROM task ORDER BY created_at, id"
    ),
}
_SOFT_DELETE = ("nvl_domains", "racks", "components")


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, datetime | int | float | bool | str | dict | list) or value is None:
        return value
    return str(value)


async def read(url: str | URL) -> OriginalData:
    """Every table the import moves, as plain rows."""
    engine = make_async_engine(url, pool_size=1, max_overflow=0)
    out = OriginalData()
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SET TRANSACTION READ ONLY"))
            for attr, query in _QUERIES.items():
                rows = [
                    {k: _plain(v) for k, v in r._mapping.items()}
                    for r in (await conn.execute(text(query))).all()
                ]
                if attr in _SOFT_DELETE:
                    out.deleted[attr] = [r for r in rows if r.get("deleted_at") is not None]
                    rows = [r for r in rows if r.get("deleted_at") is None]
                setattr(out, attr, rows)
            await conn.rollback()
    finally:
        await engine.dispose()
    return out
