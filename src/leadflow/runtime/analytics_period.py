"""Periods of the analytics: the checks every period passes, and the weekly trend (the figures
per ISO week of a period). Defined in :mod:`leadflow.runtime.analytics`'s docstring ("Weekly
trend").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from ..errors import InvalidInputError
from ..facts import Completion, CompletionGroup, LeadArrival, LeadSums, groups_of, total_of
from ..fields import ensure_utc
from .analytics_figures import Figure, percentile, share

__all__ = [
    "MAX_PERIOD",
    "WeekRow",
    "check_period",
    "first_monday",
    "trend_from",
    "trend_of",
    "trend_rows",
    "weeks_of",
]

MAX_PERIOD: Final = timedelta(days=400)
"""The longest period a figure is asked for through ``Operations`` and the routes."""

_WEEK: Final = timedelta(days=7)


def check_period(start: object, end: object, *, longest: timedelta | None = None) -> None:
    """:class:`InvalidInputError` naming the field unless ``start`` and ``end`` are aware
    datetimes, ``start < end`` and (when given) the period is at most ``longest``."""
    for value, field in ((start, "start"), (end, "end")):
        if not isinstance(value, datetime):
            raise InvalidInputError(f"expected a datetime, got {value!r}", field=field)
        ensure_utc(value, field)
    assert isinstance(start, datetime) and isinstance(end, datetime)
    if not start < end:
        raise InvalidInputError("start must be before end", field="end")
    if longest is not None and end - start > longest:
        raise InvalidInputError(f"a period is at most {longest.days} days", field="end")


def _monday(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return day - timedelta(days=moment.weekday())


def weeks_of(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """The ISO weeks (UTC, Monday 00:00 to Monday 00:00) that ``[start, end)`` touches, each
    as ``(label, from, to)`` clipped to the period: ``("2026-W02", ...)``."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    monday = _monday(start)
    weeks = []
    while monday < end:
        year, week, _ = monday.isocalendar()
        weeks.append((f"{year}-W{week:02d}", max(monday, start), min(monday + _WEEK, end)))
        monday += _WEEK
    return weeks


class WeekRow(Figure):
    """One ISO week of the trend (see the module's docstring)."""

    week: str
    start: datetime
    end: datetime
    leads: int
    contacted: int
    won: int
    conversion_rate: float | None
    speed_to_lead_p50_seconds: float | None
    completed: int
    on_time_rate: float | None


def _index(first_monday: datetime, start: datetime, end: datetime, at: datetime) -> int | None:
    """The number of the week ``at`` falls in (None: outside ``[start, end)``)."""
    if not start <= at < end:
        return None
    return int((at - first_monday) // _WEEK)


def trend_of(
    start: datetime,
    end: datetime,
    arrivals: Sequence[LeadArrival],
    contacts: Collection[Completion],
    wins: Mapping[str, datetime],
    completions: Sequence[Completion],
) -> list[WeekRow]:
    """Per ISO week of ``[start, end)``: the leads that arrived in it (their first contacts,
    ``contacts``, and first wins, ``wins``, whenever they came) and the activities completed
    in it."""
    first_monday = _monday(start)
    done: dict[int, list[Completion]] = defaultdict(list)
    for completion in completions:
        n = _index(first_monday, start, end, completion.completed_at)
        if n is not None:
            done[n].append(completion)
    weekly = [
        total_of(groups_of(done.get(n, []), "rule_id")) for n in range(len(weeks_of(start, end)))
    ]
    return trend_rows(start, end, arrivals, contacts, wins, weekly)


def trend_rows(
    start: datetime,
    end: datetime,
    arrivals: Sequence[LeadArrival],
    contacts: Collection[Completion],
    wins: Mapping[str, datetime],
    weekly: Sequence[CompletionGroup],
) -> list[WeekRow]:
    """:func:`trend_of` from the activities completed in each week of :func:`weeks_of` summed
    up (``weekly``, one per week)."""
    weeks = weeks_of(start, end)
    if len(weekly) != len(weeks):
        raise ValueError(f"expected {len(weeks)} weekly sums, got {len(weekly)}")
    first_monday = _monday(start)
    first = {contact.opportunity_id: contact for contact in contacts}
    leads: dict[int, list[LeadArrival]] = defaultdict(list)
    for arrival in arrivals:
        n = _index(first_monday, start, end, arrival.arrived_at)
        if n is not None:
            leads[n].append(arrival)
    rows = []
    for n, (label, week_start, week_end) in enumerate(weeks):
        cohort = leads.get(n, [])
        waits = [
            max(0.0, (first[a.opportunity_id].completed_at - a.arrived_at).total_seconds())
            for a in cohort
            if a.opportunity_id in first
        ]
        won = sum(a.opportunity_id in wins for a in cohort)
        done = weekly[n]
        rows.append(
            WeekRow(
                week=label,
                start=week_start,
                end=week_end,
                leads=len(cohort),
                contacted=len(waits),
                won=won,
                conversion_rate=share(won, len(cohort)),
                speed_to_lead_p50_seconds=percentile(waits, 50),
                completed=done.completed,
                on_time_rate=share(done.on_time, done.with_due),
            )
        )
    return rows


def first_monday(start: datetime) -> datetime:
    """The Monday 00:00 UTC that starts the first week of a period from ``start``: week ``n``
    of :func:`weeks_of` holds the times ``t`` with ``(t - first_monday) // 7 days == n``."""
    return _monday(start)


def trend_from(
    start: datetime,
    end: datetime,
    leads: dict[int, LeadSums],
    weekly: Sequence[CompletionGroup],
) -> list[WeekRow]:
    """:func:`trend_rows` from the leads summed up per week in the store (``leads``: by the
    week's number from :func:`first_monday`)."""
    weeks = weeks_of(start, end)
    if len(weekly) != len(weeks):
        raise ValueError(f"expected {len(weeks)} weekly sums, got {len(weekly)}")
    rows = []
    for n, (label, week_start, week_end) in enumerate(weeks):
        cohort = leads.get(n)
        count = 0 if cohort is None else cohort.leads
        won = 0 if cohort is None else cohort.won
        done = weekly[n]
        rows.append(
            WeekRow(
                week=label,
                start=week_start,
                end=week_end,
                leads=count,
                contacted=0 if cohort is None else cohort.contacted,
                won=won,
                conversion_rate=share(won, count),
                speed_to_lead_p50_seconds=None if cohort is None else cohort.p50_seconds,
                completed=done.completed,
                on_time_rate=share(done.on_time, done.with_due),
            )
        )
    return rows
