"""Operators and the compilation of conditions into plain Python predicates.

Everything here is pure: no I/O, no clock (date-relative operators receive the event's time).
Rules come from admin input, so nothing is ``eval``-ed and no regular expression is built from
rule data. Operator semantics are documented in ``docs/operators.md``; in short:

* A missing field resolves to :data:`MISSING`. Only ``not_equals``, ``not_in``,
  ``not_contains`` and ``not_exists`` hold for it (they are the exact negations of
  ``equals``, ``in``, ``contains`` and ``exists``).
* Equality is strict about types: ``1 == 1.0`` but ``1 != "1"`` and ``True != 1``.
* Ordering compares numbers with numbers, strings with strings, datetimes with datetimes (an
  ISO-8601 string with an offset counts as a datetime when the rule's value is one); any other
  pair is simply false.
* Strings compare case-sensitively unless the condition sets ``ignoreCase``.
* No built-in operator raises on any JSON-like value.
"""

from __future__ import annotations

import math
import operator as _op
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic.alias_generators import to_camel, to_snake

from ..models import Condition, ConditionGroup, ConditionNode

__all__ = [
    "MISSING",
    "CompiledCondition",
    "Operator",
    "OperatorRegistry",
    "Predicate",
    "compile_condition",
    "field_getter",
    "index_values",
    "single_key",
]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final[Any] = _Missing()
"""What a field path resolves to when the event has no such field."""

Predicate = Callable[[Any], bool]
"""A compiled test of one field value."""

TimedPredicate = Callable[[Any, datetime], bool]
"""A compiled test that also needs the event's time."""

CompiledCondition = Callable[[Mapping[str, Any], datetime], bool]
"""A compiled condition (tree): ``(payload, event_time) -> bool``."""


# --------------------------------------------------------------------------- field paths


def _spellings(segment: str) -> tuple[Any, ...]:
    if segment.isdigit():
        return (int(segment),)
    alternatives = [segment]
    for variant in (to_snake(segment), to_camel(segment)):
        if variant not in alternatives and variant:
            alternatives.append(variant)
    return tuple(alternatives)


def field_getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    """Compile a dotted path into a getter returning the value or :data:`MISSING`.

    Each segment matches the name as written first, then its snake_case / camelCase twin, so
    ``metadata.quoteValue`` also finds ``metadata.quote_value``. Numeric segments index lists.
    """
    steps = [_spellings(s) for s in path.split(".")]
    if len(steps) == 1 and not isinstance(steps[0][0], int):
        names = steps[0]
        if len(names) == 1:
            key = names[0]

            def get_one(payload: Mapping[str, Any]) -> Any:
                return payload.get(key, MISSING)

            return get_one
        first, second = names[0], names[1]

        def get_twin(payload: Mapping[str, Any]) -> Any:
            value = payload.get(first, MISSING)
            if value is MISSING:
                return payload.get(second, MISSING)
            return value

        return get_twin

    def get_path(payload: Mapping[str, Any]) -> Any:
        current: Any = payload
        for names in steps:
            if type(current) is dict or isinstance(current, Mapping):
                for name in names:
                    if name in current:
                        current = current[name]
                        break
                else:
                    return MISSING
            elif isinstance(current, list) and isinstance(names[0], int):
                index = names[0]
                if index >= len(current):
                    return MISSING
                current = current[index]
            else:
                return MISSING
        return current

    return get_path


def single_key(path: str) -> tuple[str, str] | None:
    """For a one-segment path, the two names :func:`field_getter` tries (the same twice when
    the name has no twin); None for dotted paths and list indexes."""
    if "." in path:
        return None
    names = _spellings(path)
    if isinstance(names[0], int):
        return None
    return (names[0], names[1] if len(names) > 1 else names[0])


# --------------------------------------------------------------------------- value semantics


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def strict_equal(actual: Any, expected: Any) -> bool:
    """Equality without loose coercion: numbers equal numbers, bools only bools, and so on."""
    if isinstance(expected, bool) or expected is None:
        return actual is expected
    if _is_number(expected):
        return _is_number(actual) and actual == expected
    if isinstance(expected, str):
        return isinstance(actual, str) and actual == expected
    if isinstance(expected, list):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(expected)
            and all(strict_equal(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(actual, Mapping)
            and actual.keys() == expected.keys()
            and all(strict_equal(actual[k], v) for k, v in expected.items())
        )
    if isinstance(expected, datetime):
        return isinstance(actual, datetime) and actual.tzinfo is not None and actual == expected
    try:
        return bool(actual == expected)
    except Exception:
        return False


def _fold(value: Any) -> Any:
    """Case-fold strings (also inside lists) for ``ignoreCase`` comparisons."""
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, list | tuple):
        return [_fold(v) for v in value]
    return value


