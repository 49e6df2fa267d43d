"""Every operation against every role, rule administration, audit trail and input validation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from leadflow import (
    InvalidInputError,
    LeadFlow,
    NotFoundError,
    PermissionDeniedError,
    Principal,
    Role,
    RuleValidationError,
    StaleWriteError,
)

from .helpers import T0
from .service_support import ADMIN, ALICE, BOB, DISPATCHER, SUPER, build_flow

ROLES = {"super_admin": SUPER, "admin": ADMIN, "dispatcher": DISPATCHER, "sales": ALICE}
NEW_RULE = {
    "ruleId": "matrix-rule",
    "name": "matrix",
    "trigger": {"eventType": "estimate.created"},
    "actions": [{"actionType": "send_notification", "template": "t"}],
}


@pytest.fixture(params=["memory", "mongo"])
def flow(request: pytest.FixtureRequest) -> LeadFlow:
    flow = build_flow(str(request.param))
    for owner, opp in [("alice", "opp-1"), ("bob", "opp-2")]:
        flow.create_activity(
            ADMIN,
            {
                "activityId": f"act-{owner}",
                "opportunityId": opp,
                "customerId": "cust-1",
                "activityType": "call",
                "subject": f"call for {owner}",
                "assignedTo": owner,
                "dueDate": T0 + timedelta(hours=1),
            },
        )
    return flow


def _operations(flow: LeadFlow) -> dict[str, Any]:
    """Each operation as a callable of a principal, acting on Alice's activity."""
    return {
        "create_activity": lambda p: flow.create_activity(
            p,
            {
                "opportunityId": "opp-1",
                "activityType": "note",
                "subject": "n",
                "assignedTo": p.user_id,
            },
        ),
        "list_activities": lambda p: flow.list_activities(p),
        "by_opportunity": lambda p: flow.activities_for_opportunity(p, "opp-1"),
        "by_customer": lambda p: flow.activities_for_customer(p, "cust-1"),
        "pending": lambda p: flow.pending_activities(p),
        "overdue": lambda p: flow.overdue_activities(p),
        "statistics": lambda p: flow.activity_statistics(p),
        "timeline": lambda p: flow.activity_timeline(p, "opp-1"),
        "get_activity": lambda p: flow.get_activity(p, "act-alice"),
        "complete_activity": lambda p: flow.complete_activity(p, "act-alice", "successful"),
        "delete_activity": lambda p: flow.delete_activity(p, "act-alice"),
        "create_rule": lambda p: flow.create_rule(p, NEW_RULE),
        "list_rules": lambda p: flow.list_rules(p),
        "list_active_rules": lambda p: flow.list_active_rules(p),
        "get_rule": lambda p: flow.get_rule(p, "default-quote-follow-up"),
        "update_rule": lambda p: flow.update_rule(p, "default-quote-follow-up", {"priority": 1}),
        "delete_rule": lambda p: flow.delete_rule(p, "default-quote-follow-up"),
        "test_rule": lambda p: flow.test_rule(
            p, "default-quote-follow-up", {"type": "estimate.created", "payload": {}}
        ),
        "rule_audit_trail": lambda p: flow.rule_audit_trail(p),
        "list_parked_actions": lambda p: flow.list_parked_actions(p),
    }


EVERYTHING = set(_operations(None).keys())  # type: ignore[arg-type]
RULE_READS = {"list_rules", "list_active_rules", "get_rule"}
ACTIVITY_READS = {
    "list_activities",
    "by_opportunity",
    "by_customer",
    "pending",
    "overdue",
    "statistics",
    "timeline",
    "get_activity",
}
ALLOWED = {
    "super_admin": EVERYTHING,
    "admin": EVERYTHING,
    "dispatcher": ACTIVITY_READS | RULE_READS | {"create_activity"},
    "sales": ACTIVITY_READS | {"create_activity", "complete_activity"},
}


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("operation", sorted(EVERYTHING))
def test_role_matrix(flow: LeadFlow, role: str, operation: str) -> None:
    principal = ROLES[role]
    call = _operations(flow)[operation]
    if operation in ALLOWED[role]:
        call(principal)
    else:
        with pytest.raises(PermissionDeniedError):
            call(principal)


