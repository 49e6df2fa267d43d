"""Shared pieces of the sequence tests: the reference design's example sequence and a flow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from leadflow import LeadFlow, ManualClock
from leadflow.adapters import InMemoryOpportunities
from leadflow.rules import WorkingCalendar
from leadflow.sequences import SequenceDefinition

MONDAY_10 = datetime(2026, 1, 5, 10, tzinfo=UTC)


def website_lead_sequence(**changes: Any) -> SequenceDefinition:
    """New website lead: call in 1 hour; no answer -> email at 09:00 the next business morning
    (local time); wait up to 2 business days for a reply; then a second call; exit when won or
    lost."""
    document: dict[str, Any] = {
        "sequenceId": "website-lead",
        "name": "New website lead",
        "entry": {
            "eventType": "opportunity.created",
            "conditions": [{"field": "source", "operator": "equals", "value": "website"}],
        },
        "steps": [
            {"id": "wait-1h", "kind": "wait", "delay": 1},
            {
                "id": "first-call",
                "kind": "action",
                "action": {
                    "actionType": "create_activity",
                    "activityType": "call",
                    "subject": "Call the new website lead",
                },
            },
            {
                "id": "call-outcome",
                "kind": "wait_for_event",
                "eventType": "activity.completed",
                "conditions": [{"field": "activityType", "operator": "equals", "value": "call"}],
                "timeout": {"amount": 1, "unit": "business_days"},
            },
            {
                "id": "answered",
                "kind": "branch",
                "cases": [
                    {
                        "when": [
                            {"field": "event.outcome", "operator": "equals", "value": "successful"}
                        ],
                        "goto": "done",
                    }
                ],
            },
            {"id": "morning", "kind": "wait", "until": {"at": "09:00", "nextDay": True}},
            {
                "id": "email",
                "kind": "action",
                "action": {"actionType": "send_email", "template": "website_follow_up"},
            },
            {
                "id": "reply",
                "kind": "wait_for_event",
                "eventType": "email.replied",
                "timeout": {"amount": 2, "unit": "business_days"},
                "then": "done",
            },
            {
                "id": "second-call",
                "kind": "action",
                "action": {
                    "actionType": "create_activity",
                    "activityType": "call",
                    "subject": "Second call: no reply to the e-mail",
                },
            },
            {"id": "done", "kind": "exit"},
        ],
        "goals": [
            {
                "name": "won or lost",
                "eventType": "opportunity.status_changed",
                "conditions": [{"field": "newStatus", "operator": "in", "value": ["won", "lost"]}],
            }
        ],
    }
    document.update(changes)
    return SequenceDefinition.model_validate(document)


def sequence_flow(start: datetime = MONDAY_10, **options: Any) -> tuple[LeadFlow, ManualClock]:
    clock = ManualClock(start)
    flow = LeadFlow.in_memory(
        clock=clock,
        event_types=["email.replied"],
        calendar=WorkingCalendar("Europe/Paris"),
        reps=["alice", "bob"],
        **options,
    )
    return flow, clock


def opportunities(flow: LeadFlow) -> InMemoryOpportunities:
    gateway = flow.integrations.opportunities
    assert isinstance(gateway, InMemoryOpportunities)
    return gateway


def lead(opportunity_id: str, at: datetime, source: str = "website") -> dict[str, Any]:
    return {
        "type": "opportunity.created",
        "id": f"created-{opportunity_id}",
        "time": at,
        "payload": {"opportunityId": opportunity_id, "customerId": "c1", "source": source},
    }