def _parse_aware(value: Any) -> datetime | None:
    """An aware datetime from a datetime or an ISO-8601 string with an offset, else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None and value.utcoffset() is not None else None
    if isinstance(value, str) and 10 < len(value) <= 40 and value[:1].isdigit():
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            return None
        return parsed
    return None


def _ordering_operand(value: Any, where: str) -> Any:
    if _is_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number")
        return value
    parsed = _parse_aware(value)
    if parsed is not None:
        return parsed.astimezone(UTC)
    if isinstance(value, str):
        return value
    raise ValueError(f"{where} must be a number, a string or an ISO-8601 datetime with offset")


def _comparable(actual: Any, expected: Any) -> Any:
    """``actual`` made comparable with ``expected``, or MISSING when the types don't pair."""
    if isinstance(expected, datetime):
        parsed = _parse_aware(actual)
        return MISSING if parsed is None else parsed
    if isinstance(expected, str):
        return actual if isinstance(actual, str) else MISSING
    if _is_number(actual) and not (isinstance(actual, float) and math.isnan(actual)):
        return actual
    return MISSING


# --------------------------------------------------------------------------- operators

Factory = Callable[[Any, bool], Predicate]
TimedFactory = Callable[[Any, bool], TimedPredicate]


@dataclass(frozen=True, slots=True)
class Operator:
    """A named operator. ``prepare`` checks and normalises a rule's value at load time (raise
    ``ValueError`` with a message for bad values); ``factory`` turns the prepared value into a
    predicate. Timed operators get ``(actual, event_time)``."""

    name: str
    prepare: Callable[[Any], Any]
    factory: Factory | None = None
    timed_factory: TimedFactory | None = None
    description: str = ""


def _equals(expected: Any, ignore_case: bool) -> Predicate:
    if isinstance(expected, str):
        if ignore_case:
            folded = expected.casefold()
            return lambda a: isinstance(a, str) and a.casefold() == folded
        return lambda a: a == expected and isinstance(a, str)
    if _is_number(expected):
        return lambda a: a == expected and _is_number(a)
    if ignore_case:
        folded_value = _fold(expected)
        return lambda a: strict_equal(_fold(a), folded_value)
    return lambda a: strict_equal(a, expected)


def _negate(factory: Factory) -> Factory:
    def make(expected: Any, ignore_case: bool) -> Predicate:
        positive = factory(expected, ignore_case)
        return lambda a: not positive(a)

    return make


_not_equals = _negate(_equals)


def _in(expected: list[Any], ignore_case: bool) -> Predicate:
    items = _fold(expected) if ignore_case else expected
    strings = frozenset(x for x in items if isinstance(x, str))
    others = [x for x in items if not isinstance(x, str)]

    def scalar_in(a: Any) -> bool:
        if isinstance(a, str):
            return (a.casefold() if ignore_case else a) in strings
        return any(strict_equal(a, x) for x in others)

    def member(a: Any) -> bool:
        if isinstance(a, list | tuple):
            return any(scalar_in(x) for x in a)
        return scalar_in(a)

    if not others:
        if ignore_case:
            return member

        def string_member(a: Any) -> bool:
            if isinstance(a, str):
                return a in strings
            if isinstance(a, list | tuple):
                return any(isinstance(x, str) and x in strings for x in a)
            return False

        return string_member
    return member


_not_in = _negate(_in)


def _contains(expected: Any, ignore_case: bool) -> Predicate:
    needle = _fold(expected) if ignore_case else expected

    def test(a: Any) -> bool:
        if isinstance(a, str):
            if not isinstance(needle, str):
                return False
            return needle in (a.casefold() if ignore_case else a)
        if isinstance(a, list | tuple):
            return any(strict_equal(_fold(x) if ignore_case else x, needle) for x in a)
        return False

    return test


_not_contains = _negate(_contains)


