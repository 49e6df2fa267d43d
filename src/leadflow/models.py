"""The domain model: activities, follow-up rules, events (pydantic v2).

Documents use the seed's camelCase names (``activityId``, ``dueDate``...) so existing MongoDB
data loads as is; Python code uses snake_case. Both spellings are accepted on input; ``to_document``
writes camelCase. Every datetime is timezone-aware and normalised to UTC; naive ones are rejected.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "Action",
    "Activity",
    "ActivityMetadata",
    "ActivityState",
    "ActivityType",
    "Condition",
    "ConditionGroup",
    "ConditionNode",
    "Delay",
    "DelayUnit",
    "Event",
    "EventType",
    "FollowUpRule",
    "Outcome",
    "Trigger",
    "canonical_event_type",
    "new_id",
]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An aware datetime, stored in UTC. Naive input fails validation ("should have timezone info")."""

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}$"
Id = Annotated[str, StringConstraints(pattern=_ID_PATTERN)]
"""An identifier: 1-128 characters of letters, digits and ``_ . : @ -``, not starting with a
symbol. ObjectId hex strings, UUIDs and e-mail-style user ids all fit; ``$`` never does."""

ID_RE = re.compile(_ID_PATTERN)


def new_id() -> str:
    """A fresh random identifier (UUID4 text)."""
    return str(uuid.uuid4())


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        str_strip_whitespace=True,
    )

    def to_document(self) -> dict[str, Any]:
        """The JSON-compatible camelCase document (datetimes stay datetime objects)."""
        return self.model_dump(by_alias=True, exclude_none=True)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Self:
        """Load a stored document (camelCase or snake_case keys; ``_id`` is ignored)."""
        return cls.model_validate({k: v for k, v in document.items() if k != "_id"})


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

    ``completed`` once it has a completed date; otherwise ``overdue`` when its due date has
    passed, else ``pending``.
    """

    PENDING = "pending"
    OVERDUE = "overdue"
    COMPLETED = "completed"


class EventType(StrEnum):
    """Event types leadflow knows by name; any other dotted lower-case name is accepted too."""

    OPPORTUNITY_CREATED = "opportunity.created"
    OPPORTUNITY_STATUS_CHANGED = "opportunity.status_changed"
    ESTIMATE_CREATED = "estimate.created"
    ACTIVITY_CREATED = "activity.created"
    ACTIVITY_COMPLETED = "activity.completed"
    OPPORTUNITY_STALE_DETECTED = "opportunity.stale_detected"


# The seed names some events two ways; the dotted form is canonical.
_EVENT_ALIASES: dict[str, str] = {
    "opportunity_created": EventType.OPPORTUNITY_CREATED,
    "status_changed": EventType.OPPORTUNITY_STATUS_CHANGED,
    "opportunity_status_changed": EventType.OPPORTUNITY_STATUS_CHANGED,
    "quote_sent": EventType.ESTIMATE_CREATED,
    "estimate_created": EventType.ESTIMATE_CREATED,
    "activity_created": EventType.ACTIVITY_CREATED,
    "activity_completed": EventType.ACTIVITY_COMPLETED,
    "stale_detected": EventType.OPPORTUNITY_STALE_DETECTED,
    "opportunity_stale_detected": EventType.OPPORTUNITY_STALE_DETECTED,
}
_EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


def canonical_event_type(name: str) -> str:
    """Return the canonical (dotted) spelling of an event type.

    ``quote_sent`` -> ``estimate.created``, ``status_changed`` -> ``opportunity.status_changed``,
    ``opportunity_created`` -> ``opportunity.created``; other names must be lower-case words
    joined by dots or underscores and are kept as given.
    """
    if not isinstance(name, str):
        raise ValueError(f"event type must be a string, got {type(name).__name__}")
    key = name.strip()
    alias = _EVENT_ALIASES.get(key)
    if alias is not None:
        return str(alias)
    if len(key) > 100 or not _EVENT_TYPE_RE.match(key):
        raise ValueError(
            f"invalid event type {name!r}: use lower-case words joined by '.' or '_' "
            "(e.g. 'opportunity.created')"
        )
    return key


EventTypeName = Annotated[str, AfterValidator(canonical_event_type)]


# --------------------------------------------------------------------------- activities


class ActivityMetadata(_Model):
    """The seed's activity metadata; free extra keys are kept as given."""

    model_config = ConfigDict(extra="allow")

    phone_duration: float | None = Field(default=None, ge=0, description="seconds")
    email_opened: bool | None = None
    quote_value: float | None = Field(default=None, ge=0)
    automation_rule_id: str | None = None

    @model_validator(mode="after")
    def _safe_extra_keys(self) -> Self:
        for key in self.model_extra or {}:
            if not key or key.startswith("$") or "." in key or "\x00" in key:
                raise ValueError(
                    f"metadata key {key!r} must not be empty, start with '$' or hold '.'"
                )
        return self


