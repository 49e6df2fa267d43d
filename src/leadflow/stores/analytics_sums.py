"""Sums of the analytic facts made in Python, for the stores that keep the facts in process
memory (or, for now, MongoDB): the bucketed counts and the won opportunities' touches, from
the store's own period queries. SQL makes them in the database."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Protocol

from ..errors import InvalidInputError
from ..facts import Completion, CompletionGroup, StatusChange, Touches, groups_of, touches_of
from .analytics_checks import check_grouping, check_period

__all__ = ["buckets_of", "groups_in", "won_touches_of"]


class _Reads(Protocol):
    def status_changes(
        self, start: datetime, end: datetime, *, limit: int = ...
    ) -> list[StatusChange]: ...

    def completions_of(
        self, opportunity_ids: Collection[str], start: datetime, end: datetime
    ) -> list[Completion]: ...


def groups_in(
    completions: list[Completion], by: str, keys: Collection[str | None] | None
) -> list[CompletionGroup]:
    """The store's ``completion_groups`` from the period's ``completions``: those whose ``by``
    is among ``keys`` (all when None), grouped (:func:`~leadflow.facts.groups_of`)."""
    wanted = check_grouping(by, keys)
    if wanted is not None:
        completions = [c for c in completions if getattr(c, by) in wanted]
    return groups_of(completions, by)


def buckets_of(
    completions: Iterable[Completion],
    start: datetime,
    width: timedelta,
    by: str | None,
    wanted: Collection[str | None] | None,
) -> dict[int, CompletionGroup]:
    """``completions`` (all at or after ``start``) counted per bucket of ``width`` from
    ``start``, of those whose ``by`` is in ``wanted`` when both are given."""
    counts: dict[int, list[int]] = {}
    for completion in completions:
        if by is not None and wanted is not None and getattr(completion, by) not in wanted:
            continue
        n = (completion.completed_at - start) // width
        sums = counts.get(n)
        if sums is None:
            sums = counts[n] = [0, 0, 0]
        sums[0] += 1
        if completion.due_at is not None:
            sums[1] += 1
            sums[2] += completion.completed_at <= completion.due_at
    return {
        n: CompletionGroup(None, done, due, on_time, None)
        for n, (done, due, on_time) in sorted(counts.items())
    }


def won_touches_of(
    store: _Reads,
    start: datetime,
    end: datetime,
    status: str,
    keys: Collection[str | None] | None,
) -> list[Touches]:
    """:func:`~leadflow.facts.touches_of` of the opportunities changed to ``status`` in the
    period, from ``store``'s status changes and completions of them."""
    start, end = check_period(start, end)
    if not isinstance(status, str):
        raise InvalidInputError(f"expected a status, got {status!r}", field="status")
    wanted = check_grouping("rule_id", keys)
    won_at: dict[str, datetime] = {}
    for change in store.status_changes(start, end):
        if change.to_status == status and change.opportunity_id not in won_at:
            won_at[change.opportunity_id] = change.changed_at
    found: list[Completion] = []
    ids = sorted(won_at)
    for first in range(0, len(ids), 100_000):
        found += store.completions_of(ids[first : first + 100_000], start, end)
    return touches_of(won_at, found, wanted)
