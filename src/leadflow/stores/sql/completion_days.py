"""The completions summed per day (revision 0012): ``<prefix>completion_days``.

One row per grouping (``kind``: ``assigned_to`` or ``rule_id``), UTC day (days since
1970-01-01), key (``name``) and outcome: how many completions there are, how many with a due
date, on time, and with a creation time. Every completion counts once in each grouping
(``keyed`` 0 and ``name`` ``''`` for one without the key, ``outcome`` ``''`` for one
without an outcome: the primary key takes no NULL). The database keeps the rows itself as
completions are inserted (a trigger made by revision 0012: per row on SQLite, per statement
over the inserted rows on PostgreSQL), so every write path counts (``record_completion``,
``record_many``, the backfill; a re-record inserts nothing and counts nothing). Completions
are never updated nor deleted.

The sums of a period are the rows of its whole days (a range of the primary key) and the
completions of its ragged ends, if any, from the ``completed_at`` index
(:mod:`.analytics_groups`, :mod:`.analytics_sums`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import BigInteger, Column, Integer, MetaData, PrimaryKeyConstraint, String, Table

__all__ = ["DAY", "completion_days", "day_number", "day_start", "whole_days"]

DAY: Final = timedelta(days=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def completion_days(metadata: MetaData, name: str, schema: str | None) -> Table:
    """The table (revision 0012)."""
    return Table(
        name,
        metadata,
        Column("kind", String(16), nullable=False),
        Column("day", BigInteger, nullable=False),
        Column("keyed", Integer, nullable=False),
        Column("name", String(128), nullable=False),
        Column("outcome", String(32), nullable=False),
        Column("completed", BigInteger, nullable=False),
        Column("with_due", BigInteger, nullable=False),
        Column("on_time", BigInteger, nullable=False),
        Column("timed", BigInteger, nullable=False),
        PrimaryKeyConstraint("kind", "day", "keyed", "name", "outcome", name=f"{name}_pkey"),
        schema=schema,
        sqlite_with_rowid=False,  # the rows in the primary key's order: a period is one range
    )


def day_number(moment: datetime) -> int:
    """The UTC day of ``moment`` (aware), as days since 1970-01-01 (floor)."""
    return (moment - _EPOCH) // DAY


def whole_days(start: datetime, end: datetime) -> tuple[int, int] | None:
    """The UTC days ``[first, last)`` wholly inside ``[start, end)``, None when there is none."""
    first = -((_EPOCH - start) // DAY)  # ceil
    last = day_number(end)
    return (first, last) if first < last else None


def day_start(day: int) -> datetime:
    """The first moment of UTC day ``day``."""
    return _EPOCH + day * DAY
