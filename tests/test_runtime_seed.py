"""The seed's workflow examples and its end-to-end integration test, with the default rules, a
ManualClock and the periodic jobs running as the clock advances (issue 9, "The seed's timing").

Seed, "Workflow Examples": the website lead's call is due one hour after the lead and a
callback requested on it is due the next day (Example 1); the quote follow-up is due 48 hours
after the quote, reminded 30 minutes before it is due, then overdue with the hourly notice
(Example 2); a lost opportunity's re-engagement call is due 720 hours later (Example 3).
On every backend: memory, mongomock, a SQLite file and the test server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow import Activity, Event, FlowSettings, LeadFlow, ManualClock, Outcome
from leadflow.runtime.jobs import JobSettings, LeadflowJobs
from leadflow.scheduling import JobRun, JobRunner

from .scheduling_support import drive
from .service_support import ALICE, BOB, EVERY_BACKEND, build_flow, close_sql, ops, payloads, rule

MONDAY = datetime(2026, 1, 5, 9, tzinfo=UTC)


@pytest.fixture(params=EVERY_BACKEND)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The examples on every backend: memory, mongomock, a SQLite file, the test server."""
    yield str(request.param)
    close_sql()


class Simulation:
    """A flow with the default rules and the seed's jobs (default schedules), and a clock that
    only moves forward through :meth:`until`, running every job slot on the way."""

    def __init__(self, backend: str, start: datetime, **options: Any) -> None:
        self.clock = ManualClock(start)
        self.flow: LeadFlow = build_flow(backend, clock=self.clock, **options)
        settings = JobSettings()
        if backend != "memory":
            # Each slot of the every-minute due-actions job is a claim in the job store (a
            # commit on SQL; slow on mongomock); the seed's examples plan only eager
            # create_activity actions, so nothing waits for it.
            settings = dataclasses.replace(
                settings, due_actions=dataclasses.replace(settings.due_actions, enabled=False)
            )
        self.runner: JobRunner = LeadflowJobs(self.flow, settings).runner(worker_id="app")
        self.runs: list[JobRun] = []

    def until(self, when: datetime) -> None:
        if when > self.clock.now():
            self.runs += drive(self.clock, [self.runner], until=when)
            self.clock.set(when)
        self.runs += self.runner.run_pending()

    def jump(self, when: datetime) -> None:
        """Time passes with the runner asleep (only the latest slot of each job runs)."""
        self.clock.set(when)
        self.runs += self.runner.run_pending()

    def handle(self, event_type: str, event_id: str, **payload: Any) -> Any:
        return self.flow.handle(
            Event(id=event_id, type=event_type, time=self.clock.now(), payload=payload)
        )

    def activities(self, opportunity: str) -> list[Activity]:
        return self.flow.storage.activities.for_opportunity(opportunity)

    def reminders(self) -> list[tuple[datetime, list[str], list[str]]]:
        """(when, recipients, activity ids) of each upcoming-activities notification."""
        return [
            (p["asOf"], p["recipients"], [a["activityId"] for a in p["activities"]])
            for p in payloads(self.flow, "notification.upcoming_activities")
        ]

    def overdue_notices(self) -> list[tuple[datetime, list[str], list[str]]]:
        return [
            (p["asOf"], p["recipients"], [a["activityId"] for a in p["activities"]])
            for p in payloads(self.flow, "notification.overdue_activities")
        ]


def ids(activities: list[Activity]) -> list[str]:
    return [a.activity_id for a in activities]


# ------------------------------------------------------------------ Example 1 (and the seed's
# end-to-end integration test)