def _affix(method: str) -> Factory:
    def make(expected: str, ignore_case: bool) -> Predicate:
        if ignore_case:
            folded = expected.casefold()
            return lambda a: isinstance(a, str) and getattr(a.casefold(), method)(folded)
        return lambda a: isinstance(a, str) and getattr(a, method)(expected)

    return make


def _ordered(test: Callable[[Any, Any], bool]) -> Factory:
    def make(expected: Any, ignore_case: bool) -> Predicate:
        if _is_number(expected):

            def numeric(a: Any) -> bool:
                if _is_number(a):
                    return test(a, expected)
                return False

            return numeric

        def other(a: Any) -> bool:
            value = _comparable(a, expected)
            return value is not MISSING and test(value, expected)

        return other

    return make


_greater_than = _ordered(_op.gt)
_greater_or_equal = _ordered(_op.ge)
_less_than = _ordered(_op.lt)
_less_or_equal = _ordered(_op.le)


def _between(bounds: tuple[Any, Any], ignore_case: bool) -> Predicate:
    low, high = bounds

    def test(a: Any) -> bool:
        value = _comparable(a, low)
        return value is not MISSING and bool(low <= value <= high)

    return test


def _age(older: bool) -> TimedFactory:
    def make(hours: float, ignore_case: bool) -> TimedPredicate:
        limit = timedelta(hours=hours)

        def test(a: Any, now: datetime) -> bool:
            when = _parse_aware(a)
            if when is None:
                return False
            age = now - when
            return age > limit if older else age <= limit

        return test

    return make


# --- value checks run when a rule is loaded


def _any_json(value: Any) -> Any:
    return value


def _needs_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"value must be a list, got {type(value).__name__}")
    if len(value) > 10_000:
        raise ValueError("value lists are limited to 10,000 items")
    return value


def _needs_string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("value must be a non-empty string")
    return value


def _needs_ordering(value: Any) -> Any:
    return _ordering_operand(value, "value")


def _needs_bounds(value: Any) -> tuple[Any, Any]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError("value must be a list [low, high]")
    low = _ordering_operand(value[0], "low bound")
    high = _ordering_operand(value[1], "high bound")
    kinds = {("number" if _is_number(v) else type(v).__name__) for v in (low, high)}
    if len(kinds) != 1:
        raise ValueError("both bounds must be of one kind (numbers, strings or datetimes)")
    if low > high:
        raise ValueError("low bound is greater than high bound")
    return (low, high)


def _needs_nothing(value: Any) -> None:
    if value not in (None, True):
        raise ValueError("takes no value (omit it)")


def _needs_hours(value: Any) -> float:
    if not _is_number(value) or value < 0 or not math.isfinite(value):
        raise ValueError("value must be a non-negative number of hours")
    if value > 24 * 366 * 100:
        raise ValueError("value must be at most a century of hours")
    return float(value)


def _exists(expected: Any, ignore_case: bool) -> Predicate:
    return lambda a: a is not MISSING and a is not None


_not_exists = _negate(_exists)


_BUILTINS: tuple[Operator, ...] = (
    Operator("equals", _any_json, _equals, description="strictly equal"),
    Operator("not_equals", _any_json, _not_equals, description="negation of equals"),
    Operator("contains", _any_json, _contains, description="substring, or list element"),
    Operator("not_contains", _any_json, _not_contains, description="negation of contains"),
    Operator("in", _needs_list, _in, description="value is one of the list"),
    Operator("not_in", _needs_list, _not_in, description="negation of in"),
    Operator("greater_than", _needs_ordering, _greater_than),
    Operator("greater_or_equal", _needs_ordering, _greater_or_equal),
    Operator("less_than", _needs_ordering, _less_than),
    Operator("less_or_equal", _needs_ordering, _less_or_equal),
    Operator("between", _needs_bounds, _between, description="low <= value <= high"),
    Operator("starts_with", _needs_string, _affix("startswith")),
    Operator("ends_with", _needs_string, _affix("endswith")),
    Operator("exists", _needs_nothing, _exists, description="present and not null"),
    Operator("not_exists", _needs_nothing, _not_exists, description="missing or null"),
    Operator(
        "older_than",
        _needs_hours,
        timed_factory=_age(older=True),
        description="a datetime more than N hours before the event",
    ),
    Operator(
        "newer_than",
        _needs_hours,
        timed_factory=_age(older=False),
        description="a datetime at most N hours before the event (or after it)",
    ),
)


