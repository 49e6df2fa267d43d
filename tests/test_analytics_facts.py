"""The analytic facts: what an event yields (:func:`leadflow.facts.facts_of`) and how the
runtime records them as events arrive (in the event's unit of work, once per key)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from leadflow import (
    ActivityType,
    Event,
    LeadFlow,
    ManualClock,
    Outcome,
    StorageError,
    default_rules,
)
from leadflow.facts import facts_of
from leadflow.ports import Storage
from leadflow.stores.memory import InMemoryAnalyticsStore, memory_storage
from leadflow.stores.sql import sql_storage

from .suite import examples

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
PERIOD = (T0 - timedelta(days=1), T0 + timedelta(days=30))


def event(event_id: str, kind: str, hours: float = 0, **payload: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": kind,
        "time": (T0 + timedelta(hours=hours)).isoformat(),
        "payload": payload,
    }


def test_an_arrival_takes_the_source_and_owner_from_the_payload() -> None:
    arrival, change, completion = facts_of(
        Event.model_validate(
            event("e1", "opportunity.created", opportunityId="o1", source="fair", ownerId="al")
        )
    )
    assert arrival is not None and (arrival.source, arrival.owner) == ("fair", "al")
    assert arrival.arrived_at == T0 and change is None and completion is None
    arrival, change, _ = facts_of(
        Event.model_validate(
            event(
                "e2",
                "opportunity.created",
                opportunityId="o2",
                leadSource="website",
                source="ignored",
                assignedTo="bob",
                status="new",
            )
        )
    )
    assert arrival is not None and (arrival.source, arrival.owner) == ("website", "bob")
    assert change is not None and (change.from_status, change.to_status) == (None, "new")


@settings(max_examples=examples(200), deadline=None)
@given(
    kind=st.sampled_from(["opportunity.created", "opportunity.status_changed"]),
    values=st.dictionaries(
        st.sampled_from(
            ["leadSource", "source", "assignedTo", "ownerId", "status", "newStatus", "oldStatus"]
        ),
        st.none()
        | st.integers(-(2**63), 2**63 - 1)
        | st.text(
            st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=140
        )
        | st.sampled_from(["a b", " x ", "o1"]),
    ),
)
def test_the_facts_are_built_as_the_models_would_build_them(
    kind: str, values: dict[str, Any]
) -> None:
    """The arrival and the status change are made without pydantic's ``model_construct``:
    the same values, fields set and field order, and values the models' checks take."""
    made = facts_of(Event.model_validate(event("e1", kind, opportunityId="o1", **values)))
    for fact in made[:2]:
        if fact is None:
            continue
        constructed = type(fact).model_construct(**fact.__dict__)
        assert list(fact.__dict__.items()) == list(constructed.__dict__.items())
        assert fact.model_fields_set == constructed.model_fields_set
        assert type(fact).model_validate(fact.model_dump()) == fact


def test_values_of_the_wrong_shape_are_left_out() -> None:
    arrival, _, _ = facts_of(
        Event.model_validate(
            event("e1", "opportunity.created", opportunityId="o1", leadSource=7, ownerId="a b")
        )
    )
    assert arrival is not None and arrival.source is None and arrival.owner is None
    no_status = Event.model_validate(event("e2", "opportunity.status_changed", opportunityId="o"))
    assert facts_of(no_status) == (None, None, None)
    broken = Event.model_validate(
        event("e3", "activity.completed", opportunityId="o", activityType="call")
    )
    assert facts_of(broken) == (None, None, None)  # no activity id, no completion date
    other = Event.model_validate(event("e4", "estimate.created", opportunityId="o"))
    assert facts_of(other) == (None, None, None)


def test_a_status_change_takes_old_and_new_status() -> None:
    _, change, _ = facts_of(
        Event.model_validate(
            event(
                "e1",
                "opportunity.status_changed",
                5,
                opportunityId="o1",
                oldStatus="new",
                newStatus="won",
            )
        )
    )
    assert change is not None
    assert (change.event_id, change.from_status, change.to_status) == ("e1", "new", "won")
    assert change.changed_at == T0 + timedelta(hours=5)


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "memory":
        yield memory_storage()
        return
    sql = sql_storage(f"sqlite:///{tmp_path / 'facts.db'}")
    try:
        yield sql
    finally:
        sql.close()


