"""The period's completions summed up per assignee or automation in SQL
(:meth:`~leadflow.ports.AnalyticsStore.completion_groups`): a part of
:class:`~leadflow.stores.sql.analytics.SqlAnalyticsStore`.

The counts (completed, with a due date, on time, with a creation time, each outcome) come
from the per-day sums (revision 0012, :mod:`.analytics_days`: the period's whole days from
``completion_days``, its ragged ends from the ``completed_at`` index); what is not additive
over days, the distinct opportunities and the exact nearest-rank median of the time to
complete, only when asked, from indexes alone:

- the distinct opportunities: PostgreSQL counts the period's distinct ``(key, opportunity)``
  pairs per key (one hashed ``DISTINCT`` over the period's range of the ``(completed_at,
  assigned_to, rule_id, ...)`` index, revision 0010); SQLite per key: per automation over a
  period that is not short against the store's history, a walk of the automation's range of
  the ``(rule_id, opportunity_id, completed_at)`` index (revision 0014) grouping in its order
  (no sort), else one ``count(DISTINCT ...)`` over the key's range of the period in its
  ``(key, completed_at, ..., opportunity_id)`` index (revision 0010), so each key's are sorted
  alone;
- the median: per key, the ``(n + 1) // 2``-th smallest time (``n`` from the day sums) by
  ``ORDER BY ... LIMIT 1 OFFSET``; per assignee over a period that is not short against the
  store's history, a walk of the key's ``(assigned_to, completed_at - created_at, ...)``
  index (revision 0014) in that order, up to the middle of the period's completions, with
  no sort; else a sort of the key's completions of the period from its ``(key,
  completed_at, created_at, ...)`` index.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    RowMapping,
    Select,
    Table,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
)

from ...facts import CompletionGroup
from ..analytics_checks import check_grouping, check_parts, check_period
from .analytics_days import DaySums, Summed
from .completion_orders import spent
from .database import SqlDatabase
from .errors import translated
from .types import micros

__all__ = ["SqlGroups"]

_MEDIAN_SHARE: Final = (1, 10)
"""The median per rep walks the ``(assigned_to, completed_at - created_at, ...)`` index when
the period spans at least this share (numerator, denominator) of the store's completions'
time span: the walk reads about half the key's completions of any time (each about a fifth
as dear as a sorted one, measured at 1,000,000 completions), the sort the period's."""

