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

from collections.abc import Mapping
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


_ORDER: Final = tuple(EnrollmentHead.model_fields)
_DEFAULTS: Final[dict[str, Any]] = {
    name: field.default
    for name, field in EnrollmentHead.model_fields.items()
    if not field.is_required() and field.default_factory is None
}
_STATES: Final = {state.value: state for state in EnrollmentState}
_OPTIONAL_TEXT: Final = ("step_id", "waiting_for", "entry_event_id", "enrolled_by", "goal",
                         "end_reason")  # fmt: skip
_OPTIONAL_TIMES: Final = ("updated_at", "ended_at")
assert {
    "enrollment_id", "sequence_id", "opportunity_id", "sequence_version", "visit", "sending",
    "held", "variants", "context", "enrolled_at", "revision", "state",
    *_OPTIONAL_TEXT, *_OPTIONAL_TIMES,
} == set(_ORDER), "a field without its check"  # fmt: skip


def _utc(value: Any) -> bool:
    return type(value) is datetime and value.tzinfo is UTC


def _variants(value: Any) -> bool:
    return type(value) is dict and (
        not value
        or (len(value) <= 100 and all(type(k) is str and type(v) is str for k, v in value.items()))
    )


def _trusted(document: Mapping[str, Any], revision: Any, state: Any) -> EnrollmentHead | None:
    """The head of a stored ``document`` and its row's ``revision`` and ``state``, or None
    when any value is not what the store writes (see the module docstring): each field's
    type checked inline (a call per field would cost about what validating does)."""
    if type(revision) is not int or revision < 1 or type(state) is not str:
        return None
    member = _STATES.get(state)
    names = _NAMES
    try:
        fields = {names[key]: value for key, value in document.items()}
        # The document's own ``revision`` and ``state`` (written with it, stale once the send
        # mark raises the column's) give way to the columns, as ``{**document, "revision":
        # revision, "state": state}`` has them.
        fields.pop("revision", None)
        fields.pop("state", None)
        if (
            member is None
            or type(fields["enrollment_id"]) is not str
            or type(fields["sequence_id"]) is not str
            or type(fields["opportunity_id"]) is not str
            or type(version := fields["sequence_version"]) is not int
            or version < 1
            or not _utc(fields["enrolled_at"])
        ):
            return None
    except KeyError:  # a key the store does not write, or a required one missing
        return None
    get = fields.get
    if (
        type(visit := get("visit", 0)) is not int
        or visit < 0
        or type(get("sending", False)) is not bool
        or type(get("held", False)) is not bool
        or type(get("context", _EMPTY)) is not dict
        or not _variants(get("variants", _EMPTY))
    ):
        return None
    for name in _OPTIONAL_TEXT:
        value = get(name)
        if value is not None and type(value) is not str:
            return None
    for name in _OPTIONAL_TIMES:
        value = get(name)
        if value is not None and not _utc(value):
            return None
    given = {*fields, "revision", "state"}
    values = _DEFAULTS | fields
    values["revision"] = revision
    values["state"] = member
    if "variants" not in fields:
        values["variants"] = {}
    if "context" not in fields:
        values["context"] = {}
    head = EnrollmentHead.__new__(EnrollmentHead)
    # In the fields' order, as pydantic's own constructor leaves them.
    _set(head, "__dict__", {name: values[name] for name in _ORDER})
    _set(head, "__pydantic_extra__", None)
    _set(head, "__pydantic_fields_set__", given)
    _set(head, "__pydantic_private__", None)
    return head


_EMPTY: Final[dict[str, Any]] = {}


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
