"""Query values the activity repository takes and returns: filters, sort orders, statistics,
keyset pages and the cursor helpers a backend needs to encode its positions."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

from .documents import check_datetime, plain
from .errors import InvalidInputError
from .fields import Id, UtcDatetime, _Model
from .models import ActivityState, ActivityType, Outcome

__all__ = [
    "ActivityFilter",
    "ActivitySort",
    "ActivityStatistics",
    "Page",
    "SortField",
    "decode_cursor",
    "encode_cursor",
]

T = TypeVar("T")

SortField = Literal["created_at", "updated_at", "due_date", "scheduled_date", "completed_date"]
"""The attribute names an activity list sorts by (documents say ``createdAt``, ``dueDate``...)."""


class ActivityFilter(_Model):
    """Which activities a query selects. All given criteria must hold (AND).

    ``state`` needs ``as_of`` for ``pending`` / ``overdue`` (overdue: open and due before
    ``as_of``; pending: open and not overdue). Date ranges are half-open: ``from <= x < to``,
    and an activity without that date never matches a range on it. List-valued criteria match
    any of their values (at most 100 each). Keys are camelCase (``assignedTo``, ``dueFrom``,
    ``asOf``) or the snake_case attribute names; every datetime is aware and within the limits.
    """

    model_config = ConfigDict(frozen=True)

    opportunity_id: Id | None = None
    customer_id: Id | None = None
    assigned_to: Id | None = None
    activity_types: tuple[ActivityType, ...] | None = Field(default=None, max_length=100)
    outcomes: tuple[Outcome, ...] | None = Field(default=None, max_length=100)
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

    ``field`` takes the document spelling (``dueDate``) or the attribute name (``due_date``);
    the model holds the attribute name (``sort.field == "due_date"``, what ``getattr`` on an
    :class:`~leadflow.Activity` takes) and its document (``to_document``) says ``dueDate``,
    like every other leadflow document.

    Activities without the sort field (e.g. no due date) sort before all others ascending and
    after all others descending (MongoDB's order for missing values).
    """

    model_config = ConfigDict(frozen=True)

    field: SortField = "created_at"
    descending: bool = False

    @field_validator("field", mode="before")
    @classmethod
    def _attribute_name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # pydantic refuses it, naming the type
        value = plain(value)
        if value in _SORT_DOCUMENT_NAMES:
            return to_snake(value)
        if value not in _SORT_ATTRIBUTE_NAMES:
            raise ValueError(
                f"sort field must be one of {', '.join(sorted(_SORT_DOCUMENT_NAMES))} "
                "(or the snake_case names)"
            )
        return value

    @field_serializer("field")
    def _document_name(self, value: str, info: SerializationInfo) -> str:
        return to_camel(value) if info.by_alias else value


_SORT_ATTRIBUTE_NAMES = frozenset(get_args(SortField))
_SORT_DOCUMENT_NAMES = frozenset(to_camel(name) for name in _SORT_ATTRIBUTE_NAMES)


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
        if not isinstance(activity_id, str):
            raise ValueError
        if value is not None:
            check_datetime(value, "cursor")
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
