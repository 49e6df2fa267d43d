from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from pydantic import ValidationError

from leadflow import (
    Condition,
    Event,
    InvalidInputError,
    OperatorRegistry,
    RuleEngine,
    RuleValidationError,
    WorkingCalendar,
)
from leadflow.limits import Limits
from leadflow.rules import SEED_EVENT_TYPES, EventTypes, validate_rule

from .helpers import T0, event, rule
from .rules_support import engine as make_engine


def test_rules_are_looked_up_by_event_type():
    engine = make_engine(
        [rule("a", event_type="opportunity.created"), rule("b", event_type="estimate.created")]
    )
    assert [r.rule_id for r in engine.match(event(type="quote_sent"))] == ["b"]
    assert engine.match(event(type="something.else")) == []
    assert [r.rule_id for r in engine.rules_for("opportunity.created")] == ["a"]


def test_priority_order_descending_then_rule_id():
    engine = make_engine([rule("b", priority=1), rule("c", priority=5), rule("a", priority=1)])
    assert [r.rule_id for r in engine.match(event())] == ["c", "a", "b"]
    assert [r.rule_id for r in engine.rules] == ["c", "a", "b"]


def test_stop_processing_blocks_lower_ranked_rules_only_when_it_matches():
    engine = make_engine(
        [
            rule(
                "top",
                priority=10,
                stop=True,
                conditions=[{"field": "x", "operator": "equals", "value": 1}],
            ),
            rule("low", priority=0),
        ]
    )
    assert [r.rule_id for r in engine.match(event({"x": 1}))] == ["top"]
    assert [r.rule_id for r in engine.match(event({"x": 2}))] == ["low"]


def test_inactive_rules_never_apply_but_are_validated():
    engine = make_engine([rule("off", active=False)])
    assert engine.match(event()) == []
    with pytest.raises(RuleValidationError):
        make_engine([rule("off", active=False, conditions=[{"field": "x", "operator": "nope"}])])


def test_duplicate_rule_ids_are_refused():
    with pytest.raises(RuleValidationError, match="share this id"):
        make_engine([rule("a"), rule("a")])


def test_rules_may_be_given_as_documents():
    engine = make_engine(
        [
            {
                "ruleId": "doc",
                "name": "from a document",
                "trigger": {"eventType": "test.event"},
                "actions": [{"actionType": "noop"}],
            }
        ]
    )
    assert engine.match(event())[0].rule_id == "doc"
    with pytest.raises(ValidationError):
        make_engine([{"ruleId": "doc", "trigger": {}, "actions": []}])


def test_planned_actions_are_due_at_event_time_plus_delay_in_rule_order():
    engine = make_engine(
        [
            rule(
                "r",
                actions=[
                    {"actionType": "create_activity", "subject": "s", "delay": 2},
                    {"actionType": "send_notification", "template": "t"},
                    {"actionType": "noop", "delay": {"amount": 90, "unit": "minutes"}},
                ],
            )
        ]
    )
    result = engine.evaluate(event(id="evt-1"))
    assert [(p.action_index, p.due_at, p.delayed) for p in result.planned] == [
        (0, T0 + timedelta(hours=2), True),
        (1, T0, False),
        (2, T0 + timedelta(minutes=90), True),
    ]
    assert [p.idempotency_key for p in result.planned] == ["evt-1/r/0", "evt-1/r/1", "evt-1/r/2"]
    assert [p.action_index for p in result.immediate] == [1]
    assert len(result.delayed) == 2


def test_evaluation_reads_no_clock():
    engine = make_engine([rule("r", actions=[{"actionType": "noop", "delay": 1}])])
    long_ago = event(time=T0 - timedelta(days=3650))
    assert engine.evaluate(long_ago).planned[0].due_at == long_ago.time + timedelta(hours=1)


