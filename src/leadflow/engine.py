"""The rule engine: an event in, the planned follow-up actions (and why) out.

Evaluation is a pure function of the compiled rules and the event: no I/O, no clock (due times
derive from the event's time), no shared mutable state, so one engine serves many threads.

Order: the rules for an event type apply in descending ``priority``; equal priorities go by
ascending ``rule_id``. When a matching rule has ``stop_processing``, the rules after it in that
order do not apply. Actions of a rule are planned in the order the rule lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from .calendars import WorkingCalendar
from .conditions import (
    MISSING,
    CompiledCondition,
    OperatorRegistry,
    combine,
    compile_condition,
    describe,
    field_getter,
)
from .errors import RuleValidationError
from .models import Action, Condition, ConditionGroup, ConditionNode, Event, FollowUpRule

__all__ = [
    "ConditionOutcome",
    "Evaluation",
    "PlannedAction",
    "RuleEngine",
    "RuleExplanation",
    "validate_rule",
]


class PlannedAction(NamedTuple):
    """One action a rule plans for an event, due at ``due_at``."""

    rule: FollowUpRule
    action_index: int
    action: Action
    due_at: datetime
    event_id: str
    delayed: bool

    @property
    def rule_id(self) -> str:
        return self.rule.rule_id

    @property
    def idempotency_key(self) -> str:
        """Identifies this action of this rule for this event: carrying it out twice is a no-op."""
        return f"{self.event_id}:{self.rule.rule_id}:{self.action_index}"


class ConditionOutcome(NamedTuple):
    """How one leaf condition fared, for explanations."""

    location: str
    condition: str
    field: str
    actual: Any
    passed: bool


class RuleExplanation(NamedTuple):
    """Why a rule did or did not apply to an event."""

    rule_id: str
    rule_name: str
    priority: int
    matched: bool
    reason: str
    conditions: tuple[ConditionOutcome, ...]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The engine's answer for one event."""

    event: Event
    matched_rules: tuple[FollowUpRule, ...]
    planned: tuple[PlannedAction, ...]
    explanations: tuple[RuleExplanation, ...] | None = field(default=None)

    @property
    def immediate(self) -> tuple[PlannedAction, ...]:
        return tuple(p for p in self.planned if not p.delayed)

    @property
    def delayed(self) -> tuple[PlannedAction, ...]:
        return tuple(p for p in self.planned if p.delayed)


def _sort_key(rule: FollowUpRule) -> tuple[int, str]:
    return (-rule.priority, rule.rule_id)


# An action plan: (index, action, fixed delay or None when the delay is business time).
_Plan = tuple[int, Action, timedelta | None]


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: FollowUpRule
    test: CompiledCondition
    plans: tuple[_Plan, ...]
    stop: bool


def _compile_rule(rule: FollowUpRule, operators: OperatorRegistry) -> _CompiledRule:
    parts = []
    for i, node in enumerate(rule.trigger.conditions):
        try:
            parts.append(compile_condition(node, operators, f"trigger.conditions[{i}]"))
        except ValueError as exc:
            location, _, problem = str(exc).partition(": ")
            raise RuleValidationError(rule.rule_id, location, problem) from None
    plans: list[_Plan] = []
    for i, action in enumerate(rule.actions):
        fixed = None if action.delay.is_business_time else action.delay.as_timedelta()
        plans.append((i, action, fixed))
    return _CompiledRule(rule, combine("all", parts), tuple(plans), rule.stop_processing)


def validate_rule(rule: FollowUpRule, operators: OperatorRegistry | None = None) -> None:
    """Check that ``rule`` would load: every operator known, every value acceptable.

    Raises :class:`~leadflow.RuleValidationError` naming the rule, the condition and the problem.
    """
    _compile_rule(rule, operators or _DEFAULT_OPERATORS)


_DEFAULT_OPERATORS = OperatorRegistry.default()


