from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from leadflow import InvalidInputError, WorkingCalendar

NY = ZoneInfo("America/New_York")


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)


def test_business_hours_skip_nights_and_weekends():
    cal = WorkingCalendar("America/New_York")
    assert cal.add_business_hours(ny(2026, 1, 9, 16), 2) == ny(2026, 1, 12, 10)
    assert cal.add_business_hours(ny(2026, 1, 9, 16), 1) == ny(2026, 1, 9, 17)
    assert cal.add_business_hours(ny(2026, 1, 10, 12), 1) == ny(2026, 1, 12, 10)
    assert cal.add_business_hours(ny(2026, 1, 12, 7), 8) == ny(2026, 1, 12, 17)
    assert cal.add_business_hours(ny(2026, 1, 12, 7), 8.5) == ny(2026, 1, 13, 9, 30)
    assert cal.add_business_hours(ny(2026, 1, 12, 7), 0) == ny(2026, 1, 12, 7)


def test_business_days_keep_local_wall_time():
    cal = WorkingCalendar("America/New_York")
    assert cal.add_business_days(ny(2026, 1, 9, 15), 1) == ny(2026, 1, 12, 15)
    assert cal.add_business_days(ny(2026, 1, 10, 15), 1) == ny(2026, 1, 12, 15)
    assert cal.add_business_days(ny(2026, 1, 5, 15), 5) == ny(2026, 1, 12, 15)


def test_business_days_across_spring_forward_keep_wall_time_not_elapsed_time():
    cal = WorkingCalendar("America/New_York")
    # DST starts Sunday 2026-03-08 in New York.
    start = ny(2026, 3, 6, 10)  # Friday 10:00 EST = 15:00 UTC
    result = cal.add_business_days(start, 1)
    assert result == ny(2026, 3, 9, 10)  # Monday 10:00 EDT = 14:00 UTC
    assert result.astimezone(UTC).hour == 14
    assert result - start == timedelta(days=3, hours=-1)


def test_business_hours_across_fall_back_count_real_time():
    cal = WorkingCalendar("America/New_York", workdays=range(7), start=time(0), end=time(23, 59))
    # 2026-11-01: 01:00-02:00 happens twice; a 4-hour span from midnight ends at 03:00 local.
    start = ny(2026, 11, 1, 0)
    assert cal.add_business_hours(start, 4).astimezone(UTC) == start.astimezone(UTC) + timedelta(
        hours=4
    )
    assert cal.add_business_hours(start, 4).astimezone(NY).hour == 3


def test_holidays_are_skipped():
    cal = WorkingCalendar("UTC", holidays={date(2026, 1, 12)})
    start = datetime(2026, 1, 9, 16, tzinfo=UTC)
    assert cal.add_business_hours(start, 2) == datetime(2026, 1, 13, 10, tzinfo=UTC)
    assert cal.add_business_days(start, 1) == datetime(2026, 1, 13, 16, tzinfo=UTC)
    assert not cal.is_working_day(date(2026, 1, 12))


def test_next_working_time():
    cal = WorkingCalendar("UTC")
    assert cal.next_working_time(datetime(2026, 1, 10, 12, tzinfo=UTC)) == datetime(
        2026, 1, 12, 9, tzinfo=UTC
    )
    inside = datetime(2026, 1, 12, 12, tzinfo=UTC)
    assert cal.next_working_time(inside) == inside


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"workdays": []}, "workdays"),
        ({"workdays": [7]}, "workdays"),
        ({"start": time(17), "end": time(9)}, "start"),
    ],
)
def test_bad_calendars_are_rejected(kwargs, field):
    with pytest.raises(InvalidInputError) as info:
        WorkingCalendar(**kwargs)
    assert info.value.field == field


def test_naive_start_is_rejected():
    with pytest.raises(InvalidInputError, match="naive"):
        WorkingCalendar().add_business_hours(datetime(2026, 1, 1), 1)
