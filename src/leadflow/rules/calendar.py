"""Working calendars for business-time delays ("2 business days", "4 business hours").

Working hours are wall-clock times in the calendar's time zone, so a 9:00-17:00 day stays
9:00-17:00 local across daylight-saving changes; the lengths of working intervals are measured
in real (UTC) time. Pure and immutable: safe to share between engines and threads.

Daylight-saving changes, one rule everywhere: a local wall time that a day skips (spring
forward: 02:30 in New York on 2026-03-08) means the instant the gap ends plus the skipped
minutes, i.e. 03:30 local, after the gap; a wall time that a day repeats (fall back: 01:30 on
2026-11-01) means its *first* occurrence (the earlier, daylight-time instant). This holds whatever
the ``fold`` of the datetime given: the event's own fold never carries over to the target day.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import InvalidInputError

__all__ = ["WorkingCalendar"]

_MAX_SCAN_DAYS = 3660 * 2


def ensure_utc(value: datetime, field: str) -> datetime:
    """``value`` in UTC; :class:`~leadflow.InvalidInputError` for a naive or non-datetime."""
    if not isinstance(value, datetime):
        raise InvalidInputError(f"expected a datetime, got {type(value).__name__}", field=field)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError("naive datetime: give a time zone (UTC inside)", field=field)
    return value.astimezone(UTC)


class WorkingCalendar:
    """Working days, working hours and holidays in one time zone.

    ``workdays`` are ISO weekday numbers minus one (Monday = 0 ... Sunday = 6). ``holidays`` are
    local dates with no work at all.
    """

    __slots__ = ("_end", "_start", "_text", "holidays", "timezone", "workdays", "zone")

    def __init__(
        self,
        timezone: str = "UTC",
        *,
        workdays: Iterable[int] = (0, 1, 2, 3, 4),
        start: time = time(9),
        end: time = time(17),
        holidays: Iterable[date] = (),
    ) -> None:
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInputError(f"unknown time zone {timezone!r}", field="timezone") from exc
        self.timezone = timezone
        days = frozenset(workdays)
        if not days or not days <= set(range(7)):
            raise InvalidInputError("workdays must be a non-empty subset of 0..6", field="workdays")
        if start.tzinfo is not None or end.tzinfo is not None:
            raise InvalidInputError("start/end are local wall-clock times without tzinfo")
        if not start < end:
            raise InvalidInputError("start must be before end", field="start")
        self.workdays = days
        self._start = start
        self._end = end
        self.holidays = frozenset(holidays)
        self._text: str | None = None

    @property
    def day_length(self) -> timedelta:
        """The working time of one working day (``end - start``; a daylight-saving day's real
        length may differ by the change)."""
        day = date(2000, 1, 3)
        return datetime.combine(day, self._end) - datetime.combine(day, self._start)

    def describe(self) -> str:
        """``Europe/Paris Mon,Tue,Wed,Thu,Fri 09:00-17:00, 2 holiday(s)``: what explanations
        say of the calendar (computed once)."""
        text = self._text
        if text is None:
            names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
            days = ",".join(names[d] for d in sorted(self.workdays))
            hours = f"{self._start.strftime('%H:%M')}-{self._end.strftime('%H:%M')}"
            extra = f", {len(self.holidays)} holiday(s)" if self.holidays else ""
            text = self._text = f"{self.timezone} {days} {hours}{extra}"
        return text

    @classmethod
    def from_country(
        cls,
        country: str,
        *,
        subdiv: str | None = None,
        years: Iterable[int],
        timezone: str,
        **kwargs: object,
    ) -> WorkingCalendar:
        """A calendar with a country's public holidays (needs the ``holidays`` extra)."""
        try:
            import holidays as holidays_lib
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("install leadflow[holidays] for country calendars") from exc
        table = holidays_lib.country_holidays(country, subdiv=subdiv, years=list(years))
        return cls(timezone, holidays=set(table.keys()), **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"WorkingCalendar({self.timezone!r}, workdays={sorted(self.workdays)}, "
            f"start={self._start}, end={self._end}, holidays={len(self.holidays)})"
        )

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.workdays and day not in self.holidays

    def _local(self, day: date, at: time) -> datetime:
        """The UTC instant of wall time ``at`` on ``day``. fold=0, always: a repeated wall time
        means its first occurrence, and a skipped one is read with the offset in force before
        the gap, which lands after it (02:30 on a spring-forward day is 03:30)."""
        wall = datetime.combine(day, at.replace(tzinfo=None, fold=0), tzinfo=self.zone)
        return wall.astimezone(UTC)

    def _window(self, day: date) -> tuple[datetime, datetime]:
        return self._local(day, self._start), self._local(day, self._end)

    def add_business_hours(self, start: datetime, hours: float) -> datetime:
        """The moment ``hours`` of working time after ``start`` (in UTC).

        Time outside working hours does not count: Friday 16:00 plus 2 business hours on a
        9-17 calendar is Monday 10:00. Ending exactly at a day's close returns the close.
        Working time is real elapsed time, so a window that contains a daylight-saving change
        is an hour shorter or longer. Raises :class:`~leadflow.InvalidInputError` when the hours
        cannot be found within ten years.
        """
        moment = ensure_utc(start, "start")
        remaining = timedelta(hours=hours)
        if remaining <= timedelta(0):
            return moment
        day = moment.astimezone(self.zone).date()
        for _ in range(_MAX_SCAN_DAYS):
            if self.is_working_day(day):
                open_at, close_at = self._window(day)
                begin = max(open_at, moment)
                if begin < close_at:
                    available = close_at - begin
                    if remaining <= available:
                        return begin + remaining
                    remaining -= available
            day += timedelta(days=1)
        raise InvalidInputError("no working time found within ten years", field="calendar")

    def add_business_days(self, start: datetime, days: int) -> datetime:
        """The same local wall-clock time on the ``days``-th working day after ``start``'s date.

        Saturday + 1 business day is Monday (same local time). A wall time that the target day
        skips (spring forward) moves forward by the gap (02:30 -> 03:30 in New York); one it
        repeats (fall back) takes its first occurrence, even when ``start`` was itself the
        second occurrence of a repeated time. ``days <= 0`` returns ``start`` (in UTC). Raises
        :class:`~leadflow.InvalidInputError` when no working day comes within ten years.
        """
        moment = ensure_utc(start, "start")
        if days <= 0:
            return moment
        local = moment.astimezone(self.zone)
        day = local.date()
        counted = 0
        for _ in range(_MAX_SCAN_DAYS):
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
                if counted == days:
                    return self._local(day, local.time().replace(tzinfo=None))
        raise InvalidInputError("no working day found within ten years", field="calendar")

    def next_working_time(self, moment: datetime) -> datetime:
        """``moment`` if it is inside working hours, else the next opening."""
        moment = ensure_utc(moment, "moment")
        day = moment.astimezone(self.zone).date()
        for _ in range(_MAX_SCAN_DAYS):
            if self.is_working_day(day):
                open_at, close_at = self._window(day)
                if moment < close_at:
                    return max(open_at, moment)
            day += timedelta(days=1)
        raise InvalidInputError("no working time found within ten years", field="calendar")
