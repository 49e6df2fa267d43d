"""The rule engine: an event in, the planned follow-up actions (and why) out.

Evaluation is a pure function of the compiled rules and the event: no I/O, no clock (due times
derive from the event's time), no shared mutable state, so one engine serves many threads.

Order: the rules for an event type apply in descending ``priority``; equal priorities go by
ascending ``rule_id``. When a matching rule has ``stop_processing``, the rules after it in that
order do not apply. Actions of a rule are planned in the order the rule lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple

from ..errors import RuleValidationError
from ..models import Action, Condition, ConditionGroup, ConditionNode, Event, FollowUpRule
from .calendar import WorkingCalendar
from .conditions import (
    MISSING,
    CompiledCondition,
    OperatorRegistry,
    compile_condition,
    describe,
    field_getter,
    index_values,
    single_key,
)

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


# An action plan: (index, action, fixed delay or None when the delay is business time, whether
# the fixed delay is non-zero).
_Plan = tuple[int, Action, timedelta | None, bool]

# What the hot loops read for one rule: (conditions that must all hold, the rule, its
# stop_processing flag, its action plans).
_Entry = tuple[tuple[CompiledCondition, ...], FollowUpRule, bool, tuple[_Plan, ...]]

_new_planned: Callable[[type[PlannedAction], tuple[Any, ...]], PlannedAction] = tuple.__new__
"""``PlannedAction(*fields)`` without the Python-level ``__new__`` of the named tuple."""


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: FollowUpRule
    tests: tuple[CompiledCondition, ...]  # one per top-level condition: all must hold
    plans: tuple[_Plan, ...]
    stop: bool

    @property
    def entry(self) -> _Entry:
        return (self.tests, self.rule, self.stop, self.plans)


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
        plans.append((i, action, fixed, bool(fixed)))
    return _CompiledRule(rule, tuple(parts), tuple(plans), rule.stop_processing)


def validate_rule(rule: FollowUpRule, operators: OperatorRegistry | None = None) -> None:
    """Check that ``rule`` would load: every operator known, every value acceptable.

    Raises :class:`~leadflow.RuleValidationError` naming the rule, the condition and the problem.
    """
    _compile_rule(rule, operators or _DEFAULT_OPERATORS)


_DEFAULT_OPERATORS = OperatorRegistry.default()

# Buckets with fewer rules than this are scanned in full: an index would cost more than it saves.
_INDEX_MIN_RULES = 4
# Fields other than the main one are indexed only in buckets of at least this many rules.
_SECONDARY_MIN_RULES = 12

_STR_OR_SEQUENCE = (str, list, tuple)

# One secondary indexed field: (first name, twin name, getter for dotted paths or None,
# exact string value -> candidate codes, codes of every rule filed under this field).
_Group = tuple[
    str, str, Callable[[Mapping[str, Any]], Any] | None, dict[str, tuple[int, ...]], tuple[int, ...]
]


class _Bucket:
    """The active rules of one event type, in application order, with an optional index.

    The index files a rule whose top-level conditions include a case-sensitive ``equals`` with
    a string (or ``in`` with strings) on some field under those strings; the rule is tested only
    when the event's field holds one of them. A bucket has a main field (the one that files the
    most rules) and, when large, secondary fields; rules filed under neither are always tested.

    For the main field the candidates are laid out in advance for every string: the entries to
    test, in order. Secondary fields add candidates at run time, merged by position. A
    candidate is coded ``2 * position + 1`` when the lookup proved its filed condition (only its
    other conditions are tested) and ``2 * position`` when all its conditions must be tested,
    which happens when the field holds a ``str`` subclass, a list or a tuple. Either way the
    order of the entries is the order of the rules, as without the index.
    """

    __slots__ = (
        "by_value",
        "choices",
        "default",
        "entries",
        "fallback",
        "first",
        "getter",
        "groups",
        "indexed",
        "second",
    )

    def __init__(self, rules: list[_CompiledRule], operators: OperatorRegistry) -> None:
        self.entries: tuple[_Entry, ...] = tuple(c.entry for c in rules)
        self.indexed = False
        if len(rules) < _INDEX_MIN_RULES:
            return
        # Every indexable top-level condition of every rule: position -> [(path, values, i)].
        options: list[list[tuple[str, frozenset[str], int]]] = []
        counts: dict[str, int] = {}
        for compiled in rules:
            found = []
            for i, node in enumerate(compiled.rule.trigger.conditions):
                if isinstance(node, Condition):
                    values = index_values(node, operators)
                    if values is not None:
                        found.append((node.field, values, i))
            options.append(found)
            for path in {path for path, _, _ in found}:
                counts[path] = counts.get(path, 0) + 1
        if not counts:
            return
        main = max(counts, key=lambda path: counts[path])  # first seen wins ties
        secondary = len(rules) >= _SECONDARY_MIN_RULES

        choices: list[_Entry] = []
        plain: list[int] = []  # codes tested for every event
        main_table: dict[str, list[int]] = {}
        main_every: list[int] = []
        tables: dict[str, dict[str, list[int]]] = {}
        every: dict[str, list[int]] = {}
        for position, (compiled, found) in enumerate(zip(rules, options, strict=True)):
            full = compiled.entry
            choices.append(full)
            usable = [f for f in found if f[0] == main] or (found if secondary else [])
            if not usable:
                choices.append(full)  # never looked up
                plain.append(2 * position)
                continue
            path, values, i = min(usable, key=lambda f: len(f[1]))
            rest = compiled.tests[:i] + compiled.tests[i + 1 :]
            choices.append((rest, compiled.rule, compiled.stop, compiled.plans))
            table = main_table if path == main else tables.setdefault(path, {})
            for value in values:
                table.setdefault(value, []).append(2 * position + 1)
            (main_every if path == main else every.setdefault(path, [])).append(2 * position)

        self.choices = tuple(choices)
        self.first, self.second, self.getter = _reader(main)
        self.groups: tuple[_Group, ...] = tuple(
            (*_reader(path), {v: tuple(c) for v, c in table.items()}, tuple(every[path]))
            for path, table in tables.items()
        )
        # With secondary fields the main lookup yields codes to merge; without, entries.
        lay_out = self._codes if self.groups else self._entries
        self.by_value = {v: lay_out(plain + codes) for v, codes in main_table.items()}
        self.default = lay_out(plain)
        self.fallback = lay_out(plain + main_every)
        self.indexed = True

    def _codes(self, codes: list[int]) -> tuple[Any, ...]:
        return tuple(sorted(codes))

    def _entries(self, codes: list[int]) -> tuple[Any, ...]:
        return tuple(self.choices[code] for code in sorted(codes))

    def select(self, payload: Mapping[str, Any]) -> Sequence[_Entry]:
        """The entries to test for ``payload``, in application order (needs ``indexed``)."""
        if self.getter is None:
            value = payload.get(self.first, MISSING)
            if value is MISSING:
                value = payload.get(self.second, MISSING)
        else:
            value = self.getter(payload)
        if type(value) is str:
            picked = self.by_value.get(value, self.default)
        elif isinstance(value, _STR_OR_SEQUENCE):
            picked = self.fallback
        else:
            picked = self.default
        if not self.groups:
            return picked
        codes = list(picked)
        for first, second, getter, table, every in self.groups:
            if getter is None:
                value = payload.get(first, MISSING)
                if value is MISSING:
                    value = payload.get(second, MISSING)
            else:
                value = getter(payload)
            if type(value) is str:
                hit = table.get(value)
                if hit is not None:
                    codes += hit
            elif isinstance(value, _STR_OR_SEQUENCE):
                codes += every
        codes.sort()
        if len(codes) > 1:
            return itemgetter(*codes)(self.choices)  # type: ignore[no-any-return]
        return [self.choices[code] for code in codes]


def _reader(path: str) -> tuple[str, str, Callable[[Mapping[str, Any]], Any] | None]:
    """How the index reads a field: the two names of a one-segment path, else a getter."""
    keys = single_key(path)
    if keys is not None:
        return (keys[0], keys[1], None)
    return ("", "", field_getter(path))


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
        self._by_type = {k: _Bucket(v, self.operators) for k, v in buckets.items()}

    @property
    def rules(self) -> tuple[FollowUpRule, ...]:
        """Every loaded rule (active or not), in application order."""
        return self._rules

    def rules_for(self, event_type: str) -> tuple[FollowUpRule, ...]:
        """The active rules listening to ``event_type``, in application order."""
        bucket = self._by_type.get(event_type)
        return () if bucket is None else tuple(entry[1] for entry in bucket.entries)

    def match(self, event: Event) -> list[FollowUpRule]:
        """The rules that apply to ``event``, in order (``stop_processing`` honoured)."""
        matched: list[FollowUpRule] = []
        bucket = self._by_type.get(event.type)
        if bucket is None:
            return matched
        payload, now = event.payload, event.time
        entries = bucket.select(payload) if bucket.indexed else bucket.entries
        for tests, rule, stop, _ in entries:
            for test in tests:
                if not test(payload, now):
                    break
            else:
                matched.append(rule)
                if stop:
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
        bucket = self._by_type.get(event.type)
        if bucket is None:
            entries: Sequence[_Entry] = ()
        else:
            entries = bucket.select(payload) if bucket.indexed else bucket.entries
        plan = planned.append
        for tests, rule, stop, plans in entries:
            for test in tests:
                if not test(payload, now):
                    break
            else:
                matched.append(rule)
                for index, action, fixed, delayed in plans:
                    if fixed is None:
                        due = self._business_due(now, action)
                        delayed = due > now
                    else:
                        due = now + fixed if delayed else now
                    plan(_new_planned(PlannedAction, (rule, index, action, due, event_id, delayed)))
                if stop:
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
        bucket = self._by_type.get(event.type)
        stopper: FollowUpRule | None = None
        out: list[RuleExplanation] = []
        for _, rule, stop, _ in () if bucket is None else bucket.entries:
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
            if stopper is None and stop and rule.rule_id in matched_ids:
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