def test_business_time_delays_use_the_engine_calendar():
    calendar = WorkingCalendar("America/New_York")
    engine = make_engine(
        [
            rule(
                "r",
                actions=[
                    {"actionType": "noop", "delay": {"amount": 2, "unit": "business_days"}},
                    {"actionType": "noop", "delay": {"amount": 4, "unit": "business_hours"}},
                ],
            )
        ],
        calendar=calendar,
    )
    # Friday 2026-01-09 15:00 New York (20:00 UTC)
    friday = event(time=T0.replace(day=9, hour=20))
    days, hours = engine.evaluate(friday).planned
    assert days.due_at == friday.time + timedelta(days=4)  # Tuesday, same local time
    # 2 hours left on Friday, 2 more from Monday 09:00 -> Monday 11:00 New York = 16:00 UTC
    assert hours.due_at == T0.replace(day=12, hour=16)


def test_explanations_name_the_failing_condition_and_actual_value():
    engine = make_engine(
        [
            rule(
                "web",
                priority=2,
                conditions=[{"field": "leadSource", "operator": "equals", "value": "website"}],
            ),
            rule(
                "grp",
                priority=1,
                conditions=[
                    {"field": "leadSource", "operator": "exists"},
                    {"not": {"field": "priority", "operator": "equals", "value": "low"}},
                ],
            ),
            rule("other", event_type="estimate.created"),
            rule("off", active=False),
        ]
    )
    result = engine.evaluate(event({"leadSource": "referral", "priority": "low"}), explain=True)
    assert result.explanations is not None
    by_id = {e.rule_id: e for e in result.explanations}
    assert by_id["web"].matched is False
    assert by_id["web"].reason == (
        "trigger.conditions[0] failed: leadSource equals 'website' (actual: 'referral')"
    )
    assert by_id["web"].conditions[0].actual == "referral"
    assert by_id["grp"].reason == "trigger.conditions[1] failed: not (priority equals 'low')"
    assert by_id["other"].reason == "listens to 'estimate.created', not 'test.event'"
    assert by_id["off"].reason == "inactive"
    missing = engine.evaluate(event({}), explain=True).explanations
    assert missing is not None
    assert "(actual: missing)" in {e.rule_id: e for e in missing}["web"].reason


def test_explanation_of_a_rule_stopped_by_a_higher_one():
    engine = make_engine([rule("top", priority=9, stop=True), rule("next", priority=1)])
    result = engine.evaluate(event(), explain=True)
    assert result.explanations is not None
    reasons = {e.rule_id: (e.matched, e.reason) for e in result.explanations}
    assert reasons["top"] == (True, "matched (no conditions)")
    assert reasons["next"] == (False, "conditions hold, but rule 'top' stopped processing")


