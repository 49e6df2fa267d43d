"""The rule-engine benchmark's contenders other than leadflow: a hand-written baseline and three
PyPI rule engines, each taking the event document a host holds (a dict).

* :func:`build_baseline` -- plain Python, a mapping in and planned actions out: a dict from event
  type to ``(rule id, predicates, stop, action plans)``, one lambda per condition (a group is
  one lambda of its parts' ``and`` / ``or``), due times as the event's time plus each fixed
  delay (business-time delays through leadflow's
  :class:`~leadflow.rules.calendar.WorkingCalendar`, which the baseline would otherwise have to
  write). No validation at all.
* business-rules, rule-engine, json-logic (``json-logic-qubit``) -- written the way their
  documentation shows, groups translated into each one's own form (business-rules' nested
  ``all`` / ``any``, rule-engine's ``and`` / ``or`` with parentheses, JsonLogic's ``and`` /
  ``or``). Each in two forms: **by type** (rules split by event type as the baseline does, the
  fastest form) and **one list** (the single rule list of their examples, the event type being
  every rule's first condition). They report which rules fired; none plans actions.

A contender's ``run`` takes a document; its ``read`` turns the answer into comparable data:
``(matched rule ids, planned (rule id, action index, due))`` for planners, the ids for matchers.
"""

# The peers ship no type information: their decorators and base classes are untyped.
# mypy: disable-error-code="import-untyped,untyped-decorator,misc"

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine_workload import Tree, condition_tree, one_list, ordered_by_type

from leadflow import FollowUpRule
from leadflow.rules.calendar import WorkingCalendar

Ids = list[str]
Planned = list[tuple[str, int, datetime]]


@dataclass
class Contender:
    """An engine under test: ``run`` is timed on each input; ``read`` makes its answer
    comparable; ``plans`` says whether the answer includes planned actions; ``takes_events``
    whether it runs on pre-built ``Event`` models instead of documents."""

    name: str
    run: Callable[[Any], Any]
    read: Callable[[Any], Any]
    plans: bool
    takes_events: bool = False


def _peer_name(name: str, single: bool) -> str:
    return f"{name} (one list)" if single else f"{name} (by type)"


# --------------------------------------------------------------------------- baseline


