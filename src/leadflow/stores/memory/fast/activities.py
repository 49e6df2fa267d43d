"""The in-memory :class:`~leadflow.ports.ActivityRepository`: the reference implementation.

Activities are kept as rows (plain tuples, see :mod:`.activity_rows`) by id (a
:class:`~.slots.SlotRows`), and every query is answered from an ordered index (a
:class:`~.chunks.ChunkedIndex` of key tuples ending with the activity id) so it costs about the
rows it returns, not the size of the store. This module keeps the indexes; which index answers
a filter (the query plans) is in :mod:`.activity_queries`, a mixin of the repository.
One lock guards everything: each method is atomic and, on error, writes nothing. Models are
validated on the way in (a caller may have changed one since it was built) and built afresh on
the way out, so a caller never shares an object with the store.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from itertools import chain, islice
from typing import Any

from ....clock import ensure_utc
from ....documents import check_document
from ....errors import (
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    OpenActivityExistsError,
    StaleWriteError,
)
from ....models import Activity, Outcome
from ....queries import (
    ActivityFilter,
    ActivitySort,
    ActivityStatistics,
    Page,
    decode_cursor,
    encode_cursor,
)
from ...checks import (
    an_id,
    check_id,
    check_limit,
    check_type,
    check_version,
    checked_after,
    id_list,
    is_handed_over,
)
from .activity_queries import ActivityQueryPlans, Index, Key, key_after, with_prefix
from .activity_rows import (
    ASSIGNED,
    CANCELLED,
    COLUMNS,
    COMPLETED,
    COMPLETED_BY,
    CREATED,
    CUSTOMER,
    DUE,
    ID,
    OPEN_KEY,
    OPPORTUNITY,
    OUTCOME,
    RULE,
    SCHEDULED,
    UPDATED,
    UPDATED_BY,
    VERSION,
    Row,
    activity_from_row,
    created_key,
    row_from_activity,
    row_from_plain,
    statistics_of,
    timeline_key,
    when,
)
from .chunks import ChunkedIndex
from .slots import SlotRows

__all__ = ["FastActivityRepository"]

_LIST_MAX = 1000


def _latest(row: Row) -> datetime | None:
    """The row's latest time: its creation or completion (None: neither)."""
    created: datetime | None = row[CREATED]
    completed: datetime | None = row[COMPLETED]
    if created is None:
        return completed
    return created if completed is None or completed < created else completed


def _checked(activity: object) -> Activity:
    """An activity from outside, checked: activities are immutable and were validated when
    built; what may have changed since is a document in their extra metadata (a dict the caller
    still holds), so the metadata document is checked again. The store keeps a row of its own
    (:func:`~.activity_rows.row_from_activity`), never the caller's object."""
    if not isinstance(activity, Activity):
        raise InvalidInputError(
            f"expected an Activity, got {type(activity).__name__}", field="activity"
        )
    extra = activity.metadata.model_extra
    if extra and not is_handed_over(activity):  # the seed's fields are immutable and checked
        check_document(extra, "metadata")  # (the row copies the extra keys all the same)
    return activity


