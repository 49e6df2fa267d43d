"""Analytics at scale (issue 20): the period's arrivals read from an index alone.

Every lead figure starts from a period's range of ``lead_arrivals_arrived``, then read each
arrival's source and owner from the table (one more lookup a lead, 25,000 a quarter at the
issue's scale). The index now holds them: ``(arrived_at, opportunity_id, source, owner)``
replaces ``(arrived_at, opportunity_id)`` under the same name, so the period's arrivals are
its range of the index and no row of the table (SQLite: a covering index; PostgreSQL: an
index-only scan once the table is vacuumed).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}lead_arrivals"
    op.drop_index(f"{table}_arrived", table_name=table, schema=schema)
    op.create_index(
        f"{table}_arrived",
        table,
        ["arrived_at", "opportunity_id", "source", "owner"],
        schema=schema,
    )


def downgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}lead_arrivals"
    op.drop_index(f"{table}_arrived", table_name=table, schema=schema)
    op.create_index(f"{table}_arrived", table, ["arrived_at", "opportunity_id"], schema=schema)
