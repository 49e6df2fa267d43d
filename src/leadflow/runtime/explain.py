"""The explanation kept on every automated activity, in the one explanation format of
:mod:`leadflow.rules.explain`: which rule matched which event, every condition node's truth
value with the values compared, and how each action's due time was computed."""

from __future__ import annotations

from datetime import datetime

from ..limits import DEFAULT_LIMITS
from ..models import Action, Event, FollowUpRule
from ..rules import OperatorRegistry, WorkingCalendar, render_rule
from ..rules.explain import RuleExplainer, RuleExplanation, explain_due

__all__ = ["why"]

_MAX_CHARS = 20_000  # ScheduledAction.explanation's limit
_DEFAULT_OPERATORS = OperatorRegistry.default()
_DEFAULT_CALENDAR = WorkingCalendar()
_CACHE_SIZE = 4096
_explainers: dict[tuple[int, int], tuple[FollowUpRule, OperatorRegistry, RuleExplainer]] = {}


def _explainer(rule: FollowUpRule, operators: OperatorRegistry) -> RuleExplainer:
    key = (id(rule), id(operators))
    cached = _explainers.get(key)
    if cached is not None and cached[0] is rule and cached[1] is operators:
        return cached[2]
    explainer = RuleExplainer(rule, operators, DEFAULT_LIMITS)
    if len(_explainers) >= _CACHE_SIZE:
        _explainers.clear()
    _explainers[key] = (rule, operators, explainer)  # holds the rule: its id is not reused
    return explainer


def _due(action: Action, now: datetime, calendar: WorkingCalendar) -> datetime:
    delay = action.delay
    if delay.unit == "business_days":
        return calendar.add_business_days(now, int(delay.amount))
    if delay.unit == "business_hours":
        return calendar.add_business_hours(now, delay.amount)
    return now + delay.as_timedelta()


def why(
    rule: FollowUpRule,
    event: Event,
    *,
    operators: OperatorRegistry | None = None,
    calendar: WorkingCalendar | None = None,
) -> str:
    """The text stored as ``automationExplanation``: ``event <type> <id> at <time>`` then
    :func:`~leadflow.rules.render_rule` of the rule (which matched), at most 20,000 characters.

    ``operators`` and ``calendar`` should be the flow's (defaults: the built-ins and the
    Monday-Friday 9-17 UTC calendar). Never raises for a rule that loaded: if the conditions
    cannot be re-evaluated (an operator missing from ``operators``), the explanation lists the
    conditions without values.
    """
    registry = operators if operators is not None else _DEFAULT_OPERATORS
    working = calendar if calendar is not None else _DEFAULT_CALENDAR
    try:
        _, leaves, tree = _explainer(rule, registry).run(event.payload, event.time)
    except ValueError:
        leaves = tree = ()
    dues = []
    for index, action in enumerate(rule.actions):
        try:
            due = _due(action, event.time, working)
        except (ValueError, ArithmeticError):
            continue
        dues.append(explain_due(index, action, event.time, due, working))
    explanation = RuleExplanation(
        rule.rule_id,
        rule.name,
        rule.priority,
        True,
        "matched" if rule.trigger.conditions else "matched (no conditions)",
        leaves,
        tree,
        None,
        tuple(dues),
        rule.stop_processing,
    )
    text = f"event {event.type} {event.id} at {event.time.isoformat()}\n"
    text += render_rule(explanation)
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 1] + "…"
