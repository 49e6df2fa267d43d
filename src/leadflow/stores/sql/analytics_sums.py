"""The sums the analytics ask of the SQL facts beyond the leaderboard's: completions per
bucket of time (the weekly trend), the won opportunities' touches (automation) and the
funnel's stages, each made in the database with one row per key coming back. A part of
:class:`~leadflow.stores.sql.analytics.SqlAnalyticsStore` (revision 0008's tables; no table
of their own).
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
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
    literal_column,
    or_,
    select,
    type_coerce,
)

from ...errors import InvalidInputError
from ...facts import CompletionGroup, StageSums, Touches
from ..analytics_checks import check_buckets, check_grouping, check_period, check_stages
from .database import SqlDatabase
from .errors import translated
from .types import UtcDateTime, micros

__all__ = ["SqlSums"]


class SqlSums:
    """The summed-up queries, over ``_changes`` and ``_completions`` of ``_db``."""

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
        c = self._completions.c
        where: list[Any] = [c.completed_at >= start, c.completed_at < end]
        if by is not None and wanted is not None:
            key = c[by]
            named = sorted(k for k in wanted if k is not None)
            match = key.in_(named)
            where.append(or_(match, key.is_(None)) if None in wanted else match)
        if self._db.dialect == "postgresql":
            since: Any = func.extract("epoch", c.completed_at - literal(start, UtcDateTime()))
            bucket: Any = func.floor(since / width.total_seconds())
        else:  # integer microseconds: integer division
            since = type_coerce(c.completed_at, BigInteger()) - micros(start)
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
        in_period = (s.changed_at >= start, s.changed_at < end)
        # reached / advanced: which stages each opportunity reached, one row each.
        flags = (
            select(
                *(
                    func.max(case((s.to_status == stage, 1), else_=0)).label(f"f{n}")
                    for n, stage in enumerate(wanted)
                )
            )
            .where(*in_period, s.to_status.in_(wanted))
            .group_by(s.opportunity_id)
            .subquery("flags")
        )
        f = flags.c
        counts = [func.coalesce(func.sum(f[f"f{n}"]), 0) for n in range(len(wanted))]
        counts += [
            func.coalesce(func.sum(f[f"f{n}"] * f[f"f{n + 1}"]), 0) for n in range(len(wanted) - 1)
        ]
        with self._db.read() as connection:
            totals = [int(n) for n in connection.execute(select(*counts)).one()]
        reached, advanced = totals[: len(wanted)], [*totals[len(wanted) :], 0]
        # Each opportunity's changes in order: the latest (still in), and the starts of stays
        # (a change to another status than the one before), each ended by the next start.
        order = (s.changed_at, s.event_id)
        ordered = (
            select(
                s.opportunity_id,
                s.to_status,
                s.changed_at,
                s.event_id,
                func.lag(s.to_status)
                .over(partition_by=s.opportunity_id, order_by=order)
                .label("before"),
                func.row_number()
                .over(
                    partition_by=s.opportunity_id,
                    order_by=(s.changed_at.desc(), s.event_id.desc()),
                )
                .label("from_end"),
            )
            .where(*in_period)
            .subquery("ordered")
        )
        o = ordered.c
        latest = (
            select(o.to_status, func.count().label("n"))
            .where(o.from_end == 1, o.to_status.in_(wanted))
            .group_by(o.to_status)
        )
        still = {row["to_status"]: row["n"] for row in self._rows(latest)}
        starts = (
            select(
                o.to_status,
                o.changed_at,
                func.lead(o.changed_at)
                .over(partition_by=o.opportunity_id, order_by=(o.changed_at, o.event_id))
                .label("ended"),
            )
            .where(or_(o.before.is_(None), o.before != o.to_status))
            .subquery("starts")
        )
        t = starts.c
        seconds = self._seconds(t.ended, t.changed_at)
        ranked = (
            select(
                t.to_status,
                seconds.label("seconds"),
                func.row_number().over(partition_by=t.to_status, order_by=seconds).label("rank"),
                func.count().over(partition_by=t.to_status).label("n"),
            )
            .where(t.ended.is_not(None), t.to_status.in_(wanted))
            .subquery("ranked")
        )
        r = ranked.c
        medians = {
            row["to_status"]: float(row["seconds"])
            for row in self._rows(select(r.to_status, r.seconds).where(r.rank == (r.n + 1) // 2))
        }
        return [
            StageSums(stage, reached[n], advanced[n], still.get(stage, 0), medians.get(stage))
            for n, stage in enumerate(wanted)
        ]

    def _seconds(self, later: Any, earlier: Any) -> Any:
        """``later - earlier`` in seconds, as a float, in SQL."""
        if self._db.dialect == "postgresql":
            return type_coerce(func.extract("epoch", later - earlier), Float())
        micros = type_coerce(later, BigInteger()) - type_coerce(earlier, BigInteger())
        return type_coerce(micros / 1_000_000.0, Float())

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
        converted = (
            select(c.rule_id.label("key"), func.count(c.opportunity_id.distinct()).label("n"))
            .select_from(won)
            .join(self._completions, and_(*where))
            .group_by(c.rule_id)
        )
        # The last touch: one probe of (opportunity_id, ...) per won opportunity.
        last = (
            select(c.activity_id)
            .where(*where, c.completed_at <= won.c.at)
            .order_by(c.completed_at.desc(), c.activity_id.desc())
            .limit(1)
            .correlate(won)
            .scalar_subquery()
        )
        touched = select(last.label("activity_id")).select_from(won).subquery("touched")
        wins = (
            select(c.rule_id.label("key"), func.count().label("n"))
            .select_from(touched)
            .join(self._completions, c.activity_id == touched.c.activity_id)
            .group_by(c.rule_id)
        )
        counts = {row["key"]: row["n"] for row in self._rows(wins)}
        rows = sorted(
            self._rows(converted), key=lambda row: (row["key"] is not None, row["key"] or "")
        )
        return [Touches(row["key"], row["n"], counts.get(row["key"], 0)) for row in rows]
