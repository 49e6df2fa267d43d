"""Arbitrary JSON into every public entry point of :class:`Operations` (and ``LeadFlow.handle``
with a mapping), by principals of every role: only documented errors escape (a
:class:`~leadflow.LeadflowError` or pydantic's ``ValidationError``), a refused call writes
nothing, and a read writes nothing even when it succeeds.

The arguments mix free JSON (``st.recursive``), values at the edges (datetimes near year 1 and
9999, naive ones, integers beyond 64 bits, NUL bytes and ``$`` in keys) and shapes that look
valid (activities, rules with nested condition groups, events, filters) so the search reaches
past the first check."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow import ActivityType, EventType, LeadflowError, Outcome, Principal
from leadflow.rules import OperatorRegistry

from .access_support import EVERYONE, World, build_world, snapshot
from .helpers import T0
from .suite import examples

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "$ne", "a.b", "\x00", "auto-1", "alice", "bob", "2026-01-05T09:00:00"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["$gt", "a.b", "\x00"]), inner, max_size=4
        )
    ),
    max_leaves=12,
)
EDGES = st.one_of(
    st.datetimes(timezones=st.just(UTC)),  # years 1..9999
    st.datetimes(),  # naive
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.integers(min_value=2**62, max_value=2**70),
    st.integers(max_value=-(2**63) - 1, min_value=-(2**70)),
)
VALUE = JSON | EDGES


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid-looking about three times in four, anything else otherwise: several arguments
    drawn this way are often all plausible, so the search gets past the first check."""
    return st.sampled_from((True, True, True, False)).flatmap(lambda ok: valid if ok else VALUE)


IDS = st.sampled_from(
    ["act-alice", "act-bob", "act-root", "opp-alice", "opp-bob", "cust-1", "delayed", "parking",
     "default-quote-follow-up", "auto-x", "AUTO-x", "$where", "", "x" * 129]
)  # fmt: skip
ID = mostly(IDS)
PRINCIPAL = st.sampled_from(EVERYONE) | st.sampled_from(EVERYONE[:2])  # admins more often
DATETIME = st.datetimes(timezones=st.just(UTC)) | VALUE

ACTIVITY_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "activityId": ID,
    "opportunityId": ID,
    "customerId": ID,
    "activityType": st.sampled_from([t.value for t in ActivityType]) | VALUE,
    "subject": st.text(min_size=1, max_size=20) | VALUE,
    "description": st.text(max_size=20) | VALUE,
    "scheduledDate": DATETIME,
    "dueDate": DATETIME,
    "completedDate": DATETIME,
    "assignedTo": ID,
    "outcome": st.sampled_from([o.value for o in Outcome]) | VALUE,
    "metadata": st.dictionaries(
        st.sampled_from(["phoneDuration", "quoteValue", "automationRuleId", "event_id", "x"])
        | st.text(max_size=6),
        VALUE,
        max_size=3,
    )
    | VALUE,
}
FORGED = st.sampled_from(["createdBy", "version", "open_key", "completedBy", "colour"])
PLAIN_ACTIVITY = st.fixed_dictionaries(
    {
        "opportunityId": st.sampled_from(["opp-alice", "opp-bob", "opp-root"]) | VALUE,
        "activityType": st.sampled_from(["call", "note"]) | VALUE,
        "subject": st.just("s") | VALUE,
    },
    optional={
        k: v
        for k, v in ACTIVITY_FIELDS.items()
        if k not in ("opportunityId", "activityType", "subject")
    },
)
ACTIVITY = mostly(PLAIN_ACTIVITY) | st.builds(
    lambda a, k, v: {**a, k: v}, PLAIN_ACTIVITY, FORGED, ID
)

