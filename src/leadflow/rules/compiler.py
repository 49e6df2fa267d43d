"""Compilation: condition trees into plain Python predicates ``(payload, event_time) -> bool``.

The general form of a leaf is ``test(get(payload))``: :func:`~.operators.field_getter` reads the
field and the operator's predicate tests it. A leaf on a one-segment path with a common built-in
operator compiles instead into one private "fused" closure that reads the field and tests it in one
call. The fused form is an optimisation, never a variant: a differential property test
(``tests/test_properties.py``) holds it to the general form on random conditions and payloads.
``compile_condition(..., fused=False)`` gives the general form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ..limits import DEFAULT_LIMITS, Limits
from ..models import Condition, ConditionGroup, ConditionNode
from .operators import (
    MISSING,
    Operator,
    OperatorRegistry,
    _any_json,
    _contains,
    _equals,
    _exists,
    _greater_or_equal,
    _greater_than,
    _in,
    _is_number,
    _less_or_equal,
    _less_than,
    _needs_list,
    _not_contains,
    _not_equals,
    _not_exists,
    _not_in,
    field_getter,
    single_key,
)

__all__ = [
    "CompiledCondition",
    "combine",
    "compile_condition",
    "describe",
    "index_values",
]

CompiledCondition = Callable[[Mapping[str, Any], datetime], bool]
"""A compiled condition (tree): ``(payload, event_time) -> bool``."""

Factory = Callable[[Any, bool], Callable[[Any], bool]]

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


# The built-in factories' fused forms, keyed by the factory function itself: an operator
# registered later (another factory) never picks up a built-in's fused form.
_FUSERS: dict[Factory, _Fuser] = {
    factory: fuser
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


def _fuser(factory: Factory) -> _Fuser | None:
    try:
        return _FUSERS.get(factory)
    except TypeError:  # a host's factory need not be hashable
        return None


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


def _leaf(condition: Condition, registry: OperatorRegistry, fused: bool) -> CompiledCondition:
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
    fuser = _fuser(operator.factory) if fused else None
    if fuser is not None:
        fast = fuser(first, second, expected, condition.ignore_case)
        if fast is not None:
            return fast
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
    node: ConditionNode,
    registry: OperatorRegistry,
    location: str = "conditions",
    *,
    limits: Limits = DEFAULT_LIMITS,
    fused: bool = True,
    budget: list[int] | None = None,
) -> CompiledCondition:
    """Compile a condition tree into ``(payload, event_time) -> bool``.

    Raises ``ValueError("<location>: <problem>")`` for an unknown operator, a value the operator
    refuses, a list value longer than ``limits.operator_values``, groups nested deeper than
    ``limits.condition_depth`` or more than ``limits.conditions_per_rule`` nodes. ``fused=False``
    compiles every leaf in the general form (for the differential test); the result is the same
    function of the payload either way. ``budget`` (a one-item list) counts conditions down across
    several calls, e.g. over the top-level conditions of one rule.
    """
    if budget is None:
        budget = [limits.conditions_per_rule]
    return _compile(node, registry, location, limits, fused, 0, budget)


def _compile(
    node: ConditionNode,
    registry: OperatorRegistry,
    location: str,
    limits: Limits,
    fused: bool,
    depth: int,
    budget: list[int],
) -> CompiledCondition:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(
            f"{location}: more than {limits.conditions_per_rule} conditions in one rule "
            "(limits.conditions_per_rule)"
        )
    if isinstance(node, Condition):
        try:
            value = node.value
            if isinstance(value, list) and len(value) > limits.operator_values:
                raise ValueError(
                    f"operator {node.operator!r}: value lists are limited to "
                    f"{limits.operator_values} items (limits.operator_values)"
                )
            return _leaf(node, registry, fused)
        except ValueError as exc:
            raise ValueError(f"{location} (field {node.field!r}): {exc}") from None
    if depth >= limits.condition_depth:
        raise ValueError(
            f"{location}: condition groups nest deeper than {limits.condition_depth} levels "
            "(limits.condition_depth)"
        )
    parts = [
        _compile(child, registry, f"{location}.{node.kind}[{i}]", limits, fused, depth + 1, budget)
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