class Activity(_Model):
    """A customer interaction or a planned follow-up (the seed's LeadActivity)."""

    activity_id: Id = Field(default_factory=new_id)
    opportunity_id: Id
    customer_id: Id | None = None
    activity_type: ActivityType
    subject: str = Field(min_length=1, max_length=500)
    description: str = Field(default="", max_length=20_000)

    scheduled_date: UtcDatetime | None = None
    due_date: UtcDatetime | None = None
    completed_date: UtcDatetime | None = None

    assigned_to: Id | None = None
    completed_by: Id | None = None
    outcome: Outcome | None = None

    metadata: ActivityMetadata = Field(default_factory=ActivityMetadata)

    created_by: Id | None = None
    updated_by: Id | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    version: int = Field(default=1, ge=1, description="optimistic-concurrency counter")

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
        return self

    @property
    def is_completed(self) -> bool:
        return self.completed_date is not None

    def state(self, now: datetime) -> ActivityState:
        """``completed``, else ``overdue`` if the due date is before ``now``, else ``pending``."""
        if self.completed_date is not None:
            return ActivityState.COMPLETED
        if self.due_date is not None and self.due_date < now:
            return ActivityState.OVERDUE
        return ActivityState.PENDING


# --------------------------------------------------------------------------- rules

DelayUnit = Literal["minutes", "hours", "days", "business_hours", "business_days"]
_MAX_DELAY = timedelta(days=3660)
_UNIT_SECONDS = {"minutes": 60.0, "hours": 3600.0, "days": 86400.0}


class Delay(_Model):
    """How long after the event an action is due.

    A bare number means hours (as in the seed: ``"delay": 48``). ``business_hours`` and
    ``business_days`` count working time on the engine's :class:`~leadflow.WorkingCalendar`.
    """

    model_config = ConfigDict(frozen=True)

    amount: float = Field(default=0, ge=0)
    unit: DelayUnit = "hours"

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError("delay must be a number of hours or {amount, unit}")
        if isinstance(data, int | float):
            return {"amount": data, "unit": "hours"}
        return data

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if not math.isfinite(self.amount):
            raise ValueError("delay amount must be finite")
        if self.unit in ("business_hours", "business_days"):
            if self.unit == "business_days" and self.amount != int(self.amount):
                raise ValueError("business_days must be a whole number")
            limit = 3660 * 24 if self.unit == "business_hours" else 3660
            if self.amount > limit:
                raise ValueError("delay longer than ten years")
        elif self.amount * _UNIT_SECONDS[self.unit] > _MAX_DELAY.total_seconds():
            raise ValueError("delay longer than ten years")
        return self

    @model_serializer(mode="wrap")
    def _as_number_when_hours(self, handler: Any) -> Any:
        if self.unit == "hours":
            return int(self.amount) if self.amount == int(self.amount) else self.amount
        return handler(self)

    @property
    def is_business_time(self) -> bool:
        return self.unit in ("business_hours", "business_days")

    def as_timedelta(self) -> timedelta:
        """The fixed length of a calendar-time delay (not for business units)."""
        if self.is_business_time:
            raise ValueError("business-time delays depend on the calendar")
        return timedelta(seconds=self.amount * _UNIT_SECONDS[self.unit])


_FIELD_SEGMENT_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]{0,63}|\d{1,6})$")


def _check_field_path(path: str) -> str:
    segments = path.split(".")
    if len(segments) > 10:
        raise ValueError(f"field path {path!r} is deeper than 10 levels")
    for segment in segments:
        if not _FIELD_SEGMENT_RE.match(segment):
            raise ValueError(
                f"bad field path {path!r}: each dotted segment must be a name "
                "(letters, digits, '_', not starting with a digit) or a list index"
            )
    return path


class Condition(_Model):
    """One test on the event: ``field`` (dotted path), ``operator`` (a registered name), ``value``.

    Whether the operator exists and accepts ``value`` is checked when a
    :class:`~leadflow.RuleEngine` (with its operator registry) loads the rule.
    """

    field: Annotated[str, AfterValidator(_check_field_path)]
    operator: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    value: Any = None
    ignore_case: bool = False


