"""Builders for the rule-engine tests: engines that know the tests' event types."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from leadflow import Action, Condition, Event, FollowUpRule, OperatorRegistry, RuleEngine, Trigger
from leadflow.rules import EventTypes

from .helpers import T0

TEST_TYPES = ("test.event", "ticket.opened")


def event_types() -> EventTypes:
    """A fresh registry: the seed's event types plus the tests' own."""
    return EventTypes(TEST_TYPES)


def engine(rules: Iterable[FollowUpRule | dict[str, Any]] = (), **kwargs: Any) -> RuleEngine:
    """``RuleEngine(rules, ...)`` that also knows the tests' event types."""
    kwargs.setdefault("event_types", event_types())
    return RuleEngine(rules, **kwargs)


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
    built = engine([r], operators=operators)
    # model_construct: operators must behave on any value, also those Event validation refuses
    # (NaN, naive datetimes, tuples), e.g. when a host compiles conditions itself.
    event = Event.model_construct(id="e", type="test.event", time=now, payload=payload)
    return bool(built.match(event))
