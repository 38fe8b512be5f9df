"""Names as the original's clients give them, and components in their given order.

Revision ID: 0003
Revises: 0002
Created: 2026-12-09

- rack.display_name, component.display_name, nvl_domain.display_name: the
  name a v1 client gave when it is not a valid Kubernetes name (R1, GPU Tray
  1, NVL Wire 3); `name` holds the object name derived from it. NULL when
  the client's name is the object name. A rack's and a domain's display name
  is unique, as the original's names were.
- component.ordinal: the component's place in its rack's list, so reads
  return components in the order they were given (NULL for a component in
  no rack).

Written by hand and frozen, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("rack", sa.Column("display_name", sa.Text(), nullable=True))
    op.create_unique_constraint(op.f("uq_rack_display_name"), "rack", ["display_name"])
    op.add_column("component", sa.Column("display_name", sa.Text(), nullable=True))
    op.add_column("component", sa.Column("ordinal", sa.Integer(), nullable=True))
    op.add_column("nvl_domain", sa.Column("display_name", sa.Text(), nullable=True))
    op.create_unique_constraint(op.f("uq_nvl_domain_display_name"), "nvl_domain", ["display_name"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_nvl_domain_display_name"), "nvl_domain", type_="unique")
    op.drop_column("nvl_domain", "display_name")
    op.drop_column("component", "ordinal")
    op.drop_column("component", "display_name")
    op.drop_constraint(op.f("uq_rack_display_name"), "rack", type_="unique")
    op.drop_column("rack", "display_name")