def test_example_1_website_lead_call_due_in_an_hour_callback_due_next_day(backend: str) -> None:
    sim = Simulation(backend, MONDAY)
    alice = ops(sim.flow)
    # 1-3. A website lead arrives; "New Website Lead Follow-up" matches.
    result = sim.handle(
        "opportunity.created", "lead-1", opportunityId="opp-1", leadSource="website"
    )
    assert result.matched_rules == ["default-website-lead-follow-up"]
    # 4. The call is created at once, due exactly one hour after the lead, for the lead owner.
    [call] = sim.activities("opp-1")
    assert (call.subject, call.activity_type.value, call.assigned_to) == (
        "Call new website lead",
        "call",
        "alice",
    )
    assert call.due_date == MONDAY + timedelta(hours=1)
    assert call.scheduled_date == MONDAY
    assert call.metadata.automation_rule_id == "default-website-lead-follow-up"
    explanation = (call.metadata.model_extra or {})["automationExplanation"]
    assert "leadSource equals 'website'" in explanation
    # 5. It is on Alice's list from the start (and on nobody else's), not overdue.
    assert ids(alice.pending_activities(ALICE)) == [call.activity_id]
    assert alice.pending_activities(BOB) == []
    # The reminder goes out 30 minutes before it is due.
    sim.until(MONDAY + timedelta(minutes=30))
    assert sim.reminders() == [(MONDAY + timedelta(minutes=30), ["alice"], [call.activity_id])]
    # 6-7. Alice calls, the customer asks to be called back: a follow-up due the next day.
    done = alice.complete_activity(ALICE, call.activity_id, "callback_requested")
    assert done.activity.outcome is Outcome.CALLBACK_REQUESTED
    assert done.activity.completed_by == "alice"
    assert done.follow_up is not None
    assert done.follow_up.matched_rules == ["default-callback-requested"]
    [follow_up] = [a for a in sim.activities("opp-1") if a.activity_id != call.activity_id]
    completed_at = MONDAY + timedelta(minutes=30)
    assert (follow_up.subject, follow_up.assigned_to) == ("Return customer callback", "alice")
    assert follow_up.due_date == completed_at + timedelta(hours=24)
    assert follow_up.scheduled_date == completed_at
    names = [n for n in payloads_names(sim.flow) if n.startswith("activity.")]
    assert names == ["activity.created", "activity.completed", "activity.created"]
    # The completed call is never overdue; the follow-up is reminded 30 minutes ahead, then
    # reported overdue by the hourly check once its time has passed.
    sim.until(completed_at + timedelta(hours=25))
    assert sim.reminders()[1:] == [
        (follow_up.due_date - timedelta(minutes=30), ["alice"], [follow_up.activity_id])
    ]
    notices = sim.overdue_notices()
    assert [(at, who, items) for at, who, items in notices] == [
        (MONDAY + timedelta(hours=25), ["alice"], [follow_up.activity_id])
    ]
    assert all(run.ok for run in sim.runs), [run.error for run in sim.runs if not run.ok]


def payloads_names(flow: LeadFlow) -> list[str]:
    from .service_support import sink

    return sink(flow).names()


# ------------------------------------------------------------------ Example 2


def test_example_2_quote_follow_up_reminded_30_minutes_ahead_then_overdue(backend: str) -> None:
    start = MONDAY + timedelta(hours=5)  # Monday 14:00
    sim = Simulation(backend, start)
    bob = ops(sim.flow)
    # 1-4. Two quotes sent: one on the hour, one on the half hour.
    sim.handle("estimate.created", "quote-1", opportunityId="opp-2")
    sim.until(start + timedelta(minutes=30))
    sim.handle("quote_sent", "quote-2", opportunityId="opp-4")
    [first] = sim.activities("opp-2")
    [second] = sim.activities("opp-4")
    assert first.subject == "Follow up on quote" and first.assigned_to == "bob"
    assert first.due_date == start + timedelta(hours=48)
    assert second.due_date == start + timedelta(hours=48, minutes=30)
    # 5. In Bob's pending list until due.
    sim.until(start + timedelta(hours=47))
    assert ids(bob.pending_activities(BOB)) == [first.activity_id, second.activity_id]
    assert sim.reminders() == []
    # 6. Each reminded once, 30 minutes before it is due.
    sim.until(first.due_date)
    assert ids(bob.pending_activities(BOB)) == [first.activity_id, second.activity_id]
    assert bob.overdue_activities(BOB) == []  # due now: not overdue yet
    sim.until(first.due_date + timedelta(hours=3))
    assert sim.reminders() == [
        (first.due_date - timedelta(minutes=30), ["bob"], [first.activity_id]),
        (second.due_date - timedelta(minutes=30), ["bob"], [second.activity_id]),
    ]
    reminded = [r.counts for r in sim.runs if r.job == "upcoming_reminders"]
    assert sum(c["reminded"] for c in reminded) == 2
    # 7. Past the due time they are overdue, no longer pending.
    assert bob.pending_activities(BOB) == []
    assert ids(bob.overdue_activities(BOB)) == [first.activity_id, second.activity_id]
    # 8. The hourly job notifies Bob of them, every hour until done.
    due = first.due_date
    assert sim.overdue_notices() == [
        (due + timedelta(hours=1), ["bob"], [first.activity_id, second.activity_id]),
        (due + timedelta(hours=2), ["bob"], [first.activity_id, second.activity_id]),
        (due + timedelta(hours=3), ["bob"], [first.activity_id, second.activity_id]),
    ]
    bob.complete_activity(BOB, first.activity_id, "successful")
    bob.complete_activity(BOB, second.activity_id, "successful")
    sim.until(due + timedelta(hours=6))
    assert len(sim.overdue_notices()) == 3
    assert all(run.ok for run in sim.runs)


