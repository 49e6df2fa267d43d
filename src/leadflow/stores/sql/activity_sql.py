"""What the SQL activity repository builds its statements from: an activity's row values and
back, the parts of an ``add_many``, filter criteria as SQL, date orders with missing dates
first, keyset positions, and the statistics as aggregates computed by the database."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Numeric,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    extract,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)

from ...errors import DuplicateError, InvalidInputError, OpenActivityExistsError
from ...models import Activity, ActivityMetadata, ActivityState, ActivityType, Outcome
from ...queries import ActivityFilter, ActivityStatistics
from ..checks import check_model
from .direct import DriverStatement
from .types import UtcDateTime

__all__ = [
    "activity_from_row",
    "activity_values",
    "ascending",
    "checked_batch",
    "descending",
    "filter_clauses",
    "finished",
    "first_in_batch",
    "later_of",
    "statistics",
]

_COLUMNS = (
    "activity_id",
    "opportunity_id",
    "customer_id",
    "activity_type",
    "subject",
    "description",
    "scheduled_date",
    "due_date",
    "completed_date",
    "assigned_to",
    "completed_by",
    "outcome",
    "open_key",
    "created_by",
    "updated_by",
    "created_at",
    "updated_at",
    "version",
    "cancelled_at",
    "cancelled_by",
    "cancel_reason",
)


def activity_values(a: Activity, *, version: int) -> dict[str, Any]:
    """The row of ``a`` (a validated copy the caller no longer holds), at ``version``."""
    # A model keeps its fields in its ``__dict__`` (pydantic): copied whole, in C, but the
    # ``metadata`` (the ``meta`` column); an enum's text read as ``_value_`` (``.value`` is a
    # Python-level property).
    values = dict(a.__dict__)
    metadata = values.pop("metadata")
    values["activity_type"] = a.activity_type._value_
    values["outcome"] = None if a.outcome is None else a.outcome._value_
    values["version"] = version
    values["automation_rule_id"] = metadata.automation_rule_id
    values["meta"] = metadata.to_document()
    return values


def activity_from_row(row: Mapping[Any, Any]) -> Activity:
    """A new, validated :class:`Activity` from a row (its metadata parsed afresh from JSON, so
    nothing is shared with another answer)."""
    data = {name: row[name] for name in _COLUMNS}
    data["metadata"] = ActivityMetadata.model_validate(row["meta"])
    return Activity.model_validate(data)


# --------------------------------------------------------------------------- many at once

_BATCH_MAX: Final = 1000
Refusal = DuplicateError | OpenActivityExistsError


def checked_batch(activities: object) -> list[Activity]:
    """Validated copies of the activities of an ``add_many`` (at most 1,000), or
    :class:`InvalidInputError` naming ``activities``."""
    if isinstance(activities, str | bytes | Mapping) or not isinstance(activities, Sequence):
        raise InvalidInputError("expected a list of activities", field="activities")
    if len(activities) > _BATCH_MAX:
        raise InvalidInputError(f"at most {_BATCH_MAX:,} activities at once", field="activities")
    return [check_model(activity, Activity, "activities") for activity in activities]


def first_in_batch(
    checked: Sequence[Activity],
) -> tuple[list[Activity | Refusal | None], list[dict[str, Any]]]:
    """The slots of an ``add_many``'s answer (an id that came earlier in the batch already
    refused; None: still to decide) and the rows its ``INSERT`` sends: every other activity,
    but a completed one holding an open key, which goes through ``add``."""
    out: list[Activity | Refusal | None] = []
    rows: list[dict[str, Any]] = []
    ids: set[str] = set()
    for activity in checked:
        if activity.activity_id in ids:
            out.append(DuplicateError(f"activity {activity.activity_id!r} already exists"))
            continue
        ids.add(activity.activity_id)
        out.append(None)
        if activity.open_key is None or activity.is_open:
            rows.append(activity_values(activity, version=1))
    return out, rows


class UnheldInsert:
    """SQLite's ``add_many`` rows, inside the write transaction (its lock held, so nothing
    else writes in between): the ids already stored and the open keys open activities hold,
    read in one statement, then the rows neither refuses inserted with one ``executemany``
    of the one-row ``INSERT`` through the driver (no ``ON CONFLICT``: a conflict now would be
    a bug, and fails the transaction). A row whose open key an earlier row of the batch took
    is refused as the key's conflict would refuse it. Cheaper than a multi-row ``VALUES``
    built by SQLAlchemy, whose rows it reads back."""

    __slots__ = ("_insert", "_taken")

    def __init__(self, dialect: Any, table: Table) -> None:
        c = table.c

        def listed(name: str) -> Any:
            return select(literal_column("value")).select_from(
                func.json_each(bindparam(name, type_=String()))
            )

        self._taken = DriverStatement(
            dialect,
            union_all(
                select(c.activity_id, literal_column("NULL")).where(
                    c.activity_id.in_(listed("ids"))
                ),
                select(literal_column("NULL"), c.open_key).where(
                    c.open_key.in_(listed("keys")),
                    c.completed_date.is_(None),
                    c.cancelled_at.is_(None),
                ),
            ),
        )
        self._insert = DriverStatement(dialect, insert(table))

    def run(
        self, connection: Any, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[set[str], set[str], set[str]]:
        """The ids inserted, the ids that were stored, the open keys held (by a stored open
        activity or an earlier row of ``rows``)."""
        keys = sorted({row["open_key"] for row in rows if row["open_key"] is not None})
        ids = [row["activity_id"] for row in rows]
        taken = self._taken.run(connection, {"ids": json.dumps(ids), "keys": json.dumps(keys)})
        exists = {activity_id for activity_id, _ in taken if activity_id is not None}
        held = {key for _, key in taken if key is not None}
        new: list[Mapping[str, Any]] = []
        for row in rows:
            key = row["open_key"]
            if row["activity_id"] in exists or key in held:
                continue
            if key is not None:
                held.add(key)
            new.append(row)
        if new:
            self._insert.run_many(connection, new)
        return {row["activity_id"] for row in new}, exists, held


def finished(
    out: list[Activity | Refusal | None],
    checked: Sequence[Activity],
    add: Callable[[Activity], Activity],
) -> list[Activity | Refusal]:
    """``out`` with each slot still undecided filled by ``add`` (what it stored, or the
    refusal it raised)."""
    done: list[Activity | Refusal] = []
    for slot, activity in zip(out, checked, strict=True):
        if slot is None:
            try:
                slot = add(activity)
            except (DuplicateError, OpenActivityExistsError) as refusal:
                slot = refusal
        done.append(slot)
    return done


# --------------------------------------------------------------------------- orders


def ascending(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """``column`` ascending with NULLs first (SQLite's default; PostgreSQL is told)."""
    return column.asc() if dialect == "sqlite" else column.asc().nulls_first()


def descending(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """``column`` descending with NULLs last (SQLite's default; PostgreSQL is told)."""
    return column.desc() if dialect == "sqlite" else column.desc().nulls_last()


def later_of(first: ColumnElement[Any], second: ColumnElement[Any]) -> ColumnElement[Any]:
    """The later of two optional times (NULL only when both are), typed as a time."""
    expression = case(
        (second.is_(None), first),
        (first.is_(None), second),
        (first >= second, first),
        else_=second,
    )
    return type_coerce(expression, UtcDateTime())


# --------------------------------------------------------------------------- filters


def _enum_values(
    values: Sequence[Any], kind: type[ActivityType | Outcome], field: str
) -> list[str]:
    try:
        return [kind(value).value for value in values]
    except ValueError as error:
        raise InvalidInputError(str(error), field=field) from error


def filter_clauses(t: Table, f: ActivityFilter) -> list[ColumnElement[bool]]:
    """Every criterion of ``f`` as a SQL condition on the activities table ``t``."""
    c = t.c
    clauses: list[ColumnElement[bool]] = []
    for value, column in (
        (f.opportunity_id, c.opportunity_id),
        (f.customer_id, c.customer_id),
        (f.assigned_to, c.assigned_to),
        (f.automation_rule_id, c.automation_rule_id),
    ):
        if value is not None:
            clauses.append(column == value)
    if f.activity_types is not None:
        types = _enum_values(f.activity_types, ActivityType, "activity_types")
        clauses.append(c.activity_type.in_(types))
    if f.outcomes is not None:
        clauses.append(c.outcome.in_(_enum_values(f.outcomes, Outcome, "outcomes")))
    if f.state is ActivityState.COMPLETED:
        clauses.append(c.completed_date.is_not(None))
    elif f.state is ActivityState.CANCELLED:
        clauses.append(c.cancelled_at.is_not(None))
    elif f.state is not None:
        if f.as_of is None:
            raise InvalidInputError("pending and overdue need as_of", field="as_of")
        clauses.append(c.completed_date.is_(None))
        clauses.append(c.cancelled_at.is_(None))
        if f.state is ActivityState.OVERDUE:
            clauses.append(c.due_date < f.as_of)
        else:
            clauses.append(or_(c.due_date.is_(None), c.due_date >= f.as_of))
    for column, low, high in (
        (c.created_at, f.created_from, f.created_to),
        (c.due_date, f.due_from, f.due_to),
        (c.scheduled_date, f.scheduled_from, f.scheduled_to),
        (c.completed_date, f.completed_from, f.completed_to),
    ):
        if low is not None:
            clauses.append(column >= low)
        if high is not None:
            clauses.append(column < high)
    return clauses


def after_position(
    t: Table, field: str, value: datetime | None, activity_id: str, descending_: bool
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """The rows after the keyset position (``value``, ``activity_id``) in ``field`` order, as
    (condition on the dated rows, condition on the undated rows). Undated rows come first
    ascending and last descending; either condition may be always false."""
    column, ident = t.c[field], t.c.activity_id
    nothing = false()
    if not descending_:
        if value is None:
            return true(), ident > activity_id
        later = or_(column > value, and_(column == value, ident > activity_id))
        return and_(column >= value, later), nothing
    if value is None:
        return nothing, ident < activity_id
    earlier = or_(column < value, and_(column == value, ident < activity_id))
    return and_(column <= value, earlier), true()


# --------------------------------------------------------------------------- statistics


def _span(later: ColumnElement[Any], earlier: ColumnElement[Any], dialect: str) -> Any:
    """``later - earlier`` in microseconds (exact: integers on SQLite, numeric on PostgreSQL)."""
    if dialect == "sqlite":  # both are integer microseconds there
        return type_coerce(later, Integer()) - type_coerce(earlier, Integer())
    return cast(extract("epoch", later - earlier) * 1_000_000, Numeric)


def _mean(total: Any, count: Any) -> timedelta | None:
    if not count:
        return None
    micros = int(Decimal(total)) if not isinstance(total, int) else total
    return timedelta(microseconds=micros) / int(count)


def statistics(
    connection: Connection, t: Table, clauses: list[ColumnElement[bool]], as_of: datetime
) -> ActivityStatistics:
    """:class:`ActivityStatistics` of the rows matching ``clauses``: the counts in one
    ``GROUP BY`` over every breakdown at once (type, outcome, assignee, state: a few rows per
    combination), the mean time to complete in one aggregate, and the mean time to first
    completion, when any row is completed, in one more. Cancelled activities are left out:
    they are no work, done or to do."""
    dialect = connection.dialect.name
    c = t.c
    where = and_(true(), *clauses, c.cancelled_at.is_(None))
    state = case(
        (c.completed_date.is_not(None), literal_column("'completed'")),
        (c.due_date < as_of, literal_column("'overdue'")),
        else_=literal_column("'pending'"),
    )
    # A subquery, so that the CASE (and its bound time) is written once for SELECT and GROUP BY.
    rows = (
        select(
            c.activity_type.label("type"),
            c.outcome.label("outcome"),
            c.assigned_to.label("assignee"),
            state.label("state"),
        )
        .where(where)
        .subquery()
    )
    r = rows.c
    breakdowns = (r.type, r.outcome, r.assignee, r.state)
    counts: dict[str, dict[str, int]] = {"type": {}, "outcome": {}, "assignee": {}, "state": {}}
    for *keys, number in connection.execute(
        select(*breakdowns, func.count()).group_by(*breakdowns)
    ):
        for name, key in zip(("type", "outcome", "assignee", "state"), keys, strict=True):
            if key is not None:
                counted = counts[name]
                counted[str(key)] = counted.get(str(key), 0) + int(number)
    done = and_(where, c.completed_date.is_not(None), c.created_at.is_not(None))
    total_complete, n_complete = connection.execute(
        select(func.sum(_span(c.completed_date, c.created_at, dialect)), func.count()).where(done)
    ).one()
    total_first: Any = None
    n_first = 0
    if n_complete:  # an opportunity's first completion needs a completed row with a creation
        dated = and_(where, c.created_at.is_not(None))
        # SQLite would read the whole (opportunity_id, activity_type) index to group in its
        # order rather than the filter's range (an automation's creation dates, the open
        # activities past due); grouping by an expression no index holds makes it take the
        # range and sort.
        opportunity: Any = (
            func.coalesce(c.opportunity_id, "") if dialect == "sqlite" else c.opportunity_id
        )
        firsts = (
            select(
                func.min(c.created_at).label("created"),
                func.min(c.completed_date).label("completed"),
            )
            .where(dated)
            .group_by(opportunity)
            .subquery()
        )
        total_first, n_first = connection.execute(
            select(func.sum(_span(firsts.c.completed, firsts.c.created, dialect)), func.count())
            .select_from(firsts)
            .where(firsts.c.completed.is_not(None))
        ).one()
    total = sum(counts["type"].values())
    completed = counts["state"].get(ActivityState.COMPLETED.value, 0)
    return ActivityStatistics(
        as_of=as_of,
        total=total,
        by_type=counts["type"],
        by_outcome=counts["outcome"],
        by_state=counts["state"],
        by_assignee=counts["assignee"],
        completion_rate=completed / total if total else 0.0,
        mean_time_to_complete=_mean(total_complete, n_complete),
        mean_time_to_first_completion=_mean(total_first, n_first),
    )
