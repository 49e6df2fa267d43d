from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from leadflow import OperatorRegistry, RuleValidationError

from .helpers import T0, rule
from .rules_support import engine as make_engine
from .rules_support import holds

# ---------------------------------------------------------------- equality


@pytest.mark.parametrize(
    "actual, expected, result",
    [
        ("website", "website", True),
        ("Website", "website", False),
        (1, 1, True),
        (1, 1.0, True),
        ("1", 1, False),
        (1, "1", False),
        (True, 1, False),
        (1, True, False),
        (True, True, True),
        (None, None, True),
        ([1, 2], [1, 2], True),
        ([1, 2], [2, 1], False),
        ({"a": 1}, {"a": 1}, True),
        ({"a": True}, {"a": 1}, False),
        ([True], [1], False),
    ],
)
def test_equals_is_strict_about_types(actual, expected, result):
    assert holds(actual, "equals", expected) is result
    assert holds(actual, "not_equals", expected) is (not result)


def test_equals_ignore_case():
    assert holds("WebSite", "equals", "website", ignore_case=True)
    assert holds(["A", "b"], "equals", ["a", "B"], ignore_case=True)
    assert not holds("websites", "equals", "website", ignore_case=True)


def test_missing_field_only_satisfies_negations():
    for op, value in [("equals", None), ("contains", "a"), ("in", [None]), ("exists", None)]:
        assert not holds(None, op, value, missing=True), op
    for op, value in [("not_equals", None), ("not_contains", "a"), ("not_in", [None])]:
        assert holds(None, op, value, missing=True), op
    assert holds(None, "not_exists", missing=True)
    for op, value in [("greater_than", 1), ("less_than", 1), ("between", [0, 1])]:
        assert not holds(None, op, value, missing=True), op
    assert not holds(None, "older_than", 1, missing=True)
    assert not holds(None, "newer_than", 1, missing=True)


def test_exists_treats_null_as_absent():
    assert holds(0, "exists")
    assert holds("", "exists")
    assert holds(False, "exists")
    assert not holds(None, "exists")
    assert holds(None, "not_exists")


# ---------------------------------------------------------------- membership


def test_in_and_not_in():
    assert holds("b", "in", ["a", "b"])
    assert not holds("c", "in", ["a", "b"])
    assert holds("c", "not_in", ["a", "b"])
    assert holds(2, "in", [1, 2.0])
    assert not holds("2", "in", [1, 2])
    assert not holds(True, "in", [1])
    assert holds(None, "in", [None])
    assert holds(["x", "b"], "in", ["a", "b"]), "a list matches when any element is in"
    assert not holds(["x", "y"], "in", ["a", "b"])
    assert holds("B", "in", ["a", "b"], ignore_case=True)
    assert not holds("B", "in", ["a", "b"])
    assert not holds({"a": 1}, "in", ["a"])


def test_contains():
    assert holds("new website lead", "contains", "website")
    assert not holds("new Website lead", "contains", "website")
    assert holds("new Website lead", "contains", "website", ignore_case=True)
    assert holds(["vip", "b2b"], "contains", "vip")
    assert holds([1, 2], "contains", 2)
    assert not holds([1, 2], "contains", "2")
    assert holds(["VIP"], "contains", "vip", ignore_case=True)
    assert not holds(12345, "contains", "23")
    assert not holds("abc", "contains", 1)
    assert holds(12345, "not_contains", "23")


def test_starts_and_ends_with():
    assert holds("web-form", "starts_with", "web")
    assert not holds("Web-form", "starts_with", "web")
    assert holds("Web-form", "starts_with", "web", ignore_case=True)
    assert holds("lead@acme.com", "ends_with", "@acme.com")
    assert not holds(123, "ends_with", "3")


# ---------------------------------------------------------------- ordering