def _flow(storage: Storage) -> LeadFlow:
    flow = LeadFlow.in_memory(
        clock=ManualClock(T0), rules=default_rules(), reps=["alice"], storage=storage
    )
    opportunities: Any = flow.integrations.opportunities
    for opportunity in ("o1", "o2"):
        opportunities.add(opportunity, owner="alice")
    return flow


def test_the_flow_records_each_fact_once(storage: Storage) -> None:
    flow = _flow(storage)
    arrival = event(
        "e1", "opportunity.created", opportunityId="o1", leadSource="website", assignedTo="alice"
    )
    assert flow.handle(arrival).errors == []
    flow.handle(arrival)  # redelivered
    flow.handle(event("e2", "opportunity.status_changed", 30, opportunityId="o1", newStatus="won"))
    call = storage.activities.for_opportunity("o1")[0]  # the website lead's call
    flow.clock.advance(timedelta(minutes=12))  # type: ignore[attr-defined]
    flow.activity_writes.complete(call.activity_id, outcome="successful", completed_by="alice")
    analytics = storage.analytics
    assert analytics is not None
    [stored] = analytics.arrivals(*PERIOD)
    assert (stored.opportunity_id, stored.source, stored.owner) == ("o1", "website", "alice")
    assert [c.to_status for c in analytics.status_changes(*PERIOD)] == ["won"]
    [contact] = analytics.first_contacts(*PERIOD)
    assert contact.activity_id == call.activity_id
    assert contact.completed_at == T0 + timedelta(minutes=12)
    assert contact.rule_id == call.metadata.automation_rule_id
    assert contact.assigned_to == "alice"
    assert analytics.reached(*PERIOD, "won") == {"o1": T0 + timedelta(hours=30)}


def test_handle_many_records_the_facts_of_every_event(storage: Storage) -> None:
    flow = _flow(storage)
    events = [
        event("e1", "opportunity.created", opportunityId="o1", source="fair"),
        event("e2", "opportunity.created", 1, opportunityId="o2", source="web"),
        event("e3", "opportunity.status_changed", 2, opportunityId="o2", newStatus="lost"),
        event("e4", "opportunity.created", 3, opportunityId="o9"),  # no rule plans anything
    ]
    results = flow.handle_many(events + events)
    assert all(not isinstance(result, Exception) for result in results)
    analytics = storage.analytics
    assert analytics is not None
    assert [a.opportunity_id for a in analytics.arrivals(*PERIOD)] == ["o1", "o2", "o9"]
    assert [c.event_id for c in analytics.status_changes(*PERIOD)] == ["e3"]


def test_a_storage_without_analytics_records_nothing() -> None:
    storage = replace(memory_storage(), analytics=None)
    flow = _flow(storage)
    result = flow.handle(
        event("e1", "opportunity.created", opportunityId="o1", leadSource="website")
    )
    assert result.errors == [] and len(result.executed) == 1


class _Failing(InMemoryAnalyticsStore):
    def record_arrival(self, arrival: Any) -> bool:
        raise StorageError("facts are down")


def test_a_failed_recording_is_reported_and_the_actions_stand() -> None:
    storage = replace(memory_storage(), analytics=_Failing())
    flow = _flow(storage)
    result = flow.handle(
        event("e1", "opportunity.created", opportunityId="o1", leadSource="website")
    )
    assert [str(error) for error in result.errors] == ["facts are down"]
    assert len(storage.activities.for_opportunity("o1")) == 1


def test_on_sql_a_failed_recording_rolls_the_unit_back_then_goes_step_by_step(
    tmp_path: Path,
) -> None:
    sql = sql_storage(f"sqlite:///{tmp_path / 'facts.db'}")
    try:
        storage = replace(sql, analytics=_Failing())
        flow = _flow(storage)
        result = flow.handle(
            event("e1", "opportunity.created", opportunityId="o1", leadSource="website")
        )
        assert [str(error) for error in result.errors] == ["facts are down"]
        assert len(storage.activities.for_opportunity("o1")) == 1
    finally:
        sql.close()


