"""Column types that behave the same on SQLite and PostgreSQL.

- :class:`UtcDateTime`: an aware datetime in, an aware UTC datetime out. PostgreSQL keeps a
  ``timestamptz``; SQLite, which has no date type, keeps integer microseconds since the Unix
  epoch, which sort and compare like the times they stand for (and so serve range queries and
  indexes). Naive datetimes are refused before anything is written.
- :class:`Document`: a free-form document (an event payload, metadata, action params) as
  ``JSONB`` on PostgreSQL and ``JSON`` on SQLite. Documents may hold aware datetimes (see
  :mod:`leadflow.documents`); JSON has none, so each is written as ``{"$dt": "<ISO 8601>"}``
  and read back as a UTC datetime. Document keys never start with ``$``, so the tag cannot be
  confused with data.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from ... import limits as _limits
from ...clock import ensure_utc

__all__ = [
    "EPOCH",
    "ActionTypeOf",
    "Document",
    "UtcDateTime",
    "decode_document",
    "document_from_text",
    "document_text",
    "encode_document",
    "micros",
    "utc_value",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TAG: Final = "$dt"
_MICROSECOND: Final = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact)."""
    return (value - EPOCH) // _MICROSECOND


def utc_value(value: datetime) -> datetime:
    """:func:`~leadflow.clock.ensure_utc` of ``value``, the same answer and the same errors,
    with a short way for what a store is mostly given: a plain datetime already in UTC
    within the limits (a value a model validated), about a quarter of the general check's
    cost; a row of a ``handle_many`` chunk carries a dozen of them."""
    if type(value) is datetime and value.tzinfo is UTC:
        limits = _limits.DEFAULT_LIMITS
        if limits.earliest <= value <= limits.latest:
            return value
    return ensure_utc(value)


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes: ``timestamptz`` on PostgreSQL, integer microseconds on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        utc = utc_value(value)
        return micros(utc) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return from_micros(int(value))


def encode_document(value: Any) -> Any:
    """``value`` with every datetime replaced by its tag (a new structure; iterative)."""
    if isinstance(value, datetime):
        return {_TAG: value.astimezone(UTC).isoformat()}
    if not isinstance(value, dict | list):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, datetime):
                converted: Any = {_TAG: item.astimezone(UTC).isoformat()}
            elif isinstance(item, dict | list):
                converted = {} if isinstance(item, dict) else []
                stack.append((item, converted))
            else:
                converted = item
            if isinstance(target, dict):
                target[key] = converted
            else:
                target.append(converted)
    return root


def _tag(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_TAG: value.astimezone(UTC).isoformat()}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_JSON: Final = json.JSONEncoder(default=_tag)


def document_text(value: Any) -> str:
    """``json.dumps(encode_document(value))``, the same text, in one pass of the standard
    library's C encoder: it calls back only for the datetimes (which it cannot encode), each
    becoming its tag; no copy of the document is built first."""
    return _JSON.encode(value)


def _decoded(item: Any) -> Any:
    if isinstance(item, dict) and len(item) == 1 and _TAG in item:
        return datetime.fromisoformat(item[_TAG]).astimezone(UTC)
    return item


def decode_document(value: Any) -> Any:
    """The inverse of :func:`encode_document`, in place on a freshly decoded JSON value (whose
    containers are plain dicts and lists: scalars are stepped over without a call each)."""
    value = _decoded(value)
    stack = [value] if isinstance(value, dict | list) else []
    while stack:
        node = stack.pop()
        items = node.items() if type(node) is dict else enumerate(node)
        tagged: list[tuple[Any, datetime]] = []
        for key, item in items:
            kind = type(item)
            if kind is dict:
                if len(item) == 1 and _TAG in item:
                    tagged.append((key, datetime.fromisoformat(item[_TAG]).astimezone(UTC)))
                else:
                    stack.append(item)
            elif kind is list:
                stack.append(item)
        for key, when in tagged:
            node[key] = when
    return value


def _untagged(item: dict[str, Any]) -> Any:
    if len(item) == 1 and _TAG in item:
        return datetime.fromisoformat(item[_TAG]).astimezone(UTC)
    return item


_DECODER: Final = json.JSONDecoder(object_hook=_untagged)


def document_from_text(text: str | bytes) -> Any:
    """``decode_document(json.loads(text))``, the same value, in one pass of the standard
    library's C decoder: it calls back once per JSON object (never per scalar), and each tag
    becomes its datetime as the object is made."""
    return _DECODER.decode(text if isinstance(text, str) else text.decode())


class Document(TypeDecorator[Any]):
    """A JSON document (``JSONB`` on PostgreSQL) whose datetimes survive the round trip."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else encode_document(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else decode_document(value)


class ActionTypeOf(FunctionElement[str]):
    """``ActionTypeOf(action_column)``: the ``actionType`` of a scheduled action's ``action``
    document, NULL for a delivery (which has none). Written the same way in the claim's
    statements and in the index they read (``action ->> 'actionType'`` on PostgreSQL,
    ``json_extract(action, '$.actionType')`` on SQLite): a database uses an index on an
    expression only for the same expression."""

    type = Text()
    name = "action_type_of"
    inherit_cache = True


@compiles(ActionTypeOf, "postgresql")
def _action_type_postgresql(element: ActionTypeOf, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return f"({compiler.process(column, **kw)} ->> 'actionType')"


@compiles(ActionTypeOf, "sqlite")
def _action_type_sqlite(element: ActionTypeOf, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return f"json_extract({compiler.process(column, **kw)}, '$.actionType')"
