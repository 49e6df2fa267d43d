"""How the in-memory activity repository keeps an activity: a plain tuple of atomic values.

A row holds the fields of :class:`~leadflow.Activity` in :data:`COLUMNS` order, enums as their
string values, the automation rule id in a column of its own and any other metadata pickled
into bytes (None when there is none): a dict in a row would keep the row, and every index key
holding it, tracked by the garbage collector. Why tuples: CPython's garbage collector
stops tracking a tuple that holds only strings, numbers, datetimes and None once a collection
has seen it, so a million stored activities add next to nothing to its full passes (issue 9
measured 1.6 s pauses when every activity was a pydantic model). Rows are replaced, never
changed, so a row read under the lock can be used after it is released.

Ids that repeat across activities (opportunity, customer, users, rule, subject) are interned
with :func:`sys.intern`, so a million rows share one string per distinct id.

This module also holds what the repository computes over rows: the keys of its ordered
indexes, the predicate of a filter and the statistics.
"""

from __future__ import annotations

import pickle
import sys
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter, sub
from typing import Any

from ....documents import copy_document
from ....models import Activity, ActivityMetadata, ActivityState, ActivityType, Outcome
from ....queries import ActivityFilter, ActivityStatistics

__all__ = [
    "COLUMNS",
    "EARLIEST",
    "Row",
    "activity_from_row",
    "activity_from_row_validated",
    "created_key",
    "predicate",
    "row_from_activity",
    "row_from_plain",
    "sort_key",
    "statistics_of",
    "timeline_key",
    "when",
]

Row = tuple[Any, ...]
"""One stored activity, see :data:`COLUMNS`."""

COLUMNS = (
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
    "automation_rule_id",  # metadata.automation_rule_id
    "metadata",  # the other metadata (pickled), or None
)
(
    ID,
    OPPORTUNITY,
    CUSTOMER,
    TYPE,
    SUBJECT,
    DESCRIPTION,
    SCHEDULED,
    DUE,
    COMPLETED,
    ASSIGNED,
    COMPLETED_BY,
    OUTCOME,
    OPEN_KEY,
    CREATED_BY,
    UPDATED_BY,
    CREATED,
    UPDATED,
    VERSION,
    CANCELLED,
    CANCELLED_BY,
    CANCEL_REASON,
    RULE,
    METADATA,
) = range(len(COLUMNS))

EARLIEST = datetime.min.replace(tzinfo=UTC)
"""Stands for a missing date in sort keys (which put missing values first)."""

_OTHER_METADATA = tuple(
    name for name in ActivityMetadata.model_fields if name != "automation_rule_id"
)


def _shared(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)


def row_from_activity(a: Activity, *, version: int, open_key: str | None) -> Row:
    """The row for ``a``, a validated copy the caller no longer holds (see
    :func:`~leadflow.stores.checks.check_model`), stored at ``version``."""
    meta = a.metadata
    rule_id = meta.automation_rule_id
    # The set seed fields, then every extra key (one given as null is data): what
    # ``model_dump()`` gives, read without the serializer.
    other = {k: v for k in _OTHER_METADATA if (v := getattr(meta, k)) is not None}
    if meta.model_extra:
        other.update(copy_document(meta.model_extra))
    return (
        a.activity_id,
        _shared(a.opportunity_id),
        _shared(a.customer_id),
        a.activity_type.value,
        _shared(a.subject),
        a.description,
        a.scheduled_date,
        a.due_date,
        a.completed_date,
        _shared(a.assigned_to),
        _shared(a.completed_by),
        None if a.outcome is None else a.outcome.value,
        open_key,
        _shared(a.created_by),
        _shared(a.updated_by),
        a.created_at,
        a.updated_at,
        version,
        a.cancelled_at,
        _shared(a.cancelled_by),
        a.cancel_reason,
        _shared(rule_id),
        pickle.dumps(other, protocol=pickle.HIGHEST_PROTOCOL) if other else None,
    )


def row_from_plain(fields: dict[str, Any], metadata: dict[str, Any]) -> Row:
    """:func:`row_from_activity` of ``built_activity(fields, metadata)`` at version 1, for
    values ``plain_activity`` passed (see :mod:`leadflow.activity_models`), read from the two
    dicts: no model built to be taken apart. Such metadata has no seed field but the rule id,
    and its extra values are texts or None."""
    other = {key: value for key, value in metadata.items() if key != _RULE_KEY}
    return (
        fields["activity_id"],
        _shared(fields["opportunity_id"]),
        _shared(fields["customer_id"]),
        fields["activity_type"]._value_,
        _shared(fields["subject"]),
        fields["description"],
        fields["scheduled_date"],
        fields["due_date"],
        None,
        _shared(fields["assigned_to"]),
        None,
        None,
        fields["open_key"],
        _shared(fields["created_by"]),
        _shared(fields["updated_by"]),
        fields["created_at"],
        fields["updated_at"],
        1,
        None,
        None,
        None,
        _shared(metadata[_RULE_KEY]),
        pickle.dumps(other, protocol=pickle.HIGHEST_PROTOCOL) if other else None,
    )


