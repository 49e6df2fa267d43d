"""In-memory backends for the storage ports: the reference implementation and the test double.

Each store guards its state with one lock, so every method is atomic and, on error, changes
nothing. Activities are kept as compact immutable tuples (strings shared between rows where
they repeat) with secondary indexes, so the common queries touch only the rows they return;
models are built on the way out, so a caller can never change what is stored.
"""

from __future__ import annotations

import builtins
import copy
import threading
from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from heapq import nlargest, nsmallest
from itertools import compress, repeat, takewhile
from operator import itemgetter, lt, sub
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel

from ...clock import ensure_utc
from ...errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    StaleWriteError,
)
from ...models import (
    ID_RE,
    Activity,
    ActivityMetadata,
    ActivityState,
    ActivityType,
    FollowUpRule,
    Outcome,
)
from ...queries import (
    ActivityFilter,
    ActivitySort,
    ActivityStatistics,
    Page,
    decode_cursor,
    encode_cursor,
)
from ...records import ScheduledAction, ScheduledActionState

__all__ = [
    "InMemoryActivityRepository",
    "InMemoryRuleRepository",
    "InMemoryScheduledActionStore",
]

_Key = tuple[Any, ...]
_MIN = datetime.min.replace(tzinfo=UTC)
_LIST_MAX = 1000
# Above this many rows, an assignee's activities are found by walking a date-ordered index
# (and filtering) rather than by sorting all of the assignee's rows.
_SCAN_LIMIT = 2000
# The interner for user ids (created_by, ...) stops growing here, bounding what it retains.
_USER_INTERN_MAX = 10_000


class _Top:
    """Compares above everything, so ``prefix + (_TOP,)`` sorts after every key that starts
    with ``prefix``: how the ordered indexes say "strictly after this position"."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return other is self

    def __gt__(self, other: object) -> bool:
        return other is not self

    def __ge__(self, other: object) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return 0


_TOP = _Top()


class _SortedKeys:
    """Unique sorted tuples kept in buckets of at most ``2 * load``.

    A single bisect-maintained list would move up to n pointers on every insert; buckets bound
    that to one bucket (what ``sortedcontainers.SortedList`` does, without the dependency).
    Positions (``start``, ``low``, ``high``) may be prefixes of keys: ``(due,)`` stands for
    every key that starts with ``due``.
    """

    def __init__(self, load: int = 500) -> None:
        self._load = load
        self._buckets: list[list[_Key]] = []
        self._maxes: list[_Key] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def first(self) -> _Key:
        """The smallest key (IndexError when empty)."""
        return self._buckets[0][0]

    def add(self, key: _Key) -> None:
        buckets, maxes = self._buckets, self._maxes
        if not maxes:
            buckets.append([key])
            maxes.append(key)
            self._len = 1
            return
        i = bisect_left(maxes, key)
        if i == len(maxes):
            i -= 1
            bucket = buckets[i]
            bucket.append(key)
            maxes[i] = key
        else:
            bucket = buckets[i]
            insort(bucket, key)
        self._len += 1
        if len(bucket) > 2 * self._load:
            upper = bucket[self._load :]
            del bucket[self._load :]
            buckets.insert(i + 1, upper)
            maxes[i] = bucket[-1]
            maxes.insert(i + 1, upper[-1])

    def discard(self, key: _Key) -> None:
        buckets, maxes = self._buckets, self._maxes
        i = bisect_left(maxes, key)
        if i == len(maxes):
            return
        bucket = buckets[i]
        j = bisect_left(bucket, key)
        if j == len(bucket) or bucket[j] != key:
            return
        del bucket[j]
        self._len -= 1
        if not bucket:
            del buckets[i]
            del maxes[i]
        elif j == len(bucket):
            maxes[i] = bucket[-1]

    def update(self, keys: Iterable[_Key]) -> None:
        """Add many keys; a large batch rebuilds the buckets in one sort instead of inserting."""
        new = builtins.list(keys)
        if len(new) < 64 or len(new) * 8 < self._len:
            for key in new:
                self.add(key)
            return
        merged = [key for bucket in self._buckets for key in bucket]
        merged.extend(new)
        merged.sort()
        load = self._load
        self._buckets = [merged[i : i + load] for i in range(0, len(merged), load)]
        self._maxes = [bucket[-1] for bucket in self._buckets]
        self._len = len(merged)

    def _locate(self, position: _Key) -> tuple[int, int]:
        """(bucket, offset) of the first key at or after ``position``."""
        i = bisect_left(self._maxes, position)
        if i == len(self._buckets):
            return i, 0
        return i, bisect_left(self._buckets[i], position)

    def between(self, low: _Key | None, high: _Key | None) -> list[_Key]:
        """Keys from position ``low`` up to, not including, position ``high`` (None:
        unbounded), gathered by slicing whole buckets."""
        buckets = self._buckets
        i, j = (0, 0) if low is None else self._locate(low)
        k, m = (len(buckets), 0) if high is None else self._locate(high)
        if (k, m) <= (i, j):
            return []
        if k == i:
            return buckets[i][j:m]
        found = buckets[i][j:]
        for bucket in buckets[i + 1 : k]:
            found.extend(bucket)
        if k < len(buckets):
            found.extend(buckets[k][:m])
        return found

    def ascending(self, start: _Key | None = None, *, exclusive: bool = False) -> Iterator[_Key]:
        """Keys from position ``start`` (all when None) upwards; ``exclusive`` skips the keys
        at ``start`` itself."""
        buckets = self._buckets
        i = j = 0
        if start is not None:
            i, j = self._locate((*start, _TOP) if exclusive else start)
        while i < len(buckets):
            yield from buckets[i][j:]
            i += 1
            j = 0

    def descending(self, start: _Key | None = None, *, exclusive: bool = False) -> Iterator[_Key]:
        """Keys from position ``start`` (all when None) downwards; ``exclusive`` skips the keys
        at ``start`` itself."""
        buckets = self._buckets
        i, j = len(buckets), 0
        if start is not None:
            i, j = self._locate(start if exclusive else (*start, _TOP))
        if i == len(buckets):
            i, j = i - 1, len(buckets[i - 1]) if buckets else 0
        while i >= 0:
            yield from reversed(buckets[i][:j])
            i -= 1
            j = len(buckets[i]) if i >= 0 else 0


_NONE = _SortedKeys()  # stands for an index with nothing in it; never written to


# --------------------------------------------------------------------------- activities


_Stat = tuple[str, str | None, str | None, bool]
_Record = tuple[int | None, str, _Stat, int | None, int | None, int | None]
"""What statistics read of an activity, as plain values (times in microseconds since
0001-01-01, plus one so that every time is truthy): (created, opportunity_id, stat, due if
open, completed if created too, microseconds from creation to completion). ``stat`` is (type,
outcome, assignee, done), one shared tuple per combination. Small, and allocated in creation
order by bulk loads, so a scan over a creation range reads memory in order."""


class _Row(NamedTuple):
    """One stored activity. Fields up to ``version`` mirror :class:`Activity` in order, with
    enums as their string values (what filters and statistics compare and count);
    ``metadata`` holds the metadata other than the automation rule id (None when empty);
    ``record`` is the activity's :data:`_Record`."""

    activity_id: str
    opportunity_id: str
    customer_id: str | None
    activity_type: str
    subject: str
    description: str
    scheduled_date: datetime | None
    due_date: datetime | None
    completed_date: datetime | None
    assigned_to: str | None
    completed_by: str | None
    outcome: str | None
    metadata: dict[str, Any] | None
    created_by: str | None
    updated_by: str | None
    created_at: datetime | None
    updated_at: datetime | None
    version: int
    rule_id: str | None
    record: _Record | None


