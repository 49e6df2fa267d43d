"""Checks the sequence stores of every backend share (the same refusals on every backend):
an enrollment handed to a store, an update's change, an enum argument."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from ..documents import check_document, copy_document, plain
from ..errors import InvalidInputError, InvalidStateError, StaleWriteError
from ..sequences import Enrollment, StepRecord
from ..sequences.enrollment import HISTORY_LIMIT

__all__ = ["check_change", "checked_enrollment", "detached", "enum_member"]

_E = TypeVar("_E", bound=StrEnum)


def enum_member(cls: type[_E], value: object, field: str) -> _E:
    """``value`` as a member of ``cls``, else :class:`InvalidInputError` naming ``field``."""
    if isinstance(value, str):
        try:
            return cls(plain(value))
        except ValueError:
            pass
    allowed = ", ".join(m.value for m in cls)
    raise InvalidInputError(f"expected one of {allowed}, got {value!r}", field=field)


def checked_enrollment(enrollment: object) -> Enrollment:
    """``enrollment`` once checked, not copied. The record is immutable and was validated when
    built (``model_copy(update=...)`` validates too); what a caller may have changed since is
    inside its containers (the context document, the variants, the history list), which are
    checked here: no second validation of a record the runtime built."""
    if not isinstance(enrollment, Enrollment):
        raise InvalidInputError(
            f"expected an Enrollment, got {type(enrollment).__name__}", field="enrollment"
        )
    check_document(enrollment.context, "context")
    variants = enrollment.variants
    if (
        not isinstance(variants, dict)
        or len(variants) > 100
        or not all(type(k) is str and type(v) is str for k, v in variants.items())
    ):
        raise InvalidInputError("split decisions: at most 100, step id -> name", field="variants")
    history = enrollment.history
    if (
        not isinstance(history, list)
        or len(history) > HISTORY_LIMIT
        or not all(isinstance(record, StepRecord) for record in history)
    ):
        raise InvalidInputError(f"at most {HISTORY_LIMIT} step records", field="history")
    return enrollment


def check_change(old: Enrollment, new: Enrollment) -> None:
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