@pytest.mark.parametrize(
    "op, actual, expected, result",
    [
        ("greater_than", 5, 3, True),
        ("greater_than", 3, 3, False),
        ("greater_or_equal", 3, 3, True),
        ("less_than", 2.5, 3, True),
        ("less_or_equal", 3, 3.0, True),
        ("greater_than", "5", 3, False),
        ("greater_than", True, 0, False),
        ("greater_than", None, 0, False),
        ("greater_than", [5], 3, False),
        ("greater_than", float("nan"), 3, False),
        ("less_than", float("nan"), 3, False),
        ("greater_than", "b", "a", True),
        ("greater_than", 5, "a", False),
        ("less_than", "2026-01-01", "2026-02-01", True),
    ],
)
def test_ordering(op, actual, expected, result):
    assert holds(actual, op, expected) is result


def test_ordering_understands_datetimes_and_iso_strings():
    rule_value = "2026-01-05T12:00:00+00:00"
    assert holds(datetime(2026, 1, 5, 13, tzinfo=UTC), "greater_than", rule_value)
    assert holds("2026-01-05T13:00:00Z", "greater_than", rule_value)
    plus2 = timezone(timedelta(hours=2))
    assert not holds(datetime(2026, 1, 5, 13, tzinfo=plus2), "greater_than", rule_value)
    assert not holds("2026-01-05T13:00:00", "greater_than", rule_value), "naive: no match"
    assert not holds(datetime(2026, 1, 5, 13), "greater_than", rule_value), "naive: no match"
    assert not holds(5, "greater_than", rule_value)


def test_between_is_inclusive():
    assert holds(1000, "between", [1000, 5000])
    assert holds(5000, "between", [1000, 5000])
    assert not holds(5000.01, "between", [1000, 5000])
    assert not holds("3000", "between", [1000, 5000])
    assert holds("m", "between", ["a", "z"])


# ---------------------------------------------------------------- dates relative to the event


def test_older_and_newer_than_use_the_event_time():
    created = T0 - timedelta(hours=30)
    assert holds(created, "older_than", 24)
    assert not holds(created, "older_than", 30)
    assert holds(created, "newer_than", 30)
    assert not holds(created, "newer_than", 29.9)
    assert holds(created.isoformat(), "older_than", 24)
    assert holds(T0 + timedelta(hours=5), "newer_than", 1), "future times count as newer"
    assert not holds("yesterday", "older_than", 1)
    assert not holds(datetime(2020, 1, 1), "older_than", 1), "naive datetimes never match"
    later = T0 + timedelta(days=30)
    assert holds(T0 - timedelta(hours=1), "older_than", 24, now=later)


# ---------------------------------------------------------------- nested paths


def test_dotted_paths_and_both_spellings():
    engine = make_engine(
        [
            rule(
                "a",
                conditions=[{"field": "customer.region", "operator": "equals", "value": "west"}],
            ),
            rule(
                "b",
                conditions=[
                    {"field": "metadata.quoteValue", "operator": "greater_than", "value": 10}
                ],
            ),
            rule("c", conditions=[{"field": "lead_source", "operator": "equals", "value": "web"}]),
            rule("d", conditions=[{"field": "items.1.sku", "operator": "equals", "value": "B"}]),
        ]
    )
    from .helpers import event

    ids = lambda p: [r.rule_id for r in engine.match(event(p))]  # noqa: E731
    assert ids({"customer": {"region": "west"}}) == ["a"]
    assert ids({"metadata": {"quote_value": 11}}) == ["b"]
    assert ids({"metadata": {"quoteValue": 11}}) == ["b"]
    assert ids({"leadSource": "web"}) == ["c"]
    assert ids({"items": [{"sku": "A"}, {"sku": "B"}]}) == ["d"]
    assert ids({"items": [{"sku": "A"}]}) == []
    assert ids({"customer": "west"}) == []
    assert ids({"customer": None}) == []


# ---------------------------------------------------------------- loading errors