def _leaf(field: str, operator: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    if "." in field:
        outer, inner = field.split(".")
        if operator == "equals":
            return lambda p: p.get(outer, {}).get(inner) == value
        if operator == "not_equals":
            return lambda p: p.get(outer, {}).get(inner) != value
        if operator == "in":
            options = frozenset(value)
            return lambda p: p.get(outer, {}).get(inner) in options
        if operator == "greater_than":
            return lambda p: p.get(outer, {}).get(inner, 0) > value
        if operator == "less_than":
            return lambda p: p.get(outer, {}).get(inner, 0) < value
    else:
        if operator == "equals":
            return lambda p: p.get(field) == value
        if operator == "not_equals":
            return lambda p: p.get(field) != value
        if operator == "in":
            options = frozenset(value)
            return lambda p: p.get(field) in options
        if operator == "contains":
            return lambda p: value in p.get(field, ())
        if operator == "greater_than":
            return lambda p: p.get(field, 0) > value
        if operator == "less_than":
            return lambda p: p.get(field, 0) < value
    raise ValueError(f"baseline has no {operator} for {field}")


def _predicate(tree: Tree) -> Callable[[dict[str, Any]], bool]:
    """One lambda per condition; a group is one lambda of its parts' ``and`` / ``or``."""
    if tree[0] == "leaf":
        return _leaf(*tree[1:])
    kind, children = tree
    parts = [_predicate(child) for child in children]
    if len(parts) == 2:
        a, b = parts
        return (lambda p: a(p) and b(p)) if kind == "all" else (lambda p: a(p) or b(p))
    if len(parts) == 3:
        a, b, c = parts
        if kind == "all":
            return lambda p: a(p) and b(p) and c(p)
        return lambda p: a(p) or b(p) or c(p)
    if kind == "all":
        return lambda p: all(test(p) for test in parts)
    return lambda p: any(test(p) for test in parts)


def build_baseline(rules: Sequence[FollowUpRule]) -> Contender:
    """Hand-written Python: a mapping in, planned actions out (see the module docstring)."""
    calendar = WorkingCalendar()

    def plans(rule: FollowUpRule) -> list[tuple[int, timedelta | None, Any]]:
        out: list[tuple[int, timedelta | None, Any]] = []
        for i, action in enumerate(rule.actions):
            delay = action.delay
            if delay.unit == "business_days":
                out.append(
                    (i, None, lambda t, n=int(delay.amount): calendar.add_business_days(t, n))
                )
            elif delay.unit == "business_hours":
                out.append((i, None, lambda t, n=delay.amount: calendar.add_business_hours(t, n)))
            else:
                out.append((i, delay.as_timedelta(), None))
        return out

    table = {
        kind: [
            (
                r.rule_id,
                tuple(_predicate(child) for child in condition_tree(r)[1]),
                r.stop_processing,
                plans(r),
            )
            for r in bucket
        ]
        for kind, bucket in ordered_by_type(rules).items()
    }

    def run(document: dict[str, Any]) -> tuple[Ids, Planned]:
        payload, now = document["payload"], document["time"]
        matched: Ids = []
        planned: Planned = []
        for rule_id, tests, stop, actions in table.get(document["type"], ()):
            for test in tests:
                if not test(payload):
                    break
            else:
                matched.append(rule_id)
                for index, fixed, business in actions:
                    planned.append(
                        (rule_id, index, now + fixed if business is None else business(now))
                    )
                if stop:
                    break
        return matched, planned

    return Contender("baseline (hand-written)", run, lambda result: result, plans=True)


# --------------------------------------------------------------------------- peers


def _by_type_or_one_list(
    rules: Sequence[FollowUpRule], single: bool, translate: Callable[[FollowUpRule], Any]
) -> dict[str | None, list[tuple[str, Any, bool]]]:
    """Translated rules keyed by event type, or under None when ``single``; in order."""
    if single:
        return {None: [(r.rule_id, translate(r), r.stop_processing) for r in one_list(rules)]}
    return {
        kind: [(r.rule_id, translate(r), r.stop_processing) for r in bucket]
        for kind, bucket in ordered_by_type(rules).items()
    }


def _cut_at_stop(fired: Ids, stoppers: frozenset[str]) -> Ids:
    """Apply stopProcessing after the fact (for a peer that runs every rule)."""
    for i, rule_id in enumerate(fired):
        if rule_id in stoppers:
            return fired[: i + 1]
    return fired


def build_business_rules(rules: Sequence[FollowUpRule], single: bool) -> Contender:
    """business-rules: a variables class, an actions class, ``run_all`` per event; groups as its
    nested ``{"all": [...]}`` / ``{"any": [...]}`` conditions."""
    from business_rules import run_all
    from business_rules.actions import BaseActions, rule_action
    from business_rules.fields import FIELD_SELECT_MULTIPLE, FIELD_TEXT
    from business_rules.operators import StringType, export_type, type_operator
    from business_rules.variables import (
        BaseVariables,
        boolean_rule_variable,
        numeric_rule_variable,
        rule_variable,
        select_rule_variable,
    )

    # business-rules has no "not equal" and no "one of" for strings: add them the documented
    # way, as operators of a custom type.
    @export_type
    class LeadString(StringType):
        name = "lead_string"

        @type_operator(FIELD_TEXT)
        def not_equal_to(self, other: str) -> bool:
            return bool(self.value != other)

        @type_operator(FIELD_SELECT_MULTIPLE, assert_type_for_arguments=False)
        def is_one_of(self, options: list[str]) -> bool:
            return self.value in options

    def lead_string(func: Any) -> Any:
        return rule_variable(LeadString)(func)

    class LeadVariables(BaseVariables):
        def __init__(self, document: dict[str, Any]) -> None:
            self.kind = document["type"]
            self.p = document["payload"]

        @boolean_rule_variable
        def always(self) -> bool:  # business-rules needs >= 1 condition per rule
            return True

        @lead_string
        def event_type(self) -> Any:
            return self.kind

        @lead_string
        def priority(self) -> Any:
            return self.p.get("priority")

        @lead_string
        def region(self) -> Any:
            return self.p.get("region")

        @select_rule_variable()
        def tags(self) -> Any:
            return self.p.get("tags", [])

        @lead_string
        def customer_segment(self) -> Any:
            return self.p.get("customer", {}).get("segment")

        @lead_string
        def lead_source(self) -> Any:
            return self.p.get("leadSource")

        @numeric_rule_variable
        def estimate_value(self) -> Any:
            return self.p.get("estimateValue", 0)

        @lead_string
        def new_status(self) -> Any:
            return self.p.get("newStatus")

        @lead_string
        def old_status(self) -> Any:
            return self.p.get("oldStatus")

        @numeric_rule_variable
        def quote_value(self) -> Any:
            return self.p.get("quoteValue", 0)

        @lead_string
        def outcome(self) -> Any:
            return self.p.get("outcome")

        @lead_string
        def activity_type(self) -> Any:
            return self.p.get("activityType")

        @numeric_rule_variable
        def phone_duration(self) -> Any:
            return self.p.get("metadata", {}).get("phoneDuration", 0)

        @lead_string
        def notes(self) -> Any:
            return self.p.get("notes")

    class LeadActions(BaseActions):
        def __init__(self, fired: Ids) -> None:
            self.fired = fired

        @rule_action(params={"rule_id": FIELD_TEXT})
        def fire(self, rule_id: str) -> None:
            self.fired.append(rule_id)

    names = {
        "customer.segment": "customer_segment",
        "leadSource": "lead_source",
        "estimateValue": "estimate_value",
        "newStatus": "new_status",
        "oldStatus": "old_status",
        "quoteValue": "quote_value",
        "activityType": "activity_type",
        "metadata.phoneDuration": "phone_duration",
    }
    operators = {
        "equals": "equal_to",
        "not_equals": "not_equal_to",
        "in": "is_one_of",
        "greater_than": "greater_than",
        "less_than": "less_than",
        "contains": "contains",
    }

    def condition(tree: Tree) -> dict[str, Any]:
        if tree[0] == "leaf":
            _, field, operator, value = tree
            return {
                "name": names.get(field, field),
                "operator": operators[operator],
                "value": value,
            }
        kind, children = tree
        return {kind: [condition(child) for child in children]}

    def translate(rule: FollowUpRule) -> dict[str, Any]:
        conditions = condition(condition_tree(rule))["all"]
        if single:
            kind = rule.trigger.event_type
            conditions.insert(0, {"name": "event_type", "operator": "equal_to", "value": kind})
        if not conditions:
            conditions = [{"name": "always", "operator": "is_true", "value": None}]
        return {
            "conditions": {"all": conditions},
            "actions": [{"name": "fire", "params": {"rule_id": rule.rule_id}}],
        }

    table = {
        kind: [rule for _, rule, _ in entries]
        for kind, entries in _by_type_or_one_list(rules, single, translate).items()
    }
    stoppers = frozenset(r.rule_id for r in rules if r.stop_processing)
    everything = table.get(None, [])

    def run(document: dict[str, Any]) -> Ids:
        fired: Ids = []
        run_all(
            everything if single else table.get(document["type"], []),
            LeadVariables(document),
            LeadActions(fired),
            stop_on_first_trigger=False,
        )
        return _cut_at_stop(fired, stoppers)

    return Contender(_peer_name("business-rules", single), run, lambda ids: ids, plans=False)


def build_rule_engine(rules: Sequence[FollowUpRule], single: bool) -> Contender:
    """rule-engine: one ``Rule`` (expression text) per rule, ``rule.matches(payload)``; groups
    as ``and`` / ``or`` with parentheses."""
    import rule_engine

    def term(field: str, operator: str, value: Any) -> str:
        if "." in field:
            outer, inner = field.split(".")
            symbol = f"{outer}[{inner!r}]"  # a["b"] is twice as fast as a.b on mappings
        else:
            symbol = field
        if operator == "equals":
            return f"{symbol} == {value!r}"
        if operator == "not_equals":
            return f"{symbol} != {value!r}"
        if operator == "in":
            return f"{symbol} in [{', '.join(repr(v) for v in value)}]"
        if operator == "contains":
            return f"{value!r} in {symbol}"
        if operator == "greater_than":
            return f"{symbol} > {value!r}"
        if operator == "less_than":
            return f"{symbol} < {value!r}"
        raise ValueError(operator)

    def expression(tree: Tree) -> str:
        if tree[0] == "leaf":
            return term(*tree[1:])
        kind, children = tree
        joiner = " and " if kind == "all" else " or "
        return "(" + joiner.join(expression(child) for child in children) + ")"

    def translate(rule: FollowUpRule) -> Any:
        terms = [expression(child) for child in condition_tree(rule)[1]]
        if single:
            terms.insert(0, f"eventType == {rule.trigger.event_type!r}")
        return rule_engine.Rule(" and ".join(terms) or "true")

    return _loop_peer(
        "rule-engine", rules, single, translate, lambda rule, data: rule.matches(data)
    )


def build_json_logic(rules: Sequence[FollowUpRule], single: bool) -> Contender:
    """json-logic-qubit: one JsonLogic document per rule, ``jsonLogic(rule, payload)``; groups
    as ``and`` / ``or``."""
    from json_logic import jsonLogic

    def term(field: str, operator: str, value: Any) -> dict[str, Any]:
        var = {"var": field}
        if operator == "equals":
            return {"==": [var, value]}
        if operator == "not_equals":
            return {"!=": [var, value]}
        if operator == "in":
            return {"in": [var, value]}
        if operator == "contains":
            return {"in": [value, var]}
        if operator == "greater_than":
            return {">": [var, value]}
        if operator == "less_than":
            return {"<": [var, value]}
        raise ValueError(operator)

    def logic(tree: Tree) -> Any:
        if tree[0] == "leaf":
            return term(*tree[1:])
        kind, children = tree
        return {"and" if kind == "all" else "or": [logic(child) for child in children]}

    def translate(rule: FollowUpRule) -> Any:
        terms = [logic(child) for child in condition_tree(rule)[1]]
        if single:
            terms.insert(0, {"==": [{"var": "eventType"}, rule.trigger.event_type]})
        return {"and": terms} if terms else True

    return _loop_peer("json-logic", rules, single, translate, jsonLogic)


def _loop_peer(
    name: str,
    rules: Sequence[FollowUpRule],
    single: bool,
    translate: Callable[[FollowUpRule], Any],
    holds: Callable[[Any, dict[str, Any]], Any],
) -> Contender:
    """A peer called rule by rule: stop at a matching stopProcessing rule."""
    table = _by_type_or_one_list(rules, single, translate)
    everything = table.get(None, [])

    def run_by_type(document: dict[str, Any]) -> Ids:
        payload = document["payload"]
        matched = []
        for rule_id, rule, stop in table.get(document["type"], ()):
            if holds(rule, payload):
                matched.append(rule_id)
                if stop:
                    break
        return matched

    def run_one_list(document: dict[str, Any]) -> Ids:
        data = {**document["payload"], "eventType": document["type"]}
        matched = []
        for rule_id, rule, stop in everything:
            if holds(rule, data):
                matched.append(rule_id)
                if stop:
                    break
        return matched

    run = run_one_list if single else run_by_type
    return Contender(_peer_name(name, single), run, lambda ids: ids, plans=False)


PEERS: list[tuple[str, str, Callable[[Sequence[FollowUpRule], bool], Contender]]] = [
    ("business-rules", "business_rules", build_business_rules),
    ("rule-engine", "rule_engine", build_rule_engine),
    ("json-logic", "json_logic", build_json_logic),
]
"""(name, module to import, builder) for every peer."""
