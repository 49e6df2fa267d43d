"""Hypothesis properties of the operators and the engine."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow import Condition, ConditionGroup, Event, OperatorRegistry, RuleEngine
from leadflow.rules.compiler import compile_condition, describe
from leadflow.rules.intake import read_event

from .helpers import T0, rule
from .rules_support import engine, holds
from .suite import examples

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=8,
)
"""Values an event's payload may hold if a host bypasses validation (the operators never raise)."""
keys = st.text(st.characters(codec="utf-8", exclude_characters="$.\x00"), min_size=1, max_size=4)
rule_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
)
rule_values = st.recursive(
    rule_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=8,
)
"""Values a rule's condition may hold (documents: finite numbers, keys without '$' or '.')."""
aware = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
anything = json_values | aware | aware.map(lambda d: d.isoformat())
finite_numbers = st.integers(-1000, 1000) | st.floats(-1e6, 1e6, allow_nan=False)
ordering_values = (
    finite_numbers
    | st.text(max_size=5).filter(lambda t: not t[:1].isdigit() and "\x00" not in t)
    | aware
)
nan_free = st.recursive(
    st.none()
    | st.booleans()
    | finite_numbers
    | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(keys, c, max_size=4),
    max_leaves=8,
)


@settings(max_examples=examples(150))
@given(actual=anything, expected=rule_values, missing=st.booleans(), ignore_case=st.booleans())
def test_not_equals_is_the_negation_of_equals(
    actual: Any, expected: Any, missing: bool, ignore_case: bool
):
    eq = holds(actual, "equals", expected, missing=missing, ignore_case=ignore_case)
    ne = holds(actual, "not_equals", expected, missing=missing, ignore_case=ignore_case)
    assert eq is not ne


@settings(max_examples=examples(150))
@given(actual=anything, values=st.lists(rule_values, max_size=5), missing=st.booleans())
def test_in_and_not_in_complement_each_other(actual: Any, values: list[Any], missing: bool):
    assert holds(actual, "in", values, missing=missing) is not holds(
        actual, "not_in", values, missing=missing
    )


@settings(max_examples=examples(100))
@given(actual=anything, needle=rule_scalars, missing=st.booleans())
def test_contains_and_not_contains_complement_each_other(actual: Any, needle: Any, missing: bool):
    assert holds(actual, "contains", needle, missing=missing) is not holds(
        actual, "not_contains", needle, missing=missing
    )


@settings(max_examples=examples(100))
@given(actual=anything, missing=st.booleans())
def test_exists_and_not_exists_complement_each_other(actual: Any, missing: bool):
    assert holds(actual, "exists", missing=missing) is not holds(
        actual, "not_exists", missing=missing
    )


@settings(max_examples=examples(150))
@given(value=nan_free)
def test_equals_is_reflexive_on_json_without_nan(value: Any):
    assert holds(value, "equals", value)


@settings(max_examples=examples(150))
@given(a=finite_numbers, e=finite_numbers)
def test_number_ordering_agrees_with_python(a: float, e: float):
    assert holds(a, "greater_than", e) is (a > e)
    assert holds(a, "less_than", e) is (a < e)
    assert holds(a, "greater_or_equal", e) is (a >= e)
    assert holds(a, "less_or_equal", e) is (a <= e)
    assert holds(a, "less_or_equal", e) is not holds(a, "greater_than", e)


@settings(max_examples=examples(100))
@given(a=finite_numbers, low=finite_numbers, high=finite_numbers)
def test_between_is_the_conjunction_of_bounds(a: float, low: float, high: float):
    low, high = min(low, high), max(low, high)
    expected = holds(a, "greater_or_equal", low) and holds(a, "less_or_equal", high)
    assert holds(a, "between", [low, high]) is expected


