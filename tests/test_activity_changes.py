"""Reschedule, snooze, reassign, edit and cancel (issue 19): the role matrix (admin, dispatcher,
sales x own / another's), expectedVersion, states, snooze's inputs, the events reaching the
rules, a race with store latency, and arbitrary JSON on the HTTP routes."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow import (
    ActivityState,
    ConflictError,
    FollowUpRule,
    InvalidInputError,
    InvalidStateError,
    LeadflowError,
    NotFoundError,
    PermissionDeniedError,
    Principal,
    StaleWriteError,
)
from leadflow.access import DEFAULT_POLICY

from .access_support import (
    ADMIN,
    ALICE,
    BOB,
    DISPATCHER,
    SUPER,
    build_world,
    proxied_storage,
    run_threads,
    snapshot,
)
from .suite import examples
from .test_access_fuzz import JSON as VALUE
from .test_contrib_fastapi import Api, as_, make_api

DAY = timedelta(days=1)

CHANGES: dict[str, Any] = {
    "reschedule": lambda w, p, a: w.ops.reschedule_activity(p, a, w.clock.now() + DAY),
    "snooze": lambda w, p, a: w.ops.snooze_activity(p, a, duration=timedelta(hours=2)),
    "edit": lambda w, p, a: w.ops.edit_activity(p, a, {"description": "notes", "priority": "low"}),
    "reassign": lambda w, p, a: w.ops.reassign_activity(p, a, "carol"),
    "cancel": lambda w, p, a: w.ops.cancel_activity(p, a, reason="lead went cold"),
}
EVENTS = {
    "reschedule": "activity.rescheduled",
    "snooze": "activity.rescheduled",
    "edit": "activity.updated",
    "reassign": "activity.reassigned",
    "cancel": "activity.cancelled",
}


def _expected(principal: Principal, change: str, own: bool) -> type[Exception] | None:
    """The default table: sales change (not reassign) their own; staff change anyone's."""
    if principal.role.value == "sales":
        if change == "reassign":
            return PermissionDeniedError
        return None if own else NotFoundError
    return None


@pytest.mark.parametrize("own", [True, False], ids=["own", "other"])
@pytest.mark.parametrize("principal", [SUPER, ADMIN, DISPATCHER, ALICE], ids=str)
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_the_role_matrix(change: str, principal: Principal, own: bool) -> None:
    world = build_world(parked=False)
    target = f"act-{principal.user_id}" if own else "act-bob"
    error = _expected(principal, change, own)
    before = snapshot(world.flow)
    if error is not None:
        with pytest.raises(error):
            CHANGES[change](world, principal, target)
        assert snapshot(world.flow) == before
        return
    result = CHANGES[change](world, principal, target)
    assert result.activity.version == 2
    assert result.activity.updated_by == principal.user_id
    assert result.event.type == EVENTS[change]
    payload = result.event.payload
    assert payload["activityId"] == target and payload["opportunityId"].startswith("opp-")
    assert payload["changedBy"] == principal.user_id and payload["previous"]
    names = [name for name, _ in world.events.events]
    assert names[-1] == EVENTS[change]
    [entry] = [e for e in world.ops.audit_trail(ADMIN, "activity", target) if e.change != "created"]
    assert entry.actor == principal.user_id and entry.before and entry.after


def test_a_host_may_let_sales_hand_their_own_activities_on() -> None:
    policy = DEFAULT_POLICY.with_overrides(activity__reassign={"sales", "admin"})
    world = build_world(policy=policy, parked=False)
    done = world.ops.reassign_activity(ALICE, "act-alice", "bob")
    assert done.activity.assigned_to == "bob"
    assert done.event.payload["previous"] == {"assignedTo": "alice"}
    with pytest.raises(NotFoundError):  # not another rep's
        world.ops.reassign_activity(ALICE, "act-bob", "alice")
    with pytest.raises(PermissionDeniedError):  # the dispatcher lost it
        world.ops.reassign_activity(DISPATCHER, "act-bob", "alice")


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_stale_expected_version_is_a_conflict_and_writes_nothing(change: str) -> None:
    world = build_world(parked=False)
    world.ops.edit_activity(ADMIN, "act-alice", {"subject": "moved on"})  # now version 2
    before = snapshot(world.flow)
    ops = world.ops
    call = {
        "reschedule": lambda: ops.reschedule_activity(
            ADMIN, "act-alice", world.clock.now() + DAY, expected_version=1
        ),
        "snooze": lambda: ops.snooze_activity(ADMIN, "act-alice", duration=DAY, expected_version=1),
        "edit": lambda: ops.edit_activity(ADMIN, "act-alice", {"subject": "x"}, expected_version=1),
        "reassign": lambda: ops.reassign_activity(ADMIN, "act-alice", "bob", expected_version=1),
        "cancel": lambda: ops.cancel_activity(ADMIN, "act-alice", expected_version=1),
    }[change]
    with pytest.raises(StaleWriteError) as caught:
        call()
    assert isinstance(caught.value, ConflictError)
    assert snapshot(world.flow) == before


