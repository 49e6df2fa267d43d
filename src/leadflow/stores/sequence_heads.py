"""Enrollment heads built from a SQL store's own rows without validating them again.

A batch of claimed steps reads its enrollments' heads (:meth:`~leadflow.ports.sequences.
EnrollmentSteps.get_heads`) on every ``run_due``; each head's document was validated when the
runtime built the enrollment and written by the store itself, and reading it back through
pydantic's validator was about a fifth of that read's CPU. :func:`trusted_head` builds the
same :class:`~leadflow.sequences.EnrollmentHead` as ``EnrollmentHead.from_document`` would
(the same field values, the same fields set) after checking each value's type only, as
:mod:`leadflow.stores.sql.claimed` does for claimed actions; a document that fails any check
(a key it does not know, a missing field, a value of another type, a naive datetime) is
validated as before, so what is refused stays refused with the same error. Tests hold the two
to each other (``tests/test_sequence_heads.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from ..sequences import EnrollmentHead, EnrollmentState

__all__ = ["head_document", "head_from_row"]

_set = object.__setattr__
_NAMES: Final = {(field.alias or name): name for name, field in EnrollmentHead.model_fields.items()}
"""A document key (camelCase, as the stores write it) -> the field's name."""
_REQUIRED: Final = frozenset(
    field.alias or name
    for name, field in EnrollmentHead.model_fields.items()
    if field.is_required()
)


def _text(value: Any) -> bool:
    return type(value) is str


def _text_or_none(value: Any) -> bool:
    return value is None or type(value) is str


def _integer(value: Any) -> bool:
    return type(value) is int


def _flag(value: Any) -> bool:
    return type(value) is bool


def _mapping(value: Any) -> bool:
    return type(value) is dict


def _variants(value: Any) -> bool:
    return (
        type(value) is dict
        and len(value) <= 100
        and all(type(k) is str and type(v) is str for k, v in value.items())
    )


def _utc(value: Any) -> bool:
    return type(value) is datetime and value.tzinfo is UTC


def _utc_or_none(value: Any) -> bool:
    return value is None or (type(value) is datetime and value.tzinfo is UTC)


_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    "enrollmentId": _text,
    "sequenceId": _text,
    "sequenceVersion": _integer,
    "opportunityId": _text,
    "visit": _integer,
    "stepId": _text_or_none,
    "sending": _flag,
    "held": _flag,
    "waitingFor": _text_or_none,
    "variants": _variants,
    "context": _mapping,
    "entryEventId": _text_or_none,
    "enrolledBy": _text_or_none,
    "goal": _text_or_none,
    "endReason": _text_or_none,
    "enrolledAt": _utc,
    "updatedAt": _utc_or_none,
    "endedAt": _utc_or_none,
}
"""What each key of a stored head document must hold to be taken as it is (``state`` and
``revision`` come from the row's columns)."""
assert _CHECKS.keys() == _NAMES.keys() - {"state", "revision"}, "a field without its check"

_DEFAULTS: Final[dict[str, Any]] = {
    name: field.default
    for name, field in EnrollmentHead.model_fields.items()
    if not field.is_required() and field.default_factory is None
}
_STATES: Final = {state.value: state for state in EnrollmentState}


def _trusted(document: Mapping[str, Any], revision: Any, state: Any) -> EnrollmentHead | None:
    """The head of a stored ``document`` and its row's ``revision`` and ``state``, or None
    when any value is not what the store writes (see the module docstring)."""
    if not document.keys() >= _REQUIRED or type(revision) is not int or revision < 1:
        return None
    member = _STATES.get(state) if type(state) is str else None
    if member is None:
        return None
    fields: dict[str, Any] = {}
    for key, value in document.items():
        check = _CHECKS.get(key)
        if check is None or not check(value):
            return None
        fields[_NAMES[key]] = value
    if fields["sequence_version"] < 1 or fields["visit"] < 0:  # as the models' bounds
        return None
    fields["revision"] = revision
    fields["state"] = member
    given = set(fields)
    values = _DEFAULTS | fields
    if "variants" not in fields:
        values["variants"] = {}
    if "context" not in fields:
        values["context"] = {}
    head = EnrollmentHead.__new__(EnrollmentHead)
    # In the fields' order, as pydantic's own constructor leaves them.
    _set(head, "__dict__", {name: values[name] for name in EnrollmentHead.model_fields})
    _set(head, "__pydantic_extra__", None)
    _set(head, "__pydantic_fields_set__", given)
    _set(head, "__pydantic_private__", None)
    return head


def head_from_row(document: Any, revision: Any, state: Any) -> EnrollmentHead:
    """The :class:`~leadflow.sequences.EnrollmentHead` of a stored row: its decoded
    ``document`` (without the history) and its ``revision`` and ``state`` columns; built
    without validation when every value is what the store writes, else validated (pydantic's
    ``ValidationError`` for what ``EnrollmentHead.from_document`` refuses)."""
    if type(document) is dict:
        head = _trusted(document, revision, state)
        if head is not None:
            return head
    return EnrollmentHead.from_document({**document, "revision": revision, "state": state})


_ALIASES: Final = tuple(
    (name, field.alias or name) for name, field in EnrollmentHead.model_fields.items()
)


def head_document(enrollment: EnrollmentHead) -> dict[str, Any]:
    """The stored document of ``enrollment``'s head: what ``model_dump(by_alias=True,
    exclude_none=True, exclude={"history"})`` gives (the same keys in the same order, the
    same values; ``state`` the enum member), without pydantic's serializer walking the
    fields (its containers are the model's own, not copies: for encoding at once)."""
    values = enrollment.__dict__
    return {alias: value for name, alias in _ALIASES if (value := values[name]) is not None}
