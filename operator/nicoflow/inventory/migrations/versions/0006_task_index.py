"""The task history indexes live Tasks too, by their API id.

Revision ID: 0006
Revises: 0005
Created: 2026-12-07

- task_history.finished_at may be NULL: the operator records each Task when
  it creates it and when it starts, so the API finds Tasks by id, rack or
  TaskSpec in PostgreSQL instead of listing every Task object. A row with no
  finished_at is a Task that has not finished.
- task_history.api_id: the Task's id in the v1 API (a uuid5 of namespace and
  name, or an imported task's original id), indexed; filled for the rows that
  exist.
- task_history.task_spec_name is indexed (a TaskSpec's Tasks).

Written by hand and frozen, like 0001.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# nicoflow.domain.task_ids at the time of writing (fixed forever there too)
_NAMESPACE = uuid.UUID("6f1c2d6e-3b7a-5c1e-9a4f-0d2b8e7c5a31")
_IMPORTED = "original-"


def _api_id(namespace: str, name: str, uid: uuid.UUID) -> uuid.UUID:
    if name == f"{_IMPORTED}{uid}":
        return uid
    return uuid.uuid5(_NAMESPACE, f"{namespace}/{name}")


def upgrade() -> None:
    op.alter_column("task_history", "finished_at", nullable=True)
    op.add_column("task_history", sa.Column("api_id", sa.Uuid(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, namespace, name FROM task_history")).all()
    for uid, namespace, name in rows:
        conn.execute(
            sa.text("UPDATE task_history SET api_id = :a WHERE id = :id"),
            {"a": _api_id(namespace, name, uid), "id": uid},
        )
    op.create_index(op.f("ix_task_history_api_id"), "task_history", ["api_id"])
    op.create_index(op.f("ix_task_history_task_spec_name"), "task_history", ["task_spec_name"])


def downgrade() -> None:
    op.drop_index(op.f("ix_task_history_task_spec_name"), table_name="task_history")
    op.drop_index(op.f("ix_task_history_api_id"), table_name="task_history")
    op.drop_column("task_history", "api_id")
    # unfinished Tasks have no place in the older history
    op.execute("DELETE FROM task_history WHERE finished_at IS NULL")
    op.alter_column("task_history", "finished_at", nullable=False)
