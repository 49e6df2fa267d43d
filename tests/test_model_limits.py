"""Every bad input to the models is a ValidationError (or InvalidInputError) naming the field;
everything accepted round-trips and is storable as is by every backend (BSON, JSON).

Hypothesis feeds arbitrary JSON-like documents (deep nesting, huge integers, odd keys, extreme
datetimes as ISO text and as objects) to each model; targeted tests pin every limit at and just
beyond its bound (leadflow.limits.DEFAULT_LIMITS).
"""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import bson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from leadflow.documents import check_document, json_size
from leadflow.errors import InvalidInputError
from leadflow.limits import DEFAULT_LIMITS
from leadflow.models import (
    Action,
    Activity,
    ActivityMetadata,
    Condition,
    ConditionGroup,
    Delay,
    Event,
    FollowUpRule,
    Trigger,
)
from leadflow.queries import ActivityFilter, ActivitySort, decode_cursor, encode_cursor

from .suite import examples

LIMITS = DEFAULT_LIMITS
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
FUZZ = settings(
    max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# --------------------------------------------------------------------------- strategies

odd_keys = st.sampled_from(
    ["$where", "$", "a.b", ".", "", "nul\x00", "\ud800", "eventType", "type", "_id", "kind"]
)
keys = st.one_of(st.text(string.ascii_letters + "_-$. 0", min_size=0, max_size=6), odd_keys)
huge_ints = st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30, -(10**400), 2**64])
extreme_datetimes = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))]),
)
iso_texts = st.one_of(
    extreme_datetimes.map(datetime.isoformat),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-14:00",
            "1900-01-01T00:00:00Z",
            "1899-12-31T23:59:59Z",
            "2999-12-31T00:00:00Z",
            "2999-12-31T00:00:01Z",
            "2026-01-05T09:00:00",  # naive
            "2026-13-45T99:00:00Z",
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    huge_ints,
    st.floats(),
    st.text(max_size=8),
    st.text(alphabet=st.characters(codec="utf-16"), max_size=3),  # lone surrogates
    iso_texts,
    extreme_datetimes,
    st.datetimes(),  # naive
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=16,
)


@st.composite
def deeply_nested(draw: st.DrawFn) -> Any:
    """A value nested up to several hundred levels of lists or dicts."""
    depth = draw(st.integers(min_value=0, max_value=400))
    value: Any = draw(scalars)
    as_list = draw(st.booleans())
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


anything = st.one_of(json_values, deeply_nested(), st.sampled_from([[], "x", 0, [{}], "rule"]))