def test_one_engine_serves_many_threads():
    engine = make_engine(
        [
            rule(f"r{i}", conditions=[{"field": "n", "operator": "greater_than", "value": i}])
            for i in range(20)
        ]
    )
    errors: list[str] = []

    def work(n: int) -> None:
        for _ in range(200):
            matched = engine.match(Event(type="test.event", time=T0, payload={"n": n}))
            if len(matched) != n:
                errors.append(f"{n}: {len(matched)}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(0, 20, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ---------------------------------------------------------------- per-engine registries


def test_each_engine_has_its_own_operator_registry():
    first, second = RuleEngine(), RuleEngine()
    assert first.operators is not second.operators
    first.operators.register("always", lambda actual, expected: True)
    assert "always" in first.operators
    assert "always" not in second.operators
    assert "always" not in RuleEngine().operators
    r = rule("r", event_type="opportunity.created")
    r = r.model_copy(
        update={
            "trigger": r.trigger.model_copy(
                update={"conditions": [Condition(field="x", operator="always")]}
            )
        }
    )
    assert RuleEngine([r], operators=first.operators).match(event(type="opportunity.created")) == [
        r
    ]
    with pytest.raises(RuleValidationError, match="unknown operator 'always'"):
        RuleEngine([r])


def test_hosts_share_a_registry_by_passing_it():
    shared = OperatorRegistry.default()
    a, b = RuleEngine(operators=shared), RuleEngine(operators=shared)
    shared.register("never", lambda actual, expected: False)
    assert "never" in a.operators and "never" in b.operators


def test_each_engine_has_its_own_event_types():
    first, second = RuleEngine(), RuleEngine()
    assert first.event_types is not second.event_types
    first.event_types.register("invoice.paid")
    assert "invoice.paid" in first.event_types
    assert "invoice.paid" not in second.event_types
    assert set(SEED_EVENT_TYPES) <= set(RuleEngine().event_types.names())


def test_unknown_event_type_is_refused_with_a_suggestion():
    with pytest.raises(RuleValidationError) as info:
        RuleEngine([rule("typo", event_type="opportunity.craeted")])
    assert info.value.rule_id == "typo"
    assert info.value.location == "trigger.eventType"
    assert "did you mean 'opportunity.created'?" in str(info.value)
    with pytest.raises(RuleValidationError, match=r"did you mean .opportunity\.created"):
        validate_rule(rule("typo", event_type="opportunity_create"))
    with pytest.raises(RuleValidationError, match=r"unknown event type .zzz\.qqq"):
        RuleEngine([rule("far", event_type="zzz.qqq")])
    types = EventTypes(["invoice.paid"])
    assert RuleEngine([rule("ok", event_type="invoice.paid")], event_types=types).rules
    validate_rule(rule("ok", event_type="invoice.paid"), event_types=types)
    validate_rule(rule("alias", event_type="quote_sent"))  # the seed's alias is known


def test_malformed_event_type_cannot_be_registered():
    with pytest.raises(InvalidInputError) as info:
        EventTypes().register("Not A Type")
    assert info.value.field == "event_type"


# ---------------------------------------------------------------- keys, limits, documents


def test_idempotency_keys_of_different_triples_never_collide():
    actions = [{"actionType": "noop"}]
    one = make_engine([rule("vip", actions=actions)]).evaluate(event(id="E:x")).planned[0]
    two = make_engine([rule("x:vip", actions=actions)]).evaluate(event(id="E")).planned[0]
    assert (one.event_id, one.rule_id) != (two.event_id, two.rule_id)
    assert one.idempotency_key == "E:x/vip/0"
    assert two.idempotency_key == "E/x:vip/0"
    assert one.idempotency_key != two.idempotency_key


def test_one_event_plans_at_most_the_fan_out_limit():
    limits = Limits(planned_per_event=5)
    rules = [rule(f"r{i}", actions=[{"actionType": "noop"}] * 2) for i in range(3)]
    with pytest.raises(InvalidInputError) as info:
        make_engine(rules, limits=limits).evaluate(event(id="evt-big"))
    assert "evt-big" in str(info.value)
    assert "planned_per_event" in str(info.value)
    assert len(make_engine(rules[:2], limits=limits).evaluate(event()).planned) == 4
    with pytest.raises(RuleValidationError, match="more than 1 actions"):
        make_engine([rules[0]], limits=Limits(planned_per_event=1))


def test_evaluate_takes_the_document_a_host_holds():
    engine = make_engine([rule("r", conditions=[{"field": "x", "operator": "equals", "value": 1}])])
    document = {"eventId": "e-1", "eventType": "test.event", "occurredAt": T0, "payload": {"x": 1}}
    for _ in range(2):  # the second time through the lean path
        from_document = engine.evaluate(dict(document))
        from_model = engine.evaluate(Event.model_validate(document))
        assert from_document == from_model
        assert from_document.event == Event.model_validate(document)
        assert [p.idempotency_key for p in from_document.planned] == ["e-1/r/0"]
    assert engine.match({"type": "test.event", "time": "2026-01-05T09:00:00Z", "payload": {"x": 1}})
    for bad in (
        {**document, "payload": {"x": float("nan")}},
        {**document, "payload": {"$where": 1}},
        {**document, "occurredAt": T0.replace(tzinfo=None)},
        {**document, "eventId": "a/b"},
        {**document, "extra": 1},
        {**document, "id": "e-2"},  # two spellings of one field
    ):
        with pytest.raises(ValidationError):
            engine.evaluate(bad)