class RuleEngine:
    """Compiles a rule set once; evaluates events against it.

    ``operators`` defaults to the built-ins; ``calendar`` (for business-time delays) defaults to
    Monday-Friday 9:00-17:00 UTC. Inactive rules are validated but never apply. Raises
    :class:`~leadflow.RuleValidationError` for a rule that cannot load, and for duplicate ids.
    """

    def __init__(
        self,
        rules: Iterable[FollowUpRule | Mapping[str, Any]] = (),
        *,
        operators: OperatorRegistry | None = None,
        calendar: WorkingCalendar | None = None,
    ) -> None:
        self.operators = operators if operators is not None else _DEFAULT_OPERATORS
        self.calendar = calendar if calendar is not None else WorkingCalendar()
        loaded: dict[str, FollowUpRule] = {}
        for item in rules:
            rule = item if isinstance(item, FollowUpRule) else FollowUpRule.model_validate(item)
            if rule.rule_id in loaded:
                raise RuleValidationError(rule.rule_id, "ruleId", "two rules share this id")
            loaded[rule.rule_id] = rule
        ordered = sorted(loaded.values(), key=_sort_key)
        buckets: dict[str, list[_CompiledRule]] = {}
        for rule in ordered:
            compiled = _compile_rule(rule, self.operators)
            if rule.is_active:
                buckets.setdefault(rule.trigger.event_type, []).append(compiled)
        self._rules = tuple(ordered)
        self._by_type = {k: tuple(v) for k, v in buckets.items()}

    @property
    def rules(self) -> tuple[FollowUpRule, ...]:
        """Every loaded rule (active or not), in application order."""
        return self._rules

    def rules_for(self, event_type: str) -> tuple[FollowUpRule, ...]:
        """The active rules listening to ``event_type``, in application order."""
        return tuple(c.rule for c in self._by_type.get(event_type, ()))

    def match(self, event: Event) -> list[FollowUpRule]:
        """The rules that apply to ``event``, in order (``stop_processing`` honoured)."""
        payload, now = event.payload, event.time
        matched = []
        for compiled in self._by_type.get(event.type, ()):
            if compiled.test(payload, now):
                matched.append(compiled.rule)
                if compiled.stop:
                    break
        return matched

    def evaluate(self, event: Event, *, explain: bool = False) -> Evaluation:
        """Match ``event`` and plan the actions of every rule that applies.

        Each planned action is due at the event's time plus its delay. With ``explain=True``
        the result also says, for every active rule, why it matched or which condition failed
        with what actual value.
        """
        payload, now, event_id = event.payload, event.time, event.id
        matched: list[FollowUpRule] = []
        planned: list[PlannedAction] = []
        for compiled in self._by_type.get(event.type, ()):
            if not compiled.test(payload, now):
                continue
            rule = compiled.rule
            matched.append(rule)
            for index, action, fixed in compiled.plans:
                if fixed is not None:
                    due = now + fixed if fixed else now
                    planned.append(PlannedAction(rule, index, action, due, event_id, bool(fixed)))
                else:
                    due = self._business_due(now, action)
                    planned.append(PlannedAction(rule, index, action, due, event_id, due > now))
            if compiled.stop:
                break
        explanations = self._explain(event, matched) if explain else None
        return Evaluation(event, tuple(matched), tuple(planned), explanations)

    def _business_due(self, now: datetime, action: Action) -> datetime:
        delay = action.delay
        if delay.unit == "business_days":
            return self.calendar.add_business_days(now, int(delay.amount))
        return self.calendar.add_business_hours(now, delay.amount)

    # ----------------------------------------------------------------- explanations

    def _explain(self, event: Event, matched: list[FollowUpRule]) -> tuple[RuleExplanation, ...]:
        matched_ids = {r.rule_id for r in matched}
        bucket = self._by_type.get(event.type, ())
        stopper: FollowUpRule | None = None
        out: list[RuleExplanation] = []
        for compiled in bucket:
            rule = compiled.rule
            outcomes: list[ConditionOutcome] = []
            failed_top: tuple[int, ConditionNode, int] | None = None
            for i, node in enumerate(rule.trigger.conditions):
                first_leaf = len(outcomes)
                if not self._explain_node(node, event, f"trigger.conditions[{i}]", outcomes):
                    failed_top = failed_top or (i, node, first_leaf)
            if rule.rule_id in matched_ids:
                reason = "matched" if outcomes else "matched (no conditions)"
            elif failed_top is None:
                assert stopper is not None
                reason = f"conditions hold, but rule {stopper.rule_id!r} stopped processing"
            else:
                i, node, first_leaf = failed_top
                reason = f"trigger.conditions[{i}] failed: {describe(node)}"
                if isinstance(node, Condition):
                    reason += f" (actual: {_show(outcomes[first_leaf].actual)})"
            out.append(
                RuleExplanation(
                    rule.rule_id,
                    rule.name,
                    rule.priority,
                    rule.rule_id in matched_ids,
                    reason,
                    tuple(outcomes),
                )
            )
            if stopper is None and compiled.stop and rule.rule_id in matched_ids:
                stopper = rule
        for rule in self._rules:
            if rule.trigger.event_type != event.type or not rule.is_active:
                why = (
                    "inactive"
                    if not rule.is_active
                    else f"listens to {rule.trigger.event_type!r}, not {event.type!r}"
                )
                out.append(RuleExplanation(rule.rule_id, rule.name, rule.priority, False, why, ()))
        return tuple(out)

    def _explain_node(
        self, node: ConditionNode, event: Event, location: str, out: list[ConditionOutcome]
    ) -> bool:
        if isinstance(node, Condition):
            actual = field_getter(node.field)(event.payload)
            passed = compile_condition(node, self.operators, location)(event.payload, event.time)
            out.append(ConditionOutcome(location, describe(node), node.field, actual, passed))
            return passed
        assert isinstance(node, ConditionGroup)
        results = [
            self._explain_node(child, event, f"{location}.{node.kind}[{i}]", out)
            for i, child in enumerate(node.conditions)
        ]
        if node.kind == "not":
            return not results[0]
        return any(results) if node.kind == "any" else all(results)


def _show(value: Any) -> str:
    return "missing" if value is MISSING else repr(value)
