"""The lead and rep figures of the analytics (speed to lead, lead sources, the rep leaderboard)
as pure functions over the facts of :mod:`leadflow.facts`, and what every figure shares (the
JSON form, nearest-rank percentiles). Defined in :mod:`leadflow.runtime.analytics`'s docstring.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from ..facts import SPEED_BOUNDS, Completion, CompletionGroup, LeadArrival, LeadSums
from ..rules.calendar import WorkingCalendar

__all__ = [
    "BUCKETS",
    "MANUAL",
    "NONE",
    "RankBy",
    "RepRow",
    "SourceRow",
    "SpeedToLead",
    "SpeedToLeadReport",
    "lead_rep",
    "percentile",
    "reps_from",
    "reps_of",
    "share",
    "sources_from",
    "sources_of",
    "speed_from",
    "speed_of",
]

NONE = "(none)"
MANUAL = "(manual)"
BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("<5m", timedelta(minutes=5)),
    ("5m-1h", timedelta(hours=1)),
    ("1h-4h", timedelta(hours=4)),
    ("4h-24h", timedelta(hours=24)),
    ("1d-7d", timedelta(days=7)),
    (">=7d", None),
)
"""The speed-to-lead distribution's buckets: each up to (not including) its bound."""
assert [bound.total_seconds() for _, bound in BUCKETS if bound is not None] == list(SPEED_BOUNDS)

RankBy = Literal[
    "completed",
    "on_time_rate",
    "median_time_to_complete",
    "overdue_now",
    "speed_to_lead_p50",
    "wins",
]
_LOWER_IS_BETTER = frozenset({"median_time_to_complete", "overdue_now", "speed_to_lead_p50"})


class Figure(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, validate_by_name=True)

    def to_document(self) -> dict[str, object]:
        """The JSON document (camelCase keys)."""
        return self.model_dump(mode="json", by_alias=True)


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --------------------------------------------------------------------------- speed to lead


class SpeedToLead(Figure):
    """Speed to lead of one group of leads (see the module's docstring)."""

    leads: int
    contacted: int
    p50_seconds: float | None
    p90_seconds: float | None
    within_5_minutes: float | None
    within_1_hour: float | None
    within_1_business_day: float | None
    buckets: dict[str, int]


class SpeedToLeadReport(Figure):
    """Speed to lead overall, per rep and per source."""

    overall: SpeedToLead
    by_rep: dict[str, SpeedToLead]
    by_source: dict[str, SpeedToLead]


def lead_rep(arrival: LeadArrival, contact: Completion | None) -> str:
    if arrival.owner is not None:
        return arrival.owner
    if contact is not None and contact.assigned_to is not None:
        return contact.assigned_to
    return NONE


_Lead = tuple[LeadArrival, Completion | None, float | None, bool]
"""A lead, its first contact, the seconds to it and whether it came within a business day."""


def _lead(
    arrival: LeadArrival, contact: Completion | None, calendar: WorkingCalendar, day: timedelta
) -> _Lead:
    if contact is None:
        return arrival, None, None, False
    waited = max(timedelta(0), contact.completed_at - arrival.arrived_at)
    # Working time never runs faster than the clock: a wait no longer than a working day is
    # within one; only longer ones ask the calendar.
    within = waited <= day or contact.completed_at <= calendar.add_business_hours(
        arrival.arrived_at, day.total_seconds() / 3600
    )
    return arrival, contact, waited.total_seconds(), within


_BOUNDS = [(name, None if bound is None else bound.total_seconds()) for name, bound in BUCKETS]


def _speed(leads: Sequence[_Lead]) -> SpeedToLead:
    seconds = [waited for _, _, waited, _ in leads if waited is not None]
    buckets = dict.fromkeys((name for name, _ in BUCKETS), 0)
    for waited in seconds:
        for name, bound in _BOUNDS:
            if bound is None or waited < bound:
                buckets[name] += 1
                break
    n = len(leads)
    return SpeedToLead(
        leads=n,
        contacted=len(seconds),
        p50_seconds=percentile(seconds, 50),
        p90_seconds=percentile(seconds, 90),
        within_5_minutes=share(sum(w <= 300 for w in seconds), n),
        within_1_hour=share(sum(w <= 3600 for w in seconds), n),
        within_1_business_day=share(sum(lead[3] for lead in leads), n),
        buckets=buckets,
    )


def _grouped(leads: Iterable[_Lead], key: Callable[[_Lead], str]) -> dict[str, list[_Lead]]:
    groups: dict[str, list[_Lead]] = defaultdict(list)
    for lead in leads:
        groups[key(lead)].append(lead)
    return dict(sorted(groups.items()))


def speed_of(
    arrivals: Sequence[LeadArrival],
    contacts: Collection[Completion],
    calendar: WorkingCalendar,
) -> SpeedToLeadReport:
    """Speed to lead of ``arrivals``, given the first contacts of their opportunities."""
    first = {contact.opportunity_id: contact for contact in contacts}
    day = calendar.day_length
    leads = [_lead(a, first.get(a.opportunity_id), calendar, day) for a in arrivals]
    return SpeedToLeadReport(
        overall=_speed(leads),
        by_rep={rep: _speed(group) for rep, group in _grouped(leads, _lead_rep).items()},
        by_source={
            source: _speed(group)
            for source, group in _grouped(leads, lambda lead: lead[0].source or NONE).items()
        },
    )


def _lead_rep(lead: _Lead) -> str:
    return lead_rep(lead[0], lead[1])


