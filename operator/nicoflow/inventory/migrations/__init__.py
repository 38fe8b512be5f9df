"""Alembic environment and revisions of the inventory schema.

Kept inside the package so the wheel carries them; `nicoflow.inventory.migrate`
drives Alembic with a configuration built in code (no alembic.ini)."""
