"""Query planning for the in-memory activity repository: which ordered index answers a filter.

:class:`ActivityQueryPlans` is a mixin of :class:`~.activities.FastActivityRepository`,
which creates and maintains the indexes it declares (see that class for their keys). Its
methods only read them: each picks the narrowest index a filter pins, walks a key range of it
and leaves the rest of the filter to :func:`~.activity_rows.predicate`. They take no lock: the
caller holds the repository's lock for as long as it uses what they return (the walks are
lazy).

Also here: :data:`Key` and :data:`Index`, the key and index types, and
:func:`key_after` / :func:`with_prefix`, the prefix ranges both modules use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from heapq import nlargest, nsmallest
from itertools import chain, islice
from typing import Any, TypeAlias

from ....models import ActivityState
from ....queries import ActivityFilter, ActivitySort
from .activity_rows import COLUMNS, Row, predicate, sort_key
from .chunks import ChunkedIndex

__all__ = ["ActivityQueryPlans", "Index", "Key", "key_after", "with_prefix"]

Key = tuple[Any, ...]
Index: TypeAlias = "ChunkedIndex[Key]"  # keys in order; each ends with an activity id


def key_after(prefix: Key) -> Key:
    """The smallest key after every key that starts with ``prefix`` (whose last item is a
    string): ``s + "\\0"`` is the smallest string greater than ``s`` and every string that
    starts with it."""
    return (*prefix[:-1], prefix[-1] + "\x00")


def with_prefix(index: Index, prefix: Key) -> Iterator[Key]:
    """The keys of ``index`` that start with ``prefix``, in order."""
    return index.irange(prefix, key_after(prefix), inclusive=(True, False))


class ActivityQueryPlans:
    """The query plans of the in-memory activity repository, over the indexes it declares.

    A mixin: the class that inherits it assigns every index below and keeps them up to date;
    the methods here read them and must be called with that class's lock held.
    """

    _created: Index
    _by_assignee: Index
    _by_rule: Index
    _by_opportunity: Index
    _by_customer: Index
    _open_due: Index
    _open_undated: Index
    _completed: Index

    def _created_walk(self, f: ActivityFilter) -> tuple[Index, Key, set[str]]:
        """An index in creation order after a prefix that ``f`` pins, with the criteria the
        prefix answers; the creation range is answered by the walk's bounds."""
        if f.opportunity_id is not None and f.assigned_to is not None:
            prefix: Key = (f.opportunity_id, f.assigned_to)
            return self._by_opportunity, prefix, {"opportunity", "assignee", "created"}
        if f.customer_id is not None and f.assigned_to is not None:
            prefix = (f.customer_id, f.assigned_to)
            return self._by_customer, prefix, {"customer", "assignee", "created"}
        if f.assigned_to is not None:
            return self._by_assignee, (f.assigned_to,), {"assignee", "created"}
        if f.automation_rule_id is not None:
            return self._by_rule, (f.automation_rule_id,), {"rule", "created"}
        return self._created, (), {"created"}

    def _walk(
        self,
        index: Index,
        prefix: Key,
        f: ActivityFilter,
        after: Key | None = None,
        descending: bool = False,
    ) -> Iterator[Key]:
        """Keys ``prefix + (has, created, id)`` in ``f``'s creation range, strictly after the
        position ``after`` (has, created, id) in the walk's direction."""
        low: Key | None = None
        if f.created_from is not None:
            low = (True, f.created_from)
        elif f.created_to is not None:
            low = (True,)  # a range never matches a missing date
        high: Key | None = None if f.created_to is None else (True, f.created_to)
        if descending and after is not None and (high is None or after < high):
            high = after  # the upper bound is exclusive, as "strictly after" needs
        skip = None
        if not descending and after is not None and (low is None or after >= low):
            low, skip = after, after[-1]  # an inclusive lower bound: skip that id's key
        start = prefix + low if low is not None else (prefix or None)
        end = prefix + high if high is not None else (key_after(prefix) if prefix else None)
        keys = index.irange(start, end, inclusive=(True, False), reverse=descending)
        return keys if skip is None else (key for key in keys if key[-2] != skip)

    def _page(
        self, f: ActivityFilter, sort: ActivitySort, after: Key | None, count: int
    ) -> list[Row]:
        """Up to ``count`` matching rows after the position ``after`` in ``sort`` order."""
        pinned_by_opportunity = f.opportunity_id is not None or f.customer_id is not None
        if sort.field == "created_at" and not (pinned_by_opportunity and f.assigned_to is None):
            # Walk an index already in this order, stopping once the page is full.
            index, prefix, answered = self._created_walk(f)
            match = predicate(f, answered)
            keys = self._walk(index, prefix, f, after, sort.descending)
            walked = (key[-1] for key in keys)
            return list(islice(filter(match, walked) if match else walked, count))
        # Otherwise gather the (few) matching rows and sort them.
        column = COLUMNS.index(sort.field)
        rows, _ = self._select(f)
        if after is not None:
            if sort.descending:
                rows = [row for row in rows if sort_key(row, column) < after]
            else:
                rows = [row for row in rows if sort_key(row, column) > after]
        pick = nlargest if sort.descending else nsmallest
        return pick(count, rows, key=lambda row: sort_key(row, column))

    def _select(self, f: ActivityFilter) -> tuple[list[Row], bool]:
        """Every row matching ``f``, taken from the narrowest index the filter pins, and
        whether they come in creation order."""
        answered: set[str]
        keys: Iterable[Key]
        if f.opportunity_id is not None or f.customer_id is not None:
            index = self._by_opportunity if f.opportunity_id is not None else self._by_customer
            owner = f.opportunity_id if f.opportunity_id is not None else f.customer_id
            name = "opportunity" if f.opportunity_id is not None else "customer"
            prefix: Key = (owner,) if f.assigned_to is None else (owner, f.assigned_to)
            keys = with_prefix(index, prefix)
            answered = {name} if f.assigned_to is None else {name, "assignee"}
        elif f.assigned_to is not None or f.automation_rule_id is not None:
            index, prefix, answered = self._created_walk(f)
            keys = self._walk(index, prefix, f)
        elif f.state is ActivityState.OVERDUE:
            keys = self._open_due.irange(None, (f.as_of,), inclusive=(True, False))
            answered = {"state"}
        elif f.state is ActivityState.PENDING:
            keys = chain(self._open_due.irange((f.as_of,)), self._open_undated)
            answered = {"state"}
        elif f.state is ActivityState.COMPLETED or f.completed_from or f.completed_to:
            low = None if f.completed_from is None else (f.completed_from,)
            high = None if f.completed_to is None else (f.completed_to,)
            keys = self._completed.irange(low, high, inclusive=(True, False))
            answered = {"state", "completed"}
        else:
            keys = self._walk(self._created, (), f)
            answered = {"created"}
        rows = [key[-1] for key in keys]
        match = predicate(f, answered)
        created_order = "created" in answered
        return (rows if match is None else list(filter(match, rows))), created_order
