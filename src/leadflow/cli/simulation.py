"""The demo's simulation: a small sales team working leads on a controlled clock, with the default
rules and the periodic jobs, on any :class:`~leadflow.ports.Storage`.

Everything random comes from ``random.Random`` seeded with the seed and a name (the day, the
activity and the time), and every id is derived, so a run on a fresh store is the same every
time. All state is in the store: the day the clock stopped at is a counter (``demo:day``), the
opportunities' owners derive from their ids, and what a rep does next depends only on the
activity in front of them. A second run on the same store continues where the first stopped.

This module imports no CLI library; :mod:`leadflow.cli.demo` renders what it returns.
"""

from __future__ import annotations

import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any, Final

from ..access import Operations, Principal, Role
from ..adapters import (
    RecordingEventSink,
    RecordingMessenger,
    RecordingNotifier,
    StaticTeamDirectory,
)
from ..clock import ManualClock
from ..models import Activity, ActivityState, Event
from ..ports import Contact, Integrations, Storage
from ..ports.periodic import JobRun
from ..queries import ActivityFilter
from ..records import ScheduledAction, ScheduledActionState
from ..rules import default_rules
from ..runtime import FlowSettings, LeadFlow, LeadflowJobs

__all__ = ["REPS", "START", "DayReport", "DemoOpportunities", "DemoReport", "RepLine", "Simulation"]

REPS: Final = ("alice", "bob", "carol", "dan")
DISPATCHER: Final = Principal("dana", Role.DISPATCHER)
MANAGER: Final = Principal("morgan", Role.ADMIN)
START: Final = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
DAY_COUNTER: Final = "demo:day"

_IDS: Final = uuid.UUID("3e0b7c55-0d5f-4c8e-9a51-de30de30de30")
_SOURCE_NAMES: Final = ("website", "referral", "phone", "trade_show")
_SOURCE_WEIGHTS: Final = (45, 20, 20, 15)
_WORKDAY: Final = tuple(timedelta(hours=h) for h in range(7, 19))  # 07:00-18:00, hourly
_WEEKEND: Final = tuple(timedelta(hours=h) for h in (8, 14))
_NIGHT: Final = timedelta(hours=2)  # the cleanup job's time

# What a rep's call leads to, by the rule that planned it: (outcome, then what, weight).
_FIRST_CALL: Final = (
    ("successful", "quote", 30),
    ("no_answer", "retry", 20),
    ("voicemail", "retry", 12),
    ("callback_requested", None, 25),
    ("not_interested", "lost", 13),
)
_BY_RULE: Final[dict[str, tuple[tuple[str, str | None, int], ...]]] = {
    "default-quote-follow-up": (
        ("converted", "won", 35),
        ("successful", "negotiating", 30),
        ("not_interested", "lost", 25),
        ("no_answer", "retry", 10),
    ),
    "default-negotiating-weekly": (
        ("converted", "won", 45),
        ("successful", "negotiating", 30),
        ("not_interested", "lost", 25),
    ),
    "default-won-opportunity": (("successful", None, 1),),
    "default-lost-re-engagement": (
        ("successful", "quote", 20),
        ("not_interested", None, 60),
        ("no_answer", None, 20),
    ),
}


def _derived_id(*parts: str) -> str:
    return uuid.uuid5(_IDS, "/".join(parts)).hex[:20]


class DemoOpportunities:
    """The demo's CRM: every ``opp-...`` id exists; its owner derives from the id (so a later
    run knows the owners of earlier runs' leads) unless reassigned."""

    def __init__(self, reps: tuple[str, ...] = REPS) -> None:
        self._reps = reps
        self._owners: dict[str, str] = {}
        self.statuses: dict[str, str] = {}

    def owner(self, opportunity_id: str) -> str | None:
        default = self._reps[zlib.crc32(opportunity_id.encode()) % len(self._reps)]
        return self._owners.get(opportunity_id, default)

    def contact(self, opportunity_id: str) -> Contact:
        return Contact(f"{opportunity_id}@example.com", "+1 555 0100")

    def update_status(self, opportunity_id: str, status: str, *, actor: str | None) -> str | None:
        previous = self.statuses.get(opportunity_id, "new")
        self.statuses[opportunity_id] = status
        return previous

    def assign_owner(self, opportunity_id: str, user_id: str, *, actor: str | None) -> None:
        self._owners[opportunity_id] = user_id


