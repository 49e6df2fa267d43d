"""``built_activity`` (what ``create_activity`` builds) is the validating constructor, skipped
only where it would change nothing: on random input, plain and odd (ids with a newline, texts
to strip, NUL, lone surrogates, lengths at and past the limits, datetimes out of range or not in
UTC, a due date before the scheduled one, metadata keys that spell a seed field), it gives the
model the constructor gives, to its fields set and field order, or the constructor's refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow.activity_models import (
    Activity,
    ActivityMetadata,
    ActivityType,
    activity_document,
    built_activity,
    plain_activity,
    plain_rest,
    plain_shared,
)
from leadflow.runtime.handlers import CreateActivityParams

from .suite import examples

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

ODD_IDS: list[object] = ["o1", "a" * 128, "a" * 129, "o1\n", " o1", "o1 ", "$x", "", 7]
ODD_TEXTS: list[object] = [
    " padded",
    "tab\t",
    "\u2003em",
    "",
    "é",
    "nul\x00",
    "lone\ud800",
    "x" * 500,
    "y" * 501,
]
ODD_TIMES: list[object] = [
    T0,
    T0 - timedelta(days=1),
    T0 + timedelta(days=1),
    datetime(3000, 1, 1, tzinfo=UTC),
    datetime(1899, 12, 31, tzinfo=UTC),
    T0.astimezone(timezone(timedelta(hours=2))),
    T0.replace(tzinfo=None),
    "2026-03-02T09:00:00Z",
]
_IDS = st.sampled_from(ODD_IDS)
_TEXTS = st.sampled_from(ODD_TEXTS) | st.text(max_size=8)
_TIMES = st.sampled_from(ODD_TIMES)
_EXTRA = st.none() | _TEXTS | st.just(["a"]) | st.just({"k": 1})


_PLAIN: dict[str, st.SearchStrategy[Any]] = {
    "activity_id": st.sampled_from(["auto-1f2e", "a1"]),
    "opportunity_id": st.sampled_from(["o1", "opp-1", "a" * 128]),
    "customer_id": st.none() | st.just("c1"),
    "activity_type": st.sampled_from(list(ActivityType)),
    "subject": st.sampled_from(["Call", "Call the lead", "é", "x" * 500]),
    "description": st.sampled_from(["", "about it", "d" * 20_000]),
    "scheduled_date": st.none() | st.just(T0),
    "due_date": st.none() | st.sampled_from([T0, T0 + timedelta(hours=1)]),
    "assigned_to": st.none() | st.just("al"),
    "open_key": st.none() | st.just("open/o1/r1"),
    "created_by": st.none() | st.just("leadflow"),
    "updated_by": st.none() | st.just("leadflow"),
    "created_at": st.none() | st.just(T0),
    "updated_at": st.none() | st.just(T0),
}
_ODD: dict[str, st.SearchStrategy[Any]] = {
    "activity_id": st.just("a1\n"),
    "opportunity_id": _IDS,
    "customer_id": _IDS,
    "activity_type": st.just("call"),
    "subject": _TEXTS,
    "description": _TEXTS | st.just("d" * 20_001),
    "scheduled_date": _TIMES,
    "due_date": _TIMES,
    "assigned_to": _IDS,
    "open_key": _TEXTS | st.just("k" * 401),
    "created_by": _IDS,
    "updated_by": _IDS,
    "created_at": _TIMES,
    "updated_at": _TIMES,
}


def _fields(draw: st.DrawFn) -> dict[str, Any]:
    """Plain values, then none, one or a few of them odd (so both paths are taken)."""
    fields = {name: draw(plain) for name, plain in _PLAIN.items()}
    for name in draw(st.lists(st.sampled_from(sorted(_ODD)), max_size=3, unique=True)):
        fields[name] = draw(_ODD[name])
    return fields


@st.composite
def _inputs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    metadata: dict[str, Any] = {"automationRuleId": draw(st.none() | st.just("r1"))}
    if draw(st.booleans()):
        metadata["automationRuleId"] = draw(_IDS)
    keys = ["automationRuleName", "automationExplanation", "eventId", "priority", "x.y", "$k"]
    for key in draw(st.lists(st.sampled_from(keys), unique=True)):
        plain = st.sampled_from(["Call", "why: it matched", "e1"]) | st.none()
        metadata[key] = draw(plain | _EXTRA | st.sampled_from(["high", "urgent"]))
    return _fields(draw), metadata


def _said(error: ValidationError) -> list[tuple[object, ...]]:
    return [(e["type"], e["loc"], e["msg"]) for e in error.errors()]


def _validated(fields: dict[str, Any], metadata: dict[str, Any]) -> Activity:
    return Activity(**fields, metadata=ActivityMetadata.model_validate(metadata))


def _same(fields: dict[str, Any], metadata: dict[str, Any]) -> None:
    """``built_activity`` gives what the constructor gives (to the fields set and the field
    order), or the constructor's refusal."""
    try:
        expected = _validated(fields, metadata)
    except ValidationError as refusal:
        try:
            built_activity(fields, metadata)
        except ValidationError as also:
            assert _said(also) == _said(refusal)
            return
        raise AssertionError(f"built what the constructor refuses: {refusal}") from None
    built = built_activity(fields, metadata)
    for one, other in ((built, expected), (built.metadata, expected.metadata)):
        assert list(one.__dict__.items()) == list(other.__dict__.items())
        assert one.__pydantic_extra__ == other.__pydantic_extra__
        assert one.model_fields_set == other.model_fields_set
    assert repr(built) == repr(expected)
    assert built.model_dump(mode="json", by_alias=True) == expected.model_dump(
        mode="json", by_alias=True
    )
    assert built.model_dump(exclude_unset=True) == expected.model_dump(exclude_unset=True)


