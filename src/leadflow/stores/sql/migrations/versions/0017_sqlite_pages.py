"""SQLite: fewer pages written per ``handle`` (issue 17: a SQLite file's ``handle``).

A commit writes every page it changed to the WAL, one 4 KiB frame each, and ``handle`` changes
about 40: one (at least) per table and index an event's rows enter. Two of them held nothing
a query reads:

- ``<prefix>activities_open_key``, the unique index of the open activities' open keys, took
  every open activity, those without a key (``allowDuplicates``) too, under NULL, which
  never conflicts: it now takes only the activities with a key (``open_key IS NOT NULL`` in
  its predicate, which the reads of a key, by equality or ``IN``, imply: SQLite still reads
  them from it);
- ``<prefix>lead_arrivals`` was a rowid table beside the unique index of its primary key
  (``opportunity_id``): a row went into both. It is now a ``WITHOUT ROWID`` table (the rows
  stored in the primary key's b-tree, as ``completion_days`` already was): small rows read by
  their key, what SQLite recommends such a table be. The secondary indexes keep their
  columns (their entries point at the key instead of a rowid).

About one frame fewer per ``handle`` event with the benchmark's rule (40.2 -> 39.1, or 41.0 ->
39.9 on a larger database; docs/benchmarks.md); ``handle_many``, which writes each page once
for a chunk of 500 events, gains nothing measurable (1.7 or 2.6 an event, both sides).
PostgreSQL is unchanged (nothing runs there): an index entry there is not a page of the WAL.

The arrivals' table is copied (a new table, its rows, the old one dropped, the new one renamed):
on a large table run it at a quiet time; it holds SQLite's write lock meanwhile.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.stores.sql.types import UtcDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_ID = 128
_LABEL = 128
_HOLDS = "completed_date IS NULL AND cancelled_at IS NULL"
_ARRIVAL_INDEXES = {
    "arrived": ["arrived_at", "opportunity_id", "source", "owner"],
    "source_arrived": ["source", "arrived_at"],
    "owner_arrived": ["owner", "arrived_at"],
}


def _open_key(prefix: str, where: str) -> None:
    table = f"{prefix}activities"
    op.drop_index(f"{table}_open_key", table_name=table)
    op.create_index(
        f"{table}_open_key", table, ["open_key"], unique=True, sqlite_where=sa.text(where)
    )


def _arrivals(prefix: str, *, with_rowid: bool) -> None:
    table = f"{prefix}lead_arrivals"
    copy = f"{table}_copy"
    op.create_table(
        copy,
        sa.Column("opportunity_id", sa.String(_ID), nullable=False),
        sa.Column("event_id", sa.String(_ID), nullable=False),
        sa.Column("arrived_at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(_LABEL)),
        sa.Column("owner", sa.String(_ID)),
        sa.PrimaryKeyConstraint("opportunity_id", name=f"{table}_pkey"),
        sqlite_with_rowid=with_rowid,
    )
    columns = "opportunity_id, event_id, arrived_at, source, owner"
    op.execute(f"INSERT INTO {copy} ({columns}) SELECT {columns} FROM {table}")
    op.drop_table(table)  # and its indexes
    op.rename_table(copy, table)
    for name, indexed in _ARRIVAL_INDEXES.items():
        op.create_index(f"{table}_{name}", table, indexed)


def upgrade(*, prefix: str, schema: str | None) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _open_key(prefix, f"open_key IS NOT NULL AND {_HOLDS}")
    _arrivals(prefix, with_rowid=False)


def downgrade(*, prefix: str, schema: str | None) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _open_key(prefix, _HOLDS)
    _arrivals(prefix, with_rowid=True)