OPERATOR = st.sampled_from(OperatorRegistry.default().names()) | VALUE
CONDITION = st.fixed_dictionaries(
    {
        "field": st.sampled_from(["estimateValue", "leadSource", "payload.a.b", "x"]) | VALUE,
        "operator": OPERATOR,
        "value": VALUE,
    },
    optional={"ignoreCase": st.booleans() | VALUE},
)
CONDITIONS = st.recursive(
    CONDITION,
    lambda inner: (
        st.fixed_dictionaries({"all": st.lists(inner, max_size=3)})
        | st.fixed_dictionaries({"any": st.lists(inner, max_size=3)})
        | st.fixed_dictionaries({"not": inner})
    ),
    max_leaves=8,
)
EVENT_TYPE = st.sampled_from([e.value for e in EventType] + ["opportunity_created"]) | VALUE
ACTION = st.fixed_dictionaries(
    {
        "actionType": st.sampled_from(
            ["create_activity", "send_notification", "update_status", "send_email", "refused_sync"]
        )
        | VALUE
    },
    optional={
        "delay": st.floats(min_value=0, max_value=1e6) | VALUE,
        "activityType": st.sampled_from(["call", "email"]) | VALUE,
        "subject": st.text(max_size=10) | VALUE,
        "template": st.sampled_from(["t", "urgent_lead"]) | VALUE,
        "assignTo": st.sampled_from(["lead_owner", "round_robin", "alice"]) | VALUE,
        "params": st.dictionaries(st.text(max_size=6), VALUE, max_size=3) | VALUE,
    },
)
TRIGGER = st.fixed_dictionaries(
    {"eventType": EVENT_TYPE}, optional={"conditions": st.lists(CONDITIONS, max_size=3) | VALUE}
)
RULE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "priority": st.integers(-5, 5) | VALUE,
    "isActive": st.booleans() | VALUE,
    "stopProcessing": st.booleans() | VALUE,
    "description": st.text(max_size=10) | VALUE,
    "name": st.text(min_size=1, max_size=10) | VALUE,
    "trigger": TRIGGER | VALUE,
    "actions": st.lists(ACTION, min_size=1, max_size=3) | VALUE,
}
RULE = (
    st.fixed_dictionaries(
        {
            "ruleId": st.sampled_from(["fuzz-rule", "delayed"]) | ID,
            "name": st.just("fuzz") | VALUE,
            "trigger": TRIGGER | VALUE,
            "actions": st.lists(ACTION, min_size=1, max_size=3) | VALUE,
        },
        optional={k: v for k, v in RULE_FIELDS.items() if k not in ("name", "trigger", "actions")}
        | {"createdBy": VALUE},
    )
    | VALUE
)
CHANGES = mostly(st.fixed_dictionaries({}, optional=RULE_FIELDS)) | st.fixed_dictionaries(
    {}, optional={"ruleId": ID, "updatedBy": VALUE, "version": VALUE}
)
EVENT = (
    st.fixed_dictionaries(
        {
            "type": EVENT_TYPE,
            "time": DATETIME,
            "payload": st.fixed_dictionaries(
                {"opportunityId": st.sampled_from(["opp-alice", "opp-bob", "opp-gone"]) | VALUE},
                optional={
                    "leadSource": st.sampled_from(["website", "referral"]) | VALUE,
                    "estimateValue": st.integers(0, 10**6) | VALUE,
                    "priority": st.sampled_from(["urgent", "low"]) | VALUE,
                    "outcome": st.sampled_from([o.value for o in Outcome]) | VALUE,
                    "nested": JSON,
                },
            )
            | VALUE,
        },
        optional={"id": ID, "occurredAt": DATETIME, "source": VALUE},
    )
    | VALUE
)
EVENT = mostly(EVENT)
FILTER = (
    st.fixed_dictionaries(
        {},
        optional={
            "assignedTo": ID,
            "opportunityId": ID,
            "customerId": ID,
            "state": st.sampled_from(["pending", "overdue", "completed"]) | VALUE,
            "asOf": DATETIME,
            "createdFrom": DATETIME,
            "dueTo": DATETIME,
            "activityTypes": st.lists(st.sampled_from(["call", "note"]) | VALUE, max_size=3),
            "outcomes": VALUE,
            "automationRuleId": ID,
        },
    )
    | VALUE
)
SORT = st.fixed_dictionaries(
    {}, optional={"field": st.sampled_from(["dueDate", "due_date", "createdAt"]) | VALUE,
                  "descending": st.booleans() | VALUE}
) | VALUE  # fmt: skip
LIMIT = mostly(st.integers(-2, 1200))
OUTCOME = mostly(st.sampled_from([o.value for o in Outcome]))
VERSION = mostly(st.none() | st.integers(-1, 3))
PENDING = mostly(st.sampled_from(["cancel", "keep", None]))

