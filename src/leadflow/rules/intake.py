"""Reading an event document (the mapping a host holds) without building a pydantic model first.

``Event.model_validate(document)`` costs more than matching the event against twenty rules. The
engine reads the common, plain document itself: :func:`read_event` checks everything the
:class:`~leadflow.Event` model checks and returns the same normalised values, and hands every
document it is not sure about (another type, an unusual value, anything invalid) to
``Event.model_validate``, so a bad document raises exactly the ``ValidationError`` the model
raises. What it accepts, conservatively:

* a ``dict`` whose keys are among the model's spellings (``eventId``/``id``,
  ``eventType``/``type``, ``occurredAt``/``time``, ``payload``, ``actor``), one per field;
* ``id`` / ``actor``: a ``str`` matching the id pattern (no surrounding spaces), ``actor`` may be
  None; a missing ``id`` gets a fresh one, as the model's default does;
* ``type``: a spelling already seen to canonicalise (a small bounded cache filled from the model);
* ``time``: an aware ``datetime`` (converted to UTC) or an ISO-8601 string with seconds and an
  offset (``2026-03-02T08:00:00Z``), within ``DEFAULT_LIMITS.earliest`` / ``latest``;
* ``payload``: a ``dict`` that passes :func:`leadflow.documents.check_document`, the very check
  the model runs. The payload is copied, as the model copies it.

``tests/test_properties.py`` holds :func:`read_event` to ``Event.model_validate`` on random,
hostile documents. If :class:`~leadflow.Event` grows a validator this module does not know, the
lean path switches itself off (every document goes to the model) until it is taught the check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timezone
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from ..documents import check_document
from ..errors import InvalidInputError
from ..limits import DEFAULT_LIMITS
from ..models import ID_RE, Event, new_id

__all__ = ["EventFields", "read_event"]


class EventFields(NamedTuple):
    """The validated, normalised fields of one event."""

    id: str
    type: str
    time: datetime
    payload: dict[str, Any]
    actor: str | None
    fields_set: frozenset[str]
    model: Event | None  # the model when one was built (given, or by the fallback)

    def event(self) -> Event:
        """The :class:`~leadflow.Event` these fields describe (built on first need)."""
        if self.model is not None:
            return self.model
        return Event.model_construct(
            set(self.fields_set),
            id=self.id,
            type=self.type,
            time=self.time,
            payload=self.payload,
            actor=self.actor,
        )


# Each accepted key -> the field it sets (the document spelling and the attribute name).
_SPELLINGS = {
    "eventId": "id",
    "id": "id",
    "eventType": "type",
    "type": "type",
    "occurredAt": "time",
    "time": "time",
    "payload": "payload",
    "actor": "actor",
}
_KEYS = frozenset(_SPELLINGS)
_KNOWN_VALIDATORS = frozenset({"_json_like"})
_ID = re.compile(ID_RE.pattern.removeprefix("^").removesuffix("$"))
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")
_EARLIEST, _LATEST = DEFAULT_LIMITS.earliest, DEFAULT_LIMITS.latest
_ZONES = (timezone, ZoneInfo)
_TYPES: dict[str, str] = {}  # raw event type spelling -> canonical, learned from the model
_TYPES_MAX = 256


def _lean_possible() -> bool:
    decorators = Event.__pydantic_decorators__
    names = set(decorators.field_validators) | set(decorators.model_validators)
    names |= set(decorators.root_validators) | set(decorators.validators)
    spellings: dict[str, str] = {}
    for name, info in Event.model_fields.items():
        choices = getattr(info.validation_alias, "choices", None) or [info.alias or name]
        for choice in [*choices, name]:
            if not isinstance(choice, str):
                return False
            spellings[choice] = name
    return spellings == _SPELLINGS and names <= _KNOWN_VALIDATORS


_LEAN = _lean_possible()


def read_event(document: Event | Mapping[str, Any]) -> EventFields:
    """The validated fields of ``document`` (an :class:`~leadflow.Event` or its document).

    Raises pydantic's ``ValidationError`` (naming the field) exactly when
    ``Event.model_validate(document)`` does; the fields returned equal that model's.
    """
    if isinstance(document, Event):
        return EventFields(
            document.id,
            document.type,
            document.time,
            document.payload,
            document.actor,
            frozenset(document.model_fields_set),
            document,
        )
    fields = _lean(document) if _LEAN and type(document) is dict else None
    if fields is not None:
        return fields
    model = Event.model_validate(document)
    if type(document) is dict:
        raw = document.get("eventType", document.get("type"))
        if type(raw) is str and len(_TYPES) < _TYPES_MAX and len(raw) <= 100:
            _TYPES[raw] = model.type
    return read_event(model)


def _lean(document: dict[str, Any]) -> EventFields | None:
    if not document.keys() <= _KEYS:
        return None
    got: dict[str, Any] = {}
    for key, value in document.items():
        name = _SPELLINGS[key]
        if name in got:
            return None  # two spellings of one field: the model says what is wrong
        got[name] = value
    raw = got.get("type")
    kind = _TYPES.get(raw) if type(raw) is str else None
    if kind is None:
        return None
    when = _time(got.get("time"))
    if when is None:
        return None
    payload = got.get("payload", _ABSENT)
    if payload is _ABSENT:
        payload = {}
    elif type(payload) is not dict:
        return None
    else:
        try:
            check_document(payload, "payload")
        except InvalidInputError:
            return None
        payload = dict(payload)
    ident = got.get("id", _ABSENT)
    if ident is _ABSENT:
        ident = new_id()
    elif type(ident) is not str or _ID.fullmatch(ident) is None:
        return None
    actor = got.get("actor")
    if actor is not None and (type(actor) is not str or _ID.fullmatch(actor) is None):
        return None
    return EventFields(ident, kind, when, payload, actor, frozenset(got), None)


_ABSENT: Any = object()


def _time(value: Any) -> datetime | None:
    when: datetime
    if type(value) is datetime:
        when = value
        zone = when.tzinfo
        if zone is not UTC:
            if type(zone) not in _ZONES or when.utcoffset() is None:
                return None
            when = when.astimezone(UTC)
    elif type(value) is str and _ISO.fullmatch(value) is not None:
        try:
            when = datetime.fromisoformat(value).astimezone(UTC)
        except (ValueError, OverflowError):
            return None
    else:
        return None
    if _EARLIEST <= when <= _LATEST:
        return when
    return None
