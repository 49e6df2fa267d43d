"""Analytics (issue 20): the facts the analytics are computed from, recorded as events arrive:
``lead_arrivals`` (one per opportunity), ``status_changes`` (one per event) and
``completions`` (one per activity), each indexed on its period column and for the joins the
queries make.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.stores.sql.types import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = 128
_LABEL = 128


def upgrade(*, prefix: str, schema: str | None) -> None:
    arrivals = f"{prefix}lead_arrivals"
    op.create_table(
        arrivals,
        sa.Column("opportunity_id", sa.String(_ID), nullable=False),
        sa.Column("event_id", sa.String(_ID), nullable=False),
        sa.Column("arrived_at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(_LABEL)),
        sa.Column("owner", sa.String(_ID)),
        sa.PrimaryKeyConstraint("opportunity_id", name=f"{arrivals}_pkey"),
        schema=schema,
    )
    changes = f"{prefix}status_changes"
    op.create_table(
        changes,
        sa.Column("event_id", sa.String(_ID), nullable=False),
        sa.Column("opportunity_id", sa.String(_ID), nullable=False),
        sa.Column("changed_at", UtcDateTime(), nullable=False),
        sa.Column("from_status", sa.String(_LABEL)),
        sa.Column("to_status", sa.String(_LABEL), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=f"{changes}_pkey"),
        schema=schema,
    )
    completions = f"{prefix}completions"
    op.create_table(
        completions,
        sa.Column("activity_id", sa.String(_ID), nullable=False),
        sa.Column("opportunity_id", sa.String(_ID), nullable=False),
        sa.Column("activity_type", sa.String(32), nullable=False),
        sa.Column("completed_at", UtcDateTime(), nullable=False),
        sa.Column("assigned_to", sa.String(_ID)),
        sa.Column("created_at", UtcDateTime()),
        sa.Column("due_at", UtcDateTime()),
        sa.Column("outcome", sa.String(32)),
        sa.Column("rule_id", sa.String(_ID)),
        sa.PrimaryKeyConstraint("activity_id", name=f"{completions}_pkey"),
        schema=schema,
    )
    for table, name, columns in (
        (arrivals, "arrived", ["arrived_at", "opportunity_id"]),
        (arrivals, "source_arrived", ["source", "arrived_at"]),
        (arrivals, "owner_arrived", ["owner", "arrived_at"]),
        (changes, "changed", ["changed_at", "event_id"]),
        (changes, "opportunity_status", ["opportunity_id", "to_status", "changed_at"]),
        (completions, "completed", ["completed_at", "activity_id"]),
        (completions, "assignee_completed", ["assigned_to", "completed_at"]),
        (completions, "opportunity_type", ["opportunity_id", "activity_type", "completed_at"]),
    ):
        op.create_index(f"{table}_{name}", table, columns, schema=schema)


def downgrade(*, prefix: str, schema: str | None) -> None:
    for name in ("completions", "status_changes", "lead_arrivals"):
        op.drop_table(f"{prefix}{name}", schema=schema)
