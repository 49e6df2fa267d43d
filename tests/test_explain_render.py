"""The explanation kept on a created activity, written in one pass
(:meth:`RuleEngine.render_match`, what the planner stores), is the text rendered from the
engine's explanation (``render_rule(explain_match(...))``, and ``render_why`` around it), on
random rules (nested groups, stop-processing, several actions, business delays) and payloads,
including an operator that fails while the conditions are explained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow import Event, FollowUpRule, OperatorRegistry, RuleEngine
from leadflow.rules import render_rule
from leadflow.rules.operators import Operator
from leadflow.runtime.explain import render_why, why

from .suite import examples

T0 = datetime(2026, 3, 6, 21, 30, tzinfo=UTC)  # a Friday evening: business delays skip days
FIELDS = ["a", "b", "tags", "customer.segment", "n"]
values = st.sampled_from(["web", "Web", "x", "", "boom", 0, 1, 2.5, True, None])


def _operators(*, raising: bool = True) -> OperatorRegistry:
    """The default operators and ``fails``, which raises ``ValueError`` for ``"boom"`` (the
    registry's own operators are guarded and never raise; a compiled one may); not
    ``raising``, it is false for it instead. The events are evaluated with the calm one and
    explained with the raising one, the way an explanation can meet a failing operator."""
    registry = OperatorRegistry.default()

    def factory(expected: Any, ignore_case: bool) -> Any:
        def test(actual: Any) -> bool:
            if actual == "boom":
                if raising:
                    raise ValueError("boom")
                return False
            return bool(actual == expected)

        return test

    registry._operators["fails"] = Operator("fails", lambda value: value, factory, None, "")
    return registry


@st.composite
def _condition(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["equals", "equals", "not_equals", "in", "exists", "fails"]))
    condition: dict[str, Any] = {"field": draw(st.sampled_from(FIELDS)), "operator": op}
    if op != "exists":
        condition["value"] = draw(st.lists(values, max_size=3)) if op == "in" else draw(values)
    return condition


_nodes = st.recursive(
    _condition(),
    lambda children: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=6,
)
_actions = st.lists(
    st.fixed_dictionaries(
        {
            "actionType": st.sampled_from(["create_activity", "send_notification"]),
            "delay": st.fixed_dictionaries(
                {
                    "amount": st.sampled_from([0, 1, 3, 48]),
                    "unit": st.sampled_from(["minutes", "hours", "days", "business_days"]),
                }
            ),
        }
    ),
    min_size=1,
    max_size=3,
)


@st.composite
def _rules(draw: st.DrawFn) -> list[FollowUpRule]:
    count = draw(st.integers(1, 4))
    return [
        FollowUpRule.model_validate(
            {
                "ruleId": f"r{i}",
                "name": draw(st.sampled_from(["a rule", "Rule 'quoted' ü", "x" * 200])),
                "trigger": {
                    "eventType": "opportunity.created",
                    "conditions": draw(st.lists(_nodes, max_size=3)),
                },
                "actions": draw(_actions),
                "priority": draw(st.integers(-2, 2)),
                "stopProcessing": draw(st.booleans()),
            }
        )
        for i in range(count)
    ]


payloads = st.dictionaries(
    st.sampled_from(["a", "b", "tags", "n"]),
    values | st.lists(values, max_size=2),
    max_size=4,
).map(lambda d: {**d, "customer": {"segment": d.get("a")}} if "b" in d else d)


@settings(max_examples=examples(300), deadline=None)
@given(rules=_rules(), payload=payloads, minutes=st.integers(0, 60 * 24 * 9))
def test_the_one_pass_text_is_the_rendered_explanation(
    rules: list[FollowUpRule], payload: dict[str, Any], minutes: int
) -> None:
    engine = RuleEngine(rules, operators=_operators())
    event = Event(
        id="e1", type="opportunity.created", time=T0 + timedelta(minutes=minutes), payload=payload
    )
    evaluation = RuleEngine(rules, operators=_operators(raising=False)).evaluate(event)
    at = event.time.isoformat()
    for rule in rules:  # matched or not: the text is the one explain_match renders
        expected = render_rule(engine.explain_match(evaluation, rule))
        assert engine.render_match(evaluation, rule) == expected
        assert engine.render_match(evaluation, rule, start=at) == expected
        assert why(event, engine.render_match(evaluation, rule, start=at), at) == render_why(
            event, engine.explain_match(evaluation, rule)
        )
        assert why(event, expected) == render_why(event, engine.explain_match(evaluation, rule))


def test_a_failing_operator_leaves_the_conditions_out_of_both() -> None:
    rule = FollowUpRule.model_validate(
        {
            "ruleId": "r",
            "name": "r",
            "trigger": {
                "eventType": "opportunity.created",
                "conditions": [
                    {"field": "a", "operator": "equals", "value": "x"},
                    {"any": [{"field": "b", "operator": "fails", "value": 1}]},
                ],
            },
            "actions": [{"actionType": "noop"}],
            "stopProcessing": True,
        }
    )
    engine = RuleEngine([rule], operators=_operators())
    event = Event(id="e1", type="opportunity.created", time=T0, payload={"a": "x", "b": "boom"})
    evaluation = RuleEngine([rule], operators=_operators(raising=False)).evaluate(event)
    text = engine.render_match(evaluation, rule)
    assert text == render_rule(engine.explain_match(evaluation, rule))
    assert "trigger" not in text and text.endswith("lower-priority rules do not apply")
    calm = Event(id="e2", type="opportunity.created", time=T0, payload={"a": "x", "b": 1})
    calm_text = engine.render_match(engine.evaluate(calm), rule)
    assert "  [yes] trigger.conditions[1]: any group" in calm_text
    assert "    [yes] trigger.conditions[1].any[0]: b fails 1 (actual: 1)" in calm_text
