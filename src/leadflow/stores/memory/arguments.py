"""Argument checks shared by the in-memory stores: the same refusals as every backend makes."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from ...errors import InvalidInputError
from ...models import ID_RE

__all__ = ["check_id", "check_limit", "check_model", "check_type"]

_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)


def check_limit(limit: object, maximum: int | None = None) -> int:
    """``limit`` as an int of at least 1 (and at most ``maximum``), else
    :class:`InvalidInputError` naming ``limit``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInputError(f"must be a positive integer, got {limit!r}", field="limit")
    if maximum is not None and limit > maximum:
        raise InvalidInputError(f"must be at most {maximum}, got {limit}", field="limit")
    return limit


def check_id(value: object, field: str, *, optional: bool = False) -> None:
    """:class:`InvalidInputError` unless ``value`` is an id (or None when ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidInputError(f"not a valid id: {value!r}", field=field)


def check_type(value: Any, cls: type[_T], field: str, *, optional: bool = False) -> _T | None:
    """``value`` if it is a ``cls`` (or None when ``optional``), else :class:`InvalidInputError`:
    a dict where a filter belongs is refused, not read as one."""
    if value is None and optional:
        return None
    if not isinstance(value, cls):
        raise InvalidInputError(
            f"expected a {cls.__name__}, got {type(value).__name__}", field=field
        )
    return value


def check_model(value: object, cls: type[_M], field: str) -> _M:
    """A validated copy of the model ``value`` (:class:`InvalidInputError` if it is no ``cls``).

    A pydantic model checks its fields when it is built, not when a field is assigned later,
    so a caller may hand over a model it changed since (a naive datetime, a bad id). Dumping and
    validating again refuses that (pydantic's ``ValidationError``) and gives the store a copy
    that shares nothing with the caller's object.
    """
    if not isinstance(value, cls):
        raise InvalidInputError(
            f"expected a {cls.__name__}, got {type(value).__name__}", field=field
        )
    return cls.model_validate(value.model_dump())
