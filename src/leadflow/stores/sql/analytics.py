"""The analytic facts in SQL: :class:`SqlAnalyticsStore` (revisions 0008 to 0010, 0012, 0014).

Three tables, one per kind of fact, each keyed as the port says (``lead_arrivals`` by
opportunity, ``status_changes`` by event id, ``completions`` by activity id): a write is one
``INSERT ... ON CONFLICT DO NOTHING`` (True when it inserted a row), in the storage's unit of
work when there is one, so an event's facts commit with its actions. Each opportunity's first
contact is kept beside them as completions are recorded (``lead_contacts``, in the same
transaction: :mod:`.analytics_leads`). The completions' sums per rep or automation are
:mod:`.analytics_groups` (revision 0010's indexes; 0014's for the medians per rep and the
distinct opportunities per automation), their counts from the per-day sums the
database keeps as completions are inserted (``completion_days``, revision 0012:
:mod:`.analytics_days`).

Every query is one statement answered from an index: the period queries from the
``arrived_at`` / ``changed_at`` / ``completed_at`` indexes (their cost follows the rows in the
period); :meth:`first_contacts` and :meth:`reached` join the period's arrivals to
``(opportunity_id, activity_type, completed_at)`` / ``(opportunity_id, to_status,
changed_at)`` and aggregate in the database (``row_number()`` / a correlated ``min``): one
index probe per arrival (``tests/test_analytics_explain.py`` checks the plans).
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import (
    Connection,
    RowMapping,
    Table,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from ...activity_models import ActivityType, Outcome
from ...errors import InvalidInputError
from ...facts import (
    CONTACT_TYPES,
    Completion,
    LeadArrival,
    StatusChange,
    rebuilt,
)
from ..analytics_checks import (
    MAX_FACTS,
    check_ids,
    check_period,
    check_values,
)
from ..checks import check_limit, check_model
from .analytics_groups import SqlGroups
from .analytics_leads import SqlLeads
from .database import SqlDatabase
from .direct import DriverStatement, UnnestInsert
from .errors import translated

__all__ = ["SqlAnalyticsStore"]

_CONTACTS = [str(kind) for kind in CONTACT_TYPES]
MAX_FACTS_BATCH: Final = 1000
"""The most facts of one kind :meth:`SqlAnalyticsStore.record_many` takes at once."""
_F = TypeVar("_F", LeadArrival, StatusChange, Completion)
_CHUNK = 900  # ids per IN list: within SQLite's oldest bound-parameter limit (999)


class SqlAnalyticsStore(SqlLeads, SqlGroups):
    """The facts in three tables of ``database``."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        tables = database.tables
        self._arrivals = tables.arrivals
        self._changes = tables.status_changes
        self._completions = tables.completions
        self._contacts = tables.lead_contacts
        self._days = tables.completion_days
        upsert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        self._inserts = {
            table.name: upsert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)
            for table in self._tables()
        }
        # For many rows at once: no RETURNING, so the driver's executemany takes them together.
        self._insert_many = {
            table.name: upsert(table).on_conflict_do_nothing() for table in self._tables()
        }
        # Through the driver (see .direct): compiled once; many rows as unnest arrays on PG.
        dialect = database.engine.dialect
        self._direct = {name: DriverStatement(dialect, s) for name, s in self._inserts.items()}
        self._unnest = {
            t.name: UnnestInsert(dialect, t, []) for t in self._tables() if dialect.name != "sqlite"
        }
        # SQLite: many rows with the driver's ``executemany`` of the one-row statement.
        self._direct_many = {
            name: DriverStatement(dialect, s)
            for name, s in self._insert_many.items()
            if dialect.name == "sqlite"
        }
        if dialect.name == "sqlite":  # the completions' trigger (revision 0012): see _ManyRows
            self._many_rows = _ManyRows(self._completions, dialect)

    def _tables(self) -> tuple[Table, Table, Table]:
        return self._arrivals, self._changes, self._completions

    def _insert(self, table: Table, values: Mapping[str, Any]) -> bool:
        with self._db.write() as connection:
            return bool(self._direct[table.name].run(connection, values))

    # ------------------------------------------------------------------ writes

    @translated("arrival")
    def record_arrival(self, arrival: LeadArrival) -> bool:
        arrival = check_model(arrival, LeadArrival, "arrival")
        return self._insert(self._arrivals, arrival.model_dump())

    @translated("change")
    def record_status_change(self, change: StatusChange) -> bool:
        change = check_model(change, StatusChange, "change")
        return self._insert(self._changes, change.model_dump())

    @translated("completion")
    def record_completion(self, completion: Completion) -> bool:
        completion = check_model(completion, Completion, "completion")
        values = _completion_values(completion)
        with self._db.write() as connection:
            inserted = connection.execute(self._inserts[self._completions.name], values).first()
            if inserted is None:
                return False
            self._keep_contact(connection, completion)
            return True

    @translated("facts")
    def record_many(
        self,
        arrivals: Sequence[LeadArrival],
        changes: Sequence[StatusChange],
        completions: Sequence[Completion],
    ) -> None:
        """See :class:`~leadflow.ports.BatchFacts`: one statement per kind of fact (PostgreSQL:
        ``unnest`` arrays; SQLite: the driver's ``executemany``; the completions as
        :class:`_ManyRows`), in one transaction. In a unit of work on PostgreSQL, one event's
        arrival or status change (``handle``'s) is kept to go with the unit's next statement
        that carries it (:meth:`~.database.SqlDatabase.later`: the acknowledgement, one round
        trip fewer); its failure then fails that statement or the commit, and the unit is
        rolled back."""
        done = _checked(completions, Completion, "completions")
        # A fact's fields are its row (plain values, kept by pydantic in its ``__dict__``):
        # copied in C, not dumped.
        rows = [
            (
                self._arrivals,
                [dict(a.__dict__) for a in _checked(arrivals, LeadArrival, "arrivals")],
            ),
            (self._changes, [dict(c.__dict__) for c in _checked(changes, StatusChange, "changes")]),
            (
                self._completions,
                [_completion_values(c) for c in done],
            ),
        ]
        if not done and all(len(values) <= 1 for _, values in rows):
            # One event's (``handle``'s): the one-row statements; in a unit on PostgreSQL
            # kept for later (every later store call of the unit sees the rows: write and
            # read run what waits first; the statement carrying them does not read them).
            single = [(table, values[0]) for table, values in rows if values]
            if all(self._db.later(self._direct[table.name], row) for table, row in single):
                return
            # SQLite: without RETURNING (nothing reads it here, and with it SQLite keeps the
            # first version of each page the insert changes in a statement journal).
            direct = self._direct_many if self._db.is_sqlite else self._direct
            with self._db.write(beside=True) as connection:  # the facts' tables only
                for table, row in single:
                    direct[table.name].run(connection, row)
            return
        # ``beside``: the facts' tables only (a batch's actions held on SQLite wait).
        with self._db.write(beside=True) as connection:
            for table, values in rows:
                if not values:
                    continue
                if table.name in self._unnest:
                    self._unnest[table.name].run(connection, values)
                elif table is self._completions:  # SQLite
                    self._many_rows.run(connection, values)
                else:  # SQLite
                    self._direct_many[table.name].run_many(connection, values)
            self._keep_contacts(connection, done)

    # ------------------------------------------------------------------ queries

    @translated("arrivals")
    def arrivals(
        self,
        start: datetime,
        end: datetime,
        *,
        sources: Collection[str] | None = None,
        owners: Collection[str] | None = None,
        limit: int = MAX_FACTS,
    ) -> builtins.list[LeadArrival]:
        start, end = check_period(start, end)
        wanted_sources = check_values(sources, "sources")
        wanted_owners = check_values(owners, "owners")
        limit = check_limit(limit, MAX_FACTS)
        c = self._arrivals.c
        query = select(c.event_id, c.opportunity_id, c.arrived_at, c.source, c.owner).where(
            c.arrived_at >= start, c.arrived_at < end
        )
        if wanted_sources is not None:
            query = query.where(c.source.in_(sorted(wanted_sources)))
        if wanted_owners is not None:
            query = query.where(c.owner.in_(sorted(wanted_owners)))
        query = query.order_by(c.arrived_at, c.opportunity_id).limit(limit)
        return [rebuilt(LeadArrival, dict(row)) for row in self._rows(query)]

    @translated("arrivals_of")
    def arrivals_of(self, opportunity_ids: Collection[str]) -> dict[str, LeadArrival]:
        wanted = check_ids(opportunity_ids)
        c = self._arrivals.c
        columns = (c.event_id, c.opportunity_id, c.arrived_at, c.source, c.owner)
        found: dict[str, LeadArrival] = {}
        for first in range(0, len(wanted), _CHUNK):
            query = select(*columns).where(c.opportunity_id.in_(wanted[first : first + _CHUNK]))
            for row in self._rows(query):
                found[row["opportunity_id"]] = rebuilt(LeadArrival, dict(row))
        return found

    @translated("status_changes")
    def status_changes(
        self, start: datetime, end: datetime, *, limit: int = MAX_FACTS
    ) -> builtins.list[StatusChange]:
        start, end = check_period(start, end)
        limit = check_limit(limit, MAX_FACTS)
        c = self._changes.c
        query = (
            select(c.event_id, c.opportunity_id, c.changed_at, c.from_status, c.to_status)
            .where(c.changed_at >= start, c.changed_at < end)
            .order_by(c.changed_at, c.event_id)
            .limit(limit)
        )
        return [rebuilt(StatusChange, dict(row)) for row in self._rows(query)]

    @translated("completions")
    def completions(
        self,
        start: datetime,
        end: datetime,
        *,
        assigned_to: Collection[str] | None = None,
        limit: int = MAX_FACTS,
    ) -> builtins.list[Completion]:
        start, end = check_period(start, end)
        wanted = check_values(assigned_to, "assigned_to")
        limit = check_limit(limit, MAX_FACTS)
        c = self._completions.c
        query = select(*c).where(c.completed_at >= start, c.completed_at < end)
        if wanted is not None:
            query = query.where(c.assigned_to.in_(sorted(wanted)))
        query = query.order_by(c.completed_at, c.activity_id).limit(limit)
        return [_completion(row) for row in self._rows(query)]

    @translated("completions_of")
    def completions_of(
        self, opportunity_ids: Collection[str], start: datetime, end: datetime
    ) -> builtins.list[Completion]:
        wanted = check_ids(opportunity_ids)
        start, end = check_period(start, end)
        c = self._completions.c
        found: list[Completion] = []
        for first in range(0, len(wanted), _CHUNK):
            query = select(*c).where(
                c.opportunity_id.in_(wanted[first : first + _CHUNK]),
                c.completed_at >= start,
                c.completed_at < end,
            )
            found += (_completion(row) for row in self._rows(query))
        found.sort(key=lambda completion: (completion.completed_at, completion.activity_id))
        return found

    @translated("first_contacts")
    def first_contacts(
        self, start: datetime, end: datetime, *, limit: int = MAX_FACTS
    ) -> builtins.list[Completion]:
        start, end = check_period(start, end)
        limit = check_limit(limit, MAX_FACTS)
        a, c = self._arrivals.c, self._completions.c
        rank = (
            func.row_number()
            .over(partition_by=c.opportunity_id, order_by=(c.completed_at, c.activity_id))
            .label("rank")
        )
        ranked = (
            select(*c, rank)
            .join_from(self._arrivals, self._completions, c.opportunity_id == a.opportunity_id)
            .where(a.arrived_at >= start, a.arrived_at < end, c.activity_type.in_(_CONTACTS))
            .subquery()
        )
        r = ranked.c
        query = (
            select(*(r[column.name] for column in c))
            .where(r.rank == 1)
            .order_by(r.opportunity_id)
            .limit(limit)
        )
        return [_completion(row) for row in self._rows(query)]

    @translated("reached")
    def reached(self, start: datetime, end: datetime, status: str) -> dict[str, datetime]:
        start, end = check_period(start, end)
        if not isinstance(status, str):
            raise InvalidInputError(f"expected a status, got {status!r}", field="status")
        a, s = self._arrivals.c, self._changes.c
        # One probe of (opportunity_id, to_status, changed_at) per arrival of the period: a
        # correlated minimum keeps the planner from scanning the whole index of changes.
        first = (
            select(func.min(s.changed_at))
            .where(s.opportunity_id == a.opportunity_id, s.to_status == status)
            .correlate(self._arrivals)
            .scalar_subquery()
            .label("at")
        )
        query = select(a.opportunity_id, first).where(a.arrived_at >= start, a.arrived_at < end)
        return {
            row["opportunity_id"]: row["at"] for row in self._rows(query) if row["at"] is not None
        }

    def __repr__(self) -> str:
        return f"SqlAnalyticsStore({self._db!r})"


