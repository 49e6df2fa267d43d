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


# ---------------------------------------------------------------- daylight-saving changes

EVERY_DAY = dict(workdays=range(7))


def test_business_days_onto_a_spring_forward_gap_land_after_the_gap():
    cal = WorkingCalendar("America/New_York", **EVERY_DAY)
    # Sunday 2026-03-08: 02:00-03:00 does not happen in New York.
    saturday = ny(2026, 3, 7, 2, 30)  # 07:30 UTC
    due = cal.add_business_days(saturday, 1)
    assert due == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT, after the gap
    assert (due.astimezone(NY).hour, due.astimezone(NY).minute) == (3, 30)


def test_business_days_onto_a_repeated_time_take_the_first_occurrence():
    cal = WorkingCalendar("America/New_York", **EVERY_DAY)
    # Sunday 2026-11-01: 01:00-02:00 happens twice (EDT, then EST).
    saturday = ny(2026, 10, 31, 1, 30)
    assert cal.add_business_days(saturday, 1) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    # Starting from the *second* 01:30 of one fall-back day does not carry over to the next:
    # 2027-11-07 is New York's next fall-back day, 371 days later.
    second = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert second.astimezone(NY).fold == 1
    due = cal.add_business_days(second, 371)
    assert due == datetime(2027, 11, 7, 5, 30, tzinfo=UTC)  # 01:30 EDT, the first occurrence
    assert due.astimezone(NY).fold == 0


def test_an_events_fold_never_lands_before_a_gap():
    # In London the repeated hour (fall back) and the skipped hour (spring forward) are both
    # 01:00-02:00, so an event's fold=1 could otherwise pick the offset after the gap.
    cal = WorkingCalendar("Europe/London", **EVERY_DAY)
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # the second 01:30 (GMT) on 2026-10-25
    assert second.astimezone(ZoneInfo("Europe/London")).fold == 1
    due = cal.add_business_days(second, 154)  # Sunday 2027-03-28, 01:00-02:00 is skipped
    assert due == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)  # 02:30 BST, after the gap


def test_business_hours_on_spring_forward_day_count_real_time():
    cal = WorkingCalendar("America/New_York", start=time(1), end=time(5), **EVERY_DAY)
    # On 2026-03-08 the window 01:00-05:00 lasts 3 real hours.
    start = ny(2026, 3, 8, 1)
    assert cal.add_business_hours(start, 3) == ny(2026, 3, 8, 5)
    assert cal.add_business_hours(start, 3.5) == ny(2026, 3, 9, 1, 30)
