from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from leadflow import (
    Action,
    Activity,
    ActivityState,
    ActivityType,
    Delay,
    Event,
    FollowUpRule,
    Outcome,
)
from leadflow.models import canonical_event_type

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_activity_reads_seed_camel_case_document_and_writes_it_back():
    doc = {
        "activityId": "2b1f4c0e-1111-4a4a-9999-000000000001",
        "opportunityId": "65f0c0ffee0000000000abcd",
        "customerId": "65f0c0ffee0000000000cafe",
        "activityType": "call",
        "subject": "Call new website lead",
        "description": "",
        "scheduledDate": datetime(2026, 1, 5, 10, tzinfo=UTC),
        "dueDate": datetime(2026, 1, 5, 11, tzinfo=UTC),
        "assignedTo": "rep-1",
        "metadata": {"phoneDuration": 120, "automationRuleId": "r1", "campaign": "spring"},
        "createdBy": "system",
        "createdAt": T0,
        "_id": "ignored",
    }
    activity = Activity.from_document(doc)
    assert activity.activity_type is ActivityType.CALL
    assert activity.metadata.phone_duration == 120
    assert activity.metadata.automation_rule_id == "r1"
    assert activity.metadata.model_extra == {"campaign": "spring"}
    out = activity.to_document()
    assert out["activityId"] == doc["activityId"]
    assert out["dueDate"] == doc["dueDate"]
    assert out["metadata"]["campaign"] == "spring"
    assert Activity.from_document(out) == activity


def test_snake_case_construction_is_accepted():
    activity = Activity(opportunity_id="o1", activity_type="email", subject="Hi")
    assert activity.opportunity_id == "o1"
    assert activity.activity_id  # generated


def test_naive_datetimes_are_rejected_naming_the_field():
    with pytest.raises(ValidationError) as info:
        Activity(
            opportunity_id="o1", activity_type="call", subject="x", due_date=datetime(2026, 1, 1)
        )
    assert info.value.errors()[0]["loc"] == ("due_date",)
    assert "timezone" in str(info.value)


def test_aware_datetimes_are_normalised_to_utc():
    plus2 = timezone(timedelta(hours=2))
    activity = Activity(
        opportunity_id="o1",
        activity_type="call",
        subject="x",
        due_date=datetime(2026, 1, 1, 12, tzinfo=plus2),
    )
    assert activity.due_date == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert activity.due_date.tzinfo is UTC


@pytest.mark.parametrize(
    "field, value",
    [
        ("activity_type", "telegram"),
        ("outcome", "maybe"),
        ("opportunity_id", "$ne"),
        ("opportunity_id", ""),
        ("subject", ""),
    ],
)
def test_invalid_activity_fields_are_named(field, value):
    data = {"opportunity_id": "o1", "activity_type": "call", "subject": "x", field: value}
    with pytest.raises(ValidationError) as info:
        Activity(**data)
    assert field in str(info.value) or field.replace("_", "") in str(info.value).lower()


def test_activity_consistency_rules():
    with pytest.raises(ValidationError, match="dueDate must not be before"):
        Activity(
            opportunity_id="o1",
            activity_type="call",
            subject="x",
            scheduled_date=T0,
            due_date=T0 - timedelta(hours=1),
        )
    with pytest.raises(ValidationError, match="outcome requires completedDate"):
        Activity(opportunity_id="o1", activity_type="call", subject="x", outcome="successful")


@pytest.mark.parametrize("key", ["$where", "a.b", "", "nul\x00"])
def test_metadata_keys_cannot_smuggle_operators(key):
    with pytest.raises(ValidationError, match="must be non-empty, not start with '\\$'") as info:
        Activity(opportunity_id="o1", activity_type="note", subject="x", metadata={key: "1"})
    assert info.value.errors()[0]["loc"] == ("metadata",)


def test_activity_state():
    open_ = Activity(opportunity_id="o1", activity_type="call", subject="x", due_date=T0)
    assert open_.state(T0 - timedelta(seconds=1)) is ActivityState.PENDING
    assert open_.state(T0) is ActivityState.PENDING
    assert open_.state(T0 + timedelta(seconds=1)) is ActivityState.OVERDUE
    done = open_.model_copy(update={"completed_date": T0, "outcome": Outcome.SUCCESSFUL})
    assert done.state(T0 + timedelta(days=9)) is ActivityState.COMPLETED


@pytest.mark.parametrize(
    "given, canonical",
    [
        ("opportunity_created", "opportunity.created"),
        ("opportunity.created", "opportunity.created"),
        ("quote_sent", "estimate.created"),
        ("estimate.created", "estimate.created"),
        ("status_changed", "opportunity.status_changed"),
        ("opportunity.status_changed", "opportunity.status_changed"),
        ("activity_completed", "activity.completed"),
        ("invoice.paid", "invoice.paid"),
    ],
)
def test_event_types_accept_both_spellings_and_store_one(given, canonical):
    assert canonical_event_type(given) == canonical
    assert Event(type=given, time=T0).type == canonical


