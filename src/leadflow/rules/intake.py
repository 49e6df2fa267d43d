"""Reading an event document (the mapping a host holds) without building a pydantic model first.

``Event.model_validate(document)`` costs more than matching the event against twenty rules. The
engine reads the common, plain document itself: :func:`read_event` checks everything the
:class:`~leadflow.Event` model checks and returns the same normalised values, and hands every
document it is not sure about (another type, an unusual value, anything invalid) to
``Event.model_validate``, so a bad document raises exactly the ``ValidationError`` the model
raises. What it accepts, conservatively:

* a ``dict`` whose keys are among the model's spellings (``eventId``/``id``,
  ``eventType``/``type``, ``occurredAt``/``time``, ``payload``, ``actor``), one per field (each
  tuple of keys is worked out once and remembered, in a small bounded table);
* ``id`` / ``actor``: a ``str`` matching the id pattern (no surrounding spaces), ``actor`` may be
  None; a missing ``id`` gets a fresh one, as the model's default does;
* ``type``: a spelling already seen to canonicalise (a small bounded cache filled from the model);
* ``time``: an aware ``datetime`` (converted to UTC) or an ISO-8601 string with seconds and an
  offset (``2026-03-02T08:00:00Z``), within ``DEFAULT_LIMITS.earliest`` / ``latest``;
* ``payload``: a ``dict`` that passes :func:`leadflow.documents.check_document`, the very check
  the model runs (its single-pass fast path, then the detailed walk when that is unsure). The
  payload is copied, as the model copies it.

``tests/test_properties.py`` holds :func:`read_event` to ``Event.model_validate`` on random,
hostile documents. If :class:`~leadflow.Event` grows a validator this module does not know, the
lean path switches itself off (every document goes to the model) until it is taught the check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timezone
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from .. import limits as _limits
from ..documents import _lean_bound, check_document
from ..errors import InvalidInputError
from ..fields import ID_PATTERN
from ..limits import DEFAULT_LIMITS
from ..models import Event, new_id

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
_id_match = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$")).fullmatch
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
    if type(document) is dict and _LEAN:
        fields = _lean(document)
        if fields is not None:
            return fields
    elif isinstance(document, Event):
        return _new_fields(
            EventFields,
            (
                document.id,
                document.type,
                document.time,
                document.payload,
                document.actor,
                frozenset(document.model_fields_set),
                document,
            ),
        )
    model = Event.model_validate(document)
    if type(document) is dict:
        raw = document.get("eventType", document.get("type"))
        if type(raw) is str and len(_TYPES) < _TYPES_MAX and len(raw) <= 100:
            _TYPES[raw] = model.type
    return read_event(model)


_new_fields: Callable[[type[EventFields], tuple[Any, ...]], EventFields] = tuple.__new__
"""``EventFields(*fields)`` without the Python-level ``__new__`` of the named tuple."""

# A document's keys, in its order -> where each field is: (key of id, of type, of time, of
# payload, of actor; None when absent) and the fields set. Only shapes the lean path reads.
_Shape = tuple[str | None, str, str, str | None, str | None, frozenset[str]]
_SHAPES: dict[tuple[str, ...], _Shape | None] = {}
_SHAPES_MAX = 256


def _shape(keys: tuple[str, ...]) -> _Shape | None:
    """Where the fields of a document with these keys are, or None when the model must judge
    it (an unknown key, two spellings of one field, no type or no time)."""
    where: dict[str, str] = {}
    for key in keys:
        name = _SPELLINGS.get(key) if type(key) is str else None
        if name is None or name in where:
            return None
        where[name] = key
    if "type" not in where or "time" not in where:
        return None
    get = where.get
    return (get("id"), where["type"], where["time"], get("payload"), get("actor"), frozenset(where))


def _lean(document: dict[str, Any]) -> EventFields | None:
    keys = tuple(document)
    try:
        shape = _SHAPES[keys]
    except KeyError:
        shape = _shape(keys)
        if len(_SHAPES) < _SHAPES_MAX:
            _SHAPES[keys] = shape
    except TypeError:  # an unhashable key: the model says what is wrong
        return None
    if shape is None:
        return None
    try:
        return _read(document, shape)
    except KeyError:  # a key equal to a field's spelling but not found by it: the model judges
        return None


def _read(document: dict[str, Any], shape: _Shape) -> EventFields | None:
    id_key, type_key, time_key, payload_key, actor_key, fields_set = shape
    raw = document[type_key]
    kind = _TYPES.get(raw) if type(raw) is str else None
    if kind is None:
        return None
    when = document[time_key]
    if type(when) is not datetime or when.tzinfo is not UTC or not _EARLIEST <= when <= _LATEST:
        when = _time(when)
        if when is None:
            return None
    if payload_key is None:
        payload: dict[str, Any] = {}
    else:
        payload = document[payload_key]
        if type(payload) is not dict:
            return None
        limits = _limits.DEFAULT_LIMITS
        bound = _lean_bound(payload, limits, None)  # check_document's own fast path
        if bound is None:  # something unusual (a str subclass, say): the model decides
            return None
        if bound > limits.document_bytes:
            try:
                check_document(payload, "payload")
            except InvalidInputError:
                return None
        payload = payload.copy()
    if id_key is None:
        ident = new_id()
    else:
        ident = document[id_key]
        if type(ident) is not str or _id_match(ident) is None:
            return None
    actor = None if actor_key is None else document[actor_key]
    if actor is not None and (type(actor) is not str or _id_match(actor) is None):
        return None
    return _new_fields(EventFields, (ident, kind, when, payload, actor, fields_set, None))


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
