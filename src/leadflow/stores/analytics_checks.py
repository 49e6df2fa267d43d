"""Checks the analytics stores of every backend share (the same refusals and limits on every
backend), and the runtime's analytics filters use: periods, filter values, opportunity ids,
groupings."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Final

from ..errors import InvalidInputError
from ..fields import ensure_utc

__all__ = [
    "MAX_FACTS",
    "MAX_IDS",
    "check_buckets",
    "check_grouping",
    "check_ids",
    "check_parts",
    "check_period",
    "check_stages",
    "check_values",
]

MAX_FACTS: Final = 1_000_000
"""The largest ``limit`` a query takes."""

MAX_IDS: Final = 100_000
"""The most opportunity ids :meth:`~leadflow.ports.AnalyticsStore.arrivals_of` takes."""


def check_period(start: object, end: object) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC, else :class:`InvalidInputError`: both aware datetimes and
    ``start < end``."""
    for value, field in ((start, "start"), (end, "end")):
        if not isinstance(value, datetime):
            raise InvalidInputError(f"expected a datetime, got {value!r}", field=field)
    assert isinstance(start, datetime) and isinstance(end, datetime)
    start, end = ensure_utc(start, "start"), ensure_utc(end, "end")
    if not start < end:
        raise InvalidInputError("start must be before end", field="end")
    return start, end


def check_values(values: object, field: str) -> frozenset[str] | None:
    """A filter's values as a set (None: no filter), else :class:`InvalidInputError`: a
    collection (not a string) of at most 1,000 strings."""
    if values is None:
        return None
    if isinstance(values, str | bytes) or not isinstance(values, Collection):
        raise InvalidInputError("expected a collection of strings", field=field)
    if len(values) > 1000 or not all(isinstance(value, str) for value in values):
        raise InvalidInputError("expected at most 1,000 strings", field=field)
    return frozenset(values)


def check_ids(values: object) -> builtins.list[str]:
    """Opportunity ids, sorted and distinct, else :class:`InvalidInputError`: a collection (not
    a string) of at most :data:`MAX_IDS` strings."""
    if isinstance(values, str | bytes) or not isinstance(values, Collection):
        raise InvalidInputError("expected a collection of ids", field="opportunity_ids")
    if len(values) > MAX_IDS or not all(isinstance(value, str) for value in values):
        raise InvalidInputError("expected at most 100,000 ids", field="opportunity_ids")
    return sorted(set(values))


def check_grouping(by: object, keys: object) -> frozenset[str | None] | None:
    """``keys`` as a set (None: all), after checking ``by`` and ``keys``
    (:class:`InvalidInputError` naming the field)."""
    if by not in ("assigned_to", "rule_id"):
        raise InvalidInputError("expected assigned_to or rule_id", field="by")
    if keys is None:
        return None
    if isinstance(keys, str | bytes) or not isinstance(keys, Collection):
        raise InvalidInputError("expected a collection of names", field="keys")
    if len(keys) > 1000 or not all(key is None or isinstance(key, str) for key in keys):
        raise InvalidInputError("expected at most 1,000 names or None", field="keys")
    return frozenset(keys)


def check_parts(median: object, opportunities: object) -> tuple[bool, bool]:
    """``completion_groups``' ``median`` and ``opportunities`` (each a bool, else
    :class:`InvalidInputError` naming it)."""
    for field, value in (("median", median), ("opportunities", opportunities)):
        if not isinstance(value, bool):
            raise InvalidInputError("expected True or False", field=field)
    return bool(median), bool(opportunities)


def check_buckets(
    width: object, by: object, keys: object
) -> tuple[timedelta, str | None, frozenset[str | None] | None]:
    """``(width, by, keys)`` of a bucketed count, else :class:`InvalidInputError` naming the
    field: ``width`` a timedelta of at least a second, ``by`` None or as
    :func:`check_grouping` (``keys`` then too; without ``by``, ``keys`` must be None)."""
    if not isinstance(width, timedelta) or width < timedelta(seconds=1):
        raise InvalidInputError("expected a timedelta of at least a second", field="width")
    if by is None:
        if keys is not None:
            raise InvalidInputError("keys need a grouping (by)", field="keys")
        return width, None, None
    wanted = check_grouping(by, keys)
    assert isinstance(by, str)
    return width, by, wanted


def check_stages(stages: object) -> tuple[str, ...]:
    """The funnel's ``stages``, else :class:`InvalidInputError`: 1 to 50 distinct strings in
    a sequence (not a string)."""
    if (
        isinstance(stages, str | bytes)
        or not isinstance(stages, Sequence)
        or not 0 < len(stages) <= 50
        or not all(isinstance(stage, str) for stage in stages)
        or len(set(stages)) != len(stages)
    ):
        raise InvalidInputError("expected 1 to 50 distinct stage names", field="stages")
    return tuple(stages)
