"""Hypothesis properties of the operators and the engine."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow import Event, RuleEngine

from .helpers import T0, holds, rule

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
aware = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
anything = json_values | aware | aware.map(lambda d: d.isoformat())
finite_numbers = st.integers(-1000, 1000) | st.floats(-1e6, 1e6, allow_nan=False)
ordering_values = finite_numbers | st.text(max_size=5) | aware
nan_free = st.recursive(
    st.none() | st.booleans() | finite_numbers | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
    max_leaves=8,
)


@settings(max_examples=150)
@given(actual=anything, expected=json_values, missing=st.booleans(), ignore_case=st.booleans())
def test_not_equals_is_the_negation_of_equals(
    actual: Any, expected: Any, missing: bool, ignore_case: bool
):
    eq = holds(actual, "equals", expected, missing=missing, ignore_case=ignore_case)
    ne = holds(actual, "not_equals", expected, missing=missing, ignore_case=ignore_case)
    assert eq is not ne


@settings(max_examples=150)
@given(actual=anything, values=st.lists(json_values, max_size=5), missing=st.booleans())
def test_in_and_not_in_complement_each_other(actual: Any, values: list[Any], missing: bool):
    assert holds(actual, "in", values, missing=missing) is not holds(
        actual, "not_in", values, missing=missing
    )


@settings(max_examples=100)
@given(actual=anything, needle=scalars, missing=st.booleans())
def test_contains_and_not_contains_complement_each_other(actual: Any, needle: Any, missing: bool):
    assert holds(actual, "contains", needle, missing=missing) is not holds(
        actual, "not_contains", needle, missing=missing
    )


@settings(max_examples=100)
@given(actual=anything, missing=st.booleans())
def test_exists_and_not_exists_complement_each_other(actual: Any, missing: bool):
    assert holds(actual, "exists", missing=missing) is not holds(
        actual, "not_exists", missing=missing
    )


@settings(max_examples=150)
@given(value=nan_free)
def test_equals_is_reflexive_on_json_without_nan(value: Any):
    assert holds(value, "equals", value)


@settings(max_examples=150)
@given(a=finite_numbers, e=finite_numbers)
def test_number_ordering_agrees_with_python(a: float, e: float):
    assert holds(a, "greater_than", e) is (a > e)
    assert holds(a, "less_than", e) is (a < e)
    assert holds(a, "greater_or_equal", e) is (a >= e)
    assert holds(a, "less_or_equal", e) is (a <= e)
    assert holds(a, "less_or_equal", e) is not holds(a, "greater_than", e)


@settings(max_examples=100)
@given(a=finite_numbers, low=finite_numbers, high=finite_numbers)
def test_between_is_the_conjunction_of_bounds(a: float, low: float, high: float):
    low, high = min(low, high), max(low, high)
    expected = holds(a, "greater_or_equal", low) and holds(a, "less_or_equal", high)
    assert holds(a, "between", [low, high]) is expected


OPERATOR_VALUES = {
    "equals": json_values,
    "not_equals": json_values,
    "contains": json_values,
    "not_contains": json_values,
    "in": st.lists(json_values, max_size=4),
    "not_in": st.lists(json_values, max_size=4),
    "greater_than": ordering_values,
    "greater_or_equal": ordering_values,
    "less_than": ordering_values,
    "less_or_equal": ordering_values,
    "between": st.tuples(finite_numbers, finite_numbers).map(lambda t: sorted(t)),
    "starts_with": st.text(min_size=1, max_size=4),
    "ends_with": st.text(min_size=1, max_size=4),
    "exists": st.none(),
    "not_exists": st.none(),
    "older_than": st.integers(0, 10_000),
    "newer_than": st.floats(0, 10_000),
}


@settings(max_examples=300)
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
    return RuleEngine(rules[::-1] if reverse else rules)


@settings(max_examples=100)
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


@settings(max_examples=60)
@given(specs=rule_specs, x=st.sampled_from(["a", "b", None]))
def test_explanations_agree_with_matches(specs, x):
    engine = _engine(specs)
    ev = Event(type="test.event", time=T0, payload={"x": x})
    result = engine.evaluate(ev, explain=True)
    assert result.explanations is not None
    explained = [e.rule_id for e in result.explanations if e.matched]
    assert explained == [r.rule_id for r in result.matched_rules]
    assert not math.isnan(len(result.explanations))