_RULE_KEY = "automationRuleId"


def activity_from_row(row: Row) -> Activity:
    """A new :class:`Activity` from a row: what ``Activity.model_validate`` gives for the row's
    fields (the same values, the same fields set), built without validating them again. A row
    is made only from a validated activity (:func:`row_from_activity`) and never changes (a
    tuple of atomic values, its other metadata pickled bytes), so its values are known to pass;
    validating them again cost 10-17 us per activity read, most of a page of ``overdue``.
    The caller gets objects of its own: the metadata's documents are unpickled afresh."""
    outcome = row[OUTCOME]
    values = dict(zip(_FIELDS, row, strict=False))
    values["activity_type"] = _ACTIVITY_TYPES[row[TYPE]]
    values["outcome"] = None if outcome is None else _OUTCOMES[outcome]
    values["metadata"] = _metadata(row)
    state = {name: values[name] for name in _ACTIVITY_ORDER}  # pydantic's order: the fields'
    activity = _new(Activity)
    _set(activity, "__dict__", state)
    _set(activity, "__pydantic_extra__", None)
    _set(activity, "__pydantic_fields_set__", set(_ACTIVITY_SET))
    _set(activity, "__pydantic_private__", None)
    return activity


def activity_from_row_validated(row: Row) -> Activity:
    """:func:`activity_from_row` through pydantic: the statement the trusted reader is held
    to (``tests/test_store_memory.py``)."""
    data: dict[str, Any] = dict(zip(COLUMNS[:RULE], row, strict=False))
    metadata = {} if row[METADATA] is None else pickle.loads(row[METADATA])
    metadata["automation_rule_id"] = row[RULE]
    data["metadata"] = metadata
    return Activity.model_validate(data)


def _metadata(row: Row) -> ActivityMetadata:
    given = {} if row[METADATA] is None else pickle.loads(row[METADATA])
    state = dict(_METADATA_DEFAULTS)  # in the fields' order, as pydantic keeps them
    extra: dict[str, Any] = {}
    for key, value in given.items():
        if key in state:
            state[key] = value  # as stored: the validated field's value (a float, an enum...)
        else:
            extra[key] = value
    state["automation_rule_id"] = row[RULE]
    metadata = _new(ActivityMetadata)
    _set(metadata, "__dict__", state)
    _set(metadata, "__pydantic_extra__", extra)
    _set(metadata, "__pydantic_fields_set__", {*given, "automation_rule_id"})
    _set(metadata, "__pydantic_private__", None)
    return metadata


_set = object.__setattr__
_new = object.__new__
_FIELDS = COLUMNS[:RULE]
_ACTIVITY_ORDER = tuple(Activity.model_fields)
_ACTIVITY_SET = frozenset(_ACTIVITY_ORDER)
_ACTIVITY_TYPES: dict[str, ActivityType] = {t.value: t for t in ActivityType}
_OUTCOMES: dict[str, Outcome] = {o.value: o for o in Outcome}
_METADATA_DEFAULTS = {
    name: field.get_default(call_default_factory=True)
    for name, field in ActivityMetadata.model_fields.items()
}


# --------------------------------------------------------------------------- keys


def when(value: datetime | None) -> tuple[bool, datetime]:
    """A sortable stand-in for an optional date: missing dates first, then by date."""
    return (value is not None, value if value is not None else EARLIEST)


def created_key(row: Row) -> tuple[bool, datetime, str]:
    """Creation order: (has created_at, created_at, activity_id)."""
    return (*when(row[CREATED]), row[ID])


def timeline_key(row: Row) -> tuple[bool, datetime, str]:
    """Timeline order: the completed date when done, else the scheduled, due or creation date;
    ties by id; an activity with none of these first."""
    moment = row[COMPLETED]
    if moment is None:
        moment = row[SCHEDULED] or row[DUE] or row[CREATED]
    return (*when(moment), row[ID])


def sort_key(row: Row, column: int) -> tuple[bool, datetime, str]:
    """List order on one date column: missing values first, then by value, then by id."""
    return (*when(row[column]), row[ID])


# --------------------------------------------------------------------------- filters


def predicate(f: ActivityFilter, answered: Collection[str] = ()) -> Callable[[Row], bool] | None:
    """A test of every criterion of ``f`` except those in ``answered`` (met already by the index
    the rows came from: ``opportunity``, ``customer``, ``assignee``, ``rule``, ``state``,
    ``created``, ``completed``); None when nothing is left to test."""
    checks: list[Callable[[Row], bool]] = []

    def equal(name: str, column: int, value: object) -> None:
        if value is not None and name not in answered:
            checks.append(lambda row: row[column] == value)

    equal("opportunity", OPPORTUNITY, f.opportunity_id)
    equal("customer", CUSTOMER, f.customer_id)
    equal("assignee", ASSIGNED, f.assigned_to)
    equal("rule", RULE, f.automation_rule_id)
    if f.activity_types is not None:
        types = frozenset(t.value for t in f.activity_types)
        checks.append(lambda row: row[TYPE] in types)
    if f.outcomes is not None:
        outcomes = frozenset(o.value for o in f.outcomes)
        checks.append(lambda row: row[OUTCOME] in outcomes)
    if f.state is not None and "state" not in answered:
        as_of = f.as_of or EARLIEST  # ActivityFilter requires as_of for pending / overdue
        wanted = f.state
        checks.append(lambda row: _state(row, as_of) is wanted)
    for name, column, low, high in (
        ("created", CREATED, f.created_from, f.created_to),
        ("due", DUE, f.due_from, f.due_to),
        ("scheduled", SCHEDULED, f.scheduled_from, f.scheduled_to),
        ("completed", COMPLETED, f.completed_from, f.completed_to),
    ):
        if (low is not None or high is not None) and name not in answered:
            checks.append(_in_range(column, low, high))
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda row: all(check(row) for check in checks)


