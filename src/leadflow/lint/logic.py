"""Reasoning about conditions without an event: can a conjunction ever hold, does one rule's
trigger imply another's.

Everything here is *sound and conservative*: :func:`contradiction` answers only when no payload
at all can satisfy the conditions (otherwise None, "don't know" included), and :func:`implies`
answers True only when every payload satisfying the premises satisfies the conclusion. Unknown
(host) operators and time-relative operators are never reasoned about beyond identity.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..models import Condition, ConditionGroup, ConditionNode
from ..rules import OperatorRegistry
from ..rules.compiler import compile_condition, describe

__all__ = [
    "Leaf",
    "canonical_json",
    "conjunction",
    "contradiction",
    "field_key",
    "implies",
    "never_holds",
]

Leaf = Condition

_PRESENCE = frozenset(
    {
        "equals",
        "in",
        "contains",
        "starts_with",
        "ends_with",
        "greater_than",
        "greater_or_equal",
        "less_than",
        "less_or_equal",
        "between",
        "exists",
        "older_than",
        "newer_than",
    }
)
"""Built-in operators that never hold for a missing or null field (``equals None`` aside)."""
_ORDERING = {"greater_than", "greater_or_equal", "less_than", "less_or_equal", "between"}
_TIMED = {"older_than", "newer_than"}


def field_key(path: str) -> str:
    """A field path as the engine reads it: ``lead_source`` and ``leadSource`` are one key."""
    from pydantic.alias_generators import to_camel

    return ".".join(to_camel(s) if "_" in s else s for s in path.split("."))


def conjunction(nodes: Iterable[ConditionNode]) -> list[Condition]:
    """The leaves that must all hold for ``nodes`` (a list meaning *all*) to hold: top-level
    leaves and those of nested ``all`` groups. ``any``/``not`` groups are left out (dropping a
    premise keeps every conclusion drawn from the rest sound)."""
    out: list[Condition] = []
    for node in nodes:
        if isinstance(node, Condition):
            out.append(node)
        elif node.kind == "all":
            out.extend(conjunction(node.conditions))
    return out


def _is_builtin(leaf: Condition, operators: OperatorRegistry) -> bool:
    """Only the built-in operators (not a host's replacement) are reasoned about."""
    default = OperatorRegistry.builtin(leaf.operator)
    return default is not None and operators.get(leaf.operator) is default


def _fixed_value(leaf: Condition) -> tuple[bool, Any]:
    """(True, v) when ``leaf`` pins the field to exactly ``v`` (an ``equals`` on a scalar)."""
    if leaf.operator != "equals":
        return False, None
    value = leaf.value
    if isinstance(value, str):
        return (not leaf.ignore_case), value
    if value is None or isinstance(value, bool | int | float):
        return True, value
    return False, None


def _payload(path: str, value: Any) -> dict[str, Any] | None:
    segments = path.split(".")
    if any(s.isdigit() for s in segments):
        return None
    payload: Any = value
    for segment in reversed(segments):
        payload = {segment: payload}
    assert isinstance(payload, dict)
    return payload


def _holds_for(leaf: Condition, value: Any, operators: OperatorRegistry) -> bool | None:
    """Whether ``leaf`` holds when its field is exactly ``value`` (None: cannot tell)."""
    if leaf.operator in _TIMED:
        return None
    payload = _payload(leaf.field, value)
    if payload is None:
        return None
    try:
        test = compile_condition(leaf, operators)
        return bool(test(payload, datetime(2000, 1, 1, tzinfo=UTC)))
    except Exception:
        return None


def _interval(leaf: Condition, operators: OperatorRegistry) -> tuple[str, Any, bool, Any, bool]:
    """(kind, low, low_inclusive, high, high_inclusive) of an ordering leaf; None bounds are
    open."""
    operator = operators.get(leaf.operator)
    assert operator is not None
    prepared = operator.prepare(leaf.value)
    if leaf.operator == "between":
        low, high = prepared
        return _kind(low), low, True, high, True
    kind = _kind(prepared)
    if leaf.operator in ("greater_than", "greater_or_equal"):
        return kind, prepared, leaf.operator == "greater_or_equal", None, False
    return kind, None, False, prepared, leaf.operator == "less_or_equal"


def _kind(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return "datetime" if isinstance(value, datetime) else "string"


def never_holds(leaf: Condition, operators: OperatorRegistry) -> str | None:
    """Why ``leaf`` alone can never hold, or None."""
    if leaf.operator == "in" and leaf.value == [] and _is_builtin(leaf, operators):
        return f"{describe(leaf)}: 'in' an empty list never holds"
    return None


def contradiction(
    leaves: Sequence[Condition],
    operators: OperatorRegistry,
    *,
    scalar: frozenset[str] = frozenset(),
) -> str | None:
    """Why the conjunction of ``leaves`` can never hold, or None when it may (or we cannot
    tell). ``scalar`` names the field keys known never to hold a list (from a payload schema),
    which lets two ``in`` sets be intersected."""
    by_field: dict[str, list[Condition]] = {}
    for leaf in leaves:
        if not _is_builtin(leaf, operators):
            continue
        reason = never_holds(leaf, operators)
        if reason is not None:
            return reason
        by_field.setdefault(field_key(leaf.field), []).append(leaf)
    for key, group in by_field.items():
        reason = _field_contradiction(group, operators, key in scalar)
        if reason is not None:
            return reason
    return None


def _field_contradiction(
    group: list[Condition], operators: OperatorRegistry, scalar: bool
) -> str | None:
    for leaf in group:
        pinned, value = _fixed_value(leaf)
        if not pinned:
            continue
        for other in group:
            if other is not leaf and _holds_for(other, value, operators) is False:
                return f"{describe(leaf)} and {describe(other)} cannot both hold"
    absent = [leaf for leaf in group if leaf.operator == "not_exists"]
    if absent:
        for leaf in group:
            if leaf.operator in _PRESENCE and not (
                leaf.operator == "equals" and leaf.value is None
            ):
                return f"{describe(absent[0])} and {describe(leaf)} cannot both hold"
    ordering = [leaf for leaf in group if leaf.operator in _ORDERING]
    if ordering:
        reason = _empty_interval(ordering, operators)
        if reason is not None:
            return reason
    positive = [leaf for leaf in group if leaf.operator == "in" and _string_set(leaf) is not None]
    for leaf in positive:
        members = _string_set(leaf)
        assert members is not None
        for other in group:
            excluded = _string_set(other) if other.operator == "not_in" else None
            if excluded is not None and members <= excluded:
                return f"{describe(leaf)} and {describe(other)} cannot both hold"
            if scalar and other is not leaf and other.operator == "in":
                allowed = _string_set(other)
                if allowed is not None and not members & allowed:
                    return f"{describe(leaf)} and {describe(other)} cannot both hold"
    return None


def _string_set(leaf: Condition) -> frozenset[str] | None:
    value = leaf.value
    if leaf.ignore_case or not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        return None
    return frozenset(value)


def _empty_interval(ordering: list[Condition], operators: OperatorRegistry) -> str | None:
    try:
        bounds = [(leaf, _interval(leaf, operators)) for leaf in ordering]
    except (ValueError, TypeError):
        return None
    kinds = {b[0] for _, b in bounds}
    if len(kinds) > 1:
        first, second = bounds[0][0], next(leaf for leaf, b in bounds if b[0] != bounds[0][1][0])
        return (
            f"{describe(first)} and {describe(second)} compare with values of different kinds: "
            "no value satisfies both"
        )
    low: tuple[Any, bool, Condition] | None = None
    high: tuple[Any, bool, Condition] | None = None
    for leaf, (_, lo, lo_inc, hi, hi_inc) in bounds:
        if lo is not None and (low is None or lo > low[0] or (lo == low[0] and not lo_inc)):
            low = (lo, lo_inc, leaf)
        if hi is not None and (high is None or hi < high[0] or (hi == high[0] and not hi_inc)):
            high = (hi, hi_inc, leaf)
    if low is None or high is None:
        return None
    if low[0] > high[0] or (low[0] == high[0] and not (low[1] and high[1])):
        return f"{describe(low[2])} and {describe(high[2])} leave no value between them"
    return None


# --------------------------------------------------------------------------- implication


def _leaf_implies(premise: Condition, conclusion: Condition, operators: OperatorRegistry) -> bool:
    if field_key(premise.field) != field_key(conclusion.field):
        return False
    if _same(premise, conclusion):
        return True
    if not (_is_builtin(premise, operators) and _is_builtin(conclusion, operators)):
        return False
    pinned, value = _fixed_value(premise)
    if pinned:
        return _holds_for(conclusion, value, operators) is True
    if conclusion.operator == "exists" and premise.operator in _PRESENCE - {"equals"}:
        return True
    if premise.operator == "in" and conclusion.operator == "in":
        inner, outer = _string_set(premise), _string_set(conclusion)
        return inner is not None and outer is not None and inner <= outer
    if premise.operator in _ORDERING and conclusion.operator in _ORDERING:
        return _interval_within(premise, conclusion, operators)
    return False


def _interval_within(inner: Condition, outer: Condition, operators: OperatorRegistry) -> bool:
    try:
        k1, lo1, lo1_inc, hi1, hi1_inc = _interval(inner, operators)
        k2, lo2, lo2_inc, hi2, hi2_inc = _interval(outer, operators)
    except (ValueError, TypeError):
        return False
    if k1 != k2 or k1 == "string":
        return False
    if lo2 is not None and (lo1 is None or lo1 < lo2 or (lo1 == lo2 and lo1_inc and not lo2_inc)):
        return False
    return hi2 is None or not (hi1 is None or hi1 > hi2 or (hi1 == hi2 and hi1_inc and not hi2_inc))


def _same(a: Condition, b: Condition) -> bool:
    return (
        a.operator == b.operator
        and a.ignore_case == b.ignore_case
        and canonical_json(a.value) == canonical_json(b.value)
    )


def implies(
    premises: Sequence[Condition], conclusion: ConditionNode, operators: OperatorRegistry
) -> bool:
    """True only when every payload satisfying all ``premises`` satisfies ``conclusion``."""
    if isinstance(conclusion, Condition):
        return any(_leaf_implies(p, conclusion, operators) for p in premises)
    assert isinstance(conclusion, ConditionGroup)
    if conclusion.kind == "all":
        return all(implies(premises, c, operators) for c in conclusion.conditions)
    if conclusion.kind == "any":
        return any(implies(premises, c, operators) for c in conclusion.conditions)
    return False


def canonical_json(value: Any) -> str:
    """A stable text form of a JSON-like value (keys sorted), for comparing rule parts."""
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