def test_a_rebuilt_fact_is_the_constructed_one() -> None:
    from leadflow.activity_models import ActivityType, Outcome
    from leadflow.facts import Completion, LeadArrival, StatusChange, rebuilt

    for kind, values in (
        (
            LeadArrival,
            {"event_id": "e1", "opportunity_id": "o1", "arrived_at": T0, "source": "web",
             "owner": None},
        ),
        (
            StatusChange,
            {"event_id": "e2", "opportunity_id": "o1", "changed_at": T0, "from_status": None,
             "to_status": "won"},
        ),
        (
            Completion,
            {"activity_id": "a1", "opportunity_id": "o1", "activity_type": ActivityType.CALL,
             "completed_at": T0, "assigned_to": "alice", "created_at": None, "due_at": T0,
             "outcome": Outcome.SUCCESSFUL, "rule_id": None},
        ),
    ):  # fmt: skip
        fact: Any = rebuilt(kind, dict(values))
        made: Any = kind.model_construct(**values)
        assert type(fact) is kind
        assert fact == made
        assert hash(fact) == hash(made)
        assert fact.model_dump() == made.model_dump() == values
        assert fact.to_document() == made.to_document()
        assert fact.model_fields_set == made.model_fields_set
        with pytest.raises(ValueError):
            fact.opportunity_id = "o2"


_ODD_IDS = st.sampled_from(["a" * 129, "a1\n", " a1", "$x", "", None]) | st.integers()
_COMPLETION_IDS = st.sampled_from(["a1", "o1", "a" * 128])
_ODD_TIMES = st.sampled_from(
    [
        T0.astimezone(timezone(timedelta(hours=-5))).isoformat(),
        T0.replace(tzinfo=None).isoformat(),
        "2026-13-01",
        None,
        datetime(1899, 12, 31, tzinfo=UTC).isoformat(),
        T0.astimezone(timezone(timedelta(hours=2))),
    ]
)
_COMPLETION_TIMES = st.sampled_from([T0, T0.isoformat(), "2026-01-05T09:00:00Z"])


def _mostly(plain: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    """Plain values three times in four, so that both paths are taken often."""
    return st.sampled_from([plain, plain, plain, odd]).flatmap(lambda chosen: chosen)


@settings(max_examples=examples(400), deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "activityId": _mostly(_COMPLETION_IDS, _ODD_IDS),
            "opportunityId": _mostly(_COMPLETION_IDS, _ODD_IDS),
            "activityType": _mostly(
                st.sampled_from(["call", "email", "meeting"]),
                st.sampled_from(["fax", "CALL", " call", 3, None, *ActivityType]),
            ),
            "completedDate": _mostly(_COMPLETION_TIMES, _ODD_TIMES),
        },
        optional={
            "createdAt": _mostly(_COMPLETION_TIMES, _ODD_TIMES),
            "dueDate": _mostly(_COMPLETION_TIMES, _ODD_TIMES),
            "assignedTo": _mostly(_COMPLETION_IDS, _ODD_IDS),
            "outcome": st.sampled_from([*map(str, Outcome), "maybe", None, 3, ["x"]]),
            "metadata": st.fixed_dictionaries(
                {}, optional={"automationRuleId": _mostly(_COMPLETION_IDS, _ODD_IDS)}
            )
            | st.just("m"),
        },
    )
)
@example({"activityId": "a1", "opportunityId": "o1", "activityType": "fax", "completedDate": T0})
@example({"activityId": " a1", "opportunityId": "o1", "activityType": "call", "completedDate": T0})
@example(
    {
        "activityId": "a1",
        "opportunityId": "o1",
        "activityType": "call",
        "completedDate": T0,
        "dueDate": T0.astimezone(timezone(timedelta(hours=2))).isoformat(),
        "outcome": "successful",
    }
)
@example(
    {
        "activityId": "a1",
        "opportunityId": "o1",
        "activityType": "call",
        "completedDate": T0.astimezone(timezone(timedelta(hours=-5))),
    }
)
def test_a_completion_is_the_one_the_model_validates(payload: dict[str, Any]) -> None:
    """A completion made directly from plain values is the one ``Completion.model_validate``
    makes (values, fields set, field order), and a payload it refuses (a required value
    missing included) yields none."""
    import leadflow.facts as facts

    made = facts._completion(payload)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(facts, "_plain_completion", lambda values: False)
        patch.setattr(facts, "_REQUIRED", ())  # the model judges a missing value too
        validated = facts._completion(payload)
    assert (made is None) == (validated is None)
    if made is not None and validated is not None:
        assert list(made.__dict__.items()) == list(validated.__dict__.items())
        assert made.model_fields_set == validated.model_fields_set
        assert [(type(v), getattr(v, "tzinfo", None)) for v in made.__dict__.values()] == [
            (type(v), getattr(v, "tzinfo", None)) for v in validated.__dict__.values()
        ]
