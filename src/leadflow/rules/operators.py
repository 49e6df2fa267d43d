"""Operators: what a condition's ``operator`` names, and how values compare.

Everything here is pure: no I/O, no clock (date-relative operators receive the event's time).
Rules come from admin input, so nothing is ``eval``-ed and no regular expression is built from
rule data. In short:

* A missing field resolves to :data:`MISSING`. Only ``not_equals``, ``not_in``,
  ``not_contains`` and ``not_exists`` hold for it (they are the exact negations of
  ``equals``, ``in``, ``contains`` and ``exists``).
* Equality is strict about types: ``1 == 1.0`` but ``1 != "1"`` and ``True != 1``.
* Ordering compares numbers with numbers, strings with strings, datetimes with datetimes (an
  ISO-8601 string with an offset counts as a datetime when the rule's value is one); any other
  pair is simply false. A rule value that looks like a datetime without an offset
  (``"2026-01-05T09:00:00"``) is refused when the rule loads: it would compare as text; so is
  one outside :attr:`Limits.earliest <leadflow.limits.Limits.earliest>` .. ``latest``.
* Strings compare case-sensitively unless the condition sets ``ignoreCase``.
* No built-in operator raises on any JSON-like value.

:class:`OperatorRegistry` holds the operators one engine knows. Every
:class:`~leadflow.RuleEngine` builds a fresh one unless it is given one: registering an operator
on one engine's registry never changes another engine. Compilation lives in :mod:`.compiler`.
"""

from __future__ import annotations

import math
import operator as _op
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..documents import check_datetime
from ..errors import InvalidInputError
from ..models import Condition
from .fields import MISSING, field_getter, single_key

__all__ = [
    "MISSING",
    "Operator",
    "OperatorRegistry",
    "Predicate",
    "TimedPredicate",
    "field_getter",
    "single_key",
    "strict_equal",
]


Predicate = Callable[[Any], bool]
"""A compiled test of one field value."""

TimedPredicate = Callable[[Any, datetime], bool]
"""A compiled test that also needs the event's time."""


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


def _fold(value: Any, depth: int = 0) -> Any:
    """Case-fold strings (also inside lists) for ``ignoreCase`` comparisons.

    Lists nested deeper than any rule value may be (64 levels) are returned as they are: they
    cannot equal a rule's value anyway, and folding them must not exhaust the stack.
    """
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, list | tuple) and depth < 64:
        return [_fold(v, depth + 1) for v in value]
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


def _looks_naive(value: str) -> bool:
    """True for a string that parses as an ISO-8601 date *and time* without an offset."""
    if not (10 < len(value) <= 40 and value[:1].isdigit()):
        return False
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.tzinfo is None or parsed.utcoffset() is None


def _ordering_operand(value: Any, where: str) -> Any:
    if _is_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number")
        return value
    parsed = _parse_aware(value)
    if parsed is not None:
        # Within the limits every datetime is held to (and so convertible to UTC: one a few
        # hours from the calendar's ends is not).
        try:
            check_datetime(parsed, None)
        except InvalidInputError as exc:
            raise ValueError(f"{where} {str(value)[:40]!r}: {exc}") from None
        return parsed.astimezone(UTC)
    if isinstance(value, str):
        if _looks_naive(value):
            raise ValueError(
                f"{where} {value!r} is a datetime without a UTC offset; give one "
                f"(e.g. {value + '+00:00'!r}) so it compares as a time, not as text"
            )
        return value
    if isinstance(value, datetime):
        raise ValueError(f"{where} is a naive datetime; give it a time zone")
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
_BUILTINS_BY_NAME: dict[str, Operator] = {operator.name: operator for operator in _BUILTINS}


class OperatorRegistry:
    """The operators rules may name. Start from :meth:`default` and :meth:`register` more.

    A registry is a plain object handed to a :class:`~leadflow.RuleEngine`. An engine given no
    registry builds its own (``OperatorRegistry.default()``), so registering on one engine's
    ``engine.operators`` never changes another engine; hosts that want one set of operators
    everywhere pass the same registry to each engine. Registration is not synchronised with
    running evaluations: register before building the engines that use the operator.
    """

    def __init__(self, operators: Iterable[Operator] = ()) -> None:
        self._operators: dict[str, Operator] = {}
        for operator in operators:
            self._operators[operator.name] = operator

    @classmethod
    def default(cls) -> OperatorRegistry:
        """A new registry holding the built-in operators."""
        return cls(_BUILTINS)

    @staticmethod
    def builtin(name: str) -> Operator | None:
        """The built-in operator ``name`` (the very object :meth:`default` registers), or
        None: a registry's operator is the built-in one iff it is this object."""
        return _BUILTINS_BY_NAME.get(name)

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

    def copy(self) -> OperatorRegistry:
        """A new registry holding the same operators (registering on it leaves this one be)."""
        return OperatorRegistry(self._operators.values())

    def get(self, name: str) -> Operator | None:
        """The operator called ``name``, or None."""
        return self._operators.get(name)

    def names(self) -> list[str]:
        """Every operator name, sorted."""
        return sorted(self._operators)

    def __contains__(self, name: object) -> bool:
        return name in self._operators
