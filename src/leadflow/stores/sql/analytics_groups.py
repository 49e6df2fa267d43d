"""The period's completions summed up per assignee or automation in SQL
(:meth:`~leadflow.ports.AnalyticsStore.completion_groups`): a part of
:class:`~leadflow.stores.sql.analytics.SqlAnalyticsStore`.

The counts (completed, with a due date, on time, with a creation time, each outcome) come
from the per-day sums (revision 0012, :mod:`.analytics_days`: the period's whole days from
``completion_days``, its ragged ends from the ``completed_at`` index); what is not additive
over days, the distinct opportunities and the exact nearest-rank median of the time to
complete, only when asked, from indexes alone (revision 0010):

- PostgreSQL: one ``GROUP BY`` over the period's range of the ``(completed_at, assigned_to,
  rule_id, created_at, due_at, outcome, opportunity_id)`` index, the median by
  ``percentile_disc(0.5)`` (its ``ceil(n / 2)``-th value is the nearest-rank median);
- SQLite: per key, over the key's range of the period in its ``(key, completed_at,
  created_at, due_at, outcome, opportunity_id)`` index, one ``count(DISTINCT ...)`` and the
  ``(n + 1) // 2``-th smallest time by ``ORDER BY ... LIMIT 1 OFFSET``, so each key's
  completions are sorted alone (one ``GROUP BY`` over the period would sort all of it).
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    RowMapping,
    Select,
    Table,
    func,
    or_,
    select,
    type_coerce,
)

from ...facts import CompletionGroup
from ..analytics_checks import check_grouping, check_parts, check_period
from .analytics_days import DaySums, Summed
from .database import SqlDatabase
from .errors import translated

__all__ = ["SqlGroups"]


class SqlGroups(DaySums):
    """``completion_groups`` over ``_completions`` and ``_days`` of ``_db``."""

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
        sums = self._summed(by, start, end, wanted)
        c = self._completions.c
        key = c[by]
        where: list[Any] = [c.completed_at >= start, c.completed_at < end]
        medians: dict[str | None, Any] = {}
        distinct: dict[str | None, int] = {}
        if self._db.dialect == "postgresql" and sums and (median or opportunities):
            if wanted is not None:
                named = sorted(k for k in wanted if k is not None)
                match = key.in_(named)
                where.append(or_(match, key.is_(None)) if None in wanted else match)
            columns: list[Any] = []
            if opportunities:
                columns.append(func.count(c.opportunity_id.distinct()).label("opportunities"))
            if median:
                seconds = type_coerce(func.extract("epoch", c.completed_at - c.created_at), Float())
                columns.append(func.percentile_disc(0.5).within_group(seconds).label("median"))
            for row in self._rows(select(key.label("key"), *columns).where(*where).group_by(key)):
                medians[row["key"]] = row.get("median")
                distinct[row["key"]] = row.get("opportunities", 0)
        elif sums:
            if opportunities:
                distinct = self._distinct(key, where, sums)
            if median:
                medians = self._medians(key, where, sums)
        return [
            CompletionGroup(
                key=name,
                completed=summed.completed,
                with_due=summed.with_due,
                on_time=summed.on_time,
                median_seconds_to_complete=None
                if medians.get(name) is None
                else float(medians[name]),
                opportunities=distinct.get(name, 0),
                outcomes=dict(sorted(summed.outcomes.items())),
            )
            for name, summed in sorted(
                sums.items(), key=lambda item: (item[0] is not None, item[0] or "")
            )
        ]

    def _distinct(
        self, key: Any, where: list[Any], sums: Mapping[str | None, Summed]
    ) -> dict[str | None, int]:
        """SQLite: each key's distinct opportunities, one statement over the key's range of
        the period in its ``(key, completed_at, ...)`` index (it streams, where one ``GROUP
        BY`` over the period would sort all of it)."""
        c = self._completions.c
        found: dict[str | None, int] = {}
        with self._db.read() as connection:
            for name in sums:
                found[name] = connection.execute(
                    select(func.count(c.opportunity_id.distinct())).where(
                        key.is_(None) if name is None else key == name, *where
                    )
                ).scalar_one()
        return found

    def _medians(
        self, key: Any, where: list[Any], sums: Mapping[str | None, Summed]
    ) -> dict[str | None, float]:
        """SQLite: each key's nearest-rank median of the time to complete, one ``ORDER BY
        ... LIMIT 1 OFFSET`` over the key's range of its ``(key, completed_at, created_at)``
        index."""
        c = self._completions.c
        spent = type_coerce(c.completed_at, BigInteger()) - type_coerce(c.created_at, BigInteger())
        medians: dict[str | None, float] = {}
        with self._db.read() as connection:
            for name, summed in sums.items():
                if not summed.timed:
                    continue
                query = (
                    select(spent)
                    .where(
                        key.is_(None) if name is None else key == name,
                        *where[:2],
                        c.created_at.is_not(None),
                    )
                    .order_by(spent)
                    .limit(1)
                    .offset((summed.timed + 1) // 2 - 1)
                )
                medians[name] = int(connection.execute(query).scalar_one()) / 1_000_000
        return medians
