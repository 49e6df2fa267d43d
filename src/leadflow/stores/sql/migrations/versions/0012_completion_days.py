"""Analytics at scale (issue 20): ``completion_days``, the completions summed per grouping
(assignee, automation), UTC day, key and outcome (counts of completions, with a due date, on
time, with a creation time), kept by the database as completions are inserted: on SQLite a
row trigger, on PostgreSQL a statement trigger over the inserted rows (its transition table:
one upsert per statement, whatever the rows). Filled here from the completions already
recorded.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_KEYS = ("assigned_to", "rule_id")
_COLUMNS = "kind, day, keyed, name, outcome, completed, with_due, on_time, timed"
_SUMS = ("completed", "with_due", "on_time", "timed")
_MICROS_A_DAY = 86_400_000_000


def _name(table: str, schema: str | None) -> str:
    quote = op.get_context().dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(table)}" if schema else quote(table)


def _day(postgres: bool, row: str = "") -> str:
    """The UTC day of ``completed_at`` (days since 1970-01-01, floor)."""
    at = f"{row}completed_at"
    if postgres:
        return f"(({at} AT TIME ZONE 'UTC')::date - DATE '1970-01-01')"
    # SQLite keeps integer microseconds; its integer division truncates toward zero.
    return (
        f"(CASE WHEN {at} >= 0 THEN {at} / {_MICROS_A_DAY} "
        f"ELSE ({at} + 1) / {_MICROS_A_DAY} - 1 END)"
    )


def _sums(postgres: bool, key: str, source: str) -> str:
    """A SELECT of the ``completion_days`` rows of the completions in ``source`` for ``key``."""
    return (
        f"SELECT '{key}', {_day(postgres)}, CASE WHEN {key} IS NULL THEN 0 ELSE 1 END, "
        f"COALESCE({key}, ''), COALESCE(outcome, ''), count(*), count(due_at), "
        "sum(CASE WHEN completed_at <= due_at THEN 1 ELSE 0 END), count(created_at) "
        f"FROM {source} GROUP BY 2, 3, 4, 5"
    )


def _upsert(alias: str) -> str:
    added = ", ".join(f"{column} = {alias}.{column} + excluded.{column}" for column in _SUMS)
    return f"ON CONFLICT (kind, day, keyed, name, outcome) DO UPDATE SET {added}"


def upgrade(*, prefix: str, schema: str | None) -> None:
    table = f"{prefix}completion_days"
    op.create_table(
        table,
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("day", sa.BigInteger(), nullable=False),
        sa.Column("keyed", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        *(sa.Column(column, sa.BigInteger(), nullable=False) for column in _SUMS),
        sa.PrimaryKeyConstraint("kind", "day", "keyed", "name", "outcome", name=f"{table}_pkey"),
        schema=schema,
        sqlite_with_rowid=False,
    )
    days = _name(table, schema)
    completions = _name(f"{prefix}completions", schema)
    postgres = op.get_context().dialect.name == "postgresql"
    for key in _KEYS:
        op.execute(f"INSERT INTO {days} ({_COLUMNS}) {_sums(postgres, key, completions)}")
    trigger = _name(f"{prefix}completions_days", None)
    if postgres:
        function = _name(f"{prefix}completions_days", schema)
        selects = " UNION ALL ".join(_sums(True, key, "added") for key in _KEYS)
        # Ordered by the primary key: concurrent writers lock the day rows in one order. OR
        # REPLACE: dropping the tables (metadata.drop_all, the demo's --fresh) leaves it.
        op.execute(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$ "
            f"BEGIN INSERT INTO {days} AS d ({_COLUMNS}) "
            f"SELECT * FROM ({selects}) AS s ORDER BY 1, 2, 3, 4, 5 {_upsert('d')}; "
            "RETURN NULL; END $body$"
        )
        op.execute(
            f"CREATE TRIGGER {trigger} AFTER INSERT ON {completions} "
            "REFERENCING NEW TABLE AS added FOR EACH STATEMENT "
            f"EXECUTE PROCEDURE {function}()"
        )
        return
    inserts = " ".join(
        f"INSERT INTO {days} ({_COLUMNS}) VALUES ('{key}', {_day(False, 'new.')}, "
        f"CASE WHEN new.{key} IS NULL THEN 0 ELSE 1 END, COALESCE(new.{key}, ''), "
        "COALESCE(new.outcome, ''), 1, CASE WHEN new.due_at IS NULL THEN 0 ELSE 1 END, "
        "CASE WHEN new.completed_at <= new.due_at THEN 1 ELSE 0 END, "
        f"CASE WHEN new.created_at IS NULL THEN 0 ELSE 1 END) {_upsert(days)};"
        for key in _KEYS
    )
    op.execute(
        f"CREATE TRIGGER {trigger} AFTER INSERT ON {completions} FOR EACH ROW BEGIN {inserts} END"
    )


def downgrade(*, prefix: str, schema: str | None) -> None:
    completions = _name(f"{prefix}completions", schema)
    trigger = _name(f"{prefix}completions_days", None)
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER {trigger} ON {completions}")
        op.execute(f"DROP FUNCTION {_name(f'{prefix}completions_days', schema)}()")
    else:
        op.execute(f"DROP TRIGGER {trigger}")
    op.drop_table(f"{prefix}completion_days", schema=schema)
