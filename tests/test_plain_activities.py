"""A created activity made once: the fast memory store takes the values of an activity
``create_activity`` builds (``PlainActivities.add_plain``) instead of the model built to be
taken apart. Held to the model's path: the same rows, the same refusals, and through a flow
the same activities, notes and ``activity.created`` documents as with the model built and
added (``add``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow import FlowSettings, FollowUpRule, ManualClock, default_rules
from leadflow.activity_models import Activity, ActivityType, built_activity, plain_activity
from leadflow.errors import DuplicateError, OpenActivityExistsError
from leadflow.ports import PlainActivities
from leadflow.runtime import handlers
from leadflow.runtime.planning import activity_id_for
from leadflow.stores.memory import memory_storage
from leadflow.stores.memory.fast import fast_memory_storage
from leadflow.stores.memory.fast.activities import FastActivityRepository

from .service_support import OPPORTUNITIES, build_flow, payloads
from .suite import examples

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@st.composite
def _plain(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plain values, with ids and open keys from small sets so that some repeat."""
    due = T0 + timedelta(hours=draw(st.integers(0, 48)))
    fields = {
        "activity_id": draw(st.sampled_from(["auto-a", "auto-b", "auto-c", "auto-d"])),
        "opportunity_id": draw(st.sampled_from(["o1", "o2"])),
        "customer_id": draw(st.none() | st.just("c1")),
        "activity_type": draw(st.sampled_from(list(ActivityType))),
        "subject": draw(st.sampled_from(["Call", "é-mail"])),
        "description": draw(st.sampled_from(["", "about it"])),
        "scheduled_date": draw(st.none() | st.just(T0)),
        "due_date": due,
        "assigned_to": draw(st.none() | st.sampled_from(["al", "bo"])),
        "open_key": draw(st.none() | st.sampled_from(["rule/o1/r1", "rule/o2/r1"])),
        "created_by": "leadflow",
        "updated_by": "leadflow",
        "created_at": T0,
        "updated_at": T0,
    }
    metadata: dict[str, Any] = {
        "automationRuleId": draw(st.none() | st.just("r1")),
        "automationRuleName": draw(st.none() | st.just("Rule one")),
        "automationExplanation": draw(st.none() | st.just("event x\nrule 'r1': applied")),
        "eventId": draw(st.sampled_from(["e1", "e2"])),
    }
    assert plain_activity(fields, metadata)
    return fields, metadata


def _by_model(
    store: FastActivityRepository, fields: dict[str, Any], metadata: dict[str, Any]
) -> Exception | None:
    try:
        store.add(built_activity(fields, metadata))
    except (DuplicateError, OpenActivityExistsError) as refusal:
        return refusal
    return None


def _said(outcome: Exception | None) -> tuple[str, str] | None:
    return None if outcome is None else (type(outcome).__name__, str(outcome))


@settings(max_examples=examples(300), deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["add", "add", "add", "complete"]), _plain()), max_size=12
    )
)
def test_add_plain_is_add_of_the_built_model(
    steps: list[tuple[str, tuple[dict[str, Any], dict[str, Any]]]],
) -> None:
    plain, model = FastActivityRepository(), FastActivityRepository()
    assert isinstance(plain, PlainActivities)
    for n, (step, (fields, metadata)) in enumerate(steps):
        if step == "complete":  # frees an open key, so a later add with it is taken
            for store in (plain, model):
                open_ = [a for a in store.list(limit=100).items if a.is_open]
                if open_:
                    store.complete(
                        open_[0].activity_id,
                        outcome=None,
                        completed_by="al",
                        completed_at=T0 + timedelta(minutes=n),
                    )
            continue
        got = plain.add_plain(fields, metadata)
        assert _said(got) == _said(_by_model(model, fields, metadata))
    assert list(plain._rows.items()) == list(model._rows.items())
    assert plain.list(limit=100) == model.list(limit=100)
    assert plain._open_keys == model._open_keys


def test_the_store_keeps_none_of_the_callers_dicts() -> None:
    store = FastActivityRepository()
    fields: dict[str, Any] = {
        "activity_id": "auto-x", "opportunity_id": "o1", "customer_id": None,
        "activity_type": ActivityType.CALL, "subject": "Call", "description": "",
        "scheduled_date": T0, "due_date": T0, "assigned_to": "al", "open_key": None,
        "created_by": "leadflow", "updated_by": "leadflow", "created_at": T0, "updated_at": T0,
    }  # fmt: skip
    metadata: dict[str, Any] = {"automationRuleId": "r1", "automationExplanation": "why"}
    assert plain_activity(fields, metadata)
    assert store.add_plain(fields, metadata) is None
    before = store.get("auto-x")
    metadata["automationExplanation"] = "changed"
    fields["subject"] = "changed"
    assert store.get("auto-x") == before
    assert isinstance(store.add_plain(fields, metadata), DuplicateError)


# ---------------------------------------------------------------------- through a flow