class ConditionGroup(_Model):
    """``{"all": [...]}``, ``{"any": [...]}`` or ``{"not": condition}``; groups nest."""

    kind: Literal["all", "any", "not"]
    conditions: list[ConditionNode]

    @model_validator(mode="before")
    @classmethod
    def _from_keyed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data:
            keys = [k for k in ("all", "any", "not") if k in data]
            if len(keys) != 1 or len(data) != 1:
                raise ValueError("a condition group has exactly one key: 'all', 'any' or 'not'")
            kind = keys[0]
            body = data[kind]
            if kind == "not":
                if not isinstance(body, dict):
                    raise ValueError("'not' takes one condition (an object), not a list")
                body = [body]
            elif not isinstance(body, list):
                raise ValueError(f"'{kind}' takes a list of conditions")
            return {"kind": kind, "conditions": body}
        return data

    @model_validator(mode="after")
    def _arity(self) -> Self:
        if self.kind == "not" and len(self.conditions) != 1:
            raise ValueError("'not' takes exactly one condition")
        return self

    @model_serializer(mode="wrap")
    def _to_keyed(self, handler: Any) -> Any:
        data = handler(self)
        body = data["conditions"]
        return {self.kind: body[0] if self.kind == "not" else body}


def _node_kind(value: Any) -> str:
    if isinstance(value, ConditionGroup):
        return "group"
    if isinstance(value, Condition):
        return "condition"
    if isinstance(value, dict) and ({"all", "any", "not", "kind"} & value.keys()):
        return "group"
    return "condition"


ConditionNode = Annotated[
    Annotated[Condition, Tag("condition")] | Annotated[ConditionGroup, Tag("group")],
    Discriminator(_node_kind),
]


class Trigger(_Model):
    """When a rule applies: an event type and conditions (a flat list means all must hold)."""

    event_type: EventTypeName
    conditions: list[ConditionNode] = Field(default_factory=list, max_length=100)


_ACTION_TYPE_RE = r"^[a-z][a-z0-9_]{0,63}$"


class Action(_Model):
    """One thing a rule does, now or after ``delay``.

    Built-in types: ``create_activity``, ``send_notification``, ``update_status``,
    ``assign_sales_rep``, ``send_email``, ``send_sms``; integrators may register more.
    ``assign_to`` is ``lead_owner``, ``round_robin``, ``least_loaded`` or a user id.
    """

    action_type: Annotated[str, StringConstraints(pattern=_ACTION_TYPE_RE)]
    delay: Delay = Field(default_factory=Delay)
    activity_type: ActivityType | None = None
    subject: str | None = Field(default=None, max_length=500)
    description: str | None = Field(default=None, max_length=20_000)
    assign_to: Id | None = None
    template: str | None = Field(default=None, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _required_per_type(self) -> Self:
        need: dict[str, tuple[str, ...]] = {
            "create_activity": ("subject",),
            "send_notification": ("template",),
            "send_email": ("template",),
            "send_sms": ("template",),
            "assign_sales_rep": ("assign_to",),
        }
        for name in need.get(self.action_type, ()):
            if getattr(self, name) in (None, ""):
                raise ValueError(f"{self.action_type} needs {to_camel(name)}")
        if self.action_type == "update_status":
            status = self.params.get("status")
            if not isinstance(status, str) or not status:
                raise ValueError("update_status needs params.status (the new status)")
        return self


class FollowUpRule(_Model):
    """A follow-up rule: when ``trigger`` matches an event, plan ``actions``.

    Rules apply in descending ``priority``; ties go to the smaller ``rule_id``. A matching rule
    with ``stop_processing`` keeps lower-ranked rules from applying to the same event.
    ``allow_duplicates`` lets the rule open another automated activity for an opportunity that
    still has an open one from this rule (off by default).
    """

    rule_id: Id = Field(default_factory=new_id)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    trigger: Trigger
    actions: list[Action] = Field(min_length=1, max_length=20)
    is_active: bool = True
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    stop_processing: bool = False
    allow_duplicates: bool = False

    created_by: Id | None = None
    updated_by: Id | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    version: int = Field(default=1, ge=1)


# --------------------------------------------------------------------------- events


class Event(_Model):
    """Something that happened, fed to the rules.

    ``payload`` holds the fields rules look at (the opportunity, activity or estimate), in
    camelCase or snake_case. Give ``id`` yourself when the event may be delivered twice:
    leadflow uses it to make handling idempotent.
    """

    model_config = ConfigDict(frozen=True)

    id: Id = Field(default_factory=new_id)
    type: EventTypeName
    time: UtcDatetime
    payload: dict[str, Any] = Field(default_factory=dict)
    actor: Id | None = None

    @field_validator("payload")
    @classmethod
    def _payload_keys(cls, payload: dict[str, Any]) -> dict[str, Any]:
        for key in payload:
            if not isinstance(key, str):
                raise ValueError("payload keys must be strings")
        return payload

    def get(self, *names: str) -> Any:
        """The first payload value present under any of ``names`` (e.g. camel and snake)."""
        for name in names:
            if name in self.payload:
                return self.payload[name]
        return None

    @property
    def opportunity_id(self) -> str | None:
        value = self.get("opportunityId", "opportunity_id")
        return value if isinstance(value, str) else None