_ACTIVITY_FIELDS = _Row._fields[: _Row._fields.index("version") + 1]
_ALL_ACTIVITY_FIELDS = frozenset(_ACTIVITY_FIELDS)
_DATE_FIELDS = ("scheduled_date", "due_date", "completed_date", "created_at", "updated_at")
_SCALARS = (str, int, float, bool, type(None))
_MICROSECOND = timedelta(microseconds=1)
_TYPES = {t.value: t for t in ActivityType}
_OUTCOMES: dict[str | None, Outcome | None] = {o.value: o for o in Outcome}
_OUTCOMES[None] = None
_ROW = itemgetter(-1)  # the row at the end of an ordered key
_CREATED_ROW = itemgetter(3)  # keys of the creation index: (has, created, id, row, record)
_CREATED_RECORD = itemgetter(4)
_RECORD = itemgetter(_Row._fields.index("record"))
_R_CREATED, _R_OPPORTUNITY, _R_STAT, _R_DUE, _R_DONE, _R_SPAN = (itemgetter(i) for i in range(6))
_R_OPPORTUNITY_CREATED = itemgetter(1, 0)
_R_OPPORTUNITY_DONE = itemgetter(1, 4)
_new = object.__new__
_set = object.__setattr__


def _meta_model(meta: dict[str, Any] | None, rule_id: str | None) -> ActivityMetadata:
    if meta is None:
        # The common case, built without validation: every value is known to be valid.
        model = _new(ActivityMetadata)
        _set(
            model,
            "__dict__",
            {
                "phone_duration": None,
                "email_opened": None,
                "quote_value": None,
                "automation_rule_id": rule_id,
            },
        )
        _set(model, "__pydantic_fields_set__", set() if rule_id is None else {"automation_rule_id"})
        _set(model, "__pydantic_extra__", {})
        _set(model, "__pydantic_private__", None)
        return model
    data = {k: v if isinstance(v, _SCALARS) else copy.deepcopy(v) for k, v in meta.items()}
    if rule_id is not None:
        data["automation_rule_id"] = rule_id
    return ActivityMetadata.model_validate(data)


def _activity(row: _Row) -> Activity:
    """A fresh model from a stored row (the row's values were validated on the way in)."""
    data: dict[str, Any] = dict(zip(_ACTIVITY_FIELDS, row, strict=False))
    data["activity_type"] = _TYPES[row.activity_type]
    data["outcome"] = _OUTCOMES[row.outcome]
    data["metadata"] = _meta_model(row.metadata, row.rule_id)
    model = _new(Activity)
    _set(model, "__dict__", data)
    _set(model, "__pydantic_fields_set__", set(_ALL_ACTIVITY_FIELDS))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def _sort_key(row: _Row, index: int) -> _Key:
    """Rows missing the value first, then by value, then by id (see :class:`ActivitySort`)."""
    value = row[index]
    return (value is not None, value if value is not None else _MIN, row.activity_id)


def _position(value: datetime | None, activity_id: str) -> _Key:
    return (value is not None, value if value is not None else _MIN, activity_id)


def _check_limit(limit: int, maximum: int | None = None) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInputError(f"must be a positive integer, got {limit!r}", field="limit")
    if maximum is not None and limit > maximum:
        raise InvalidInputError(f"must be at most {maximum}, got {limit}", field="limit")


def _check_id(value: str | None, field: str) -> None:
    if value is not None and (not isinstance(value, str) or not ID_RE.match(value)):
        raise InvalidInputError(f"not a valid id: {value!r}", field=field)


def _matcher(f: ActivityFilter, skip: Collection[str] = ()) -> Callable[[_Row], bool] | None:
    """One predicate for every criterion of ``f`` except those in ``skip`` (already met by the
    index the rows came from): field names, or ``state`` / ``created`` / ``completed``."""
    checks: list[Callable[[_Row], bool]] = []

    def equals(name: str, value: object) -> None:
        if value is not None and name not in skip:
            index = _Row._fields.index(name)
            checks.append(lambda r: r[index] == value)

    equals("opportunity_id", f.opportunity_id)
    equals("customer_id", f.customer_id)
    equals("assigned_to", f.assigned_to)
    equals("rule_id", f.automation_rule_id)
    if f.activity_types is not None:
        types = frozenset(t.value for t in f.activity_types)
        checks.append(lambda r: r.activity_type in types)
    if f.outcomes is not None:
        outcomes = frozenset(o.value for o in f.outcomes)
        checks.append(lambda r: r.outcome in outcomes)
    if "state" in skip:
        pass
    elif f.state is ActivityState.COMPLETED:
        checks.append(lambda r: r.completed_date is not None)
    elif f.state is not None:
        as_of = f.as_of
        assert as_of is not None  # ActivityFilter guarantees it
        overdue = f.state is ActivityState.OVERDUE

        def state(r: _Row) -> bool:
            if r.completed_date is not None:
                return False
            is_overdue = r.due_date is not None and r.due_date < as_of
            return is_overdue is overdue

        checks.append(state)
    for name, low, high in (
        ("created_at", f.created_from, f.created_to),
        ("due_date", f.due_from, f.due_to),
        ("scheduled_date", f.scheduled_from, f.scheduled_to),
        ("completed_date", f.completed_from, f.completed_to),
    ):
        if (low is not None or high is not None) and name.split("_")[0] not in skip:
            checks.append(_in_range(_Row._fields.index(name), low, high))
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda r: all(check(r) for check in checks)


