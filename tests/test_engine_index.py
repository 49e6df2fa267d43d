"""The engine's value index is an optimisation only: with it forced on for every event type or
switched off, every event matches the same rules in the same order."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import leadflow.rules.index as index_module
from leadflow import Event, RuleEngine

from .helpers import T0, rule
from .rules_support import engine
from .suite import examples


class Source(StrEnum):
    WEB = "web"


class Tagged(str):
    pass


FIELDS = ["a", "leadSource", "lead_source", "tags", "customer.segment"]
strings = st.sampled_from(["web", "Web", "x", "", "vip"])
scalars = (
    strings
    | st.sampled_from([Source.WEB, Tagged("web"), 0, 1, 2.5, True, None])
    | st.just(T0 - timedelta(hours=5))
)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3), max_leaves=5)


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["equals"] * 6 + ["in"] * 4 + ["not_equals", "contains", "exists"]))
    if op == "in":
        value: Any = draw(st.lists(strings | st.sampled_from([1, None]), max_size=4))
    elif op == "exists":
        value = None
    else:
        value = draw(strings | st.sampled_from([1, 2.5, None]))
    cond = {"field": draw(st.sampled_from(FIELDS)), "operator": op, "value": value}
    if draw(st.booleans()) and op != "exists":
        cond["ignoreCase"] = True
    if draw(st.integers(0, 5)) == 0:
        return {"any": [cond, {"field": "a", "operator": "equals", "value": "x"}]}
    return cond


rule_sets = st.lists(
    st.tuples(st.lists(conditions(), max_size=3), st.integers(-2, 2), st.booleans()),
    min_size=1,
    max_size=12,
)
payloads = st.dictionaries(
    st.sampled_from(["a", "leadSource", "lead_source", "tags", "customer"]),
    values | st.fixed_dictionaries({"segment": values}),
    max_size=4,
)


def _build(specs: list[Any], threshold: int, monkeypatch: pytest.MonkeyPatch) -> RuleEngine:
    monkeypatch.setattr(index_module, "_INDEX_MIN_RULES", threshold)
    return engine(
        [
            rule(f"r{i:02d}", conditions=conds, priority=priority, stop=stop and i % 3 == 0)
            for i, (conds, priority, stop) in enumerate(specs)
        ]
    )


@settings(max_examples=examples(200), deadline=None)
@given(specs=rule_sets, events=st.lists(payloads, min_size=1, max_size=5))
def test_indexed_and_unindexed_engines_agree(specs: list[Any], events: list[Any]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        plain = _build(specs, 10**9, mp)
        indexed = _build(specs, 1, mp)
    for payload in events:
        event = Event(type="test.event", time=T0, payload=payload)
        expected = plain.evaluate(event, explain=True)
        actual = indexed.evaluate(event, explain=True)
        assert [r.rule_id for r in actual.matched_rules] == [
            r.rule_id for r in expected.matched_rules
        ]
        assert actual.planned == expected.planned
        assert actual.explanations == expected.explanations
