"""leadflow's six jobs on a LeadFlow (in memory and on mongomock) with a controlled clock: what
each one does, and that reminders and stale detections happen once. (A simulated week across
the spring-forward change is in test_runtime_week.py.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from leadflow import (
    Activity,
    ActivityType,
    Event,
    FlowSettings,
    FollowUpRule,
    HandlerRegistry,
    InvalidInputError,
    LeadFlow,
    ManualClock,
    RetryPolicy,
    ScheduledActionState,
)
from leadflow.adapters import RecordingNotifier
from leadflow.ports import JobStore, Notification
from leadflow.runtime.jobs import JobSchedule, JobSettings, LeadflowJobs, stale_event_id
from leadflow.scheduling import JobRunner
from leadflow.stores.sql import sql_storage

from .scheduling_support import JOB_BACKENDS, NY, drive, job_store, ny, utc
from .service_support import build_flow, notifier_of, payloads


@pytest.fixture(params=JOB_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def settings_with(*enabled: str, **overrides: Any) -> JobSettings:
    """Settings for New York with only the named jobs enabled."""
    base = JobSettings(timezone="America/New_York", **overrides)
    schedules = {
        name: replace(getattr(base, name), enabled=name in enabled) for name in LeadflowJobs.NAMES
    }
    return replace(base, **schedules)


def setup(
    backend: str,
    start: datetime,
    settings: JobSettings,
    *,
    rules: list[FollowUpRule] | None = None,
    flow_settings: FlowSettings | None = None,
    **flow_options: Any,
) -> tuple[LeadFlow, ManualClock, LeadflowJobs]:
    clock = ManualClock(start)
    flow = build_flow(
        backend, clock=clock, rules=rules or [], settings=flow_settings, **flow_options
    )
    return flow, clock, LeadflowJobs(flow, settings, store=job_store(backend))


def activity(activity_id: str, **fields: Any) -> Activity:
    return Activity.model_validate(
        {
            "activityId": activity_id,
            "opportunityId": fields.pop("opportunity_id", "opp-1"),
            "activityType": fields.pop("activity_type", ActivityType.CALL),
            "subject": f"Activity {activity_id}",
            "assignedTo": fields.pop("assigned_to", "alice"),
            **fields,
        }
    )


def notes(flow: LeadFlow, name: str) -> list[dict[str, Any]]:
    return payloads(flow, name)


def recipient(payload: dict[str, Any]) -> str | None:
    """The one recipient of a per-user notification (None: nobody, the host decides)."""
    recipients: list[str] = payload["recipients"]
    assert len(recipients) <= 1
    return recipients[0] if recipients else None


def sent(flow: LeadFlow, template: str) -> list[Notification]:
    return [n for n in notifier_of(flow).sent if n.template == template]


def rule(rule_id: str, event_type: str, actions: list[dict[str, Any]]) -> FollowUpRule:
    return FollowUpRule.model_validate(
        {
            "ruleId": rule_id,
            "name": rule_id,
            "trigger": {"eventType": event_type},
            "actions": actions,
        }
    )


# ------------------------------------------------------------------ overdue check


def test_overdue_check_notifies_each_assignee_once_with_their_items(backend: str) -> None:
    flow, _, jobs = setup(backend, ny(2026, 3, 9, 9, 59), settings_with("overdue_check"))
    for item in [
        activity("a1", due_date=ny(2026, 3, 9, 8)),
        activity("a2", due_date=ny(2026, 3, 8, 12)),
        activity("a3", due_date=ny(2026, 3, 9, 12)),  # not due yet
        activity("b1", assigned_to="bob", due_date=ny(2026, 3, 9, 9, 30)),
        activity(
            "b2",
            assigned_to="bob",
            due_date=ny(2026, 3, 9, 8),
            completed_date=ny(2026, 3, 9, 8, 30),
        ),
        activity("u1", assigned_to=None, due_date=ny(2026, 3, 9, 7)),
    ]:
        flow.storage.activities.add(item)
    runner = jobs.runner()
    run = runner.run_job("overdue_check", ny(2026, 3, 9, 10))
    assert run is not None
    assert run.counts == {
        "overdue": 4,
        "notifications": 3,
        "failed": 0,
        "truncated": 0,
        # a1, a2 and u1 are more than an hour overdue (b1 only 30 minutes): escalated.
        "escalated": 3,
        "already_escalated": 0,
        "escalations_matched": 0,
        "escalations_failed": 0,
        "escalations_truncated": 0,
    }
    payloads = notes(flow, "notification.overdue_activities")
    assert [(recipient(p), p["count"]) for p in payloads] == [
        ("alice", 2),
        ("bob", 1),
        (None, 1),
    ]
    assert [a["activityId"] for a in payloads[0]["activities"]] == [
        "a2",
        "a1",
    ]  # most overdue first
    assert payloads[0]["key"] == "overdue_activities:2026-03-09T10:00-04:00:alice"
    assert [n.recipients for n in sent(flow, "overdue_activities")] == [("alice",), ("bob",), ()]
    # The next hour reports them again (they are still overdue); the same slot never twice.
    assert runner.run_job("overdue_check", ny(2026, 3, 9, 10, 5)) is None
    assert runner.run_job("overdue_check", ny(2026, 3, 9, 11)) is not None
    assert len(notes(flow, "notification.overdue_activities")) == 6


def test_notify_false_keeps_notifications_on_the_event_sink_only(backend: str) -> None:
    settings = settings_with("overdue_check", notify=False)
    flow, _, jobs = setup(backend, ny(2026, 3, 9, 10), settings)
    flow.storage.activities.add(activity("a1", due_date=ny(2026, 3, 9, 8)))
    jobs.runner().run_pending()
    assert len(notes(flow, "notification.overdue_activities")) == 1
    assert sent(flow, "overdue_activities") == []


# ------------------------------------------------------------------ upcoming reminders


def test_each_activity_is_reminded_once_across_overlapping_windows_instances_and_restarts(
    backend: str,
) -> None:
    settings = settings_with("upcoming_reminders", reminder_lead=timedelta(hours=1))
    flow, clock, jobs = setup(backend, ny(2026, 3, 9, 9, 55), settings)
    flow.storage.activities.add(activity("a1", due_date=ny(2026, 3, 9, 10, 45)))
    flow.storage.activities.add(activity("b1", assigned_to="bob", due_date=ny(2026, 3, 9, 12)))
    runners = [jobs.runner(worker_id="app-1"), jobs.runner(worker_id="app-2")]
    runs = drive(clock, runners, until=ny(2026, 3, 9, 13))
    reminders = notes(flow, "notification.upcoming_activities")
    assert [(recipient(p), p["asOf"].astimezone(NY).strftime("%H:%M")) for p in reminders] == [
        ("alice", "10:00"),  # 10:45 is inside (10:00, 11:00] and again inside (10:30, 11:30]
        ("bob", "11:00"),  # due 12:00: inside (11:00, 12:00], an hour ahead
    ]
    assert sum(r.counts["already_reminded"] for r in runs) == 2  # 10:30 saw a1, 11:30 b1

    # A new due date is a new reminder; a restarted instance does not repeat old ones.
    current = flow.storage.activities.get("a1")
    flow.storage.activities.update(current.model_copy(update={"due_date": ny(2026, 3, 9, 14, 10)}))
    restarted = jobs.runner(worker_id="app-1-restarted")
    drive(clock, [restarted, runners[1]], until=ny(2026, 3, 9, 16))
    reminders = notes(flow, "notification.upcoming_activities")
    assert [(recipient(p), p["asOf"].astimezone(NY).strftime("%H:%M")) for p in reminders] == [
        ("alice", "10:00"),
        ("bob", "11:00"),
        ("alice", "13:30"),
    ]
    assert [n.recipients for n in sent(flow, "upcoming_activities")] == [
        ("alice",),
        ("bob",),
        ("alice",),
    ]
    assert reminders[2]["activities"][0]["dueDate"] == ny(2026, 3, 9, 14, 10)


class FlakyNotifier(RecordingNotifier):
    """Fails the first ``failures`` notifications."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def notify(self, notification: Notification) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("push service unavailable")
        super().notify(notification)


