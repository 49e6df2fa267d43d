"""The "within one business day" deadline of many leads at once: the working calendar's
:meth:`~leadflow.rules.calendar.WorkingCalendar.add_business_hours` of a working day's length
from each arrival, with the calendar's working windows looked up once per date (a period's
late-contacted leads, 25,000 a quarter at issue 20's scale, share a few hundred dates)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from ..errors import InvalidInputError
from ..rules.calendar import _MAX_SCAN_DAYS, WorkingCalendar

__all__ = ["Deadlines"]

_DAY = timedelta(days=1)


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