@pytest.mark.parametrize("bad", ["", "Opportunity.Created", "a..b", "drop table", "$where"])
def test_bad_event_types_are_rejected(bad):
    with pytest.raises(ValidationError, match="type"):
        Event(type=bad, time=T0)


def test_event_needs_aware_time():
    with pytest.raises(ValidationError, match="time"):
        Event(type="opportunity.created", time=datetime(2026, 1, 1))


def test_event_document_is_camel_case_and_reads_back():
    doc = {
        "eventId": "e1",
        "eventType": "quote_sent",
        "occurredAt": "2026-01-05T10:00:00+01:00",
        "payload": {"opportunityId": "o1"},
        "actor": "rep-1",
    }
    event = Event.model_validate(doc)
    assert (event.id, event.type, event.time) == ("e1", "estimate.created", T0)
    out = event.to_document()
    assert out == {
        "eventId": "e1",
        "eventType": "estimate.created",
        "occurredAt": T0,
        "payload": {"opportunityId": "o1"},
        "actor": "rep-1",
    }
    assert Event.from_document(out) == event


def test_event_accepts_the_attribute_names_too():
    by_name = Event.model_validate({"id": "e1", "type": "quote_sent", "time": T0})
    assert by_name == Event(id="e1", type="estimate.created", time=T0)
    assert by_name == Event.model_validate(
        {"eventId": "e1", "eventType": "quote_sent", "occurredAt": T0}
    )


@pytest.mark.parametrize("extra", [{"type": "estimate.created"}, {"time": T0}, {"id": "e2"}])
def test_event_refuses_two_spellings_of_one_field(extra):
    doc = {"eventId": "e1", "eventType": "quote_sent", "occurredAt": T0, **extra}
    with pytest.raises(ValidationError) as info:
        Event.model_validate(doc)
    assert info.value.errors()[0]["loc"] == (next(iter(extra)),)


def test_stored_scheduled_events_in_the_old_spelling_still_load():
    old = {"id": "e1", "type": "opportunity.created", "time": T0, "payload": {}}
    assert Event.from_document(old).to_document()["eventType"] == "opportunity.created"


def test_event_opportunity_id_reads_either_spelling():
    assert Event(type="x.y", time=T0, payload={"opportunityId": "o1"}).opportunity_id == "o1"
    assert Event(type="x.y", time=T0, payload={"opportunity_id": "o2"}).opportunity_id == "o2"
    assert Event(type="x.y", time=T0).opportunity_id is None


def test_delay_accepts_hours_number_and_units_and_round_trips():
    assert Delay.model_validate(48).as_timedelta() == timedelta(hours=48)
    assert Delay.model_validate(1.5).as_timedelta() == timedelta(minutes=90)
    unit = Delay.model_validate({"amount": 2, "unit": "business_days"})
    assert unit.is_business_time
    action = Action(action_type="create_activity", subject="s", delay=48)
    assert action.to_document()["delay"] == 48
    doc = Action(action_type="create_activity", subject="s", delay=unit).to_document()
    assert doc["delay"] == {"amount": 2.0, "unit": "business_days"}
    assert Action.from_document(doc).delay == unit


@pytest.mark.parametrize(
    "delay, message",
    [
        (-1, "greater than or equal"),
        (True, "number of hours"),
        ({"amount": 1.5, "unit": "business_days"}, "whole number"),
        (24 * 365 * 11, "ten years"),
        ({"amount": 1, "unit": "fortnights"}, "unit"),
    ],
)
def test_bad_delays_are_rejected(delay, message):
    with pytest.raises(ValidationError, match=message):
        Action(action_type="create_activity", subject="s", delay=delay)


@pytest.mark.parametrize(
    "action, message",
    [
        ({"actionType": "Bad Type"}, "actionType"),
        ({"actionType": "create_activity", "subject": "s", "colour": "red"}, "colour"),
        ({"actionType": "create_activity", "activityType": "telegram"}, "activityType"),
        ({"actionType": "send_email", "template": 5}, "template"),
        ({"actionType": "x", "params": ["not", "a", "mapping"]}, "params"),
        ({"actionType": "x", "params": {"$set": 1}}, "params"),
    ],
)
def test_actions_validate_the_shape_of_their_settings(action, message):
    with pytest.raises(ValidationError, match=message):
        Action.model_validate(action)


def test_what_an_action_type_needs_is_left_to_its_handler():
    # "create_activity needs a subject" is the handler's params model's rule (runtime tests).
    assert Action.model_validate({"actionType": "create_activity"}).settings() == {}


def test_custom_action_types_are_allowed():
    assert Action(action_type="post_to_slack", params={"channel": "#sales"}).params