def test_a_reminder_that_could_not_be_sent_is_sent_by_the_next_run(backend: str) -> None:
    flow, clock, jobs = setup(
        backend,
        ny(2026, 3, 9, 10),
        settings_with("upcoming_reminders", reminder_lead=timedelta(hours=1)),
        notifier=FlakyNotifier(failures=1),
    )
    flow.storage.activities.add(activity("a1", due_date=ny(2026, 3, 9, 10, 50)))
    runner = jobs.runner()
    [first] = runner.run_pending()
    assert first.ok and first.counts["failed"] == 1 and first.counts["reminded"] == 0
    clock.set(ny(2026, 3, 9, 10, 30))
    [second] = runner.run_pending()
    assert second.counts["reminded"] == 1
    assert [n.key for n in sent(flow, "upcoming_activities")] == [
        "upcoming_activities:2026-03-09T10:30-04:00:alice"
    ]


# ------------------------------------------------------------------ stale opportunities


REENGAGE = rule(
    "re-engage-stale",
    "opportunity.stale_detected",
    [
        {
            "actionType": "create_activity",
            "activityType": "call",
            "subject": "Re-engage stale lead",
            "assignTo": "lead_owner",
        }
    ],
)


def test_stale_detection_feeds_a_re_engagement_rule_once_per_stale_period(backend: str) -> None:
    start = ny(2026, 3, 2, 9)
    flow, clock, jobs = setup(
        backend, start, settings_with("stale_opportunities"), rules=[REENGAGE]
    )
    flow.storage.activities.add(activity("first-call", created_at=start, completed_date=start))
    runner = jobs.runner()
    runs = drive(clock, [runner], until=ny(2026, 3, 10, 0))

    # Stale once its last activity is more than 7 days old: first seen by the 12:00 check on
    # the 9th (the day after the spring-forward change, so 16:00Z).
    [detected] = notes(flow, "opportunity.stale_detected")
    assert detected["eventId"] == stale_event_id("opp-1", start)
    assert detected["lastActivityAt"] == start
    assert detected["daysSinceLastActivity"] == 7
    found = [r for r in runs if r.counts["detected"]]
    assert [r.scheduled_for for r in found] == [utc(2026, 3, 9, 16)]
    assert found[0].counts["rules_matched"] == 1
    reengage = [
        a for a in flow.storage.activities.for_opportunity("opp-1") if a.activity_id != "first-call"
    ]
    assert [(a.subject, a.assigned_to, a.created_at) for a in reengage] == [
        ("Re-engage stale lead", "alice", utc(2026, 3, 9, 16))
    ]
    # The activity the rule created starts a new period: nothing more this week.
    assert sum(r.counts["stale"] for r in runs if r.scheduled_for > utc(2026, 3, 9, 16)) == 0

    # Nobody calls: stale again 7 days after the re-engagement activity, a new event once.
    runs = drive(clock, [runner], until=ny(2026, 3, 18, 0))
    second = notes(flow, "opportunity.stale_detected")[1:]
    assert [p["eventId"] for p in second] == [stale_event_id("opp-1", utc(2026, 3, 9, 16))]
    assert sum(r.counts["detected"] for r in runs) == 1
    # Later checks do not even look at it again: the cursor is past its period.
    assert sum(r.counts["stale"] for r in runs) == 1
    # The rule's previous re-engagement call is still open, so it adds no second one.
    assert len(flow.storage.activities.for_opportunity("opp-1")) == 2


