"""Small builders shared by the tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from leadflow import Action, Condition, Event, FollowUpRule, OperatorRegistry, RuleEngine, Trigger

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)  # a Monday


def rule(
    rule_id: str = "r",
    *,
    event_type: str = "test.event",
    conditions: list[Any] | None = None,
    priority: int = 0,
    stop: bool = False,
    actions: list[Any] | None = None,
    active: bool = True,
) -> FollowUpRule:
    return FollowUpRule.model_validate(
        {
            "ruleId": rule_id,
            "name": f"rule {rule_id}",
            "trigger": {"eventType": event_type, "conditions": conditions or []},
            "actions": actions or [{"actionType": "noop"}],
            "priority": priority,
            "stopProcessing": stop,
            "isActive": active,
        }
    )


def holds(
    actual: Any,
    operator: str,
    value: Any = None,
    *,
    ignore_case: bool = False,
    missing: bool = False,
    now: datetime = T0,
    operators: OperatorRegistry | None = None,
) -> bool:
    """Does one condition ``f <operator> value`` hold for a payload ``{"f": actual}``?"""
    condition = Condition(field="f", operator=operator, value=value, ignore_case=ignore_case)
    r = FollowUpRule(
        rule_id="t",
        name="t",
        trigger=Trigger(event_type="test.event", conditions=[condition]),
        actions=[Action(action_type="noop")],
    )
    payload = {} if missing else {"f": actual}
    engine = RuleEngine([r], operators=operators)
    return bool(engine.match(Event(type="test.event", time=now, payload=payload)))


def event(payload: dict[str, Any] | None = None, *, type: str = "test.event", **kw: Any) -> Event:
    return Event(type=type, time=kw.pop("time", T0), payload=payload or {}, **kw)