def test_settings_merge_the_seed_fields_and_params_in_camel_case():
    action = Action.model_validate(
        {
            "actionType": "create_activity",
            "activityType": "call",
            "subject": "Call the lead",
            "assignTo": "lead_owner",
            "params": {"subject": "Call now", "dueWithinHours": 2},
            "delay": 1,
        }
    )
    settings = action.settings()
    assert settings == {
        "activityType": "call",
        "subject": "Call now",
        "assignTo": "lead_owner",
        "dueWithinHours": 2,
    }
    assert type(settings["activityType"]) is str
    settings["subject"] = "changed"
    assert action.settings()["subject"] == "Call now"
    assert action.params == {"subject": "Call now", "dueWithinHours": 2}


def test_settings_leave_out_unset_fields_type_and_delay():
    action = Action(action_type="send_email", template="welcome", delay=2)
    assert action.settings() == {"template": "welcome"}


def test_rule_document_round_trip_with_nested_groups():
    doc = {
        "ruleId": "r1",
        "name": "Nested",
        "trigger": {
            "eventType": "opportunity_created",
            "conditions": [
                {"field": "leadSource", "operator": "equals", "value": "website"},
                {
                    "any": [
                        {"field": "priority", "operator": "in", "value": ["high", "urgent"]},
                        {"not": {"field": "customer.region", "operator": "exists"}},
                    ]
                },
            ],
        },
        "actions": [{"actionType": "create_activity", "delay": 1, "subject": "Call"}],
        "priority": 5,
    }
    rule = FollowUpRule.model_validate(doc)
    assert rule.trigger.event_type == "opportunity.created"
    again = FollowUpRule.from_document(rule.to_document())
    assert again == rule
    assert (
        rule.to_document()["trigger"]["conditions"][1]["any"][1]["not"]["field"]
        == "customer.region"
    )


@pytest.mark.parametrize(
    "conditions, message",
    [
        ([{"field": "a..b", "operator": "equals", "value": 1}], "bad field path"),
        ([{"field": "$where", "operator": "equals", "value": 1}], "bad field path"),
        ([{"field": "a", "operator": "Equals", "value": 1}], "operator"),
        ([{"all": [], "any": []}], "exactly one key"),
        ([{"not": [{"field": "a", "operator": "exists"}]}], "not"),
        ([{"field": "a", "operator": "equals", "value": 1, "extra": 2}], "extra"),
    ],
)
def test_malformed_conditions_are_rejected(conditions, message):
    with pytest.raises(ValidationError, match=message):
        FollowUpRule.model_validate(
            {
                "name": "r",
                "trigger": {"eventType": "opportunity.created", "conditions": conditions},
                "actions": [{"actionType": "create_activity", "subject": "s"}],
            }
        )


@pytest.mark.parametrize("model", [Activity, Event, FollowUpRule, Action, Delay])
@pytest.mark.parametrize("document", [["a", "b"], "a rule", 3, None])
def test_documents_that_are_not_mappings_are_validation_errors(model, document):
    if model is Delay and isinstance(document, int):
        return  # a bare number is an hours delay
    with pytest.raises(ValidationError):
        model.from_document(document)
    with pytest.raises(ValidationError):
        model.model_validate(document)


def test_rule_needs_an_action():
    with pytest.raises(ValidationError, match="actions"):
        FollowUpRule(name="r", trigger={"event_type": "opportunity.created"}, actions=[])


@pytest.mark.parametrize(
    ("build", "update"),
    [
        (
            lambda: Activity(
                activity_id="a1",
                opportunity_id="o1",
                activity_type="call",
                subject="s",
                created_at=datetime(2026, 1, 5, tzinfo=UTC),
            ),
            {"created_at": datetime(2026, 1, 5)},  # naive
        ),
        (
            lambda: Activity(
                activity_id="a1",
                opportunity_id="o1",
                activity_type="call",
                subject="s",
                created_at=datetime(2026, 1, 5, tzinfo=UTC),
            ),
            {"opportunity_id": {"$ne": None}},
        ),
        (
            lambda: Event(type="opportunity.created", time=datetime(2026, 1, 5, tzinfo=UTC)),
            {"payload": {"$where": "1"}},
        ),
        (
            lambda: Action(action_type="send_notification", template="t"),
            {"params": {"x": {1, 2}}},
        ),
    ],
)
def test_a_record_changed_with_model_copy_is_validated_again(
    build: Callable[[], Any], update: dict[str, Any]
) -> None:
    """Records are immutable, and ``model_copy(update=...)`` validates the changed record: no
    bad value reaches a store through the back door pydantic's own ``model_copy`` leaves."""
    record = build()
    with pytest.raises(ValidationError):
        record.model_copy(update=update)
    field = next(iter(update))
    with pytest.raises(ValidationError):
        setattr(record, field, update[field])
    assert record.model_copy(update={}) == record
