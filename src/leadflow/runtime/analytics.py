"""The analytics a sales manager opens every morning: every figure is defined here, once.

Each figure is a pure function over the facts of :mod:`leadflow.facts` (``*_of``), and
:class:`Analytics` reads those facts from the stores for a period and calls it.

**Period and cohorts.** A period is half-open, ``[start, end)``. Lead figures (speed to lead,
lead sources, a rep's wins) are about the *cohort* of leads that **arrived** in the period,
whatever happened to them later (a lead that arrived on the 30th and was won the next month
counts as won). Activity figures (completed, on time, time to complete, automation) are about
activities **completed** in the period; the funnel counts **status changes** in the period.

**Rep and source of a lead.** A lead's rep is its arrival's owner (``assignedTo`` / ``ownerId``
of ``opportunity.created``), else the assignee of its first contact; its source is the
arrival's ``leadSource`` / ``source``. A lead with neither is counted in the totals and under
the key ``"(none)"`` in per-rep / per-source rows.

**Medians and percentiles** are nearest-rank: the p-th percentile of n sorted values is the
``ceil(p / 100 * n)``-th (the median is p50: of an even count, the lower middle value). None
when there are no values. Durations are in seconds.

**Speed to lead.** A lead's response time is from its arrival to its *first contact*: the
earliest completed call, email or meeting of its opportunity (:data:`~leadflow.facts.
CONTACT_TYPES`; a contact completed before the arrival counts as 0). ``leads`` counts the
cohort, ``contacted`` those with a first contact; ``p50`` / ``p90`` are over the contacted
leads; ``within_5_minutes``, ``within_1_hour`` and ``within_1_business_day`` are shares of
**all** leads (an uncontacted lead is not within anything) contacted at most that long after
arrival; a business day is one working day's length of working time on the flow's calendar
(:meth:`WorkingCalendar.add_business_hours`: a lead arriving Saturday has until Monday's close).
``buckets`` count the contacted leads by response time: under 5 min, 5-60 min, 1-4 h, 4-24 h,
1-7 days, 7 days and more. The same per rep and per source.

**Lead source performance**, per source: ``leads``; ``contacted`` (leads with a first contact);
``won`` (leads whose opportunity ever changed to the won status, ``"won"`` unless told);
``conversion_rate = won / leads``; ``median_time_to_win`` (arrival to the first change to won).

**Rep leaderboard**, per rep: ``completed`` (activities assigned to the rep completed in the
period); ``on_time_rate`` (of those with a due date, the share completed at or before it; None
without any); ``median_time_to_complete`` (creation to completion, of those with a creation
date); ``overdue_now`` (open activities assigned to the rep past due at ``as_of``, from the
activity store); ``speed_to_lead_p50`` and ``wins`` (of the leads of the rep's cohort).
Ranked by the chosen figure, best first (the most of a count or rate, the least of a time;
None last), ties by rep id.

**Funnel.** For the ordered ``stages`` (statuses), ``reached[i]`` is the number of
opportunities with a change to ``stages[i]`` in the period; between consecutive stages,
``advanced`` counts those that reached both, ``conversion = advanced / reached[i]`` (None when
0) and ``drop_off = reached[i] - advanced``. An opportunity may skip a stage: it counts where
it was seen.

**Automation effectiveness**, per automation id (an activity's ``metadata.automationRuleId``:
the rule, or a sequence's steps, that created it; ``"(manual)"`` for activities no automation
created): ``completed`` activities in the period and their ``outcomes``; ``wins`` by
**last-touch attribution**: an opportunity that changed to won in the period is credited to the
automation id of its latest activity completed at or before the win (within the period); no
activity before the win: no credit. ``win_rate = wins / opportunities touched`` (opportunities
with a completed activity of that automation in the period).

**Cost.** Each figure reads the facts of its period through one or two indexed queries per
store (:class:`~leadflow.ports.AnalyticsStore`) and reduces them here in one pass: time and
memory grow with the facts in the period (arrivals, changes, completions), not with the store;
``overdue_now`` is one activity-statistics query.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from ..errors import InvalidInputError
from ..facts import Completion, LeadArrival, StatusChange
from ..models import ActivityState
from ..ports import ActivityRepository, AnalyticsStore
from ..queries import ActivityFilter
from ..rules.calendar import WorkingCalendar

__all__ = [
    "DEFAULT_STAGES",
    "NONE",
    "Analytics",
    "AutomationRow",
    "Dashboard",
    "Funnel",
    "FunnelStep",
    "RankBy",
    "RepRow",
    "SourceRow",
    "SpeedToLead",
    "SpeedToLeadReport",
    "automation_of",
    "funnel_of",
    "percentile",
    "reps_of",
    "sources_of",
    "speed_of",
]

NONE = "(none)"
MANUAL = "(manual)"
DEFAULT_STAGES: tuple[str, ...] = ("new", "contacted", "qualified", "proposal", "won")
"""The funnel's stages unless told otherwise."""

BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("<5m", timedelta(minutes=5)),
    ("5m-1h", timedelta(hours=1)),
    ("1h-4h", timedelta(hours=4)),
    ("4h-24h", timedelta(hours=24)),
    ("1d-7d", timedelta(days=7)),
    (">=7d", None),
)
"""The speed-to-lead distribution's buckets: each up to (not including) its bound."""

RankBy = Literal[
    "completed",
    "on_time_rate",
    "median_time_to_complete",
    "overdue_now",
    "speed_to_lead_p50",
    "wins",
]
_LOWER_IS_BETTER = frozenset({"median_time_to_complete", "overdue_now", "speed_to_lead_p50"})


class _Figure(BaseModel):
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


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --------------------------------------------------------------------------- speed to lead


class SpeedToLead(_Figure):
    """Speed to lead of one group of leads (see the module's docstring)."""

    leads: int
    contacted: int
    p50_seconds: float | None
    p90_seconds: float | None
    within_5_minutes: float | None
    within_1_hour: float | None
    within_1_business_day: float | None
    buckets: dict[str, int]


class SpeedToLeadReport(_Figure):
    """Speed to lead overall, per rep and per source."""

    overall: SpeedToLead
    by_rep: dict[str, SpeedToLead]
    by_source: dict[str, SpeedToLead]


def _rep(arrival: LeadArrival, contact: Completion | None) -> str:
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
        within_5_minutes=_share(sum(w <= 300 for w in seconds), n),
        within_1_hour=_share(sum(w <= 3600 for w in seconds), n),
        within_1_business_day=_share(sum(lead[3] for lead in leads), n),
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
    return _rep(lead[0], lead[1])


# --------------------------------------------------------------------------- sources


class SourceRow(_Figure):
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
                conversion_rate=_share(len(to_win), len(group)),
                median_time_to_win_seconds=percentile(to_win, 50),
            )
        )
    return rows


# --------------------------------------------------------------------------- reps


class RepRow(_Figure):
    """One rep on the leaderboard (see the module's docstring)."""

    rep: str
    completed: int
    on_time_rate: float | None
    median_time_to_complete_seconds: float | None
    overdue_now: int
    speed_to_lead_p50_seconds: float | None
    wins: int


