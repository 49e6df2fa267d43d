"""The fast path of ``check_document`` decides exactly as the detailed walk does.

``leadflow.documents._lean_bound`` either returns the detailed walk's size bound (the document
passes every check) or ``None`` (the detailed walk then decides and names the problem). The
properties below hold it to ``_detailed_bound``, the walk that names what it refuses:

* whatever the input, a value the fast path accepts, the walk accepts with the same bound;
* on "plain" input (exact ``dict`` / ``list`` / ``str`` / ``int`` / ``float`` / ``bool`` /
  ``None``, datetimes in UTC: what a host's decoded JSON holds) the fast path accepts exactly
  what the walk accepts, so the speed-up is not bought by sending odd documents the slow way;
* ``check_document`` raises the same error (message and field) and returns the same bound as a
  check made by the detailed walk alone.

Small limits (depth 4, 400 bytes, lists of 3) are patched in so that random documents reach
every limit; the defaults are covered by the same code.
"""

from __future__ import annotations

import string
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow import documents, limits
from leadflow.documents import _detailed_bound, _lean_bound, check_document, json_size
from leadflow.errors import InvalidInputError

from .suite import examples

SMALL = replace(limits.DEFAULT_LIMITS, document_depth=4, document_bytes=400)
PROPERTY = settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True)
def small_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(limits, "DEFAULT_LIMITS", SMALL)
    yield


