"""Writing a claimed batch of sequence visits together (the sequencer's ``run_steps``): a
batch's send marks, or its moves on, in one unit of work, done again one visit at a time if
that unit fails; and the moves left for the executor to write with the batch's
acknowledgement (:class:`~leadflow.runtime.executor.Finishing`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from operator import attrgetter

from ..ports import UnitOfWork
from .executor import Finishing
from .sequence_parts import Visit

__all__ = ["finishing", "together"]

log = logging.getLogger("leadflow")

_STATE = ("enrollment", "note", "failed", "final")
"""What writing a visit changes on it (and what a rolled-back unit must put back)."""


def _in_order(visits: list[Visit]) -> list[Visit]:
    """In the order of their enrollments, as every worker takes them (rows locked in one
    order)."""
    return sorted(visits, key=lambda v: v.enrollment.enrollment_id)


_state_of = attrgetter(*_STATE)
_Saved = tuple[object, ...]
"""A visit's :data:`_STATE`, in that order."""


def _saved(visits: Sequence[Visit]) -> list[_Saved]:
    """What :func:`_restore` puts back (the fields alone: no copy of each visit is made)."""
    return [_state_of(v) for v in visits]


def _restore(visits: Sequence[Visit], saved: Sequence[_Saved]) -> None:
    for visit, before in zip(visits, saved, strict=True):
        for name, value in zip(_STATE, before, strict=True):
            setattr(visit, name, value)


def together(
    visits: list[Visit],
    work: Callable[[Visit], None],
    many: Callable[[list[Visit]], None] | None,
    *,
    units: UnitOfWork,
    unit: Callable[[], AbstractContextManager[None]],
) -> None:
    """``work`` on each of ``visits`` in one ``unit`` of work (in the order of their
    enrollments), or ``many`` on them all; if that unit fails, ``work`` on each in its own, a
    failure failing that visit alone. Without atomic units, ``many`` on them all (each of its
    writes stands on its own), else each on its own."""
    if not visits:
        return
    visits = _in_order(visits)
    if len(visits) > 1 and not units.active and (units.atomic or many is not None):
        saved = _saved(visits)
        try:
            with unit():
                if many is not None:
                    many(visits)
                else:
                    for visit in visits:
                        work(visit)
            return
        except Exception:
            log.warning("a batch of sequence steps failed together: one at a time now",
                        exc_info=True)  # fmt: skip
            # What the rolled-back unit wrote is not there: each visit starts again from the
            # enrollment it read (a send mark of that unit was never stored).
            _restore(visits, saved)
    for visit in visits:
        try:
            with unit():
                work(visit)
        except Exception as exc:
            visit.failed = exc


def finishing(
    outcomes: Sequence[str | Exception | None],
    visits: Sequence[Visit],
    moving: list[Visit],
    work: Callable[[Visit], None],
    many: Callable[[list[Visit]], None],
    *,
    units: UnitOfWork,
    unit: Callable[[], AbstractContextManager[None]],
) -> Finishing:
    """The batch's outcomes with its ``moving`` visits' moves still to write: ``finish(True)``
    writes them all with ``many`` in the unit of work open around the call (raising if that
    fails; the executor's acknowledgement is in the same unit), ``finish(False)`` as
    :func:`together` does. Each call starts from the visits as they are now (a rolled-back
    unit leaves nothing of an earlier call)."""
    saved = _saved(moving)

    def finish(at_once: bool) -> list[str | Exception | None]:
        _restore(moving, saved)
        if at_once:
            if moving:
                many(_in_order(moving))
        else:
            together(moving, work, many, units=units, unit=unit)
        return _outcomes(outcomes, visits)

    return Finishing(_outcomes(outcomes, visits), finish)


def _outcomes(
    outcomes: Sequence[str | Exception | None], visits: Sequence[Visit]
) -> list[str | Exception | None]:
    found = list(outcomes)
    for visit in visits:
        found[visit.index] = visit.failed if visit.failed is not None else visit.note
    return found
