"""The sequence ports: where sequence definitions and enrollments are kept (contracts in the
docstrings; the shipped suites are :mod:`leadflow.testing.contracts.sequences` and
:mod:`leadflow.testing.contracts.enrollments`)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from ..records import ScheduledAction
from ..sequences.definition import SequenceDefinition, SequenceStatus
from ..sequences.enrollment import Enrollment, EnrollmentHead, EnrollmentState, StepRecord

__all__ = [
    "MAX_BATCH",
    "EnrollmentBatches",
    "EnrollmentFirstVisits",
    "EnrollmentSendMarks",
    "EnrollmentSteps",
    "EnrollmentStore",
    "EnrollmentVisitMoves",
    "SequenceRepository",
]


@runtime_checkable
class SequenceRepository(Protocol):
    """Stores sequence definitions, every version of each, and a change stamp.

    A sequence's *current* version is its highest one; older versions stay readable for the
    enrollments still on them. Not-found errors are :class:`~leadflow.NotFoundError`.
    Returned definitions are copies."""

    def add(self, definition: SequenceDefinition) -> SequenceDefinition:
        """Store ``definition`` as version ``definition.version`` of its sequence.
        :class:`~leadflow.DuplicateError` if that version exists; :class:`~leadflow.
        StaleWriteError` unless it is exactly one above the highest stored (1 for a new
        sequence): two admins publishing at once do not both win."""
        ...

    def get(self, sequence_id: str, version: int | None = None) -> SequenceDefinition:
        """One version (the current one when ``version`` is None)."""
        ...

    def versions(self, sequence_id: str) -> builtins.list[SequenceDefinition]:
        """Every stored version of a sequence, oldest first (empty if unknown)."""
        ...

    def list(self) -> builtins.list[SequenceDefinition]:
        """The current version of every sequence, by ``sequence_id``."""
        ...

    def set_status(
        self, sequence_id: str, version: int, status: SequenceStatus
    ) -> SequenceDefinition:
        """Set the status of one stored version (pause, resume, archive, publish) and return
        it; :class:`~leadflow.NotFoundError` if that version is not stored."""
        ...

    def stamp(self) -> int:
        """A change stamp of the whole set, as :meth:`RuleRepository.stamp
        <leadflow.ports.RuleRepository.stamp>`: it changes with every write (``add``,
        ``set_status``) by any process, never before the write is visible, and only then."""
        ...


@runtime_checkable
class EnrollmentStore(Protocol):
    """Enrollments of opportunities in sequences.

    Every write is atomic and checked: :meth:`enroll` keeps at most one *active* enrollment
    per sequence and opportunity (two concurrent entries store one), and :meth:`update` is a
    compare-and-set on ``revision``. Returned enrollments are copies."""

    def enroll(self, enrollment: Enrollment) -> tuple[Enrollment, bool]:
        """Store ``enrollment`` (state ``active``, revision 1) unless one with its
        ``enrollment_id`` exists, or the opportunity already has an active enrollment in the
        same sequence (any version): then that one is returned with False. Returns the stored
        enrollment and True when it was created. :class:`~leadflow.InvalidInputError` unless
        the state is ``active``."""
        ...

    def get(self, enrollment_id: str) -> Enrollment:
        """The enrollment, or :class:`~leadflow.NotFoundError`."""
        ...

    def update(self, enrollment: Enrollment) -> Enrollment:
        """Replace the stored enrollment if its ``revision`` equals ``enrollment.revision``;
        returns it with ``revision + 1``. :class:`~leadflow.StaleWriteError` if another write
        came first, :class:`~leadflow.NotFoundError` if there is none,
        :class:`~leadflow.InvalidStateError` when an ended enrollment would become active
        again or its sequence or opportunity would change (its version may: an enrollment
        moved to a new version of its sequence)."""
        ...

    def active_for(self, opportunity_id: str) -> builtins.list[Enrollment]:
        """The active enrollments of an opportunity, oldest first (``enrolled_at``, id)."""
        ...

    def list(
        self,
        *,
        sequence_id: str | None = None,
        opportunity_id: str | None = None,
        state: EnrollmentState | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> builtins.list[Enrollment]:
        """Enrollments matching every filter given, oldest first (``enrolled_at``, id), at
        most ``limit`` (1 .. 10,000, else :class:`~leadflow.InvalidInputError`); with
        ``after`` (an enrollment's id: the last of the previous page) only those after that
        enrollment in this order, so that a listing of any length is read page by page
        (:class:`~leadflow.NotFoundError` for an unknown id)."""
        ...


# --------------------------------------------------------------------------- batches
# Optional: a store that has these lets the sequencer read and mark a claimed batch of steps in
# one statement each (``isinstance(store, EnrollmentBatches)``); one that has not is used one
# enrollment at a time.

MAX_BATCH = 1000
"""The most enrollments one call of :class:`EnrollmentBatches` takes."""


@runtime_checkable
class EnrollmentBatches(Protocol):
    """Many enrollments per call, one statement (or one lock) where the backend can: what
    :meth:`EnrollmentStore.get` and :meth:`EnrollmentStore.update` do, for several at once."""

    def get_many(self, enrollment_ids: Sequence[str]) -> dict[str, Enrollment]:
        """The stored enrollments among ``enrollment_ids``, by id (an unknown id is left out;
        one given twice is read once). At most :data:`MAX_BATCH` ids, else
        :class:`~leadflow.InvalidInputError`."""
        ...

    def update_many(self, enrollments: Sequence[Enrollment]) -> builtins.list[Enrollment | None]:
        """:meth:`EnrollmentStore.update` on each (a compare-and-set on its ``revision``), as
        one write: in order, each one stored (``revision + 1``), or None where ``update`` would
        have refused it (another write came first, none stored, an ended enrollment made
        active again, its sequence or opportunity changed): that one is not written, the
        others are. At most :data:`MAX_BATCH`, each id once, else
        :class:`~leadflow.InvalidInputError` (nothing written)."""
        ...


# --------------------------------------------------------------------------- send marks
# Optional: a store that has this lets the sequencer mark a claimed batch's sends begun without
# writing each enrollment's whole record again (``isinstance(store, EnrollmentSendMarks)``);
# one that has not is marked with :meth:`EnrollmentBatches.update_many` or
# :meth:`EnrollmentStore.update`.


@runtime_checkable
class EnrollmentSendMarks(Protocol):
    """The "send begun" mark of an action step, narrow: only the flag, the change time and
    the revision written, by compare-and-set, for several enrollments per call."""

    def mark_sending(
        self, marks: Sequence[tuple[str, int]], *, at: datetime
    ) -> builtins.list[bool]:
        """For each ``(enrollment_id, revision)``: if that enrollment is stored, ``active``
        and at that ``revision``, set its ``sending`` flag, its ``updated_at`` to ``at`` and
        its revision to ``revision + 1``, nothing else (what :meth:`EnrollmentStore.update`
        with ``sending=True, updated_at=at`` would store, without the record given again);
        in order, True where it was written, False where it was not (another write came
        first, none stored, ended). At most :data:`MAX_BATCH`, each id once, revisions of at
        least 1, ``at`` timezone-aware, else :class:`~leadflow.InvalidInputError` (nothing
        written)."""
        ...


# --------------------------------------------------------------------------- steps
# Optional: a store that has this lets the sequencer read a claimed batch's enrollments and move
# them on without their step history (``isinstance(store, EnrollmentSteps)``): a step then costs
# the same whatever the history's length. One that has not is read with
# :meth:`EnrollmentBatches.get_many` and moved with :meth:`EnrollmentBatches.update_many`.


@runtime_checkable
class EnrollmentSteps(Protocol):
    """Enrollments read and moved on without their history: the moves *append* step records
    (the store keeps the newest :data:`~leadflow.sequences.enrollment.HISTORY_LIMIT`)."""

    def get_heads(self, enrollment_ids: Sequence[str]) -> dict[str, EnrollmentHead]:
        """The stored enrollments among ``enrollment_ids`` as heads (every field but the
        history, which is neither read nor returned), by id; as
        :meth:`EnrollmentBatches.get_many` otherwise (an unknown id left out, one given twice
        read once, at most :data:`MAX_BATCH` ids, else :class:`~leadflow.InvalidInputError`)."""
        ...

    def move_many(
        self, moves: Sequence[tuple[EnrollmentHead, Sequence[StepRecord]]]
    ) -> builtins.list[EnrollmentHead | None]:
        """For each ``(head, records)``: the compare-and-set of :meth:`EnrollmentStore.update`
        on ``head.revision`` (the same refusals), writing every field of ``head`` (a head's
        history, when given an :class:`~leadflow.sequences.Enrollment`, is not looked at) and
        appending ``records`` to the stored history, of which the newest 200 are kept (the
        oldest dropped). In order: each one stored as a head (``revision + 1``), or None
        where ``update`` would have refused it (that one not written, the others are). At
        most :data:`MAX_BATCH`, each id once, at most 200 records each, else
        :class:`~leadflow.InvalidInputError` (nothing written)."""
        ...


# --------------------------------------------------------------------------- first visits
# Optional: a store that has this stores a new enrollment and its first visit's action with one
# write where the storage keeps both (``isinstance(store, EnrollmentFirstVisits)``); with one
# that has not, the sequencer stores the visit in the scheduled-action store after the entry.


@runtime_checkable
class EnrollmentFirstVisits(Protocol):
    """A new enrollment stored together with its first visit (the scheduled action of its
    first stop), in the scheduled-action store of the same storage."""

    def enroll_at_first(
        self, enrollment: Enrollment, visit: ScheduledAction
    ) -> tuple[Enrollment, bool]:
        """:meth:`EnrollmentStore.enroll` (the same answer, the same refusals), and, when
        ``enrollment`` went in, ``visit`` stored in the storage's scheduled-action store as
        :meth:`~leadflow.ports.ScheduledActionStore.schedule` stores it, atomically with the
        enrollment: both or neither. A visit whose idempotency key or id is held already is
        left as it is (the enrollment goes in all the same); when the enrollment does not go
        in, nothing of ``visit`` is written. ``visit`` must be a ``step`` action of that
        enrollment (its ``enrollment_id``), else :class:`~leadflow.InvalidInputError`
        (nothing written)."""
        ...


# --------------------------------------------------------------------------- moves with visits
# Optional: a store that has this writes a batch's moves on together with the next visits they
# go to where the storage keeps both (on SQL one statement on PostgreSQL); with one that has
# not, the sequencer stores the visits in the scheduled-action store, then moves the batch with
# :meth:`EnrollmentSteps.move_many`.


@runtime_checkable
class EnrollmentVisitMoves(Protocol):
    """A batch of moves on (:meth:`EnrollmentSteps.move_many`) written together with the
    next visits they go to, in the scheduled-action store of the same storage."""

    def move_to_visits(
        self,
        moves: Sequence[tuple[EnrollmentHead, Sequence[StepRecord], ScheduledAction | None]],
    ) -> builtins.list[tuple[EnrollmentHead | None, bool]]:
        """For each ``(head, records, visit)``: ``visit`` (when given) stored as
        :meth:`~leadflow.ports.ScheduledActionStore.schedule` stores it, unless an action
        with its idempotency key or id is stored already (that one is left as it is); then
        the move of :meth:`EnrollmentSteps.move_many` (the same compare-and-set, the records
        appended), written only if its visit went in or it has none. In order: ``(head,
        stored)``, ``head`` the enrollment as stored (``revision + 1``) or None where the
        move was not written (its compare-and-set failed, or its visit did not go in), and
        ``stored`` whether its visit went in (True without one). All in one transaction (the
        unit of work's, when one is open). ``move_many``'s refusals, and a visit that is not a
        ``step`` action of its head's enrollment, or a visit key or id given twice, are
        :class:`~leadflow.InvalidInputError` (nothing written)."""
        ...