@pytest.mark.parametrize(
    "condition, problem",
    [
        ({"field": "a", "operator": "resembles", "value": 1}, "unknown operator 'resembles'"),
        ({"field": "a", "operator": "in", "value": "abc"}, "must be a list"),
        ({"field": "a", "operator": "not_in", "value": 5}, "must be a list"),
        ({"field": "a", "operator": "between", "value": [5, 1]}, "greater than high"),
        ({"field": "a", "operator": "between", "value": [1, "z"]}, "one kind"),
        ({"field": "a", "operator": "between", "value": 3}, "[low, high]"),
        ({"field": "a", "operator": "greater_than", "value": [1]}, "number, a string"),
        ({"field": "a", "operator": "starts_with", "value": 3}, "non-empty string"),
        ({"field": "a", "operator": "exists", "value": "yes"}, "takes no value"),
        ({"field": "a", "operator": "older_than", "value": -1}, "non-negative"),
        ({"field": "a", "operator": "older_than", "value": "1h"}, "non-negative"),
    ],
)
def test_bad_conditions_are_rejected_at_load_naming_rule_and_condition(condition, problem):
    bad = rule("bad-rule", conditions=[{"field": "ok", "operator": "exists"}, {"any": [condition]}])
    with pytest.raises(RuleValidationError) as info:
        make_engine([bad])
    message = str(info.value)
    assert "bad-rule" in message
    assert "trigger.conditions[1].any[0]" in message
    assert problem in message
    assert info.value.rule_id == "bad-rule"


def test_non_finite_values_are_refused_when_the_rule_is_built():
    with pytest.raises(ValidationError, match="finite"):
        rule("r", conditions=[{"field": "a", "operator": "greater_than", "value": float("inf")}])


# ---------------------------------------------------------------- pluggable operators


def test_registered_operator_is_usable_and_private_to_its_registry():
    registry = OperatorRegistry.default()
    registry.register(
        "divisible_by",
        lambda actual, n: isinstance(actual, int) and actual % n == 0,
        prepare=lambda v: (
            v
            if isinstance(v, int) and v > 0
            else (_ for _ in ()).throw(ValueError("value must be a positive integer"))
        ),
    )
    assert holds(10, "divisible_by", 5, operators=registry)
    assert not holds(11, "divisible_by", 5, operators=registry)
    with pytest.raises(RuleValidationError, match="positive integer"):
        holds(10, "divisible_by", 0, operators=registry)
    with pytest.raises(RuleValidationError, match="unknown operator 'divisible_by'"):
        holds(10, "divisible_by", 5)  # the default registry never saw it


def test_a_raising_custom_operator_counts_as_false():
    registry = OperatorRegistry.default()
    registry.register("explodes", lambda a, e: 1 / 0 > 0)
    assert not holds(1, "explodes", operators=registry)


def test_registering_twice_needs_replace():
    registry = OperatorRegistry.default()
    with pytest.raises(ValueError, match="already registered"):
        registry.register("equals", lambda a, e: True)
    registry.register("equals", lambda a, e: True, replace=True)
    assert holds(1, "equals", 2, operators=registry)
    with pytest.raises(Exception, match="operator"):
        registry.register("Bad Name", lambda a, e: True)


# ---------------------------------------------------------------- datetimes in rule values


@pytest.mark.parametrize("op", ["greater_than", "greater_or_equal", "less_than", "less_or_equal"])
def test_naive_datetime_rule_values_are_refused_at_load(op):
    naive = rule(
        "naive", conditions=[{"field": "at", "operator": op, "value": "2026-01-05T09:00:00"}]
    )
    with pytest.raises(RuleValidationError) as info:
        make_engine([naive])
    assert "without a UTC offset" in str(info.value)
    assert "'2026-01-05T09:00:00+00:00'" in str(info.value)
    aware = rule(
        "ok", conditions=[{"field": "at", "operator": op, "value": "2026-01-05T09:00:00Z"}]
    )
    assert make_engine([aware]).rules


def test_naive_datetime_bounds_of_between_are_refused():
    naive = rule(
        "b",
        conditions=[
            {
                "field": "at",
                "operator": "between",
                "value": ["2026-01-05T09:00", "2026-01-06T09:00"],
            }
        ],
    )
    with pytest.raises(RuleValidationError, match="low bound '2026-01-05T09:00' is a datetime"):
        make_engine([naive])
    assert holds("2026-01-05T12:00:00+00:00", "between", ["2026-01-05T09:00Z", "2026-01-06T09:00Z"])
    assert holds("2026-01-03", "between", ["2026-01-01", "2026-01-31"]), "dates compare as text"