# ------------------------------------------------------------------ Example 3


def test_example_3_lost_opportunity_re_engagement_due_720_hours_later(backend: str) -> None:
    sim = Simulation(backend, MONDAY)
    result = sim.handle("opportunity.status_changed", "lost-1", opportunityId="opp-3",
                        newStatus="lost")  # fmt: skip
    assert result.matched_rules == ["default-lost-re-engagement"]
    [call] = sim.activities("opp-3")
    assert call.subject == "Re-engage lost opportunity with a special offer"
    assert call.due_date == MONDAY + timedelta(hours=720)
    assert call.assigned_to == "alice"
    sim.until(MONDAY + timedelta(hours=2))
    assert sim.reminders() == []
    # Thirty days pass; the re-engagement call is reminded half an hour ahead, then overdue.
    sim.jump(MONDAY + timedelta(hours=719))
    sim.until(MONDAY + timedelta(hours=722))
    assert sim.reminders() == [
        (MONDAY + timedelta(hours=719, minutes=30), ["alice"], [call.activity_id])
    ]
    assert [at for at, _, _ in sim.overdue_notices()] == [
        MONDAY + timedelta(hours=721),
        MONDAY + timedelta(hours=722),
    ]


# ------------------------------------------------------------------ due times


def test_due_is_event_time_plus_delay_and_a_grace_window_is_an_option(backend: str) -> None:
    graced = rule(
        "graced",
        "estimate.created",
        [{"actionType": "create_activity", "subject": "Own grace", "delay": 2,
          "params": {"dueWithinHours": 0.5}}],
    )  # fmt: skip
    flow = build_flow(
        backend,
        clock=ManualClock(MONDAY),
        rules=[*default_quote_rule(), graced],
        settings=FlowSettings(due_grace=timedelta(hours=24)),
    )
    flow.handle(
        Event(id="q", type="estimate.created", time=MONDAY, payload={"opportunityId": "opp-2"})
    )
    due = {a.subject: (a.scheduled_date, a.due_date) for a in flow.storage.activities.list().items}
    assert due == {
        "Follow up on quote": (MONDAY, MONDAY + timedelta(hours=72)),
        "Own grace": (MONDAY, MONDAY + timedelta(hours=2, minutes=30)),
    }


def test_an_event_handled_late_keeps_its_own_time(backend: str) -> None:
    flow = build_flow(backend, clock=ManualClock(MONDAY + timedelta(hours=3)))
    flow.handle(
        Event(id="late", type="opportunity.created", time=MONDAY,
              payload={"opportunityId": "opp-1", "leadSource": "website"})
    )  # fmt: skip
    [call] = flow.storage.activities.for_opportunity("opp-1")
    assert call.due_date == MONDAY + timedelta(hours=1)  # already overdue, as it should be
    assert [a.activity_id for a in ops(flow).overdue_activities(ALICE)] == [call.activity_id]


def default_quote_rule() -> list[Any]:
    from leadflow import default_rules

    return [r for r in default_rules() if r.rule_id == "default-quote-follow-up"]
