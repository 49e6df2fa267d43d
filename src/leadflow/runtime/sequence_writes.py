"""A batch's moves on written (:meth:`~leadflow.runtime.sequence_moves.Moves.advance_many`):
every next visit stored, then every enrollment moved to its visit, in two store calls; or,
where the enrollment store can (:class:`~leadflow.ports.sequences.EnrollmentVisitMoves`), both
in one call (one statement on PostgreSQL). Either way a visit stored first by another writer
(a timer and a matching event racing for the same visit) is the one its enrollment moves to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ..ports import EnrollmentStore, ScheduledActionStore
from ..ports.sequences import EnrollmentBatches, EnrollmentSteps
from ..records import ScheduledAction
from ..sequences import Enrollment, EnrollmentHead, StepRecord
from ..stores.checks import handed_over
from .sequence_parts import Planned, moved, recorded, store_visits

__all__ = ["Written", "then_moved", "with_visits"]

Written = list[tuple[EnrollmentHead | None, str | None]]
"""Each active move's enrollment as stored (None: not written, its compare-and-set failed)
and the reason it completed (None: it goes on to its visit)."""


def then_moved(
    store: EnrollmentStore,
    scheduled: ScheduledActionStore,
    planned: list[Planned],
    visits: list[ScheduledAction],
) -> Written:
    """Every visit stored (:func:`store_visits`), then every active enrollment of
    ``planned`` moved to its own or to the one stored first by another writer (``planned``
    updated with it): with :meth:`~leadflow.ports.sequences.EnrollmentSteps.move_many` where
    the store has it, else :meth:`~leadflow.ports.sequences.EnrollmentBatches.update_many`."""
    stored = dict(zip((a.action_id for a in visits), store_visits(scheduled, visits), strict=True))
    changes: list[tuple[EnrollmentHead, list[StepRecord], str | None]] = []
    for index, move in enumerate(planned):
        if move.stored is not None:
            found = stored[move.stored.action_id]
            if found is not move.stored:  # stored first by another writer: that one
                move = planned[index] = dataclasses.replace(move, stored=found)
        if move.enrollment.active:
            changes.append(moved(move.enrollment, move))
    # Built here from the records as read (held by nobody outside the runtime): handed over.
    changed_list = [changed for changed, _, _ in changes]
    written: Sequence[EnrollmentHead | None]
    if isinstance(store, EnrollmentSteps):  # the records appended, the history left alone
        pairs = [(changed, records) for changed, records, _ in changes]
        written = handed_over(store.move_many, pairs, *changed_list)
    else:  # read whole (heads are read only from a store with EnrollmentSteps)
        assert isinstance(store, EnrollmentBatches)
        whole = [recorded(_whole(c), records) for c, records, _ in changes]
        written = handed_over(store.update_many, whole, *whole)
    return [(updated, reason) for updated, (_, _, reason) in zip(written, changes, strict=True)]


def with_visits(
    scheduled: ScheduledActionStore,
    visiting: Callable[[Any], list[tuple[EnrollmentHead | None, bool]]],
    planned: list[Planned],
) -> Written:
    """:func:`then_moved` (every move of ``planned`` active) as one store call, ``visiting``
    (the store's :meth:`~leadflow.ports.sequences.EnrollmentVisitMoves.move_to_visits`),
    writing each move with its visit. A move whose visit was stored first by another writer
    is not written there (None, as a compare-and-set that failed): ``planned`` is updated
    with that visit, which the caller then settles the enrollment on, reading it again (as
    :meth:`~leadflow.runtime.sequence_moves.Moves.advance` does), as rare as the race."""
    changes = [moved(move.enrollment, move) for move in planned]
    triples = [
        (changed, records, move.stored)
        for (changed, records, _), move in zip(changes, planned, strict=True)
    ]
    # Built here from validated parts (held by nobody outside the runtime): handed over.
    handed: list[Any] = [changed for changed, _, _ in changes]
    handed.extend(move.stored for move in planned if move.stored is not None)
    done = handed_over(visiting, triples, *handed)
    for index, (_, went_in) in enumerate(done):
        if not went_in:  # stored first by another writer: that one (the move settles it)
            move = planned[index]
            assert move.stored is not None
            found = scheduled.get(move.stored.action_id)
            planned[index] = dataclasses.replace(move, stored=found)
    return [(updated, reason) for (updated, _), (_, _, reason) in zip(done, changes, strict=True)]


def _whole(enrollment: EnrollmentHead) -> Enrollment:
    """``enrollment``, which is whole where this is called (a head would lose its history)."""
    assert isinstance(enrollment, Enrollment), "an enrollment read without its history"
    return enrollment
