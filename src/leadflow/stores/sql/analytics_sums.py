"""The sums the analytics ask of the SQL facts beyond the leaderboard's: completions per
bucket of time (the weekly trend) and the won opportunities' touches (automation), each made
in the database with one row per key coming back; and the funnel's stages, from the period's
status changes read once from a covering index in each opportunity's order (three small
values a change) and walked in one pass. A part of
:class:`~leadflow.stores.sql.analytics.SqlAnalyticsStore` (revisions 0008 and 0010; no table
of their own).
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    RowMapping,
    Select,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
)

from ...errors import InvalidInputError
from ...facts import CompletionGroup, StageSums, Touches, stage_sums_of_paths
from ..analytics_checks import check_buckets, check_grouping, check_period, check_stages
from .analytics_days import DaySums, Summed
from .completion_days import DAY, day_start, whole_days
from .database import SqlDatabase
from .errors import translated
from .plain_rows import plain_rows
from .types import UtcDateTime, micros

__all__ = ["SqlSums"]


def _micros_to_seconds(micros: int) -> float:
    return micros / 1_000_000


class SqlSums(DaySums):
    """The summed-up queries, over ``_changes``, ``_completions`` and ``_days`` of ``_db``."""

    _db: SqlDatabase
    _changes: Table
    _completions: Table

    def _rows(self, statement: Select[Any]) -> Sequence[RowMapping]:
        with self._db.read() as connection:
            return connection.execute(statement).mappings().all()

    @translated("completion_buckets")
    def completion_buckets(
        self,
        start: datetime,
        end: datetime,
        *,
        width: timedelta,
        by: str | None = None,
        keys: Collection[str | None] | None = None,
    ) -> dict[int, CompletionGroup]:
        start, end = check_period(start, end)
        width, by, wanted = check_buckets(width, by, keys)
        days = whole_days(start, end)
        if days is None or start != day_start(days[0]) or width % DAY:
            return self._buckets(start, start, end, width, by, wanted)
        # Buckets of whole days from a midnight: the days' sums, then the ragged end.
        found: dict[int, Summed] = {}
        per = width // DAY
        with self._db.read() as connection:
            rows = self._day_rows(connection, by or "assigned_to", days, wanted, per_day=True)
        for day, *counts in rows:
            n = (day - days[0]) // per
            sums = found.get(n)
            if sums is None:
                sums = found[n] = Summed()
            sums.add(None, *counts)
        if day_start(days[1]) < end:
            for n, group in self._buckets(
                start, day_start(days[1]), end, width, by, wanted
            ).items():
                sums = found.get(n)
                if sums is None:
                    sums = found[n] = Summed()
                sums.add(None, group.completed, group.with_due, group.on_time, 0)
        return {
            n: CompletionGroup(None, sums.completed, sums.with_due, sums.on_time, None)
            for n, sums in sorted(found.items())
            if sums.completed
        }

    def _buckets(
        self,
        origin: datetime,
        start: datetime,
        end: datetime,
        width: timedelta,
        by: str | None,
        wanted: Collection[str | None] | None,
    ) -> dict[int, CompletionGroup]:
        """The completions in ``[start, end)`` counted per bucket of ``width`` from ``origin``
        in one ``GROUP BY`` over their range of the ``completed_at`` index."""
        c = self._completions.c
        where: list[Any] = [c.completed_at >= start, c.completed_at < end]
        if by is not None and wanted is not None:
            key = c[by]
            named = sorted(k for k in wanted if k is not None)
            match = key.in_(named)
            where.append(or_(match, key.is_(None)) if None in wanted else match)
        if self._db.dialect == "postgresql":
            since: Any = func.extract("epoch", c.completed_at - literal(origin, UtcDateTime()))
            bucket: Any = func.floor(since / width.total_seconds())
        else:  # integer microseconds: integer division
            since = type_coerce(c.completed_at, BigInteger()) - micros(origin)
            bucket = since // (width // timedelta(microseconds=1))
        on_time = case((and_(c.due_at.is_not(None), c.completed_at <= c.due_at), 1), else_=0)
        query = (
            select(
                type_coerce(bucket, BigInteger()).label("bucket"),
                func.count().label("completed"),
                func.count(c.due_at).label("with_due"),
                func.coalesce(func.sum(on_time), 0).label("on_time"),
            )
            .where(*where)
            .group_by(literal_column("bucket"))
            .order_by(literal_column("bucket"))
        )
        return {
            int(row["bucket"]): CompletionGroup(
                None, row["completed"], row["with_due"], int(row["on_time"]), None
            )
            for row in self._rows(query)
        }

    @translated("stage_sums")
    def stage_sums(
        self, start: datetime, end: datetime, stages: Sequence[str]
    ) -> builtins.list[StageSums]:
        start, end = check_period(start, end)
        wanted = check_stages(stages)
        s = self._changes.c
        # The period's range of the covering (changed_at, opportunity_id, to_status, event_id)
        # index (revision 0010), sorted once by opportunity and time; each opportunity's path
        # is walked as it comes (facts.stage_sums_of_paths: the one definition). Window
        # functions (lag / lead / row_number over the same rows, three sorts and a nested
        # subquery each) cost several times as much on SQLite.
        if self._db.dialect == "postgresql":
            at: Any = cast(func.extract("epoch", s.changed_at) * 1_000_000, BigInteger())
        else:  # integer microseconds
            at = type_coerce(s.changed_at, BigInteger())
        query = (
            select(s.opportunity_id, s.to_status, at)
            .where(s.changed_at >= start, s.changed_at < end)
            .order_by(s.opportunity_id, s.changed_at, s.event_id)
        )
        with self._db.read() as connection:
            paths = plain_rows(connection, query)  # strings and integers
        return stage_sums_of_paths(paths, wanted, _micros_to_seconds)

    @translated("won_touches")
    def won_touches(
        self,
        start: datetime,
        end: datetime,
        status: str,
        *,
        keys: Collection[str | None] | None = None,
    ) -> builtins.list[Touches]:
        start, end = check_period(start, end)
        if not isinstance(status, str):
            raise InvalidInputError(f"expected a status, got {status!r}", field="status")
        wanted = check_grouping("rule_id", keys)
        s, c = self._changes.c, self._completions.c
        # Each opportunity's first change to the status in the period: the period's range of
        # the changed_at index.
        won = (
            select(s.opportunity_id.label("opportunity_id"), func.min(s.changed_at).label("at"))
            .where(s.changed_at >= start, s.changed_at < end, s.to_status == status)
            .group_by(s.opportunity_id)
            .subquery("won")
        )
        where: list[Any] = [
            c.opportunity_id == won.c.opportunity_id,
            c.completed_at >= start,
            c.completed_at < end,
        ]
        if wanted is not None:
            named = sorted(k for k in wanted if k is not None)
            match = c.rule_id.in_(named)
            where.append(or_(match, c.rule_id.is_(None)) if None in wanted else match)
        # Each won opportunity's touches in the period: its range of the (opportunity_id,
        # completed_at, rule_id, activity_id) index (revision 0014). The rule as a key: ''
        # for none (no rule id is empty), so that a NULL is "no touch".
        rule = func.coalesce(c.rule_id, "")
        if self._db.dialect == "postgresql":
            # LATERAL: a probe per won opportunity, where a join would hash the period's
            # completions.
            rules = select(rule.label("key")).where(*where).distinct().lateral("rules")
            converted = (
                select(rules.c.key, func.count().label("n"))
                .select_from(won)
                .join(rules, true())
                .group_by(rules.c.key)
            )
        else:  # SQLite probes the index per won opportunity by itself
            converted = (
                select(rule.label("key"), func.count(c.opportunity_id.distinct()).label("n"))
                .select_from(won)
                .join(self._completions, and_(*where))
                .group_by(rule)
            )
        # The last touch's rule, read from the same index (a NULL: no touch before the win).
        last = (
            select(rule)
            .where(*where, c.completed_at <= won.c.at)
            .order_by(c.completed_at.desc(), c.activity_id.desc())
            .limit(1)
            .correlate(won)
            .scalar_subquery()
        )
        # OFFSET 0: a subquery neither database merges into the grouping, which would run
        # the probe twice (for the key and for the group); grouped with the NULLs (no touch),
        # left out here, for the same reason.
        touched = select(last.label("key")).select_from(won).offset(0).subquery("touched")
        wins = select(touched.c.key, func.count().label("n")).group_by(touched.c.key)
        counts = {
            row["key"] or None: row["n"] for row in self._rows(wins) if row["key"] is not None
        }
        rows = sorted(
            ({"key": row["key"] or None, "n": row["n"]} for row in self._rows(converted)),
            key=lambda row: (row["key"] is not None, row["key"] or ""),
        )
        return [Touches(row["key"], row["n"], counts.get(row["key"], 0)) for row in rows]
