"""Initial inventory schema: NVL domains, racks, components, BMCs, drift, task history.

Revision ID: 0001
Revises:
Created: 2025-11-28

Written by hand and frozen: enum value lists are spelled out here rather than
imported, so later changes to the Python enums need a new revision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMPONENT_TYPES = ("compute", "nvswitch", "powershelf", "torswitch", "ums", "cdu")
POWER_STATES = ("on", "off", "unknown", "disabled")
COMPONENT_PHASES = ("unknown", "initializing", "ready", "in_use", "error", "deleting")
LEAK_STATUSES = ("unknown", "detected", "not_detected")
OPERATION_TYPES = ("power_control", "firmware_control", "bring_up")
BMC_TYPES = ("host", "dpu")
DRIFT_TYPES = ("missing", "unexpected", "mismatch")
OPERATION_CODES = (
    "power_on",
    "power_off",
    "force_power_on",
    "force_power_off",
    "restart",
    "force_restart",
    "warm_reset",
    "cold_reset",
    "upgrade",
    "downgrade",
    "rollback",
    "bring_up",
    "ingest",
)
TASK_PHASES = ("Pending", "Waiting", "Running", "Succeeded", "Failed", "Cancelled")

# Tables whose updated_at the trigger below maintains.
TOUCHED_TABLES = ("rack", "component", "bmc", "sync_state")


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _one_of(table: str, column: str, values: Sequence[str]) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IN ({_quoted(values)})", name=op.f(f"ck_{table}_{column}"))


def _uuid_pk() -> sa.Column[Any]:
    return sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False)


def _timestamp(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[Any]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.func.now() if now else None,
        nullable=nullable,
    )


def _jsonb(name: str, empty: str | None) -> sa.Column[Any]:
    if empty is None:
        return sa.Column(name, pg.JSONB(), nullable=True)
    return sa.Column(name, pg.JSONB(), server_default=sa.text(f"'{empty}'::jsonb"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "nvl_domain",
        _uuid_pk(),
        sa.Column("name", sa.Text(), nullable=False),
        _timestamp("created_at", nullable=False, now=True),
        _timestamp("deleted_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nvl_domain")),
        sa.UniqueConstraint("name", name=op.f("uq_nvl_domain_name")),
    )

    op.create_table(
        "rack",
        _uuid_pk(),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("manufacturer", sa.Text(), nullable=False),
        sa.Column("serial_number", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("region", sa.Text(), nullable=True),
        sa.Column("datacenter", sa.Text(), nullable=True),
        sa.Column("room", sa.Text(), nullable=True),
        sa.Column("position", sa.Text(), nullable=True),
        sa.Column("nvl_domain_id", sa.Uuid(), nullable=True),
        sa.Column("external_id", sa.Text(), nullable=True),
        _jsonb("labels", "{}"),
        sa.Column("source_uid", sa.Text(), nullable=True),
        sa.Column("source_generation", sa.BigInteger(), nullable=True),
        sa.Column("source_resource_version", sa.Text(), nullable=True),
        _timestamp("created_at", nullable=False, now=True),
        _timestamp("updated_at", nullable=False, now=True),
        _timestamp("deleted_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rack")),
        sa.UniqueConstraint("name", name=op.f("uq_rack_name")),
        sa.UniqueConstraint(
            "manufacturer", "serial_number", name=op.f("uq_rack_manufacturer_serial_number")
        ),
        sa.ForeignKeyConstraint(
            ["nvl_domain_id"],
            ["nvl_domain.id"],
            name=op.f("fk_rack_nvl_domain_id_nvl_domain"),
            ondelete="SET NULL",
        ),
    )
    op.create_index(op.f("ix_rack_nvl_domain_id"), "rack", ["nvl_domain_id"])
    op.create_index(
        op.f("uq_rack_external_id"),
        "rack",
        ["external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )

    op.create_table(
        "component",
        _uuid_pk(),
        sa.Column("rack_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("manufacturer", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("serial_number", sa.Text(), nullable=False),
        _jsonb("description", "{}"),
        sa.Column("firmware_version", sa.Text(), nullable=True),
        sa.Column("slot_id", sa.Integer(), nullable=True),
        sa.Column("tray_index", sa.Integer(), nullable=True),
        sa.Column("host_id", sa.Integer(), nullable=True),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("power_state", sa.String(32), server_default="unknown", nullable=False),
        _jsonb("actual_firmware", None),
        sa.Column("status_phase", sa.String(32), server_default="unknown", nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column(
            "blocked_operations",
            pg.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("leak_status", sa.String(32), server_default="unknown", nullable=False),
        _timestamp("observed_at"),
        _timestamp("created_at", nullable=False, now=True),
        _timestamp("updated_at", nullable=False, now=True),
        _timestamp("deleted_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_component")),
        sa.UniqueConstraint(
            "manufacturer", "serial_number", name=op.f("uq_component_manufacturer_serial_number")
        ),
        sa.ForeignKeyConstraint(
            ["rack_id"], ["rack.id"], name=op.f("fk_component_rack_id_rack"), ondelete="SET NULL"
        ),
        _one_of("component", "type", COMPONENT_TYPES),
        _one_of("component", "power_state", POWER_STATES),
        _one_of("component", "status_phase", COMPONENT_PHASES),
        _one_of("component", "leak_status", LEAK_STATUSES),
        sa.CheckConstraint(
            f"blocked_operations <@ ARRAY[{_quoted(OPERATION_TYPES)}]::text[]",
            name=op.f("ck_component_blocked_operations_known"),
        ),
    )
    op.create_index(op.f("ix_component_rack_id"), "component", ["rack_id"])
    op.create_index(op.f("ix_component_serial_number"), "component", ["serial_number"])
    op.create_index(
        op.f("uq_component_type_external_id"),
        "component",
        ["type", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )

    op.create_table(
        "bmc",
        sa.Column("mac_address", sa.String(17), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("component_id", sa.Uuid(), nullable=False),
        sa.Column("ip_address", pg.INET(), nullable=True),
        sa.Column("credentials_secret_ref", sa.Text(), nullable=True),
        _timestamp("created_at", nullable=False, now=True),
        _timestamp("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("mac_address", name=op.f("pk_bmc")),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["component.id"],
            name=op.f("fk_bmc_component_id_component"),
            ondelete="CASCADE",
        ),
        _one_of("bmc", "type", BMC_TYPES),
        sa.CheckConstraint(
            "mac_address ~ '^[0-9a-f]{2}(:[0-9a-f]{2}){5}$'",
            name=op.f("ck_bmc_mac_address_normalized"),
        ),
    )
    op.create_index(op.f("ix_bmc_component_id"), "bmc", ["component_id"])

    op.create_table(
        "component_drift",
        _uuid_pk(),
        sa.Column("component_id", sa.Uuid(), nullable=True),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("component_type", sa.String(32), nullable=False),
        sa.Column("drift_type", sa.String(32), nullable=False),
        _jsonb("diffs", "[]"),
        _timestamp("checked_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_component_drift")),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["component.id"],
            name=op.f("fk_component_drift_component_id_component"),
            ondelete="CASCADE",
        ),
        _one_of("component_drift", "component_type", COMPONENT_TYPES),
        _one_of("component_drift", "drift_type", DRIFT_TYPES),
    )
    op.create_index(op.f("ix_component_drift_component_id"), "component_drift", ["component_id"])

    op.create_table(
        "task_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("task_spec_name", sa.Text(), nullable=True),
        sa.Column("rack_id", sa.Uuid(), nullable=True),
        sa.Column("rack_name", sa.Text(), nullable=True),
        sa.Column("operation_code", sa.String(32), nullable=False),
        sa.Column("operation_type", sa.String(32), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        _jsonb("components", "{}"),
        _jsonb("applied_rule", None),
        _jsonb("report", None),
        _timestamp("queued_at"),
        _timestamp("created_at", nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=False),
        _timestamp("archived_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_history")),
        _one_of("task_history", "operation_code", OPERATION_CODES),
        _one_of("task_history", "operation_type", OPERATION_TYPES),
        _one_of("task_history", "phase", TASK_PHASES),
    )
    op.create_index(
        op.f("ix_task_history_rack_id_finished_at"), "task_history", ["rack_id", "finished_at"]
    )
    op.create_index(op.f("ix_task_history_finished_at"), "task_history", ["finished_at"])
    op.create_index(op.f("ix_task_history_phase"), "task_history", ["phase"])
    op.create_index(
        op.f("ix_task_history_components"),
        "task_history",
        ["components"],
        postgresql_using="gin",
        postgresql_ops={"components": "jsonb_path_ops"},
    )

    op.create_table(
        "sync_state",
        sa.Column("name", sa.Text(), nullable=False),
        _timestamp("last_started_at"),
        _timestamp("last_succeeded_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        _timestamp("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sync_state")),
    )

    # updated_at must move for every writer, not only the ORM (psql, bulk upserts).
    op.execute(
        """
        CREATE FUNCTION flow_set_updated_at() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END
        $$
        """
    )
    for table in TOUCHED_TABLES:
        op.execute(
            f"CREATE TRIGGER trg_{table}_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION flow_set_updated_at()"
        )


def downgrade() -> None:
    for table in TOUCHED_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_updated_at ON {table}")
    op.execute("DROP FUNCTION IF EXISTS flow_set_updated_at()")
    op.drop_table("sync_state")
    op.drop_table("task_history")
    op.drop_table("component_drift")
    op.drop_table("bmc")
    op.drop_table("component")
    op.drop_table("rack")
    op.drop_table("nvl_domain")