OPERATOR_VALUES = {
    "equals": rule_values,
    "not_equals": rule_values,
    "contains": rule_values,
    "not_contains": rule_values,
    "in": st.lists(rule_values, max_size=4),
    "not_in": st.lists(rule_values, max_size=4),
    "greater_than": ordering_values,
    "greater_or_equal": ordering_values,
    "less_than": ordering_values,
    "less_or_equal": ordering_values,
    "between": st.tuples(finite_numbers, finite_numbers).map(lambda t: sorted(t)),
    "starts_with": st.text(
        st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=4
    ),
    "ends_with": st.text(
        st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=4
    ),
    "exists": st.none(),
    "not_exists": st.none(),
    "older_than": st.integers(0, 10_000),
    "newer_than": st.floats(0, 10_000),
}


@settings(max_examples=examples(300))
@given(
    data=st.data(),
    operator=st.sampled_from(sorted(OPERATOR_VALUES)),
    actual=anything,
    missing=st.booleans(),
    ignore_case=st.booleans(),
)
def test_no_operator_raises_on_arbitrary_values(data, operator, actual, missing, ignore_case):
    expected = data.draw(OPERATOR_VALUES[operator])
    result = holds(actual, operator, expected, missing=missing, ignore_case=ignore_case)
    assert isinstance(result, bool)


# ---------------------------------------------------------------- engine properties

rule_specs = st.lists(
    st.tuples(
        st.integers(-3, 3),  # priority
        st.booleans(),  # stop_processing
        st.sampled_from(["a", "b", "c"]),  # the value its condition wants
        st.sampled_from(["equals", "not_equals"]),
    ),
    min_size=1,
    max_size=12,
)


def _engine(specs: list[tuple[int, bool, str, str]], *, reverse: bool = False) -> RuleEngine:
    rules = [
        rule(
            f"r{i:02d}",
            priority=p,
            stop=stop,
            conditions=[{"field": "x", "operator": op, "value": want}],
            actions=[{"actionType": "noop", "delay": i % 3}],
        )
        for i, (p, stop, want, op) in enumerate(specs)
    ]
    return engine(rules[::-1] if reverse else rules)


@settings(max_examples=examples(100))
@given(specs=rule_specs, x=st.sampled_from(["a", "b", "c", None]))
def test_evaluation_is_deterministic_and_ordered_by_priority(specs, x):
    engine = _engine(specs)
    ev = Event(id="e1", type="test.event", time=T0, payload={"x": x})
    first = engine.evaluate(ev)
    assert engine.evaluate(ev) == first
    assert _engine(specs, reverse=True).evaluate(ev) == first, "input order does not matter"
    keys = [(-r.priority, r.rule_id) for r in first.matched_rules]
    assert keys == sorted(keys)
    # stop_processing: nothing follows a stopping rule
    for position, matched in enumerate(first.matched_rules):
        if matched.stop_processing:
            assert position == len(first.matched_rules) - 1
    # every applicable rule before the first stopper matched (none is silently skipped)
    by_order = sorted(engine.rules, key=lambda r: (-r.priority, r.rule_id))
    expected = []
    for r in by_order:
        cond = r.trigger.conditions[0]
        if (x == cond.value) is (cond.operator == "equals"):
            expected.append(r.rule_id)
            if r.stop_processing:
                break
    assert [r.rule_id for r in first.matched_rules] == expected
    for planned in first.planned:
        assert planned.due_at == T0 + timedelta(hours=planned.action.delay.amount)


@settings(max_examples=examples(60))
@given(specs=rule_specs, x=st.sampled_from(["a", "b", None]))
def test_explanations_agree_with_matches(specs, x):
    engine = _engine(specs)
    ev = Event(type="test.event", time=T0, payload={"x": x})
    result = engine.evaluate(ev, explain=True)
    assert result.explanations is not None
    explained = [e.rule_id for e in result.explanations if e.matched]
    assert explained == [r.rule_id for r in result.matched_rules]
    assert not math.isnan(len(result.explanations))


# ---------------------------------------------------------------- fused leaves vs general form

FIELD_NAMES = ["a", "leadSource", "lead_source", "tags", "customer.segment", "items.0"]
payload_values = st.recursive(
    scalars | aware | st.sampled_from(["web", "Web", "vip", "x"]) | st.tuples(st.text(max_size=3)),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["segment", "x"]), c),
    max_leaves=6,
)
differential_payloads = st.dictionaries(
    st.sampled_from(["a", "leadSource", "lead_source", "tags", "customer", "items"]),
    payload_values,
    max_size=5,
)


