"""Evaluate the seed's default follow-up rules on its workflow examples and print the plan.

Run: python examples/demo.py
"""

from __future__ import annotations

from datetime import UTC, datetime

from leadflow import Event, RuleEngine, default_rules

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


def main() -> None:
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


if __name__ == "__main__":
    main()
