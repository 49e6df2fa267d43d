"""The period's completions summed up per assignee or automation in SQL
(:meth:`~leadflow.ports.AnalyticsStore.completion_groups`): a part of
:class:`~leadflow.stores.sql.analytics.SqlAnalyticsStore`.

Every count (completed, with a due date, on time, distinct opportunities, each outcome as a
conditional sum per :class:`~leadflow.Outcome`, so one pass counts them all) and the exact
nearest-rank median of the time to complete are read from indexes alone (revision 0010):

- PostgreSQL: one ``GROUP BY`` over the period's range of the ``(completed_at, assigned_to,
  rule_id, created_at, due_at, outcome, opportunity_id)`` index, the median by
  ``percentile_disc(0.5)`` in the same statement (its ``ceil(n / 2)``-th value is the
  nearest-rank median);
- SQLite: per key, one aggregate over the key's range of the period in its ``(key,
  completed_at, created_at, due_at, outcome, opportunity_id)`` index, which streams (a
  ``GROUP BY`` over the whole period sorts all of it first), and the ``(n + 1) // 2``-th
  smallest time by ``ORDER BY ... LIMIT 1 OFFSET`` over the same range, so each key's
  completions are sorted alone; the keys there are found by one index probe each.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    RowMapping,
    Select,
    Table,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    type_coerce,
)

from ...activity_models import Outcome
from ...facts import CompletionGroup
from ..analytics_checks import check_grouping, check_parts, check_period
from .database import SqlDatabase
from .errors import translated

__all__ = ["SqlGroups"]

_OUTCOMES = [str(outcome) for outcome in Outcome]


class SqlGroups:
    """``completion_groups`` over ``_completions`` of ``_db``."""

    _db: SqlDatabase
    _completions: Table

    def _rows(self, statement: Select[Any]) -> Sequence[RowMapping]:
        with self._db.read() as connection:
            return connection.execute(statement).mappings().all()

    @translated("completion_groups")
    def completion_groups(
        self,
        start: datetime,
        end: datetime,
        *,
        by: str,
        keys: Collection[str | None] | None = None,
        median: bool = True,
        opportunities: bool = True,
    ) -> builtins.list[CompletionGroup]:
        start, end = check_period(start, end)
        wanted = check_grouping(by, keys)
        median, opportunities = check_parts(median, opportunities)
        c = self._completions.c
        key = c[by]
        where: list[Any] = [c.completed_at >= start, c.completed_at < end]
        postgres = self._db.dialect == "postgresql"
        if wanted is not None and postgres:
            named = sorted(k for k in wanted if k is not None)
            match = key.in_(named)
            where.append(or_(match, key.is_(None)) if None in wanted else match)
        on_time = case((and_(c.due_at.is_not(None), c.completed_at <= c.due_at), 1), else_=0)
        columns: list[Any] = [
            func.count().label("completed"),
            func.count(c.due_at).label("with_due"),
            func.coalesce(func.sum(on_time), 0).label("on_time"),
            (func.count(c.opportunity_id.distinct()) if opportunities else literal(0)).label(
                "opportunities"
            ),
            func.count(c.created_at).label("timed"),
            *(
                func.coalesce(func.sum(case((c.outcome == outcome, 1), else_=0)), 0).label(f"o{n}")
                for n, outcome in enumerate(_OUTCOMES)
            ),
        ]
        if postgres and median:
            seconds = type_coerce(func.extract("epoch", c.completed_at - c.created_at), Float())
            columns.append(func.percentile_disc(0.5).within_group(seconds).label("median"))
        rows: Sequence[Any] = (
            self._rows(select(key.label("key"), *columns).where(*where).group_by(key))
            if postgres
            else self._per_key(key, columns, where, wanted)
        )
        medians: dict[str | None, Any] = {}
        if median:
            medians = (
                {row["key"]: row["median"] for row in rows}
                if postgres
                else self._medians(key, where, rows)
            )
        return [
            CompletionGroup(
                key=row["key"],
                completed=row["completed"],
                with_due=row["with_due"],
                on_time=int(row["on_time"]),
                median_seconds_to_complete=None
                if medians.get(row["key"]) is None
                else float(medians[row["key"]]),
                opportunities=row["opportunities"],
                outcomes={
                    outcome: int(row[f"o{n}"])
                    for n, outcome in sorted(enumerate(_OUTCOMES), key=lambda item: item[1])
                    if row[f"o{n}"]
                },
            )
            for row in sorted(rows, key=lambda row: (row["key"] is not None, row["key"] or ""))
        ]

    def _per_key(
        self,
        key: Any,
        columns: list[Any],
        where: list[Any],
        wanted: Collection[str | None] | None,
    ) -> builtins.list[dict[str, Any]]:
        """SQLite: the sums of each key (those of ``wanted``, else every key there is, found
        by one ``min(key) > the last one`` index probe each), each one statement over the
        key's range of the period in its ``(key, completed_at, ...)`` index: an aggregate that
        streams, where one ``GROUP BY`` over the period would sort all of it."""
        found: list[dict[str, Any]] = []
        with self._db.read() as connection:
            if wanted is None:
                names: list[str | None] = [None]
                last = connection.execute(select(func.min(key))).scalar()
                while last is not None:
                    names.append(last)
                    last = connection.execute(select(func.min(key)).where(key > last)).scalar()
            else:
                names = sorted(wanted, key=lambda name: (name is not None, name or ""))
            for name in names:
                row = (
                    connection.execute(
                        select(*columns).where(
                            key.is_(None) if name is None else key == name, *where
                        )
                    )
                    .mappings()
                    .one()
                )
                if row["completed"]:
                    found.append({**row, "key": name})
        return found

    def _medians(self, key: Any, where: list[Any], rows: Sequence[Any]) -> dict[str | None, float]:
        """SQLite: each key's nearest-rank median of the time to complete, one ``ORDER BY
        ... LIMIT 1 OFFSET`` over the key's range of its ``(key, completed_at, created_at)``
        index."""
        c = self._completions.c
        spent = type_coerce(c.completed_at, BigInteger()) - type_coerce(c.created_at, BigInteger())
        medians: dict[str | None, float] = {}
        with self._db.read() as connection:
            for row in rows:
                if not row["timed"]:
                    continue
                name = row["key"]
                query = (
                    select(spent)
                    .where(
                        key.is_(None) if name is None else key == name,
                        *where[:2],
                        c.created_at.is_not(None),
                    )
                    .order_by(spent)
                    .limit(1)
                    .offset((row["timed"] + 1) // 2 - 1)
                )
                medians[name] = int(connection.execute(query).scalar_one()) / 1_000_000
        return medians
