"""The in-memory analytics store's completions summed per UTC day and key, kept as they are
recorded (issue 20): a period's sums per rep or per automation add up the whole days of the
period (a few dozen small sums per key) and walk one by one only the rows of the partial days
at its ends, where they used to walk every completion of the period (250,000 a quarter at the
issue's scale).

A day's sums per key: the counts (completed, with a due date, on time), the outcomes, the
seconds to complete in order (so a period's median sorts runs already sorted: one merge) and
the distinct opportunities (a period's count is the size of the days' union). The answers are
those of :func:`~.analytics_rows.groups_of_rows` and :func:`~.analytics_rows.buckets_of_rows`
over the period's rows, which stay the definition (``tests/test_memory_analytics_days.py``
compares them on random completions and periods).
"""

from __future__ import annotations

from array import array
from bisect import insort
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from sortedcontainers import SortedList

from ...facts import CompletionGroup, GroupSums, groups_from_sums
from .analytics_rows import BY, Row, add_rows

__all__ = ["DaySums", "Days"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAY: Final = timedelta(days=1)


class DaySums:
    """The completions of one key on one day, summed up (see the module docstring)."""

    __slots__ = ("counts", "opportunities", "outcomes", "times")

    def __init__(self) -> None:
        self.counts = [0, 0, 0]  # completed, with a due date, on time
        self.times = array("d")  # seconds to complete, in order (no references to walk)
        self.opportunities: set[str] = set()
        self.outcomes: dict[str, int] = {}

    def add(self, row: Row) -> None:
        counts = self.counts
        counts[0] += 1
        if row[3]:
            counts[1] += 1
            counts[2] += row[4]
        if row[5] is not None:
            insort(self.times, row[5])
        self.opportunities.add(row[2])
        if row[6] is not None:
            self.outcomes[row[6]] = self.outcomes.get(row[6], 0) + 1


def _day(at: datetime) -> int:
    """The UTC day of ``at``, as days since 1970-01-01."""
    return (at - _EPOCH) // _DAY


class Days:
    """The completions' :class:`DaySums` per grouping (``assigned_to``, ``rule_id``), day and
    key. ``rows_in`` gives the rows of a stretch of time (in time order) for the partial days;
    the caller holds the store's lock over every call (the sums change as facts arrive)."""

    def __init__(self, rows_in: Callable[[datetime, datetime], Sequence[Row]]) -> None:
        self._rows_in = rows_in
        self._days: dict[int, dict[int, dict[str | None, DaySums]]] = {
            place: {} for place in BY.values()
        }
        self._known: SortedList[int] = SortedList()  # the days with a completion

    def add(self, row: Row) -> None:
        """Counts ``row`` (a completion recorded once) in its day's sums."""
        day = _day(row[7])
        for place, days in self._days.items():
            keys = days.get(day)
            if keys is None:
                keys = days[day] = {}
                if place == 0:
                    self._known.add(day)
            key = row[0] if place == 0 else row[1]
            sums = keys.get(key)
            if sums is None:
                sums = keys[key] = DaySums()
            sums.add(row)

    def groups(
        self,
        start: datetime,
        end: datetime,
        by: str,
        wanted: Collection[str | None] | None,
        *,
        median: bool,
        opportunities: bool,
    ) -> list[CompletionGroup]:
        """:func:`~.analytics_rows.groups_of_rows` of the rows of ``[start, end)``."""
        sums: GroupSums = {}
        self._add(sums, start, end, by, wanted, median, opportunities)
        return groups_from_sums(sums)

    def _add(
        self,
        sums: GroupSums,
        start: datetime,
        end: datetime,
        by: str,
        wanted: Collection[str | None] | None,
        median: bool,
        opportunities: bool,
    ) -> None:
        """Adds the rows of ``[start, end)`` to ``sums`` (:func:`~.analytics_rows.add_rows`):
        its whole days from their sums, the partial days at its ends row by row."""
        split = _whole_days(start, end)
        if split is None:
            add_rows(sums, self._rows_in(start, end), by, wanted, median, opportunities)
            return
        first, last = split
        add_rows(sums, self._rows_in(start, _start_of(first)), by, wanted, median, opportunities)
        days = self._days[BY[by]]
        for day in self._known.irange(first, last, inclusive=(True, False)):
            for key, day_sums in days[day].items():
                if wanted is not None and key not in wanted:
                    continue
                found = sums.get(key)
                if found is None:
                    found = sums[key] = ([0, 0, 0], [], set(), Counter())
                counts, times, on, outcomes = found
                done, due, on_time = day_sums.counts
                counts[0] += done
                counts[1] += due
                counts[2] += on_time
                if median:
                    times += day_sums.times
                if opportunities:
                    on |= day_sums.opportunities
                outcomes.update(day_sums.outcomes)
        add_rows(sums, self._rows_in(_start_of(last), end), by, wanted, median, opportunities)

    def buckets(
        self,
        start: datetime,
        end: datetime,
        width: timedelta,
        by: str | None,
        wanted: Collection[str | None] | None,
    ) -> dict[int, CompletionGroup] | None:
        """:func:`~.analytics_rows.buckets_of_rows` of the rows of ``[start, end)`` (``start``
        before ``end``) when the buckets are at least a day wide, else None: each bucket with
        a completion day in it is summed up as a period of its own."""
        if width < _DAY:
            return None
        if by is None or wanted is None:
            by, wanted = "assigned_to", None  # every completion has one assignee (or None)
        try:
            touched: set[int] = set()
            for day in self._known.irange(_day(start), _day(end)):
                low, high = max(start, _start_of(day)), min(end, _start_of(day + 1))
                if low < high:  # the day's part in the period, in one bucket or two
                    touched.add((low - start) // width)
                    touched.add((high - _TICK - start) // width)
            bounds = [
                (n, start + n * width, _end_of_bucket(start, n, width, end))
                for n in sorted(touched)
            ]
        except OverflowError:
            return None
        found: dict[int, CompletionGroup] = {}
        for n, bucket_start, bucket_end in bounds:
            sums: GroupSums = {}
            self._add(sums, bucket_start, bucket_end, by, wanted, False, False)
            done = sum(counts[0] for counts, *_ in sums.values())
            if done:
                due = sum(counts[1] for counts, *_ in sums.values())
                on_time = sum(counts[2] for counts, *_ in sums.values())
                found[n] = CompletionGroup(None, done, due, on_time, None)
        return found


_TICK: Final = timedelta(microseconds=1)


def _start_of(day: int) -> datetime:
    return _EPOCH + day * _DAY


def _end_of_bucket(start: datetime, n: int, width: timedelta, end: datetime) -> datetime:
    try:
        return min(end, start + (n + 1) * width)
    except OverflowError:
        return end


def _whole_days(start: datetime, end: datetime) -> tuple[int, int] | None:
    """The whole days ``[first, last)`` within ``[start, end)``, or None when there is none
    (or a bound is too near the ends of time to have one)."""
    try:
        first = -((_EPOCH - start) // _DAY)  # the day starting at or after start
        last = _day(end)
        if first >= last:
            return None
        _start_of(first), _start_of(last)  # they exist
    except OverflowError:
        return None
    return first, last