Draw = Callable[[st.SearchStrategy[Any]], Any]
Entry = Callable[[World, Principal, Draw], Any]
READ_ONLY = {
    "get_activity",
    "list_activities",
    "activities_for_opportunity",
    "activities_for_customer",
    "activity_timeline",
    "pending_activities",
    "overdue_activities",
    "activity_statistics",
    "get_rule",
    "list_rules",
    "list_active_rules",
    "test_rule",
    "list_parked_actions",
    "audit_trail",
}
ENTRIES: dict[str, Entry] = {
    "create_activity": lambda w, p, d: w.ops.create_activity(p, d(ACTIVITY)),
    "get_activity": lambda w, p, d: w.ops.get_activity(p, d(ID)),
    "list_activities": lambda w, p, d: w.ops.list_activities(
        p,
        d(mostly(FILTER)),
        sort=d(mostly(SORT | st.none())),
        limit=d(LIMIT),
        cursor=d(mostly(st.none() | st.sampled_from(["", "abc", "eyJ4IjoxfQ"]))),
    ),
    "activities_for_opportunity": lambda w, p, d: w.ops.activities_for_opportunity(p, d(ID)),
    "activities_for_customer": lambda w, p, d: w.ops.activities_for_customer(p, d(ID)),
    "activity_timeline": lambda w, p, d: w.ops.activity_timeline(p, d(ID)),
    "pending_activities": lambda w, p, d: w.ops.pending_activities(
        p, assigned_to=d(st.none() | ID), limit=d(LIMIT)
    ),
    "overdue_activities": lambda w, p, d: w.ops.overdue_activities(
        p, assigned_to=d(st.none() | ID), limit=d(LIMIT)
    ),
    "activity_statistics": lambda w, p, d: w.ops.activity_statistics(p, d(FILTER | st.none())),
    "complete_activity": lambda w, p, d: w.ops.complete_activity(
        p, d(ID), d(OUTCOME), expected_version=d(VERSION)
    ),
    "delete_activity": lambda w, p, d: w.ops.delete_activity(p, d(ID)),
    "reschedule_activity": lambda w, p, d: w.ops.reschedule_activity(
        p, d(ID), d(FUTURE), expected_version=d(VERSION)
    ),
    "snooze_activity": lambda w, p, d: w.ops.snooze_activity(
        p, d(ID), duration=d(DURATION), until=d(st.none() | FUTURE), expected_version=d(VERSION)
    ),
    "reassign_activity": lambda w, p, d: w.ops.reassign_activity(
        p, d(ID), d(ID), expected_version=d(VERSION)
    ),
    "edit_activity": lambda w, p, d: w.ops.edit_activity(
        p, d(ID), d(EDITS), expected_version=d(VERSION)
    ),
    "cancel_activity": lambda w, p, d: w.ops.cancel_activity(
        p, d(ID), reason=d(st.none() | st.text(max_size=20) | VALUE), expected_version=d(VERSION)
    ),
    "create_rule": lambda w, p, d: w.ops.create_rule(p, d(RULE)),
    "update_rule": lambda w, p, d: w.ops.update_rule(
        p, d(ID), d(CHANGES), expected_version=d(VERSION), pending=d(PENDING)
    ),
    "delete_rule": lambda w, p, d: w.ops.delete_rule(p, d(ID), pending=d(PENDING)),
    "get_rule": lambda w, p, d: w.ops.get_rule(p, d(ID)),
    "list_rules": lambda w, p, d: w.ops.list_rules(p),
    "list_active_rules": lambda w, p, d: w.ops.list_active_rules(p),
    "test_rule": lambda w, p, d: w.ops.test_rule(p, d(ID | RULE), d(EVENT)),
    "list_parked_actions": lambda w, p, d: w.ops.list_parked_actions(p, limit=d(LIMIT)),
    "retry_action": lambda w, p, d: w.ops.retry_action(
        p, d(st.just(w.parked_id) | st.sampled_from(["a" * 32]) | ID)
    ),
    "audit_trail": lambda w, p, d: w.ops.audit_trail(
        p, d(st.sampled_from(["rule", "activity", "action", None]) | VALUE), d(st.none() | ID)
    ),
}


FUTURE = mostly(
    st.timedeltas(min_value=timedelta(minutes=-5), max_value=timedelta(days=400)).map(
        lambda delta: T0 + delta
    )
)
DURATION = st.none() | mostly(
    st.timedeltas(min_value=timedelta(seconds=-5), max_value=timedelta(days=400))
)
EDITS = mostly(
    st.dictionaries(
        st.sampled_from(["subject", "description", "priority", "notes", "due_date"]),
        st.sampled_from(["low", "urgent", "", "x", None]) | st.text(max_size=8) | VALUE,
        max_size=3,
    )
)


def test_every_operation_is_fuzzed() -> None:
    from leadflow.access import Operations

    public = {
        n for n in dir(Operations) if callable(getattr(Operations, n)) and not n.startswith("_")
    }
    assert public == set(ENTRIES)


def _attempt(world: World, name: str, call: Callable[[], Any]) -> None:
    before = snapshot(world.flow)
    try:
        call()
    except (LeadflowError, ValidationError) as exc:
        event(f"refused: {type(exc).__name__}")
        after = snapshot(world.flow)
        assert after == before, f"{name} refused ({type(exc).__name__}: {exc}) but wrote"
        return
    except Exception as exc:  # an undocumented exception: report it with the input
        raise AssertionError(f"{name} raised an undocumented {type(exc).__name__}: {exc}") from exc
    event("done")
    if name in READ_ONLY:
        assert snapshot(world.flow) == before, f"{name} is a read but wrote"


FUZZ = settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("name", sorted(ENTRIES))
@FUZZ
@given(data=st.data(), principal=PRINCIPAL)
def test_operations_take_arbitrary_json(
    name: str, data: st.DataObject, principal: Principal
) -> None:
    world = build_world()
    _attempt(world, name, lambda: ENTRIES[name](world, principal, data.draw))


@FUZZ
@given(event=EVENT)
def test_handle_takes_arbitrary_json(event: Any) -> None:
    world = build_world()
    before = snapshot(world.flow)
    try:
        world.flow.handle(event)
    except (LeadflowError, ValidationError) as exc:
        assert snapshot(world.flow) == before, f"handle refused ({exc}) but wrote"
    except Exception as exc:
        raise AssertionError(f"handle raised an undocumented {type(exc).__name__}: {exc}") from exc
