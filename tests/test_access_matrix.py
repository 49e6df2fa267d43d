"""The role matrix: every operation of :class:`Operations` against every role, with the answers
derived from the policy table (and the table itself pinned), under the default policy and under
a policy that turns every answer round; host overrides; refused overrides."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from leadflow import InvalidInputError, NotFoundError, PermissionDeniedError, Principal, Role
from leadflow.access import DEFAULT_POLICY, OPERATIONS, Operations, Policy

from .access_support import ADMIN, ALICE, BOB, BY_ROLE, DISPATCHER, SUPER, World, build_world

S, A, D, R = "super_admin", "admin", "dispatcher", "sales"
PINNED = {
    "activity.create": {S, A, D, R},
    "activity.create_for_others": {S, A, D},
    "activity.choose_id": {S, A, D},
    "activity.read": {S, A, D, R},
    "activity.read_all": {S, A, D},
    "activity.complete": {S, A, R},
    "activity.complete_any": {S, A},
    "activity.delete": {S, A},
    "activity.update": {S, A, D, R},
    "activity.update_any": {S, A, D},
    "activity.reassign": {S, A, D},
    "activity.cancel": {S, A, D, R},
    "activity.cancel_any": {S, A, D},
    "activity.statistics": {S, A, D, R},
    "activity.statistics_all": {S, A, D},
    "rule.read": {S, A, D},
    "rule.write": {S, A},
    "rule.test": {S, A},
    "action.read_parked": {S, A},
    "action.retry": {S, A},
    "audit.read": {S, A},
    "sequence.read": {S, A, D, R},
    "sequence.write": {S, A},
    "sequence.report": {S, A, D},
    "enrollment.write": {S, A, D, R},
    "enrollment.write_any": {S, A, D},
    "analytics.read": {S, A, D, R},
    "analytics.read_all": {S, A, D},
    "analytics.backfill": {S, A},
}
"""The default matrix, written out: changing DEFAULT_POLICY must change this test too."""
DAY = timedelta(days=1)

NEW_RULE = {
    "ruleId": "matrix-rule",
    "name": "matrix",
    "trigger": {"eventType": "estimate.created"},
    "actions": [{"actionType": "send_notification", "template": "t"}],
}
SAMPLE = {"type": "estimate.created", "payload": {"opportunityId": "opp-1"}}

Call = Callable[[World, Principal], Any]
CALLS: dict[str, tuple[str, Call]] = {
    # method: (the operation the table decides it by, a call on the principal's own things)
    "create_activity": (
        "activity.create",
        lambda w, p: w.ops.create_activity(
            p,
            {
                "opportunityId": f"opp-{p.user_id}",
                "activityType": "note",
                "subject": "n",
                "assignedTo": p.user_id,
            },
        ),
    ),
    "get_activity": ("activity.read", lambda w, p: w.ops.get_activity(p, f"act-{p.user_id}")),
    "list_activities": ("activity.read", lambda w, p: w.ops.list_activities(p)),
    "activities_for_opportunity": (
        "activity.read",
        lambda w, p: w.ops.activities_for_opportunity(p, f"opp-{p.user_id}"),
    ),
    "activities_for_customer": (
        "activity.read",
        lambda w, p: w.ops.activities_for_customer(p, "cust-1"),
    ),
    "activity_timeline": (
        "activity.read",
        lambda w, p: w.ops.activity_timeline(p, f"opp-{p.user_id}"),
    ),
    "pending_activities": ("activity.read", lambda w, p: w.ops.pending_activities(p)),
    "overdue_activities": ("activity.read", lambda w, p: w.ops.overdue_activities(p)),
    "activity_statistics": ("activity.statistics", lambda w, p: w.ops.activity_statistics(p)),
    "complete_activity": (
        "activity.complete",
        lambda w, p: w.ops.complete_activity(p, f"act-{p.user_id}", "successful"),
    ),
    "reschedule_activity": (
        "activity.update",
        lambda w, p: w.ops.reschedule_activity(p, f"act-{p.user_id}", w.clock.now() + DAY),
    ),
    "snooze_activity": (
        "activity.update",
        lambda w, p: w.ops.snooze_activity(p, f"act-{p.user_id}", duration=DAY),
    ),
    "edit_activity": (
        "activity.update",
        lambda w, p: w.ops.edit_activity(p, f"act-{p.user_id}", {"priority": "high"}),
    ),
    "reassign_activity": (
        "activity.reassign",
        lambda w, p: w.ops.reassign_activity(p, f"act-{p.user_id}", "carol"),
    ),
    "cancel_activity": (
        "activity.cancel",
        lambda w, p: w.ops.cancel_activity(p, f"act-{p.user_id}"),
    ),
    "delete_activity": (
        "activity.delete",
        lambda w, p: w.ops.delete_activity(p, f"act-{p.user_id}"),
    ),
    "create_rule": ("rule.write", lambda w, p: w.ops.create_rule(p, NEW_RULE)),
    "update_rule": (
        "rule.write",
        lambda w, p: w.ops.update_rule(p, "delayed", {"priority": 3}),
    ),
    "delete_rule": ("rule.write", lambda w, p: w.ops.delete_rule(p, "delayed")),
    "get_rule": ("rule.read", lambda w, p: w.ops.get_rule(p, "delayed")),
    "list_rules": ("rule.read", lambda w, p: w.ops.list_rules(p)),
    "list_active_rules": ("rule.read", lambda w, p: w.ops.list_active_rules(p)),
    "test_rule": ("rule.test", lambda w, p: w.ops.test_rule(p, "delayed", SAMPLE)),
    "list_parked_actions": ("action.read_parked", lambda w, p: w.ops.list_parked_actions(p)),
    "retry_action": ("action.retry", lambda w, p: w.ops.retry_action(p, w.parked_id)),
    "audit_trail": ("audit.read", lambda w, p: w.ops.audit_trail(p)),
}

INVERTED = Policy({op: frozenset(Role) - roles for op, roles in DEFAULT_POLICY.table.items()})
"""Every answer of the default table turned round: proves the answers come from the table."""
POLICIES = {"default": DEFAULT_POLICY, "inverted": INVERTED}


def test_the_default_table_is_pinned() -> None:
    assert {op: {r.value for r in roles} for op, roles in DEFAULT_POLICY.table.items()} == PINNED
    assert tuple(sorted(PINNED)) == OPERATIONS


def test_every_public_method_is_in_the_matrix() -> None:
    public = {
        name
        for name in dir(Operations)
        if callable(getattr(Operations, name)) and not name.startswith("_")
    }
    assert public == set(CALLS)
    assert {op for op, _ in CALLS.values()} <= set(OPERATIONS)


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("method", sorted(CALLS))
def test_role_matrix(policy_name: str, role: Role, method: str) -> None:
    policy = POLICIES[policy_name]
    world = build_world(policy=policy)
    operation, call = CALLS[method]
    principal = BY_ROLE[role]
    if role in policy.table[operation]:
        call(world, principal)
    else:
        with pytest.raises(PermissionDeniedError, match=operation.replace(".", r"\.")):
            call(world, principal)


@pytest.mark.parametrize("backend", ["memory", "mongo"])
def test_the_matrix_holds_on_mongo_too(backend: str) -> None:
    world = build_world(backend)
    for role, principal in BY_ROLE.items():
        for method in ("get_activity", "list_rules", "activity_statistics", "audit_trail"):
            operation, call = CALLS[method]
            if role in DEFAULT_POLICY.table[operation]:
                call(world, principal)
            else:
                with pytest.raises(PermissionDeniedError):
                    call(world, principal)


# --------------------------------------------------------------------------- finer operations


def _others(world: World, p: Principal, operation: str) -> Any:
    """Each finer operation, exercised on BOB's things (no principal here is BOB)."""
    ops = world.ops
    if operation == "activity.create_for_others":
        return ops.create_activity(
            p,
            {
                "opportunityId": f"opp-{p.user_id}",
                "activityType": "call",
                "subject": "for bob",
                "assignedTo": "bob",
            },
        )
    if operation == "activity.choose_id":
        return ops.create_activity(
            p,
            {
                "activityId": f"chosen-{p.user_id}",
                "opportunityId": f"opp-{p.user_id}",
                "activityType": "note",
                "subject": "n",
                "assignedTo": p.user_id,
            },
        )
    if operation == "activity.read_all":
        return ops.get_activity(p, "act-bob")
    if operation == "activity.complete_any":
        return ops.complete_activity(p, "act-bob", "successful")
    assert operation == "activity.statistics_all"
    return ops.activity_statistics(p, {"assignedTo": "bob"})


