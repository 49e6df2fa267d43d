"""Checks the sequence stores of every backend share (the same refusals on every backend):
an enrollment handed to a store, an update's change, an enum argument, the arguments of the
batch methods."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from ..clock import ensure_utc
from ..documents import check_document, copy_document, plain
from ..errors import InvalidInputError, InvalidStateError, StaleWriteError
from ..ports.sequences import MAX_BATCH
from ..sequences import Enrollment, EnrollmentHead, StepRecord
from ..sequences.enrollment import HEAD_FIELDS, HISTORY_LIMIT
from .checks import check_id, is_handed_over

__all__ = [
    "check_change",
    "checked_batch",
    "checked_enrollment",
    "checked_ids",
    "checked_marks",
    "checked_moves",
    "detached",
    "enum_member",
    "head_of",
    "with_history",
]

_E = TypeVar("_E", bound=StrEnum)
_MAX_REVISION = 2**63 - 1
"""Revisions are 64-bit integers: a mark stores ``revision + 1``."""


def enum_member(cls: type[_E], value: object, field: str) -> _E:
    """``value`` as a member of ``cls``, else :class:`InvalidInputError` naming ``field``."""
    if isinstance(value, str):
        try:
            return cls(plain(value))
        except ValueError:
            pass
    allowed = ", ".join(m.value for m in cls)
    raise InvalidInputError(f"expected one of {allowed}, got {value!r}", field=field)


def _check_head(head: EnrollmentHead, field: str) -> None:
    check_document(head.context, "context")
    variants = head.variants
    if (
        not isinstance(variants, dict)
        or len(variants) > 100
        or not all(type(k) is str and type(v) is str for k, v in variants.items())
    ):
        raise InvalidInputError("split decisions: at most 100, step id -> name", field=field)


def checked_enrollment(enrollment: object) -> Enrollment:
    """``enrollment`` once checked, not copied. The record is immutable and was validated when
    built (``model_copy(update=...)`` validates too); what a caller may have changed since is
    inside its containers (the context document, the variants, the history list), which are
    checked here: no second validation of a record the runtime built. One the runtime handed
    over for the store call under way (:func:`~leadflow.stores.checks.handed_over`) is taken
    as it is."""
    if type(enrollment) is Enrollment and is_handed_over(enrollment):
        return enrollment
    if not isinstance(enrollment, Enrollment):
        raise InvalidInputError(
            f"expected an Enrollment, got {type(enrollment).__name__}", field="enrollment"
        )
    _check_head(enrollment, "variants")
    history = enrollment.history
    if (
        not isinstance(history, list)
        or len(history) > HISTORY_LIMIT
        or not all(isinstance(record, StepRecord) for record in history)
    ):
        raise InvalidInputError(f"at most {HISTORY_LIMIT} step records", field="history")
    return enrollment


def check_change(old: EnrollmentHead, new: EnrollmentHead) -> None:
    """What no update may do: a stale revision, a changed sequence or opportunity, an ended
    enrollment made active again."""
    if old.revision != new.revision:
        raise StaleWriteError(
            f"enrollment {old.enrollment_id!r} is at revision {old.revision}, not "
            f"{new.revision}: re-read it"
        )
    for name in ("sequence_id", "opportunity_id"):
        if getattr(old, name) != getattr(new, name):
            raise InvalidStateError(f"an enrollment's {name} cannot change")
    if not old.active and new.active:
        raise InvalidStateError(
            f"enrollment {old.enrollment_id!r} has ended ({old.state.value}): it cannot "
            "become active again"
        )


def detached(enrollment: Enrollment) -> Enrollment:
    """A copy of ``enrollment`` sharing no container with it (what a store hands back)."""
    return enrollment._evolve(
        context=copy_document(enrollment.context),
        variants=dict(enrollment.variants),
        history=list(enrollment.history),
    )


def checked_ids(enrollment_ids: object) -> list[str]:
    """The distinct ids of :meth:`~leadflow.ports.sequences.EnrollmentBatches.get_many`, in
    order: a sequence (not a text) of at most ``MAX_BATCH`` ids, else
    :class:`InvalidInputError` naming ``enrollment_ids``."""
    if isinstance(enrollment_ids, str | bytes) or not isinstance(enrollment_ids, Sequence):
        raise InvalidInputError(
            f"expected a sequence of ids, got {type(enrollment_ids).__name__}",
            field="enrollment_ids",
        )
    if len(enrollment_ids) > MAX_BATCH:
        raise InvalidInputError(f"at most {MAX_BATCH} ids", field="enrollment_ids")
    found: dict[str, None] = {}
    for value in enrollment_ids:
        value = plain(value)
        check_id(value, "enrollment_ids")
        found[value] = None
    return list(found)


def checked_batch(enrollments: object) -> list[Enrollment]:
    """The enrollments of :meth:`~leadflow.ports.sequences.EnrollmentBatches.update_many`,
    each checked (:func:`checked_enrollment`): a sequence of at most ``MAX_BATCH``, each id
    once, else :class:`InvalidInputError` naming ``enrollments``."""
    if not isinstance(enrollments, Sequence) or isinstance(enrollments, str | bytes):
        raise InvalidInputError(
            f"expected a sequence of enrollments, got {type(enrollments).__name__}",
            field="enrollments",
        )
    if len(enrollments) > MAX_BATCH:
        raise InvalidInputError(f"at most {MAX_BATCH} enrollments", field="enrollments")
    checked = [checked_enrollment(enrollment) for enrollment in enrollments]
    if len({enrollment.enrollment_id for enrollment in checked}) != len(checked):
        raise InvalidInputError("an enrollment given twice", field="enrollments")
    return checked


def checked_marks(marks: object, at: object) -> tuple[list[tuple[str, int]], datetime]:
    """The arguments of :meth:`~leadflow.ports.sequences.EnrollmentSendMarks.mark_sending`:
    a sequence (not a text) of at most ``MAX_BATCH`` ``(enrollment_id, revision)`` pairs, each
    id once, revisions of at least 1 (else :class:`InvalidInputError` naming ``marks``), and
    ``at`` as an aware UTC datetime (else naming ``at``)."""
    if isinstance(marks, str | bytes) or not isinstance(marks, Sequence):
        raise InvalidInputError(
            f"expected a sequence of (enrollment id, revision), got {type(marks).__name__}",
            field="marks",
        )
    if len(marks) > MAX_BATCH:
        raise InvalidInputError(f"at most {MAX_BATCH} marks", field="marks")
    checked: dict[str, int] = {}
    for mark in marks:
        if isinstance(mark, str | bytes) or not isinstance(mark, Sequence) or len(mark) != 2:
            raise InvalidInputError(
                f"expected (enrollment id, revision), got {mark!r}", field="marks"
            )
        enrollment_id, revision = plain(mark[0]), mark[1]
        check_id(enrollment_id, "marks")
        if type(revision) is not int or not 1 <= revision < _MAX_REVISION:
            raise InvalidInputError(f"a revision is an int of at least 1: {revision!r}",
                                    field="marks")  # fmt: skip
        if enrollment_id in checked:
            raise InvalidInputError(f"enrollment {enrollment_id!r} given twice", field="marks")
        checked[enrollment_id] = revision
    if not isinstance(at, datetime):
        raise InvalidInputError(f"expected a datetime, got {type(at).__name__}", field="at")
    return list(checked.items()), ensure_utc(at, "at")


def head_of(enrollment: EnrollmentHead) -> EnrollmentHead:
    """``enrollment``'s head (every field but the history), sharing no container with it:
    what :meth:`~leadflow.ports.sequences.EnrollmentSteps.get_heads` hands back."""
    state = {name: enrollment.__dict__[name] for name in HEAD_FIELDS}
    state["context"] = copy_document(enrollment.context)
    state["variants"] = dict(enrollment.variants)
    return _built(EnrollmentHead, state, enrollment.model_fields_set - {"history"})


def with_history(head: EnrollmentHead, history: list[StepRecord]) -> Enrollment:
    """The enrollment of ``head`` with ``history`` (both checked already): not validated
    again."""
    state = {name: head.__dict__[name] for name in HEAD_FIELDS}
    state["history"] = history
    return _built(Enrollment, state, head.model_fields_set | {"history"})


_H = TypeVar("_H", bound=EnrollmentHead)


def _built(cls: type[_H], state: dict[str, object], fields_set: set[str]) -> _H:
    """A ``cls`` of ``state`` (every field, checked already), as ``_evolve`` builds one."""
    new = cls.__new__(cls)
    object.__setattr__(new, "__dict__", state)
    object.__setattr__(new, "__pydantic_extra__", None)
    object.__setattr__(new, "__pydantic_fields_set__", fields_set)
    object.__setattr__(new, "__pydantic_private__", None)
    return new


def checked_moves(moves: object) -> list[tuple[EnrollmentHead, list[StepRecord]]]:
    """The moves of :meth:`~leadflow.ports.sequences.EnrollmentSteps.move_many`: a sequence of
    at most ``MAX_BATCH`` ``(head, records)`` pairs, each id once, each head's containers
    checked (as :func:`checked_enrollment`), at most ``HISTORY_LIMIT`` step records each, else
    :class:`InvalidInputError` naming ``moves``. A head the runtime handed over is taken as it
    is, and so is the list of records it built with it."""
    if not isinstance(moves, Sequence) or isinstance(moves, str | bytes):
        raise InvalidInputError(
            f"expected a sequence of (enrollment head, records), got {type(moves).__name__}",
            field="moves",
        )
    if len(moves) > MAX_BATCH:
        raise InvalidInputError(f"at most {MAX_BATCH} moves", field="moves")
    checked: list[tuple[EnrollmentHead, list[StepRecord]]] = []
    for move in moves:
        if not (type(move) is tuple and len(move) == 2) and (  # a tuple: no ABC check
            isinstance(move, str | bytes) or not isinstance(move, Sequence) or len(move) != 2
        ):
            raise InvalidInputError(f"expected (enrollment head, records), got {move!r}",
                                    field="moves")  # fmt: skip
        head, records = move
        if not isinstance(head, EnrollmentHead):
            raise InvalidInputError(
                f"expected an EnrollmentHead, got {type(head).__name__}", field="moves"
            )
        if is_handed_over(head):
            if type(records) is list and len(records) <= HISTORY_LIMIT:
                checked.append((head, records))  # the runtime's, built with its head
                continue
        else:
            _check_head(head, "moves")
        if (
            isinstance(records, str | bytes)
            or not isinstance(records, Sequence)
            or len(records) > HISTORY_LIMIT
            or not all(isinstance(record, StepRecord) for record in records)
        ):
            raise InvalidInputError(f"at most {HISTORY_LIMIT} step records a move", field="moves")
        checked.append((head, list(records)))
    if len({head.enrollment_id for head, _ in checked}) != len(checked):
        raise InvalidInputError("an enrollment given twice", field="moves")
    return checked