class OperatorRegistry:
    """The operators rules may name. Start from :meth:`default` and :meth:`register` more.

    A registry is a plain object handed to a :class:`~leadflow.RuleEngine`: two engines with
    different registries never see each other's operators.
    """

    def __init__(self, operators: Iterable[Operator] = ()) -> None:
        self._operators: dict[str, Operator] = {}
        for operator in operators:
            self._operators[operator.name] = operator

    @classmethod
    def default(cls) -> OperatorRegistry:
        """A new registry holding the built-in operators."""
        return cls(_BUILTINS)

    def register(
        self,
        name: str,
        test: Callable[[Any, Any], bool],
        *,
        prepare: Callable[[Any], Any] | None = None,
        description: str = "",
        replace: bool = False,
    ) -> None:
        """Add operator ``name``: ``test(actual, expected) -> bool``.

        ``actual`` is the field's value or :data:`MISSING`. ``prepare(value)`` validates the
        rule's value when the rule is loaded (raise ``ValueError`` to reject it). If ``test``
        raises while evaluating, the condition counts as false: a bad payload never breaks the
        other rules.
        """
        Condition(field="x", operator=name)  # same name rules as in a stored condition
        if name in self._operators and not replace:
            raise ValueError(f"operator {name!r} is already registered (pass replace=True)")

        def factory(expected: Any, ignore_case: bool) -> Predicate:
            def guarded(a: Any) -> bool:
                try:
                    return bool(test(a, expected))
                except Exception:
                    return False

            return guarded

        self._operators[name] = Operator(name, prepare or _any_json, factory, None, description)

    def get(self, name: str) -> Operator | None:
        return self._operators.get(name)

    def names(self) -> list[str]:
        return sorted(self._operators)

    def __contains__(self, name: object) -> bool:
        return name in self._operators


# --------------------------------------------------------------------------- fused leaves
#
# A leaf on a one-segment path with a common built-in operator compiles into one closure that
# reads the field and tests it (the general form, ``test(get(payload))``, makes three calls).
# Each closure below reads the field as ``field_getter`` does and returns what the operator's
# predicate returns for that value: the fused form is an optimisation, never a variant.

_NUMBER = (int, float)
_SEQUENCE = (list, tuple)

# (first name, its twin, prepared value, ignore_case) -> fused leaf, or None to use the general form
_Fuser = Callable[[str, str, Any, bool], CompiledCondition | None]


def _fuse_equals(first: str, second: str, expected: Any, ignore_case: bool) -> Any:
    if ignore_case:
        return None
    if isinstance(expected, str):

        def equals_string(payload: Mapping[str, Any], now: datetime) -> bool:
            a = payload.get(first, MISSING)
            if a is MISSING:
                a = payload.get(second, MISSING)
            return a == expected and isinstance(a, str)

        return equals_string
    if _is_number(expected):

        def equals_number(payload: Mapping[str, Any], now: datetime) -> bool:
            a = payload.get(first, MISSING)
            if a is MISSING:
                a = payload.get(second, MISSING)
            if a == expected:
                kind = type(a)
                return (
                    kind is int
                    or kind is float
                    or (isinstance(a, _NUMBER) and not isinstance(a, bool))
                )
            return False

        return equals_number
    return None


def _fuse_not_equals(first: str, second: str, expected: Any, ignore_case: bool) -> Any:
    if ignore_case:
        return None
    if isinstance(expected, str):

        def not_equals_string(payload: Mapping[str, Any], now: datetime) -> bool:
            a = payload.get(first, MISSING)
            if a is MISSING:
                a = payload.get(second, MISSING)
            return not (a == expected and isinstance(a, str))

        return not_equals_string
    if _is_number(expected):

        def not_equals_number(payload: Mapping[str, Any], now: datetime) -> bool:
            a = payload.get(first, MISSING)
            if a is MISSING:
                a = payload.get(second, MISSING)
            return not (a == expected and isinstance(a, _NUMBER) and not isinstance(a, bool))

        return not_equals_number
    return None


def _fuse_in(first: str, second: str, expected: Any, ignore_case: bool) -> Any:
    if ignore_case or not all(isinstance(x, str) for x in expected):
        return None
    strings = frozenset(expected)

    def in_strings(payload: Mapping[str, Any], now: datetime) -> bool:
        a = payload.get(first, MISSING)
        if a is MISSING:
            a = payload.get(second, MISSING)
        if isinstance(a, str):
            return a in strings
        if isinstance(a, _SEQUENCE):
            for x in a:
                if isinstance(x, str) and x in strings:
                    return True
        return False

    return in_strings