@dataclass(frozen=True, slots=True)
class DayReport:
    """One simulated day, for the progress display."""

    number: int  # 1-based, counted over every run on the store
    date: datetime
    leads: int
    completions: int


@dataclass(frozen=True, slots=True)
class RepLine:
    """One rep's figures over everything in the store."""

    rep: str
    activities: int
    completed: int
    open: int
    overdue: int
    completion_rate: float
    won: int  # in this run


@dataclass(slots=True)
class DemoReport:
    """What a run did (this run's counters) and where the store stands afterwards."""

    first_day: int = 0  # 1-based
    days: int = 0
    start: datetime = START
    end: datetime = START  # the last day simulated
    earlier_activities: int = 0
    leads: Counter[str] = field(default_factory=Counter)  # by source
    completions: Counter[str] = field(default_factory=Counter)  # by outcome
    results: Counter[str] = field(default_factory=Counter)  # quotes, won, lost...
    manual_activities: int = 0
    events: int = 0
    notifications: Counter[str] = field(default_factory=Counter)  # by template
    job_runs: Counter[str] = field(default_factory=Counter)  # by job
    job_failures: int = 0
    handle_errors: list[str] = field(default_factory=list)
    reps: list[RepLine] = field(default_factory=list)
    outcomes_all: dict[str, int] = field(default_factory=dict)
    states_all: dict[str, int] = field(default_factory=dict)
    total_activities: int = 0
    timeline_opportunity: str | None = None
    timeline: list[Activity] = field(default_factory=list)
    parked: list[ScheduledAction] = field(default_factory=list)
    won_by: Counter[str] = field(default_factory=Counter)
    won: set[str] = field(default_factory=set)  # opportunities won in this run