def _events(count: int, seed: int) -> Iterator[dict[str, Any]]:
    import random

    rng = random.Random(seed)
    kinds = ["opportunity.created", "opportunity.status_changed", "estimate.created"]
    for n in range(count):
        opportunity = rng.choice(OPPORTUNITIES)[0]
        yield {
            "eventId": f"e{n}",
            "eventType": rng.choice(kinds),
            "occurredAt": T0 + timedelta(minutes=n),
            "payload": {
                "opportunityId": opportunity,
                "leadSource": rng.choice(["website", "referral", "phone"]),
                "priority": rng.choice(["urgent", "normal"]),
                "newStatus": rng.choice(["quoted", "won", "lost", "contacted"]),
                "amount": rng.choice([500, 20_000]),
            },
        }


def _run(*, fused: bool, seed: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    with monkeypatch.context() as patch:
        if not fused:  # the model built and added, as before
            patch.setattr(handlers, "plain_rest", lambda fields, metadata: False)
        clock = ManualClock(T0)
        flow = build_flow(
            storage=fast_memory_storage(), clock=clock, settings=FlowSettings(worker_id="w1")
        )
        # Activities already there under the ids some actions derive (a rerun's case): the
        # action finds its activity created already.
        for rule in default_rules():
            for n in (3, 7, 11):
                flow.storage.activities.add(
                    Activity(
                        activity_id=activity_id_for(f"e{n}/{rule.rule_id}/0"),
                        opportunity_id="opp-1",
                        activity_type=ActivityType.CALL,
                        subject="there before",
                        created_at=T0,
                    )
                )
        notes = []
        for n, event in enumerate(_events(120, seed)):
            clock.set(T0 + timedelta(minutes=n))
            result = flow.handle(event)
            notes += [(run.idempotency_key, run.ok, run.note) for run in result.executed]
            if n % 30 == 29:  # completions free open keys for later events
                for activity in flow.storage.activities.list(limit=5).items:
                    if activity.is_open:
                        flow.storage.activities.complete(
                            activity.activity_id, outcome=None, completed_by="alice",
                            completed_at=clock.now(),
                        )  # fmt: skip
        activities = flow.storage.activities.list(limit=1000).items
        return {
            "notes": notes,
            "activities": [a.model_dump() for a in activities],
            "created": payloads(flow, "activity.created"),
            "keys": [list(p) for p in payloads(flow, "activity.created")],
        }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_flow_on_the_fast_stores_is_the_same_with_or_without_the_plain_add(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fused = _run(fused=True, seed=seed, monkeypatch=monkeypatch)
    assert fused["created"], "the workload creates activities"
    assert any("skipped" in (note or "") for _, _, note in fused["notes"])
    assert any("already created" in (note or "") for _, _, note in fused["notes"])
    assert fused == _run(fused=False, seed=seed, monkeypatch=monkeypatch)


def test_the_plain_add_is_taken_only_where_the_store_class_offers_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    original = FastActivityRepository.add_plain

    def counted(self: FastActivityRepository, *args: Any) -> Any:
        calls.append("plain")
        return original(self, *args)

    monkeypatch.setattr(FastActivityRepository, "add_plain", counted)
    for storage in (fast_memory_storage(), memory_storage()):
        flow = build_flow(storage=storage)
        flow.handle(next(_events(1, 7)) | {"eventType": "opportunity.created"})
        assert flow.storage.activities.list(limit=10).items
    assert calls == ["plain"]  # the reference store has no add_plain: the model is added


@pytest.mark.parametrize(
    ("subject", "description"),
    [("Call the lead ", ""), ("Call", " about it"), ("\u2003Call", "fine"), ("Call", "fine")],
)
def test_settings_the_models_would_change_go_through_the_model_on_every_store(
    subject: str, description: str
) -> None:
    """A rule action whose subject or description the activity's model strips (given in its
    params) is built through the validating model (its settings are not plain): the fast
    store stores and emits what the reference store does, however many events it takes."""
    rule = FollowUpRule.model_validate(
        {
            "ruleId": "odd-texts",
            "name": "odd texts",
            "allowDuplicates": True,
            "trigger": {"eventType": "opportunity.created", "conditions": []},
            "actions": [  # in params: the seed's fields are stripped by the rule's model
                {
                    "actionType": "create_activity",
                    "params": {"subject": subject, "description": description},
                }
            ],
        }
    )
    seen = []
    for storage in (fast_memory_storage(), memory_storage()):
        flow = build_flow(storage=storage, rules=[rule])
        for n in range(3):
            event = next(_events(1, n)) | {"eventId": f"e{n}", "eventType": "opportunity.created"}
            [run] = flow.handle(event).executed
            assert run.ok, run.note
        stored = flow.storage.activities.list(limit=10).items
        assert {(a.subject, a.description) for a in stored} == {
            (subject.strip(), description.strip())
        }
        seen.append(([a.model_dump() for a in stored], payloads(flow, "activity.created")))
    assert seen[0] == seen[1]