def test_cancelled_is_kept_in_the_timeline_and_out_of_the_work_lists() -> None:
    world = build_world(parked=False)
    world.clock.advance(timedelta(hours=2))  # every act-* is overdue now
    assert "act-alice" in [a.activity_id for a in world.ops.overdue_activities(ADMIN)]
    world.ops.cancel_activity(ALICE, "act-alice", reason="duplicate")
    assert "act-alice" not in [a.activity_id for a in world.ops.overdue_activities(ADMIN)]
    assert "act-alice" not in [a.activity_id for a in world.ops.pending_activities(ADMIN)]
    [shown] = world.ops.activity_timeline(ALICE, "opp-alice")
    assert shown.state(world.clock.now()) is ActivityState.CANCELLED
    assert (shown.cancelled_by, shown.cancel_reason) == ("alice", "duplicate")
    stats = world.ops.activity_statistics(ALICE)
    assert stats.total == 0
    assert world.flow.storage.activities.upcoming(world.clock.now() - DAY, 3 * DAY) == [
        a for a in world.flow.storage.activities.upcoming(world.clock.now() - DAY, 3 * DAY)
        if a.activity_id != "act-alice"
    ]  # fmt: skip


def test_states_refuse_changes() -> None:
    world = build_world(parked=False)
    world.ops.cancel_activity(ADMIN, "act-alice")
    for change in CHANGES:
        with pytest.raises(InvalidStateError, match="cancelled"):
            CHANGES[change](world, ADMIN, "act-alice")
    with pytest.raises(InvalidStateError, match="cancelled"):
        world.ops.complete_activity(ADMIN, "act-alice", "successful")
    with pytest.raises(InvalidStateError, match="cancelled"):
        world.flow.complete_activity("act-alice", outcome="successful", completed_by="x")
    world.ops.complete_activity(ADMIN, "act-admin-1", "successful")
    for change in CHANGES:
        with pytest.raises(InvalidStateError, match="completed"):
            CHANGES[change](world, ADMIN, "act-admin-1")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"until": datetime(2026, 1, 6, 9)}, "until"),  # naive
        ({"until": "2026-01-06T09:00:00Z"}, "until"),  # not a datetime
        ({"until": datetime(2026, 1, 5, 8).astimezone()}, "until"),  # past
        ({"duration": timedelta(0)}, "duration"),
        ({"duration": timedelta(hours=-1)}, "duration"),
        ({"duration": timedelta(days=400)}, "duration"),
        ({"duration": 3600}, "duration"),
        ({}, "duration"),
        ({"duration": DAY, "until": datetime(2026, 2, 1, 9).astimezone()}, "duration"),
    ],
)
def test_snooze_refuses_bad_input_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    world = build_world(parked=False)
    before = snapshot(world.flow)
    with pytest.raises(InvalidInputError) as caught:
        world.ops.snooze_activity(ADMIN, "act-alice", **kwargs)
    assert caught.value.field == field
    assert snapshot(world.flow) == before


