"""Drift rows carry a rack; components keep the NVOS IP and the start of a leak.

Revision ID: 0002
Revises: 0001
Created: 2025-12-08

- component_drift.rack_id: the rack a drift row belongs to. For a component
  Core knows and Flow does not (unexpected) it is the only link to a rack:
  the rack Core places it in, or whose expected layout names its serial or
  BMC MAC. NULL when nothing places it.
- component.nvos_ip: the NVOS management address Core reports for a switch.
- component.leak_since: when the current leak incident began (Core's alert
  time, else when Flow first saw it); NULL while no leak is detected.

Written by hand and frozen, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("component_drift", sa.Column("rack_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_component_drift_rack_id_rack"),
        "component_drift",
        "rack",
        ["rack_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(op.f("ix_component_drift_rack_id"), "component_drift", ["rack_id"])
    op.add_column("component", sa.Column("nvos_ip", pg.INET(), nullable=True))
    op.add_column("component", sa.Column("leak_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("component", "leak_since")
    op.drop_column("component", "nvos_ip")
    op.drop_index(op.f("ix_component_drift_rack_id"), table_name="component_drift")
    op.drop_constraint(
        op.f("fk_component_drift_rack_id_rack"), "component_drift", type_="foreignkey"
    )
    op.drop_column("component_drift", "rack_id")
