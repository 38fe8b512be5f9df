"""Per-component results of Tasks, archived as each step finishes.

Revision ID: 0005
Revises: 0004
Created: 2026-12-07

- task_result: one row per (Task UID, stage, component type, component id)
  with the component's phase, attempts, whether it was commanded and its
  error. A Task's status keeps only the failed components of finished steps;
  the rest live here. Indexed by component (its history across Tasks) and by
  recorded_at (retention).

Written by hand and frozen, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TYPES = ("compute", "nvswitch", "powershelf", "torswitch", "ums", "cdu")


def upgrade() -> None:
    op.create_table(
        "task_result",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("component_type", sa.String(32), nullable=False),
        sa.Column("component_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("commanded", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "component_type IN (" + ", ".join(f"'{t}'" for t in _TYPES) + ")",
            name=op.f("ck_task_result_component_type"),
        ),
        sa.PrimaryKeyConstraint(
            "task_id", "stage", "component_type", "component_id", name=op.f("pk_task_result")
        ),
    )
    op.create_index(
        "ix_task_result_component_id_finished_at",
        "task_result",
        ["component_id", "finished_at"],
    )
    op.create_index(op.f("ix_task_result_recorded_at"), "task_result", ["recorded_at"])


def downgrade() -> None:
    op.drop_table("task_result")