class Simulation:
    """A sales team (``REPS``, a dispatcher, a manager) over ``days`` days on ``storage``.

    :meth:`run` seeds the default rules into an empty rule store, then simulates day after
    day: leads arrive on weekdays (website, referral, phone, trade show; some urgent), the rules
    plan calls, reps complete what is due with random outcomes (quotes, callbacks, wins,
    losses), the dispatcher books first calls and retries, and the jobs run at their times.
    """

    def __init__(self, storage: Storage, *, seed: int = 7) -> None:
        self.seed = seed
        self.storage = storage
        self.clock = ManualClock(START)
        self.notifier = RecordingNotifier()
        self.opportunities = DemoOpportunities()
        self.flow = LeadFlow(
            storage,
            Integrations(
                notifier=self.notifier,
                messenger=RecordingMessenger(),
                opportunities=self.opportunities,
                team=StaticTeamDirectory(REPS),
                events=RecordingEventSink(),
            ),
            clock=self.clock,
            # The rules change only through this flow: no need to re-read them every 30 s.
            settings=FlowSettings(rules_refresh=timedelta(days=1)),
        )
        self.ops = Operations(self.flow)
        self.report = DemoReport()
        self.runner = LeadflowJobs(self.flow).runner(on_run=self._job_ran)
        self._new_opportunities: list[str] = []

    # ------------------------------------------------------------------ the run

    def run(self, days: int, on_day: Callable[[DayReport], object] | None = None) -> DemoReport:
        """Simulate ``days`` days after the last one simulated on this store; returns the
        report (also kept as ``self.report``)."""
        report = self.report
        report.earlier_activities = self._total()
        if not self.storage.rules.list():
            self.flow.rules.ensure_defaults(default_rules())
        for index in range(days):
            day = self.storage.counters.next(DAY_COUNTER) - 1
            date = START + timedelta(days=day)
            if index == 0:
                report.first_day, report.start = day + 1, date
            leads_before, done_before = report.leads.total(), report.completions.total()
            self._day(day, date)
            report.days += 1
            report.end = date
            if on_day is not None:
                on_day(
                    DayReport(
                        day + 1,
                        date,
                        report.leads.total() - leads_before,
                        report.completions.total() - done_before,
                    )
                )
        self._summarise()
        return report

    def _day(self, day: int, date: datetime) -> None:
        weekday = date.weekday() < 5
        arrivals = self._arrivals(day, date) if weekday else []
        for offset in (_NIGHT, *(_WORKDAY if weekday else _WEEKEND)):
            now = date + offset
            while arrivals and arrivals[0].time <= now:
                self._lead(arrivals.pop(0))
            self.clock.set(now)
            self.runner.run_pending()
            if weekday and timedelta(hours=8) <= offset <= timedelta(hours=18):
                self._work(now)

    def _arrivals(self, day: int, date: datetime) -> list[Event]:
        rng = Random(f"{self.seed}:leads:{day}")
        events = []
        for n in range(1, rng.choice((1, 2, 2, 3, 3, 4)) + 1):
            opportunity = f"opp-{day + 1:03d}-{n}"
            at = date + timedelta(hours=8, minutes=rng.randrange(0, 10 * 60))
            payload: dict[str, Any] = {
                "opportunityId": opportunity,
                "customerId": f"cust-{day + 1:03d}-{n}",
                "leadSource": rng.choices(_SOURCE_NAMES, weights=_SOURCE_WEIGHTS)[0],
            }
            if rng.random() < 0.12:
                payload["priority"] = "urgent"
            events.append(
                Event(id=f"crm-{opportunity}", type="opportunity.created", time=at, payload=payload)
            )
        return sorted(events, key=lambda e: (e.time, e.id))

    # ------------------------------------------------------------------ what people do

    def _handle(self, event: Event) -> None:
        self.report.events += 1
        result = self.flow.handle(event)
        self.report.handle_errors.extend(str(e) for e in result.all_errors())

    def _lead(self, event: Event) -> None:
        self.clock.set(event.time)
        opportunity = str(event.payload["opportunityId"])
        self._new_opportunities.append(opportunity)
        self.report.leads[str(event.payload["leadSource"])] += 1
        self._handle(event)
        if not self.storage.activities.for_opportunity(opportunity):
            # No rule for this source: the dispatcher books the first call.
            self._book_call(opportunity, event.time, "first", "First call to a new lead")

    def _book_call(self, opportunity: str, now: datetime, tag: str, subject: str) -> None:
        self.clock.set(now)
        due = now + timedelta(hours=2 if tag == "first" else 24)
        self.ops.create_activity(
            DISPATCHER,
            {
                "activityId": f"call-{_derived_id(opportunity, tag, now.isoformat())}",
                "opportunityId": opportunity,
                "customerId": "cust-" + opportunity.removeprefix("opp-"),
                "activityType": "call",
                "subject": subject,
                "scheduledDate": now,
                "dueDate": due,
                "assignedTo": self.opportunities.owner(opportunity),
            },
        )
        self.report.manual_activities += 1

    def _work(self, now: datetime) -> None:
        """Each rep looks at what is overdue or due soon and gets to some of it."""
        soon = now + timedelta(hours=2)
        todo: dict[str | None, list[Activity]] = {}
        overdue = self.ops.overdue_activities(MANAGER, limit=500)
        pending = self.ops.pending_activities(MANAGER, limit=500)
        for activity in overdue + pending:
            if activity.due_date is None or activity.due_date <= soon:
                todo.setdefault(activity.assigned_to, []).append(activity)
        for rep in REPS:
            principal = Principal(rep, Role.SALES)
            at = now
            for activity in todo.get(rep, [])[:3]:
                rng = Random(f"{self.seed}:{activity.activity_id}:{now.isoformat()}")
                if rng.random() > 0.55:
                    continue
                at += timedelta(minutes=7)
                self._complete(principal, activity, rng, at)

    def _complete(self, rep: Principal, activity: Activity, rng: Random, at: datetime) -> None:
        rule = activity.metadata.automation_rule_id if activity.metadata else None
        choices = _BY_RULE.get(rule or "", _FIRST_CALL)
        outcome, then, _ = rng.choices(choices, weights=[c[2] for c in choices])[0]
        self.clock.set(at)
        result = self.ops.complete_activity(rep, activity.activity_id, outcome)
        if result.follow_up is not None:
            self.report.handle_errors.extend(str(e) for e in result.follow_up.all_errors())
        self.report.completions[outcome] += 1
        opportunity = activity.opportunity_id
        base = {"opportunityId": opportunity, "customerId": activity.customer_id}
        if then == "quote":
            value = rng.randrange(20, 180) * 100
            self.clock.set(at + timedelta(minutes=3))
            self.ops.create_activity(
                rep,
                {
                    "opportunityId": opportunity,
                    "customerId": activity.customer_id,
                    "activityType": "quote_sent",
                    "subject": f"Quote sent: ${value:,}",
                    "completedDate": at + timedelta(minutes=3),
                    "outcome": "successful",
                },
            )
            self.report.manual_activities += 1
            self.report.results["quotes"] += 1
            self._handle(
                Event(
                    id=f"est-{_derived_id(activity.activity_id)}",
                    type="estimate.created",
                    time=at + timedelta(minutes=3),
                    payload={**base, "estimateValue": value},
                )
            )
        elif then in ("won", "lost", "negotiating"):
            previous = self.opportunities.update_status(opportunity, then, actor=rep.user_id)
            self.report.results[then] += 1
            if then == "won":
                self.report.won_by[rep.user_id] += 1
                self.report.won.add(opportunity)
            self._handle(
                Event(
                    id=f"status-{_derived_id(activity.activity_id)}",
                    type="opportunity.status_changed",
                    time=at,
                    payload={**base, "oldStatus": previous, "newStatus": then},
                    actor=rep.user_id,
                )
            )
        elif then == "retry" and rng.random() < 0.7:
            self._book_call(
                opportunity, at + timedelta(minutes=1), activity.activity_id, "Try again"
            )
            self.report.results["retries booked"] += 1

    # ------------------------------------------------------------------ the summary

    def _job_ran(self, run: JobRun) -> None:
        self.report.job_runs[run.job] += 1
        if run.error is not None:
            self.report.job_failures += 1

    def _total(self) -> int:
        return self.storage.activities.statistics(None, as_of=self.clock.now()).total

    def _summarise(self) -> None:
        report, now = self.report, self.clock.now()
        activities = self.storage.activities
        for rep in REPS:
            stats = activities.statistics(ActivityFilter(assigned_to=rep), as_of=now)
            completed = stats.by_state.get(ActivityState.COMPLETED.value, 0)
            report.reps.append(
                RepLine(
                    rep,
                    stats.total,
                    completed,
                    stats.total - completed,
                    stats.by_state.get(ActivityState.OVERDUE.value, 0),
                    stats.completion_rate,
                    report.won_by[rep],
                )
            )
        overall = activities.statistics(None, as_of=now)
        report.total_activities = overall.total
        report.outcomes_all = dict(sorted(overall.by_outcome.items()))
        report.states_all = dict(sorted(overall.by_state.items()))
        report.notifications = Counter(n.template for n in self.notifier.sent)
        report.parked = self.storage.scheduled.list(ScheduledActionState.PARKED, limit=20)
        # The story worth telling: a lead won in this run with the most steps to get there.
        best: tuple[bool, int, str] | None = None
        for opportunity in self._new_opportunities:
            count = len(activities.for_opportunity(opportunity))
            score = (opportunity in report.won, count, opportunity)
            if best is None or score[:2] > best[:2]:
                best = score
        if best is not None:
            report.timeline_opportunity = best[2]
            report.timeline = self.ops.activity_timeline(MANAGER, best[2])
