"""The "within one business day" deadline of many leads at once: the working calendar's
:meth:`~leadflow.rules.calendar.WorkingCalendar.add_business_hours` of a working day's length
from each arrival, with the calendar's working windows looked up once per date (a period's
late-contacted leads, 25,000 a quarter at issue 20's scale, share a few hundred dates).

:meth:`Deadlines.within` judges a lead without walking the days: the working windows from the
earliest arrival asked about on, in order, as integer microseconds since the Unix epoch, with
the working time before each (a running sum). An arrival's working time is found by one
bisection of the windows' closes, its deadline by one bisection of the running sums: the same
moment as the walk (the first window whose running sum reaches the arrival's working time plus
a day's length, that far into it), with no datetime made or converted per lead.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, NamedTuple

from ..errors import InvalidInputError
from ..rules.calendar import _MAX_SCAN_DAYS, WorkingCalendar

__all__ = ["Deadlines"]

_DAY = timedelta(days=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO: Final = timedelta(microseconds=1)
_EPOCH_ORDINAL: Final = _EPOCH.date().toordinal()
_GROW = 64  # days of windows added at a time
_NEAR_LIMIT = _MAX_SCAN_DAYS - 400  # a deadline this many days on: the walk says (or refuses)


class _Windows(NamedTuple):
    """The working windows of the dates from ``first`` to ``last`` (exclusive), in order, as
    microseconds since the epoch: where each opens and closes, the working time before it
    since ``first`` and up to its close, and its date's ordinal. Never changed once made: a
    longer index replaces it (concurrent queries at worst build one twice)."""

    first: date
    start: int  # the first moment of ``first`` (local midnight), in microseconds
    last: date
    opens: tuple[int, ...]
    closes: tuple[int, ...]
    before: tuple[int, ...]
    upto: tuple[int, ...]
    ordinals: tuple[int, ...]


class Deadlines:
    """``calendar.add_business_hours(arrived_at, day_length hours)`` for many arrivals: the
    same walk over the days, each date's window computed once and kept (a date's window never
    changes: concurrent queries at worst compute one twice)."""

    def __init__(self, calendar: WorkingCalendar) -> None:
        self._calendar = calendar
        self._zone = calendar.zone
        # As the figures ask the calendar: the day's length in hours, back to a timedelta.
        self._length = timedelta(hours=calendar.day_length.total_seconds() / 3600)
        self._windows: dict[date, tuple[datetime, datetime] | None] = {}
        self._micros = self._length // _MICRO
        self._index: _Windows | None = None

    def _window(self, day: date) -> tuple[datetime, datetime] | None:
        try:
            return self._windows[day]
        except KeyError:
            calendar = self._calendar
            found = calendar._window(day) if calendar.is_working_day(day) else None
            self._windows[day] = found
            return found

    def of(self, arrived_at: datetime) -> datetime:
        """The moment a working day's length of working time after ``arrived_at`` (UTC)."""
        remaining = self._length
        if remaining <= timedelta(0):
            return arrived_at
        day = arrived_at.astimezone(self._zone).date()
        for _ in range(_MAX_SCAN_DAYS):
            window = self._window(day)
            if window is not None:
                open_at, close_at = window
                begin = max(open_at, arrived_at)
                if begin < close_at:
                    available = close_at - begin
                    if remaining <= available:
                        return begin + remaining
                    remaining -= available
            day += _DAY
        raise InvalidInputError("no working time found within ten years", field="calendar")

    def within(self, arrived_at: datetime, contacted_at: datetime) -> bool:
        """Whether ``contacted_at`` is no later than :meth:`of` ``arrived_at`` (both aware)."""
        return self.within_micros(
            (arrived_at - _EPOCH) // _MICRO, (contacted_at - _EPOCH) // _MICRO
        )

    def within_micros(self, arrived: int, contacted: int) -> bool:
        """:meth:`within` of two moments given as integer microseconds since the epoch."""
        length = self._micros
        if length <= 0:
            return contacted <= arrived
        index = self._index
        if index is None or arrived < index.start:
            index = self._grown(index, _EPOCH + arrived * _MICRO, None)
        closes = index.closes
        here = bisect_right(closes, arrived)  # the first window closing after the arrival
        while here >= len(closes):
            if _days_after(index.last, arrived) > _NEAR_LIMIT:
                return self._walked(arrived, contacted)  # no working time: the walk refuses
            index = self._grown(index, _EPOCH + arrived * _MICRO, index.last + _GROW * _DAY)
            closes = index.closes
        opened = index.opens[here]
        target = index.before[here] + (arrived - opened if arrived > opened else 0) + length
        there = bisect_left(index.upto, target)  # the first window reaching it
        while there >= len(index.upto):
            if _days_after(index.last, arrived) > _NEAR_LIMIT:
                return self._walked(arrived, contacted)  # years on: the walk's answer
            index = self._grown(index, _EPOCH + arrived * _MICRO, index.last + _GROW * _DAY)
            there = bisect_left(index.upto, target)
        if index.ordinals[there] - index.ordinals[here] > _NEAR_LIMIT:
            return self._walked(arrived, contacted)
        return contacted <= index.opens[there] + target - index.before[there]

    def _walked(self, arrived: int, contacted: int) -> bool:
        return _EPOCH + contacted * _MICRO <= self.of(_EPOCH + arrived * _MICRO)

    def _grown(self, index: _Windows | None, arrived_at: datetime, last: date | None) -> _Windows:
        """``index`` covering ``arrived_at``'s date (from the day before) and up to ``last``."""
        first = arrived_at.astimezone(self._zone).date() - _DAY
        if index is not None:
            first = min(first, index.first)
            last = max(last or index.last, index.last)
        if last is None or last <= first:
            last = first + _GROW * _DAY
        opens: list[int] = []
        closes: list[int] = []
        before: list[int] = []
        upto: list[int] = []
        ordinals: list[int] = []
        total = 0
        day = first
        while day < last:
            window = self._window(day)
            if window is not None:
                open_at = (window[0] - _EPOCH) // _MICRO
                close_at = (window[1] - _EPOCH) // _MICRO
                if open_at < close_at:  # an empty window holds no working time
                    opens.append(open_at)
                    closes.append(close_at)
                    before.append(total)
                    total += close_at - open_at
                    upto.append(total)
                    ordinals.append(day.toordinal())
            day += _DAY
        start = (self._calendar._local(first, time(0)) - _EPOCH) // _MICRO
        found = _Windows(
            first, start, last, tuple(opens), tuple(closes), tuple(before), tuple(upto),
            tuple(ordinals),
        )  # fmt: skip
        self._index = found
        return found


def _days_after(last: date, moment: int) -> int:
    """About how many days ``last`` comes after ``moment`` (microseconds since the epoch)."""
    return last.toordinal() - _EPOCH_ORDINAL - moment // 86_400_000_000