def test_sales_see_only_their_own_activities(flow: LeadFlow) -> None:
    assert [a.activity_id for a in flow.list_activities(ALICE).items] == ["act-alice"]
    assert [a.activity_id for a in flow.list_activities(BOB).items] == ["act-bob"]
    assert flow.list_activities(ALICE, {"assignedTo": "bob"}).items == []
    assert flow.activities_for_customer(ALICE, "cust-1")[0].activity_id == "act-alice"
    assert flow.activity_timeline(BOB, "opp-1") == []
    assert flow.activity_statistics(ALICE).total == 1
    assert flow.activity_statistics(ADMIN).total == 2
    assert len(flow.list_activities(DISPATCHER).items) == 2
    with pytest.raises(PermissionDeniedError):
        flow.pending_activities(ALICE, assigned_to="bob")


def test_another_users_activity_is_not_found_for_sales(flow: LeadFlow) -> None:
    with pytest.raises(NotFoundError) as hidden:
        flow.get_activity(ALICE, "act-bob")
    with pytest.raises(NotFoundError) as missing:
        flow.get_activity(ALICE, "act-nobody")
    assert str(hidden.value) == str(missing.value).replace("act-nobody", "act-bob")
    with pytest.raises(NotFoundError):
        flow.complete_activity(ALICE, "act-bob", "successful")
    assert flow.get_activity(BOB, "act-bob").completed_date is None


def test_sales_create_activities_only_for_themselves(flow: LeadFlow) -> None:
    mine = flow.create_activity(
        ALICE, {"opportunityId": "opp-1", "activityType": "note", "subject": "n"}
    )
    assert mine.assigned_to == "alice" and mine.created_by == "alice"
    with pytest.raises(PermissionDeniedError):
        flow.create_activity(
            ALICE,
            {"opportunityId": "opp-1", "activityType": "note", "subject": "n", "assignedTo": "bob"},
        )


def test_audit_fields_come_from_the_principal_and_clock(flow: LeadFlow) -> None:
    created = flow.create_activity(
        DISPATCHER,
        {
            "opportunityId": "opp-9",
            "activityType": "email",
            "subject": "hello",
            "createdBy": "forged",
            "createdAt": T0 - timedelta(days=99),
        },
    )
    assert (created.created_by, created.created_at) == ("disp-1", T0)
    flow.clock.advance(minutes=5)  # type: ignore[attr-defined]
    done = flow.complete_activity(ADMIN, created.activity_id, "successful").activity
    assert (done.completed_by, done.completed_date, done.updated_by) == (
        "admin-1",
        T0 + timedelta(minutes=5),
        "admin-1",
    )


def test_rule_changes_are_audited_with_before_and_after(flow: LeadFlow) -> None:
    rule = flow.create_rule(ADMIN, NEW_RULE)
    assert (rule.created_by, rule.version) == ("admin-1", 1)
    flow.clock.advance(hours=1)  # type: ignore[attr-defined]
    updated = flow.update_rule(SUPER, "matrix-rule", {"priority": 7, "isActive": False})
    assert (updated.priority, updated.is_active, updated.version, updated.updated_by) == (
        7,
        False,
        2,
        "root",
    )
    flow.delete_rule(ADMIN, "matrix-rule")
    trail = flow.rule_audit_trail(ADMIN, "matrix-rule")
    assert [(e.change, e.actor) for e in trail] == [
        ("created", "admin-1"),
        ("updated", "root"),
        ("deleted", "admin-1"),
    ]
    assert trail[1].before is not None and trail[1].before["priority"] == 0
    assert trail[1].after is not None and trail[1].after["priority"] == 7
    assert trail[1].at == T0 + timedelta(hours=1)
    assert trail[2].after is None


def test_stale_rule_update_is_refused(flow: LeadFlow) -> None:
    flow.update_rule(ADMIN, "default-quote-follow-up", {"priority": 2}, expected_version=1)
    with pytest.raises(StaleWriteError):
        flow.update_rule(ADMIN, "default-quote-follow-up", {"priority": 3}, expected_version=1)
    assert flow.get_rule(ADMIN, "default-quote-follow-up").priority == 2


def test_rule_changes_apply_to_the_next_event_at_once(flow: LeadFlow) -> None:
    flow.update_rule(ADMIN, "default-quote-follow-up", {"isActive": False})
    result = flow.handle(
        {"type": "estimate.created", "time": T0, "payload": {"opportunityId": "opp-1"}}
    )
    assert result.matched_rules == []