def test_a_crash_before_the_mark_does_not_make_the_rules_act_twice(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alert = rule(
        "stale-alert",
        "opportunity.stale_detected",
        [{"actionType": "send_notification", "template": "stale_lead"}],
    )
    start = ny(2026, 3, 2, 12)
    flow, _, jobs = setup(backend, start, settings_with("stale_opportunities"), rules=[alert])
    last = start - timedelta(days=10)
    flow.storage.activities.add(activity("old", opportunity_id="opp-2", created_at=last))
    runner = jobs.runner()

    def crash(*_: object, **__: object) -> bool:
        raise RuntimeError("the process died after feeding the rules")

    monkeypatch.setattr(jobs.store, "mark", crash)
    [crashed] = runner.run_pending()
    assert crashed.error is not None and "died" in crashed.error
    assert len(sent(flow, "stale_lead")) == 1  # the rules acted before the crash
    monkeypatch.undo()
    # The cursor did not move: the next run feeds the same event, which the flow recognises.
    again = runner.run_job("stale_opportunities", start + timedelta(hours=6))
    assert again is not None
    assert again.counts == {
        "stale": 1,
        "detected": 1,
        "already_detected": 0,
        "rules_matched": 1,
        "failed": 0,
        "truncated": 0,
    }
    assert len(sent(flow, "stale_lead")) == 1
    assert [p["opportunityId"] for p in notes(flow, "opportunity.stale_detected")] == ["opp-2"]
    later = runner.run_job("stale_opportunities", start + timedelta(hours=12))
    assert later is not None and later.counts["stale"] == 0


@pytest.mark.parametrize("store", [*JOB_BACKENDS, "sqlite"])
def test_a_newly_stale_opportunity_is_seen_behind_more_than_stale_limit_old_ones(
    store: str,
) -> None:
    """Three opportunities long stale and detected, two a run (``stale_limit``): one that
    becomes stale afterwards is detected at the next run, which looks at it alone; an
    instance started afresh on the same stores goes on from there."""
    start = ny(2026, 3, 2, 12)
    settings = settings_with("stale_opportunities", stale_limit=2)
    storage = sql_storage("sqlite://") if store == "sqlite" else None
    clock = ManualClock(start)
    flow = build_flow("memory" if storage else store, clock=clock, rules=[], storage=storage)
    jobs = LeadflowJobs(flow, settings, store=None if storage else job_store(store))
    for n in (1, 2, 3):
        flow.storage.activities.add(
            activity(
                f"old-{n}", opportunity_id=f"opp-{n}", created_at=start - timedelta(days=30 + n)
            )
        )
    flow.storage.activities.add(
        activity("recent", opportunity_id="opp-4", created_at=start - timedelta(days=6))
    )
    runner = jobs.runner(worker_id="a")
    first = runner.run_job("stale_opportunities", start)
    second = runner.run_job("stale_opportunities", start + timedelta(hours=6))
    assert first is not None and second is not None
    detected = [p["opportunityId"] for p in notes(flow, "opportunity.stale_detected")]
    assert detected == ["opp-3", "opp-2", "opp-1"]
    assert (first.counts["detected"], first.counts.get("truncated")) == (2, 1)
    assert (second.counts["detected"], second.counts.get("truncated")) == (1, 0)
    # opp-4 is stale from start + 1 day; a new instance (a restart, or another replica) runs.
    other = LeadflowJobs(flow, settings, store=jobs.store).runner(worker_id="b")
    third = other.run_job("stale_opportunities", start + timedelta(days=1, hours=6))
    assert third is not None
    assert third.counts == {
        "stale": 1,
        "detected": 1,
        "already_detected": 0,
        "rules_matched": 0,
        "failed": 0,
        "truncated": 0,
    }
    detected = [p["opportunityId"] for p in notes(flow, "opportunity.stale_detected")]
    assert detected == ["opp-3", "opp-2", "opp-1", "opp-4"]
    if storage is not None:
        storage.close()


def test_an_opportunity_whose_event_failed_is_retried_at_the_next_run(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = ny(2026, 3, 2, 12)
    flow, _, jobs = setup(backend, start, settings_with("stale_opportunities"))
    for n in (1, 2, 3):
        flow.storage.activities.add(
            activity(
                f"old-{n}", opportunity_id=f"opp-{n}", created_at=start - timedelta(days=9 + n)
            )
        )
    handle = flow.handle

    def failing(event: Event, *args: Any, **kwargs: Any) -> Any:
        if event.payload["opportunityId"] == "opp-2":
            raise RuntimeError("the database went away")
        return handle(event, *args, **kwargs)

    monkeypatch.setattr(flow, "handle", failing)
    runner = jobs.runner()
    first = runner.run_job("stale_opportunities", start)
    assert first is not None
    assert (first.counts["detected"], first.counts["failed"]) == (2, 1)
    monkeypatch.undo()
    second = runner.run_job("stale_opportunities", start + timedelta(hours=6))
    assert second is not None
    assert (second.counts["stale"], second.counts["detected"], second.counts["failed"]) == (1, 1, 0)
    detected = [p["opportunityId"] for p in notes(flow, "opportunity.stale_detected")]
    assert detected == ["opp-3", "opp-1", "opp-2"]
    third = runner.run_job("stale_opportunities", start + timedelta(hours=12))
    assert third is not None and third.counts["stale"] == 0


# ------------------------------------------------------------------ cleanup


def test_cleanup_purges_old_completed_activities_and_keeps_open_ones(backend: str) -> None:
    now = ny(2026, 3, 9, 2)
    flow, _, jobs = setup(backend, now, settings_with("cleanup"))
    flow.storage.activities.add(
        activity(
            "done-long-ago",
            created_at=now - timedelta(days=420),
            completed_date=now - timedelta(days=400),
        )
    )
    flow.storage.activities.add(
        activity(
            "done-recently",
            created_at=now - timedelta(days=120),
            completed_date=now - timedelta(days=100),
        )
    )
    flow.storage.activities.add(activity("open-long-ago", created_at=now - timedelta(days=500)))
    [run] = jobs.runner().run_pending()
    assert run.counts["purged"] == 1
    remaining = {a.activity_id for a in flow.storage.activities.for_opportunity("opp-1")}
    assert remaining == {"done-recently", "open-long-ago"}


def test_cleanup_retention_is_configurable(backend: str) -> None:
    now = ny(2026, 3, 9, 2)
    settings = settings_with("cleanup", retention=timedelta(days=90))
    flow, _, jobs = setup(backend, now, settings)
    flow.storage.activities.add(activity("done", completed_date=now - timedelta(days=100)))
    [run] = jobs.runner().run_pending()
    assert run.counts["purged"] == 1


# ------------------------------------------------------------------ daily summary


def test_daily_summary_counts_yesterday_in_the_business_time_zone(backend: str) -> None:
    flow, _, jobs = setup(backend, ny(2026, 3, 9, 8), settings_with("daily_summary"))
    # Yesterday in New York is March 8, the 23-hour spring-forward day: 05:00Z to 04:00Z.
    for item in [
        activity("pending", due_date=ny(2026, 3, 10, 9)),
        activity("overdue", due_date=ny(2026, 3, 8, 9)),
        activity("just-after-midnight", completed_date=utc(2026, 3, 8, 5, 30)),  # 00:30 EST
        activity("late-evening", completed_date=utc(2026, 3, 9, 3, 30)),  # 23:30 EDT
        activity("day-before", completed_date=utc(2026, 3, 8, 4, 30)),  # 23:30 EST, the 7th
        activity("this-morning", completed_date=utc(2026, 3, 9, 4, 30)),  # 00:30 EDT, the 9th
        activity("bobs", assigned_to="bob", completed_date=utc(2026, 3, 8, 15)),
    ]:
        flow.storage.activities.add(item)
    [run] = jobs.runner().run_pending()
    assert run.scheduled_for == utc(2026, 3, 9, 12)
    assert run.counts == {"users": 2, "notifications": 2, "failed": 0}
    summaries = {recipient(p): p for p in notes(flow, "notification.daily_summary")}
    assert {
        u: (p["pending"], p["overdue"], p["completedYesterday"]) for u, p in summaries.items()
    } == {
        "alice": (1, 1, 2),
        "bob": (0, 0, 1),
    }
    assert summaries["alice"]["date"] == "2026-03-09"
    assert summaries["alice"]["timezone"] == "America/New_York"
    assert [n.recipients for n in sent(flow, "daily_summary")] == [("alice",), ("bob",)]


# ------------------------------------------------------------------ due actions


def test_due_actions_run_when_due_with_retries_and_parking(backend: str) -> None:
    attempts: list[datetime] = []

    def webhook(ctx: Any) -> str:
        attempts.append(ctx.now)
        raise ConnectionError("webhook down")

    handlers = HandlerRegistry.default()
    handlers.register("call_webhook", webhook)
    rules = [
        rule(
            "quote-check",
            "estimate.created",
            [
                {"actionType": "send_notification", "template": "quote_check", "delay": 2},
                {"actionType": "call_webhook", "delay": 1},
            ],
        )
    ]
    start = ny(2026, 3, 9, 9)
    flow, clock, jobs = setup(
        backend,
        start,
        settings_with("due_actions"),
        rules=rules,
        handlers=handlers,
        flow_settings=FlowSettings(retry=RetryPolicy(max_attempts=2, base=timedelta(minutes=5))),
    )
    flow.handle(
        Event(id="q-1", type="estimate.created", time=start, payload={"opportunityId": "opp-2"})
    )
    runs = drive(clock, [jobs.runner()], until=start + timedelta(hours=3))
    busy = [(r.scheduled_for - start, r.counts) for r in runs if r.counts["claimed"]]
    assert busy == [
        (
            timedelta(hours=1),
            {"batches": 1, "claimed": 1, "succeeded": 0, "failed": 1, "parked": 0},
        ),
        (
            timedelta(hours=1, minutes=5),
            {"batches": 1, "claimed": 1, "succeeded": 0, "failed": 0, "parked": 1},
        ),
        (
            timedelta(hours=2),
            {"batches": 1, "claimed": 1, "succeeded": 1, "failed": 0, "parked": 0},
        ),
    ]
    assert attempts == [start + timedelta(hours=1), start + timedelta(hours=1, minutes=5)]
    assert [n.recipients for n in sent(flow, "quote_check")] == [("bob",)]
    [parked] = flow.storage.scheduled.list(ScheduledActionState.PARKED)
    assert parked.action_type == "call_webhook"


def test_due_actions_drain_in_batches(backend: str) -> None:
    rules = [
        rule(
            "ping",
            "estimate.created",
            [{"actionType": "send_notification", "template": "ping", "delay": 1}],
        )
    ]
    start = ny(2026, 3, 9, 9)
    settings = settings_with("due_actions", due_actions_batch=2)
    flow, _, jobs = setup(backend, start, settings, rules=rules)
    for n in range(5):
        flow.handle(
            Event(
                id=f"q-{n}", type="estimate.created", time=start, payload={"opportunityId": "opp-1"}
            )
        )
    run = jobs.runner().run_job("due_actions", start + timedelta(hours=1))
    assert run is not None
    assert run.counts == {"batches": 3, "claimed": 5, "succeeded": 5, "failed": 0, "parked": 0}


# ------------------------------------------------------------------ settings


def test_settings_are_validated_and_jobs_follow_them() -> None:
    settings = JobSettings(
        timezone="Europe/Paris",
        daily_summary=JobSchedule("30 7 * * 1-5", grace=timedelta(hours=1)),
        cleanup=JobSchedule("0 3 * * *", enabled=False),
    )
    flow = LeadFlow.in_memory()
    jobs = {job.name: job for job in LeadflowJobs(flow, settings).jobs()}
    assert "cleanup" not in jobs
    summary = jobs["daily_summary"]
    assert (summary.cron, summary.zone.key, summary.grace) == (
        "30 7 * * 1-5",
        "Europe/Paris",
        timedelta(hours=1),
    )
    with pytest.raises(ValueError, match="timezone"):
        JobSettings(timezone="Nowhere/Special")
    with pytest.raises(ValueError, match="stale_after"):
        JobSettings(stale_after=timedelta(0))
    with pytest.raises(ValueError, match="overdue_limit"):
        JobSettings(overdue_limit=0)
    with pytest.raises(ValueError, match="cron"):
        JobSchedule("every day at 8")
    with pytest.raises(ValueError, match="reminder_lead"):
        JobSettings(reminder_lead=timedelta(0))
    with pytest.raises(InvalidInputError, match="store="):
        LeadflowJobs(flow, _memory_store())  # type: ignore[arg-type]


def _memory_store() -> JobStore:
    return job_store("memory")


def test_jobs_register_with_any_scheduler() -> None:
    registered: list[str] = []

    class HostScheduler:
        def add_job(self, job: Any) -> None:
            registered.append(job.name)

    flow = LeadFlow.in_memory()
    jobs = LeadflowJobs(flow, store=_memory_store())
    assert [j.name for j in jobs.register(HostScheduler())] == list(LeadflowJobs.NAMES)
    assert registered == list(LeadflowJobs.NAMES)
    assert isinstance(jobs.runner(), JobRunner)


def test_what_the_notifier_does_to_its_data_never_reaches_the_event_sink() -> None:
    flow, _, jobs = setup("memory", ny(2026, 3, 9, 9, 59), settings_with("overdue_check"))
    flow.storage.activities.add(activity("a1", due_date=ny(2026, 3, 9, 8)))
    original = notifier_of(flow).notify

    def scribbling(notification: Notification) -> None:
        original(notification)
        notification.data["count"] = -1  # a host's notifier that edits what it is given
        notification.data.pop("activities")

    notifier_of(flow).notify = scribbling  # type: ignore[method-assign]
    assert jobs.runner().run_job("overdue_check", ny(2026, 3, 9, 10)) is not None
    [payload] = notes(flow, "notification.overdue_activities")
    assert payload["count"] == 1 and [a["activityId"] for a in payload["activities"]] == ["a1"]
