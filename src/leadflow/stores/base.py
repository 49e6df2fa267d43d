"""The storage ports (protocols) and the value types they exchange.

A backend implements :class:`ActivityRepository`, :class:`RuleRepository` and
:class:`ScheduledActionStore`. Every backend is held to one contract suite
(``leadflow.testing``), so behaviour described here is behaviour a test checks.
"""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import InvalidInputError
from ..models import (
    Action,
    Activity,
    ActivityState,
    ActivityType,
    Event,
    FollowUpRule,
    Id,
    Outcome,
    UtcDatetime,
    _Model,
    new_id,
)

__all__ = [
    "ActivityFilter",
    "ActivityRepository",
    "ActivitySort",
    "ActivityStatistics",
    "Page",
    "RuleRepository",
    "ScheduledAction",
    "ScheduledActionState",
    "ScheduledActionStore",
    "SortField",
    "decode_cursor",
    "encode_cursor",
]

T = TypeVar("T")

SortField = Literal["created_at", "updated_at", "due_date", "scheduled_date", "completed_date"]


class ActivityFilter(_Model):
    """Which activities a query selects. All given criteria must hold (AND).

    ``state`` needs ``as_of`` for ``pending`` / ``overdue`` (overdue: open and due before
    ``as_of``; pending: open and not overdue). Date ranges are half-open: ``from <= x < to``,
    and an activity without that date never matches a range on it. List-valued criteria match
    any of their values.
    """

    model_config = ConfigDict(frozen=True)

    opportunity_id: Id | None = None
    customer_id: Id | None = None
    assigned_to: Id | None = None
    activity_types: tuple[ActivityType, ...] | None = None
    outcomes: tuple[Outcome, ...] | None = None
    state: ActivityState | None = None
    as_of: UtcDatetime | None = None
    created_from: UtcDatetime | None = None
    created_to: UtcDatetime | None = None
    due_from: UtcDatetime | None = None
    due_to: UtcDatetime | None = None
    scheduled_from: UtcDatetime | None = None
    scheduled_to: UtcDatetime | None = None
    completed_from: UtcDatetime | None = None
    completed_to: UtcDatetime | None = None
    automation_rule_id: Id | None = None

    @model_validator(mode="after")
    def _state_needs_time(self) -> ActivityFilter:
        if self.state in (ActivityState.PENDING, ActivityState.OVERDUE) and self.as_of is None:
            raise ValueError(f"state={self.state.value!r} needs asOf (the time to judge it at)")
        if self.activity_types is not None and not self.activity_types:
            raise ValueError("activityTypes, when given, must not be empty")
        if self.outcomes is not None and not self.outcomes:
            raise ValueError("outcomes, when given, must not be empty")
        return self


class ActivitySort(_Model):
    """Sort order for activity lists; ties are broken by ``activity_id`` in the same direction.

    Activities without the sort field (e.g. no due date) sort before all others ascending and
    after all others descending (MongoDB's order for missing values).
    """

    model_config = ConfigDict(frozen=True)

    field: SortField = "created_at"
    descending: bool = False


class Page(BaseModel, Generic[T]):
    """One page of a keyset-paginated list. Pass ``next_cursor`` back to get the next page;
    it is ``None`` on the last page. Cursors stay valid while rows are added."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(sort: ActivitySort, value: datetime | None, activity_id: str) -> str:
    """An opaque cursor for the row after (``value``, ``activity_id``) in ``sort`` order."""
    raw = {
        "f": sort.field,
        "d": sort.descending,
        "v": value.isoformat() if value is not None else None,
        "i": activity_id,
    }
    return base64.urlsafe_b64encode(json.dumps(raw, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, sort: ActivitySort) -> tuple[datetime | None, str]:
    """The position a cursor encodes; :class:`InvalidInputError` if it is malformed or was made
    for another sort order."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if raw["f"] != sort.field or raw["d"] != sort.descending:
            raise InvalidInputError("cursor was made for another sort order", field="cursor")
        value = datetime.fromisoformat(raw["v"]) if raw["v"] is not None else None
        activity_id = raw["i"]
        if not isinstance(activity_id, str) or (value is not None and value.tzinfo is None):
            raise ValueError
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError("malformed cursor", field="cursor") from exc
    return value, activity_id


