"""The in-memory :class:`~leadflow.ports.ActivityRepository`: the reference implementation.

Each activity is one :class:`~leadflow.Activity` in a dict by id, stored at its version.
Activities are immutable, so a change stores a new one (``model_copy(update=...)``, validated
like a new one) in place of the old. What may still change under a stored activity is a
document in its extra metadata (a dict the caller may still hold): the store checks and copies
metadata with extra keys on the way in; a write hands back the stored activity when it holds
nothing mutable (else a copy), and every read hands out activities built afresh through
pydantic.

Queries read from plain indexes: the activity ids of each opportunity, customer, assignee and
automation (sets), and ``sortedcontainers.SortedList``s of ``(time, id)`` keys for what is
asked by time: open activities by due date (``_open_due``; undated open ones in
``_open_undated``; overdue-now statistics start there), completed ones by completion date
(retention purges) and opportunities by their last activity time (stale opportunities). A
filter is answered by taking the narrowest candidate set it pins and testing each candidate
(:func:`matches`), then sorting what matched: simple, and fine for the stores
this backend is for (tests, demos, one process); :mod:`leadflow.stores.memory.fast` keeps an
ordered index per query shape for very large stores.

One lock guards everything: each method is atomic and, on error, writes nothing.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from heapq import nlargest, nsmallest
from itertools import chain, islice
from typing import Any

from sortedcontainers import SortedList

from ...clock import ensure_utc
from ...documents import check_document
from ...errors import (
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    OpenActivityExistsError,
    StaleWriteError,
)
from ...models import Activity, ActivityMetadata, ActivityState, Outcome
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
    check_type,
    check_version,
    checked_after,
    id_list,
    is_handed_over,
)
from .activity_stats import matches, statistics_of, when

__all__ = ["InMemoryActivityRepository"]

_LIST_MAX = 1000
_Key = tuple[Any, ...]  # (time, id), or a bound: (time,)


def _own(activity: Activity) -> Activity:
    """``activity`` sharing no dict with anyone: its metadata rebuilt (extra keys copied) when
    it has extra keys; an activity without them holds nothing mutable and is shared as is."""
    if not activity.metadata.model_extra:
        return activity
    metadata = ActivityMetadata.model_validate(activity.metadata.model_dump(exclude_none=True))
    return activity.model_copy(update={"metadata": metadata})


def _fresh(activity: Activity) -> Activity:
    """A new activity equal to the stored ``activity``, built through pydantic as any input
    is: what every read hands out (the caller's object is its own, and a read costs the same
    work whichever activity it returns)."""
    return Activity.model_validate(activity.model_dump())


def _checked(activity: object) -> Activity:
    """An activity from outside, checked: activities are immutable and were validated when
    built; what may have changed since is a document in their extra metadata (a dict the caller
    still holds), so the metadata document is checked again before it is copied (not the one
    of an activity the runtime handed over: it built and checked it)."""
    if not isinstance(activity, Activity):
        raise InvalidInputError(
            f"expected an Activity, got {type(activity).__name__}", field="activity"
        )
    if activity.metadata.model_extra and not is_handed_over(activity):
        check_document(activity.metadata.model_dump(exclude_none=True), "metadata")
    return _own(activity)


def _timeline_key(a: Activity) -> tuple[bool, datetime, str]:
    """Timeline order: the completed date when done, else the scheduled, due or creation date;
    ties by id; an activity with none of these first."""
    moment = a.completed_date or a.scheduled_date or a.due_date or a.created_at
    return (*when(moment), a.activity_id)


def _created_key(a: Activity) -> tuple[bool, datetime, str]:
    return (*when(a.created_at), a.activity_id)


class InMemoryActivityRepository:
    """An :class:`~leadflow.ports.ActivityRepository` held in process memory (see the module
    docstring for what it keeps)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._activities: dict[str, Activity] = {}
        self._open_keys: dict[str, str] = {}  # open key -> the open activity holding it
        self._by_opportunity: dict[str, set[str]] = {}
        self._by_customer: dict[str, set[str]] = {}
        self._by_assignee: dict[str, set[str]] = {}
        self._by_rule: dict[str, set[str]] = {}  # by metadata.automation_rule_id
        self._open_due: SortedList[_Key] = SortedList()
        self._open_undated: SortedList[str] = SortedList()
        self._completed: SortedList[_Key] = SortedList()
        self._last: dict[str, datetime] = {}  # opportunity -> its last activity time
        self._by_last: SortedList[_Key] = SortedList()

    def __len__(self) -> int:
        return len(self._activities)

    # ------------------------------------------------------------------ writes

    def add(self, activity: Activity) -> Activity:
        checked = _checked(activity)
        with self._lock:
            if checked.activity_id in self._activities:
                raise DuplicateError(f"activity {checked.activity_id!r} already exists")
            self._check_open_key(checked.open_key, checked.activity_id)
            if checked.version != 1:
                checked = checked.model_copy(update={"version": 1})
            self._insert(checked)
        return _own(checked)

    def update(self, activity: Activity) -> Activity:
        """See the port. The stored ``open_key`` is kept whatever ``activity`` says; reopening
        an activity (clearing its completed date) whose key another open activity holds now is
        an :class:`OpenActivityExistsError`."""
        checked = _checked(activity)
        with self._lock:
            old = self._get(checked.activity_id)
            if old.version != checked.version:
                raise StaleWriteError(
                    f"activity {checked.activity_id!r} is at version {old.version}, "
                    f"not {checked.version}: re-read it and apply the change again"
                )
            if not old.is_open and checked.is_open:
                self._check_open_key(old.open_key, checked.activity_id)
            new = checked.model_copy(update={"version": old.version + 1, "open_key": old.open_key})
            self._replace(old, new)
        return _own(new)

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
        check_id(completed_by, "completed_by", optional=True)
        if expected_version is not None:
            check_version(expected_version, "expected_version")
        with self._lock:
            old = self._get(activity_id)
            if old.completed_date is not None:
                raise InvalidStateError(f"activity {activity_id!r} is already completed")
            if old.cancelled_at is not None:
                raise InvalidStateError(f"activity {activity_id!r} is cancelled")
            if expected_version is not None and old.version != expected_version:
                raise StaleWriteError(
                    f"activity {activity_id!r} is at version {old.version}, not {expected_version}"
                )
            changes: dict[str, object] = {
                "completed_date": completed_at,
                "updated_at": completed_at,
                "outcome": outcome,
                "completed_by": completed_by,
                "version": old.version + 1,
            }
            if completed_by is not None:
                changes["updated_by"] = completed_by
            new = old.model_copy(update=changes)
            self._replace(old, new)
        return _own(new)

    def delete(self, activity_id: str) -> None:
        with self._lock:
            activity = self._get(activity_id)
            self._remove(activity)
            self._refresh_last(activity.opportunity_id)

    def purge_completed(self, before: datetime) -> int:
        before = ensure_utc(before, "before")
        with self._lock:
            keys = builtins.list(self._completed.irange(None, (before,), inclusive=(True, False)))
            doomed = [self._activities[activity_id] for _, activity_id in keys]
            for activity in doomed:
                self._remove(activity)
            for opportunity_id in {activity.opportunity_id for activity in doomed}:
                self._refresh_last(opportunity_id)
        return len(doomed)

    # ------------------------------------------------------------------ reads

    def get(self, activity_id: str) -> Activity:
        with self._lock:
            return _fresh(self._get(activity_id))

    def list(
        self,
        filter: ActivityFilter | None = None,
        *,
        sort: ActivitySort | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Activity]:
        f = check_type(filter, ActivityFilter, "filter", optional=True) or ActivityFilter()
        order = check_type(sort, ActivitySort, "sort", optional=True) or ActivitySort()
        check_limit(limit, _LIST_MAX)
        field = order.field

        def key(a: Activity) -> tuple[bool, datetime, str]:
            return (*when(getattr(a, field)), a.activity_id)

        after = None
        if cursor is not None:
            value, activity_id = decode_cursor(cursor, order)
            after = (*when(value), activity_id)
        with self._lock:
            found = self._select(f)
        if after is not None:
            if order.descending:
                found = [a for a in found if key(a) < after]
            else:
                found = [a for a in found if key(a) > after]
        pick = nlargest if order.descending else nsmallest
        page = pick(limit + 1, found, key=key)
        next_cursor = None
        if len(page) > limit:
            last = page[limit - 1]
            next_cursor = encode_cursor(order, getattr(last, field), last.activity_id)
        return Page[Activity](items=[_fresh(a) for a in page[:limit]], next_cursor=next_cursor)

    def for_opportunity(
        self, opportunity_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        found = self._scoped(self._by_opportunity, opportunity_id, assigned_to, "opportunity_id")
        return [_fresh(a) for a in sorted(found, key=_created_key)]

    def for_customer(
        self, customer_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        found = self._scoped(self._by_customer, customer_id, assigned_to, "customer_id")
        return [_fresh(a) for a in sorted(found, key=_created_key)]

    def timeline(
        self, opportunity_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        found = self._scoped(self._by_opportunity, opportunity_id, assigned_to, "opportunity_id")
        return [_fresh(a) for a in sorted(found, key=_timeline_key)]

    def pending(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        """See the port: open activities due at or after ``as_of`` (by due date), then the
        undated ones (by id), each only once its scheduled date (if any) has come."""
        as_of = ensure_utc(as_of, "as_of")
        check_limit(limit)
        check_type(assigned_to, str, "assigned_to", optional=True)
        with self._lock:
            dated = (i for _, i in self._open_due.irange((as_of,)))
            found = (self._activities[i] for i in chain(dated, self._open_undated))
            started = (
                a
                for a in found
                if (assigned_to is None or a.assigned_to == assigned_to)
                and (a.scheduled_date is None or a.scheduled_date <= as_of)
            )
            return [_fresh(a) for a in islice(started, limit)]

    def overdue(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        as_of = ensure_utc(as_of, "as_of")
        check_limit(limit)
        check_type(assigned_to, str, "assigned_to", optional=True)
        with self._lock:
            keys = self._open_due.irange(None, (as_of,), inclusive=(True, False))
            found = (self._activities[i] for _, i in keys)
            mine = (a for a in found if assigned_to is None or a.assigned_to == assigned_to)
            return [_fresh(a) for a in islice(mine, limit)]

    def upcoming(
        self, as_of: datetime, within: timedelta, *, limit: int = 1000
    ) -> builtins.list[Activity]:
        as_of = ensure_utc(as_of, "as_of")
        check_type(within, timedelta, "within")
        check_limit(limit)
        try:
            end = as_of + within
        except OverflowError as exc:
            raise InvalidInputError("as_of + within is out of range", field="within") from exc
        with self._lock:
            keys = self._open_due.irange((as_of,), (end,), inclusive=(True, False))
            return [_fresh(self._activities[i]) for _, i in islice(keys, limit)]

    def statistics(self, filter: ActivityFilter | None, *, as_of: datetime) -> ActivityStatistics:
        f = check_type(filter, ActivityFilter, "filter", optional=True) or ActivityFilter()
        as_of = ensure_utc(as_of, "as_of")
        with self._lock:
            found = self._select(f)
        return statistics_of(found, as_of)  # stored activities never change: outside the lock

    def last_activity_times(
        self, opportunity_ids: Sequence[str] | None = None
    ) -> dict[str, datetime]:
        if isinstance(opportunity_ids, str):
            raise InvalidInputError("expected a list of ids, not one id", field="opportunity_ids")
        with self._lock:
            if opportunity_ids is None:
                return dict(self._last)
            wanted = id_list(opportunity_ids, "opportunity_ids")
            return {o: self._last[o] for o in wanted if o in self._last}

    def stale_opportunities(
        self,
        since: datetime,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 1000,
    ) -> builtins.list[tuple[datetime, str]]:
        since = ensure_utc(since, "since")
        after = checked_after(after)
        check_limit(limit)
        with self._lock:
            keys = self._by_last.irange(after, (since,), inclusive=(False, False))
            return builtins.list(islice(keys, limit))

    # ------------------------------------------------------------------ internals

    def _get(self, activity_id: str) -> Activity:
        activity = self._activities.get(an_id(activity_id, "activity_id"))
        if activity is None:
            raise NotFoundError(f"no activity {activity_id!r}")
        return activity

    def _select(self, f: ActivityFilter) -> builtins.list[Activity]:
        """Every activity matching ``f``, tested from the narrowest id set the filter pins."""
        scopes = [
            index.get(owner, set())
            for index, owner in (
                (self._by_opportunity, f.opportunity_id),
                (self._by_customer, f.customer_id),
                (self._by_assignee, f.assigned_to),
                (self._by_rule, f.automation_rule_id),
            )
            if owner is not None
        ]
        if f.state is ActivityState.OVERDUE and f.as_of is not None:
            # The open activities due before as_of (the analytics' overdue now), when fewer.
            due = self._open_due.bisect_left((f.as_of,))
            if not scopes or due < min(len(scope) for scope in scopes):
                overdue = [self._activities[i] for _, i in islice(self._open_due, due)]
                if f == ActivityFilter(state=f.state, as_of=f.as_of):
                    return overdue  # each of them matches: nothing else is asked
                scopes.append({a.activity_id for a in overdue})
        candidates: Iterable[Activity]
        if scopes:
            candidates = (self._activities[i] for i in min(scopes, key=len))
        else:
            candidates = self._activities.values()
        return [a for a in candidates if matches(a, f)]

    def _scoped(
        self, index: dict[str, set[str]], owner_id: str, assigned_to: str | None, field: str
    ) -> builtins.list[Activity]:
        """The activities of one opportunity or customer (only ``assigned_to``'s when given)."""
        check_type(owner_id, str, field)
        check_type(assigned_to, str, "assigned_to", optional=True)
        with self._lock:
            found = (self._activities[i] for i in index.get(owner_id, ()))
            return [a for a in found if assigned_to is None or a.assigned_to == assigned_to]

    def _check_open_key(self, open_key: str | None, activity_id: str) -> None:
        holder = None if open_key is None else self._open_keys.get(open_key)
        if holder is not None and holder != activity_id:
            raise OpenActivityExistsError(
                f"open activity {holder!r} already holds open key {open_key!r}"
            )

    def _sets(self, a: Activity) -> builtins.list[tuple[dict[str, set[str]], str]]:
        """The id sets ``a`` belongs in, with its owner there."""
        sets = [(self._by_opportunity, a.opportunity_id)]
        if a.customer_id is not None:
            sets.append((self._by_customer, a.customer_id))
        if a.assigned_to is not None:
            sets.append((self._by_assignee, a.assigned_to))
        if a.metadata.automation_rule_id is not None:
            sets.append((self._by_rule, a.metadata.automation_rule_id))
        return sets

    def _insert(self, a: Activity) -> None:
        activity_id = a.activity_id
        self._activities[activity_id] = a
        for index, owner in self._sets(a):
            index.setdefault(owner, set()).add(activity_id)
        if a.completed_date is not None:
            self._completed.add((a.completed_date, activity_id))
        elif a.cancelled_at is None:  # open
            if a.due_date is not None:
                self._open_due.add((a.due_date, activity_id))
            else:
                self._open_undated.add(activity_id)
            if a.open_key is not None:
                self._open_keys[a.open_key] = activity_id
        latest = max((t for t in (a.created_at, a.completed_date) if t is not None), default=None)
        old = self._last.get(a.opportunity_id)
        if latest is not None and (old is None or latest > old):  # it can only move forward
            self._set_last(a.opportunity_id, latest)

    def _remove(self, a: Activity) -> None:
        activity_id = a.activity_id
        del self._activities[activity_id]
        for index, owner in self._sets(a):
            index[owner].discard(activity_id)
            if not index[owner]:
                del index[owner]
        if a.completed_date is not None:
            self._completed.remove((a.completed_date, activity_id))
        elif a.cancelled_at is None:
            if a.due_date is not None:
                self._open_due.remove((a.due_date, activity_id))
            else:
                self._open_undated.remove(activity_id)
        if a.open_key is not None and self._open_keys.get(a.open_key) == activity_id:
            del self._open_keys[a.open_key]

    def _replace(self, old: Activity, new: Activity) -> None:
        self._remove(old)
        self._insert(new)
        self._refresh_last(old.opportunity_id)  # the old version's times may have been latest

    def _refresh_last(self, opportunity_id: str) -> None:
        """Recompute the opportunity's last activity time from its own activities."""
        times = [
            moment
            for i in self._by_opportunity.get(opportunity_id, ())
            for moment in (self._activities[i].created_at, self._activities[i].completed_date)
            if moment is not None
        ]
        self._set_last(opportunity_id, max(times, default=None))

    def _set_last(self, opportunity_id: str, new: datetime | None) -> None:
        old = self._last.get(opportunity_id)
        if new == old:
            return
        if old is not None:
            self._by_last.remove((old, opportunity_id))
            del self._last[opportunity_id]
        if new is not None:
            self._last[opportunity_id] = new
            self._by_last.add((new, opportunity_id))