@st.composite
def leaf(draw: st.DrawFn) -> Condition:
    operator = draw(st.sampled_from(sorted(OPERATOR_VALUES)))
    value = draw(
        st.sampled_from(["web", "vip", "x", 1, 2.5])
        | st.lists(st.sampled_from(["web", "vip", 1, None]), max_size=3)
        if operator in ("equals", "not_equals", "in", "not_in", "contains", "not_contains")
        and draw(st.booleans())
        else OPERATOR_VALUES[operator]
    )
    if operator in ("in", "not_in") and not isinstance(value, list):
        value = [value]
    return Condition(
        field=draw(st.sampled_from(FIELD_NAMES)),
        operator=operator,
        value=value,
        ignore_case=draw(st.booleans()),
    )


condition_trees = st.recursive(
    leaf(),
    lambda children: (
        st.builds(
            ConditionGroup, kind=st.sampled_from(["all", "any"]), conditions=st.lists(children)
        )
        | st.builds(
            ConditionGroup,
            kind=st.just("not"),
            conditions=st.lists(children, min_size=1, max_size=1),
        )
    ),
    max_leaves=6,
)


@settings(max_examples=examples(300), deadline=None)
@given(tree=condition_trees, payloads=st.lists(differential_payloads, min_size=1, max_size=4))
def test_fused_and_general_compilations_agree(tree: Any, payloads: list[Any]):
    registry = OperatorRegistry.default()
    try:
        fast = compile_condition(tree, registry)
    except ValueError:  # a value the operator refuses: both forms refuse it
        with pytest.raises(ValueError):
            compile_condition(tree, registry, fused=False)
        return
    general = compile_condition(tree, registry, fused=False)
    for payload in payloads:
        assert fast(payload, T0) is general(payload, T0), (describe(tree), payload)


# ---------------------------------------------------------------- reading event documents

hostile_scalars = (
    rule_scalars
    | st.floats()
    | st.integers()
    | st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones())
    | st.text(max_size=4)
    | st.binary(max_size=2)
    | st.tuples(st.integers(0, 3))
)
hostile_payloads = st.recursive(
    hostile_scalars,
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(st.text(max_size=3) | st.integers(0, 2) | keys, c, max_size=3)
    ),
    max_leaves=10,
)
times = (
    st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones())
    | st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.datetimes().map(lambda d: d.isoformat(timespec="seconds") + "Z")
    | st.text(max_size=6)
    | st.integers()
)
ids = st.sampled_from(["e-1", " e-2 ", "a/b", "", "x" * 129, "ok@x.y"]) | st.integers() | st.none()
event_documents = st.fixed_dictionaries(
    {},
    optional={
        "id": ids,
        "eventId": ids,
        "eventType": st.sampled_from(["test.event", "quote_sent", " test.event", "Bad Type", 3]),
        "type": st.sampled_from(["test.event", "opportunity_created"]),
        "occurredAt": times,
        "time": times,
        "payload": hostile_payloads | st.dictionaries(keys, hostile_payloads, max_size=4),
        "actor": ids,
        "extra": st.just(1),
    },
)


@settings(max_examples=examples(400), deadline=None)
@given(document=event_documents)
def test_reading_a_document_is_event_model_validate(document: dict[str, Any]):
    for _ in range(2):  # the first read teaches the lean path the event type's spelling
        try:
            expected = Event.model_validate(document)
        except ValidationError:
            with pytest.raises(ValidationError):
                read_event(document)
            return
        fields = read_event(document)
        built = fields.event()
        assert built.model_fields_set == expected.model_fields_set
        if "id" not in expected.model_fields_set:  # both drew a fresh random id
            assert built.id != expected.id
            built = built.model_copy(update={"id": expected.id})
        assert built == expected
        assert (fields.type, fields.time, fields.payload, fields.actor) == (
            expected.type,
            expected.time,
            expected.payload,
            expected.actor,
        )