@pytest.mark.parametrize(
    "change, error",
    [
        (
            {"trigger": {"eventType": "x.y", "conditions": [{"field": "a", "operator": "nope"}]}},
            RuleValidationError,
        ),
        ({"actions": [{"actionType": "teleport"}]}, RuleValidationError),
        ({"priority": "high"}, ValidationError),
        ({"ruleId": "other"}, InvalidInputError),
        ({"colour": "red"}, InvalidInputError),
    ],
)
def test_invalid_rule_changes_write_nothing(
    flow: LeadFlow, change: dict[str, Any], error: type
) -> None:
    before = flow.get_rule(ADMIN, "default-quote-follow-up")
    with pytest.raises(error):
        flow.update_rule(ADMIN, "default-quote-follow-up", change)
    assert flow.get_rule(ADMIN, "default-quote-follow-up") == before
    assert flow.rule_audit_trail(ADMIN) == []


def test_creating_a_rule_with_an_unknown_operator_names_rule_and_condition(flow: LeadFlow) -> None:
    bad = {
        **NEW_RULE,
        "trigger": {
            "eventType": "estimate.created",
            "conditions": [{"field": "x", "operator": "like", "value": 1}],
        },
    }
    with pytest.raises(
        RuleValidationError,
        match=r"rule 'matrix-rule', trigger.conditions\[0\].*unknown operator 'like'",
    ):
        flow.create_rule(ADMIN, bad)
    with pytest.raises(NotFoundError):
        flow.get_rule(ADMIN, "matrix-rule")


def test_rule_test_mode_is_a_dry_run(flow: LeadFlow) -> None:
    before = len(flow.list_activities(ADMIN).items)
    result = flow.test_rule(
        ADMIN,
        "default-website-lead-follow-up",
        {
            "type": "opportunity_created",
            "payload": {"opportunityId": "opp-1", "leadSource": "website"},
        },
    )
    assert result.matched and result.reason == "matched"
    assert [p.due_at - T0 for p in result.planned] == [timedelta(hours=1)]
    miss = flow.test_rule(
        ADMIN,
        NEW_RULE
        | {
            "trigger": {
                "eventType": "estimate.created",
                "conditions": [
                    {"field": "estimateValue", "operator": "greater_than", "value": 1000}
                ],
            }
        },
        {"type": "estimate.created", "payload": {"estimateValue": 10}},
    )
    assert not miss.matched
    assert (
        miss.reason == "trigger.conditions[0] failed: estimateValue greater_than 1000 (actual: 10)"
    )
    assert len(flow.list_activities(ADMIN).items) == before
    assert flow.scheduled.list() == []
    with pytest.raises(NotFoundError):
        flow.get_rule(ADMIN, "matrix-rule")


@pytest.mark.parametrize(
    "data",
    [
        {"opportunityId": {"$ne": None}, "activityType": "call", "subject": "x"},
        {
            "opportunityId": "opp-1",
            "activityType": "call",
            "subject": "x",
            "dueDate": "2026-01-01T10:00:00",
        },
        {"opportunityId": "opp-1", "activityType": "fax", "subject": "x"},
        {"opportunityId": "opp-1", "activityType": "call"},
    ],
)
def test_invalid_activities_are_refused_and_nothing_is_written(
    flow: LeadFlow, data: dict[str, Any]
) -> None:
    before = flow.list_activities(ADMIN).items
    with pytest.raises(ValidationError):
        flow.create_activity(ADMIN, data)
    assert flow.list_activities(ADMIN).items == before


@pytest.mark.parametrize(
    "call",
    [
        lambda f: f.get_activity(ADMIN, {"$ne": None}),
        lambda f: f.activities_for_opportunity(ADMIN, {"$gt": ""}),
        lambda f: f.activity_timeline(ADMIN, "$where"),
        lambda f: f.pending_activities(ADMIN, assigned_to={"$ne": "x"}),
        lambda f: f.complete_activity(ADMIN, "act-alice", "great"),
    ],
)
def test_operator_injection_and_bad_ids_are_refused(flow: LeadFlow, call: Any) -> None:
    with pytest.raises(InvalidInputError):
        call(flow)
    assert flow.get_activity(ADMIN, "act-alice").completed_date is None


@pytest.mark.parametrize(
    "filter",
    [
        {"opportunityId": {"$ne": None}},
        {"state": "overdue"},
        {"colour": "red"},
        {"assignedTo": "$x"},
    ],
)
def test_invalid_filters_are_refused(flow: LeadFlow, filter: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        flow.list_activities(ADMIN, filter)


def test_unknown_role_and_bad_user_id_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        Principal("alice", "boss")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        Principal("$alice", Role.SALES)


def test_completing_twice_is_refused(flow: LeadFlow) -> None:
    flow.complete_activity(ALICE, "act-alice", "successful")
    from leadflow import InvalidStateError

    with pytest.raises(InvalidStateError):
        flow.complete_activity(ALICE, "act-alice", "successful")
