"""Lint's reasoning is sound: whatever it calls contradictory no payload satisfies, and whatever
it calls implied holds for every payload satisfying the premises (checked against the engine's
own compiled predicates on a pool of payload values)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.lint.logic import contradiction, implies
from leadflow.models import Condition
from leadflow.rules import OperatorRegistry
from leadflow.rules.compiler import compile_condition

from .suite import examples

OPS = OperatorRegistry.default()
NOW = datetime(2026, 1, 5, tzinfo=UTC)
VALUES: list[Any] = [None, True, 0, 1, 5, 5.5, 10, -3, "a", "b", "A", "", ["a"], ["a", "b"], []]
POOL: list[Any] = [*VALUES, "2026-01-01T00:00:00+00:00", "c", 7, 11]

SCALAR = st.sampled_from([0, 1, 5, 10, "a", "b", "A", None, True])
LEAF = st.one_of(
    st.builds(
        lambda op, v, ic: Condition(field="f", operator=op, value=v, ignore_case=ic),
        st.sampled_from(["equals", "not_equals", "contains", "not_contains"]),
        SCALAR,
        st.booleans(),
    ),
    st.builds(
        lambda op, v: Condition(field="f", operator=op, value=v),
        st.sampled_from(["in", "not_in"]),
        st.lists(st.sampled_from(["a", "b", "c", 1, 5]), max_size=3),
    ),
    st.builds(
        lambda op, v: Condition(field="f", operator=op, value=v),
        st.sampled_from(["greater_than", "greater_or_equal", "less_than", "less_or_equal"]),
        st.sampled_from([0, 1, 5, 10, "a", "b"]),
    ),
    st.builds(
        lambda lo, hi: Condition(field="f", operator="between", value=[min(lo, hi), max(lo, hi)]),
        st.sampled_from([0, 1, 5, 10]),
        st.sampled_from([0, 1, 5, 10]),
    ),
    st.builds(
        lambda op: Condition(field="f", operator=op),
        st.sampled_from(["exists", "not_exists"]),
    ),
)


def _holds(leaf: Condition, payload: dict[str, Any]) -> bool:
    return compile_condition(leaf, OPS)(payload, NOW)


def _payloads() -> list[dict[str, Any]]:
    return [{}, *({"f": v} for v in POOL)]


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(LEAF, min_size=1, max_size=3))
def test_contradictions_are_never_satisfiable(leaves: list[Condition]) -> None:
    if contradiction(leaves, OPS) is None:
        return
    for payload in _payloads():
        assert not all(_holds(leaf, payload) for leaf in leaves), (leaves, payload)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(LEAF, min_size=1, max_size=2), LEAF)
def test_implications_hold(premises: list[Condition], conclusion: Condition) -> None:
    if not implies(premises, conclusion, OPS):
        return
    for payload in _payloads():
        if all(_holds(p, payload) for p in premises):
            assert _holds(conclusion, payload), (premises, conclusion, payload)


def test_the_checks_find_something() -> None:
    """The properties above are not vacuous: both functions do answer."""
    a = Condition(field="f", operator="equals", value="a")
    b = Condition(field="f", operator="equals", value="b")
    assert contradiction([a, b], OPS) is not None
    assert implies([a], Condition(field="f", operator="in", value=["a", "c"]), OPS)