def _expected(policy: Policy, role: Role, operation: str) -> type[Exception] | None:
    """What the table says happens: None (allowed) or the error."""
    has = {op for op, roles in policy.table.items() if role in roles}
    if operation in ("activity.create_for_others", "activity.choose_id"):
        return None if {"activity.create", operation} <= has else PermissionDeniedError
    if operation == "activity.read_all":
        if "activity.read" not in has:
            return PermissionDeniedError
        return None if operation in has else NotFoundError  # hidden exactly like missing
    if operation == "activity.complete_any":
        if "activity.complete" not in has:
            return PermissionDeniedError
        visible = "activity.read_all" in has
        return None if visible and operation in has else NotFoundError
    if "activity.statistics" not in has:
        return PermissionDeniedError
    return None if operation in has else PermissionDeniedError


FINER = [
    "activity.create_for_others",
    "activity.choose_id",
    "activity.read_all",
    "activity.complete_any",
    "activity.statistics_all",
]


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("operation", FINER)
def test_finer_operations_follow_the_table(policy_name: str, role: Role, operation: str) -> None:
    policy = POLICIES[policy_name]
    world = build_world(policy=policy, parked=False)
    principal = BY_ROLE[role]
    error = _expected(policy, role, operation)
    if error is None:
        _others(world, principal, operation)
    else:
        with pytest.raises(error) as caught:
            _others(world, principal, operation)
        if error is NotFoundError:
            assert str(caught.value) == "activity 'act-bob' not found"
    assert world.flow.storage.activities.get("act-bob").completed_date is None or error is None


