"""A simulated week in New York across the spring-forward change, with the default rules, every
job on its default schedule and the seed's Example 2 (a quote follow-up) running through it:
each job fires at its local time, the call is due 48 real hours after the quote, reminded 30
minutes ahead, then overdue hourly until completed."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from leadflow import Activity, Event, ManualClock, Outcome, default_rules
from leadflow.runtime.jobs import JobSettings, LeadflowJobs
from leadflow.scheduling import JobRun

from .scheduling_support import NY, drive, ny
from .service_support import build_flow, payloads


def activity(activity_id: str, **fields: Any) -> Activity:
    return Activity.model_validate(
        {
            "activityId": activity_id,
            "opportunityId": fields.pop("opportunity_id", "opp-1"),
            "activityType": "call",
            "subject": f"Activity {activity_id}",
            "assignedTo": fields.pop("assigned_to", "alice"),
            **fields,
        }
    )


def recipient(payload: dict[str, Any]) -> str | None:
    recipients: list[str] = payload["recipients"]
    assert len(recipients) <= 1
    return recipients[0] if recipients else None


def test_a_simulated_week_across_spring_forward_fires_every_job_at_its_local_time() -> None:
    """Seven days in New York from Thursday 2026-03-05, DST starting Sunday 03-08 at 02:00,
    with the default rules and the seed's Example 2 (quote follow-up) running through it."""
    start, end = ny(2026, 3, 5), ny(2026, 3, 12)
    clock = ManualClock(start)
    flow = build_flow("memory", clock=clock, rules=default_rules())
    jobs = LeadflowJobs(flow, JobSettings(timezone="America/New_York"))
    runs: list[JobRun] = []
    runner = jobs.runner(worker_id="app", on_run=runs.append)
    old = ny(2025, 3, 1)
    flow.storage.activities.add(
        activity("archived", opportunity_id="opp-3", created_at=old, completed_date=old)
    )
    flow.storage.activities.add(
        activity(
            "last-touch", opportunity_id="opp-4", assigned_to="bob", created_at=ny(2026, 2, 20)
        )
    )

    def until(when: datetime) -> None:
        drive(clock, [runner], until=when)
        clock.set(when)

    # Example 2, 1-4: a quote is sent Friday 14:00 EST; the call is due 48 hours later, which
    # across the change is Sunday 15:00 EDT.
    until(ny(2026, 3, 6, 14))
    flow.handle(
        Event(
            id="estimate-1",
            type="estimate.created",
            time=clock.now(),
            payload={"opportunityId": "opp-2"},
        )
    )
    [call] = flow.storage.activities.for_opportunity("opp-2")
    assert (call.scheduled_date, call.due_date, call.assigned_to) == (
        ny(2026, 3, 6, 14),
        ny(2026, 3, 8, 15),
        "bob",
    )
    assert call.due_date is not None and call.scheduled_date is not None
    assert call.due_date - call.scheduled_date == timedelta(hours=48)
    # 8. Bob completes it Monday 09:15, after a night of hourly overdue notifications.
    until(ny(2026, 3, 9, 9, 15))
    flow.complete_activity(call.activity_id, outcome=Outcome.SUCCESSFUL, completed_by="bob")
    until(end)

    fired: dict[str, list[datetime]] = {}
    for run in runs:
        assert run.ok, run.error
        fired.setdefault(run.job, []).append(run.scheduled_for)

    def every(step: timedelta) -> list[datetime]:
        first, last = start.astimezone(UTC), end.astimezone(UTC)  # real time, not wall time
        return [first + k * step for k in range((last - first) // step)]

    assert fired["due_actions"] == every(timedelta(minutes=1))
    assert fired["upcoming_reminders"] == every(timedelta(minutes=30))
    assert fired["overdue_check"] == every(timedelta(hours=1))  # 168 real hours
    assert [t.strftime("%d %H:%M") for t in fired["daily_summary"]] == [
        "05 13:00", "06 13:00", "07 13:00", "08 12:00", "09 12:00", "10 12:00", "11 12:00",
    ]  # fmt: skip
    assert local(fired["cleanup"]) == [
        "05 02:00 EST", "06 02:00 EST", "07 02:00 EST",
        "08 03:00 EDT",  # 02:00 does not exist that night
        "09 02:00 EDT", "10 02:00 EDT", "11 02:00 EDT",
    ]  # fmt: skip
    stale_local = {t.astimezone(NY).strftime("%H:%M") for t in fired["stale_opportunities"]}
    assert stale_local == {"00:00", "06:00", "12:00", "18:00"}
    assert len(fired["stale_opportunities"]) == 28

    # 6. One reminder, 30 minutes before the call is due.
    reminders = payloads(flow, "notification.upcoming_activities")
    assert [(recipient(p), p["asOf"]) for p in reminders] == [("bob", ny(2026, 3, 8, 14, 30))]
    # 7-8. Overdue from 15:00 EDT: notified every hour from 16:00 until completed at 09:15.
    overdue = [p["asOf"] for p in payloads(flow, "notification.overdue_activities")]
    assert overdue == [ny(2026, 3, 8, 16) + timedelta(hours=k) for k in range(18)]
    # The Monday summary saw the overdue call; Tuesday's saw it completed yesterday.
    summaries = {(p["date"], recipient(p)): p for p in payloads(flow, "notification.daily_summary")}
    assert summaries[("2026-03-09", "bob")]["overdue"] == 1
    assert summaries[("2026-03-10", "bob")]["completedYesterday"] == 1
    # The year-old completed activity went at the first cleanup (02:00), after the midnight
    # stale check had seen its opportunity; each stale opportunity was reported once.
    cleanup = [r.counts["purged"] for r in runs if r.job == "cleanup"]
    assert cleanup == [1, 0, 0, 0, 0, 0, 0]
    stale = Counter(p["opportunityId"] for p in payloads(flow, "opportunity.stale_detected"))
    assert stale == {"opp-3": 1, "opp-4": 1}


def local(times: list[datetime]) -> list[str]:
    return [t.astimezone(NY).strftime("%d %H:%M %Z") for t in times]
