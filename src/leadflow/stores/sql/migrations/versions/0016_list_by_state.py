"""The scheduled actions' due-time index over every row dropped (issue 17: ``run_due``'s cost
on the server).

``<prefix>scheduled_actions_due`` (``due_at, action_id``) served one read, ``list()`` without a
state, and every write of an action paid for it: its insert and each of its run's two updates
(claimed, then done) make a row version that enters every index over every row. ``list()``
without a state now reads each state's first actions from ``_state_due`` (``state, due_at,
action_id``) and merges them: as many short index reads as there are states. An action's run
adds 8 index entries instead of 10, its insert one fewer.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}scheduled_actions"
    op.drop_index(f"{table}_due", table_name=table, schema=schema)


def downgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}scheduled_actions"
    op.create_index(f"{table}_due", table, ["due_at", "action_id"], schema=schema)