class _ManyRows:
    """SQLite: rows of ``table`` as multi-row ``INSERT ... VALUES (...), (...) ON CONFLICT DO
    NOTHING`` statements of at most 999 parameters each. A table with a trigger (the
    completions, revision 0012) makes SQLite keep a statement journal for each statement of a
    transaction, and ``executemany`` runs one statement per row (20,000 completions: about
    2.5 s where they took 0.7 s without the trigger); a statement per hundred-odd rows costs
    about what the rows cost without it. A key seen earlier in the statement is left alone, as
    a stored one is."""

    def __init__(self, table: Table, dialect: Any) -> None:
        quote = dialect.identifier_preparer.quote
        self._names = [column.name for column in table.c]
        self._processors = [column.type.bind_processor(dialect) for column in table.c]
        self._head = (
            f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, self._names))}) VALUES "
        )
        self._row = f"({', '.join(['?'] * len(self._names))})"
        self._per = 999 // len(self._names)
        self._full = self._statement(self._per)

    def _statement(self, rows: int) -> str:
        return f"{self._head}{', '.join([self._row] * rows)} ON CONFLICT DO NOTHING"

    def run(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        columns = list(zip(self._names, self._processors, strict=True))
        for first in range(0, len(rows), self._per):
            part = rows[first : first + self._per]
            values = tuple(
                value if process is None else process(value)
                for row in part
                for name, process in columns
                for value in (row[name],)
            )
            statement = self._full if len(part) == self._per else self._statement(len(part))
            connection.exec_driver_sql(statement, values)


def _completion(row: RowMapping) -> Completion:
    values = dict(row)
    values["activity_type"] = ActivityType(values["activity_type"])
    if values["outcome"] is not None:
        values["outcome"] = Outcome(values["outcome"])
    return rebuilt(Completion, values)


def _completion_values(completion: Completion) -> dict[str, Any]:
    values = completion.model_dump()
    for name in ("activity_type", "outcome"):
        values[name] = None if values[name] is None else str(values[name])
    return values


def _checked(facts: object, cls: type[_F], field: str) -> list[_F]:
    """``facts`` (a list or tuple of at most :data:`MAX_FACTS_BATCH` ``cls``), each checked as
    its ``record_*`` method checks it; else :class:`InvalidInputError` naming ``field``."""
    if not isinstance(facts, list | tuple):
        raise InvalidInputError("expected a list of facts", field=field)
    if len(facts) > MAX_FACTS_BATCH:
        raise InvalidInputError(f"at most {MAX_FACTS_BATCH:,} at once", field=field)
    return [check_model(fact, cls, field) for fact in facts]
