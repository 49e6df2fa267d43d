"""A world for the role-checked sequence operations: the access tests' world (a principal of
every role, each owning ``opp-<user>``) with a sequence published, every ``opp-<user>``
enrolled in it, and ``new-<user>`` opportunities (owned, not enrolled); a snapshot that also
holds the sequences and enrollments."""

from __future__ import annotations

from typing import Any

from leadflow import LeadFlow, Role
from leadflow.access import DEFAULT_POLICY, Policy

from .access_support import EVERYONE, World, build_world, snapshot

SEQUENCE: dict[str, Any] = {
    "sequenceId": "nurture",
    "name": "Nurture",
    "entry": {
        "eventType": "opportunity.created",
        "conditions": [{"field": "source", "operator": "equals", "value": "website"}],
    },
    "steps": [
        {"id": "wait", "kind": "wait", "delay": 1},
        {
            "id": "split",
            "kind": "split",
            "variants": [
                {"name": "A", "weight": 1, "goto": "call"},
                {"name": "B", "weight": 1, "goto": "later"},
            ],
        },
        {
            "id": "call",
            "kind": "action",
            "action": {"actionType": "create_activity", "activityType": "call", "subject": "Call"},
        },
        {"id": "later", "kind": "wait", "delay": 24},
        {
            "id": "second-call",
            "kind": "action",
            "action": {
                "actionType": "create_activity",
                "activityType": "call",
                "subject": "Second call",
            },
        },
    ],
    "goals": [
        {
            "name": "won",
            "eventType": "opportunity.status_changed",
            "conditions": [{"field": "newStatus", "operator": "equals", "value": "won"}],
        }
    ],
}

INVERTED = Policy({op: frozenset(Role) - roles for op, roles in DEFAULT_POLICY.table.items()})
POLICIES = {"default": DEFAULT_POLICY, "inverted": INVERTED}


def sequence_world(policy: Policy = DEFAULT_POLICY) -> World:
    world = build_world(policy=policy, parked=False)
    flow = world.flow
    flow.sequences.publish(SEQUENCE, actor="root")
    for principal in EVERYONE:
        world.opportunities.add(f"new-{principal.user_id}", owner=principal.user_id)
    flow.sequences.enroll("nurture", [f"opp-{p.user_id}" for p in EVERYONE], actor="root")
    return world


def enrollment_of(flow: LeadFlow, opportunity_id: str) -> str:
    [found] = flow.sequences.enrollments(opportunity_id)
    return found.enrollment_id


def full_snapshot(flow: LeadFlow) -> dict[str, Any]:
    """:func:`snapshot` plus every sequence version and every enrollment."""
    state = snapshot(flow)
    sequences, enrollments = flow.storage.sequences, flow.storage.enrollments
    assert sequences is not None and enrollments is not None
    state["sequences"] = [
        v.to_document() for s in sequences.list() for v in sequences.versions(s.sequence_id)
    ]
    state["sequence_stamp"] = sequences.stamp()
    state["enrollments"] = [e.to_document() for e in enrollments.list(limit=10_000)]
    return state
