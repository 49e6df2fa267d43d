"""The first schema: activities, rules, scheduled actions, counters, audit, job slots and marks.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from leadflow.stores.sql.migrations.schema_0001 import build_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(*, prefix: str, schema: str | None) -> None:
    # checkfirst: tables made before migrations were tracked are kept as they are.
    build_tables(prefix, schema).metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade(*, prefix: str, schema: str | None) -> None:
    build_tables(prefix, schema).metadata.drop_all(op.get_bind(), checkfirst=True)