_DISTINCT_SHARE: Final = (1, 5)
"""The distinct opportunities per automation walk the ``(rule_id, opportunity_id,
completed_at)`` index from this share on: the walk reads all the key's completions."""


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
        medians: dict[str | None, Any] = {}
        distinct: dict[str | None, int] = {}
        if sums and opportunities:
            distinct = self._distinct(by, start, end, sums)
        if sums and median:
            medians = self._medians(by, start, end, sums)
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
        self, by: str, start: datetime, end: datetime, sums: Mapping[str | None, Summed]
    ) -> dict[str | None, int]:
        """Each key's distinct opportunities over the period's completions. PostgreSQL: the
        period's distinct ``(key, opportunity)`` pairs (hashed, from the period's range of the
        ``(completed_at, ...)`` index) counted per key. SQLite, a key at a time: per
        automation over a period not short against the store's history, the automation's
        completions grouped by opportunity in the order of its ``(rule_id, opportunity_id,
        completed_at)`` index (revision 0014), counted; else one ``count(DISTINCT ...)`` over
        the key's range of the period in its ``(key, completed_at, ...)`` index (one
        ``GROUP BY`` over the period would sort all of it)."""
        c = self._completions.c
        key = c[by]
        period: tuple[ColumnElement[bool], ...] = (c.completed_at >= start, c.completed_at < end)
        found: dict[str | None, int] = {}
        postgres = self._db.dialect == "postgresql"
        walk = not postgres and by == "rule_id" and self._ordered(start, end, _DISTINCT_SHARE)
        with self._db.read() as connection:
            if postgres:
                named = sorted(k for k in sums if k is not None)
                match = key.in_(named)
                pairs = (
                    select(key.label("key"), c.opportunity_id)
                    .where(*period, or_(match, key.is_(None)) if None in sums else match)
                    .distinct()
                    .subquery("pairs")
                )
                counted = select(pairs.c.key, func.count()).group_by(pairs.c.key)
                return {name: int(n) for name, n in connection.execute(counted)}
            if walk:
                # Written so that the (rule_id, opportunity_id, completed_at) index (revision
                # 0014) is the one to take: no index takes the period (the planner would take
                # the (rule_id, completed_at, ...) one and sort), and every opportunity id
                # (never empty) is past '': the key's range of it, grouped in its order.
                at = type_coerce(c.completed_at, BigInteger()) + 0
                period = (at >= micros(start), at < micros(end), c.opportunity_id >= "")
            for name in sums:
                one: ColumnElement[bool] = key.is_(None) if name is None else key == name
                if walk:
                    each = select(c.opportunity_id).where(one, *period)
                    query = select(func.count()).select_from(
                        each.group_by(c.opportunity_id).subquery("each")
                    )
                else:
                    query = select(func.count(c.opportunity_id.distinct())).where(one, *period)
                found[name] = connection.execute(query).scalar_one()
        return found

    def _ordered(self, start: datetime, end: datetime, share: tuple[int, int]) -> bool:
        """Whether the period spans at least ``share`` of the time between the store's first
        and last completion, so that walking a key's completions in an order of revision 0014,
        period or not, costs less than sorting the period's. Two seeks of the
        ``completed_at`` index; a guess on the cost only, the answer is the same either
        way."""
        c = self._completions.c
        first = select(func.min(c.completed_at)).scalar_subquery()
        last = select(func.max(c.completed_at)).scalar_subquery()
        with self._db.read() as connection:
            row = connection.execute(select(first, last)).one()
        lo: datetime | None = row[0]
        hi: datetime | None = row[1]
        if lo is None or hi is None or hi <= lo:
            return True
        spanned = min(end, hi) - max(start, lo)
        return bool(spanned * share[1] >= (hi - lo) * share[0])

    def _medians(
        self, by: str, start: datetime, end: datetime, sums: Mapping[str | None, Summed]
    ) -> dict[str | None, float]:
        """Each key's nearest-rank median of the time to complete: its ``(n + 1) // 2``-th
        smallest over the period (``n`` from the day sums), one ``ORDER BY ... LIMIT 1 OFFSET``
        a key. Per assignee, over a period long against the store's history, it walks the
        key's range of the ``(assigned_to, completed_at - created_at, ...)`` index (revision
        0014) in order, skipping the completions outside the period: no sort; else it sorts
        the key's completions of the period, from its ``(key, completed_at, created_at)``
        index (SQLite; PostgreSQL's planner picks)."""
        c = self._completions.c
        key = c[by]
        postgres = self._db.dialect == "postgresql"
        time_spent = spent(self._completions, self._db.dialect)
        # SQLite picks an index whose order is the ORDER BY's: an expression that is not the
        # index's leaves it the period's range of the (key, completed_at, ...) index.
        # PostgreSQL's planner weighs them itself (it knows the offset: see below).
        ordered = postgres or (by == "assigned_to" and self._ordered(start, end, _MEDIAN_SHARE))
        order = time_spent if ordered else time_spent + 0
        medians: dict[str | None, float] = {}
        with self._db.read() as connection:
            for name, summed in sums.items():
                if not summed.timed:
                    continue
                query = (
                    select(time_spent)  # each row skipped is computed too: nothing more
                    .where(
                        key.is_(None) if name is None else key == name,
                        c.completed_at >= start,
                        c.completed_at < end,
                        time_spent.is_not(None),
                    )
                    .order_by(order)
                    .limit(1)
                    # Written out: PostgreSQL's generic plan of a prepared statement (psycopg
                    # prepares one run often) knows no offset and sorts rather than walks.
                    .offset(literal_column(str((summed.timed + 1) // 2 - 1)))
                )
                value = connection.execute(query).scalar_one()  # an interval on PostgreSQL
                medians[name] = (
                    value.total_seconds()
                    if isinstance(value, timedelta)
                    else int(value) / 1_000_000
                )
        return medians
