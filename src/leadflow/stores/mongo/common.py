"""What every Mongo store shares: argument guards, documents at BSON precision, binding a
collection with UTC-aware codec options, and the base class that creates indexes.

The host owns the connection: each store takes a pymongo ``Database`` (or a ``Collection``) and
never creates or closes a client. Documents use the seed's camelCase field names; datetimes are
BSON dates (millisecond precision, so stored copies are truncated to the millisecond) and always
come back timezone-aware in UTC, whatever codec options the host's client has. Every value a
caller supplies passes :func:`guard_literal` before it reaches a filter, so it can never act as a
query operator.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar, cast

from pymongo import IndexModel
from pymongo.collection import Collection
from pymongo.database import Database

from ...clock import ensure_utc
from ...documents import plain
from ...errors import InvalidInputError, UnsafeQueryError
from ...fields import ID_RE, _Model
from ...models import ActivityType, Outcome
from ..checks import check_limit as valid_limit
from .driver import driver_errors

__all__ = [
    "Document",
    "MongoStore",
    "MongoTarget",
    "bind",
    "bson_precision",
    "checked_document",
    "conjoin",
    "enum_values",
    "guard_literal",
    "later",
    "ms",
    "valid_id",
    "valid_limit",
    "valid_text",
    "when",
]

Document = dict[str, Any]
M = TypeVar("M", bound=_Model)
MongoTarget = Database[Any] | Collection[Any]


# --------------------------------------------------------------------------- guards


def guard_literal(field: str, value: Any) -> Any:
    """Return ``value`` if MongoDB can only read it as a literal; else :class:`UnsafeQueryError`.

    A mapping in a filter is an operator document (``{"$ne": None}`` matches everything), and a
    ``$``-prefixed string is a field path inside aggregation expressions. Sequences are checked
    item by item. Run every caller-supplied value through this before it enters a filter.
    """
    if isinstance(value, Mapping):
        raise UnsafeQueryError(
            "a mapping would act as a query operator; pass a plain value", field=field
        )
    if isinstance(value, str) and value.startswith("$"):
        raise UnsafeQueryError("a value starting with '$' is not allowed here", field=field)
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            guard_literal(field, item)
    return value


def valid_id(field: str, value: Any) -> str:
    """``value`` if it is a leadflow id (and a literal); else :class:`InvalidInputError`."""
    guard_literal(field, value)
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidInputError(
            "expected an id: 1-128 letters, digits or '_ . : @ -', not starting with a symbol",
            field=field,
        )
    return plain(value)  # a str subclass (bson.code.Code...) would be encoded as another type


def valid_text(field: str, value: Any) -> str:
    guard_literal(field, value)
    if not isinstance(value, str) or not value:
        raise InvalidInputError("expected a non-empty string", field=field)
    return plain(value)


def when(field: str, value: Any) -> datetime:
    """An aware datetime in UTC at BSON precision; naive or non-datetimes are refused."""
    guard_literal(field, value)
    return ms(ensure_utc(value, field))


def later(field: str, start: datetime, delta: Any) -> datetime:
    """``start + delta`` for a positive timedelta ``delta``, at BSON precision."""
    if not isinstance(delta, timedelta) or delta <= timedelta(0):
        raise InvalidInputError("must be a positive timedelta", field=field)
    try:
        return ms(start + delta)
    except OverflowError as exc:
        raise InvalidInputError("ends after the year 9999", field=field) from exc


def enum_values(field: str, values: Iterable[Any], kind: type[ActivityType | Outcome]) -> list[str]:
    result = []
    for value in values:
        guard_literal(field, value)
        try:
            result.append(kind(value).value)
        except ValueError as exc:
            raise InvalidInputError(f"unknown value {value!r}", field=field) from exc
    return result


# --------------------------------------------------------------------------- documents


def ms(value: datetime) -> datetime:
    """``value`` at BSON precision (whole milliseconds), as the database will return it."""
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def _bson_precision(value: Any) -> Any:
    if isinstance(value, datetime):
        return ms(value)
    if isinstance(value, dict):
        return {k: _bson_precision(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bson_precision(v) for v in value]
    return value


bson_precision = _bson_precision
"""A document (or value) with its datetimes at BSON's millisecond precision."""


def checked_document(model: Any, kind: type[M], field: str, **changes: Any) -> Document:
    """``model``'s document with ``changes`` (camelCase), re-validated and at BSON precision.

    Models do not validate on assignment, so one may have been broken after it was built;
    validating here keeps documents that could not be loaded back out of the collection.
    """
    if not isinstance(model, kind):
        raise InvalidInputError(
            f"expected a {kind.__name__}, got {type(model).__name__}", field=field
        )
    document = model.to_document()
    document.update(changes)
    return cast(Document, _bson_precision(kind.from_document(document).to_document()))


def conjoin(clauses: Sequence[Document]) -> Document:
    """One filter requiring every clause: merged into one document while no key repeats."""
    merged: Document = {}
    rest: list[Document] = []
    for clause in clauses:
        if any(key in merged or key == "$and" for key in clause):
            rest.append(clause)
        else:
            merged.update(clause)
    if rest:
        merged["$and"] = rest
    return merged


def bind(target: MongoTarget, name: str) -> Collection[Document]:
    """The collection, with codec options that decode BSON dates as aware UTC datetimes.

    ``target`` is a ``Database`` (the collection ``name`` of it) or a ``Collection`` (used as
    is). The host's other codec options (UUID representation...) are kept.
    """
    if not isinstance(name, str) or not name or "$" in name or "\x00" in name:
        raise InvalidInputError(
            "collection name must be a non-empty string without '$'", field="collection"
        )
    # A Database answers any attribute with a sub-collection, so ask the type, not the object.
    collection = target if hasattr(type(target), "find_one") else target[name]
    options = collection.codec_options.with_options(document_class=dict, tz_aware=True, tzinfo=UTC)
    return cast("Collection[Document]", collection.with_options(codec_options=options))


class MongoStore:
    """What the stores on one collection share: binding it and creating its indexes."""

    DEFAULT_COLLECTION: ClassVar[str]
    INDEXES: ClassVar[tuple[IndexModel, ...]]

    def __init__(self, target: MongoTarget, *, collection: str | None = None) -> None:
        self._collection = bind(target, collection or self.DEFAULT_COLLECTION)

    @property
    def collection(self) -> Collection[Document]:
        """The bound collection (with UTC-aware codec options); for host-side maintenance."""
        return self._collection

    def ensure_indexes(self) -> builtins.list[str]:
        """Create the indexes every query of this store relies on; returns their names.

        Idempotent, so it can run at every start. An existing index with the same name but
        another definition makes the server refuse (:class:`~leadflow.StorageError`): drop it
        first.
        """
        with driver_errors("indexes"):
            return builtins.list(self._collection.create_indexes(builtins.list(self.INDEXES)))
