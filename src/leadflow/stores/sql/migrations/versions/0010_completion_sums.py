"""Analytics at scale (issue 20): the completions' sums read from indexes alone.

``completed_sums`` leads with ``completed_at`` and holds every column the per-assignee and
per-automation sums read (assignee, automation, created / due times, outcome, opportunity),
so a period's sums read its range of the index and no row of the table; ``(assigned_to,
completed_at, created_at, due_at, outcome, opportunity_id)`` replaces ``(assigned_to,
completed_at)`` and the same led by ``rule_id`` joins it, so that one key's sums and median
time to complete read that key's range of the period alone (SQLite sums per key).
``status_changes_changed_paths`` holds what the funnel reads of a period's status changes
(opportunity, status, event id after ``changed_at``).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}completions"
    op.create_index(
        f"{table}_completed_sums",
        table,
        [
            "completed_at",
            "assigned_to",
            "rule_id",
            "created_at",
            "due_at",
            "outcome",
            "opportunity_id",
        ],
        schema=schema,
    )
    for name, key in (("assignee", "assigned_to"), ("rule", "rule_id")):
        op.create_index(
            f"{table}_{name}_times",
            table,
            [key, "completed_at", "created_at", "due_at", "outcome", "opportunity_id"],
            schema=schema,
        )
    op.drop_index(f"{table}_assignee_completed", table_name=table, schema=schema)
    changes = f"{prefix}status_changes"
    op.create_index(
        f"{changes}_changed_paths",
        changes,
        ["changed_at", "opportunity_id", "to_status", "event_id"],
        schema=schema,
    )


def downgrade(*, prefix: str, schema: str | None) -> None:
    changes = f"{prefix}status_changes"
    op.drop_index(f"{changes}_changed_paths", table_name=changes, schema=schema)
    table = f"{prefix}completions"
    op.create_index(
        f"{table}_assignee_completed", table, ["assigned_to", "completed_at"], schema=schema
    )
    for name in ("completed_sums", "assignee_times", "rule_times"):
        op.drop_index(f"{table}_{name}", table_name=table, schema=schema)
