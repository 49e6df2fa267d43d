"""The completions' counts of a period from the per-day sums (:mod:`.completion_days`,
revision 0012): the period's whole UTC days are one range of the sums' primary key (a few
rows a day and key, whatever the completions), its ragged ends (less than a day each) one
``GROUP BY`` over their range of the ``completed_at`` index. A part of
:class:`~leadflow.stores.sql.analytics.SqlAnalyticsStore`, shared by the completions per key
(:mod:`.analytics_groups`) and per week (:mod:`.analytics_sums`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, case, func, or_, select

from .completion_days import day_start, whole_days
from .database import SqlDatabase

__all__ = ["DaySums", "Summed"]


@dataclass
class Summed:
    """One key's counts (or one day's, or one bucket's)."""

    completed: int = 0
    with_due: int = 0
    on_time: int = 0
    timed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(
        self, outcome: str | None, completed: int, with_due: int, on_time: int, timed: int
    ) -> None:
        self.completed += completed
        self.with_due += with_due
        self.on_time += on_time
        self.timed += timed
        if outcome:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + completed


class DaySums:
    """The per-day sums over ``_days`` and the ragged ends over ``_completions`` of ``_db``."""

    _db: SqlDatabase
    _completions: Table
    _days: Table

    def _day_rows(
        self,
        connection: Connection,
        by: str,
        days: tuple[int, int],
        wanted: Collection[str | None] | None,
        *,
        per_day: bool,
    ) -> list[Any]:
        """The whole ``days``' counts: ``(day, completed, with_due, on_time, timed)`` per
        day when ``per_day``, else ``(key, outcome, completed, with_due, on_time, timed)`` per
        key and outcome."""
        d = self._days.c
        where: list[Any] = [d.kind == by, d.day >= days[0], d.day < days[1]]
        if wanted is not None:
            named = sorted(k for k in wanted if k is not None)
            match = and_(d.keyed == 1, d.name.in_(named))
            where.append(or_(match, d.keyed == 0) if None in wanted else match)
        groups: list[Any] = [d.day] if per_day else [d.keyed, d.name, d.outcome]
        query = (
            select(
                *groups,
                *(func.sum(d[n]) for n in ("completed", "with_due", "on_time", "timed")),
            )
            .where(*where)
            .group_by(*groups)
        )
        rows = connection.execute(query).all()
        if per_day:
            return [(row[0], *(int(n) for n in row[1:])) for row in rows]
        return [
            (name if keyed else None, outcome or None, *(int(n) for n in row[3:]))
            for row in rows
            for keyed, name, outcome in [row[:3]]
        ]

    def _edge_rows(
        self,
        connection: Connection,
        by: str,
        start: datetime,
        end: datetime,
        wanted: Collection[str | None] | None,
    ) -> list[Any]:
        """``(key, outcome, completed, with_due, on_time, timed)`` of the completions in
        ``[start, end)`` (less than a day: a range of the ``completed_at`` index)."""
        c = self._completions.c
        key = c[by]
        where: list[Any] = [c.completed_at >= start, c.completed_at < end]
        if wanted is not None:
            named = sorted(k for k in wanted if k is not None)
            match = key.in_(named)
            where.append(or_(match, key.is_(None)) if None in wanted else match)
        on_time = case((and_(c.due_at.is_not(None), c.completed_at <= c.due_at), 1), else_=0)
        query = (
            select(
                key,
                c.outcome,
                func.count(),
                func.count(c.due_at),
                func.coalesce(func.sum(on_time), 0),
                func.count(c.created_at),
            )
            .where(*where)
            .group_by(key, c.outcome)
        )
        return [(row[0], row[1], *(int(n) for n in row[2:])) for row in connection.execute(query)]

    def _summed(
        self,
        by: str,
        start: datetime,
        end: datetime,
        wanted: Collection[str | None] | None,
    ) -> dict[str | None, Summed]:
        """The counts of each key of ``by`` (those of ``wanted``, else all) over the period's
        completions: its whole days from the sums, its ends from the completions."""
        found: dict[str | None, Summed] = {}
        days = whole_days(start, end)
        with self._db.read() as connection:
            rows: list[Any] = []
            if days is None:
                rows += self._edge_rows(connection, by, start, end, wanted)
            else:
                rows += self._day_rows(connection, by, days, wanted, per_day=False)
                for lo, hi in ((start, day_start(days[0])), (day_start(days[1]), end)):
                    if lo < hi:
                        rows += self._edge_rows(connection, by, lo, hi, wanted)
        for key, outcome, *counts in rows:
            sums = found.get(key)
            if sums is None:
                sums = found[key] = Summed()
            sums.add(outcome, *counts)
        return {key: sums for key, sums in found.items() if sums.completed}
