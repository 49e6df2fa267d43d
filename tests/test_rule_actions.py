"""The planner's per-event form of a rule action (``runtime.planning.rule_actions``) is
:func:`~leadflow.runtime.planning.rule_action`: the same model (values, fields set, field
order) or the same refusal, on random events, rules, times and settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow import Action, Event, FollowUpRule
from leadflow.records import ScheduledAction
from leadflow.rules.evaluation import PlannedAction
from leadflow.runtime.planning import rule_action, rule_actions

from .helpers import rule
from .suite import examples

_IDS = st.sampled_from(["opp-1", "o", "a" * 128, "a" * 129, "", " opp", "opp/1", "é"])
_ODD_TIMES = st.tuples(
    st.datetimes(datetime(1899, 12, 1), datetime(1900, 2, 1))
    | st.datetimes(datetime(2999, 12, 1), datetime(9999, 12, 30))
    | st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1)),
    st.sampled_from([UTC, timezone(timedelta(hours=2))]),
).map(lambda pair: pair[0].replace(tzinfo=pair[1]))
# Mostly times the fast form takes; now and then one at or beyond a limit, or not in UTC.
_TIMES = st.one_of(
    st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)),
    st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(
        [
            datetime(1900, 1, 1, tzinfo=UTC),
            datetime(2999, 12, 31, tzinfo=UTC),
            datetime(2999, 12, 31, 0, 0, 1, tzinfo=UTC),
        ]
    ),
    _ODD_TIMES,
)
_T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def _outcome(make: Any) -> tuple[str, Any]:
    try:
        action: ScheduledAction = make()
    except ValidationError as error:
        return "refused", [(e["loc"], e["type"]) for e in error.errors()]
    except (OverflowError, TypeError) as error:
        return "raised", type(error)
    # repr: a datetime in another zone equal to the same instant in UTC is not the same value
    return "built", (repr(action.__dict__), sorted(action.model_fields_set))


@st.composite
def _planned(draw: st.DrawFn) -> PlannedAction:
    base = rule(draw(st.sampled_from(["r", "rule-2", "b" * 120])))
    name = draw(st.sampled_from(["rule r", "n" * 200, "n" * 201, None]))
    duplicates = draw(st.booleans())
    version = draw(st.sampled_from([1, 7]))
    # A rule as the rule book holds it, with values its model would refuse too (the stored
    # form's checks are what is held here, not the rule's).
    odd = FollowUpRule.model_construct(
        **{**base.__dict__, "name": name, "allow_duplicates": duplicates, "version": version}
    )
    action = draw(st.sampled_from([Action(action_type="noop"), Action(action_type="x_y")]))
    return PlannedAction(
        odd,
        draw(st.integers(0, 3)),
        action,
        draw(_TIMES),
        draw(st.sampled_from(["e1", "e" * 128, "e" * 396, "e" * 397])),
        draw(st.booleans()),
    )


@settings(max_examples=examples(400), deadline=None)
@given(
    planned=st.lists(_planned(), min_size=1, max_size=3),
    opportunity=st.none() | _IDS | st.integers(0, 3),
    now=_TIMES,
    lease=st.sampled_from([timedelta(minutes=5), timedelta(days=400_000)]),
    depth=st.sampled_from([0, 3, 100, 0, 3, 100, 101, -1, True]),
    attempts=st.sampled_from([1, 5, 100, 1, 5, 100, 0, 101, True]),
    partitions=st.sampled_from([1, 4, 64]),
    explanation=st.none() | st.sampled_from(["why", "w" * 20_000, "w" * 20_001]),
    run_now=st.lists(st.booleans(), min_size=3, max_size=3),
)
@example(
    planned=[
        PlannedAction(rule("r"), 0, Action(action_type="noop"), _T0, "e1", False),
    ],
    opportunity="opp-1",
    now=_T0,
    lease=timedelta(minutes=5),
    depth=0,
    attempts=5,
    partitions=4,
    explanation="why",
    run_now=[True, False, True],
)
def test_the_per_event_form_is_rule_action(
    planned: list[PlannedAction],
    opportunity: object,
    now: datetime,
    lease: timedelta,
    depth: int,
    attempts: int,
    partitions: int,
    explanation: str | None,
    run_now: list[bool],
) -> None:
    payload = {} if opportunity is None else {"opportunityId": opportunity}
    event = Event.model_construct(id="e1", type="test.event", time=_T0, payload=payload)
    args: dict[str, Any] = dict(
        depth=depth, now=now, worker="w1", lease=lease, max_attempts=attempts,
        partitions=partitions,
    )  # fmt: skip
    try:
        form = rule_actions(event, **args)
    except Exception as error:  # compared with what rule_action raises
        made: tuple[str, Any] | None = ("raised", type(error))
    else:
        made = None
    for action, now_ in zip(planned, run_now, strict=False):
        expected = _outcome(
            partial(rule_action, action, event, explanation=explanation, run_now=now_, **args)
        )
        got = made or _outcome(partial(form, action, explanation=explanation, run_now=now_))
        assert got == expected


_BASE: dict[str, Any] = dict(
    opportunity="opp-1", now=_T0, lease=timedelta(minutes=5), depth=0, attempts=5,
    partitions=4, explanation="why", event_id="e1", name="rule r", due=_T0,
)  # fmt: skip
_LATEST = datetime(2999, 12, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    "change",
    [
        {},
        *({"attempts": n} for n in (0, 1, 100, 101, True)),
        *({"depth": n} for n in (-1, 100, 101, True)),
        *({"event_id": "e" * n} for n in (396, 397)),  # keys of 400 and 401 characters
        *({"name": "n" * n} for n in (200, 201)),
        *({"explanation": "w" * n} for n in (20_000, 20_001)),
        *({"opportunity": o} for o in (None, 7, "a" * 128, "a" * 129, "opp/1", "")),
        {"now": _LATEST},
        {"now": _LATEST, "lease": timedelta(0)},
        {"now": datetime(1900, 1, 1, tzinfo=UTC)},
        {"now": datetime(1899, 12, 31, 23, tzinfo=UTC)},
        {"now": datetime(2026, 1, 5, 11, tzinfo=timezone(timedelta(hours=2)))},
        {"lease": timedelta(days=400_000)},
        {"lease": timedelta(days=3_000_000)},  # beyond datetime's range
        {"due": _LATEST},
        {"due": datetime(2999, 12, 31, 0, 0, 1, tzinfo=UTC)},
        {"due": datetime(2026, 1, 5, 11, tzinfo=timezone(timedelta(hours=2)))},
        {"partitions": 1},
    ],
)
@pytest.mark.parametrize("run_now", [True, False])
def test_the_per_event_form_at_each_limit(change: dict[str, Any], run_now: bool) -> None:
    given = {**_BASE, **change}
    odd = FollowUpRule.model_construct(**{**rule("r").__dict__, "name": given["name"]})
    planned = PlannedAction(
        odd, 0, Action(action_type="noop"), given["due"], given["event_id"], False
    )
    payload = {"opportunityId": given["opportunity"]}
    event = Event.model_construct(id="e1", type="test.event", time=_T0, payload=payload)
    args: dict[str, Any] = dict(
        depth=given["depth"], now=given["now"], worker="w1", lease=given["lease"],
        max_attempts=given["attempts"], partitions=given["partitions"],
    )  # fmt: skip
    explanation = given["explanation"]
    expected = _outcome(
        lambda: rule_action(planned, event, explanation=explanation, run_now=run_now, **args)
    )
    got = _outcome(
        lambda: rule_actions(event, **args)(planned, explanation=explanation, run_now=run_now)
    )
    assert got == expected