class FastActivityRepository(ActivityQueryPlans):
    """An :class:`~leadflow.ports.ActivityRepository` held in process memory.

    Ordered indexes: keys are tuples that end with the activity id and then the row itself, so
    a range of keys is a range of rows (ids are unique, so rows are never compared). A missing
    date sorts first (see :func:`~.activity_rows.when`).

    - ``_created``: (created, id), all activities; ``_by_assignee`` and ``_by_rule`` the same
      prefixed by the assignee / automation rule id: pages in creation order, statistics.
    - ``_by_opportunity`` / ``_by_customer``: (opportunity or customer, assignee or "",
      created, id): an opportunity's activities, or one assignee's share of them, without
      touching anyone else's.
    - ``_open_due`` (due, id) and ``_open_undated`` (id,): open activities (neither completed
      nor cancelled); the ``_by_assignee`` variants prefix the assignee: overdue, pending and
      upcoming pages.
    - ``_completed``: (completed, id): retention purges, completion ranges.
    - ``_by_last``: (last activity time, opportunity), with ``_last`` by opportunity.
    - ``_open_keys``: open key -> id of the open activity holding it (completing or cancelling
      it frees the key).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: SlotRows[Row] = SlotRows()  # by id, the rows' first value
        self._open_keys: dict[str, str] = {}
        self._created: Index = ChunkedIndex()
        self._by_assignee: Index = ChunkedIndex()
        self._by_rule: Index = ChunkedIndex()
        self._by_opportunity: Index = ChunkedIndex()
        self._by_customer: Index = ChunkedIndex()
        self._open_due: Index = ChunkedIndex()
        self._open_undated: Index = ChunkedIndex()
        self._open_due_by_assignee: Index = ChunkedIndex()
        self._open_undated_by_assignee: Index = ChunkedIndex()
        self._completed: Index = ChunkedIndex()
        self._last: dict[str, datetime] = {}
        self._by_last: Index = ChunkedIndex()

    def __len__(self) -> int:
        return len(self._rows)

    # ------------------------------------------------------------------ writes

    def add(self, activity: Activity) -> Activity:
        checked = _checked(activity)
        with self._lock:
            if checked.activity_id in self._rows:
                raise DuplicateError(f"activity {checked.activity_id!r} already exists")
            self._check_open_key(checked.open_key, checked.activity_id)
            row = row_from_activity(checked, version=1, open_key=checked.open_key)
            self._insert(row)
        # The store keeps the row (atomic values), not ``checked``: a validated copy the caller
        # never held, so it is handed out as is rather than built again from the row.
        return checked if checked.version == 1 else checked._evolve(version=1)

    def add_plain(
        self, fields: dict[str, Any], metadata: dict[str, Any]
    ) -> DuplicateError | OpenActivityExistsError | None:
        """See :class:`~leadflow.ports.PlainActivities`: :meth:`add` of the activity the two
        dicts make, the row read from them (:func:`~.activity_rows.row_from_plain`)."""
        activity_id, open_key = fields["activity_id"], fields["open_key"]
        with self._lock:
            if activity_id in self._rows:
                return DuplicateError(f"activity {activity_id!r} already exists")
            refusal = self._open_key_refusal(open_key, activity_id)
            if refusal is not None:
                return refusal
            self._insert(row_from_plain(fields, metadata))
        return None

    def update(self, activity: Activity) -> Activity:
        """See the port. The stored ``open_key`` is kept whatever ``activity`` says; reopening
        an activity (clearing its completed date) whose key another open activity holds now is
        an :class:`OpenActivityExistsError`."""
        checked = _checked(activity)
        with self._lock:
            old = self._rows.get(checked.activity_id)
            if old is None:
                raise NotFoundError(f"no activity {checked.activity_id!r}")
            if old[VERSION] != checked.version:
                raise StaleWriteError(
                    f"activity {checked.activity_id!r} is at version {old[VERSION]}, "
                    f"not {checked.version}: re-read it and apply the change again"
                )
            was_open = old[COMPLETED] is None and old[CANCELLED] is None
            if not was_open and checked.is_open:
                self._check_open_key(old[OPEN_KEY], checked.activity_id)
            row = row_from_activity(checked, version=old[VERSION] + 1, open_key=old[OPEN_KEY])
            self._replace(old, row)
        return activity_from_row(row)

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
        activity_id = an_id(activity_id, "activity_id")
        with self._lock:
            old = self._rows.get(activity_id)
            if old is None:
                raise NotFoundError(f"no activity {activity_id!r}")
            if old[COMPLETED] is not None:
                raise InvalidStateError(f"activity {activity_id!r} is already completed")
            if old[CANCELLED] is not None:
                raise InvalidStateError(f"activity {activity_id!r} is cancelled")
            if expected_version is not None and old[VERSION] != expected_version:
                raise StaleWriteError(
                    f"activity {activity_id!r} is at version {old[VERSION]}, not {expected_version}"
                )
            changed = list(old)
            changed[COMPLETED] = changed[UPDATED] = completed_at
            changed[OUTCOME] = None if outcome is None else outcome.value
            changed[COMPLETED_BY] = completed_by
            if completed_by is not None:
                changed[UPDATED_BY] = completed_by
            changed[VERSION] = old[VERSION] + 1
            row = tuple(changed)
            self._replace(old, row)
        return activity_from_row(row)

    def delete(self, activity_id: str) -> None:
        activity_id = an_id(activity_id, "activity_id")
        with self._lock:
            row = self._rows.get(activity_id)
            if row is None:
                raise NotFoundError(f"no activity {activity_id!r}")
            self._remove(row)
            self._refresh_last(row[OPPORTUNITY])

    def purge_completed(self, before: datetime) -> int:
        before = ensure_utc(before, "before")
        with self._lock:
            keys = list(self._completed.irange(None, (before,), inclusive=(True, False)))
            doomed = [key[-1] for key in keys]
            for row in doomed:
                self._remove(row)
            for opportunity_id in {row[OPPORTUNITY] for row in doomed}:
                self._refresh_last(opportunity_id)
        return len(doomed)

    # ------------------------------------------------------------------ reads

    def get(self, activity_id: str) -> Activity:
        activity_id = an_id(activity_id, "activity_id")
        with self._lock:
            row = self._rows.get(activity_id)
        if row is None:
            raise NotFoundError(f"no activity {activity_id!r}")
        return activity_from_row(row)

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
        after = None
        if cursor is not None:
            value, activity_id = decode_cursor(cursor, order)
            after = (*when(value), activity_id)
        with self._lock:
            rows = self._page(f, order, after, limit + 1)
        items = [activity_from_row(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(order, last[COLUMNS.index(order.field)], last[ID])
        return Page[Activity](items=items, next_cursor=next_cursor)

    def for_opportunity(
        self, opportunity_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        rows = self._scoped(self._by_opportunity, opportunity_id, assigned_to, "opportunity_id")
        return [activity_from_row(row) for row in sorted(rows, key=created_key)]

    def for_customer(
        self, customer_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        rows = self._scoped(self._by_customer, customer_id, assigned_to, "customer_id")
        return [activity_from_row(row) for row in sorted(rows, key=created_key)]

    def timeline(
        self, opportunity_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        rows = self._scoped(self._by_opportunity, opportunity_id, assigned_to, "opportunity_id")
        return [activity_from_row(row) for row in sorted(rows, key=timeline_key)]

    def pending(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        as_of = ensure_utc(as_of, "as_of")
        check_limit(limit)
        check_type(assigned_to, str, "assigned_to", optional=True)
        with self._lock:
            keys: Iterable[Key]
            if assigned_to is None:
                keys = chain(self._open_due.irange((as_of,)), self._open_undated)
            else:
                dated = self._open_due_by_assignee.irange(
                    (assigned_to, as_of), key_after((assigned_to,)), inclusive=(True, False)
                )
                keys = chain(dated, with_prefix(self._open_undated_by_assignee, (assigned_to,)))
            rows = (key[-1] for key in keys)
            started = (row for row in rows if row[SCHEDULED] is None or row[SCHEDULED] <= as_of)
            found = builtins.list(islice(started, limit))
        return [activity_from_row(row) for row in found]

    def overdue(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        as_of = ensure_utc(as_of, "as_of")
        check_limit(limit)
        check_type(assigned_to, str, "assigned_to", optional=True)
        with self._lock:
            if assigned_to is None:
                keys = self._open_due.irange(None, (as_of,), inclusive=(True, False))
            else:
                keys = self._open_due_by_assignee.irange(
                    (assigned_to,), (assigned_to, as_of), inclusive=(True, False)
                )
            found = [key[-1] for key in islice(keys, limit)]
        return [activity_from_row(row) for row in found]

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
            found = [key[-1] for key in islice(keys, limit)]
        return [activity_from_row(row) for row in found]

    def statistics(self, filter: ActivityFilter | None, *, as_of: datetime) -> ActivityStatistics:
        f = check_type(filter, ActivityFilter, "filter", optional=True) or ActivityFilter()
        as_of = ensure_utc(as_of, "as_of")
        with self._lock:
            rows, created_order = self._select(f)
        return statistics_of(
            rows, as_of, created_order=created_order
        )  # rows never change, so this runs outside the lock

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
            return [(last, opportunity_id) for last, opportunity_id in islice(keys, limit)]

    # ------------------------------------------------------------------ indexes

    def _index_keys(self, row: Row) -> builtins.list[tuple[Index, Key]]:
        """Every ordered index ``row`` belongs in, with its key there."""
        activity_id, assignee = row[ID], row[ASSIGNED]
        created = (*when(row[CREATED]), activity_id, row)
        keys = [
            (self._created, created),
            (self._by_opportunity, (row[OPPORTUNITY], assignee or "", *created)),
        ]
        if row[CUSTOMER] is not None:
            keys.append((self._by_customer, (row[CUSTOMER], assignee or "", *created)))
        if assignee is not None:
            keys.append((self._by_assignee, (assignee, *created)))
        if row[RULE] is not None:
            keys.append((self._by_rule, (row[RULE], *created)))
        if row[COMPLETED] is not None:
            keys.append((self._completed, (row[COMPLETED], activity_id, row)))
        elif row[CANCELLED] is not None:
            pass  # neither done nor to do: only in the indexes above
        elif row[DUE] is not None:
            keys.append((self._open_due, (row[DUE], activity_id, row)))
            if assignee is not None:
                keys.append((self._open_due_by_assignee, (assignee, row[DUE], activity_id, row)))
        else:
            keys.append((self._open_undated, (activity_id, row)))
            if assignee is not None:
                keys.append((self._open_undated_by_assignee, (assignee, activity_id, row)))
        return keys

    def _check_open_key(self, open_key: str | None, activity_id: str) -> None:
        refusal = self._open_key_refusal(open_key, activity_id)
        if refusal is not None:
            raise refusal

    def _open_key_refusal(
        self, open_key: str | None, activity_id: str
    ) -> OpenActivityExistsError | None:
        holder = None if open_key is None else self._open_keys.get(open_key)
        if holder is None or holder == activity_id:
            return None
        return OpenActivityExistsError(
            f"open activity {holder!r} already holds open key {open_key!r}"
        )

    def _insert(self, row: Row) -> None:
        self._rows.put(row)
        for index, key in self._index_keys(row):
            index.add(key)
        if row[OPEN_KEY] is not None and row[COMPLETED] is None and row[CANCELLED] is None:
            self._open_keys[row[OPEN_KEY]] = row[ID]
        latest = _latest(row)
        old = self._last.get(row[OPPORTUNITY])
        if latest is not None and (old is None or latest > old):  # it can only move forward
            self._set_last(row[OPPORTUNITY], latest)

    def _remove(self, row: Row) -> None:
        del self._rows[row[ID]]
        for index, key in self._index_keys(row):
            index.remove(key)
        if row[OPEN_KEY] is not None and self._open_keys.get(row[OPEN_KEY]) == row[ID]:
            del self._open_keys[row[OPEN_KEY]]

    def _replace(self, old: Row, new: Row) -> None:
        """``new`` in the place of ``old`` (the same activity). In an index where its key
        differs only in the row it ends with (a completion changes no creation time, owner or
        rule), the key is swapped where it is (:meth:`ChunkedIndex.replace`): one chunk
        rebuilt instead of a removal and an insertion; elsewhere removed and added."""
        added = dict(self._index_keys(new))
        for index, key in self._index_keys(old):
            fresh = added.pop(index, None)
            if fresh is not None and fresh[:-1] == key[:-1]:
                index.replace(key, fresh)
                continue
            index.remove(key)
            if fresh is not None:
                index.add(fresh)
        for index, key in added.items():
            index.add(key)
        self._rows.put(new)  # the same id: its slot
        if old[OPEN_KEY] is not None and self._open_keys.get(old[OPEN_KEY]) == old[ID]:
            del self._open_keys[old[OPEN_KEY]]
        if new[OPEN_KEY] is not None and new[COMPLETED] is None and new[CANCELLED] is None:
            self._open_keys[new[OPEN_KEY]] = new[ID]
        opportunity, before, after = new[OPPORTUNITY], _latest(old), _latest(new)
        if old[OPPORTUNITY] != opportunity or (
            before is not None and (after is None or after < before)
        ):
            # The old row's times may have been its opportunity's latest.
            self._refresh_last(old[OPPORTUNITY])
            before = None
        if after is not None and (before is None or after > before):
            last = self._last.get(opportunity)
            if last is None or after > last:  # it can only move forward
                self._set_last(opportunity, after)

    def _refresh_last(self, opportunity_id: str) -> None:
        """Recompute the opportunity's last activity time from its own rows."""
        times = [
            moment
            for key in with_prefix(self._by_opportunity, (opportunity_id,))
            for moment in (key[-1][CREATED], key[-1][COMPLETED])
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

    # ------------------------------------------------------------------ scoped reads

    def _scoped(
        self, index: Index, owner_id: str, assigned_to: str | None, field: str
    ) -> builtins.list[Row]:
        """The rows of one opportunity or customer (only ``assigned_to``'s when given)."""
        check_type(owner_id, str, field)
        check_type(assigned_to, str, "assigned_to", optional=True)
        prefix = (owner_id,) if assigned_to is None else (owner_id, assigned_to)
        with self._lock:
            return [key[-1] for key in with_prefix(index, prefix)]
