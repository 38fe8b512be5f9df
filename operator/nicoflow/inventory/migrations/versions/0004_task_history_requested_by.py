"""Archived Tasks record who asked for them.

Revision ID: 0004
Revises: 0003
Created: 2026-12-07

- task_history.requested_by: the requester the operator read from the
  TaskSpec's audit annotations (the API caller's certificate identity and the
  Kubernetes user it came through, or the Kubernetes user who created it);
  NULL for Tasks archived before, or made without the admission policies.

Written by hand and frozen, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("task_history", sa.Column("requested_by", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("task_history", "requested_by")