class ActivityStatistics(_Model):
    """Aggregates over the activities a filter selects, judged at ``as_of``.

    ``completion_rate`` is completed / total (0 when there are none).
    ``mean_time_to_complete`` averages ``completed_date - created_at`` over completed activities.
    ``mean_time_to_first_completion`` averages, per opportunity with a completed activity, the time
    from its earliest ``created_at`` (the lead's first recorded activity, our stand-in for the
    lead's creation) to its earliest ``completed_date``. Activities without ``created_at`` are
    left out of both means. ``by_state`` judges each activity at ``as_of``; ``by_outcome`` counts
    activities that have an outcome and ``by_assignee`` those that are assigned. The ``by_*``
    maps hold only non-zero counts, keyed by the enum values / assignee ids.
    """

    as_of: UtcDatetime
    total: int
    by_type: dict[str, int]
    by_outcome: dict[str, int]
    by_state: dict[str, int]
    by_assignee: dict[str, int]
    completion_rate: float
    mean_time_to_complete: timedelta | None
    mean_time_to_first_completion: timedelta | None


@runtime_checkable
class ActivityRepository(Protocol):
    """Stores activities. Every method is atomic: on error nothing is written.

    Not-found errors are :class:`~leadflow.NotFoundError` (a ``LookupError``). Datetime
    arguments must be timezone-aware and every returned datetime is in UTC; a naive datetime or
    a ``limit`` below 1 is an :class:`~leadflow.InvalidInputError`. Returned activities are
    copies: changing one never changes what is stored.
    """

    def add(self, activity: Activity) -> Activity:
        """Store a new activity as given, with version 1 whatever ``activity.version`` says.
        :class:`DuplicateError` if the id exists."""
        ...

    def get(self, activity_id: str) -> Activity:
        """The activity, or :class:`NotFoundError`."""
        ...

    def update(self, activity: Activity) -> Activity:
        """Replace the stored activity if its stored version equals ``activity.version``.

        Returns the stored copy with ``version + 1``. :class:`StaleWriteError` when the stored
        version differs (someone else wrote first); :class:`NotFoundError` when it is gone.
        """
        ...

    def complete(
        self,
        activity_id: str,
        *,
        outcome: Outcome | None,
        completed_by: str | None,
        completed_at: datetime,
        expected_version: int | None = None,
    ) -> Activity:
        """Mark the activity done: sets ``completed_date``, ``outcome``, ``completed_by``,
        ``updated_at`` (= ``completed_at``), ``updated_by`` (= ``completed_by`` when given) and
        ``version + 1``; returns the stored copy. :class:`NotFoundError` if there is none;
        :class:`InvalidStateError` if it is already done (checked before the version);
        :class:`StaleWriteError` if ``expected_version`` is given and differs."""
        ...

    def delete(self, activity_id: str) -> None:
        """Remove the activity. :class:`NotFoundError` if there is none."""
        ...

    def list(
        self,
        filter: ActivityFilter | None = None,
        *,
        sort: ActivitySort | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Activity]:
        """A page of matching activities in ``sort`` order (default: created_at ascending).
        ``limit`` is 1..1000."""
        ...

    def for_opportunity(self, opportunity_id: str) -> builtins.list[Activity]:
        """All activities of an opportunity, oldest first (created_at, activity_id)."""
        ...

    def for_customer(self, customer_id: str) -> builtins.list[Activity]:
        """All activities of a customer, oldest first (created_at, activity_id)."""
        ...

    def pending(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        """Open activities that are not overdue at ``as_of`` and are scheduled at or before it
        (or have no scheduled date), soonest due first (due_date, activity_id); those without a
        due date come last, by activity_id."""
        ...

    def overdue(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        """Open activities due before ``as_of``, most overdue first (due_date, activity_id)."""
        ...

    def upcoming(
        self, as_of: datetime, within: timedelta, *, limit: int = 1000
    ) -> builtins.list[Activity]:
        """Open activities due in ``[as_of, as_of + within)``, soonest first."""
        ...

    def timeline(self, opportunity_id: str) -> builtins.list[Activity]:
        """An opportunity's activities in chronological order: each at its completed date when
        done, else its scheduled date, else its due date, else its creation; ties by id. One with
        none of these dates comes first."""
        ...

    def statistics(self, filter: ActivityFilter | None, *, as_of: datetime) -> ActivityStatistics:
        """Aggregates over the activities ``filter`` selects."""
        ...

    def last_activity_times(
        self, opportunity_ids: Sequence[str] | None = None
    ) -> dict[str, datetime]:
        """Per opportunity, the latest of its activities' created and completed dates (all
        opportunities, or those of ``opportunity_ids``). Opportunities without such a date are
        absent."""
        ...

    def stale_opportunities(self, since: datetime, *, limit: int = 1000) -> builtins.list[str]:
        """Opportunities whose last activity time (see :meth:`last_activity_times`) is before
        ``since``, oldest first (ties by opportunity id)."""
        ...

    def purge_completed(self, before: datetime) -> int:
        """Delete completed activities whose completed date is before ``before``; open ones are
        never purged. Returns how many were deleted."""
        ...


@runtime_checkable
class RuleRepository(Protocol):
    """Stores follow-up rules."""

    def create(self, rule: FollowUpRule) -> FollowUpRule:
        """Store a new rule with version 1 whatever ``rule.version`` says; returns the stored
        copy. :class:`DuplicateError` if the id exists."""
        ...

    def get(self, rule_id: str) -> FollowUpRule:
        """The rule, or :class:`NotFoundError`."""
        ...

    def list(self) -> builtins.list[FollowUpRule]:
        """Every rule, in application order (priority descending, then rule_id)."""
        ...

    def list_active(self) -> builtins.list[FollowUpRule]:
        """Active rules, in application order."""
        ...

    def update(self, rule: FollowUpRule) -> FollowUpRule:
        """Replace the rule if the stored version equals ``rule.version``; returns it with
        ``version + 1``. :class:`StaleWriteError` / :class:`NotFoundError` otherwise."""
        ...

    def delete(self, rule_id: str) -> None:
        """Remove the rule. :class:`NotFoundError` if there is none."""
        ...


class ScheduledActionState(StrEnum):
    """Life of a scheduled action: ``pending`` -> ``claimed`` -> ``done``; a failure goes back
    to ``pending`` (later) or, after the last attempt, to ``parked``; ``cancelled`` if its
    opportunity's pending actions were cancelled."""

    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    PARKED = "parked"
    CANCELLED = "cancelled"


class ScheduledAction(_Model):
    """A planned action stored until it is due, then carried out exactly once in effect."""

    action_id: Id = Field(default_factory=new_id)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=400)]
    event: Event
    rule_id: Id
    action_index: int = Field(ge=0)
    action: Action
    opportunity_id: Id | None = None
    due_at: UtcDatetime
    state: ScheduledActionState = ScheduledActionState.PENDING
    attempts: int = Field(default=0, ge=0)
    max_attempts: int = Field(default=5, ge=1, le=100)
    last_error: str | None = None
    lease_owner: str | None = None
    lease_expires_at: UtcDatetime | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class ScheduledActionStore(Protocol):
    """Durable delayed actions with leases, retries and parking.

    A worker holds an action while it is ``claimed`` with that worker as ``lease_owner``; the
    lease counts until another worker claims the action after ``lease_expires_at``. Not-found
    errors are :class:`NotFoundError`; naive datetimes and a ``limit`` below 1 are
    :class:`InvalidInputError`. Returned actions are copies.
    """

    def schedule(self, action: ScheduledAction) -> tuple[ScheduledAction, bool]:
        """Store ``action`` unless one with its idempotency key exists. Returns the stored
        action and whether it was newly created. :class:`DuplicateError` if its ``action_id``
        is taken by an action with another key."""
        ...

    def get(self, action_id: str) -> ScheduledAction:
        """The action, or :class:`NotFoundError`."""
        ...

    def claim_due(
        self,
        now: datetime,
        *,
        worker: str,
        limit: int = 100,
        lease: timedelta = timedelta(minutes=5),
    ) -> builtins.list[ScheduledAction]:
        """Atomically claim up to ``limit`` actions that are pending and due (``due_at <= now``)
        or claimed with an expired lease (``lease_expires_at <= now``); each claim sets state
        ``claimed``, the lease owner and expiry (``now + lease``), and increments ``attempts``.
        Two workers never hold the same action. Oldest due first (due_at, action_id).
        An expired action that already used its last attempt (``attempts >= max_attempts``) is
        parked instead of claimed, so an action that kills its worker cannot loop forever."""
        ...

    def mark_done(self, action_id: str, *, worker: str, now: datetime) -> ScheduledAction:
        """Finish a claimed action: state ``done``, ``finished_at = now``.
        :class:`ConflictError` if ``worker`` no longer holds it."""
        ...

    def mark_failed(
        self, action_id: str, *, worker: str, now: datetime, error: str, retry_at: datetime
    ) -> ScheduledAction:
        """Record a failure in ``last_error``: back to ``pending`` due at ``retry_at``, or
        ``parked`` when ``attempts`` reached ``max_attempts``. :class:`ConflictError` if the
        lease was lost."""
        ...

    def retry(self, action_id: str, *, now: datetime) -> ScheduledAction:
        """Make a parked action pending again, due now, with its attempts reset.
        :class:`InvalidStateError` if it is not parked."""
        ...

    def cancel_for_opportunity(self, opportunity_id: str, *, now: datetime) -> int:
        """Cancel the pending actions of an opportunity (claimed ones are left to finish);
        returns how many."""
        ...

    def list(
        self, state: ScheduledActionState | None = None, *, limit: int = 100
    ) -> builtins.list[ScheduledAction]:
        """Actions in ``state`` (all when None), soonest due first (due_at, action_id)."""
        ...
