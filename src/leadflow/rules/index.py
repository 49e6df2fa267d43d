"""The per-event-type rule index: which compiled rules to test for a payload, in order.

An optimisation only: ``tests/test_engine_index.py`` checks that an engine with the index forced
on for every bucket and one with it switched off match every event the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from operator import itemgetter
from typing import Any

from ..models import Action, Condition, FollowUpRule
from .compiler import CompiledCondition, index_values
from .operators import MISSING, OperatorRegistry, field_getter, single_key

__all__ = ["Bucket", "CompiledRule", "Entry", "Plan"]

# An action plan: (index, action, fixed delay or None when the delay is business time, whether
# the fixed delay is non-zero).
Plan = tuple[int, Action, timedelta | None, bool]

# What the hot loops read for one rule: (conditions that must all hold, the rule, its
# stop_processing flag, its action plans).
Entry = tuple[tuple[CompiledCondition, ...], FollowUpRule, bool, tuple[Plan, ...]]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A loaded rule: its top-level conditions compiled (all must hold) and its action plans."""

    rule: FollowUpRule
    tests: tuple[CompiledCondition, ...]
    plans: tuple[Plan, ...]
    stop: bool

    @property
    def entry(self) -> Entry:
        return (self.tests, self.rule, self.stop, self.plans)


# Buckets with fewer rules than this are scanned in full: an index would cost more than it saves.
_INDEX_MIN_RULES = 4
# Fields other than the main one are indexed only in buckets of at least this many rules.
_SECONDARY_MIN_RULES = 12

_STR_OR_SEQUENCE = (str, list, tuple)

# One secondary indexed field: (first name, twin name, getter for dotted paths or None,
# exact string value -> candidate codes, codes of every rule filed under this field).
_Group = tuple[
    str, str, Callable[[Mapping[str, Any]], Any] | None, dict[str, tuple[int, ...]], tuple[int, ...]
]


class Bucket:
    """The active rules of one event type, in application order, with an optional index.

    The index files a rule whose top-level conditions include a case-sensitive ``equals`` with
    a string (or ``in`` with strings) on some field under those strings; the rule is tested only
    when the event's field holds one of them. A bucket has a main field (the one that files the
    most rules) and, when large, secondary fields; rules filed under neither are always tested.

    For the main field the candidates are laid out in advance for every string: the entries to
    test, in order. Secondary fields add candidates at run time, merged by position. A
    candidate is coded ``2 * position + 1`` when the lookup proved its filed condition (only its
    other conditions are tested) and ``2 * position`` when all its conditions must be tested,
    which happens when the field holds a ``str`` subclass, a list or a tuple. Either way the
    order of the entries is the order of the rules, as without the index.
    """

    __slots__ = (
        "by_value",
        "choices",
        "default",
        "entries",
        "fallback",
        "first",
        "getter",
        "groups",
        "indexed",
        "second",
    )

    def __init__(self, rules: list[CompiledRule], operators: OperatorRegistry) -> None:
        self.entries: tuple[Entry, ...] = tuple(c.entry for c in rules)
        self.indexed = False
        if len(rules) < _INDEX_MIN_RULES:
            return
        # Every indexable top-level condition of every rule: position -> [(path, values, i)].
        options: list[list[tuple[str, frozenset[str], int]]] = []
        counts: dict[str, int] = {}
        for compiled in rules:
            found = []
            for i, node in enumerate(compiled.rule.trigger.conditions):
                if isinstance(node, Condition):
                    values = index_values(node, operators)
                    if values is not None:
                        found.append((node.field, values, i))
            options.append(found)
            for path in {path for path, _, _ in found}:
                counts[path] = counts.get(path, 0) + 1
        if not counts:
            return
        main = max(counts, key=lambda path: counts[path])  # first seen wins ties
        secondary = len(rules) >= _SECONDARY_MIN_RULES

        choices: list[Entry] = []
        plain: list[int] = []  # codes tested for every event
        main_table: dict[str, list[int]] = {}
        main_every: list[int] = []
        tables: dict[str, dict[str, list[int]]] = {}
        every: dict[str, list[int]] = {}
        for position, (compiled, found) in enumerate(zip(rules, options, strict=True)):
            full = compiled.entry
            choices.append(full)
            usable = [f for f in found if f[0] == main] or (found if secondary else [])
            if not usable:
                choices.append(full)  # never looked up
                plain.append(2 * position)
                continue
            path, values, i = min(usable, key=lambda f: len(f[1]))
            rest = compiled.tests[:i] + compiled.tests[i + 1 :]
            choices.append((rest, compiled.rule, compiled.stop, compiled.plans))
            table = main_table if path == main else tables.setdefault(path, {})
            for value in values:
                table.setdefault(value, []).append(2 * position + 1)
            (main_every if path == main else every.setdefault(path, [])).append(2 * position)

        self.choices = tuple(choices)
        self.first, self.second, self.getter = _reader(main)
        self.groups: tuple[_Group, ...] = tuple(
            (*_reader(path), {v: tuple(c) for v, c in table.items()}, tuple(every[path]))
            for path, table in tables.items()
        )
        # With secondary fields the main lookup yields codes to merge; without, entries.
        lay_out = self._codes if self.groups else self._entries
        self.by_value = {v: lay_out(plain + codes) for v, codes in main_table.items()}
        self.default = lay_out(plain)
        self.fallback = lay_out(plain + main_every)
        self.indexed = True

    def _codes(self, codes: list[int]) -> tuple[Any, ...]:
        return tuple(sorted(codes))

    def _entries(self, codes: list[int]) -> tuple[Any, ...]:
        return tuple(self.choices[code] for code in sorted(codes))

    def select(self, payload: Mapping[str, Any]) -> Sequence[Entry]:
        """The entries to test for ``payload``, in application order (needs ``indexed``)."""
        if self.getter is None:
            value = payload.get(self.first, MISSING)
            if value is MISSING:
                value = payload.get(self.second, MISSING)
        else:
            value = self.getter(payload)
        if type(value) is str:
            picked = self.by_value.get(value, self.default)
        elif isinstance(value, _STR_OR_SEQUENCE):
            picked = self.fallback
        else:
            picked = self.default
        if not self.groups:
            return picked
        codes = list(picked)
        for first, second, getter, table, every in self.groups:
            if getter is None:
                value = payload.get(first, MISSING)
                if value is MISSING:
                    value = payload.get(second, MISSING)
            else:
                value = getter(payload)
            if type(value) is str:
                hit = table.get(value)
                if hit is not None:
                    codes += hit
            elif isinstance(value, _STR_OR_SEQUENCE):
                codes += every
        codes.sort()
        if len(codes) > 1:
            return itemgetter(*codes)(self.choices)  # type: ignore[no-any-return]
        return [self.choices[code] for code in codes]


def _reader(path: str) -> tuple[str, str, Callable[[Mapping[str, Any]], Any] | None]:
    """How the index reads a field: the two names of a one-segment path, else a getter."""
    keys = single_key(path)
    if keys is not None:
        return (keys[0], keys[1], None)
    return ("", "", field_getter(path))