@settings(max_examples=examples(400), deadline=None)
@given(_inputs())
def test_built_is_what_the_validating_constructor_builds(
    inputs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _same(*inputs)


def test_the_runtimes_own_activity_skips_validation() -> None:
    """The common case is plain: built without the constructor (else this is no faster)."""
    calls: list[object] = []
    original = Activity.__init__

    def counting(self: Activity, **data: Any) -> None:
        calls.append(data)
        original(self, **data)

    fields = {
        "activity_id": "auto-1f2e",
        "opportunity_id": "o1",
        "customer_id": None,
        "activity_type": ActivityType.CALL,
        "subject": "Call the lead",
        "description": "",
        "scheduled_date": T0,
        "due_date": T0 + timedelta(hours=1),
        "assigned_to": "al",
        "open_key": "open/o1/r1",
        "created_by": "leadflow",
        "updated_by": "leadflow",
        "created_at": T0,
        "updated_at": T0,
    }
    metadata = {"automationRuleId": "r1", "automationRuleName": "Call", "eventId": "e1"}
    Activity.__init__ = counting  # type: ignore[method-assign]
    try:
        built = built_activity(fields, metadata)
    finally:
        Activity.__init__ = original  # type: ignore[method-assign]
    assert calls == []
    assert built == _validated(fields, metadata)


_ODD_FIELDS: dict[str, list[object]] = {
    "activity_id": ["a1\n", " a1", "auto-1f2e"],
    "opportunity_id": ODD_IDS,
    "customer_id": ODD_IDS,
    "activity_type": ["call", "meeting", None],
    "subject": ODD_TEXTS,
    "description": [*ODD_TEXTS, "d" * 20_000, "d" * 20_001],
    "scheduled_date": ODD_TIMES,
    "due_date": ODD_TIMES,
    "assigned_to": ODD_IDS,
    "open_key": [*ODD_TEXTS, "k" * 400, "k" * 401],
    "created_by": ODD_IDS,
    "updated_by": ODD_IDS,
    "created_at": ODD_TIMES,
    "updated_at": ODD_TIMES,
}
_ONE_ODD = [(name, value) for name, values in _ODD_FIELDS.items() for value in values]
_ODD_METADATA: list[tuple[str, object]] = [
    ("automationRuleId", value) for value in [*ODD_IDS, None]
] + [
    (key, value)
    for key in ["automationRuleName", "eventId", "priority", "automation_rule_id", "x.y", "$k", "k"]
    for value in [*ODD_TEXTS, None, "high", ["a"], {"k": 1}]
]


def _plain() -> tuple[dict[str, Any], dict[str, Any]]:
    fields = {
        "activity_id": "auto-1f2e",
        "opportunity_id": "o1",
        "customer_id": "c1",
        "activity_type": ActivityType.CALL,
        "subject": "Call the lead",
        "description": "",
        "scheduled_date": T0,
        "due_date": T0 + timedelta(hours=1),
        "assigned_to": "al",
        "open_key": "open/o1/r1",
        "created_by": "leadflow",
        "updated_by": "leadflow",
        "created_at": T0,
        "updated_at": T0,
    }
    return fields, {"automationRuleId": "r1", "automationRuleName": "Call", "eventId": "e1"}


@pytest.mark.parametrize(("name", "value"), _ONE_ODD)
def test_one_odd_field_is_judged_as_the_constructor_judges_it(name: str, value: object) -> None:
    fields, metadata = _plain()
    _same({**fields, name: value}, metadata)


@pytest.mark.parametrize(("key", "value"), _ODD_METADATA)
def test_one_odd_metadata_key_is_judged_as_the_constructor_judges_it(
    key: str, value: object
) -> None:
    fields, metadata = _plain()
    _same(fields, {**metadata, key: value})


@settings(max_examples=examples(400), deadline=None)
@given(_inputs())
def test_a_plain_activitys_document_is_the_models(
    inputs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """What ``create_activity`` hands a store that takes plain values (and emits as
    ``activity.created``) is what the model it would have built says: ``plain_activity``
    holds exactly where the model is built without validation, and ``activity_document`` is
    that model's ``to_document()``, to the order of its keys."""
    fields, metadata = inputs
    try:
        expected = _validated(fields, metadata)
    except ValidationError:
        assert not plain_activity(fields, metadata)
        return
    if not plain_activity(fields, metadata):
        return  # built through the constructor: the store is given the model
    document = activity_document(fields, metadata)
    wanted = expected.to_document()
    assert document == wanted
    assert list(document) == list(wanted)
    assert list(document["metadata"]) == list(wanted["metadata"])
    assert [type(v) for v in document.values()] == [type(v) for v in wanted.values()]


@settings(max_examples=examples(400), deadline=None)
@given(_inputs())
def test_the_shared_values_checked_once_and_the_rest_per_event_are_plain_activity(
    inputs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """``create_activity`` checks the type, subject and description of a rule action's
    activities once (``plain_shared``, held by its parsed settings) and the rest per event
    (``plain_rest``): together, exactly ``plain_activity``."""
    fields, metadata = inputs
    shared = plain_shared(fields["activity_type"], fields["subject"], fields["description"])
    assert plain_activity(fields, metadata) == (shared and plain_rest(fields, metadata))


@settings(max_examples=examples(200), deadline=None)
@given(
    st.sampled_from(list(ActivityType)) | st.just("call"),
    st.sampled_from(ODD_TEXTS) | st.text(max_size=8),
    st.sampled_from(ODD_TEXTS) | st.just("d" * 20_001),
)
def test_create_activitys_settings_hold_whether_their_shared_values_are_plain(
    activity_type: object, subject: object, description: object
) -> None:
    """The parsed settings of a ``create_activity`` rule action say ``plain`` exactly when
    ``plain_shared`` passes their values; a copy with other values is never taken as plain
    unchecked."""
    try:
        params = CreateActivityParams.model_validate(
            {"subject": subject, "activityType": activity_type, "description": description}
        )
    except ValidationError:
        return
    shared = (params.activity_type, params.subject, params.description)
    assert params.plain == plain_shared(*shared)
    assert params.model_copy(update={"subject": " padded"}).plain is False
    assert params.model_copy(update={"description": "nul\x00"}).plain is False


@pytest.mark.parametrize(
    "metadata",
    [
        {"automationRuleId": "r1", "automationRuleName": None, "automationExplanation": "why"},
        {"automationRuleId": None, "eventId": "e1", "automationRuleName": None, "x": "y"},
        {"automationRuleId": None},
        {"automationRuleId": "r1", "a": None, "b": None, "c": ""},
    ],
)
def test_a_plain_activitys_document_keeps_null_extras_last(metadata: dict[str, Any]) -> None:
    fields = {
        **{name: None for name in _PLAIN},
        "activity_id": "a1",
        "opportunity_id": "o1",
        "activity_type": ActivityType.CALL,
        "subject": "Call",
        "description": "",
        "created_at": T0,
    }
    assert plain_activity(fields, metadata)
    wanted = built_activity(fields, metadata).to_document()
    document = activity_document(fields, metadata)
    assert document == wanted and list(document["metadata"]) == list(wanted["metadata"])
    assert list(document) == list(wanted)
