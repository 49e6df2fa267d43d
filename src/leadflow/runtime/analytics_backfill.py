"""Backfill: the analytic facts of the history a store held before it kept them.

Two sources, each optional:

- the **completed activities** of the activity store (every one, or those completed in
  ``[completed_from, completed_to)``): each yields the :class:`~leadflow.facts.Completion` its
  ``activity.completed`` event would have (type, assignee, created / due / completed times,
  outcome, the automation that created it);
- a **host-supplied event history** (``opportunity.created``, ``opportunity.status_changed``,
  ``activity.completed`` events as the host keeps them, each with its ``id`` and ``time``):
  each yields the facts :func:`~leadflow.facts.facts_of` gives a live event (lead arrivals and
  status changes exist only there: the activity store holds no lead sources nor statuses).

Every fact is keyed (:class:`~leadflow.ports.AnalyticsStore`), so a backfill run twice, or
over facts the flow already recorded, records nothing twice: it is idempotent, and the result
counts what was new. The events are all checked before anything is written: a malformed one
is :class:`~leadflow.InvalidInputError` naming it (``events[3].time``) and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from ..errors import InvalidInputError
from ..facts import Completion, facts_of
from ..models import Activity, ActivityState, Event
from ..ports import ActivityRepository, AnalyticsStore
from ..queries import ActivityFilter
from .analytics_figures import Figure

__all__ = ["MAX_EVENTS", "BackfillResult", "backfill", "completion_of"]

MAX_EVENTS: Final = 1_000_000
"""The most events one backfill takes (split a longer history into several calls)."""

_PAGE: Final = 1000


class BackfillResult(Figure):
    """What a backfill read and what it recorded anew (facts already stored are not counted)."""

    activities_read: int
    events_read: int
    arrivals: int
    status_changes: int
    completions: int


def completion_of(activity: Activity) -> Completion | None:
    """The completion fact of a completed activity (None for an open one)."""
    if activity.completed_date is None:
        return None
    metadata = activity.metadata
    return Completion(
        activity_id=activity.activity_id,
        opportunity_id=activity.opportunity_id,
        activity_type=activity.activity_type,
        completed_at=activity.completed_date,
        assigned_to=activity.assigned_to,
        created_at=activity.created_at,
        due_at=activity.due_date,
        outcome=activity.outcome,
        rule_id=None if metadata is None else metadata.automation_rule_id,
    )


def _events(events: Iterable[Event | Mapping[str, Any]]) -> list[Event]:
    if isinstance(events, str | bytes | Mapping) or not isinstance(events, Iterable):
        raise InvalidInputError("expected a list of events", field="events")
    checked: list[Event] = []
    for n, event in enumerate(events):
        if n == MAX_EVENTS:
            raise InvalidInputError("at most 1,000,000 events at a time", field="events")
        if isinstance(event, Event):
            checked.append(event)
            continue
        if not isinstance(event, Mapping):
            raise InvalidInputError("expected an event document", field=f"events[{n}]")
        if "time" not in event:
            raise InvalidInputError("a past event needs its time", field=f"events[{n}].time")
        try:
            checked.append(Event.model_validate(event))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InvalidInputError(
                first["msg"], field=f"events[{n}].{where}" if where else f"events[{n}]"
            ) from None
    return checked


def backfill(
    store: AnalyticsStore,
    activities: ActivityRepository | None,
    *,
    events: Iterable[Event | Mapping[str, Any]] = (),
    completed_from: datetime | None = None,
    completed_to: datetime | None = None,
) -> BackfillResult:
    """Record the facts of ``activities``' completed activities (None: none; those completed
    in ``[completed_from, completed_to)`` when given) and of ``events`` into ``store``."""
    checked = _events(events)
    try:
        wanted = ActivityFilter(
            state=ActivityState.COMPLETED,
            completed_from=completed_from,
            completed_to=completed_to,
        )
    except ValidationError as error:
        field = str(error.errors()[0]["loc"][0]) if error.errors()[0]["loc"] else "completed_from"
        raise InvalidInputError(error.errors()[0]["msg"], field=field) from None
    counts = {"arrivals": 0, "status_changes": 0, "completions": 0}
    for event in checked:
        arrival, change, completion = facts_of(event)
        if arrival is not None:
            counts["arrivals"] += store.record_arrival(arrival)
        if change is not None:
            counts["status_changes"] += store.record_status_change(change)
        if completion is not None:
            counts["completions"] += store.record_completion(completion)
    read = 0
    cursor: str | None = None
    while activities is not None:
        page = activities.list(wanted, limit=_PAGE, cursor=cursor)
        for activity in page.items:
            read += 1
            fact = completion_of(activity)
            if fact is not None:
                counts["completions"] += store.record_completion(fact)
        cursor = page.next_cursor
        if cursor is None:
            break
    return BackfillResult(activities_read=read, events_read=len(checked), **counts)
