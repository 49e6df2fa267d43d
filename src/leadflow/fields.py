"""The field types and the base model every leadflow model shares.

``UtcDatetime`` (aware, UTC, within the limits), ``Text`` (valid Unicode), ``Int64``, ``Id``,
``FieldPath`` (a dotted path into a document), ``EventTypeName`` (an event type in its canonical
spelling) and ``_Model`` (camelCase documents, snake_case attributes, unknown keys refused).
:mod:`leadflow.models` re-exports the public names.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from . import limits as _limits
from .documents import check_datetime
from .errors import InvalidInputError

__all__ = [
    "ID_RE",
    "EventType",
    "EventTypeName",
    "FieldPath",
    "Id",
    "Int64",
    "Text",
    "UtcDatetime",
    "canonical_event_type",
    "ensure_utc",
    "new_id",
]


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:  # the common case inside leadflow: already UTC, just the bounds
        limits = _limits.DEFAULT_LIMITS
        if limits.earliest <= value <= limits.latest:
            return value
    check_datetime(value, None)
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An aware datetime within ``[DEFAULT_LIMITS.earliest, DEFAULT_LIMITS.latest]``, stored in UTC.
Naive input fails validation ("should have timezone info"), so does one out of range."""


def _valid_unicode(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text may not hold a NUL character (PostgreSQL cannot store one)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text is not valid Unicode (lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_valid_unicode)]
"""Text every backend stores as is: valid Unicode, no lone surrogates, no NUL character."""

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
"""An integer that fits in a signed 64-bit integer (what MongoDB and SQL store). Give a field
a narrower lower bound with :data:`NonNegativeInt64` or :data:`PositiveInt64`, not with
``Field(ge=...)`` beside this type: pydantic keeps the last bound it reads for each side, and
this type's own bound comes after the field's (``version: Int64 = Field(ge=1)`` took 0)."""

NonNegativeInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A 64-bit integer of at least 0 (counters, indexes, visits)."""

PositiveInt64 = Annotated[int, Field(ge=1, le=INT64_MAX)]
"""A 64-bit integer of at least 1 (versions, revisions)."""

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}$"
Id = Annotated[str, StringConstraints(pattern=_ID_PATTERN)]
"""An identifier: 1-128 characters of letters, digits and ``_ . : @ -``, not starting with a
symbol. ObjectId hex strings, UUIDs and e-mail-style user ids all fit; ``$`` never does."""

ID_PATTERN: Final = _ID_PATTERN
"""The id pattern as JSON Schema and pydantic read it (``$``: the end of the text)."""

ID_RE = re.compile(_ID_PATTERN.removesuffix("$") + r"\Z")
"""The id pattern for Python's ``re`` (``match``): ``\\Z``, since ``$`` there also matches
before a final newline (``"opp-1\n"`` would pass for an id)."""


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
        allow_inf_nan=False,
    )

    def to_document(self) -> dict[str, Any]:
        """The JSON-compatible camelCase document (datetimes stay datetime objects)."""
        return self.model_dump(by_alias=True, exclude_none=True)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Self:
        """Load a stored document (camelCase or snake_case keys; ``_id`` is ignored).

        Raises pydantic's ``ValidationError`` for anything else, a non-mapping included."""
        if not isinstance(document, Mapping):
            return cls.model_validate(document)  # refused by pydantic, naming the type
        return cls.model_validate({k: v for k, v in document.items() if k != "_id"})


_set = object.__setattr__


