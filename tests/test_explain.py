"""The one explanation format: engine explain, the rule test operation, the stored text."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from leadflow import Event, LeadFlow, RuleEngine
from leadflow.access.operations import Operations
from leadflow.rules import MISSING, WorkingCalendar, default_rules, explain, render_rule
from leadflow.runtime.explain import render_why

from .access_support import SUPER

T = datetime(2026, 3, 6, 21, 30, tzinfo=UTC)  # Friday 16:30 in New York, before DST starts


def rule(rid: str, conditions: list[Any], **kw: Any) -> dict[str, Any]:
    return {
        "ruleId": rid,
        "name": rid.title(),
        "trigger": {"eventType": "opportunity.created", "conditions": conditions},
        "actions": kw.pop(
            "actions", [{"actionType": "create_activity", "subject": "Call", "delay": 0}]
        ),
        **kw,
    }


def leaf(field: str, value: Any, op: str = "equals") -> dict[str, Any]:
    return {"field": field, "operator": op, "value": value}


def event(**payload: Any) -> dict[str, Any]:
    return {"id": "e1", "type": "opportunity.created", "time": T, "payload": payload}


def test_every_node_of_the_tree_with_the_values_compared() -> None:
    tree = [
        leaf("priority", "high"),
        {"any": [leaf("leadSource", "web"), {"not": leaf("estimatedValue", 100, "less_than")}]},
    ]
    engine = RuleEngine([rule("r", tree)])
    [explained] = engine.explain(event(priority="high", estimatedValue=250)).rules
    assert explained.matched
    rows = [(n.location, n.kind, n.passed, n.actual) for n in explained.tree]
    assert rows == [
        ("trigger.conditions[0]", "condition", True, "high"),
        ("trigger.conditions[1]", "any", True, MISSING),
        ("trigger.conditions[1].any[0]", "condition", False, MISSING),
        ("trigger.conditions[1].any[1]", "not", True, MISSING),
        ("trigger.conditions[1].any[1].not[0]", "condition", False, 250),
    ]
    assert [n.location for n in explained.conditions] == [
        "trigger.conditions[0]",
        "trigger.conditions[1].any[0]",
        "trigger.conditions[1].any[1].not[0]",
    ]
    assert explained.tree[4].expected == 100
    text = render_rule(explained)
    assert "[yes] trigger.conditions[1]: any group" in text
    assert "[no ] trigger.conditions[1].any[0]: leadSource equals 'web' (actual: missing)" in text


def test_stopped_rules_say_by_whom() -> None:
    rules = [
        rule("top", [leaf("priority", "urgent")], priority=10, stopProcessing=True),
        rule("low", [leaf("priority", "urgent")]),
        rule("miss", [leaf("priority", "low")]),
    ]
    result = explain(rules, event(priority="urgent"))
    by_id = {r.rule_id: r for r in result.rules}
    assert by_id["top"].matched and by_id["top"].stops_processing
    assert by_id["low"].stopped_by == "top" and not by_id["low"].matched
    assert "rule 'top' stopped processing" in by_id["low"].reason
    assert by_id["miss"].stopped_by is None
    assert "failed: priority equals 'low' (actual: 'urgent')" in by_id["miss"].reason
    assert "stops processing: lower-priority rules do not apply" in result.to_text()
    json.dumps(result.to_dict())  # the JSON form is JSON


def test_due_times_explain_calendar_holidays_and_dst() -> None:
    calendar = WorkingCalendar("America/New_York", holidays=[date(2026, 3, 9)])
    actions = [
        {"actionType": "create_activity", "subject": "a",
         "delay": {"amount": 2, "unit": "business_days"}},
        {"actionType": "create_activity", "subject": "b", "delay": 48},
        {"actionType": "send_notification", "template": "t"},
    ]  # fmt: skip
    engine = RuleEngine([rule("r", [], actions=actions)], calendar=calendar)
    [explained] = engine.explain(event()).rules
    business, fixed, now = explained.due
    # Friday 16:30 + 2 business days: Monday is a holiday -> Wednesday 16:30 local (EDT now)
    assert business.due_at == datetime(2026, 3, 11, 20, 30, tzinfo=UTC)
    assert business.skipped == (date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9))
    assert business.holidays == (date(2026, 3, 9),)
    assert business.dst_shift == timedelta(hours=1)
    assert "skipped Sat 2026-03-07, Sun 2026-03-08, Mon 2026-03-09 (holiday)" in business.text()
    assert "DST shift +1h in America/New_York" in business.text()
    assert fixed.due_at == T + timedelta(hours=48) and fixed.delay == "48 hours"
    assert fixed.skipped == () and fixed.dst_shift == timedelta(hours=1)
    assert now.delay == "none" and "(no delay)" in now.text()
    assert [p.due_at for p in engine.evaluate(event()).planned] == [d.due_at for d in explained.due]


def test_explain_does_not_change_the_evaluation() -> None:
    engine = RuleEngine(default_rules())
    sample = event(leadSource="website", priority="urgent", opportunityId="o1")
    plain, explained = engine.evaluate(sample), engine.evaluate(sample, explain=True)
    assert plain.matched_rules == explained.matched_rules and plain.planned == explained.planned


def test_the_activity_keeps_the_same_format() -> None:
    flow = LeadFlow.in_memory(rules=default_rules())
    flow.integrations.opportunities.add("o1", owner="alice")  # type: ignore[attr-defined]
    flow.handle(event(leadSource="website", opportunityId="o1"))
    [activity] = flow.storage.activities.for_opportunity("o1")
    stored = activity.metadata.model_extra["automationExplanation"]  # type: ignore[index]
    website = next(r for r in default_rules() if r.rule_id == "default-website-lead-follow-up")
    sample = Event.model_validate(event(leadSource="website", opportunityId="o1"))
    engine = RuleEngine([website])
    assert stored == render_why(sample, engine.explain_match(engine.evaluate(sample), website))
    # The same text as the engine's own explanation of the event.
    [explained] = [e for e in engine.evaluate(sample, explain=True).explanations or () if e.matched]
    assert stored.endswith(render_rule(explained))
    assert stored.startswith("event opportunity.created e1 at 2026-03-06T21:30:00+00:00\n")
    assert "[yes] trigger.conditions[0]: leadSource equals 'website' (actual: 'website')" in stored
    assert "due: actions[0] create_activity due 2026-03-06T22:30:00+00:00" in stored


def test_the_rule_test_operation_uses_it() -> None:
    flow = LeadFlow.in_memory(rules=default_rules())
    candidate = rule("t", [{"any": [leaf("leadSource", "web"), leaf("priority", "high")]}])
    result = Operations(flow).test_rule(SUPER, candidate, event(priority="high"))
    [explained] = result.evaluation.explanations or ()
    assert result.matched and [n.kind for n in explained.tree] == ["any", "condition", "condition"]
    assert explained.due and explained.due[0].due_at == T
