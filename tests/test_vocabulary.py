"""One vocabulary: the operators, event types, action types, calendar and limits a flow's rules
are written in, as one value taken by the engine, lint, the JSON Schema and explanations."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from leadflow import FollowUpRule, HandlerRegistry, LeadFlow, ManualClock, RuleEngine
from leadflow.lint import lint
from leadflow.rules import EventTypes, OperatorRegistry, Vocabulary, WorkingCalendar
from leadflow.runtime.schema import rule_schema

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _rule(operator: str = "equals", event_type: str = "opportunity.created") -> FollowUpRule:
    return FollowUpRule.model_validate(
        {
            "ruleId": "r",
            "name": "r",
            "trigger": {
                "eventType": event_type,
                "conditions": [{"field": "domain", "operator": operator, "value": "x.com"}],
            },
            "actions": [{"actionType": "send_notification", "template": "t"}],
        }
    )


def _flow() -> LeadFlow:
    operators = OperatorRegistry.default()
    operators.register("domain_is", lambda actual, expected: actual == expected)
    handlers = HandlerRegistry.default()
    handlers.register("fax", lambda ctx: "faxed")
    calendar = WorkingCalendar(timezone="Europe/Paris")
    return LeadFlow.in_memory(
        clock=ManualClock(T0),
        operators=operators,
        handlers=handlers,
        event_types=["invoice.paid"],
        calendar=calendar,
    )


def test_the_flow_vocabulary_holds_its_parts() -> None:
    flow = _flow()
    vocabulary = flow.vocabulary
    assert vocabulary.operators is flow.rulebook.operators
    assert vocabulary.event_types is flow.rulebook.event_types
    assert vocabulary.calendar is flow.rulebook.calendar
    assert vocabulary.actions is flow.handlers
    assert "fax" in vocabulary.action_types() and "domain_is" in vocabulary.operators.names()
    with pytest.raises(dataclasses.FrozenInstanceError):
        vocabulary.calendar = WorkingCalendar()  # type: ignore[misc]
    assert vocabulary.replace(calendar=WorkingCalendar()).operators is vocabulary.operators


def test_lint_schema_and_engine_take_the_vocabulary() -> None:
    flow = _flow()
    vocabulary = flow.vocabulary
    custom = _rule("domain_is", "invoice.paid")
    assert lint([custom], vocabulary=vocabulary) == lint([custom], flow=flow)
    assert not [f for f in lint([custom], vocabulary=vocabulary) if f.severity == "error"]
    # Without the flow's vocabulary the same rule has unknown parts.
    assert {f.code for f in lint([custom]) if f.severity == "error"} >= {"unknown-operator"}
    assert rule_schema(vocabulary) == rule_schema(flow)
    schema: dict[str, Any] = rule_schema(vocabulary)
    assert "action.fax" in schema["$defs"]
    assert "invoice.paid" in schema["$defs"]["trigger"]["properties"]["eventType"]["enum"]
    engine = RuleEngine([custom], vocabulary=vocabulary)
    assert engine.operators is vocabulary.operators and engine.calendar is vocabulary.calendar
    evaluation = engine.evaluate(
        {"type": "invoice.paid", "time": T0, "payload": {"domain": "x.com"}}
    )
    assert [r.rule_id for r in evaluation.matched_rules] == ["r"]


def test_the_default_vocabulary_is_the_built_ins() -> None:
    vocabulary = Vocabulary.default()
    assert vocabulary.operators.names() == OperatorRegistry.default().names()
    assert vocabulary.event_types.names() == EventTypes().names()
    assert list(vocabulary.action_types()) == []
    assert RuleEngine([_rule()], vocabulary=vocabulary).vocabulary.operators is (
        vocabulary.operators
    )


def test_explanations_describe_the_calendar_once() -> None:
    calendar = WorkingCalendar(timezone="Europe/Paris", holidays=[datetime(2026, 5, 1).date()])
    text = calendar.describe()
    assert text == "Europe/Paris Mon,Tue,Wed,Thu,Fri 09:00-17:00, 1 holiday(s)"
    assert calendar.describe() is text
