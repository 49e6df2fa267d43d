"""Partitions of the scheduled actions: a ``partition`` column (0 for every existing action)
and the index a claim pinned to one partition reads; the ``rule_version`` that planned an
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
    op.create_index(
        f"{table}_partition_state_due",
        table,
        ["partition", "state", "due_at", "action_id"],
        schema=schema,
    )


def downgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}scheduled_actions"
    op.drop_index(f"{table}_partition_state_due", table_name=table, schema=schema)
    with op.batch_alter_table(table, schema=schema) as batch:
        batch.drop_column("partition")
        batch.drop_column("rule_version")