def _fuse_contains(first: str, second: str, needle: Any, ignore_case: bool) -> Any:
    if ignore_case or not isinstance(needle, str):
        return None

    def contains_string(payload: Mapping[str, Any], now: datetime) -> bool:
        a = payload.get(first, MISSING)
        if a is MISSING:
            a = payload.get(second, MISSING)
        if isinstance(a, str):
            return needle in a
        if isinstance(a, _SEQUENCE):
            try:
                if needle not in a:  # a scan in C: no element equals the needle
                    return False
            except Exception:  # an element's __eq__ raised: check the strings one by one
                pass
            for x in a:
                if isinstance(x, str) and x == needle:
                    return True
        return False

    return contains_string


def _fuse_ordered(name: str) -> _Fuser:
    # One closure per comparison, written out: calling operator.gt & co. would add a call.
    def fuse(first: str, second: str, expected: Any, ignore_case: bool) -> Any:
        if not _is_number(expected):
            return None

        def greater_than(payload: Mapping[str, Any], now: datetime) -> bool:
            a = payload.get(first, MISSING)
            if a is MISSING:
                a = payload.get(second, MISSING)
            kind = type(a)
            if kind is int or kind is float or (isinstance(a, _NUMBER) and not isinstance(a, bool)):
                return a > expected  # type: ignore[no-any-return]
            return False

        def greater_or_equal(payload: Mapping[str, Any], now: datetime) -> bool:
            a = payload.get(first, MISSING)
            if a is MISSING:
                a = payload.get(second, MISSING)
            kind = type(a)
            if kind is int or kind is float or (isinstance(a, _NUMBER) and not isinstance(a, bool)):
                return a >= expected  # type: ignore[no-any-return]
            return False

        def less_than(payload: Mapping[str, Any], now: datetime) -> bool:
            a = payload.get(first, MISSING)
            if a is MISSING:
                a = payload.get(second, MISSING)
            kind = type(a)
            if kind is int or kind is float or (isinstance(a, _NUMBER) and not isinstance(a, bool)):
                return a < expected  # type: ignore[no-any-return]
            return False

        def less_or_equal(payload: Mapping[str, Any], now: datetime) -> bool:
            a = payload.get(first, MISSING)
            if a is MISSING:
                a = payload.get(second, MISSING)
            kind = type(a)
            if kind is int or kind is float or (isinstance(a, _NUMBER) and not isinstance(a, bool)):
                return a <= expected  # type: ignore[no-any-return]
            return False

        closures: dict[str, CompiledCondition] = {
            "gt": greater_than,
            "ge": greater_or_equal,
            "lt": less_than,
            "le": less_or_equal,
        }
        return closures[name]

    return fuse


def _fuse_exists(first: str, second: str, expected: Any, ignore_case: bool) -> Any:
    def exists(payload: Mapping[str, Any], now: datetime) -> bool:
        a = payload.get(first, MISSING)
        if a is MISSING:
            a = payload.get(second, MISSING)
        return a is not MISSING and a is not None

    return exists


def _fuse_negation(positive: _Fuser) -> _Fuser:
    def fuse(first: str, second: str, expected: Any, ignore_case: bool) -> Any:
        test = positive(first, second, expected, ignore_case)
        if test is None:
            return None
        return lambda payload, now: not test(payload, now)

    return fuse


# Keyed by the factory's id (factories need not be hashable); the factory is kept to check
# identity, so an operator registered later never picks up a built-in's fused form.
_FUSERS: dict[int, tuple[Factory, _Fuser]] = {
    id(factory): (factory, fuser)
    for factory, fuser in (
        (_equals, _fuse_equals),
        (_not_equals, _fuse_not_equals),
        (_in, _fuse_in),
        (_not_in, _fuse_negation(_fuse_in)),
        (_contains, _fuse_contains),
        (_not_contains, _fuse_negation(_fuse_contains)),
        (_greater_than, _fuse_ordered("gt")),
        (_greater_or_equal, _fuse_ordered("ge")),
        (_less_than, _fuse_ordered("lt")),
        (_less_or_equal, _fuse_ordered("le")),
        (_exists, _fuse_exists),
        (_not_exists, _fuse_negation(_fuse_exists)),
    )
}


# --------------------------------------------------------------------------- compilation


