"""The scheduled actions' cancellation and purge indexes made partial (issue 17: ``run_due``'s
cost on the server).

Every write of a row makes a new version of it, which enters every index whose predicate it
meets. An action's run writes its row twice (claimed, then done), and three indexes took both
versions although their queries read only some states:

- ``cancel_for_opportunity`` and ``cancel_for_rule`` cancel pending actions only: their
  indexes become ``(opportunity_id)`` and ``(rule_id)`` of the pending actions
  (``_opportunity_pending``, ``_rule_pending``; were ``_opportunity_state`` and
  ``_rule_state_due`` over every row), with ``IS NOT NULL`` on their column in the predicate,
  which the cancellations' equality implies and the claims do not: a narrow index of every
  pending action is a tempting one for the planner to read whole and sort for a claim;
- ``purge_finished`` deletes done and cancelled actions by finish time: its index becomes
  ``(state, finished_at)`` of those (``_finished``; was ``_state_finished`` over every row).

A run then adds 10 index entries instead of 15 (the claimed version 5, the done one 5). On a
local PostgreSQL server draining 20,000 actions with one worker: WAL 2,250 -> 1,600 bytes and
70 -> 58 buffer accesses per action, the server's CPU about 20% less (docs/benchmarks.md).

On PostgreSQL the revision also stops ``ANALYZE`` from keeping statistics of the ``state``
column (``SET STATISTICS 0``). A backlog moves through the states faster than statistics
follow it: after an ``ANALYZE`` that saw every action finished (a quiet hour, then a burst),
the planner believed no action was pending, so every partial index of the pending actions
looked nearly empty, and a claim filtered on action types read all the pending actions of
every type through whichever of them was smallest, sorting them for each type: about 100 ms
per claim of 100 at 20,000 pending instead of 2 (``tests/test_sql_claim_plan.py``). Without
statistics the planner takes its fixed guess for a state's share of the table, and the claim
walks the type index's range in its order.

Building an index reads the table; on a large table run it at a quiet time (PostgreSQL takes
a lock that blocks writes to the table while each index is built).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_PENDING = "state = 'pending'"
_FINISHED = "state IN ('done', 'cancelled')"


def _partial(name: str, table: str, columns: list[str], where: str, schema: str | None) -> None:
    predicate = sa.text(where)
    op.create_index(
        name, table, columns, schema=schema, postgresql_where=predicate, sqlite_where=predicate
    )


def _state_statistics(table: str, schema: str | None, target: int) -> None:
    if op.get_bind().dialect.name == "postgresql":
        name = f'"{schema}"."{table}"' if schema else f'"{table}"'
        op.execute(f"ALTER TABLE {name} ALTER COLUMN state SET STATISTICS {target}")


def upgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}scheduled_actions"
    _state_statistics(table, schema, 0)
    for column in ("opportunity_id", "rule_id"):
        where = f"{_PENDING} AND {column} IS NOT NULL"
        _partial(f"{table}_{column.removesuffix('_id')}_pending", table, [column], where, schema)
    _partial(f"{table}_finished", table, ["state", "finished_at"], _FINISHED, schema)
    for name in ("opportunity_state", "rule_state_due", "state_finished"):
        op.drop_index(f"{table}_{name}", table_name=table, schema=schema)


def downgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}scheduled_actions"
    _state_statistics(table, schema, -1)  # the server's default target again
    op.create_index(f"{table}_opportunity_state", table, ["opportunity_id", "state"], schema=schema)
    op.create_index(
        f"{table}_rule_state_due", table, ["rule_id", "state", "due_at", "action_id"], schema=schema
    )
    op.create_index(f"{table}_state_finished", table, ["state", "finished_at"], schema=schema)
    for name in ("opportunity_pending", "rule_pending", "finished"):
        op.drop_index(f"{table}_{name}", table_name=table, schema=schema)