def speed_from(sums: LeadSums | None, within_day: int) -> SpeedToLead:
    """:class:`SpeedToLead` of a group of leads summed up in the store (None: no lead), given
    how many of them were contacted within one business day (``within_day``)."""
    if sums is None:
        return _speed([])
    n = sums.leads
    return SpeedToLead(
        leads=n,
        contacted=sums.contacted,
        p50_seconds=sums.p50_seconds,
        p90_seconds=sums.p90_seconds,
        within_5_minutes=share(sums.within[0], n),
        within_1_hour=share(sums.within[1], n),
        within_1_business_day=share(within_day, n),
        buckets={name: count for (name, _), count in zip(BUCKETS, sums.buckets, strict=True)},
    )


# --------------------------------------------------------------------------- sources


class SourceRow(Figure):
    """One lead source's performance (see the module's docstring)."""

    source: str
    leads: int
    contacted: int
    won: int
    conversion_rate: float | None
    median_time_to_win_seconds: float | None


def sources_of(
    arrivals: Sequence[LeadArrival],
    contacts: Collection[Completion],
    wins: dict[str, datetime],
) -> list[SourceRow]:
    """Per source of ``arrivals`` (by source name), given their first contacts and the first
    time each was won."""
    contacted = {contact.opportunity_id for contact in contacts}
    groups: dict[str, list[LeadArrival]] = defaultdict(list)
    for arrival in arrivals:
        groups[arrival.source or NONE].append(arrival)
    rows = []
    for source, group in sorted(groups.items()):
        to_win = [
            (wins[a.opportunity_id] - a.arrived_at).total_seconds()
            for a in group
            if a.opportunity_id in wins
        ]
        rows.append(
            SourceRow(
                source=source,
                leads=len(group),
                contacted=sum(a.opportunity_id in contacted for a in group),
                won=len(to_win),
                conversion_rate=share(len(to_win), len(group)),
                median_time_to_win_seconds=percentile(to_win, 50),
            )
        )
    return rows


def sources_from(by_source: dict[str, LeadSums]) -> list[SourceRow]:
    """:func:`sources_of` from the leads summed up per source in the store."""
    return [
        SourceRow(
            source=source,
            leads=sums.leads,
            contacted=sums.contacted,
            won=sums.won,
            conversion_rate=share(sums.won, sums.leads),
            median_time_to_win_seconds=sums.median_seconds_to_win,
        )
        for source, sums in sorted(by_source.items())
    ]


# --------------------------------------------------------------------------- reps


class RepRow(Figure):
    """One rep on the leaderboard (see the module's docstring)."""

    rep: str
    completed: int
    on_time_rate: float | None
    median_time_to_complete_seconds: float | None
    overdue_now: int
    speed_to_lead_p50_seconds: float | None
    wins: int


def reps_of(
    groups: Sequence[CompletionGroup],
    speed: SpeedToLeadReport,
    arrivals: Sequence[LeadArrival],
    contacts: Collection[Completion],
    wins: dict[str, datetime],
    overdue: dict[str, int],
    *,
    rank_by: RankBy = "completed",
) -> list[RepRow]:
    """The leaderboard: every rep with a completion (``groups``: the completions of the
    period per assignee), a lead or an overdue activity."""
    first = {contact.opportunity_id: contact for contact in contacts}
    won: Counter[str] = Counter(
        lead_rep(a, first.get(a.opportunity_id)) for a in arrivals if a.opportunity_id in wins
    )
    done = {group.key or NONE: group for group in groups}
    empty = CompletionGroup(None, 0, 0, 0, None)
    reps = set(done) | set(speed.by_rep) | set(overdue)
    rows = []
    for rep in reps:
        mine = done.get(rep, empty)
        lead_speed = speed.by_rep.get(rep)
        rows.append(
            RepRow(
                rep=rep,
                completed=mine.completed,
                on_time_rate=share(mine.on_time, mine.with_due),
                median_time_to_complete_seconds=mine.median_seconds_to_complete,
                overdue_now=overdue.get(rep, 0),
                speed_to_lead_p50_seconds=None if lead_speed is None else lead_speed.p50_seconds,
                wins=won.get(rep, 0),
            )
        )
    return _ranked(rows, rank_by)


def reps_from(
    groups: Sequence[CompletionGroup],
    by_rep: dict[str, LeadSums],
    overdue: dict[str, int],
    *,
    rank_by: RankBy = "completed",
) -> list[RepRow]:
    """:func:`reps_of` from the leads summed up per rep in the store (``by_rep``)."""
    done = {group.key or NONE: group for group in groups}
    empty = CompletionGroup(None, 0, 0, 0, None)
    rows = []
    for rep in set(done) | set(by_rep) | set(overdue):
        mine = done.get(rep, empty)
        leads = by_rep.get(rep)
        rows.append(
            RepRow(
                rep=rep,
                completed=mine.completed,
                on_time_rate=share(mine.on_time, mine.with_due),
                median_time_to_complete_seconds=mine.median_seconds_to_complete,
                overdue_now=overdue.get(rep, 0),
                speed_to_lead_p50_seconds=None if leads is None else leads.p50_seconds,
                wins=0 if leads is None else leads.won,
            )
        )
    return _ranked(rows, rank_by)


def _ranked(rows: list[RepRow], rank_by: RankBy) -> list[RepRow]:
    field = f"{rank_by}_seconds" if rank_by.endswith(("complete", "p50")) else rank_by
    lower = rank_by in _LOWER_IS_BETTER

    def key(row: RepRow) -> tuple[bool, float, str]:
        value = getattr(row, field)
        if value is None:
            return True, 0.0, row.rep
        return False, value if lower else -value, row.rep

    return sorted(rows, key=key)
