from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from pydantic import ValidationError

from leadflow import Event, RuleEngine, RuleValidationError, WorkingCalendar

from .helpers import T0, event, rule


def test_rules_are_looked_up_by_event_type():
    engine = RuleEngine(
        [rule("a", event_type="opportunity.created"), rule("b", event_type="estimate.created")]
    )
    assert [r.rule_id for r in engine.match(event(type="quote_sent"))] == ["b"]
    assert engine.match(event(type="something.else")) == []
    assert [r.rule_id for r in engine.rules_for("opportunity.created")] == ["a"]


def test_priority_order_descending_then_rule_id():
    engine = RuleEngine([rule("b", priority=1), rule("c", priority=5), rule("a", priority=1)])
    assert [r.rule_id for r in engine.match(event())] == ["c", "a", "b"]
    assert [r.rule_id for r in engine.rules] == ["c", "a", "b"]


def test_stop_processing_blocks_lower_ranked_rules_only_when_it_matches():
    engine = RuleEngine(
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
    engine = RuleEngine([rule("off", active=False)])
    assert engine.match(event()) == []
    with pytest.raises(RuleValidationError):
        RuleEngine([rule("off", active=False, conditions=[{"field": "x", "operator": "nope"}])])


def test_duplicate_rule_ids_are_refused():
    with pytest.raises(RuleValidationError, match="share this id"):
        RuleEngine([rule("a"), rule("a")])


def test_rules_may_be_given_as_documents():
    engine = RuleEngine(
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
        RuleEngine([{"ruleId": "doc", "trigger": {}, "actions": []}])


def test_planned_actions_are_due_at_event_time_plus_delay_in_rule_order():
    engine = RuleEngine(
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
    assert [p.idempotency_key for p in result.planned] == ["evt-1:r:0", "evt-1:r:1", "evt-1:r:2"]
    assert [p.action_index for p in result.immediate] == [1]
    assert len(result.delayed) == 2


def test_evaluation_reads_no_clock():
    engine = RuleEngine([rule("r", actions=[{"actionType": "noop", "delay": 1}])])
    long_ago = event(time=T0 - timedelta(days=3650))
    assert engine.evaluate(long_ago).planned[0].due_at == long_ago.time + timedelta(hours=1)


def test_business_time_delays_use_the_engine_calendar():
    calendar = WorkingCalendar("America/New_York")
    engine = RuleEngine(
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
    engine = RuleEngine(
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
    engine = RuleEngine([rule("top", priority=9, stop=True), rule("next", priority=1)])
    result = engine.evaluate(event(), explain=True)
    assert result.explanations is not None
    reasons = {e.rule_id: (e.matched, e.reason) for e in result.explanations}
    assert reasons["top"] == (True, "matched (no conditions)")
    assert reasons["next"] == (False, "conditions hold, but rule 'top' stopped processing")


def test_one_engine_serves_many_threads():
    engine = RuleEngine(
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
