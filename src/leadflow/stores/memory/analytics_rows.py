"""The in-memory analytics store's completions as plain rows (issue 20, item 5): a tuple of
atoms per completion (no references the garbage collector must follow), made once as the
completion is recorded, with what the sums need already worked out (on time or not, seconds to
complete), so that summing a period's completions (50,000 a quarter at the issue's scale) reads
no model attributes. The sums are :func:`~leadflow.facts.groups_of` and
:func:`~leadflow.stores.analytics_sums.buckets_of` over those rows: the same definitions
(``tests/test_analytics_leads.py`` checks they agree)."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Final

from ...facts import Completion, CompletionGroup, GroupSums, Touches, groups_from_sums

__all__ = [
    "BY",
    "Row",
    "add_rows",
    "buckets_of_rows",
    "groups_of_rows",
    "row_key",
    "row_of",
    "touches_of_rows",
]

Row = tuple[str | None, str | None, str, bool, bool, float | None, str | None, datetime, str]
"""assigned to, rule id, opportunity, has a due date, completed at or before it, seconds from
creation to completion (None without a creation date), outcome, completed at, activity id
(the last two: the rows' order, :func:`row_key`)."""

BY: Final = {"assigned_to": 0, "rule_id": 1}
"""A grouping's place in a :data:`Row`."""


def row_of(completion: Completion) -> Row:
    due, done, created = completion.due_at, completion.completed_at, completion.created_at
    return (
        completion.assigned_to,
        completion.rule_id,
        completion.opportunity_id,
        due is not None,
        due is not None and done <= due,
        None if created is None else (done - created).total_seconds(),
        None if completion.outcome is None else str(completion.outcome),
        done,
        completion.activity_id,
    )


def row_key(row: Row) -> tuple[datetime, str]:
    """Where ``row`` sorts: by completion time, then activity id."""
    return row[7], row[8]


def groups_of_rows(
    rows: Iterable[Row],
    by: str,
    wanted: Collection[str | None] | None,
    *,
    median: bool = True,
    opportunities: bool = True,
) -> list[CompletionGroup]:
    """:func:`~leadflow.facts.groups_of` of the completions of ``rows`` whose ``by`` is in
    ``wanted`` (all when None); without the times to complete unless ``median`` (no median)
    and the opportunities unless ``opportunities`` (0 of them)."""
    sums: GroupSums = {}
    add_rows(sums, rows, by, wanted, median, opportunities)
    return groups_from_sums(sums)


def add_rows(
    sums: GroupSums,
    rows: Iterable[Row],
    by: str,
    wanted: Collection[str | None] | None,
    median: bool,
    opportunities: bool,
) -> None:
    """Adds the completions of ``rows`` whose ``by`` is in ``wanted`` (all when None) to
    ``sums`` (see :func:`groups_of_rows`)."""
    place = BY[by]
    for row in rows:
        key = row[0] if place == 0 else row[1]
        if wanted is not None and key not in wanted:
            continue
        found = sums.get(key)
        if found is None:
            found = sums[key] = ([0, 0, 0], [], set(), Counter())
        counts, times, on, outcomes = found
        counts[0] += 1
        if row[3]:
            counts[1] += 1
            counts[2] += row[4]
        if median and row[5] is not None:
            times.append(row[5])
        if opportunities:
            on.add(row[2])
        if row[6] is not None:
            outcomes[row[6]] += 1


def buckets_of_rows(
    rows: Sequence[Row],
    start: datetime,
    width: timedelta,
    by: str | None,
    wanted: Collection[str | None] | None,
) -> dict[int, CompletionGroup]:
    """:func:`~leadflow.stores.analytics_sums.buckets_of` of the completions of ``rows`` (all
    at or after ``start``, in time order: each bucket is a slice of them, found by bisection
    on the completion times)."""
    if wanted is not None and by is not None:
        place = BY[by]
        rows = [row for row in rows if (row[0] if place == 0 else row[1]) in wanted]
    found: dict[int, CompletionGroup] = {}
    low = 0
    while low < len(rows):
        n = (rows[low][7] - start) // width
        try:
            high = bisect_left(rows, start + (n + 1) * width, lo=low, key=_DONE)
        except OverflowError:  # the bucket ends after the last datetime
            high = len(rows)
        _, _, _, has_due, on_time, *_ = zip(*rows[low:high], strict=True)
        found[n] = CompletionGroup(None, high - low, sum(has_due), sum(on_time), None)
        low = high
    return found


_DONE = itemgetter(7)


def touches_of_rows(
    won_at: Mapping[str, datetime],
    rows_on: Mapping[str, Sequence[Row]],
    start: datetime,
    end: datetime,
    wanted: Collection[str | None] | None,
) -> list[Touches]:
    """:func:`~leadflow.facts.touches_of` of the opportunities won at ``won_at``, given each
    opportunity's rows (``rows_on``, any order): those in ``[start, end)`` whose rule id is in
    ``wanted`` (all when None) count, each won opportunity's walked once."""
    converted: dict[str | None, set[str]] = {}
    wins: Counter[str | None] = Counter()
    for opportunity, won in won_at.items():
        last: Row | None = None
        for row in rows_on.get(opportunity, ()):
            done = row[7]
            if not start <= done < end or (wanted is not None and row[1] not in wanted):
                continue
            found = converted.get(row[1])
            if found is None:
                found = converted[row[1]] = set()
            found.add(opportunity)
            if done <= won and (last is None or (done, row[8]) > (last[7], last[8])):
                last = row
        if last is not None:
            wins[last[1]] += 1
    return [
        Touches(key, len(converted[key]), wins.get(key, 0))
        for key in sorted(converted, key=lambda key: (key is not None, key or ""))
    ]
