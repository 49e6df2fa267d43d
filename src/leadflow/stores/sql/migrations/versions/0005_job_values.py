"""Job values: a ``job_values`` table of small named values that jobs keep between runs and
instances (the stale-opportunity job's cursor), written by compare-and-set.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}job_values"
    op.create_table(
        table,
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=f"{table}_pkey"),
        schema=schema,
    )


def downgrade(*, prefix: str, schema: str | None) -> None:
    op.drop_table(f"{prefix}job_values", schema=schema)
