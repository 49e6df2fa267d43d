"""Change stamps: a ``stamps`` table of named counters; the ``rules`` row counts every rule
write (bumped in the write's transaction), so a runtime can tell cheaply whether its compiled
rules are still current. The row starts at 1 (any value would do: readers compare stamps for
equality only, and a process loads its rules when it starts).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}stamps"
    stamps = op.create_table(
        table,
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=f"{table}_pkey"),
        schema=schema,
    )
    op.bulk_insert(stamps, [{"name": "rules", "value": 1}])


def downgrade(*, prefix: str, schema: str | None) -> None:
    op.drop_table(f"{prefix}stamps", schema=schema)
