"""Checks the models run on raw input before pydantic recurses into it.

Free-form documents (an event's ``payload``, an activity's extra ``metadata``, a condition's
``value``, an action's ``params``) hold only JSON-like values, so that every backend stores
exactly what the in-memory store accepts:

- ``str`` (valid Unicode: no lone surrogates; no NUL character), ``int`` within a signed
  64-bit integer, finite ``float``, ``bool``, ``None``, ``list`` and ``dict``; and
  timezone-aware ``datetime`` within :attr:`Limits.earliest <leadflow.limits.Limits.earliest>`
  and ``latest``. Nothing else: no tuples, sets, bytes, ``Decimal`` or naive datetimes.
- dict keys are non-empty strings without NUL, not starting with ``$`` and without ``.``.
- nesting at most ``document_depth`` levels (the document itself is level 1), size as compact
  JSON (UTF-8, datetimes as ISO text) at most ``document_bytes``; optionally every list at most
  ``max_list`` items.

Every check is iterative (no recursion, whatever the input's depth) and raises
:class:`~leadflow.InvalidInputError` naming the offending place (``payload.customer.tags[3]``);
inside a pydantic validator that becomes a ``ValidationError`` for the field.

:func:`check_document` first runs a single pass written for what hosts send (exact ``dict``,
``list``, ``str``, ``int``, ``float``, ``bool``, ``None`` and UTC datetimes, the text checks
done in C on joined strings); it only ever accepts, and when it is not sure (an error to name,
a subclass, another time zone) the detailed walk decides. ``tests/test_documents_fast.py``
holds the two to each other.

:func:`~leadflow.condition_tree.check_condition_tree` bounds the nesting of condition groups
and the number of condition nodes of a rule, on the raw input, before pydantic builds it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from . import limits as _limits
from .errors import InvalidInputError

__all__ = [
    "as_document",
    "check_datetime",
    "check_document",
    "check_key",
    "copy_document",
    "json_size",
    "plain",
    "plain_document",
]

_T = TypeVar("_T")
_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1


def _where(path: tuple[str | int, ...]) -> str:
    """``payload.customer.tags[3]``; a key that is not a plain name is quoted: ``a['b.c']``."""
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif not parts:
            parts.append(part)
        elif part.isidentifier() and len(part) <= 80:
            parts.append(f".{part}")
        else:
            parts.append(f"[{part[:80]!r}]")
    return "".join(parts)


def plain(value: _T) -> _T:
    """``value`` as an exact ``str`` (its characters) if it is a ``str`` subclass; anything else
    as is. A subclass may be unhashable (``bson.code.Code``, one setting ``__hash__ = None``), or
    mean something else to a driver: leadflow keeps only its text."""
    if type(value) is str or not isinstance(value, str):
        return value
    return cast(_T, str.__str__(value))


def as_document(value: Any, field: str, *, max_list: int | None = None) -> Any:
    """``value`` checked by :func:`check_document` when it is a mapping (a copy as a ``dict``
    if it is another kind of mapping, with ``str`` subclasses made plain text: see
    :func:`plain_document`); anything else is returned as is, for pydantic to judge.
    For ``mode="before"`` validators."""
    if isinstance(value, Mapping):
        if type(value) is not dict:
            value = dict(value)
        return plain_document(value, field, max_list=max_list)
    return value


def plain_document(value: Any, field: str, *, max_list: int | None = None) -> Any:
    """``value`` checked by :func:`check_document`; returned as is when it holds only exact
    ``dict``, ``list`` and ``str`` (the common case, decided by the fast path), else as a copy in
    which every ``str`` subclass (key or value) is an exact ``str`` and every ``dict`` / ``list``
    subclass a ``dict`` / ``list``."""
    limits = _limits.DEFAULT_LIMITS
    bound = _lean_bound(value, limits, max_list)
    if bound is not None:
        if bound > limits.document_bytes:
            check_document(value, field, max_list=max_list)  # the exact size decides
        return value
    check_document(value, field, max_list=max_list)
    return _plain_copy(value)


def _plain_copy(value: Any) -> Any:
    """A copy of a checked document (bounded depth) with plain ``str`` / ``dict`` / ``list``."""
    if isinstance(value, dict):
        return {plain(key): _plain_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_copy(item) for item in value]
    return plain(value)


def _valid_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_key(key: object, field: str) -> str:
    """``key`` if it may name a document field; else :class:`InvalidInputError` at ``field``."""
    if not isinstance(key, str):
        raise InvalidInputError(f"keys must be strings, got {type(key).__name__}", field=field)
    text = str.__str__(key)  # its characters, whatever a str subclass overrides
    if not text or text[0] == "$" or "." in text or "\x00" in text:
        raise InvalidInputError(
            f"key {text[:80]!r} must be non-empty, not start with '$' and hold no '.' or NUL",
            field=field,
        )
    if not _valid_text(text):
        raise InvalidInputError("key is not valid Unicode (lone surrogate)", field=field)
    return key


def _scalar_bound(value: object, path: tuple[str | int, ...]) -> int:
    """What a scalar adds to a size bound beyond ``_PER_ITEM`` (its characters, for text), or
    :class:`InvalidInputError` if it is not allowed."""
    if isinstance(value, str):
        if not _valid_text(value):
            raise InvalidInputError(
                "text is not valid Unicode (lone surrogate)", field=_where(path)
            )
        if "\x00" in value:
            raise InvalidInputError(
                "text may not hold a NUL character (PostgreSQL cannot store one)",
                field=_where(path),
            )
        return _PER_CHAR * len(value)
    if value is None or value is True or value is False:
        return 0
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidInputError(
                "integer does not fit in a signed 64-bit integer", field=_where(path)
            )
        return 0
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(
                "number must be finite (no NaN or infinity)", field=_where(path)
            )
        return 0
    if isinstance(value, datetime):
        check_datetime(value, _where(path))
        return 0
    raise InvalidInputError(
        f"unsupported value of type {type(value).__name__}: use text, a number, true/false, "
        "null, a list, an object or an aware datetime",
        field=_where(path),
    )


def check_datetime(value: datetime, field: str | None) -> None:
    """Refuse a naive datetime or one outside ``[earliest, latest]``: InvalidInputError."""
    limits = _limits.DEFAULT_LIMITS
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError("datetime must be timezone-aware", field=field)
    try:
        within = limits.earliest <= value <= limits.latest
    except (OverflowError, ValueError):
        within = False
    if not within:
        raise InvalidInputError(
            f"datetime must be between {limits.earliest.isoformat()} and "
            f"{limits.latest.isoformat()}",
            field=field,
        )


def check_document(value: Any, field: str, *, max_list: int | None = None) -> int:
    """Check that ``value`` is a storable JSON-like document (see the module docstring).

    Returns an upper bound on its size as compact JSON (exact when the cheap bound exceeds the
    limit), so a caller can bound the sum of several documents. Raises
    :class:`InvalidInputError` naming the offending place, starting with ``field``. Never
    recurses; the work is proportional to the size of ``value``.
    """
    limits = _limits.DEFAULT_LIMITS
    bound = _lean_bound(value, limits, max_list)
    if bound is None:  # something to report, or unusual: the detailed walk says what
        bound = _detailed_bound(value, field, limits.document_depth, max_list)
    if bound > limits.document_bytes:
        size = json_size(value)
        if size > limits.document_bytes:
            raise InvalidInputError(
                f"document of {size} bytes as JSON; at most {limits.document_bytes} allowed",
                field=field,
            )
        return size
    return bound


# Upper bound per item (key quotes, colon, comma, and any scalar but a string), per character of
# a key or string (the longest escape, ``\u0000``; at most 4 bytes as UTF-8) and per container.
_PER_ITEM, _PER_CHAR, _PER_CONTAINER = 48, 6, 2


def _lean_bound(value: Any, limits: _limits.Limits, max_list: int | None) -> int | None:
    """The fast path of :func:`check_document`: the detailed walk's size bound when ``value``
    passes every check, ``None`` when it may not (the detailed walk then decides and names the
    problem). Never wrong the other way: what it accepts, the detailed walk accepts with the same
    bound (``tests/test_documents_fast.py`` holds the two to each other, and shows that on
    plain JSON-like input it accepts exactly what the walk accepts).

    One pass over the values, written for the shape of an event payload: the document's items
    in one loop, the items of its child containers in an inner loop (level 2), anything deeper
    in :func:`_deep_bound`. The per-character work is done in C on joined text:

    * every key goes into one list, joined with ``.`` (``TypeError``: a key that is not a
      ``str``). ``.`` may not occur in a key, so no key holds one iff the joined text holds
      exactly one ``.`` fewer than there are keys; then a key is empty iff ``.`` opens or ends
      the text or two follow each other, and a key starts with ``$`` iff ``$`` opens the text
      or follows a ``.``; NUL is searched for. A joined text found valid is remembered
      (:data:`_VALID_KEYS`, bounded), since a host's documents repeat their keys;
    * the keys and every exact-``str`` value are joined once: ASCII text is valid, other text
      is valid iff it encodes as UTF-8 (a lone surrogate never encodes, joined or not);
    * other values by exact type: ``int`` in the signed 64-bit range, ``float`` finite (``x - x``
      is ``0.0`` only for finite ``x``), ``bool``, ``None``, a ``datetime`` in UTC within the
      limits; ``dict`` and ``list`` go one level down. Anything else (a subclass, a tuple,
      another time zone) gives ``None``.
    """
    if type(value) is dict:
        keys = list(value)
        top: Iterable[Any] = value.values()
    elif type(value) is list:
        if max_list is not None and len(value) > max_list:
            return None
        keys = []
        top = value
    else:
        return None
    texts: list[str] = []  # every text value, then the joined keys
    add = texts.append
    int_min, int_max = _INT_MIN, _INT_MAX
    items, containers = len(value), 1
    if limits.document_depth < 1:
        return None
    nested = limits.document_depth >= 2
    deep: list[Any] | None = None  # the containers at level 3
    for item in top:
        kind = type(item)
        if kind is str:
            add(item)
        elif kind is int:
            if not int_min <= item <= int_max:
                return None
        elif kind is float:
            if item - item != 0.0:  # NaN or infinite
                return None
        elif kind is dict or kind is list:
            if not nested:
                return None
            containers += 1
            items += len(item)
            if kind is dict:
                keys += item
                item = item.values()
            elif max_list is not None and len(item) > max_list:
                return None
            for inner in item:
                kind = type(inner)
                if kind is str:
                    add(inner)
                elif kind is int:
                    if not int_min <= inner <= int_max:
                        return None
                elif kind is float:
                    if inner - inner != 0.0:
                        return None
                elif kind is dict or kind is list:
                    if deep is None:
                        deep = [inner]
                    else:
                        deep.append(inner)
                elif kind is datetime:
                    if inner.tzinfo is not UTC or not limits.earliest <= inner <= limits.latest:
                        return None
                elif kind is not bool and inner is not None:
                    return None
        elif kind is datetime:
            if item.tzinfo is not UTC or not limits.earliest <= item <= limits.latest:
                return None
        elif kind is not bool and item is not None:
            return None
    if deep is not None:
        counted = _deep_bound(deep, limits, max_list, keys, add)
        if counted is None:
            return None
        items += counted[0]
        containers += counted[1]
    separators = len(keys) - 1
    if separators >= 0:
        try:
            joined = ".".join(keys)
        except TypeError:
            return None
        if joined.count(".") != separators:
            return None
        if joined not in _VALID_KEYS:
            if (
                not joined
                or joined[0] in ".$"
                or joined[-1] == "."
                or ".." in joined
                or ".$" in joined
                or "\x00" in joined
            ):
                return None
            if len(_VALID_KEYS) < _VALID_KEYS_MAX and len(joined) <= _VALID_KEYS_CHARS:
                _VALID_KEYS.add(joined)
        add(joined)
    text = "".join(texts)
    if "\x00" in text:
        return None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return None
    chars = len(text) - separators if separators > 0 else len(text)
    return _PER_CHAR * chars + _PER_ITEM * items + _PER_CONTAINER * containers


def _deep_bound(
    level: list[Any],
    limits: _limits.Limits,
    max_list: int | None,
    keys: list[str],
    add: Callable[[str], None],
) -> tuple[int, int] | None:
    """:func:`_lean_bound` below level 2: the containers of ``level`` (level 3) and everything
    under them. Adds their keys to ``keys`` and their text values through ``add``; returns
    how many items and containers it saw, or ``None`` as :func:`_lean_bound` does."""
    int_min, int_max = _INT_MIN, _INT_MAX
    items = containers = 0
    stack = [(container, 3) for container in level]
    while stack:
        container, depth = stack.pop()
        if depth > limits.document_depth:
            return None
        containers += 1
        items += len(container)
        if type(container) is dict:
            keys += container
            container = container.values()
        elif max_list is not None and len(container) > max_list:
            return None
        for item in container:
            kind = type(item)
            if kind is str:
                add(item)
            elif kind is int:
                if not int_min <= item <= int_max:
                    return None
            elif kind is float:
                if item - item != 0.0:
                    return None
            elif kind is dict or kind is list:
                stack.append((item, depth + 1))
            elif kind is datetime:
                if item.tzinfo is not UTC or not limits.earliest <= item <= limits.latest:
                    return None
            elif kind is not bool and item is not None:
                return None
    return items, containers


_VALID_KEYS: set[str] = set()
"""Joined key texts (see :func:`_lean_bound`) already found valid: a pure function of the text,
so remembering it is safe; at most ``_VALID_KEYS_MAX`` texts of ``_VALID_KEYS_CHARS``."""
_VALID_KEYS_MAX, _VALID_KEYS_CHARS = 1024, 2048


def _detailed_bound(value: Any, field: str, max_depth: int, max_list: int | None) -> int:
    """:func:`check_document`'s walk that names what it refuses; returns a size bound."""
    if not isinstance(value, dict | list):
        return _PER_ITEM + _scalar_bound(value, (field,))
    size = 0
    # Each entry: a container, its depth (the document is level 1) and its path.
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(value, 1, (field,))]
    while stack:
        container, depth, path = stack.pop()
        if depth > max_depth:
            raise InvalidInputError(f"nested deeper than {max_depth} levels", field=_where(path))
        items: Iterable[tuple[Any, Any]]
        if isinstance(container, dict):
            size += _PER_CONTAINER
            for key in container:
                check_key(key, _where((*path, str(key))))
                size += _PER_CHAR * str.__len__(key)
            items = container.items()
        else:
            if max_list is not None and len(container) > max_list:
                raise InvalidInputError(
                    f"list of {len(container)} items; at most {max_list} allowed",
                    field=_where(path),
                )
            size += _PER_CONTAINER
            items = enumerate(container)
        for key, item in items:
            size += _PER_ITEM
            if isinstance(item, dict | list):
                stack.append((item, depth + 1, (*path, key)))
            else:
                size += _scalar_bound(item, (*path, key))
    return size


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON-like: {type(value).__name__}")


def json_size(value: Any) -> int:
    """The size in bytes of ``value`` as compact UTF-8 JSON (datetimes as ISO text).

    Only for values :func:`check_document` accepted (bounded depth)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_iso)
    return len(text.encode("utf-8"))


def copy_document(value: Any) -> Any:
    """A copy of a checked document sharing no ``dict`` or ``list`` with it (every other value
    a document may hold is immutable). For documents already checked by
    :func:`check_document`, whose nesting is bounded by ``document_depth``."""
    kind = type(value)
    if kind is dict:
        return {key: copy_document(item) for key, item in value.items()}
    if kind is list:
        return [copy_document(item) for item in value]
    return value