def reps_of(
    completions: Sequence[Completion],
    speed: SpeedToLeadReport,
    arrivals: Sequence[LeadArrival],
    contacts: Collection[Completion],
    wins: dict[str, datetime],
    overdue: dict[str, int],
    *,
    rank_by: RankBy = "completed",
) -> list[RepRow]:
    """The leaderboard: every rep with a completion, a lead or an overdue activity."""
    first = {contact.opportunity_id: contact for contact in contacts}
    won: Counter[str] = Counter(
        _rep(a, first.get(a.opportunity_id)) for a in arrivals if a.opportunity_id in wins
    )
    done: dict[str, list[Completion]] = defaultdict(list)
    for completion in completions:
        done[completion.assigned_to or NONE].append(completion)
    reps = set(done) | set(speed.by_rep) | set(overdue)
    rows = []
    for rep in reps:
        mine = done.get(rep, [])
        due = [c for c in mine if c.due_at is not None]
        on_time = sum(c.due_at is not None and c.completed_at <= c.due_at for c in due)
        times = [(c.completed_at - c.created_at).total_seconds() for c in mine if c.created_at]
        lead_speed = speed.by_rep.get(rep)
        rows.append(
            RepRow(
                rep=rep,
                completed=len(mine),
                on_time_rate=_share(on_time, len(due)),
                median_time_to_complete_seconds=percentile(times, 50),
                overdue_now=overdue.get(rep, 0),
                speed_to_lead_p50_seconds=None if lead_speed is None else lead_speed.p50_seconds,
                wins=won.get(rep, 0),
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


# --------------------------------------------------------------------------- funnel


class FunnelStep(_Figure):
    """From one stage to the next."""

    from_stage: str
    to_stage: str
    advanced: int
    conversion: float | None
    drop_off: int


class Funnel(_Figure):
    """Opportunities per stage and the steps between them (see the module's docstring)."""

    stages: list[str]
    reached: list[int]
    steps: list[FunnelStep]


def funnel_of(changes: Iterable[StatusChange], stages: Sequence[str]) -> Funnel:
    """The funnel of ``changes`` over ``stages``, in order (:class:`InvalidInputError` unless
    they are 1 to 50 distinct strings)."""
    if (
        isinstance(stages, str)
        or not 0 < len(stages) <= 50
        or not all(isinstance(stage, str) for stage in stages)
        or len(set(stages)) != len(stages)
    ):
        raise InvalidInputError("expected 1 to 50 distinct stage names", field="stages")
    seen: dict[str, set[str]] = {stage: set() for stage in stages}
    for change in changes:
        if change.to_status in seen:
            seen[change.to_status].add(change.opportunity_id)
    steps = []
    for here, there in pairwise(stages):
        advanced = len(seen[here] & seen[there])
        steps.append(
            FunnelStep(
                from_stage=here,
                to_stage=there,
                advanced=advanced,
                conversion=_share(advanced, len(seen[here])),
                drop_off=len(seen[here]) - advanced,
            )
        )
    return Funnel(stages=list(stages), reached=[len(seen[s]) for s in stages], steps=steps)


# --------------------------------------------------------------------------- automation


class AutomationRow(_Figure):
    """What one automation (a rule, a sequence's steps, or none) earned in the period."""

    automation_id: str
    completed: int
    outcomes: dict[str, int]
    touched: int
    wins: int
    win_rate: float | None


def automation_of(
    completions: Sequence[Completion], changes: Iterable[StatusChange], won_status: str
) -> list[AutomationRow]:
    """Per automation id of ``completions``, with last-touch wins from ``changes``."""
    by_opportunity: dict[str, list[Completion]] = defaultdict(list)
    groups: dict[str, list[Completion]] = defaultdict(list)
    for completion in completions:
        by_opportunity[completion.opportunity_id].append(completion)
        groups[completion.rule_id or MANUAL].append(completion)
    won_at: dict[str, datetime] = {}
    for change in changes:
        if change.to_status == won_status:
            known = won_at.get(change.opportunity_id)
            won_at[change.opportunity_id] = min(known or change.changed_at, change.changed_at)
    credit: Counter[str] = Counter()
    for opportunity, at in won_at.items():
        before = [c for c in by_opportunity.get(opportunity, ()) if c.completed_at <= at]
        if before:
            last = max(before, key=lambda c: (c.completed_at, c.activity_id))
            credit[last.rule_id or MANUAL] += 1
    rows = []
    for automation, group in sorted(groups.items()):
        touched = len({c.opportunity_id for c in group})
        outcomes = Counter(str(c.outcome) for c in group if c.outcome is not None)
        rows.append(
            AutomationRow(
                automation_id=automation,
                completed=len(group),
                outcomes=dict(sorted(outcomes.items())),
                touched=touched,
                wins=credit.get(automation, 0),
                win_rate=_share(credit.get(automation, 0), touched),
            )
        )
    return rows


# --------------------------------------------------------------------------- dashboard


class Dashboard(_Figure):
    """Every figure of one period, as the report shows them."""

    start: datetime
    end: datetime
    as_of: datetime
    speed_to_lead: SpeedToLeadReport
    sources: list[SourceRow]
    leaderboard: list[RepRow]
    funnel: Funnel | None
    automation: list[AutomationRow]


# --------------------------------------------------------------------------- reading


class Analytics:
    """Reads the facts of a period from the stores and computes the figures above.

    ``reps`` / ``sources`` filter the leads (and ``reps`` the completions) a figure takes:
    None takes all."""

    def __init__(
        self,
        store: AnalyticsStore,
        activities: ActivityRepository,
        calendar: WorkingCalendar,
        *,
        won_status: str = "won",
    ) -> None:
        self._store = store
        self._activities = activities
        self._calendar = calendar
        self.won_status = won_status

    def _leads(
        self,
        start: datetime,
        end: datetime,
        reps: Collection[str] | None,
        sources: Collection[str] | None,
    ) -> tuple[list[LeadArrival], list[Completion]]:
        arrivals = self._store.arrivals(start, end, sources=sources)
        contacts = self._store.first_contacts(start, end)
        if reps is not None:
            wanted = set(reps)
            first = {contact.opportunity_id: contact for contact in contacts}
            arrivals = [a for a in arrivals if _rep(a, first.get(a.opportunity_id)) in wanted]
        return arrivals, contacts

    def speed_to_lead(
        self,
        start: datetime,
        end: datetime,
        *,
        reps: Collection[str] | None = None,
        sources: Collection[str] | None = None,
    ) -> SpeedToLeadReport:
        arrivals, contacts = self._leads(start, end, reps, sources)
        return speed_of(arrivals, contacts, self._calendar)

    def sources(
        self,
        start: datetime,
        end: datetime,
        *,
        reps: Collection[str] | None = None,
        sources: Collection[str] | None = None,
    ) -> list[SourceRow]:
        arrivals, contacts = self._leads(start, end, reps, sources)
        wins = self._store.reached(start, end, self.won_status)
        return sources_of(arrivals, contacts, wins)

    def leaderboard(
        self,
        start: datetime,
        end: datetime,
        *,
        as_of: datetime,
        rank_by: RankBy = "completed",
        reps: Collection[str] | None = None,
        sources: Collection[str] | None = None,
    ) -> list[RepRow]:
        arrivals, contacts = self._leads(start, end, reps, sources)
        completions = self._store.completions(start, end, assigned_to=reps)
        overdue = self._activities.statistics(
            ActivityFilter(state=ActivityState.OVERDUE, as_of=as_of), as_of=as_of
        ).by_assignee
        if reps is not None:
            overdue = {rep: n for rep, n in overdue.items() if rep in reps}
        wins = self._store.reached(start, end, self.won_status)
        speed = speed_of(arrivals, contacts, self._calendar)
        return reps_of(completions, speed, arrivals, contacts, wins, overdue, rank_by=rank_by)

    def funnel(
        self, start: datetime, end: datetime, *, stages: Sequence[str] = DEFAULT_STAGES
    ) -> Funnel:
        return funnel_of(self._store.status_changes(start, end), stages)

    def automation(
        self, start: datetime, end: datetime, *, reps: Collection[str] | None = None
    ) -> list[AutomationRow]:
        completions = self._store.completions(start, end, assigned_to=reps)
        return automation_of(completions, self._store.status_changes(start, end), self.won_status)

    def dashboard(
        self,
        start: datetime,
        end: datetime,
        *,
        as_of: datetime,
        rank_by: RankBy = "completed",
        reps: Collection[str] | None = None,
        stages: Sequence[str] | None = DEFAULT_STAGES,
    ) -> Dashboard:
        """Every figure of ``[start, end)`` (``reps`` as above; the funnel, which is not per
        rep, is left out when ``stages`` is None)."""
        return Dashboard(
            start=start,
            end=end,
            as_of=as_of,
            speed_to_lead=self.speed_to_lead(start, end, reps=reps),
            sources=self.sources(start, end, reps=reps),
            leaderboard=self.leaderboard(start, end, as_of=as_of, rank_by=rank_by, reps=reps),
            funnel=None if stages is None else self.funnel(start, end, stages=stages),
            automation=self.automation(start, end, reps=reps),
        )
