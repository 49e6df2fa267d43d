"""The leads of a period summed up in SQL (revision 0009's ``lead_contacts``): a part of
:class:`~leadflow.stores.sql.analytics.SqlAnalyticsStore`.

``lead_contacts`` keeps each opportunity's first contact (the earliest completion of a contact
type, by ``(completed_at, activity_id)``) as completions are recorded: an upsert that replaces
the kept one only by an earlier one, so concurrent writers agree and the order the facts come
in does not matter. A lead query reads the period's range of the ``arrived_at`` index, joins
each arrival to its first contact by the primary key and finds its first win by one probe of
``(opportunity_id, to_status, changed_at)``, and sums up in the database: ``GROUP BY`` for the
counts, ``percentile_disc`` on PostgreSQL and a windowed ``row_number`` (the nearest rank) on
SQLite for the percentiles. One statement per query; one row per group comes back.
``lead_summary`` (every grouping a dashboard shows, and the late contacts) reads the same leads
once instead: one small row per lead comes back, summed up in one pass in Python.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Float,
    Interval,
    Select,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite

from ...facts import CONTACT_TYPES, SPEED_BOUNDS, Completion, LateContact, LeadSummary, LeadSums
from ..analytics_leads import LeadQuery, check_lead_query
from ..analytics_summary import check_lead_summary, summary_of
from .analytics_sums import SqlSums
from .errors import translated
from .plain_rows import plain_rows
from .types import micros

__all__ = ["SqlLeads"]

_CONTACTS = frozenset(CONTACT_TYPES)
_CHUNK = 900  # ids per IN list: within SQLite's oldest bound-parameter limit (999)


def _matching(column: Any, wanted: frozenset[str | None] | None) -> list[Any]:
    """The condition that ``column`` is one of ``wanted`` (None in it: NULL)."""
    if wanted is None:
        return []
    named = sorted(name for name in wanted if name is not None)
    match = column.in_(named)
    return [or_(match, column.is_(None)) if None in wanted else match]


class SqlLeads(SqlSums):
    """The first contacts kept as completions are recorded, and the lead queries."""

    _arrivals: Table
    _contacts: Table

    # ------------------------------------------------------------------ writes

    def _contact_upsert(self) -> Any:
        upsert = postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert
        k = self._contacts.c
        statement = upsert(self._contacts)
        new = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=[k.opportunity_id],
            set_={
                "contacted_at": new.contacted_at,
                "activity_id": new.activity_id,
                "assigned_to": new.assigned_to,
                "rule_id": new.rule_id,
            },
            where=tuple_(new.contacted_at, new.activity_id) < tuple_(k.contacted_at, k.activity_id),
        )

    def _keep_contacts(self, connection: Connection, completions: Sequence[Completion]) -> None:
        """Keep the contacts among ``completions`` (as stored: a completion recorded before
        with other values counts as it was recorded) where they come first."""
        ids = sorted({c.activity_id for c in completions if c.activity_type in _CONTACTS})
        if not ids:
            return
        c = self._completions.c
        first: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), _CHUNK):
            query = select(
                c.opportunity_id, c.completed_at, c.activity_id, c.assigned_to, c.rule_id
            ).where(c.activity_id.in_(ids[start : start + _CHUNK]))
            for row in connection.execute(query).mappings():
                known = first.get(row["opportunity_id"])
                if known is None or (row["completed_at"], row["activity_id"]) < (
                    known["contacted_at"],
                    known["activity_id"],
                ):
                    first[row["opportunity_id"]] = {
                        "opportunity_id": row["opportunity_id"],
                        "contacted_at": row["completed_at"],
                        "activity_id": row["activity_id"],
                        "assigned_to": row["assigned_to"],
                        "rule_id": row["rule_id"],
                    }
        connection.execute(self._contact_upsert(), [first[key] for key in sorted(first)])

    def _keep_contact(self, connection: Connection, completion: Completion) -> None:
        """Keep ``completion`` (just stored) where it is a contact that comes first."""
        if completion.activity_type not in _CONTACTS:
            return
        connection.execute(
            self._contact_upsert(),
            {
                "opportunity_id": completion.opportunity_id,
                "contacted_at": completion.completed_at,
                "activity_id": completion.activity_id,
                "assigned_to": completion.assigned_to,
                "rule_id": completion.rule_id,
            },
        )

    # ------------------------------------------------------------------ queries

    def _gap(self) -> tuple[Any, Any]:
        """A lead's wait (arrival to first contact, 0 when the contact came first; NULL when
        none) as a comparable value (SQLite: integer microseconds, PostgreSQL: an interval),
        and in seconds."""
        a, k = self._arrivals.c, self._contacts.c
        if self._db.dialect == "postgresql":
            gap = case(
                (k.contacted_at < a.arrived_at, literal(timedelta(0), Interval())),
                else_=k.contacted_at - a.arrived_at,
            )
            return gap, type_coerce(func.extract("epoch", gap), Float())
        later = type_coerce(k.contacted_at, BigInteger())
        arrived = type_coerce(a.arrived_at, BigInteger())
        gap = case((later < arrived, 0), else_=later - arrived)
        return gap, type_coerce(gap / 1_000_000.0, Float())

    def _bound(self, value: timedelta) -> Any:
        if self._db.dialect == "postgresql":
            return literal(value, Interval())
        return literal(value // timedelta(microseconds=1), BigInteger())

    def _where(self, q: LeadQuery) -> list[Any]:
        a, k = self._arrivals.c, self._contacts.c
        where: list[Any] = [a.arrived_at >= q.start, a.arrived_at < q.end]
        where += _matching(func.coalesce(a.owner, k.assigned_to), q.reps)
        where += _matching(a.source, q.sources)
        if q.automations is not None:
            where += [k.contacted_at.is_not(None), *_matching(k.rule_id, q.automations)]
        return where

    def _leads(self, q: LeadQuery) -> Any:
        """One row per lead the query takes: its group, wait, time to win and flags."""
        a, k, s = self._arrivals.c, self._contacts.c, self._changes.c
        pg = self._db.dialect == "postgresql"
        gap, waited = self._gap()
        if q.by == "rep":
            key: Any = func.coalesce(a.owner, k.assigned_to)
        elif q.by == "source":
            key = a.source
        else:
            key = literal(None, a.source.type)
        bucket: Any = literal(0, BigInteger())
        if q.by == "bucket":
            assert q.origin is not None and q.width is not None
            since: Any
            if pg:
                since = func.extract("epoch", a.arrived_at - literal(q.origin, a.arrived_at.type))
                bucket = func.floor(since / q.width.total_seconds())
            else:
                since = type_coerce(a.arrived_at, BigInteger()) - micros(q.origin)
                bucket = since // (q.width // timedelta(microseconds=1))
        won = (
            select(func.min(s.changed_at))
            .where(s.opportunity_id == a.opportunity_id, s.to_status == q.status)
            .correlate(self._arrivals)
            .scalar_subquery()
        )
        if pg:
            to_win: Any = type_coerce(func.extract("epoch", won - a.arrived_at), Float())
        else:
            since_arrival = type_coerce(won, BigInteger()) - type_coerce(a.arrived_at, BigInteger())
            to_win = type_coerce(since_arrival / 1_000_000.0, Float())
        flag = [
            case((gap <= self._bound(bound), 1), else_=0)
            for bound in (timedelta(minutes=5), timedelta(hours=1), q.day)
        ]
        slot = case(
            *(
                (gap < self._bound(timedelta(seconds=bound)), n)
                for n, bound in enumerate(SPEED_BOUNDS)
            ),
            else_=len(SPEED_BOUNDS),
        )
        leads = (
            select(
                key.label("key"),
                type_coerce(bucket, BigInteger()).label("bucket"),
                waited.label("wait"),
                to_win.label("to_win"),
                *(f.label(f"w{n}") for n, f in enumerate(flag)),
                case((k.contacted_at.is_(None), None), else_=slot).label("slot"),
            )
            .select_from(
                self._arrivals.outerjoin(self._contacts, k.opportunity_id == a.opportunity_id)
            )
            .where(*self._where(q))
            .cte("leads")
        )
        # PostgreSQL inlines a CTE read once, and the time to win, which two aggregates
        # read, became two probes of the status changes per lead: evaluated once instead.
        return leads.prefix_with("MATERIALIZED") if pg else leads

    @translated("lead_sums")
    def lead_sums(
        self,
        start: datetime,
        end: datetime,
        *,
        status: str,
        day: timedelta,
        by: str | None = None,
        origin: datetime | None = None,
        width: timedelta | None = None,
        reps: Collection[str | None] | None = None,
        sources: Collection[str | None] | None = None,
        automations: Collection[str | None] | None = None,
    ) -> builtins.list[LeadSums]:
        q = check_lead_query(
            start, end, day=day, status=status, by=by, origin=origin, width=width,
            reps=reps, sources=sources, automations=automations,
        )  # fmt: skip
        leads = self._leads(q)
        l = leads.c  # noqa: E741
        group = (l.key, l.bucket)
        sums: list[Any] = [
            func.count().label("leads"),
            func.count(l.wait).label("contacted"),
            func.count(l.to_win).label("won"),
            *(func.coalesce(func.sum(l[f"w{n}"]), 0).label(f"w{n}") for n in range(3)),
            *(
                func.coalesce(func.sum(case((l.slot == n, 1), else_=0)), 0).label(f"b{n}")
                for n in range(len(SPEED_BOUNDS) + 1)
            ),
        ]
        if self._db.dialect == "postgresql":
            percentiles: list[Any] = [
                type_coerce(func.percentile_disc(p).within_group(l.wait), Float()).label(name)
                for p, name in ((0.5, "p50"), (0.9, "p90"))
            ]
            percentiles.append(
                type_coerce(func.percentile_disc(0.5).within_group(l.to_win), Float()).label(
                    "win50"
                )
            )
            query: Select[Any] = select(*group, *sums, *percentiles).group_by(*group)
        else:
            summed = select(*group, *sums).group_by(*group).subquery("summed")
            waits = self._ranked(leads, l.wait, ((50, "p50"), (90, "p90")))
            wins = self._ranked(leads, l.to_win, ((50, "win50"),))
            m = summed.c
            joined: Any = summed
            for ranked in (waits, wins):
                joined = joined.outerjoin(
                    ranked,
                    and_(m.key.is_not_distinct_from(ranked.c.key), m.bucket == ranked.c.bucket),
                )
            query = select(*m, waits.c.p50, waits.c.p90, wins.c.win50).select_from(joined)
        found = [
            LeadSums(
                key=row["key"],
                bucket=int(row["bucket"]),
                leads=row["leads"],
                contacted=row["contacted"],
                won=row["won"],
                within=(int(row["w0"]), int(row["w1"]), int(row["w2"])),
                buckets=tuple(int(row[f"b{n}"]) for n in range(len(SPEED_BOUNDS) + 1)),
                p50_seconds=_seconds(row["p50"]),
                p90_seconds=_seconds(row["p90"]),
                median_seconds_to_win=_seconds(row["win50"]),
            )
            for row in self._rows(query)
        ]
        found.sort(key=lambda sums: (sums.key is not None, sums.key or "", sums.bucket))
        return found

    @staticmethod
    def _ranked(leads: Any, value: Any, wanted: tuple[tuple[int, str], ...]) -> Any:
        """Per group of ``leads``, the nearest-rank percentiles of ``value`` (SQLite has no
        percentile function): ``row_number`` over the group, in order, picks them."""
        l = leads.c  # noqa: E741
        group = (l.key, l.bucket)
        ranked = (
            select(
                *group,
                value.label("value"),
                func.row_number().over(partition_by=group, order_by=value).label("n"),
                func.count().over(partition_by=group).label("size"),
            )
            .where(value.is_not(None))
            .subquery()
        )
        r = ranked.c
        picks = [
            func.max(case((r.n == func.max(1, (p * r.size + 99) // 100), r.value))).label(name)
            for p, name in wanted
        ]
        return select(r.key, r.bucket, *picks).group_by(r.key, r.bucket).subquery()

    @translated("late_contacts")
    def late_contacts(
        self,
        start: datetime,
        end: datetime,
        *,
        day: timedelta,
        reps: Collection[str | None] | None = None,
        sources: Collection[str | None] | None = None,
        automations: Collection[str | None] | None = None,
    ) -> builtins.list[LateContact]:
        q = check_lead_query(
            start, end, day=day, reps=reps, sources=sources, automations=automations
        )
        a, k = self._arrivals.c, self._contacts.c
        gap, _ = self._gap()
        query = (
            select(
                func.coalesce(a.owner, k.assigned_to).label("rep"),
                a.source,
                a.arrived_at,
                k.contacted_at,
            )
            .select_from(self._arrivals.join(self._contacts, k.opportunity_id == a.opportunity_id))
            .where(*self._where(q), gap > self._bound(q.day))
        )
        with self._db.read() as connection:
            return [LateContact(*row) for row in connection.execute(query)]

    @translated("lead_summary")
    def lead_summary(
        self,
        start: datetime,
        end: datetime,
        *,
        status: str,
        day: timedelta,
        groupings: Collection[str | None],
        origin: datetime | None = None,
        width: timedelta | None = None,
        reps: Collection[str | None] | None = None,
        sources: Collection[str | None] | None = None,
        automations: Collection[str | None] | None = None,
        late: bool = False,
    ) -> LeadSummary:
        """One statement: the period's range of arrivals, each joined to its first contact
        by the primary key and to its first win by one index probe, as :meth:`lead_sums`
        reads them, one small row per lead the filters take (SQLite: the times as the
        integers it keeps); every grouping summed up from them in one pass
        (:func:`~leadflow.stores.analytics_summary.summary_of`)."""
        wanted, q = check_lead_summary(
            start, end, day=day, status=status, groupings=groupings, origin=origin,
            width=width, reps=reps, sources=sources, automations=automations, late=late,
        )  # fmt: skip
        a, k, s = self._arrivals.c, self._contacts.c, self._changes.c
        won: Any = (
            select(func.min(s.changed_at))
            .where(s.opportunity_id == a.opportunity_id, s.to_status == q.status)
            .correlate(self._arrivals)
            .scalar_subquery()
        )
        # As integer microseconds since the epoch: no datetime made (nor converted to UTC)
        # per value, three a lead (SQLite keeps them so; PostgreSQL works them out).
        times = [self._micros(time) for time in (a.arrived_at, k.contacted_at, won)]
        query = (
            select(times[0], a.source, func.coalesce(a.owner, k.assigned_to), *times[1:])
            .select_from(
                self._arrivals.outerjoin(self._contacts, k.opportunity_id == a.opportunity_id)
            )
            .where(*self._where(q))
        )
        with self._db.read() as connection:
            rows = plain_rows(connection, query)  # integers, strings and NULLs
        return summary_of(rows, q, wanted, late=late, micros=True)

    def _micros(self, time: Any) -> Any:
        """``time`` (a timestamp column or value) as integer microseconds since the epoch:
        exact (``extract`` gives a numeric from PostgreSQL 14 on; a float before it, within
        a microsecond of the value at these magnitudes, which the rounding takes back)."""
        if self._db.dialect != "postgresql":
            return type_coerce(time, BigInteger())
        return cast(func.round(func.extract("epoch", time) * 1_000_000), BigInteger())


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)
