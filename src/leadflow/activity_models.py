"""The activity model: :class:`Activity` (the seed's LeadActivity), its metadata and enumerations.

Holds :class:`ActivityType`, :class:`Outcome`, :class:`ActivityState`, :class:`ActivityMetadata`
and :class:`Activity`; :mod:`leadflow.models` re-exports them with the rule and event models, and
its docstring states the input rules they share (spellings, limits, datetimes, documents).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import ConfigDict, Field, StringConstraints, model_serializer, model_validator

from . import limits as _limits
from .documents import as_document
from .fields import ID_RE, Id, PositiveInt64, Text, UtcDatetime, _Record, new_id

__all__ = [
    "Activity",
    "ActivityMetadata",
    "ActivityPriority",
    "ActivityState",
    "ActivityType",
    "Outcome",
    "activity_document",
    "built_activity",
    "plain_activity",
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
    version: PositiveInt64 = Field(default=1, description="optimistic-concurrency counter")

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


# --------------------------------------------------------------------------- built by leadflow


def built_activity(fields: dict[str, Any], metadata: dict[str, Any]) -> Activity:
    """``Activity(**fields, metadata=ActivityMetadata.model_validate(metadata))`` for an
    activity leadflow builds itself (``create_activity``): when every value is one the models
    take as it is (ids that match, texts within their lengths with no NUL, no lone surrogate and
    no space to strip at either end, UTC datetimes within the limits, the metadata's extra
    values texts or None), the model is built without running pydantic's validation: the same
    values, fields set and field order (``tests/test_activity_build.py`` holds it to the
    validating constructor on random input). Anything else goes through the constructor, which
    refuses it as any input (``ValidationError`` naming the field)."""
    if _plain_fields(fields) and _plain_metadata(metadata):
        extra = {key: value for key, value in metadata.items() if key != _RULE_KEY}
        meta = _new(ActivityMetadata)
        _set(meta, "__dict__", {**_METADATA_DEFAULTS, "automation_rule_id": metadata[_RULE_KEY]})
        _set(meta, "__pydantic_extra__", extra)
        _set(meta, "__pydantic_fields_set__", {"automation_rule_id", *extra})
        _set(meta, "__pydantic_private__", None)
        activity = _new(Activity)
        state = {**_ACTIVITY_DEFAULTS, **fields, "metadata": meta}
        _set(activity, "__dict__", state)
        _set(activity, "__pydantic_extra__", None)
        _set(activity, "__pydantic_fields_set__", {*fields, "metadata"})
        _set(activity, "__pydantic_private__", None)
        return activity
    return Activity(**fields, metadata=ActivityMetadata.model_validate(metadata))


def plain_activity(fields: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """Whether :func:`built_activity` builds the activity of ``fields`` and ``metadata``
    without validating it (every value is one the models take as it is): then
    :func:`activity_document` is its document, and a store that offers it may take the two
    dicts instead of the model (:class:`~leadflow.ports.PlainActivities`)."""
    return _plain_fields(fields) and _plain_metadata(metadata)


def plain_shared(activity_type: object, subject: object, description: object) -> bool:
    """Whether the values every activity of one ``create_activity`` rule action shares (its
    type, subject and description: the rule action's settings) are ones the models take as
    they are. Checked once per rule action (the parsed settings hold the answer), then
    :func:`plain_rest` for what each event gives: ``plain_activity(fields, metadata)`` is
    ``plain_shared(...)`` of the three fields ``and plain_rest(fields, metadata)``."""
    return (
        type(activity_type) is ActivityType
        and _plain_text(subject, 1, 500)
        and _plain_text(description, 0, 20_000)
    )


def plain_rest(fields: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """:func:`plain_activity` for ``fields`` whose type, subject and description passed
    :func:`plain_shared` (not checked again here)."""
    return fields.keys() == _BUILT and _plain_own(fields) and _plain_metadata(metadata)


def activity_document(fields: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """``built_activity(fields, metadata).to_document()`` for plain values
    (:func:`plain_activity`), written out: the fields in the model's order by their camelCase
    names, those that are None left out, the metadata's rule id (unless None), then its extra
    keys as given, those given as null last (the model's serializer adds them back at its
    end). Held to the model's own dump by ``tests/test_activity_build.py``."""
    document: dict[str, Any] = {}
    for name, alias, default in _DOCUMENTED:
        value = fields.get(name, default)
        if value is not None:
            document[alias] = value
        elif name == "metadata":
            document[alias] = _metadata_document(metadata)
    return document


def _metadata_document(metadata: dict[str, Any]) -> dict[str, Any]:
    rule_id = metadata[_RULE_KEY]
    document: dict[str, Any] = {} if rule_id is None else {_RULE_KEY: rule_id}
    nulls = []
    for key, value in metadata.items():
        if key == _RULE_KEY:
            continue
        if value is None:
            nulls.append(key)
        else:
            document[key] = value
    for key in nulls:
        document[key] = None
    return document


_set = object.__setattr__
_new = object.__new__
_RULE_KEY = "automationRuleId"
_BUILT = frozenset(
    {"activity_id", "opportunity_id", "customer_id", "activity_type", "subject", "description"}
    | {"scheduled_date", "due_date", "assigned_to", "open_key", "created_by", "updated_by"}
    | {"created_at", "updated_at"}
)
_IDS = ("activity_id", "opportunity_id", "customer_id", "assigned_to", "created_by", "updated_by")
_TIMES = ("scheduled_date", "due_date", "created_at", "updated_at")
# In field order, as pydantic keeps them; none of these fields has a default factory but the
# two always given (activity_id, metadata).
_ACTIVITY_DEFAULTS = {
    name: None if field.default_factory is not None else field.default
    for name, field in Activity.model_fields.items()
}
_METADATA_DEFAULTS = {name: field.default for name, field in ActivityMetadata.model_fields.items()}
_ALIASES = tuple((name, field.alias or name) for name, field in Activity.model_fields.items())
# What activity_document writes, in field order: a field create_activity gives, the metadata,
# or one whose default is not None (the others are left out of the document, being None).
_DOCUMENTED = tuple(
    (name, alias, _ACTIVITY_DEFAULTS[name])
    for name, alias in _ALIASES
    if name in _BUILT or name == "metadata" or _ACTIVITY_DEFAULTS[name] is not None
)


def _plain_text(value: object, shortest: int, longest: int) -> bool:
    if type(value) is not str or not shortest <= len(value) <= longest:
        return False
    if value and (value[0].isspace() or value[-1].isspace()):  # the models strip these
        return False
    return "\x00" not in value and (value.isascii() or _encodes(value))


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _plain_fields(fields: dict[str, Any]) -> bool:
    return (
        fields.keys() == _BUILT
        and plain_shared(fields["activity_type"], fields["subject"], fields["description"])
        and _plain_own(fields)
    )


def _plain_own(fields: dict[str, Any]) -> bool:
    """The checks of :func:`_plain_fields` but the shared values' (see :func:`plain_shared`),
    for ``fields`` with the keys ``built_activity`` takes."""
    for name in _IDS:
        value = fields[name]
        if value is not None and (type(value) is not str or not ID_RE.match(value)):
            return False
    if fields["activity_id"] is None or fields["opportunity_id"] is None:
        return False
    open_key = fields["open_key"]
    if open_key is not None and not _plain_text(open_key, 1, 400):
        return False
    limits = _limits.DEFAULT_LIMITS
    for name in _TIMES:
        value = fields[name]
        if value is not None and (
            type(value) is not datetime
            or value.tzinfo is not UTC
            or not limits.earliest <= value <= limits.latest
        ):
            return False
    scheduled, due = fields["scheduled_date"], fields["due_date"]
    return scheduled is None or due is None or scheduled <= due


def _plain_metadata(metadata: dict[str, Any]) -> bool:
    if _RULE_KEY not in metadata:
        return False
    known = metadata.keys() <= _PLAIN_KEYS  # create_activity's: their values alone checked
    for key, value in metadata.items():
        if key == _RULE_KEY:
            if value is not None and (type(value) is not str or not ID_RE.match(value)):
                return False
        elif not known and (key in _METADATA_ALIASES or not _EXTRA_KEY.match(key)):
            return False  # a seed field by another spelling, or a key the checks judge
        elif value is not None and not _plain_text(value, 0, 100_000):
            return False
    return True


_METADATA_ALIASES = frozenset(
    spelling
    for name, field in ActivityMetadata.model_fields.items()
    for spelling in (name, field.alias)
    if spelling is not None
)
_EXTRA_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_PLAIN_KEYS: Final = frozenset(
    key
    for key in (_RULE_KEY, "automationRuleName", "automationExplanation", "eventId")
    if key == _RULE_KEY or (key not in _METADATA_ALIASES and _EXTRA_KEY.match(key))
)
"""The metadata keys ``create_activity`` writes, each one :func:`_plain_metadata` passes as
a key (the rule id as the seed's field, the others as extra keys): then only their values are
checked."""
