"""The stale job's event built without validation (``runtime.jobs.stale_event``) is the event
the validating constructor builds from the same values, or the constructor's own refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow import Event
from leadflow.runtime.jobs import stale_event, stale_event_id

from .suite import examples

_IDS = st.sampled_from(["opp-1", "o", "a" * 128, "a" * 129, "", " opp", "opp/1", "opp\x00"])
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])
_TIMES = st.tuples(
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30))
    | st.datetimes(datetime(2998, 11, 1), datetime(2999, 12, 31)),  # the limit within reach
    _ZONES,
).map(lambda pair: pair[0].replace(tzinfo=pair[1]))


def _validated(fields: dict[str, Any]) -> Event | type[Exception]:
    try:
        return Event(**fields)
    except (ValidationError, OverflowError, TypeError) as error:
        return type(error)


@settings(max_examples=examples(300), deadline=None)
@given(
    opportunity=_IDS,
    last=_TIMES,
    ahead=st.timedeltas(timedelta(0), timedelta(days=400)),
    stale_after=st.timedeltas(timedelta(0), timedelta(days=30)),
    actor=st.none() | _IDS,
)
@example("opp-1", datetime(2999, 12, 1, tzinfo=UTC), timedelta(days=60), timedelta(0), None)
@example("opp-1", datetime(2999, 12, 30, tzinfo=UTC), timedelta(0), timedelta(days=7), None)
def test_the_stale_event_is_the_validated_event(
    opportunity: str,
    last: datetime,
    ahead: timedelta,
    stale_after: timedelta,
    actor: str | None,
) -> None:
    try:
        now = last + ahead
        expected: Event | type[Exception] = _validated(
            {
                "id": stale_event_id(opportunity, last),
                "type": "opportunity.stale_detected",
                "time": now,
                "payload": {
                    "opportunityId": opportunity,
                    "lastActivityAt": last,
                    "staleSince": last + stale_after,
                    "daysSinceLastActivity": (now - last) // timedelta(days=1),
                },
                "actor": actor,
            }
        )
    except (OverflowError, TypeError, ValueError) as error:
        expected = type(error)
    try:
        got: Event | type[Exception] = stale_event(
            opportunity, last, now, stale_after=stale_after, actor=actor
        )
    except (ValidationError, OverflowError, TypeError, ValueError) as error:
        got = type(error)
    if isinstance(expected, type) or isinstance(got, type):
        assert got == expected
        return
    assert got == expected
    assert got.model_fields_set == expected.model_fields_set
    assert list(got.__dict__) == list(expected.__dict__)
    assert repr(got.model_dump()) == repr(expected.model_dump())  # the same zones too
    assert got.to_document() == expected.to_document()


def test_a_plain_stale_event_is_made_without_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common case (ids from the stores, UTC times) does not run pydantic's validator."""
    calls: list[object] = []
    original = Event.__pydantic_validator__

    class Spy:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(original, name)

    monkeypatch.setattr(Event, "__pydantic_validator__", Spy())
    last = datetime(2026, 1, 5, 9, tzinfo=UTC)
    event = stale_event(
        "opp-1", last, last + timedelta(days=8), stale_after=timedelta(days=7), actor="leadflow"
    )
    assert calls == []
    assert event.payload["daysSinceLastActivity"] == 8
    assert event.opportunity_id == "opp-1"
    odd = stale_event("opp/1", last, last, stale_after=timedelta(days=7), actor=None)
    assert calls  # an odd value goes through the validating constructor
    assert odd.opportunity_id == "opp/1"  # a payload is free-form: kept as given
    with pytest.raises(ValidationError):
        stale_event("opp-1", last, last, stale_after=timedelta(days=7), actor="a b")
