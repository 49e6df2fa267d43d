"""Cancelled activities: ``cancelled_at``, ``cancelled_by`` and ``cancel_reason`` on the
activities (NULL for every existing one: none is cancelled), and the open-key index rebuilt so
that cancelling the holder frees its key, as completing it does.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.stores.sql.types import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _open_key_index(table: str, schema: str | None, where: str) -> None:
    condition = sa.text(where)
    op.create_index(
        f"{table}_open_key",
        table,
        ["open_key"],
        unique=True,
        schema=schema,
        postgresql_where=condition,
        sqlite_where=condition,
    )


def upgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}activities"
    op.add_column(table, sa.Column("cancelled_at", UtcDateTime(), nullable=True), schema=schema)
    op.add_column(table, sa.Column("cancelled_by", sa.String(128), nullable=True), schema=schema)
    op.add_column(table, sa.Column("cancel_reason", sa.Text(), nullable=True), schema=schema)
    op.drop_index(f"{table}_open_key", table_name=table, schema=schema)
    _open_key_index(table, schema, "completed_date IS NULL AND cancelled_at IS NULL")


def downgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}activities"
    op.drop_index(f"{table}_open_key", table_name=table, schema=schema)
    _open_key_index(table, schema, "completed_date IS NULL")
    with op.batch_alter_table(table, schema=schema) as batch:
        batch.drop_column("cancel_reason")
        batch.drop_column("cancelled_by")
        batch.drop_column("cancelled_at")
