"""The contract's reference semantics: plain-Python statements of what the queries return,
used to check a backend's answers on fixed and generated data."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from ...models import Activity
from ...ports import ActivityRepository
from ...queries import ActivityFilter, ActivitySort, ActivityStatistics
from .data import BASE_TIME

__all__ = [
    "all_pages",
    "is_overdue",
    "matches",
    "reference_last_times",
    "reference_overdue",
    "reference_pending",
    "reference_scoped",
    "reference_statistics",
    "reference_timeline",
    "sorted_like",
]


def matches(a: Activity, f: ActivityFilter) -> bool:
    checks = (
        f.opportunity_id is None or a.opportunity_id == f.opportunity_id,
        f.customer_id is None or a.customer_id == f.customer_id,
        f.assigned_to is None or a.assigned_to == f.assigned_to,
        f.activity_types is None or a.activity_type in f.activity_types,
        f.outcomes is None or a.outcome in f.outcomes,
        f.automation_rule_id is None or a.metadata.automation_rule_id == f.automation_rule_id,
        f.state is None or a.state(f.as_of or BASE_TIME) is f.state,
        _in(a.created_at, f.created_from, f.created_to),
        _in(a.due_date, f.due_from, f.due_to),
        _in(a.scheduled_date, f.scheduled_from, f.scheduled_to),
        _in(a.completed_date, f.completed_from, f.completed_to),
    )
    return all(checks)


def _in(value: datetime | None, low: datetime | None, high: datetime | None) -> bool:
    if low is None and high is None:
        return True
    return value is not None and (low is None or value >= low) and (high is None or value < high)


def sorted_like(activities: Iterable[Activity], sort: ActivitySort) -> list[Activity]:
    def key(a: Activity) -> tuple[bool, datetime, str]:
        value = getattr(a, sort.field)
        return (value is not None, value or BASE_TIME, a.activity_id)

    return sorted(activities, key=key, reverse=sort.descending)


def is_overdue(a: Activity, as_of: datetime) -> bool:
    return a.completed_date is None and a.due_date is not None and a.due_date < as_of


def reference_overdue(
    activities: Iterable[Activity], as_of: datetime, assigned_to: str | None, limit: int
) -> list[str]:
    found = [
        a
        for a in activities
        if is_overdue(a, as_of) and (assigned_to is None or a.assigned_to == assigned_to)
    ]
    found.sort(key=lambda a: (a.due_date, a.activity_id))
    return [a.activity_id for a in found[:limit]]


def reference_pending(
    activities: Iterable[Activity], as_of: datetime, assigned_to: str | None, limit: int
) -> list[str]:
    found = [
        a
        for a in activities
        if a.completed_date is None
        and not is_overdue(a, as_of)
        and (a.scheduled_date is None or a.scheduled_date <= as_of)
        and (assigned_to is None or a.assigned_to == assigned_to)
    ]
    found.sort(key=lambda a: (a.due_date is None, a.due_date or BASE_TIME, a.activity_id))
    return [a.activity_id for a in found[:limit]]


def reference_last_times(activities: Iterable[Activity]) -> dict[str, datetime]:
    last: dict[str, datetime] = {}
    for a in activities:
        for value in (a.created_at, a.completed_date):
            if value is not None and (
                a.opportunity_id not in last or value > last[a.opportunity_id]
            ):
                last[a.opportunity_id] = value
    return last


def reference_statistics(
    activities: Iterable[Activity], f: ActivityFilter | None, as_of: datetime
) -> ActivityStatistics:
    """What :meth:`ActivityRepository.statistics` must return, computed the obvious way."""
    rows = [a for a in activities if f is None or matches(a, f)]
    done = [a for a in rows if a.completed_date is not None]

    def count(values: Iterable[str | None]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for value in values:
            if value is not None:
                counts[value] = counts.get(value, 0) + 1
        return counts

    first_created: dict[str, datetime] = {}
    first_done: dict[str, datetime] = {}
    for a in rows:
        if a.created_at is None:
            continue
        o = a.opportunity_id
        first_created[o] = min(first_created.get(o, a.created_at), a.created_at)
        if a.completed_date is not None:
            first_done[o] = min(first_done.get(o, a.completed_date), a.completed_date)
    spans = [a.completed_date - a.created_at for a in done if a.completed_date and a.created_at]
    mean_complete = sum(spans, timedelta()) / len(spans) if spans else None
    mean_first = (
        sum((t - first_created[o] for o, t in first_done.items()), timedelta()) / len(first_done)
        if first_done
        else None
    )
    return ActivityStatistics(
        as_of=as_of,
        total=len(rows),
        by_type=count(a.activity_type.value for a in rows),
        by_outcome=count(a.outcome.value if a.outcome else None for a in rows),
        by_state=count(a.state(as_of).value for a in rows),
        by_assignee=count(a.assigned_to for a in rows),
        completion_rate=len(done) / len(rows) if rows else 0.0,
        mean_time_to_complete=mean_complete,
        mean_time_to_first_completion=mean_first,
    )


def all_pages(
    repo: ActivityRepository,
    f: ActivityFilter | None = None,
    sort: ActivitySort | None = None,
    limit: int = 2,
) -> list[Activity]:
    found: list[Activity] = []
    cursor: str | None = None
    for _ in range(10_000):
        page = repo.list(f, sort=sort, limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        assert page.items, "a page with a next cursor must not be empty"
        cursor = page.next_cursor
    raise AssertionError("pagination did not end")


def reference_timeline(activities: Iterable[Activity]) -> list[Activity]:
    """:meth:`ActivityRepository.timeline` order: each activity at its completed date when
    done, else its scheduled date, else its due date, else its creation; ties by id; those
    with none of these dates first."""

    def key(a: Activity) -> tuple[bool, datetime, str]:
        when = a.completed_date or a.scheduled_date or a.due_date or a.created_at
        return (when is not None, when or BASE_TIME, a.activity_id)

    return sorted(activities, key=key)


def reference_scoped(activities: Iterable[Activity], assigned_to: str | None) -> list[Activity]:
    """``activities`` (in their order) assigned to ``assigned_to``; all when it is None."""
    return [a for a in activities if assigned_to is None or a.assigned_to == assigned_to]