def _in_range(index: int, low: datetime | None, high: datetime | None) -> Callable[[_Row], bool]:
    def check(r: _Row) -> bool:
        value: Any = r[index]
        return (
            value is not None and (low is None or value >= low) and (high is None or value < high)
        )

    return check


class InMemoryActivityRepository:
    """An :class:`~leadflow.stores.ActivityRepository` held in process memory.

    Indexes: ids by opportunity and by customer (a few rows each); ordered keys over creation
    time, for all activities and per assignee and per automation rule (the same key objects),
    over open activities by due date and completed ones by completion date (each key ends with
    the row, so a range of keys is a range of rows); and per opportunity its last activity
    time. ``overdue``, ``upcoming``, ``for_opportunity`` and created-ordered ``list`` pages
    cost about the rows they return, not the store's size.
    """

    # Tuning knobs, class attributes so tests can shrink them to reach every code path.
    _scan_limit = _SCAN_LIMIT
    _bucket_load = 500

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, _Row] = {}
        self._by_opportunity: dict[str, list[str]] = {}
        self._by_customer: dict[str, list[str]] = {}
        self._by_assignee: dict[str, _SortedKeys] = {}  # creation keys, per assignee
        self._by_rule: dict[str, _SortedKeys] = {}  # creation keys, per automation rule
        load = self._bucket_load
        self._created = _SortedKeys(load)  # (has created_at, created_at, id, row)
        self._open_due = _SortedKeys(load)  # (due_date, id, row) of open, dated activities
        self._open_undated = _SortedKeys(load)  # (id, row) of open activities without one
        self._completed = _SortedKeys(load)  # (completed_date, id, row)
        self._last: dict[str, datetime] = {}  # opportunity -> last activity time
        self._by_last = _SortedKeys(load)  # (last activity time, opportunity)
        self._users: dict[str, str] = {}
        self._stats: dict[_Stat, _Stat] = {}

    def __len__(self) -> int:
        return len(self._rows)

    # ------------------------------------------------------------------ writes

    def add(self, activity: Activity) -> Activity:
        _check_model(activity, Activity, "activity")
        with self._lock:
            if activity.activity_id in self._rows:
                raise DuplicateError(f"activity {activity.activity_id!r} already exists")
            row = self._to_row(activity, version=1)
            self._insert(row)
            self._touch_last(row)
        return _activity(row)

    def add_many(self, activities: Iterable[Activity]) -> int:
        """Add many new activities at once (all or none); returns how many.

        For bulk loads: the ordered indexes are rebuilt once instead of per row, and the
        statistics records are laid out in creation order. Raises :class:`DuplicateError` if
        any id exists or repeats.
        """
        with self._lock:
            rows: list[_Row] = []
            seen: set[str] = set()
            strings: dict[str, str] = {}
            for activity in activities:
                _check_model(activity, Activity, "activity")
                activity_id = activity.activity_id
                if activity_id in self._rows or activity_id in seen:
                    raise DuplicateError(f"activity {activity_id!r} already exists")
                seen.add(activity_id)
                rows.append(self._to_row(activity, version=1, strings=strings, derive=False))
            # Records made in creation order lie in memory in that order, which is the
            # order statistics over a creation range read them in.
            rows.sort(key=_created_key)
            rows = [self._derive(row) for row in rows]
            batches: dict[_SortedKeys, list[_Key]] = {}
            for row in rows:
                self._insert(row, ordered=False)
                for index, key in self._placements(row, create=True):
                    batches.setdefault(index, []).append(key)
            for index, keys in batches.items():
                index.update(keys)
            last: list[_Key] = []
            for opportunity_id in {row.opportunity_id for row in rows}:
                old = self._last.get(opportunity_id)
                new = self._compute_last(opportunity_id)
                if new != old:
                    if old is not None:
                        self._by_last.discard((old, opportunity_id))
                    if new is not None:
                        self._last[opportunity_id] = new
                        last.append((new, opportunity_id))
            self._by_last.update(last)
            return len(rows)

    def update(self, activity: Activity) -> Activity:
        _check_model(activity, Activity, "activity")
        with self._lock:
            old = self._rows.get(activity.activity_id)
            if old is None:
                raise NotFoundError(f"no activity {activity.activity_id!r}")
            if old.version != activity.version:
                raise StaleWriteError(
                    f"activity {activity.activity_id!r} is at version {old.version}, "
                    f"not {activity.version}: re-read it and apply the change again"
                )
            row = self._to_row(activity, version=old.version + 1)
            self._remove(old)
            self._insert(row)
            self._refresh_last(old.opportunity_id)
            if row.opportunity_id != old.opportunity_id:
                self._refresh_last(row.opportunity_id)
        return _activity(row)

    def complete(
        self,
        activity_id: str,
        *,
        outcome: Outcome | None,
        completed_by: str | None,
        completed_at: datetime,
        expected_version: int | None = None,
    ) -> Activity:
        completed_at = ensure_utc(completed_at, "completed_at")
        if outcome is not None:
            try:
                outcome = Outcome(outcome)
            except ValueError as exc:
                raise InvalidInputError(f"unknown outcome {outcome!r}", field="outcome") from exc
        _check_id(completed_by, "completed_by")
        with self._lock:
            old = self._rows.get(activity_id)
            if old is None:
                raise NotFoundError(f"no activity {activity_id!r}")
            if old.completed_date is not None:
                raise InvalidStateError(f"activity {activity_id!r} is already completed")
            if expected_version is not None and old.version != expected_version:
                raise StaleWriteError(
                    f"activity {activity_id!r} is at version {old.version}, not {expected_version}"
                )
            user = self._user(completed_by)
            row = self._derive(
                old._replace(
                    completed_date=completed_at,
                    outcome=outcome.value if outcome is not None else None,
                    completed_by=user,
                    updated_at=completed_at,
                    updated_by=user if user is not None else old.updated_by,
                    version=old.version + 1,
                )
            )
            self._remove(old)
            self._insert(row)
            self._refresh_last(row.opportunity_id)
        return _activity(row)

    def delete(self, activity_id: str) -> None:
        with self._lock:
            row = self._rows.get(activity_id)
            if row is None:
                raise NotFoundError(f"no activity {activity_id!r}")
            self._remove(row)
            self._refresh_last(row.opportunity_id)

    def purge_completed(self, before: datetime) -> int:
        before = ensure_utc(before, "before")
        with self._lock:
            doomed = builtins.list(map(_ROW, self._completed.between(None, (before,))))
            for row in doomed:
                self._remove(row)
            for opportunity_id in {row.opportunity_id for row in doomed}:
                self._refresh_last(opportunity_id)
            return len(doomed)

    # ------------------------------------------------------------------ reads

    def get(self, activity_id: str) -> Activity:
        with self._lock:
            row = self._rows.get(activity_id)
        if row is None:
            raise NotFoundError(f"no activity {activity_id!r}")
        return _activity(row)

    def list(
        self,
        filter: ActivityFilter | None = None,
        *,
        sort: ActivitySort | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Activity]:
        _check_limit(limit, _LIST_MAX)
        sort = sort or ActivitySort()
        f = filter or ActivityFilter()
        after = None if cursor is None else _position(*decode_cursor(cursor, sort))
        with self._lock:
            rows = self._page(f, sort, after, limit + 1)
        items = [_activity(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(sort, getattr(last, sort.field), last.activity_id)
        return Page[Activity](items=items, next_cursor=next_cursor)

    def for_opportunity(self, opportunity_id: str) -> builtins.list[Activity]:
        with self._lock:
            rows = [self._rows[i] for i in self._by_opportunity.get(opportunity_id, ())]
        rows.sort(key=_created_key)
        return [_activity(row) for row in rows]

    def for_customer(self, customer_id: str) -> builtins.list[Activity]:
        with self._lock:
            rows = [self._rows[i] for i in self._by_customer.get(customer_id, ())]
        rows.sort(key=_created_key)
        return [_activity(row) for row in rows]

    def pending(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        as_of = ensure_utc(as_of, "as_of")
        _check_limit(limit)

        def wanted(r: _Row) -> bool:
            return (
                r.completed_date is None
                and (r.due_date is None or r.due_date >= as_of)
                and (r.scheduled_date is None or r.scheduled_date <= as_of)
                and (assigned_to is None or r.assigned_to == assigned_to)
            )

        with self._lock:
            mine = self._by_assignee.get(assigned_to, _NONE) if assigned_to is not None else None
            if mine is not None and len(mine) <= self._scan_limit:
                rows = [r for r in map(_CREATED_ROW, mine.between(None, None)) if wanted(r)]
                rows = nsmallest(limit, rows, key=_pending_key)
            else:
                rows = []
                keys = _chain(self._open_due.ascending((as_of,)), self._open_undated.ascending())
                for row in map(_ROW, keys):
                    if wanted(row):
                        rows.append(row)
                        if len(rows) == limit:
                            break
        return [_activity(row) for row in rows]

    def overdue(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        as_of = ensure_utc(as_of, "as_of")
        _check_limit(limit)
        with self._lock:
            mine = self._by_assignee.get(assigned_to, _NONE) if assigned_to is not None else None
            if mine is not None and len(mine) <= self._scan_limit:
                rows = [
                    r
                    for r in map(_CREATED_ROW, mine.between(None, None))
                    if r.completed_date is None and r.due_date is not None and r.due_date < as_of
                ]
                rows = nsmallest(limit, rows, key=_due_key)
            else:
                rows = []
                for due_date, _, row in self._open_due.ascending():
                    if due_date >= as_of:
                        break
                    if assigned_to is None or row.assigned_to == assigned_to:
                        rows.append(row)
                        if len(rows) == limit:
                            break
        return [_activity(row) for row in rows]

    def upcoming(
        self, as_of: datetime, within: timedelta, *, limit: int = 1000
    ) -> builtins.list[Activity]:
        as_of = ensure_utc(as_of, "as_of")
        _check_limit(limit)
        end = as_of + within
        with self._lock:
            rows = []
            for due_date, _, row in self._open_due.ascending((as_of,)):
                if due_date >= end:
                    break
                rows.append(row)
                if len(rows) == limit:
                    break
        return [_activity(row) for row in rows]

    def timeline(self, opportunity_id: str) -> builtins.list[Activity]:
        with self._lock:
            rows = [self._rows[i] for i in self._by_opportunity.get(opportunity_id, ())]
        rows.sort(key=_timeline_key)
        return [_activity(row) for row in rows]

    def statistics(self, filter: ActivityFilter | None, *, as_of: datetime) -> ActivityStatistics:
        as_of = ensure_utc(as_of, "as_of")
        with self._lock:
            records, created_order = self._select_records(filter or ActivityFilter())
        return _statistics(records, as_of, created_order=created_order)

    def last_activity_times(
        self, opportunity_ids: Sequence[str] | None = None
    ) -> dict[str, datetime]:
        with self._lock:
            if opportunity_ids is None:
                return dict(self._last)
            return {o: self._last[o] for o in opportunity_ids if o in self._last}

    def stale_opportunities(self, since: datetime, *, limit: int = 1000) -> builtins.list[str]:
        since = ensure_utc(since, "since")
        _check_limit(limit)
        found: list[str] = []
        with self._lock:
            for last, opportunity_id in self._by_last.ascending():
                if last >= since or len(found) == limit:
                    break
                found.append(opportunity_id)
        return found

    # ------------------------------------------------------------------ internals

    def _to_row(
        self,
        activity: Activity,
        *,
        version: int,
        strings: dict[str, str] | None = None,
        derive: bool = True,
    ) -> _Row:
        """Check what a caller could have broken after validation and build the row.

        Strings that repeat across rows (ids of opportunities, customers, users, rules) are
        replaced by the copy already stored, and equal datetimes within the row share one
        object: at a million rows these copies are most of the memory.
        """
        dates: dict[datetime, datetime] = {}
        shared: dict[str, datetime | None] = {}
        for name in _DATE_FIELDS:
            value = getattr(activity, name)
            if value is not None:
                value = ensure_utc(value, name)
                value = dates.setdefault(value, value)
            shared[name] = value
        meta = activity.metadata
        rule_id = meta.automation_rule_id
        rest = meta.model_dump(exclude_none=True, exclude={"automation_rule_id"})
        opportunity_id = activity.opportunity_id
        ids = self._by_opportunity.get(opportunity_id)
        if ids:
            opportunity_id = self._rows[ids[0]].opportunity_id
        customer_id = activity.customer_id
        if customer_id is not None and (ids := self._by_customer.get(customer_id)):
            customer_id = self._rows[ids[0]].customer_id
        assigned_to = activity.assigned_to
        if assigned_to is not None and (keys := self._by_assignee.get(assigned_to)):
            assigned_to = keys.first()[3].assigned_to
        if rule_id is not None and (keys := self._by_rule.get(rule_id)):
            rule_id = keys.first()[3].rule_id
        if strings is not None:  # a bulk load: share strings within the batch too
            opportunity_id = strings.setdefault(opportunity_id, opportunity_id)
            if customer_id is not None:
                customer_id = strings.setdefault(customer_id, customer_id)
            if assigned_to is not None:
                assigned_to = strings.setdefault(assigned_to, assigned_to)
            if rule_id is not None:
                rule_id = strings.setdefault(rule_id, rule_id)
        outcome = activity.outcome
        row = _Row(
            activity_id=activity.activity_id,
            opportunity_id=opportunity_id,
            customer_id=customer_id,
            activity_type=activity.activity_type.value,
            subject=activity.subject,
            description=activity.description,
            scheduled_date=shared["scheduled_date"],
            due_date=shared["due_date"],
            completed_date=shared["completed_date"],
            assigned_to=assigned_to,
            completed_by=self._user(activity.completed_by),
            outcome=outcome.value if outcome is not None else None,
            metadata=copy.deepcopy(rest) if rest else None,
            created_by=self._user(activity.created_by),
            updated_by=self._user(activity.updated_by),
            created_at=shared["created_at"],
            updated_at=shared["updated_at"],
            version=version,
            rule_id=rule_id,
            record=None,
        )
        return self._derive(row) if derive else row

    def _derive(self, row: _Row) -> _Row:
        """``row`` with its :data:`_Record` made afresh."""
        done = row.completed_date is not None
        stat = (row.activity_type, row.outcome, row.assigned_to, done)
        if len(self._stats) < _USER_INTERN_MAX:
            stat = self._stats.setdefault(stat, stat)
        created = _micros(row.created_at)
        finished = _micros(row.completed_date) if created is not None else None
        record = (
            created,
            row.opportunity_id,
            stat,
            None if done else _micros(row.due_date),
            finished,
            finished - created if finished is not None and created is not None else None,
        )
        return row._replace(record=record)

    def _user(self, user: str | None) -> str | None:
        if user is None:
            return None
        known = self._users.get(user)
        if known is not None:
            return known
        if len(self._users) < _USER_INTERN_MAX:
            self._users[user] = user
        return user

    def _placements(
        self, row: _Row, *, create: bool = False
    ) -> builtins.list[tuple[_SortedKeys, _Key]]:
        """The ordered indexes ``row`` belongs in, with its key in each (``create`` makes
        missing per-assignee / per-rule indexes)."""
        activity_id = row.activity_id
        created = (*_position(row.created_at, activity_id), row, row.record)
        places = [(self._created, created)]
        for indexes, value in ((self._by_assignee, row.assigned_to), (self._by_rule, row.rule_id)):
            if value is not None:
                index = indexes.get(value)
                if index is None and create:
                    index = indexes[value] = _SortedKeys(self._bucket_load)
                if index is not None:
                    places.append((index, created))
        if row.completed_date is not None:
            places.append((self._completed, (row.completed_date, activity_id, row)))
        elif row.due_date is not None:
            places.append((self._open_due, (row.due_date, activity_id, row)))
        else:
            places.append((self._open_undated, (activity_id, row)))
        return places

    def _insert(self, row: _Row, *, ordered: bool = True) -> None:
        """Index ``row``; with ``ordered=False`` the caller adds the ordered keys itself."""
        activity_id = row.activity_id
        self._rows[activity_id] = row
        self._by_opportunity.setdefault(row.opportunity_id, []).append(activity_id)
        if row.customer_id is not None:
            self._by_customer.setdefault(row.customer_id, []).append(activity_id)
        if ordered:
            for index, key in self._placements(row, create=True):
                index.add(key)

    def _remove(self, row: _Row) -> None:
        activity_id = row.activity_id
        del self._rows[activity_id]
        _unlist(self._by_opportunity, row.opportunity_id, activity_id)
        if row.customer_id is not None:
            _unlist(self._by_customer, row.customer_id, activity_id)
        for index, key in self._placements(row):
            index.discard(key)
        for indexes, value in ((self._by_assignee, row.assigned_to), (self._by_rule, row.rule_id)):
            if value is not None and not indexes[value]:
                del indexes[value]

    def _compute_last(self, opportunity_id: str) -> datetime | None:
        latest: datetime | None = None
        for activity_id in self._by_opportunity.get(opportunity_id, ()):
            row = self._rows[activity_id]
            for value in (row.created_at, row.completed_date):
                if value is not None and (latest is None or value > latest):
                    latest = value
        return latest

    def _set_last(self, opportunity_id: str, new: datetime | None) -> None:
        old = self._last.get(opportunity_id)
        if new == old:
            return
        if old is not None:
            self._by_last.discard((old, opportunity_id))
            del self._last[opportunity_id]
        if new is not None:
            self._last[opportunity_id] = new
            self._by_last.add((new, opportunity_id))

    def _refresh_last(self, opportunity_id: str) -> None:
        self._set_last(opportunity_id, self._compute_last(opportunity_id))

    def _touch_last(self, row: _Row) -> None:
        """After adding ``row``: the last time can only move forward, so no rescan."""
        latest = self._last.get(row.opportunity_id)
        for value in (row.created_at, row.completed_date):
            if value is not None and (latest is None or value > latest):
                latest = value
        self._set_last(row.opportunity_id, latest)

    def _narrowest(self, f: ActivityFilter) -> tuple[str, builtins.list[str] | _SortedKeys] | None:
        """The smallest index that the filter's id criteria pin, as (criterion, index): a
        list of ids (opportunity, customer) or creation keys (assignee, automation rule)."""
        choices: list[tuple[str, builtins.list[str] | _SortedKeys]] = []
        for name, value, lists in (
            ("opportunity_id", f.opportunity_id, self._by_opportunity),
            ("customer_id", f.customer_id, self._by_customer),
        ):
            if value is not None:
                choices.append((name, lists.get(value, [])))
        for name, value, ordered in (
            ("assigned_to", f.assigned_to, self._by_assignee),
            ("rule_id", f.automation_rule_id, self._by_rule),
        ):
            if value is not None:
                choices.append((name, ordered.get(value, _NONE)))
        return min(choices, key=lambda choice: len(choice[1])) if choices else None

    def _candidates(
        self, f: ActivityFilter
    ) -> tuple[builtins.list[_Row] | None, builtins.list[_Key] | None, set[str], bool]:
        """A superset of the rows matching ``f`` from the best index: (rows, or creation keys
        instead; the criteria they already meet, see :func:`_matcher`; whether they come in
        creation order)."""
        narrow = self._narrowest(f)
        if narrow is not None:
            name, index = narrow
            if isinstance(index, _SortedKeys):
                low, high, ranged = _created_bounds(f)
                return None, index.between(low, high), {name, "created"} if ranged else {name}, True
            return [self._rows[i] for i in index], None, {name}, False
        if f.state is ActivityState.OVERDUE:
            keys = self._open_due.between(None, (f.as_of,))
            return builtins.list(map(_ROW, keys)), None, {"state"}, False
        if f.state is ActivityState.PENDING:
            keys = self._open_due.between((f.as_of,), None)
            keys += self._open_undated.between(None, None)
            return builtins.list(map(_ROW, keys)), None, {"state"}, False
        if f.state is ActivityState.COMPLETED or f.completed_from or f.completed_to:
            start = (f.completed_from,) if f.completed_from is not None else None
            end = (f.completed_to,) if f.completed_to is not None else None
            keys = self._completed.between(start, end)
            return builtins.list(map(_ROW, keys)), None, {"state", "completed"}, False
        low, high, _ = _created_bounds(f)
        return None, self._created.between(low, high), {"created"}, True

    def _select(self, f: ActivityFilter) -> tuple[builtins.list[_Row], bool]:
        """Every row matching ``f``, and whether they come in creation order."""
        rows, keys, skip, created_order = self._candidates(f)
        if rows is None:
            rows = builtins.list(map(_CREATED_ROW, keys or ()))
        match = _matcher(f, skip)
        if match is not None:
            rows = builtins.list(filter(match, rows))
        return rows, created_order

    def _select_records(self, f: ActivityFilter) -> tuple[builtins.list[_Record], bool]:
        """The records of the rows matching ``f``, and whether they come in creation order;
        taken straight from creation keys when their index answers the whole filter."""
        rows, keys, skip, created_order = self._candidates(f)
        match = _matcher(f, skip)
        if keys is not None:
            if match is None:
                return builtins.list(map(_CREATED_RECORD, keys)), True
            rows = builtins.list(map(_CREATED_ROW, keys))
        if match is not None:
            rows = builtins.list(filter(match, rows or ()))
        return builtins.list(map(_RECORD, rows or ())), created_order

    def _page(
        self, f: ActivityFilter, sort: ActivitySort, after: _Key | None, count: int
    ) -> builtins.list[_Row]:
        """Up to ``count`` matching rows following ``after`` in ``sort`` order."""
        index = _Row._fields.index(sort.field)
        walk: _SortedKeys | None = None
        skip: set[str] = set()
        if sort.field == "created_at":
            narrow = self._narrowest(f)
            if narrow is None:
                walk = self._created
            elif isinstance(narrow[1], _SortedKeys):
                walk, skip = narrow[1], {narrow[0]}
            elif len(narrow[1]) > self._scan_limit:
                walk = self._created
        if walk is None:
            rows, _ = self._select(f)
            if after is not None:
                if sort.descending:
                    rows = [r for r in rows if _sort_key(r, index) < after]
                else:
                    rows = [r for r in rows if _sort_key(r, index) > after]
            pick = nlargest if sort.descending else nsmallest
            return pick(count, rows, key=lambda r: _sort_key(r, index))
        match = _matcher(f, skip)
        low = (True, f.created_from) if f.created_from is not None else None
        high = (True, f.created_to) if f.created_to is not None else None
        if sort.descending:
            if after is None or (high is not None and after > high):
                keys = walk.descending(high, exclusive=True)
            else:
                keys = walk.descending(after, exclusive=True)
        elif after is None or (low is not None and after < low):
            keys = walk.ascending(low)
        else:
            keys = walk.ascending(after, exclusive=True)
        found: list[_Row] = []
        for key in keys:
            if sort.descending:
                if low is not None and key < low:
                    break
            elif high is not None and key >= high:
                break
            row = key[3]
            if match is None or match(row):
                found.append(row)
                if len(found) == count:
                    break
        return found


def _statistics(
    records: Sequence[_Record], as_of: datetime, *, created_order: bool
) -> ActivityStatistics:
    """Aggregates over ``records``, mostly in C-level passes (``map``, ``compress``,
    ``Counter``) over plain values: a Python loop per activity would dominate the time.
    Records are immutable, so this runs without the lock. ``created_order`` says the records
    come sorted by creation time (missing first)."""
    total = len(records)
    by_type: Counter[str] = Counter()
    by_outcome: Counter[str] = Counter()
    by_assignee: Counter[str] = Counter()
    done = 0
    for (kind, outcome, assignee, is_done), n in Counter(map(_R_STAT, records)).items():
        by_type[kind] += n
        if outcome is not None:
            by_outcome[outcome] += n
        if assignee is not None:
            by_assignee[assignee] += n
        if is_done:
            done += n
    now = (as_of - _MIN) // _MICROSECOND + 1  # as _micros does
    overdue = sum(map(lt, filter(None, map(_R_DUE, records)), repeat(now)))
    by_state = {
        ActivityState.PENDING.value: total - done - overdue,
        ActivityState.OVERDUE.value: overdue,
        ActivityState.COMPLETED.value: done,
    }
    timed = builtins.list(compress(records, map(_R_DONE, records)))
    mean_complete = None
    if timed:
        mean_complete = timedelta(microseconds=sum(map(_R_SPAN, timed))) / len(timed)
    first_created: dict[str, int] = {}
    if created_order:
        dated = records
        if records and records[0][0] is None:
            dated = builtins.list(compress(records, map(_R_CREATED, records)))
        # In creation order the first value kept per opportunity is its earliest.
        keep = first_created.setdefault
        deque(map(keep, map(_R_OPPORTUNITY, dated), map(_R_CREATED, dated)), 0)
    else:
        for opportunity_id, started in map(_R_OPPORTUNITY_CREATED, records):
            if started is not None:
                seen = first_created.get(opportunity_id)
                if seen is None or started < seen:
                    first_created[opportunity_id] = started
    first_done: dict[str, int] = {}
    earliest = first_done.get
    for opportunity_id, finished in map(_R_OPPORTUNITY_DONE, timed):
        seen = earliest(opportunity_id)
        if seen is None or finished < seen:
            first_done[opportunity_id] = finished
    mean_first = None
    if first_done:
        waited = sum(map(sub, first_done.values(), map(first_created.__getitem__, first_done)))
        mean_first = timedelta(microseconds=waited) / len(first_done)
    return ActivityStatistics(
        as_of=as_of,
        total=total,
        by_type=dict(by_type),
        by_outcome=dict(by_outcome),
        by_state={state: n for state, n in by_state.items() if n},
        by_assignee=dict(by_assignee),
        completion_rate=done / total if total else 0.0,
        mean_time_to_complete=mean_complete,
        mean_time_to_first_completion=mean_first,
    )


def _micros(value: datetime | None) -> int | None:
    """Microseconds since 0001-01-01 plus one (so never 0, which would read as false)."""
    return None if value is None else (value - _MIN) // _MICROSECOND + 1


def _created_bounds(f: ActivityFilter) -> tuple[_Key | None, _Key | None, bool]:
    """Positions in the creation index for the filter's creation range, and whether there is
    a range (a range never matches a missing date)."""
    if f.created_from is None and f.created_to is None:
        return None, None, False
    low = (True,) if f.created_from is None else (True, f.created_from)
    high = None if f.created_to is None else (True, f.created_to)
    return low, high, True


def _chain(first: Iterator[_Key], second: Iterator[_Key]) -> Iterator[_Key]:
    yield from first
    yield from second


def _created_key(row: _Row) -> _Key:
    return _position(row.created_at, row.activity_id)


def _due_key(row: _Row) -> _Key:
    return (row.due_date, row.activity_id)


def _pending_key(row: _Row) -> _Key:
    due = row.due_date
    return (due is None, due if due is not None else _MIN, row.activity_id)


def _timeline_key(row: _Row) -> _Key:
    when: datetime | None
    if row.completed_date is not None:
        when = row.completed_date
    else:
        when = row.scheduled_date or row.due_date or row.created_at
    return _position(when, row.activity_id)


def _unlist(index: dict[str, list[str]], key: str, activity_id: str) -> None:
    ids = index[key]
    ids.remove(activity_id)
    if not ids:
        del index[key]


# --------------------------------------------------------------------------- rules


def _rule_order(rule: FollowUpRule) -> tuple[int, str]:
    return (-rule.priority, rule.rule_id)


class InMemoryRuleRepository:
    """A :class:`~leadflow.stores.RuleRepository` held in process memory (rules are few, so
    each one is kept as a private deep copy)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, FollowUpRule] = {}

    def create(self, rule: FollowUpRule) -> FollowUpRule:
        _check_model(rule, FollowUpRule, "rule")
        with self._lock:
            if rule.rule_id in self._rules:
                raise DuplicateError(f"rule {rule.rule_id!r} already exists")
            stored = rule.model_copy(update={"version": 1}, deep=True)
            self._rules[stored.rule_id] = stored
        return stored.model_copy(deep=True)

    def get(self, rule_id: str) -> FollowUpRule:
        with self._lock:
            stored = self._rules.get(rule_id)
        if stored is None:
            raise NotFoundError(f"no rule {rule_id!r}")
        return stored.model_copy(deep=True)

    def list(self) -> builtins.list[FollowUpRule]:
        with self._lock:
            rules = builtins.list(self._rules.values())
        return [rule.model_copy(deep=True) for rule in sorted(rules, key=_rule_order)]

    def list_active(self) -> builtins.list[FollowUpRule]:
        with self._lock:
            rules = [rule for rule in self._rules.values() if rule.is_active]
        return [rule.model_copy(deep=True) for rule in sorted(rules, key=_rule_order)]

    def update(self, rule: FollowUpRule) -> FollowUpRule:
        _check_model(rule, FollowUpRule, "rule")
        with self._lock:
            old = self._rules.get(rule.rule_id)
            if old is None:
                raise NotFoundError(f"no rule {rule.rule_id!r}")
            if old.version != rule.version:
                raise StaleWriteError(
                    f"rule {rule.rule_id!r} is at version {old.version}, not {rule.version}: "
                    "re-read it and apply the change again"
                )
            stored = rule.model_copy(update={"version": old.version + 1}, deep=True)
            self._rules[stored.rule_id] = stored
        return stored.model_copy(deep=True)

    def delete(self, rule_id: str) -> None:
        with self._lock:
            if self._rules.pop(rule_id, None) is None:
                raise NotFoundError(f"no rule {rule_id!r}")


def _check_model(value: object, cls: type, field: str) -> None:
    if not isinstance(value, cls):
        raise InvalidInputError(
            f"expected a {cls.__name__}, got {type(value).__name__}", field=field
        )


# --------------------------------------------------------------------------- scheduled actions


def _due_position(action: ScheduledAction) -> _Key:
    return (action.due_at, action.action_id)


_ATOMIC = frozenset({str, int, float, bool, type(None), datetime})


def _plain_copy(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists), much cheaper than ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _ATOMIC else _plain_copy(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _ATOMIC else _plain_copy(v) for v in value]
    if kind in _ATOMIC:
        return value
    return copy.deepcopy(value)


_M = TypeVar("_M", bound=BaseModel)
_set_attr = object.__setattr__


_ALL_FIELDS: dict[type[BaseModel], frozenset[str]] = {}


def _clone(model: _M, changes: dict[str, Any], *, internal: bool = False) -> _M:
    """``model.model_copy(update=changes)`` for the flat models here (no private attributes),
    without the generic ``copy.copy`` calls: this runs several times per action on the hot path.

    An ``internal`` clone (kept by the store, never handed out, never assigned to) shares one
    frozen fields-set per class instead of a set of its own: fewer objects for the collector.
    """
    cls = type(model)
    clone = cls.__new__(cls)
    state = model.__dict__.copy()
    state.update(changes)
    _set_attr(clone, "__dict__", state)
    extra = model.__pydantic_extra__
    _set_attr(clone, "__pydantic_extra__", None if extra is None else dict(extra))
    if internal:
        fields = _ALL_FIELDS.get(cls)
        if fields is None:
            fields = _ALL_FIELDS[cls] = frozenset(cls.model_fields)
        _set_attr(clone, "__pydantic_fields_set__", fields)
    else:
        _set_attr(clone, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    _set_attr(clone, "__pydantic_private__", None)
    return clone


def _copy_action(action: ScheduledAction, *, internal: bool = False) -> ScheduledAction:
    """A copy of a scheduled action: the mutable parts (payload, params, extra) are copied, the
    immutable ones (strings, datetimes, the frozen delay) shared."""
    event, planned = action.event, action.action
    return _clone(
        action,
        {
            "event": _clone(event, {"payload": _plain_copy(event.payload)}, internal=internal),
            "action": _clone(planned, {"params": _plain_copy(planned.params)}, internal=internal),
            "extra": _plain_copy(action.extra),
        },
        internal=internal,
    )


class InMemoryScheduledActionStore:
    """A :class:`~leadflow.stores.ScheduledActionStore` held in process memory.

    Pending actions are ordered by due time and claimed ones by lease expiry, so
    :meth:`claim_due` looks only at actions it can take. Stored actions are private deep
    copies that are replaced, never changed in place.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: dict[str, ScheduledAction] = {}
        self._by_key: dict[str, str] = {}
        self._by_opportunity: dict[str, set[str]] = {}
        self._pending = _SortedKeys()  # (due_at, action_id)
        self._leases = _SortedKeys()  # (lease_expires_at, action_id)

    def __len__(self) -> int:
        return len(self._actions)

    def schedule(self, action: ScheduledAction) -> tuple[ScheduledAction, bool]:
        _check_model(action, ScheduledAction, "action")
        with self._lock:
            existing_id = self._by_key.get(action.idempotency_key)
            if existing_id is not None:
                return _copy_action(self._actions[existing_id]), False
            if action.action_id in self._actions:
                raise DuplicateError(
                    f"action {action.action_id!r} already exists with another idempotency key"
                )
            stored = _copy_action(action, internal=True)
            self._by_key[stored.idempotency_key] = stored.action_id
            if stored.opportunity_id is not None:
                self._by_opportunity.setdefault(stored.opportunity_id, set()).add(stored.action_id)
            self._put(stored)
        return _copy_action(stored), True

    def get(self, action_id: str) -> ScheduledAction:
        with self._lock:
            stored = self._actions.get(action_id)
        if stored is None:
            raise NotFoundError(f"no scheduled action {action_id!r}")
        return _copy_action(stored)

    def claim_due(
        self,
        now: datetime,
        *,
        worker: str,
        limit: int = 100,
        lease: timedelta = timedelta(minutes=5),
    ) -> builtins.list[ScheduledAction]:
        now = ensure_utc(now, "now")
        _check_limit(limit)
        if not isinstance(worker, str) or not worker:
            raise InvalidInputError("must be a non-empty string", field="worker")
        if lease <= timedelta():
            raise InvalidInputError("must be positive", field="lease")
        expires = now + lease
        with self._lock:
            expired = [
                self._actions[action_id]
                for _, action_id in takewhile(lambda key: key[0] <= now, self._leases.ascending())
            ]
            candidates: list[ScheduledAction] = []
            for action in expired:
                if action.attempts >= action.max_attempts:
                    self._replace(
                        action,
                        state=ScheduledActionState.PARKED,
                        last_error=(
                            f"lease of {action.lease_owner!r} expired during the last attempt"
                        ),
                        lease_expires_at=None,
                        updated_at=now,
                        finished_at=now,
                    )
                else:
                    candidates.append(action)
            for due_at, action_id in self._pending.ascending():
                if due_at > now or len(candidates) >= len(expired) + limit:
                    break
                candidates.append(self._actions[action_id])
            chosen = nsmallest(limit, candidates, key=_due_position)
            claimed = [
                self._replace(
                    action,
                    state=ScheduledActionState.CLAIMED,
                    lease_owner=worker,
                    lease_expires_at=expires,
                    attempts=action.attempts + 1,
                    updated_at=now,
                )
                for action in chosen
            ]
        return [_copy_action(action) for action in claimed]

    def mark_done(self, action_id: str, *, worker: str, now: datetime) -> ScheduledAction:
        now = ensure_utc(now, "now")
        with self._lock:
            action = self._held(action_id, worker)
            done = self._replace(
                action,
                state=ScheduledActionState.DONE,
                lease_expires_at=None,
                updated_at=now,
                finished_at=now,
            )
        return _copy_action(done)

    def mark_failed(
        self, action_id: str, *, worker: str, now: datetime, error: str, retry_at: datetime
    ) -> ScheduledAction:
        now = ensure_utc(now, "now")
        retry_at = ensure_utc(retry_at, "retry_at")
        with self._lock:
            action = self._held(action_id, worker)
            if action.attempts >= action.max_attempts:
                failed = self._replace(
                    action,
                    state=ScheduledActionState.PARKED,
                    last_error=error,
                    lease_expires_at=None,
                    updated_at=now,
                    finished_at=now,
                )
            else:
                failed = self._replace(
                    action,
                    state=ScheduledActionState.PENDING,
                    last_error=error,
                    due_at=retry_at,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
        return _copy_action(failed)

    def retry(self, action_id: str, *, now: datetime) -> ScheduledAction:
        now = ensure_utc(now, "now")
        with self._lock:
            action = self._actions.get(action_id)
            if action is None:
                raise NotFoundError(f"no scheduled action {action_id!r}")
            if action.state is not ScheduledActionState.PARKED:
                raise InvalidStateError(
                    f"action {action_id!r} is {action.state.value}; only parked ones are retried"
                )
            retried = self._replace(
                action,
                state=ScheduledActionState.PENDING,
                due_at=now,
                attempts=0,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
                finished_at=None,
            )
        return _copy_action(retried)

    def cancel_for_opportunity(self, opportunity_id: str, *, now: datetime) -> int:
        now = ensure_utc(now, "now")
        with self._lock:
            pending = [
                action
                for action in map(
                    self._actions.__getitem__, self._by_opportunity.get(opportunity_id, ())
                )
                if action.state is ScheduledActionState.PENDING
            ]
            for action in pending:
                self._replace(
                    action, state=ScheduledActionState.CANCELLED, updated_at=now, finished_at=now
                )
            return len(pending)

    def list(
        self, state: ScheduledActionState | None = None, *, limit: int = 100
    ) -> builtins.list[ScheduledAction]:
        _check_limit(limit)
        with self._lock:
            if state is ScheduledActionState.PENDING:
                found = [
                    self._actions[key[1]]
                    for key, _ in zip(self._pending.ascending(), range(limit), strict=False)
                ]
            else:
                found = nsmallest(
                    limit,
                    (a for a in self._actions.values() if state is None or a.state is state),
                    key=_due_position,
                )
        return [_copy_action(action) for action in found]

    def _held(self, action_id: str, worker: str) -> ScheduledAction:
        action = self._actions.get(action_id)
        if action is None:
            raise NotFoundError(f"no scheduled action {action_id!r}")
        if action.state is not ScheduledActionState.CLAIMED or action.lease_owner != worker:
            raise ConflictError(
                f"worker {worker!r} does not hold action {action_id!r} "
                f"(state {action.state.value}, lease owner {action.lease_owner!r})"
            )
        return action

    def _replace(self, action: ScheduledAction, **changes: Any) -> ScheduledAction:
        """Store a changed copy of ``action`` and keep the ordered indexes in step."""
        self._drop(action)
        changed = _clone(action, changes, internal=True)
        self._put(changed)
        return changed

    def _put(self, action: ScheduledAction) -> None:
        self._actions[action.action_id] = action
        if action.state is ScheduledActionState.PENDING:
            self._pending.add(_due_position(action))
        elif action.state is ScheduledActionState.CLAIMED:
            self._leases.add((action.lease_expires_at or _MIN, action.action_id))

    def _drop(self, action: ScheduledAction) -> None:
        if action.state is ScheduledActionState.PENDING:
            self._pending.discard(_due_position(action))
        elif action.state is ScheduledActionState.CLAIMED:
            self._leases.discard((action.lease_expires_at or _MIN, action.action_id))
