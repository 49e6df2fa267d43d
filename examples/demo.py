"""leadflow's demo: the seed's default rules on its workflow examples, first as the engine's plan,
then carried out by the LeadFlow service on the embedded (in-memory) store with a simulated clock.

Run: python examples/demo.py
"""

from __future__ import annotations

from datetime import UTC, datetime

from leadflow import (
    Event,
    LeadFlow,
    LeadflowJobs,
    ManualClock,
    Operations,
    Principal,
    Role,
    RuleEngine,
    default_rules,
)
from leadflow.adapters import InMemoryOpportunities, RecordingEventSink

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

EXAMPLES = [
    (
        "Example 1: website lead",
        "opportunity.created",
        {"opportunityId": "opp-1", "leadSource": "website"},
    ),
    (
        "Example 1, step 7: callback requested",
        "activity.completed",
        {"opportunityId": "opp-1", "outcome": "callback_requested"},
    ),
    (
        "Example 2: quote sent",
        "estimate.created",
        {"opportunityId": "opp-2", "estimateValue": 4200},
    ),
    (
        "Example 3: opportunity lost",
        "opportunity.status_changed",
        {"opportunityId": "opp-3", "newStatus": "lost"},
    ),
    ("Won opportunity", "status_changed", {"opportunityId": "opp-4", "newStatus": "won"}),
    (
        "Urgent website lead",
        "opportunity_created",
        {"opportunityId": "opp-5", "leadSource": "website", "priority": "urgent"},
    ),
    ("Referral lead", "opportunity.created", {"opportunityId": "opp-6", "leadSource": "referral"}),
    (
        "Negotiation started",
        "opportunity.status_changed",
        {"opportunityId": "opp-7", "newStatus": "negotiating"},
    ),
]


def plan() -> None:
    engine = RuleEngine(default_rules())
    print(f"{len(engine.rules)} default rules loaded; events at {NOW:%Y-%m-%d %H:%M} UTC\n")
    for title, event_type, payload in EXAMPLES:
        event = Event(type=event_type, time=NOW, payload=payload)
        result = engine.evaluate(event, explain=True)
        print(f"{title}  [{event.type}]")
        if not result.planned:
            print("    nothing planned")
        for planned in result.planned:
            action = planned.action
            what = action.subject or action.template or ""
            when = "now" if not planned.delayed else f"at {planned.due_at:%Y-%m-%d %H:%M}"
            print(f"    {planned.rule.name}: {action.action_type} '{what}' {when}")
        skipped = [e for e in result.explanations or () if not e.matched and e.conditions]
        for explanation in skipped:
            print(f"    (not {explanation.rule_name}: {explanation.reason})")
        print()


def walkthrough() -> None:
    """The seed's end-to-end test on the service: website lead, call, callback next day."""
    clock = ManualClock(NOW)
    flow = LeadFlow.in_memory(clock=clock, rules=default_rules(), reps=["alice", "bob"])
    opportunities = flow.integrations.opportunities
    assert isinstance(opportunities, InMemoryOpportunities)
    opportunities.add("opp-1", owner="alice", email="pat@example.com")
    ops = Operations(flow)
    runner = LeadflowJobs(flow).runner()
    alice = Principal("alice", Role.SALES)
    admin = Principal("admin", Role.ADMIN)

    def say(text: str) -> None:
        print(f"[{clock.now():%a %H:%M}] {text}")

    print("Service walkthrough (in-memory store, simulated clock)\n")
    flow.handle(
        Event(
            id="crm-1",
            type="opportunity.created",
            time=clock.now(),
            payload={"opportunityId": "opp-1", "customerId": "cust-1", "leadSource": "website"},
        )
    )
    [call] = ops.activities_for_opportunity(alice, "opp-1")
    say(
        f"website lead opp-1 arrives -> '{call.subject}' for {call.assigned_to}, "
        f"due {call.due_date:%H:%M}"
    )
    say(f"alice's pending list: {[a.subject for a in ops.pending_activities(alice)]}")
    events = flow.integrations.events
    assert isinstance(events, RecordingEventSink)
    clock.advance(minutes=30)
    runner.run_pending()
    reminders = events.names().count("notification.upcoming_activities")
    say(f"30 minutes before it is due: {reminders} reminder(s) sent")
    for _ in range(3):  # 10:00, 10:15 (the hourly overdue check runs at 10:00)
        clock.advance(minutes=15)
        runner.run_pending()
    say(f"alice's overdue list: {[a.subject for a in ops.overdue_activities(alice)]}")
    done = ops.complete_activity(alice, call.activity_id, "callback_requested")
    say(f"alice completes the call: outcome {done.activity.outcome}")
    for follow_up in ops.activities_for_opportunity(alice, "opp-1")[1:]:
        say(
            f"  -> rule '{follow_up.metadata.automation_rule_id}' planned '{follow_up.subject}' "
            f"due {follow_up.due_date:%a %H:%M}"
        )
    again = flow.handle(
        Event(
            id="crm-1",
            type="opportunity.created",
            time=NOW,
            payload={"opportunityId": "opp-1", "leadSource": "website"},
        )
    )
    say(f"the CRM redelivers event crm-1: {len(again.duplicates)} duplicate(s), nothing redone")
    stats = ops.activity_statistics(admin)
    say(
        f"statistics: {stats.total} activities, completion rate {stats.completion_rate:.0%}, "
        f"by state {stats.by_state}"
    )
    print(f"\nevents emitted: {events.names()}")


def main() -> None:
    plan()
    walkthrough()


if __name__ == "__main__":
    main()