def test_snooze_moves_the_due_date_later_and_says_so() -> None:
    world = build_world(parked=False)
    due = world.flow.storage.activities.get("act-alice").due_date
    assert due is not None
    done = world.ops.snooze_activity(ALICE, "act-alice", duration=timedelta(hours=3))
    assert done.activity.due_date == due + timedelta(hours=3)
    assert done.event.payload["reason"] == "snooze"
    world.clock.advance(DAY)  # overdue now: a snooze counts from now
    later = world.ops.snooze_activity(ALICE, "act-alice", duration=timedelta(hours=1))
    assert later.activity.due_date == world.clock.now() + timedelta(hours=1)
    assert [e.change for e in world.ops.audit_trail(ADMIN, "activity", "act-alice")][-1] == (
        "snoozed"
    )


def test_reschedule_refuses_the_past_and_naive_times() -> None:
    world = build_world(parked=False)
    with pytest.raises(InvalidInputError) as caught:
        world.ops.reschedule_activity(ADMIN, "act-alice", world.clock.now() - DAY)
    assert caught.value.field == "dueDate"
    with pytest.raises(InvalidInputError) as caught:
        world.ops.reschedule_activity(ADMIN, "act-alice", datetime(2026, 3, 1))
    assert caught.value.field == "dueDate"


# --------------------------------------------------------------------------- into the rules

RULES = [
    FollowUpRule.model_validate(
        {
            "ruleId": f"on-{name}",
            "name": f"react to {name}",
            "trigger": {"eventType": f"activity.{name}"},
            "actions": [{"actionType": "send_notification", "template": f"{name}_notice"}],
        }
    )
    for name in ("rescheduled", "reassigned", "updated", "cancelled")
]


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_each_event_reaches_the_rules(change: str) -> None:
    world = build_world(parked=False, rules=RULES)
    result = CHANGES[change](world, ADMIN, "act-bob")
    assert result.follow_up is not None
    assert list(result.follow_up.matched_rules) == [f"on-{EVENTS[change][9:]}"]
    assert result.follow_up.executed and not result.follow_up.errors
    # Delivered once: handling the same event again is a duplicate.
    again = world.flow.handle(result.event)
    assert again.duplicates and not again.executed


def test_a_rule_on_activity_cancelled_plans_a_delayed_action() -> None:
    rule = {
        "ruleId": "replace-cancelled",
        "name": "Plan a new call a day after a cancelled one",
        "trigger": {
            "eventType": "activity.cancelled",
            "conditions": [{"field": "reason", "operator": "equals", "value": "reschedule later"}],
        },
        "actions": [
            {"actionType": "create_activity", "activityType": "call", "subject": "Call again",
             "delay": 24}
        ],
    }  # fmt: skip
    world = build_world(parked=False, rules=[FollowUpRule.model_validate(rule)])
    result = world.ops.cancel_activity(ALICE, "act-alice", reason="reschedule later")
    assert result.follow_up is not None and result.follow_up.executed
    assert not result.follow_up.errors
    [again] = [
        a for a in world.flow.storage.activities.for_opportunity("opp-alice")
        if a.subject == "Call again"
    ]  # fmt: skip
    assert again.due_date == world.clock.now() + DAY
    assert result.event.payload["previous"] == {"state": "pending"}


# --------------------------------------------------------------------------- the race