def _state(row: Row, as_of: datetime) -> ActivityState:
    if row[COMPLETED] is not None:
        return ActivityState.COMPLETED
    if row[CANCELLED] is not None:
        return ActivityState.CANCELLED
    if row[DUE] is not None and row[DUE] < as_of:
        return ActivityState.OVERDUE
    return ActivityState.PENDING


def _in_range(column: int, low: datetime | None, high: datetime | None) -> Callable[[Row], bool]:
    """``low <= value < high``; a missing value is never in a range."""

    def check(row: Row) -> bool:
        value = row[column]
        return (
            value is not None and (low is None or value >= low) and (high is None or value < high)
        )

    return check


# --------------------------------------------------------------------------- statistics

_COUNTED = itemgetter(TYPE, OUTCOME, ASSIGNED)
_OPPORTUNITY, _CREATED, _COMPLETED = (
    itemgetter(OPPORTUNITY),
    itemgetter(CREATED),
    itemgetter(COMPLETED),
)


def statistics_of(
    rows: Sequence[Row], as_of: datetime, *, created_order: bool
) -> ActivityStatistics:
    """The aggregates of :class:`ActivityStatistics` over ``rows`` (in creation order when
    ``created_order``, which makes the earliest creation per opportunity its first one).

    Written as whole-list passes (``Counter``, ``map``, comprehensions) rather than one Python
    loop doing everything: at 100,000 rows the per-row interpreter overhead is the cost.
    Cancelled activities are left out: they are no work, done or to do.
    """
    if any(row[CANCELLED] is not None for row in rows):
        rows = [row for row in rows if row[CANCELLED] is None]
    total = len(rows)
    by_type: Counter[str] = Counter()
    by_outcome: Counter[str] = Counter()
    by_assignee: Counter[str] = Counter()
    for (kind, outcome, assignee), n in Counter(map(_COUNTED, rows)).items():
        by_type[kind] += n
        if outcome is not None:
            by_outcome[outcome] += n
        if assignee is not None:
            by_assignee[assignee] += n
    done = [row for row in rows if row[COMPLETED] is not None]
    overdue = sum(
        1 for row in rows if row[COMPLETED] is None and row[DUE] is not None and row[DUE] < as_of
    )
    by_state = {
        ActivityState.PENDING.value: total - len(done) - overdue,
        ActivityState.OVERDUE.value: overdue,
        ActivityState.COMPLETED.value: len(done),
    }
    timed = [row for row in done if row[CREATED] is not None]
    mean_complete = None
    if timed:
        spent = sum(map(sub, map(_COMPLETED, timed), map(_CREATED, timed)), timedelta())
        mean_complete = spent / len(timed)
    # Per opportunity: its earliest creation and its earliest completion (dated rows only;
    # none to walk when nothing is timed, e.g. the open activities of overdue now).
    dated = [row for row in rows if row[CREATED] is not None] if timed else []
    first_created: dict[str, datetime]
    if created_order:  # a dict keeps the last value given per key: feed it backwards
        backwards = dated[::-1]
        first_created = dict(
            zip(map(_OPPORTUNITY, backwards), map(_CREATED, backwards), strict=True)
        )
    else:
        first_created = {}
        for row in dated:
            seen = first_created.get(row[OPPORTUNITY])
            if seen is None or row[CREATED] < seen:
                first_created[row[OPPORTUNITY]] = row[CREATED]
    first_done: dict[str, datetime] = {}
    for row in timed:
        seen = first_done.get(row[OPPORTUNITY])
        if seen is None or row[COMPLETED] < seen:
            first_done[row[OPPORTUNITY]] = row[COMPLETED]
    mean_first = None
    if first_done:
        waited = sum((t - first_created[o] for o, t in first_done.items()), timedelta())
        mean_first = waited / len(first_done)
    return ActivityStatistics(
        as_of=as_of,
        total=total,
        by_type=dict(by_type),
        by_outcome=dict(by_outcome),
        by_state={state: n for state, n in by_state.items() if n},
        by_assignee=dict(by_assignee),
        completion_rate=len(done) / total if total else 0.0,
        mean_time_to_complete=mean_complete,
        mean_time_to_first_completion=mean_first,
    )