def mapping_with(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Documents made of some of ``fields`` (mostly plausible values, sometimes anything),
    sometimes an unknown key, sometimes not a mapping at all."""
    plausible_or_not = {name: st.one_of(value, anything) for name, value in fields.items()}
    docs = st.fixed_dictionaries({}, optional=plausible_or_not)
    with_extra = st.tuples(docs, st.dictionaries(keys, json_values, max_size=1)).map(
        lambda pair: {**pair[0], **pair[1]}
    )
    return st.one_of(docs, with_extra, anything)


leaves = st.fixed_dictionaries(
    {
        "field": st.sampled_from(["leadSource", "customer.region", "items.0", "a..b", "$x"]),
        "operator": st.sampled_from(["equals", "in", "between", "Equals"]),
    },
    optional={"value": st.one_of(json_values, deeply_nested()), "ignoreCase": st.booleans()},
)


@st.composite
def deep_groups(draw: st.DrawFn) -> Any:
    depth = draw(st.integers(min_value=0, max_value=320))
    start = draw(st.integers(min_value=0, max_value=2))
    node: Any = draw(leaves)
    for level in range(depth):
        kind = ("all", "any", "not")[(start + level) % 3]
        node = {kind: node if kind == "not" else [node]}
    return node


condition_nodes = st.one_of(
    st.recursive(
        leaves,
        lambda children: st.one_of(
            st.fixed_dictionaries({"all": st.lists(children, max_size=3)}),
            st.fixed_dictionaries({"any": st.lists(children, max_size=3)}),
            st.fixed_dictionaries({"not": children}),
            st.fixed_dictionaries({"kind": st.just("all"), "conditions": st.lists(children)}),
        ),
        max_leaves=8,
    ),
    deep_groups(),
)
event_types = st.sampled_from(["opportunity_created", "quote_sent", "x.y", "Bad Type", ""])
actions = mapping_with(
    {
        "actionType": st.sampled_from(["create_activity", "send_email", "post_to_slack"]),
        "delay": st.one_of(st.integers(-1, 10**6), st.floats(), json_values),
        "subject": st.text(max_size=5),
        "activityType": st.sampled_from(["call", "email", "telegram"]),
        "params": st.dictionaries(keys, json_values, max_size=3),
    }
)
rules = st.one_of(
    st.fixed_dictionaries(
        {
            "name": st.text(min_size=1, max_size=5),
            "trigger": st.fixed_dictionaries(
                {"eventType": event_types, "conditions": st.lists(condition_nodes, max_size=3)}
            ),
            "actions": st.lists(actions, min_size=1, max_size=2),
        },
        optional={
            "ruleId": st.sampled_from(["r1", "$bad", ""]),
            "priority": st.one_of(st.integers(), huge_ints),
            "version": st.one_of(st.integers(), huge_ints),
            "createdAt": st.one_of(iso_texts, extreme_datetimes),
        },
    ),
    mapping_with({"name": st.just("r"), "trigger": anything, "actions": anything}),
)
events = mapping_with(
    {
        "eventId": st.sampled_from(["e1", "E:x", "$e"]),
        "id": st.just("e2"),
        "eventType": event_types,
        "type": event_types,
        "occurredAt": st.one_of(iso_texts, extreme_datetimes),
        "time": st.one_of(iso_texts, extreme_datetimes),
        "payload": st.one_of(st.dictionaries(keys, json_values, max_size=4), deeply_nested()),
        "actor": st.sampled_from(["rep-1", None]),
    }
)
datetimes = st.one_of(iso_texts, extreme_datetimes)
activities = mapping_with(
    {
        "opportunityId": st.sampled_from(["o1", "$ne"]),
        "activityType": st.sampled_from(["call", "note", "telegram"]),
        "subject": st.text(max_size=5),
        "dueDate": datetimes,
        "scheduledDate": datetimes,
        "completedDate": datetimes,
        "outcome": st.sampled_from(["successful", "maybe"]),
        "metadata": st.one_of(st.dictionaries(keys, json_values, max_size=4), deeply_nested()),
        "version": st.one_of(st.integers(), huge_ints),
    }
)
filters = mapping_with(
    {
        "assignedTo": st.sampled_from(["rep-1", "$ne"]),
        "state": st.sampled_from(["pending", "overdue", "completed", "lost"]),
        "asOf": datetimes,
        "dueFrom": datetimes,
        "dueTo": datetimes,
        "createdFrom": datetimes,
        "activityTypes": st.lists(st.sampled_from(["call", "note", "x"])),
    }
)
sorts = mapping_with(
    {
        "field": st.sampled_from(["dueDate", "due_date", "createdAt", "dueDates", "activityId"]),
        "descending": st.booleans(),
    }
)

# --------------------------------------------------------------------------- properties


def _depth(document: Any) -> int:
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _accepts(model: type[BaseModel], document: Any) -> BaseModel | None:
    """The model built from ``document``, or None if refused the documented way."""
    try:
        return model.model_validate(document)
    except (ValidationError, InvalidInputError) as refusal:
        str(refusal)  # the message itself must be renderable
        return None


def _storable(instance: BaseModel) -> None:
    """Round-trips, and the document is one MongoDB and JSON store as they are."""
    document = instance.to_document()  # type: ignore[attr-defined]
    model = type(instance)
    # from_document is for stored top-level documents (it drops MongoDB's ``_id``); a part of
    # one (metadata, a condition) reads back with model_validate.
    stored = model in (Event, FollowUpRule, Activity, ActivityFilter, ActivitySort)
    again = model.from_document(document) if stored else model.model_validate(document)  # type: ignore[attr-defined]
    assert again == instance
    encoded = bson.encode({"doc": document})
    assert len(encoded) < 16 * 1024 * 1024
    assert _depth(document) < 100
    json.dumps(document, default=lambda value: value.isoformat())


@pytest.mark.parametrize(
    "model, documents",
    [
        (Event, events),
        (FollowUpRule, rules),
        (Activity, activities),
        (ActivityFilter, filters),
        (ActivitySort, sorts),
        (Action, actions),
        (Trigger, mapping_with({"eventType": event_types, "conditions": anything})),
        (ConditionGroup, condition_nodes),
        (Condition, leaves),
        (ActivityMetadata, st.one_of(st.dictionaries(keys, json_values), deeply_nested())),
        (Delay, st.one_of(json_values, huge_ints)),
    ],
    ids=lambda value: getattr(value, "__name__", "docs"),
)
def test_bad_input_is_refused_cleanly_and_good_input_round_trips(model, documents):
    @FUZZ
    @given(documents)
    def check(document: Any) -> None:
        instance = _accepts(model, document)
        if instance is not None:
            _storable(instance)

    check()


@FUZZ
@given(st.one_of(anything, st.dictionaries(keys, json_values)))
def test_from_document_refuses_cleanly_whatever_it_is_given(document):
    for model in (Event, FollowUpRule, Activity, ActivityFilter):
        try:
            instance = model.from_document(document)
        except (ValidationError, InvalidInputError):
            continue
        _storable(instance)


@FUZZ
@given(json_values)
def test_check_document_either_names_a_place_or_the_value_is_storable(value):
    try:
        bound = check_document(value, "doc")
    except InvalidInputError as refusal:
        assert refusal.field is not None and refusal.field.startswith("doc")
        return
    assert json_size(value) <= bound
    bson.encode({"doc": value})


# --------------------------------------------------------------------------- targeted limits


def nested(depth: int, leaf: Any = 1, *, as_list: bool = False) -> Any:
    """A document ``depth`` levels deep (a dict or list holding ``leaf`` is 1 level)."""
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def event(payload: Any) -> Event:
    return Event.model_validate({"eventType": "x.y", "occurredAt": T0, "payload": payload})


def rule(conditions: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "r",
        "trigger": {"eventType": "opportunity.created", "conditions": conditions},
        "actions": [{"actionType": "create_activity", "subject": "s"}],
        **extra,
    }


def leaf(value: Any = 1) -> dict[str, Any]:
    return {"field": "a", "operator": "equals", "value": value}


def group(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = leaf()
    for level in range(depth):
        node = {("all", "any", "not")[level % 3]: node if level % 3 == 2 else [node]}
    return node


def refusal(model: type[BaseModel], document: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        model.model_validate(document)
    return info.value


def test_payload_depth_at_and_beyond_the_limit():
    # The payload itself is level 1: nested(n) is n levels deep.
    assert event(nested(LIMITS.document_depth)).payload
    assert event({"a": nested(LIMITS.document_depth - 1, as_list=True)}).payload
    too_deep = {"eventType": "x.y", "occurredAt": T0, "payload": nested(LIMITS.document_depth + 1)}
    error = refusal(Event, too_deep)
    assert error.errors()[0]["loc"] == ("payload",)
    assert f"deeper than {LIMITS.document_depth}" in str(error)
    assert "payload.a.a" in str(error)
    for model, document in [
        (ActivityMetadata, nested(LIMITS.document_depth + 1)),
        (Action, {"actionType": "x", "params": nested(LIMITS.document_depth + 1)}),
        (Condition, leaf(nested(LIMITS.document_depth + 1))),
    ]:
        assert "deeper than" in str(refusal(model, document))
    assert Condition.model_validate(leaf(nested(LIMITS.document_depth)))


@pytest.mark.parametrize("depth", [250, 1000, 50_000])
def test_very_deep_documents_are_refused_without_recursion(depth):
    deep = nested(depth)
    for document, model in [
        ({"eventType": "x.y", "occurredAt": T0, "payload": deep}, Event),
        (
            {"opportunityId": "o", "activityType": "call", "subject": "s", "metadata": deep},
            Activity,
        ),
        (rule([leaf(deep)]), FollowUpRule),
        (rule([leaf(1)], actions=[{"actionType": "x", "params": deep}]), FollowUpRule),
    ]:
        assert "deeper than" in str(refusal(model, document))


@pytest.mark.parametrize("depth", [160, 300, 5_000])
def test_very_deep_condition_groups_are_refused_without_recursion(depth):
    error = refusal(FollowUpRule, rule([group(depth)]))
    assert error.errors()[0]["loc"] == ("trigger",)
    assert "nested deeper than" in str(error)
    assert "nested deeper than" in str(refusal(ConditionGroup, group(depth)))
    trigger = {"eventType": "x.y", "conditions": [group(depth)]}
    assert "nested deeper than" in str(refusal(Trigger, trigger))


def test_condition_depth_at_and_beyond_the_limit():
    assert FollowUpRule.model_validate(rule([group(LIMITS.condition_depth)]))
    assert "nested deeper than" in str(
        refusal(FollowUpRule, rule([group(LIMITS.condition_depth + 1)]))
    )


def test_groups_built_from_models_cannot_exceed_the_depth_together():
    inner = ConditionGroup.model_validate(group(LIMITS.condition_depth))
    with pytest.raises(ValidationError, match="nested deeper than"):
        ConditionGroup(kind="all", conditions=[inner])
    with pytest.raises(ValidationError, match="nested deeper than"):
        Trigger(event_type="x.y", conditions=[{"any": [inner]}])


def test_conditions_per_rule_at_and_beyond_the_limit():
    per_group = LIMITS.conditions_per_rule // 2 - 1
    fits = [{"all": [leaf()] * per_group}, {"any": [leaf()] * per_group}]  # 2 groups + leaves
    assert FollowUpRule.model_validate(rule(fits))
    too_many = [*fits, leaf()]
    error = refusal(FollowUpRule, rule(too_many))
    assert f"more than {LIMITS.conditions_per_rule} conditions" in str(error)


def test_a_huge_condition_list_is_refused_early():
    # (str(error) would render the million-node input: read the message alone)
    error = refusal(FollowUpRule, rule([{"all": [leaf()] * 1_000_000}]))
    assert "more than" in error.errors()[0]["msg"]


@pytest.mark.parametrize("operator", ["in", "between", "contains_any", "equals"])
def test_operator_values_bounded_for_every_operator(operator):
    ok = {"field": "a", "operator": operator, "value": list(range(LIMITS.operator_values))}
    assert FollowUpRule.model_validate(rule([ok]))
    big = {**ok, "value": list(range(LIMITS.operator_values + 1))}
    error = refusal(FollowUpRule, rule([big]))
    assert f"at most {LIMITS.operator_values}" in str(error)
    nested_big = {**ok, "value": {"any": list(range(LIMITS.operator_values + 1))}}
    assert "value.any" in str(refusal(FollowUpRule, rule([nested_big])))


def test_document_bytes_at_and_beyond_the_limit():
    overhead = json_size({"a": ""})
    exact = {"a": "x" * (LIMITS.document_bytes - overhead)}
    assert json_size(exact) == LIMITS.document_bytes
    assert event(exact).payload == exact
    over = {"a": "x" * (LIMITS.document_bytes - overhead + 1)}
    error = refusal(Event, {"eventType": "x.y", "occurredAt": T0, "payload": over})
    assert f"at most {LIMITS.document_bytes}" in str(error)
    escaped = {"a": "\x01" * (LIMITS.document_bytes // 6 + 1)}  # \u0001: 6 bytes each
    assert "bytes as JSON" in str(
        refusal(Event, {"eventType": "x.y", "occurredAt": T0, "payload": escaped})
    )


def test_rule_free_form_parts_share_one_size_budget():
    half = "x" * (LIMITS.document_bytes // 2)
    assert FollowUpRule.model_validate(
        rule([leaf(half[:-100])], actions=[{"actionType": "x", "params": {"t": half[:-100]}}])
    )
    error = refusal(
        FollowUpRule, rule([leaf(half)], actions=[{"actionType": "x", "params": {"t": half}}])
    )
    assert "at most" in str(error) and "per rule" in str(error)


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63)])
def test_signed_64_bit_integers_fit(value):
    assert event({"n": value}).payload == {"n": value}
    assert ActivityMetadata.model_validate({"n": value}).model_extra == {"n": value}


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**400])
def test_integers_beyond_64_bits_are_refused_everywhere(value):
    assert "64-bit" in str(
        refusal(Event, {"eventType": "x.y", "occurredAt": T0, "payload": {"n": [value]}})
    )
    assert "64-bit" in str(refusal(Condition, leaf(value)))
    assert "64-bit" in str(refusal(Action, {"actionType": "x", "params": {"n": value}}))
    assert "64-bit" in str(refusal(ActivityMetadata, {"n": value}))
    base = {"opportunityId": "o", "activityType": "call", "subject": "s"}
    assert refusal(Activity, {**base, "version": value}).errors()[0]["loc"] == ("version",)
    assert refusal(FollowUpRule, rule([], version=value)).errors()[0]["loc"] == ("version",)


@pytest.mark.parametrize(
    "key, where",
    [
        ("", "payload['']"),
        ("$where", "payload['$where']"),
        ("a.b", "payload['a.b']"),
        ("nul\x00", "payload['nul\\x00']"),
        ("\ud800", "payload"),
    ],
)
def test_unsafe_keys_are_refused_naming_the_place(key, where):
    error = refusal(Event, {"eventType": "x.y", "occurredAt": T0, "payload": {key: 1}})
    assert where in str(error)


def test_keys_with_dollar_or_spaces_inside_are_fine():
    payload = {"price$": 1, "first name": "Ann", "lead-source": "web", "ünïcode": "ok"}
    assert event(payload).payload == payload


@pytest.mark.parametrize(
    "value, message",
    [
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ((1, 2), "tuple"),
        ({1, 2}, "set"),
        (b"bytes", "bytes"),
        (datetime(2026, 1, 1), "timezone-aware"),
        (datetime(1, 1, 1, tzinfo=UTC), "between"),
        ("\ud800", "Unicode"),
        (object(), "object"),
    ],
)
def test_only_json_like_values_are_accepted(value, message):
    for model, document in [
        (Event, {"eventType": "x.y", "occurredAt": T0, "payload": {"v": [value]}}),
        (Condition, leaf({"v": value})),
        (Action, {"actionType": "x", "params": {"v": value}}),
        (ActivityMetadata, {"v": value}),
    ]:
        assert message in str(refusal(model, document))


def test_aware_datetimes_in_documents_are_kept():
    payload = {"at": datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))), "n": None}
    assert event(payload).payload == payload


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:59:59Z",
        "1899-12-31T23:59:59Z",
        "2999-12-31T00:00:01Z",
    ],
)
def test_datetimes_out_of_range_are_refused_in_every_datetime_field(text):
    base = {"opportunityId": "o", "activityType": "call", "subject": "s"}
    for model, document, key in [
        (Event, {"eventType": "x.y", "occurredAt": text}, "occurredAt"),
        (Event, {"type": "x.y", "time": text}, "time"),
        (Activity, {**base, "dueDate": text}, "dueDate"),
        (Activity, {**base, "scheduledDate": text}, "scheduledDate"),
        (Activity, {**base, "created_at": text}, "created_at"),
        (FollowUpRule, rule([], updatedAt=text), "updatedAt"),
        (ActivityFilter, {"asOf": text}, "asOf"),
        (ActivityFilter, {"dueFrom": text}, "dueFrom"),
        (ActivityFilter, {"completedTo": text}, "completedTo"),
    ]:
        error = refusal(model, document)
        assert error.errors()[0]["loc"] == (key,), (model, key)
        assert "between" in str(error)


def test_datetimes_at_the_bounds_are_accepted():
    for when in (LIMITS.earliest, LIMITS.latest):
        assert Event(type="x.y", time=when).time == when
        assert ActivityFilter(as_of=when.isoformat()).as_of == when
    later = LIMITS.latest + timedelta(microseconds=1)
    assert "between" in str(refusal(Event, {"type": "x.y", "time": later}))


def test_cursors_holding_out_of_range_datetimes_are_refused():
    sort = ActivitySort(field="due_date")
    cursor = encode_cursor(sort, datetime(1, 1, 1, tzinfo=UTC), "a1")
    with pytest.raises(InvalidInputError, match="cursor"):
        decode_cursor(cursor, sort)
    assert decode_cursor(encode_cursor(sort, T0, "a1"), sort) == (T0, "a1")


@pytest.mark.parametrize("model", [FollowUpRule, Activity, ActivityFilter, Event, ActivitySort])
@pytest.mark.parametrize("document", [[], ["a"], "rule", 1, None, [("name", "r")]])
def test_non_mappings_are_validation_errors(model, document):
    refusal(model, document)
    with pytest.raises(ValidationError):
        model.from_document(document)


def test_non_dict_mappings_are_checked_too():
    from types import MappingProxyType

    with pytest.raises(ValidationError, match="deeper than"):
        Event(type="x.y", time=T0, payload=MappingProxyType({"a": nested(100)}))
    with pytest.raises(ValidationError, match="unsupported value"):
        event({"a": MappingProxyType({"b": 1})})


@pytest.mark.parametrize(
    "given, attribute, document",
    [
        ("dueDate", "due_date", "dueDate"),
        ("due_date", "due_date", "dueDate"),
        ("createdAt", "created_at", "createdAt"),
    ],
)
def test_sort_fields_take_both_spellings_and_emit_the_document_one(given, attribute, document):
    sort = ActivitySort.model_validate({"field": given, "descending": True})
    assert sort.field == attribute
    assert sort.to_document() == {"field": document, "descending": True}
    assert ActivitySort.from_document(sort.to_document()) == sort


def test_unknown_sort_fields_list_the_document_spellings():
    error = refusal(ActivitySort, {"field": "activityId"})
    assert "dueDate" in str(error)
