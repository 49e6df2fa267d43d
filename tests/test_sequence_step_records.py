"""Step records the runtime builds without validating them again
(``runtime/sequence_parts.step_record``): for any fields, the same record as ``StepRecord(...)``
(values, datetimes' zones, fields set), or the same refusal; the runtime's own records taken as
they are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow.runtime.sequence_parts import step_record
from leadflow.sequences import StepRecord

START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)

_words = st.text(st.sampled_from("ab-_ 1é\x00\n"), max_size=8)
_long = st.integers(0, 2100).map(lambda n: "w" * n)
_whens = st.one_of(
    st.integers(-(10**6), 10**6).map(lambda s: START + timedelta(seconds=s)),
    st.just(START.astimezone(timezone(timedelta(hours=2)))),
    st.just(datetime(2026, 3, 29)),  # naive
    st.just(datetime(1899, 12, 31, 23, tzinfo=UTC)),  # before the earliest
    st.just(datetime(2999, 12, 31, 12, tzinfo=UTC)),
)


def _same(fields: dict[str, Any]) -> StepRecord | None:
    try:
        expected = StepRecord(**fields)
    except ValidationError as refused:
        with pytest.raises(ValidationError) as again:
            step_record(**fields)
        assert again.value.errors(include_context=False) == refused.errors(include_context=False)
        return None
    found = step_record(**fields)
    assert type(found) is StepRecord
    assert found == expected
    assert repr(found.__dict__) == repr(expected.__dict__)
    assert list(found.__dict__) == list(expected.__dict__)
    assert found.model_fields_set == expected.model_fields_set
    return found


@settings(max_examples=400, deadline=None)
@given(
    visit=st.integers(-2, 5) | st.booleans(),
    step_id=_words | _long.map(lambda w: w[:70]),
    kind=_words | _long.map(lambda w: w[:40]),
    at=_whens,
    outcome=_words | _long.map(lambda w: w[:70]),
    why=_words | _long,
    version=st.integers(-1, 3),
)
def test_a_record_is_the_validated_one(**fields: Any) -> None:
    _same(fields)


def test_the_runtimes_own_records_are_taken_as_they_are() -> None:
    fields = {"visit": 2, "step_id": "send", "kind": "action", "at": START,
              "outcome": "scheduled", "why": "after done: due at once", "version": 3}  # fmt: skip
    found = _same(fields)
    assert found is not None and found.at is START and found.why is fields["why"]


_OWN: dict[str, Any] = {"visit": 2, "step_id": "send", "kind": "action", "at": START,
                        "outcome": "scheduled", "why": "after done: due at once",
                        "version": 3}  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"why": " after done"}, {"why": "after done\n"}, {"why": "a\x00b"}, {"why": "café"},
        {"why": "w" * 2001}, {"why": "a\ud800"}, {"step_id": " send"}, {"step_id": "s" * 65},
        {"kind": "k" * 33},
        {"kind": "action "}, {"outcome": "o" * 65}, {"outcome": "\tdone"}, {"visit": True},
        {"version": True}, {"visit": "2"}, {"at": START.astimezone(timezone(timedelta(hours=2)))},
        {"at": datetime(2026, 3, 29)}, {"at": datetime(1899, 12, 31, 23, tzinfo=UTC)},
        {"at": datetime(3000, 1, 1, tzinfo=UTC).replace(year=2999, month=12, day=31, hour=1)},
    ],
)  # fmt: skip
def test_one_field_not_the_runtimes_own_is_validated(change: dict[str, Any]) -> None:
    _same({**_OWN, **change})
