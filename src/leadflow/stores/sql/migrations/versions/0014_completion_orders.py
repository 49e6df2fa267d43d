"""Analytics at scale (issue 20): the completions in the orders the completions' figures ask
for, so that they seek rather than sort.

- ``completions_assignee_spent``: each assignee's completions by time to complete
  (``completed_at - created_at``), then ``completed_at`` and ``created_at``: the exact median
  per rep walks its key's range in that order up to the middle of the period's completions
  (their number is known from the day sums) instead of sorting them; it reads the index alone.
- ``completions_rule_opportunities``: each automation's completions by opportunity, then
  ``completed_at``: its distinct opportunities over a period that is not short against the
  store's history are a walk of its range counting each opportunity once (SQLite), instead of
  a sort of the period's completions to drop the repeats.
- ``completions_opportunity_touches``: each opportunity's completions by time with their
  automation and id: a won opportunity's touches in the period and its last touch before the
  win are one range of it, no row of the table read.

The database keeps both as completions are written (every write path). Built here over the
completions already recorded.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}completions"
    op.create_index(
        f"{table}_assignee_spent",
        table,
        ["assigned_to", sa.text("(completed_at - created_at)"), "completed_at", "created_at"],
        schema=schema,
    )
    op.create_index(
        f"{table}_rule_opportunities",
        table,
        ["rule_id", "opportunity_id", "completed_at"],
        schema=schema,
    )
    op.create_index(
        f"{table}_opportunity_touches",
        table,
        ["opportunity_id", "completed_at", "rule_id", "activity_id"],
        schema=schema,
    )


def downgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}completions"
    for name in ("opportunity_touches", "rule_opportunities", "assignee_spent"):
        op.drop_index(f"{table}_{name}", table_name=table, schema=schema)
