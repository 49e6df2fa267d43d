"""Claims filtered on action types (issue 19): a partial index of the pending actions by
action type (read from the ``action`` document; NULL for a delivery), then due time, so a
worker that claims only the types it can run reads one index range per type in due order and
never steps over the actions of other types.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_EXPRESSIONS = {
    "postgresql": "(action ->> 'actionType')",
    "sqlite": "json_extract(action, '$.actionType')",
}


def upgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}scheduled_actions"
    pending = sa.text("state = 'pending'")
    expression = _EXPRESSIONS[op.get_bind().dialect.name]
    op.create_index(
        f"{table}_type_pending_due",
        table,
        [sa.text(expression), "due_at", "action_id"],
        schema=schema,
        postgresql_where=pending,
        sqlite_where=pending,
    )


def downgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}scheduled_actions"
    op.drop_index(f"{table}_type_pending_due", table_name=table, schema=schema)