class Sneaky(str):
    """A str subclass whose methods lie about its characters."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __contains__(self, other: object) -> bool:
        return False

    def __getitem__(self, index: Any) -> str:
        return "x"

    def __len__(self) -> int:
        return 1

    def isascii(self) -> bool:
        return True


class Level(IntEnum):
    LOW = 1


EARLIEST, LATEST = SMALL.earliest, SMALL.latest

# --------------------------------------------------------------------------- strategies

plain_keys = st.one_of(
    st.text(string.ascii_letters + "_-$.0 é\x00", max_size=5),
    st.sampled_from(["", "$", "$a", "a$", ".", "a.b", "\x00", "\ud800", "ok", "é"]),
)
ints = st.one_of(
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, True, False]),
    st.integers(-(2**66), 2**66),
)
utc_datetimes = st.one_of(
    st.datetimes(timezones=st.just(UTC)),
    st.sampled_from(
        [
            EARLIEST,
            LATEST,
            EARLIEST - timedelta(microseconds=1),
            LATEST + timedelta(microseconds=1),
        ]
    ),
)
plain_scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(),
    st.text(max_size=6),
    st.text(alphabet=st.characters(codec="utf-16"), max_size=3),  # lone surrogates
    utc_datetimes,
)
plain_values = st.recursive(
    plain_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(plain_keys, inner, max_size=4),
    max_leaves=24,
)
plain_documents = st.lists(plain_values, max_size=4) | st.dictionaries(
    plain_keys, plain_values, max_size=6
)

odd_scalars = st.one_of(
    st.tuples(st.integers(0, 3)),
    st.binary(max_size=2),
    st.frozensets(st.integers(0, 3), max_size=2),
    st.datetimes(),  # naive
    st.datetimes(timezones=st.sampled_from([timezone(timedelta(hours=5)), ZoneInfo("UTC")])),
    st.just(Level.LOW),
    st.builds(Sneaky, st.sampled_from(["", "a.b", "$x", "ok"])),
    st.decimals(allow_nan=False, places=2, max_value=10, min_value=-10),
)
any_documents = st.recursive(
    plain_scalars | odd_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(plain_keys, inner, max_size=4)
        | st.dictionaries(st.integers(0, 2) | st.none(), inner, max_size=2)
        | st.dictionaries(st.builds(Sneaky, plain_keys), inner, max_size=2)
        | st.dictionaries(plain_keys, inner, max_size=2).map(OrderedDict)
    ),
    max_leaves=24,
)
deep_documents = st.builds(
    lambda depth, as_list, leaf: _nest(depth, as_list, leaf),
    st.integers(1, 7),
    st.booleans(),
    plain_values,
)
max_lists = st.sampled_from([None, 0, 3])


def _nest(depth: int, as_list: bool, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value, "s"] if as_list else {"k": value, "z": [1]}
    return value


def _plain(value: Any, top: bool = True) -> bool:
    """What the fast path decides for itself: a dict or a list holding only exact JSON types
    and datetimes in UTC (a lone scalar goes straight to the detailed walk, which is cheap)."""
    if top and type(value) not in (dict, list):
        return False
    kind = type(value)
    if kind is dict:
        return all(type(k) is str for k in value) and all(_plain(v, False) for v in value.values())
    if kind is list:
        return all(_plain(v, False) for v in value)
    if kind is datetime:
        return value.tzinfo is UTC
    return kind in (str, int, float, bool, type(None))


def _detailed(value: Any, max_list: int | None) -> int | InvalidInputError:
    try:
        return _detailed_bound(value, "doc", SMALL.document_depth, max_list)
    except InvalidInputError as refusal:
        return refusal


def _reference_check(value: Any, max_list: int | None) -> int:
    """``check_document`` as it would be with the detailed walk only."""
    bound = _detailed_bound(value, "doc", SMALL.document_depth, max_list)
    if bound > SMALL.document_bytes:
        size = json_size(value)
        if size > SMALL.document_bytes:
            raise InvalidInputError(
                f"document of {size} bytes as JSON; at most {SMALL.document_bytes} allowed",
                field="doc",
            )
        return size
    return bound


def _outcome(check: Any, value: Any, max_list: int | None) -> tuple[str, Any]:
    try:
        return ("bound", check(value, max_list))
    except InvalidInputError as refusal:
        return ("refused", (str(refusal), refusal.field))


# --------------------------------------------------------------------------- properties


@PROPERTY
@given(any_documents | deep_documents, max_lists)
def test_what_the_fast_path_accepts_the_detailed_walk_accepts_with_the_same_bound(
    value: Any, max_list: int | None
) -> None:
    fast = _lean_bound(value, SMALL, max_list)
    if fast is not None:
        assert _detailed(value, max_list) == fast


@PROPERTY
@given(plain_documents | deep_documents, max_lists)
def test_on_plain_documents_the_fast_path_accepts_exactly_what_the_walk_accepts(
    value: Any, max_list: int | None
) -> None:
    assert _plain(value)
    fast = _lean_bound(value, SMALL, max_list)
    detailed = _detailed(value, max_list)
    if isinstance(detailed, InvalidInputError):
        assert fast is None, detailed
    else:
        assert fast == detailed


@PROPERTY
@given(any_documents | plain_documents | deep_documents | plain_scalars, max_lists)
def test_check_document_decides_and_reports_as_the_detailed_walk_alone(
    value: Any, max_list: int | None
) -> None:
    checked = _outcome(lambda v, m: check_document(v, "doc", max_list=m), value, max_list)
    assert checked == _outcome(_reference_check, value, max_list)
    if checked[0] == "bound":
        assert json_size(value) <= checked[1]


# --------------------------------------------------------------------------- targeted cases


def test_a_typical_event_payload_takes_the_fast_path_and_its_bound_holds() -> None:
    payload = {
        "opportunityId": "opp-1",
        "estimateValue": 12_500,
        "quoteValue": 99.5,
        "emailOpened": False,
        "closedAt": None,
        "tags": ["vip", "storm"],
        "customer": {"segment": "commercial", "name": "Müller & Søn"},
        "metadata": {"phoneDuration": 61, "notes": [{"at": datetime(2026, 1, 5, tzinfo=UTC)}]},
    }
    fast = _lean_bound(payload, limits.DEFAULT_LIMITS, None)
    assert fast is not None
    assert fast == _detailed_bound(payload, "payload", 32, None)
    assert json_size(payload) <= fast


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        ({"a": {"b.c": 1}}, "doc.a['b.c']", "must be non-empty"),
        ({"ok": 1, "": 2}, "doc['']", "must be non-empty"),
        ({"x": {"$set": 1}}, "doc.x['$set']", "not start with '$'"),
        ({"n\x00": 1}, "doc['n\\x00']", "hold no '.' or NUL"),
        ({"a": ["ok", "\ud800"]}, "doc.a[1]", "lone surrogate"),
        ({"\udc00": 1}, "doc['\\udc00']", "lone surrogate"),
        ({"a": [2**63]}, "doc.a[0]", "64-bit"),
        ({"n": -(2**63) - 1}, "doc.n", "64-bit"),
        ([{"x": [[2**64]]}], "doc[0].x[0][0]", "64-bit"),
        ({"a": {"b": float("nan")}}, "doc.a.b", "finite"),
        ({"a": [[float("-inf")]]}, "doc.a[0][0]", "finite"),
        ({"a": (1,)}, "doc.a", "unsupported value of type tuple"),
        ({1: "x"}, "doc['1']", "keys must be strings"),
        ({"t": datetime(2026, 1, 5)}, "doc.t", "timezone-aware"),
        ({"t": [LATEST + timedelta(seconds=1)]}, "doc.t[0]", "datetime must be between"),
        (_nest(5, True, 1), "doc[0][0][0][0]", "nested deeper than 4 levels"),
        ({"a": "x" * 100, "b": "y" * 300}, "doc", "bytes as JSON"),
    ],
)
def test_each_refusal_is_the_detailed_walks_error(value: Any, field: str, message: str) -> None:
    assert _lean_bound(value, SMALL, None) is None or message == "bytes as JSON"
    with pytest.raises(InvalidInputError) as refusal:
        check_document(value, "doc")
    assert refusal.value.field == field
    assert message in str(refusal.value)


@pytest.mark.parametrize("max_depth", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("as_list", [False, True])
def test_depth_is_bounded_exactly_on_the_fast_path(max_depth: int, as_list: bool) -> None:
    small = replace(SMALL, document_depth=max_depth)
    for depth in range(1, 8):
        value = _nest(depth, as_list, "leaf")  # each dict level also holds a list: one deeper
        fast = _lean_bound(value, small, None)
        assert (fast is not None) is (depth + (not as_list) <= max_depth)
        if fast is not None:
            assert fast == _detailed_bound(value, "doc", max_depth, None)


def test_a_large_document_within_the_limit_gets_its_exact_size() -> None:
    value = {"a": "x" * 150, "b": "y" * 150}  # a bound of 6 * 302 + ... bytes; 315 exactly
    bound = _lean_bound(value, SMALL, None)
    assert bound is not None and bound > SMALL.document_bytes
    assert check_document(value, "doc") == json_size(value) == 315


def test_list_length_is_bounded_on_the_fast_path_too() -> None:
    assert _lean_bound({"a": [1, 2, 3]}, SMALL, 3) is not None
    assert _lean_bound({"a": [1, 2, 3, 4]}, SMALL, 3) is None
    assert _lean_bound([[1, 2, 3, 4]], SMALL, 3) is None
    with pytest.raises(InvalidInputError, match="at most 3 allowed"):
        check_document({"a": [[1, 2, 3, 4]]}, "doc", max_list=3)


def test_str_subclass_keys_are_judged_by_their_characters_on_both_paths() -> None:
    for text, valid in (("ok", True), ("a.b", False), ("$x", False), ("", False)):
        value = {Sneaky(text): 1}
        fast = _lean_bound(value, SMALL, None)
        detailed = _detailed(value, None)
        assert (fast is not None) is valid
        assert isinstance(detailed, InvalidInputError) is not valid
        if valid:
            assert fast == detailed


def test_the_remembered_key_texts_are_bounded_and_only_valid_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(documents, "_VALID_KEYS", set())
    monkeypatch.setattr(documents, "_VALID_KEYS_MAX", 2)
    assert _lean_bound({"a": 1, "b": {"c": 2}}, SMALL, None) is not None
    assert sorted(documents._VALID_KEYS) == ["a.b.c"]
    # the same joined text from a key holding "." is refused, remembered or not
    assert _lean_bound({"a.b": 1, "c": 2}, SMALL, None) is None
    assert _lean_bound({"x": 1, "y$": 2}, SMALL, None) is not None
    assert _lean_bound({"z": 1}, SMALL, None) is not None
    assert sorted(documents._VALID_KEYS) == ["a.b.c", "x.y$"]
    assert _lean_bound({"z": 1, "$y": 2}, SMALL, None) is None