class _Record(_Model):
    """An immutable record (an activity, a scheduled action, an event...): validated when built
    and never changed in place, so one that was validated once stays valid.

    :meth:`model_copy` with ``update`` validates the changed record like a new one (pydantic's
    own ``model_copy`` takes the update unchecked: a naive datetime or an operator dict would
    slip through). leadflow's own code changing a record with values it made (a store's state
    transitions) uses :meth:`_evolve`, which skips that check."""

    model_config = ConfigDict(frozen=True)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        if not update:
            return super().model_copy(deep=deep)
        data = {**self.__dict__, **(self.__pydantic_extra__ or {}), **update}
        changed = type(self).model_validate(data)
        # As pydantic's own copy: the fields set are the original's and the updated ones.
        fields_set = self.model_fields_set | (update.keys() & type(self).model_fields.keys())
        object.__setattr__(changed, "__pydantic_fields_set__", fields_set)
        return changed.model_copy(deep=True) if deep else changed

    def _evolve(self, **changes: Any) -> Self:
        """A changed copy, unchecked: only for values leadflow itself made and checked.

        What pydantic's ``model_copy(update=...)`` does for these models (no extra fields, no
        private attributes), without its general-purpose copying: the runtime and the memory
        stores make several per action."""
        cls = type(self)
        new = cls.__new__(cls)
        state = self.__dict__.copy()
        state.update(changes)
        _set(new, "__dict__", state)
        _set(new, "__pydantic_extra__", None)
        _set(new, "__pydantic_fields_set__", self.__pydantic_fields_set__ | changes.keys())
        _set(new, "__pydantic_private__", None)
        return new


class EventType(StrEnum):
    """Event types leadflow knows by name; any other dotted lower-case name is accepted too."""

    OPPORTUNITY_CREATED = "opportunity.created"
    OPPORTUNITY_STATUS_CHANGED = "opportunity.status_changed"
    ESTIMATE_CREATED = "estimate.created"
    ACTIVITY_CREATED = "activity.created"
    ACTIVITY_COMPLETED = "activity.completed"
    ACTIVITY_OVERDUE = "activity.overdue"
    OPPORTUNITY_STALE_DETECTED = "opportunity.stale_detected"
    ACTIVITY_RESCHEDULED = "activity.rescheduled"
    ACTIVITY_REASSIGNED = "activity.reassigned"
    ACTIVITY_UPDATED = "activity.updated"
    ACTIVITY_CANCELLED = "activity.cancelled"


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
_EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z")


def canonical_event_type(name: str) -> str:
    """Return the canonical (dotted) spelling of an event type.

    ``quote_sent`` -> ``estimate.created``, ``status_changed`` -> ``opportunity.status_changed``,
    ``opportunity_created`` -> ``opportunity.created``; other names must be lower-case words
    joined by dots or underscores and are kept as given.
    """
    if not isinstance(name, str):
        raise InvalidInputError(
            f"event type must be a string, got {type(name).__name__}", field="eventType"
        )
    key = name.strip()
    alias = _EVENT_ALIASES.get(key)
    if alias is not None:
        return str(alias)
    if len(key) > 100 or not _EVENT_TYPE_RE.match(key):
        raise InvalidInputError(
            f"invalid event type {name[:120]!r}: use lower-case words joined by '.' or '_' "
            "(e.g. 'opportunity.created')",
            field="eventType",
        )
    return key


EventTypeName = Annotated[str, AfterValidator(canonical_event_type)]


_FIELD_SEGMENT_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]{0,63}|\d{1,6})\Z")


def check_field_path(path: str) -> str:
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


FieldPath = Annotated[str, AfterValidator(check_field_path)]
"""A dotted path into a document: at most 10 segments, each a name or a list index."""


def ensure_utc(value: datetime, field: str = "datetime") -> datetime:
    """Return ``value`` converted to UTC; reject naive datetimes, which are ambiguous, and
    those outside ``[DEFAULT_LIMITS.earliest, DEFAULT_LIMITS.latest]`` (what every model and
    backend holds: a store given a later ``now`` would write a record no read could load)."""
    limits = _limits.DEFAULT_LIMITS
    if (  # in UTC already, within the limits: the usual case
        type(value) is datetime
        and value.tzinfo is UTC
        and limits.earliest <= value <= limits.latest
    ):
        return value
    if not isinstance(value, datetime):
        raise InvalidInputError(f"expected a datetime, got {type(value).__name__}", field=field)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(
            "naive datetime rejected: give a timezone (e.g. tzinfo=datetime.UTC)", field=field
        )
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # within hours of the calendar's ends: no UTC datetime exists
        raise InvalidInputError("datetime out of range", field=field) from None
    if not limits.earliest <= utc <= limits.latest:
        raise InvalidInputError(
            f"must be between {limits.earliest.isoformat()} and {limits.latest.isoformat()}",
            field=field,
        )
    return utc
