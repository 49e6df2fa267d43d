"""Holes found from outside (issue 19), each closed: what an attacker (or an unlucky host)
could pass through the public entry points, and the documented answer it now gets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow import FollowUpRule, InvalidInputError, ManualClock, RuleEngine
from leadflow.fields import ensure_utc
from leadflow.rules import validate_rule

from .access_support import SUPER, build_world, snapshot

# --------------------------------------------------------------------------- dates at the ends


@st.composite
def _ends(draw: st.DrawFn) -> datetime:
    hours = draw(st.integers(1, 23))
    minutes = draw(st.integers(0, hours * 60 - 1))
    if draw(st.booleans()):
        return datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=hours))) + timedelta(
            minutes=minutes
        )
    zone = timezone(-timedelta(hours=hours))
    return datetime(9999, 12, 31, 23, 59, tzinfo=zone) - timedelta(minutes=minutes)


_ENDS = _ends()
"""Aware datetimes within hours of the calendar's ends, in a zone for which no UTC datetime
exists (converting them overflows)."""


def _rule(operator: str, value: Any) -> dict[str, Any]:
    return {
        "ruleId": "edge",
        "name": "edge",
        "trigger": {
            "eventType": "estimate.created",
            "conditions": [{"field": "sentAt", "operator": operator, "value": value}],
        },
        "actions": [{"actionType": "send_notification", "template": "t"}],
    }


_SHARED_WORLD: list[Any] = []


def _world() -> Any:
    if not _SHARED_WORLD:
        _SHARED_WORLD.append(build_world(parked=False))
    return _SHARED_WORLD[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    when=_ENDS,
    operator=st.sampled_from(
        ["greater_than", "greater_or_equal", "less_than", "less_or_equal", "between"]
    ),
)
def test_rule_dates_at_the_calendar_ends_are_refused_not_overflowing(
    when: datetime, operator: str
) -> None:
    text = when.isoformat()
    value: Any = (
        ([text, "2026-01-01T00:00:00+00:00"] if when.year == 1 else ["2026-01-01T00:00:00Z", text])
        if operator == "between"
        else text
    )
    document = _rule(operator, value)
    rule = FollowUpRule.model_validate(document)
    with pytest.raises(InvalidInputError) as caught:
        validate_rule(rule)
    assert caught.value.field is not None and "conditions[0]" in caught.value.field
    with pytest.raises(InvalidInputError):
        RuleEngine([rule])
    world = _world()
    before = snapshot(world.flow)
    with pytest.raises(InvalidInputError):
        world.ops.create_rule(SUPER, document)
    assert snapshot(world.flow) == before


@settings(max_examples=30, deadline=None)
@given(when=_ENDS)
def test_datetimes_without_a_utc_twin_are_invalid_input(when: datetime) -> None:
    with pytest.raises(InvalidInputError):
        ensure_utc(when, "when")
    with pytest.raises(InvalidInputError):
        ManualClock(when)
    with pytest.raises(InvalidInputError):
        _world().flow.storage.activities.pending(when)
