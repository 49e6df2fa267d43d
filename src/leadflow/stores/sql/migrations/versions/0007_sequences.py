"""Sequences (issue 18): a ``sequences`` table (every version of every definition), an
``enrollments`` table with a partial unique index that allows one active enrollment per
sequence and opportunity, the ``sequences`` change stamp, and the enrollment and step of a
sequence's scheduled actions (NULL for existing ones).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.stores.sql.types import Document, UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade(*, prefix: str, schema: str | None) -> None:
    sequences = f"{prefix}sequences"
    op.create_table(
        sequences,
        sa.Column("sequence_id", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("definition", Document(), nullable=False),
        sa.Column("created_at", UtcDateTime()),
        sa.PrimaryKeyConstraint("sequence_id", "version", name=f"{sequences}_pkey"),
        schema=schema,
    )
    enrollments = f"{prefix}enrollments"
    op.create_table(
        enrollments,
        sa.Column("enrollment_id", sa.String(128), nullable=False),
        sa.Column("sequence_id", sa.String(128), nullable=False),
        sa.Column("sequence_version", sa.BigInteger(), nullable=False),
        sa.Column("opportunity_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("enrolled_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime()),
        sa.Column("ended_at", UtcDateTime()),
        sa.Column("document", Document(), nullable=False),
        sa.PrimaryKeyConstraint("enrollment_id", name=f"{enrollments}_pkey"),
        schema=schema,
    )
    active = sa.text("state = 'active'")
    op.create_index(
        f"{enrollments}_one_active",
        enrollments,
        ["sequence_id", "opportunity_id"],
        unique=True,
        schema=schema,
        postgresql_where=active,
        sqlite_where=active,
    )
    for name, columns in (
        ("opportunity_enrolled", ["opportunity_id", "enrolled_at", "enrollment_id"]),
        ("sequence_enrolled", ["sequence_id", "enrolled_at", "enrollment_id"]),
        ("state_enrolled", ["state", "enrolled_at", "enrollment_id"]),
        ("enrolled", ["enrolled_at", "enrollment_id"]),
    ):
        op.create_index(f"{enrollments}_{name}", enrollments, columns, schema=schema)
    scheduled = f"{prefix}scheduled_actions"
    op.add_column(scheduled, sa.Column("enrollment_id", sa.String(128)), schema=schema)
    op.add_column(scheduled, sa.Column("step_id", sa.String(64)), schema=schema)
    stamps = sa.table(f"{prefix}stamps", sa.column("name"), sa.column("value"), schema=schema)
    op.bulk_insert(stamps, [{"name": "sequences", "value": 1}])


def downgrade(*, prefix: str, schema: str | None) -> None:
    op.execute(
        sa.table(f"{prefix}stamps", sa.column("name"), schema=schema)
        .delete()
        .where(sa.column("name") == "sequences")
    )
    # Not a batch (which copies the table on SQLite and loses its expression index): SQLite
    # drops a column that no index or constraint uses in place.
    for column in ("enrollment_id", "step_id"):
        op.drop_column(f"{prefix}scheduled_actions", column, schema=schema)
    op.drop_table(f"{prefix}enrollments", schema=schema)
    op.drop_table(f"{prefix}sequences", schema=schema)
