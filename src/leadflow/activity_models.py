"""The activity model: :class:`Activity` (the seed's LeadActivity), its metadata and enumerations.

Holds :class:`ActivityType`, :class:`Outcome`, :class:`ActivityState`, :class:`ActivityMetadata`
and :class:`Activity`; :mod:`leadflow.models` re-exports them with the rule and event models, and
its docstring states the input rules they share (spellings, limits, datetimes, documents).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import ConfigDict, Field, StringConstraints, model_serializer, model_validator

from .documents import as_document
from .fields import Id, Int64, Text, UtcDatetime, _Record, new_id

__all__ = [
    "Activity",
    "ActivityMetadata",
    "ActivityPriority",
    "ActivityState",
    "ActivityType",
    "Outcome",
]


# --------------------------------------------------------------------------- enumerations


class ActivityType(StrEnum):
    """The seed's activity types."""

    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    QUOTE_SENT = "quote_sent"
    FOLLOW_UP = "follow_up"
    NOTE = "note"
    STATUS_CHANGE = "status_change"


class Outcome(StrEnum):
    """The seed's activity outcomes."""

    SUCCESSFUL = "successful"
    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail"
    CALLBACK_REQUESTED = "callback_requested"
    NOT_INTERESTED = "not_interested"
    CONVERTED = "converted"


class ActivityState(StrEnum):
    """Where an activity stands at a given time.

    ``completed`` once it has a completed date; ``cancelled`` once it has a cancelled date (it
    stays in the timeline but is no longer work: never pending nor overdue); otherwise
    ``overdue`` when its due date has passed, else ``pending``.
    """

    PENDING = "pending"
    OVERDUE = "overdue"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class ActivityPriority(StrEnum):
    """How urgent a person rates an activity (``metadata.priority``)."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


# --------------------------------------------------------------------------- activities


class ActivityMetadata(_Record):
    """The seed's activity metadata; free extra keys are kept as given.

    The whole metadata (the seed's keys and the extra ones) is a free-form document: keys and
    values follow :func:`leadflow.documents.check_document`, within ``document_depth`` and
    ``document_bytes``.
    """

    model_config = ConfigDict(extra="allow")

    phone_duration: float | None = Field(default=None, ge=0, description="seconds")
    email_opened: bool | None = None
    quote_value: float | None = Field(default=None, ge=0)
    automation_rule_id: Text | None = Field(default=None, max_length=128)
    priority: ActivityPriority | None = None

    @model_validator(mode="before")
    @classmethod
    def _json_like(cls, data: Any) -> Any:
        return as_document(data, "metadata")

    @model_serializer(mode="wrap")
    def _keep_null_extras(self, handler: Any) -> Any:
        # ``exclude_none`` drops unset seed fields; an extra key given as null is data.
        data = handler(self)
        for key, value in (self.model_extra or {}).items():
            if value is None:
                data.setdefault(key, None)
        return data


class Activity(_Record):
    """A customer interaction or a planned follow-up (the seed's LeadActivity).

    Immutable, like its ``metadata``: a change is a new value (``model_copy(update=...)``), so
    an activity validated once stays valid. The extra metadata keys may hold documents (dicts,
    lists) that belong to the caller; stores check them on the way in and never share them.
    """

    model_config = ConfigDict(frozen=True)

    activity_id: Id = Field(default_factory=new_id)
    opportunity_id: Id
    customer_id: Id | None = None
    activity_type: ActivityType
    subject: Text = Field(min_length=1, max_length=500)
    description: Text = Field(default="", max_length=20_000)

    scheduled_date: UtcDatetime | None = None
    due_date: UtcDatetime | None = None
    completed_date: UtcDatetime | None = None

    assigned_to: Id | None = None
    completed_by: Id | None = None
    outcome: Outcome | None = None

    cancelled_at: UtcDatetime | None = Field(
        default=None, description="set when a person cancelled it (kept in the timeline)"
    )
    cancelled_by: Id | None = None
    cancel_reason: Text | None = Field(default=None, max_length=1000)

    metadata: ActivityMetadata = Field(default_factory=ActivityMetadata)
    open_key: Annotated[Text, StringConstraints(min_length=1, max_length=400)] | None = Field(
        default=None,
        description="at most one open activity holds a given key (set by automation)",
    )

    created_by: Id | None = None
    updated_by: Id | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    version: Int64 = Field(default=1, ge=1, description="optimistic-concurrency counter")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (
            self.scheduled_date is not None
            and self.due_date is not None
            and self.due_date < self.scheduled_date
        ):
            raise ValueError("dueDate must not be before scheduledDate")
        if self.outcome is not None and self.completed_date is None:
            raise ValueError(
                "outcome requires completedDate (an outcome is recorded on completion)"
            )
        if self.completed_by is not None and self.completed_date is None:
            raise ValueError("completedBy requires completedDate")
        if self.cancelled_at is not None and self.completed_date is not None:
            raise ValueError("an activity is either completed or cancelled, not both")
        if self.cancelled_at is None and (
            self.cancelled_by is not None or self.cancel_reason is not None
        ):
            raise ValueError("cancelledBy and cancelReason require cancelledAt")
        return self

    @property
    def is_completed(self) -> bool:
        return self.completed_date is not None

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled_at is not None

    @property
    def is_open(self) -> bool:
        """Neither completed nor cancelled: still work to do."""
        return self.completed_date is None and self.cancelled_at is None

    def state(self, now: datetime) -> ActivityState:
        """``completed``, ``cancelled``, else ``overdue`` if the due date is before ``now``, else
        ``pending``."""
        if self.completed_date is not None:
            return ActivityState.COMPLETED
        if self.cancelled_at is not None:
            return ActivityState.CANCELLED
        if self.due_date is not None and self.due_date < now:
            return ActivityState.OVERDUE
        return ActivityState.PENDING
