"""What the reference activity repository computes over stored activities: whether one
matches a filter, the sort stand-in for a missing date, and the statistics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ...models import Activity, ActivityState
from ...queries import ActivityFilter, ActivityStatistics

__all__ = ["EARLIEST", "matches", "statistics_of", "when"]

EARLIEST = datetime.min.replace(tzinfo=UTC)
"""Stands for a missing date in sort keys (which put missing values first)."""


def when(value: datetime | None) -> tuple[bool, datetime]:
    """A sortable stand-in for an optional date: missing dates first, then by date."""
    return (value is not None, value if value is not None else EARLIEST)


def _within(value: datetime | None, low: datetime | None, high: datetime | None) -> bool:
    """``low <= value < high`` (either bound may be open); a missing value is never in a
    range, and always in no range at all."""
    if low is None and high is None:
        return True
    return value is not None and (low is None or value >= low) and (high is None or value < high)


def matches(a: Activity, f: ActivityFilter) -> bool:
    """Whether ``a`` meets every criterion of ``f``."""
    return (
        (f.opportunity_id is None or a.opportunity_id == f.opportunity_id)
        and (f.customer_id is None or a.customer_id == f.customer_id)
        and (f.assigned_to is None or a.assigned_to == f.assigned_to)
        and (f.activity_types is None or a.activity_type in f.activity_types)
        and (f.outcomes is None or a.outcome in f.outcomes)
        and (f.automation_rule_id is None or a.metadata.automation_rule_id == f.automation_rule_id)
        # ActivityFilter requires as_of for pending / overdue.
        and (f.state is None or a.state(f.as_of or EARLIEST) is f.state)
        and _within(a.created_at, f.created_from, f.created_to)
        and _within(a.due_date, f.due_from, f.due_to)
        and _within(a.scheduled_date, f.scheduled_from, f.scheduled_to)
        and _within(a.completed_date, f.completed_from, f.completed_to)
    )


def statistics_of(activities: Sequence[Activity], as_of: datetime) -> ActivityStatistics:
    """The aggregates of :class:`ActivityStatistics` over ``activities``. Cancelled ones are
    left out: they are no work, done or to do."""
    counted = [a for a in activities if a.cancelled_at is None]
    total = len(counted)
    # Counted by member, named once per member (an enum's ``.value`` is a slow property).
    by_type = {kind.value: n for kind, n in Counter(a.activity_type for a in counted).items()}
    by_outcome = {
        outcome.value: n
        for outcome, n in Counter(a.outcome for a in counted if a.outcome is not None).items()
    }
    by_assignee = Counter(a.assigned_to for a in counted if a.assigned_to is not None)
    done = [a for a in counted if a.completed_date is not None]
    # ``a.state(as_of) is OVERDUE`` for a counted (not cancelled) activity, without the call.
    overdue = sum(
        1
        for a in counted
        if a.completed_date is None and a.due_date is not None and a.due_date < as_of
    )
    by_state = {
        ActivityState.PENDING.value: total - len(done) - overdue,
        ActivityState.OVERDUE.value: overdue,
        ActivityState.COMPLETED.value: len(done),
    }
    # Time to complete, and per opportunity from its first creation to its first completion:
    # only completed activities are timed, and only the opportunities with one have a first
    # creation that counts (open ones, e.g. every overdue one, are not walked for it).
    spent = timedelta()
    timed = 0
    first_done: dict[str, datetime] = {}
    for a in done:
        if a.created_at is None or a.completed_date is None:
            continue
        o = a.opportunity_id
        spent += a.completed_date - a.created_at
        timed += 1
        if o not in first_done or a.completed_date < first_done[o]:
            first_done[o] = a.completed_date
    first_created: dict[str, datetime] = {}
    if first_done:
        for a in counted:
            o = a.opportunity_id
            if a.created_at is None or o not in first_done:
                continue
            if o not in first_created or a.created_at < first_created[o]:
                first_created[o] = a.created_at
    waited = sum((t - first_created[o] for o, t in first_done.items()), timedelta())
    return ActivityStatistics(
        as_of=as_of,
        total=total,
        by_type=by_type,
        by_outcome=by_outcome,
        by_state={state: n for state, n in by_state.items() if n},
        by_assignee=dict(by_assignee),
        completion_rate=len(done) / total if total else 0.0,
        mean_time_to_complete=spent / timed if timed else None,
        mean_time_to_first_completion=waited / len(first_done) if first_done else None,
    )
