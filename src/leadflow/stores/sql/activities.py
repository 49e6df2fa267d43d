"""Activities in SQL: :class:`~leadflow.ports.ActivityRepository` on one table.

Each method is one transaction; the writes are single statements where the contract needs an
atomic step (a version-checked ``UPDATE ... RETURNING``, a completion that only lands on an
open activity). "At most one open activity per open key" is a unique partial index on
``open_key WHERE completed_date IS NULL AND cancelled_at IS NULL``: the database itself refuses
the second of two concurrent adds, and completing, cancelling or deleting the holder frees the
key. Open means neither completed nor cancelled: the work lists leave cancelled ones out.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    delete,
    exc,
    func,
    or_,
    select,
    true,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ...clock import ensure_utc
from ...errors import (
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    OpenActivityExistsError,
    StaleWriteError,
)
from ...models import Activity, Outcome
from ...queries import (
    ActivityFilter,
    ActivitySort,
    ActivityStatistics,
    Page,
    decode_cursor,
    encode_cursor,
)
from ..checks import (
    an_id,
    check_id,
    check_limit,
    check_model,
    check_type,
    check_version,
    checked_after,
    id_list,
)
from .activity_sql import (
    UnheldInsert,
    activity_from_row,
    activity_values,
    after_position,
    ascending,
    checked_batch,
    filter_clauses,
    finished,
    first_in_batch,
    later_of,
    statistics,
)
from .database import SqlDatabase
from .direct import DriverStatement, UnnestInsert
from .errors import sql_errors, translated, violated
from .later import Waiting

__all__ = ["SqlActivityRepository"]

_LIST_MAX: Final = 1000
_EARLIEST: Final = datetime.min.replace(tzinfo=UTC)


def _at_first_version(activity: Activity) -> Activity:
    return activity if activity.version == 1 else activity.model_copy(update={"version": 1})


class SqlActivityRepository:
    """:class:`~leadflow.ports.ActivityRepository` on the ``<prefix>activities`` table of
    ``database`` (see :func:`~leadflow.stores.sql.sql_storage`)."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._t = database.tables.activities
        dialect_insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        # Built once, run with parameters: SQLAlchemy caches its compiled form.
        self._add = (
            dialect_insert(self._t).on_conflict_do_nothing().returning(self._t.c.activity_id)
        )
        # The statement every ``handle`` creating an activity runs: through the driver.
        self._add_direct = DriverStatement(database.engine.dialect, self._add)
        # SQLite: the same without RETURNING, the rows it changed counted instead. SQLite runs
        # a RETURNING statement as several writes, so that inside a transaction (a unit of
        # work) it keeps the first version of every page it changes, the table's and its
        # indexes' (14 b-trees), in a statement journal: about 13 of an insert's 45 us of CPU.
        self._add_counted = (
            DriverStatement(
                database.engine.dialect, sqlite.insert(self._t).on_conflict_do_nothing()
            )
            if database.dialect == "sqlite"
            else None
        )
        # A batch's rows on PostgreSQL: one array per column (see .direct.UnnestInsert).
        self._add_rows = (
            UnnestInsert(database.engine.dialect, self._t, ["activity_id"])
            if database.dialect == "postgresql"
            else None
        )
        # SQLite's batch: what is held read first, then one executemany.
        self._add_unheld = (
            None if self._add_rows is not None else UnheldInsert(database.engine.dialect, self._t)
        )
        self._open_key_names = {
            f"{self._t.name}_open_key",  # PostgreSQL names the index
            f"{self._t.name}.open_key",  # SQLite names the column
        }

    # ------------------------------------------------------------------ writes

    def add(self, activity: Activity) -> Activity:
        """See the port. One ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (any unique
        index: the id, or the open key of an open activity); only when it inserts nothing is
        the reason read. A refused add writes nothing and fails no statement, so it leaves a
        unit of work's transaction usable."""
        checked = check_model(activity, Activity, "activity")
        values = activity_values(checked, version=1)
        with sql_errors("activity"):
            held = checked.open_key if not checked.is_open else None
            ahead = checked.open_key is not None
            # The waiting write (the row's parameters encoded) is built only when a deferred
            # unit would keep it: on SQLite never, and the insert below encodes them itself.
            if (
                held is None
                and self._db.defers(ahead=ahead)
                and self._db.defer(self._waiting(values), ahead=ahead)
            ):
                # A deferred unit (handle's, PostgreSQL): answered as stored; the unit's
                # statement checks that it went in, else nothing of the unit is written. An
                # open key, which a held one refuses in the normal course: only ahead.
                return _at_first_version(checked)
            try:
                for _ in range(3):
                    # ``beside``: only the activities' table (an event's actions held on
                    # SQLite wait for its acknowledgement, which marks them done in place).
                    with self._db.write(atomic=held is not None, beside=True) as connection:
                        if held is not None:
                            # A completed activity holds no key but may not take one an open
                            # activity holds; checking first orders this add before any open
                            # one racing with it.
                            self._refuse_if_held(connection, checked.activity_id, held)
                        if self._inserted(connection, values):
                            # What was stored: the validated copy (frozen, the caller's no
                            # longer) at version 1, not validated a third time from its row.
                            return _at_first_version(checked)
                        if self._exists(connection, checked.activity_id):
                            raise DuplicateError(f"activity {checked.activity_id!r} already exists")
                        if checked.open_key is not None and self._held(
                            connection, checked.open_key
                        ):
                            raise OpenActivityExistsError(
                                "another open activity holds the open key of activity "
                                f"{checked.activity_id!r}"
                            )
                    # What refused it was deleted or completed in between: try again.
            except exc.IntegrityError as error:  # a constraint ON CONFLICT does not cover
                raise self._collision(checked.activity_id, error) from error
        raise DuplicateError(f"activity {checked.activity_id!r} kept colliding while added")

    def _inserted(self, connection: Connection, values: Mapping[str, Any]) -> bool:
        """Whether :meth:`add`'s ``INSERT ... ON CONFLICT DO NOTHING`` stored the row (on
        SQLite told by the connection's count of changed rows, without ``RETURNING``)."""
        if self._add_counted is None:
            return bool(self._add_direct.run(connection, values))
        driver: Any = connection.connection.dbapi_connection
        before = driver.total_changes
        self._add_counted.run(connection, values)
        return bool(driver.total_changes != before)

    def _waiting(self, values: Mapping[str, Any]) -> Waiting:
        return Waiting(self._add_direct.sql, self._add_direct.parameters(values), expect=1)

    def add_many(
        self, activities: Sequence[Activity]
    ) -> builtins.list[Activity | DuplicateError | OpenActivityExistsError]:
        """:class:`~leadflow.ports.BatchActivities`: the open activities (and those without
        an open key) in one ``INSERT ... ON CONFLICT DO NOTHING RETURNING activity_id`` of
        ``unnest`` arrays on PostgreSQL (:class:`~.direct.UnnestInsert`), the reasons of those
        it did not insert read in at most two more statements; on SQLite the ids and keys
        already held read first, then one ``executemany``
        (:class:`~.activity_sql.UnheldInsert`); all in one transaction (the unit of work's
        inside one). A completed activity with an open key goes through :meth:`add`."""
        checked = checked_batch(activities)
        out, rows = first_in_batch(checked)
        c = self._t.c
        added: set[str] = set()
        exists: set[str] = set()
        held: set[Any] = set()
        if rows:
            # ``beside``: only the activities' table (a batch's actions held on SQLite wait).
            with sql_errors("activities"), self._db.write(beside=True) as connection:
                if self._add_rows is not None:
                    added = {row[0] for row in self._add_rows.run(connection, rows)}
                else:
                    assert self._add_unheld is not None
                    added, exists, held = self._add_unheld.run(connection, rows)
                sent = [row["activity_id"] for row in rows]
                missing = [activity_id for activity_id in sent if activity_id not in added]
                if missing and self._add_rows is not None:
                    known = select(c.activity_id).where(c.activity_id.in_(missing))
                    exists = set(connection.execute(known).scalars())
                    keys = {row["open_key"] for row in rows if row["activity_id"] in missing}
                    open_ = and_(c.completed_date.is_(None), c.cancelled_at.is_(None))
                    holders = select(c.open_key).where(c.open_key.in_(keys - {None}), open_)
                    held = set(connection.execute(holders).scalars())
        for i, activity in enumerate(checked):
            if out[i] is not None or (activity.open_key is not None and not activity.is_open):
                continue
            if activity.activity_id in added:
                out[i] = _at_first_version(activity)
            elif activity.activity_id in exists:
                out[i] = DuplicateError(f"activity {activity.activity_id!r} already exists")
            elif activity.open_key in held:
                out[i] = OpenActivityExistsError(
                    f"another open activity holds the open key of activity {activity.activity_id!r}"
                )
        # A completed activity with an open key, or one refused by what was deleted or
        # completed in between: one by one.
        return finished(out, checked, self.add)

    def _held(self, connection: Connection, key: str) -> bool:
        c = self._t.c
        held = (
            select(c.activity_id)
            .where(c.open_key == key, c.completed_date.is_(None), c.cancelled_at.is_(None))
            .limit(1)
        )
        return connection.execute(held).first() is not None

    def _refuse_if_held(self, connection: Connection, activity_id: str, key: str) -> None:
        if not self._held(connection, key):
            return
        if self._exists(connection, activity_id):
            raise DuplicateError(f"activity {activity_id!r} already exists")
        raise OpenActivityExistsError(f"another open activity holds the open key {key!r}")

    def _exists(self, connection: Connection, activity_id: str) -> bool:
        c = self._t.c
        return (
            connection.execute(select(c.version).where(c.activity_id == activity_id)).first()
            is not None
        )

    def _collision(self, activity_id: str, error: exc.IntegrityError) -> Exception:
        """The leadflow error for an insert a unique index refused: the id comes first."""
        if violated(error) in self._open_key_names:
            with self._db.read() as connection:
                taken = self._exists(connection, activity_id)
            if not taken:
                return OpenActivityExistsError(
                    f"another open activity holds the open key of activity {activity_id!r}"
                )
        return DuplicateError(f"activity {activity_id!r} already exists")

    @translated("activity")
    def update(self, activity: Activity) -> Activity:
        """See the port. The stored ``open_key`` is kept whatever ``activity`` says; reopening
        an activity (clearing its completed date) whose key another open activity holds now is
        an :class:`OpenActivityExistsError`. One ``UPDATE ... WHERE version = ...``."""
        checked = check_model(activity, Activity, "activity")
        values = activity_values(checked, version=checked.version + 1)
        del values["activity_id"], values["open_key"]
        c = self._t.c
        statement = (
            update(self._t)
            .where(c.activity_id == checked.activity_id, c.version == checked.version)
            .values(values)
            .returning(*self._t.c)
        )
        try:
            with self._db.write(atomic=False) as connection:
                row = connection.execute(statement).mappings().first()
                if row is None:
                    current = self._version_of(connection, checked.activity_id)
                    raise StaleWriteError(
                        f"activity {checked.activity_id!r} is at version {current}, not "
                        f"{checked.version}: re-read it and apply the change again"
                    )
        except exc.IntegrityError as error:
            if violated(error) not in self._open_key_names:
                raise
            raise OpenActivityExistsError(
                f"activity {checked.activity_id!r} cannot be reopened: another open activity "
                "holds its open key"
            ) from error
        return activity_from_row(row)

    def _version_of(self, connection: Connection, activity_id: str) -> int:
        c = self._t.c
        row = connection.execute(select(c.version).where(c.activity_id == activity_id)).first()
        if row is None:
            raise NotFoundError(f"no activity {activity_id!r}")
        return int(row[0])

    @translated("activity_id")
    def complete(
        self,
        activity_id: str,
        *,
        outcome: Outcome | None,
        completed_by: str | None,
        completed_at: datetime,
        expected_version: int | None = None,
    ) -> Activity:
        """See the port: one ``UPDATE ... WHERE completed_date IS NULL`` (and the version when
        given); only when it matches nothing is the reason read."""
        at = ensure_utc(completed_at, "completed_at")
        if outcome is not None:
            try:
                outcome = Outcome(outcome)
            except ValueError as error:
                raise InvalidInputError(f"unknown outcome {outcome!r}", field="outcome") from error
        check_id(completed_by, "completed_by", optional=True)
        if expected_version is not None:
            check_version(expected_version, "expected_version")
        activity_id = an_id(activity_id, "activity_id")
        c = self._t.c
        changes: dict[str, Any] = {
            "completed_date": at,
            "updated_at": at,
            "outcome": None if outcome is None else outcome.value,
            "completed_by": completed_by,
            "version": c.version + 1,
        }
        if completed_by is not None:
            changes["updated_by"] = completed_by
        conditions = [
            c.activity_id == activity_id,
            c.completed_date.is_(None),
            c.cancelled_at.is_(None),
        ]
        if expected_version is not None:
            conditions.append(c.version == expected_version)
        statement = update(self._t).where(*conditions).values(changes).returning(*self._t.c)
        with self._db.write(atomic=False) as connection:
            row = connection.execute(statement).mappings().first()
            if row is None:
                found = connection.execute(
                    select(c.completed_date, c.cancelled_at, c.version).where(
                        c.activity_id == activity_id
                    )
                ).first()
                if found is None:
                    raise NotFoundError(f"no activity {activity_id!r}")
                if found.completed_date is not None:
                    raise InvalidStateError(f"activity {activity_id!r} is already completed")
                if found.cancelled_at is not None:
                    raise InvalidStateError(f"activity {activity_id!r} is cancelled")
                raise StaleWriteError(
                    f"activity {activity_id!r} is at version {found.version}, "
                    f"not {expected_version}"
                )
        return activity_from_row(row)

    @translated("activity_id")
    def delete(self, activity_id: str) -> None:
        activity_id = an_id(activity_id, "activity_id")
        with self._db.write(atomic=False) as connection:
            result = connection.execute(delete(self._t).where(self._t.c.activity_id == activity_id))
        if result.rowcount == 0:
            raise NotFoundError(f"no activity {activity_id!r}")

    @translated("before")
    def purge_completed(self, before: datetime) -> int:
        cutoff = ensure_utc(before, "before")
        with self._db.write(atomic=False) as connection:
            result = connection.execute(delete(self._t).where(self._t.c.completed_date < cutoff))
        return int(result.rowcount)

    # ------------------------------------------------------------------ reads

    def _fetch(self, statement: Select[Any]) -> builtins.list[Activity]:
        with self._db.read() as connection:
            rows = connection.execute(statement).mappings().all()
        return [activity_from_row(row) for row in rows]

    @translated("activity_id")
    def get(self, activity_id: str) -> Activity:
        activity_id = an_id(activity_id, "activity_id")
        found = self._fetch(select(self._t).where(self._t.c.activity_id == activity_id))
        if not found:
            raise NotFoundError(f"no activity {activity_id!r}")
        return found[0]

    @translated("filter")
    def list(
        self,
        filter: ActivityFilter | None = None,
        *,
        sort: ActivitySort | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Activity]:
        """See the port. The dated and the undated rows (no value in the sort field) are read
        by two keyset queries, each in an index's order, so neither engine sorts the table."""
        f = check_type(filter, ActivityFilter, "filter", optional=True) or ActivityFilter()
        order = check_type(sort, ActivitySort, "sort", optional=True) or ActivitySort()
        check_limit(limit, _LIST_MAX)
        value: datetime | None = None
        after: str | None = None
        if cursor is not None:
            value, after = decode_cursor(cursor, order)
        t, column = self._t, self._t.c[order.field]
        clauses = filter_clauses(t, f)
        dated: ColumnElement[bool] = true()
        undated: ColumnElement[bool] = true()
        if after is not None:
            dated, undated = after_position(t, order.field, value, after, order.descending)
        # Both parts order by (field, id), the order of the field's index: on the undated part
        # the field is NULL throughout, but so the planner reads that index, not the primary key.
        if order.descending:
            by_value = [column.desc(), t.c.activity_id.desc()]
        else:
            by_value = [column.asc(), t.c.activity_id.asc()]
        parts = [
            select(t).where(*clauses, column.is_not(None), dated).order_by(*by_value),
            select(t).where(*clauses, column.is_(None), undated).order_by(*by_value),
        ]
        if not order.descending:
            parts.reverse()  # missing values first ascending, last descending
        rows: builtins.list[Any] = []
        with self._db.read() as connection:
            for part in parts:
                wanted = limit + 1 - len(rows)
                if wanted > 0:
                    rows += connection.execute(part.limit(wanted)).mappings().all()
        items = [activity_from_row(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(order, getattr(last, order.field), last.activity_id)
        return Page[Activity](items=items, next_cursor=next_cursor)

    def _scoped(self, column: str, owner: object, assigned_to: object) -> Select[Any]:
        check_id(owner, column)
        check_id(assigned_to, "assigned_to", optional=True)
        t = self._t
        statement = select(t).where(t.c[column] == owner)
        if assigned_to is not None:
            statement = statement.where(t.c.assigned_to == assigned_to)
        dialect = self._db.dialect
        return statement.order_by(ascending(t.c.created_at, dialect), t.c.activity_id)

    @translated("opportunity_id")
    def for_opportunity(
        self, opportunity_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        return self._fetch(self._scoped("opportunity_id", opportunity_id, assigned_to))

    @translated("customer_id")
    def for_customer(
        self, customer_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        return self._fetch(self._scoped("customer_id", customer_id, assigned_to))

    @translated("opportunity_id")
    def timeline(
        self, opportunity_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        """One opportunity's activities (an index range) sorted here by the first date each
        has: they are few, and no index holds that derived key."""

        def key(a: Activity) -> tuple[bool, datetime, str]:
            moment = a.completed_date or a.scheduled_date or a.due_date or a.created_at
            return (moment is not None, moment or _EARLIEST, a.activity_id)

        found = self._fetch(self._scoped("opportunity_id", opportunity_id, assigned_to))
        return sorted(found, key=key)

    def _open(self, assigned_to: object) -> builtins.list[ColumnElement[bool]]:
        check_type(assigned_to, str, "assigned_to", optional=True)
        clauses: builtins.list[ColumnElement[bool]] = [
            self._t.c.completed_date.is_(None),
            self._t.c.cancelled_at.is_(None),
        ]
        if assigned_to is not None:
            clauses.append(self._t.c.assigned_to == assigned_to)
        return clauses

    @translated("as_of")
    def pending(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        """Two queries on the open-activities index: the dated ones due at or after
        ``as_of``, then (if the page is not full) the undated ones by id."""
        as_of = ensure_utc(as_of, "as_of")
        check_limit(limit)
        t = self._t
        started = or_(t.c.scheduled_date.is_(None), t.c.scheduled_date <= as_of)
        base = [*self._open(assigned_to), started]
        dated = (
            select(t).where(*base, t.c.due_date >= as_of).order_by(t.c.due_date, t.c.activity_id)
        )
        undated = select(t).where(*base, t.c.due_date.is_(None)).order_by(t.c.activity_id)
        rows: builtins.list[Any] = []
        with self._db.read() as connection:
            rows += connection.execute(dated.limit(limit)).mappings().all()
            if len(rows) < limit:
                rows += connection.execute(undated.limit(limit - len(rows))).mappings().all()
        return [activity_from_row(row) for row in rows]

    @translated("as_of")
    def overdue(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        as_of = ensure_utc(as_of, "as_of")
        check_limit(limit)
        t = self._t
        statement = (
            select(t)
            .where(*self._open(assigned_to), t.c.due_date < as_of)
            .order_by(t.c.due_date, t.c.activity_id)
            .limit(limit)
        )
        return self._fetch(statement)

    @translated("within")
    def upcoming(
        self, as_of: datetime, within: timedelta, *, limit: int = 1000
    ) -> builtins.list[Activity]:
        start = ensure_utc(as_of, "as_of")
        check_type(within, timedelta, "within")
        check_limit(limit)
        try:
            end = start + within
        except OverflowError as error:
            raise InvalidInputError("as_of + within is out of range", field="within") from error
        t = self._t
        statement = (
            select(t)
            .where(*self._open(None), t.c.due_date >= start, t.c.due_date < end)
            .order_by(t.c.due_date, t.c.activity_id)
            .limit(limit)
        )
        return self._fetch(statement)

    # ------------------------------------------------------------------ aggregates

    @translated("filter")
    def statistics(self, filter: ActivityFilter | None, *, as_of: datetime) -> ActivityStatistics:
        """Computed by the database (``GROUP BY`` counts, summed spans), in one read."""
        f = check_type(filter, ActivityFilter, "filter", optional=True) or ActivityFilter()
        as_of = ensure_utc(as_of, "as_of")
        clauses = filter_clauses(self._t, f)
        with self._db.read() as connection:
            return statistics(connection, self._t, clauses, as_of)

    def _last_times(self) -> Any:
        c = self._t.c
        return select(
            c.opportunity_id,
            func.max(c.created_at).label("created"),
            func.max(c.completed_date).label("completed"),
        ).group_by(c.opportunity_id)

    @translated("opportunity_ids")
    def last_activity_times(
        self, opportunity_ids: Sequence[str] | None = None
    ) -> dict[str, datetime]:
        statement = self._last_times()
        if opportunity_ids is not None:
            if isinstance(opportunity_ids, str) or not isinstance(opportunity_ids, Sequence):
                raise InvalidInputError(
                    "expected a list of ids, not one id", field="opportunity_ids"
                )
            wanted = sorted(id_list(opportunity_ids, "opportunity_ids"))
            if not wanted:
                return {}
            statement = statement.where(self._t.c.opportunity_id.in_(wanted))
        with self._db.read() as connection:
            rows = connection.execute(statement).all()
        found: dict[str, datetime] = {}
        for opportunity_id, created, completed in rows:
            moments = [m for m in (created, completed) if m is not None]
            if moments:
                found[str(opportunity_id)] = max(moments)
        return found

    @translated("since")
    def stale_opportunities(
        self,
        since: datetime,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 1000,
    ) -> builtins.list[tuple[datetime, str]]:
        """One ``GROUP BY`` over the opportunity index (which covers the two dates). Without
        ``after`` it groups every opportunity, as any "last time per opportunity" question does
        without a summary table; with ``after``, only those with an activity created or
        completed from ``after``'s time up to ``since`` (read by the two date indexes): an
        opportunity whose last time lies there has such an activity."""
        since = ensure_utc(since, "since")
        after = checked_after(after)
        check_limit(limit)
        c = self._t.c
        grouped = self._last_times()
        if after is not None:
            start = after[0]
            grouped = grouped.where(
                c.opportunity_id.in_(
                    union(
                        select(c.opportunity_id).where(c.created_at >= start, c.created_at < since),
                        select(c.opportunity_id).where(
                            c.completed_date >= start, c.completed_date < since
                        ),
                    )
                )
            )
        times = grouped.subquery()
        last = later_of(times.c.created, times.c.completed)
        conditions = [last.is_not(None), last < since]
        if after is not None:
            start, opportunity = after
            conditions.append(
                or_(last > start, and_(last == start, times.c.opportunity_id > opportunity))
            )
        statement = (
            select(last, times.c.opportunity_id)
            .where(*conditions)
            .order_by(last, times.c.opportunity_id)
            .limit(limit)
        )
        with self._db.read() as connection:
            return [(row[0], str(row[1])) for row in connection.execute(statement)]
