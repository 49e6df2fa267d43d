"""The claimed actions left out of the state/due index on PostgreSQL (issue 17: ``run_due``'s
cost on the server).

Every write of a row makes a new version of it, which enters every index whose predicate it
meets; the claim's version of an action entered four: the primary key, the idempotency key,
``_leases`` (the claimed actions, by lease end) and ``_state_due`` (``state, due_at,
action_id``), whose only reader of claimed actions is ``list(state=claimed)``. The claimed
actions are the ones in flight (at most a batch per worker, plus leases that ran out), so that
read takes them all from ``_leases`` and sorts them; ``_state_due`` becomes partial, ``WHERE
state <> 'claimed'`` (a query on any other state implies the predicate). The claim's version
now enters three indexes and an action's run seven entries instead of eight.

SQLite keeps the index whole: it uses a partial index only for a query that repeats its
terms, and its writes, serialized, are not what bounds a drain there. Rebuilding the index
reads the table; on a large table run it at a quiet time.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_COLUMNS = ["state", "due_at", "action_id"]


def _rebuild(table: str, schema: str | None, where: str | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    name = f"{table}_state_due"
    op.drop_index(name, table_name=table, schema=schema)
    predicate = None if where is None else sa.text(where)
    op.create_index(name, table, _COLUMNS, schema=schema, postgresql_where=predicate)


def upgrade(*, prefix: str, schema: str | None) -> None:
    _rebuild(f"{prefix}scheduled_actions", schema, "state <> 'claimed'")


def downgrade(*, prefix: str, schema: str | None) -> None:
    _rebuild(f"{prefix}scheduled_actions", schema, None)