# --------------------------------------------------------------------------- overrides


def test_a_host_override_changes_the_answer() -> None:
    policy = DEFAULT_POLICY.with_overrides(activity__complete={Role.DISPATCHER, Role.SALES})
    assert policy.table["activity.complete"] == {Role.DISPATCHER, Role.SALES}
    assert DEFAULT_POLICY.table["activity.complete"] == {Role.SUPER_ADMIN, Role.ADMIN, Role.SALES}
    world = build_world(policy=policy, parked=False)
    done = world.ops.complete_activity(DISPATCHER, "act-disp-1", "successful").activity
    assert done.completed_by == "disp-1"
    with pytest.raises(PermissionDeniedError):
        world.ops.complete_activity(ADMIN, "act-admin-1", "successful")
    # complete_any is still the admins': a dispatcher's own completions only.
    with pytest.raises(NotFoundError):
        world.ops.complete_activity(DISPATCHER, "act-bob", "successful")


def test_an_override_can_close_an_operation_to_everyone() -> None:
    world = build_world(policy=DEFAULT_POLICY.with_overrides(rule__read=frozenset()), parked=False)
    for principal in (SUPER, ADMIN, DISPATCHER, ALICE):
        with pytest.raises(PermissionDeniedError):
            world.ops.list_rules(principal)
    world.ops.create_rule(ADMIN, NEW_RULE)  # rule.write is untouched


def test_role_names_are_accepted_in_overrides() -> None:
    policy = DEFAULT_POLICY.with_overrides(audit__read=["dispatcher"])
    assert policy.table["audit.read"] == {Role.DISPATCHER}
    assert policy.allows(DISPATCHER, "audit.read") and not policy.allows(ADMIN, "audit.read")


@pytest.mark.parametrize(
    "make",
    [
        lambda: DEFAULT_POLICY.with_overrides(activity__destroy={Role.ADMIN}),
        lambda: DEFAULT_POLICY.with_overrides(rule_write={Role.SALES}),  # one underscore
        lambda: Policy({**DEFAULT_POLICY.table, "rules.write": frozenset({Role.SALES})}),
        lambda: Policy({k: v for k, v in DEFAULT_POLICY.table.items() if k != "audit.read"}),
        lambda: DEFAULT_POLICY.with_overrides(audit__read={"boss"}),
        lambda: DEFAULT_POLICY.with_overrides(audit__read="admin"),  # a string is not a set
        lambda: Policy([("audit.read", {Role.ADMIN})]),  # type: ignore[arg-type]
    ],
)
def test_bad_overrides_are_refused(make: Callable[[], Policy]) -> None:
    with pytest.raises(InvalidInputError):
        make()


def test_the_table_cannot_be_changed_in_place() -> None:
    source = dict(DEFAULT_POLICY.table)
    policy = Policy(source)
    source["rule.write"] = frozenset(Role)
    assert policy.table["rule.write"] == {Role.SUPER_ADMIN, Role.ADMIN}
    with pytest.raises(TypeError):
        DEFAULT_POLICY.table["rule.write"] = frozenset(Role)  # type: ignore[index]
    assert Policy() == DEFAULT_POLICY


def test_unknown_operation_and_non_principal_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="operation"):
        DEFAULT_POLICY.allows(ADMIN, "rule.destroy")
    with pytest.raises(InvalidInputError, match="principal"):
        DEFAULT_POLICY.require({"user_id": "root", "role": "admin"}, "rule.read")  # type: ignore[arg-type]
    world = build_world(parked=False)
    with pytest.raises(InvalidInputError, match="principal"):
        world.ops.list_rules(None)  # type: ignore[arg-type]
    assert BOB.role is Role.SALES
