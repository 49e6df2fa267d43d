"""The analytic facts leadflow keeps as events arrive (issue 20), and how an event yields them.

leadflow sees every event a host hands it (``LeadFlow.handle``) and every completion it makes
(the outbox feeds ``activity.completed`` back into the rules); the analytics need a few facts of
them after the event is gone. Three kinds, each a frozen record keyed so that recording it
twice is harmless:

- :class:`LeadArrival`, from ``opportunity.created``: the opportunity, when it arrived (the
  event's time), its lead source (``payload.leadSource``, else ``payload.source``) and owner
  (``payload.assignedTo``, else ``payload.ownerId``) when the payload names them. Keyed by the
  opportunity: an opportunity arrives once (the first arrival recorded wins).
- :class:`StatusChange`, from ``opportunity.status_changed`` (``oldStatus`` -> ``newStatus``,
  else ``status``) and from an ``opportunity.created`` that names a ``status`` (from none).
  Keyed by the event id.
- :class:`Completion`, from ``activity.completed``: the completed activity's type, assignee,
  creation, due and completion dates, outcome and the rule that created it
  (``metadata.automationRuleId``). Keyed by the activity id (an activity completes once).

:func:`facts_of` is the pure function from an event to its facts; values the payload holds in
the wrong shape (a number for a source, a malformed date) are left out, never refused: the
event itself was already admitted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import ConfigDict, StringConstraints, ValidationError

from .activity_models import ActivityType, Outcome
from .documents import check_datetime
from .errors import InvalidInputError
from .fields import ID_RE, Id, Text, UtcDatetime, _Model
from .models import Event

__all__ = [
    "CONTACT_TYPES",
    "Completion",
    "CompletionGroup",
    "LeadArrival",
    "StatusChange",
    "facts_of",
    "groups_of",
    "total_of",
]

Label = Annotated[Text, StringConstraints(min_length=1, max_length=128)]
"""A lead source or a status: 1-128 characters of text."""

CONTACT_TYPES: Final[tuple[ActivityType, ...]] = (
    ActivityType.CALL,
    ActivityType.EMAIL,
    ActivityType.MEETING,
)
"""The activity types that count as contacting a lead (speed to lead, ``contacted``)."""


class _Fact(_Model):
    model_config = ConfigDict(frozen=True)


class LeadArrival(_Fact):
    """A lead arrived: ``opportunity.created`` at ``arrived_at``."""

    event_id: Id
    opportunity_id: Id
    arrived_at: UtcDatetime
    source: Label | None = None
    owner: Id | None = None


class StatusChange(_Fact):
    """An opportunity's status changed from ``from_status`` (None: unknown or new) to
    ``to_status`` at ``changed_at``."""

    event_id: Id
    opportunity_id: Id
    changed_at: UtcDatetime
    from_status: Label | None = None
    to_status: Label


class Completion(_Fact):
    """An activity was completed at ``completed_at``."""

    activity_id: Id
    opportunity_id: Id
    activity_type: ActivityType
    completed_at: UtcDatetime
    assigned_to: Id | None = None
    created_at: UtcDatetime | None = None
    due_at: UtcDatetime | None = None
    outcome: Outcome | None = None
    rule_id: Id | None = None


Facts = tuple[LeadArrival | None, StatusChange | None, Completion | None]

_NONE: Final[Facts] = (None, None, None)


def facts_of(event: Event) -> Facts:
    """The facts ``event`` yields: (arrival, status change, completion), each None when the
    event yields none of that kind."""
    opportunity = event.opportunity_id
    if opportunity is None or not ID_RE.match(opportunity):
        return _NONE
    if event.type == "opportunity.created":
        arrival = LeadArrival.model_construct(
            event_id=event.id,
            opportunity_id=opportunity,
            arrived_at=event.time,
            source=_label(event.get("leadSource", "lead_source", "source")),
            owner=_id(event.get("assignedTo", "assigned_to", "ownerId", "owner_id")),
        )
        status = _label(event.get("status", "newStatus"))
        change = None if status is None else _change(event, opportunity, None, status)
        return arrival, change, None
    if event.type == "opportunity.status_changed":
        status = _label(event.get("newStatus", "new_status", "status"))
        if status is None:
            return _NONE
        previous = _label(event.get("oldStatus", "old_status"))
        return None, _change(event, opportunity, previous, status), None
    if event.type == "activity.completed":
        return None, None, _completion(event.payload)
    return _NONE


def _change(event: Event, opportunity: str, previous: str | None, status: str) -> StatusChange:
    return StatusChange.model_construct(
        event_id=event.id,
        opportunity_id=opportunity,
        changed_at=event.time,
        from_status=previous,
        to_status=status,
    )


def _completion(payload: dict[str, Any]) -> Completion | None:
    metadata = payload.get("metadata")
    rule = metadata.get("automationRuleId") if isinstance(metadata, dict) else None
    try:
        return Completion.model_validate(
            {
                "activity_id": payload.get("activityId"),
                "opportunity_id": payload.get("opportunityId"),
                "activity_type": payload.get("activityType"),
                "completed_at": _time(payload.get("completedDate")),
                "assigned_to": _id(payload.get("assignedTo")),
                "created_at": _time(payload.get("createdAt")),
                "due_at": _time(payload.get("dueDate")),
                "outcome": payload.get("outcome") if payload.get("outcome") in _OUTCOMES else None,
                "rule_id": _id(rule),
            }
        )
    except ValidationError:
        return None


_OUTCOMES: Final = frozenset(str(outcome) for outcome in Outcome)


def _label(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value if 0 < len(value) <= 128 and "\x00" not in value else None


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and ID_RE.match(value) else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    try:
        check_datetime(value, "time")
    except InvalidInputError:
        return None
    return value


@dataclass(frozen=True, slots=True)
class CompletionGroup:
    """The completions of one assignee (or one automation) in a period, summed up where they
    are kept (:meth:`~leadflow.ports.AnalyticsStore.completion_groups`): ``key`` is the
    assignee / rule id (None: none); ``with_due`` those with a due date, ``on_time`` those of
    them completed at or before it; ``median_seconds_to_complete`` the nearest-rank median of
    ``completed_at - created_at`` over those with a creation date; ``opportunities`` the
    distinct opportunities they were on; ``outcomes`` how many had each outcome (those
    without one left out), by outcome."""

    key: str | None
    completed: int
    with_due: int
    on_time: int
    median_seconds_to_complete: float | None
    opportunities: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def groups_of(completions: Iterable[Completion], by: str) -> list[CompletionGroup]:
    """:class:`CompletionGroup` per ``by`` (``"assigned_to"`` or ``"rule_id"``) of
    ``completions``, by key (None first)."""
    groups: dict[str | None, list[Completion]] = {}
    for completion in completions:
        groups.setdefault(getattr(completion, by), []).append(completion)
    found = []
    for key, group in sorted(groups.items(), key=lambda item: (item[0] is not None, item[0] or "")):
        times = sorted(
            (c.completed_at - c.created_at).total_seconds() for c in group if c.created_at
        )
        due = [c for c in group if c.due_at is not None]
        outcomes = Counter(str(c.outcome) for c in group if c.outcome is not None)
        found.append(
            CompletionGroup(
                key=key,
                completed=len(group),
                with_due=len(due),
                on_time=sum(c.due_at is not None and c.completed_at <= c.due_at for c in due),
                median_seconds_to_complete=times[(len(times) + 1) // 2 - 1] if times else None,
                opportunities=len({c.opportunity_id for c in group}),
                outcomes=dict(sorted(outcomes.items())),
            )
        )
    return found


def total_of(groups: Iterable[CompletionGroup]) -> CompletionGroup:
    """The counts of ``groups`` added up (key None; no median, no distinct opportunities:
    neither adds up)."""
    completed = with_due = on_time = 0
    outcomes: Counter[str] = Counter()
    for group in groups:
        completed += group.completed
        with_due += group.with_due
        on_time += group.on_time
        outcomes.update(group.outcomes)
    return CompletionGroup(
        None, completed, with_due, on_time, None, 0, dict(sorted(outcomes.items()))
    )
