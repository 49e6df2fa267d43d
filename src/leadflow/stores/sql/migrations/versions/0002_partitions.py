"""Partitions of the scheduled actions: a ``partition`` column (0 for every existing action)
and partial indexes of the pending actions in due order (all of them, and per partition) that
claims read; the ``rule_version`` that planned an
action (unknown, NULL, for existing ones), which a rule change's cancellation compares.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}scheduled_actions"
    op.add_column(
        table,
        sa.Column("partition", sa.Integer(), nullable=False, server_default="0"),
        schema=schema,
    )
    op.add_column(table, sa.Column("rule_version", sa.BigInteger(), nullable=True), schema=schema)
    pending = sa.text("state = 'pending'")
    for name, columns in (
        ("pending_due", ["due_at", "action_id"]),
        ("partition_pending_due", ["partition", "due_at", "action_id"]),
    ):
        op.create_index(
            f"{table}_{name}",
            table,
            columns,
            schema=schema,
            postgresql_where=pending,
            sqlite_where=pending,
        )


def downgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}scheduled_actions"
    for name in ("pending_due", "partition_pending_due"):
        op.drop_index(f"{table}_{name}", table_name=table, schema=schema)
    with op.batch_alter_table(table, schema=schema) as batch:
        batch.drop_column("partition")
        batch.drop_column("rule_version")