def test_two_reschedules_of_one_version_have_one_winner() -> None:
    storage, proxies = proxied_storage(activities="activities")
    world = build_world(storage=storage, parked=False)
    proxies["activities"].before["get"] = lambda *a, **k: time.sleep(0.05)
    now = world.clock.now()
    results = run_threads(
        lambda: world.ops.reschedule_activity(ADMIN, "act-alice", now + DAY, expected_version=1),
        lambda: world.ops.reschedule_activity(
            DISPATCHER, "act-alice", now + 2 * DAY, expected_version=1
        ),
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1 and len(errors) == 1, results
    assert isinstance(errors[0], StaleWriteError)
    stored = world.flow.storage.activities.get("act-alice")
    assert stored.version == 2 and stored.due_date == wins[0].activity.due_date
    changes = [e.change for e in world.ops.audit_trail(ADMIN, "activity", "act-alice")]
    assert changes.count("rescheduled") == 1
    assert [n for n, _ in world.events.events].count("activity.rescheduled") == 1


# --------------------------------------------------------------------------- HTTP, fuzzed

ROUTE = st.sampled_from(["reschedule", "snooze", "reassign", "cancel", ""])
BODY = (
    st.fixed_dictionaries(
        {},
        optional={
            "dueDate": st.sampled_from(["2026-02-01T09:00:00Z", "2026-02-01T09:00:00", "x"])
            | VALUE,
            "duration": st.sampled_from(["PT2H", "P1D", "-PT1H", 0, 7200, "P900D"]) | VALUE,
            "until": st.sampled_from(["2026-01-06T09:00:00+01:00", "2020-01-01T00:00:00Z"]) | VALUE,
            "assignedTo": st.sampled_from(["carol", "bob", "$ne", ""]) | VALUE,
            "subject": st.text(max_size=5) | VALUE,
            "description": st.text(max_size=5) | VALUE,
            "priority": st.sampled_from(["low", "high", "urgent", None, "meh"]) | VALUE,
            "reason": st.text(max_size=5) | VALUE,
            "expectedVersion": st.sampled_from([1, 2, 0, -1, "1", None]) | VALUE,
        },
    )
    | VALUE
)
_API: list[Api] = []


@settings(
    max_examples=examples(120),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    route=ROUTE,
    body=BODY,
    who=st.sampled_from([ADMIN, DISPATCHER, ALICE]),
    target=st.sampled_from(["act-alice", "act-bob", "nope", "$x"]),
)
def test_the_routes_take_arbitrary_json(route: str, body: Any, who: Principal, target: str) -> None:
    api = make_api(parked=False)
    before = snapshot(api.world.flow)
    path = f"/api/lead-activities/{target}" + (f"/{route}" if route else "")
    # Sent as raw JSON, as a client may send it (NaN and infinity included).
    headers = {**as_(who), "content-type": "application/json"}
    answer = api.client.request("PATCH", path, headers=headers, content=json.dumps(body))
    assert answer.status_code in (200, 400, 403, 404, 409, 422), answer.text
    if answer.status_code == 200:
        assert answer.json()["activity"]["version"] == 2
    else:
        assert snapshot(api.world.flow) == before, answer.text
        assert "error" in answer.json() or "detail" in answer.json()


def test_the_routes_answer_the_change_and_its_event() -> None:
    api = make_api(parked=False)
    answer = api.call(
        "PATCH",
        "/api/lead-activities/act-alice/snooze",
        ALICE,
        json={"duration": "PT2H", "expectedVersion": 1},
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["eventType"] == "activity.rescheduled"
    assert data["activity"]["dueDate"].startswith("2026-01-05T12:00:00")
    stale = api.call(
        "PATCH", "/api/lead-activities/act-alice/cancel", ALICE, json={"expectedVersion": 1}
    )
    assert stale.status_code == 409
    naive = api.call(
        "PATCH", "/api/lead-activities/act-alice/snooze", ALICE, json={"until": "2026-02-01T09:00"}
    )
    assert naive.status_code == 422 and "until" in naive.text
    done = api.call("PATCH", "/api/lead-activities/act-alice/cancel", ALICE, json={"reason": "x"})
    assert done.status_code == 200 and done.json()["activity"]["cancelledBy"] == "alice"
    gone = api.call("PATCH", "/api/lead-activities/act-alice/complete", ALICE, json={})
    assert gone.status_code == 409


def test_bad_input_is_a_documented_error_on_operations() -> None:
    world = build_world(parked=False)
    for call in (
        lambda: world.ops.edit_activity(ADMIN, "act-alice", {"colour": "red"}),
        lambda: world.ops.edit_activity(ADMIN, "act-alice", {}),
        lambda: world.ops.edit_activity(ADMIN, "act-alice", {"subject": ""}),
        lambda: world.ops.edit_activity(ADMIN, "act-alice", {"priority": "meh"}),
        lambda: world.ops.reassign_activity(ADMIN, "act-alice", {"$ne": 1}),  # type: ignore[arg-type]
        lambda: world.ops.cancel_activity(ADMIN, "act-alice", reason=5),  # type: ignore[arg-type]
        lambda: world.ops.cancel_activity(ADMIN, "act-alice", expected_version=True),  # type: ignore[arg-type]
    ):
        before = snapshot(world.flow)
        with pytest.raises((LeadflowError, ValidationError)):
            call()
        assert snapshot(world.flow) == before
    assert BOB.role.value == "sales"