def _operator_and_value(condition: Condition, registry: OperatorRegistry) -> tuple[Operator, Any]:
    operator = registry.get(condition.operator)
    if operator is None:
        raise ValueError(
            f"unknown operator {condition.operator!r} (known: {', '.join(registry.names())})"
        )
    try:
        expected = operator.prepare(condition.value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"operator {condition.operator!r}: {exc}") from None
    return operator, expected


def _leaf(condition: Condition, registry: OperatorRegistry) -> CompiledCondition:
    operator, expected = _operator_and_value(condition, registry)
    get = field_getter(condition.field)
    if operator.timed_factory is not None:
        timed = operator.timed_factory(expected, condition.ignore_case)
        return lambda payload, now: timed(get(payload), now)
    assert operator.factory is not None
    test = operator.factory(expected, condition.ignore_case)
    keys = single_key(condition.field)
    if keys is None:
        return lambda payload, now: test(get(payload))
    first, second = keys
    entry = _FUSERS.get(id(operator.factory))
    if entry is not None and entry[0] is operator.factory:
        fused = entry[1](first, second, expected, condition.ignore_case)
        if fused is not None:
            return fused
    if first == second:
        return lambda payload, now: test(payload.get(first, MISSING))
    return lambda payload, now: test(get(payload))


def index_values(condition: Condition, registry: OperatorRegistry) -> frozenset[str] | None:
    """The strings that can make ``condition`` hold, for indexing rules by field value.

    Not None only for the built-in ``equals`` with a string and ``in`` with a list of strings,
    both case-sensitive. The promise: when the condition holds, the field's value ``a`` is either
    an exact ``str`` in the returned set, or an instance of a ``str`` subclass, a list or a
    tuple; and when ``a`` is an exact ``str`` in the set, the condition holds.
    """
    operator = registry.get(condition.operator)
    if operator is None or condition.ignore_case or operator.timed_factory is not None:
        return None
    if (
        operator.factory is _equals
        and operator.prepare is _any_json
        and isinstance(condition.value, str)
    ):
        return frozenset((condition.value,))
    if (
        operator.factory is _in
        and operator.prepare is _needs_list
        and isinstance(condition.value, list)
        and all(isinstance(x, str) for x in condition.value)
    ):
        return frozenset(condition.value)
    return None


def compile_condition(
    node: ConditionNode, registry: OperatorRegistry, location: str = "conditions"
) -> CompiledCondition:
    """Compile a condition tree. Raises ``ValueError("<location>: <problem>")`` on bad input."""
    if isinstance(node, Condition):
        try:
            return _leaf(node, registry)
        except ValueError as exc:
            raise ValueError(f"{location} (field {node.field!r}): {exc}") from None
    parts = [
        compile_condition(child, registry, f"{location}.{node.kind}[{i}]")
        for i, child in enumerate(node.conditions)
    ]
    return combine(node.kind, parts)


def combine(kind: str, parts: list[CompiledCondition]) -> CompiledCondition:
    """Join compiled conditions with ``all`` / ``any`` / ``not``."""
    if kind == "not":
        (inner,) = parts
        return lambda payload, now: not inner(payload, now)
    if kind == "any":
        if len(parts) == 1:
            return parts[0]
        if len(parts) == 2:
            first, second = parts
            return lambda payload, now: first(payload, now) or second(payload, now)
        some = tuple(parts)

        def any_of(payload: Mapping[str, Any], now: datetime) -> bool:
            for part in some:  # noqa: SIM110 - a loop is faster than any() over a generator
                if part(payload, now):
                    return True
            return False

        return any_of
    if not parts:
        return lambda payload, now: True
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda payload, now: first(payload, now) and second(payload, now)
    every = tuple(parts)

    def all_of(payload: Mapping[str, Any], now: datetime) -> bool:
        for part in every:  # noqa: SIM110 - a loop is faster than all() over a generator
            if not part(payload, now):
                return False
        return True

    return all_of


def describe(node: ConditionNode) -> str:
    """A short human reading of a condition, for explanations and logs."""
    if isinstance(node, ConditionGroup):
        inner = f" {node.kind} ".join(describe(c) for c in node.conditions)
        return f"not ({inner})" if node.kind == "not" else f"({inner})"
    suffix = " (ignoring case)" if node.ignore_case else ""
    return f"{node.field} {node.operator} {node.value!r}{suffix}"
