"""Entering a sequence (:class:`Entries`): the new enrollment written once, already at its
first stop, with its first visit where the enrollment store can store both in one write
(:class:`~leadflow.ports.sequences.EnrollmentFirstVisits`), else that visit stored next
(handling the entry again stores a visit a crash lost in between); the re-enrollment policy
applied. Part of the :class:`~leadflow.runtime.sequencer.Sequencer`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import cast

from ..models import Event
from ..ports.sequences import EnrollmentFirstVisits
from ..rules.sequencing import SequenceProgram, Stop
from ..sequences import Enrollment, EnrollmentState, Reenrollment
from ..stores.checks import handed_over
from .emitter import Emitter
from .results import SequenceOutcome
from .sequence_moves import Moves
from .sequence_parts import payload

__all__ = ["Entries"]


class Entries:
    """Enrolls opportunities: the writes of an entry through ``moves`` (its enrollment store,
    read at each call: a host may wrap it), the ``sequence.enrolled`` event through ``emit``,
    the time from ``now``."""

    def __init__(self, moves: Moves, emit: Emitter, now: Callable[[], datetime]) -> None:
        self._moves = moves
        self._emit = emit
        self._now = now

    def enroll(
        self,
        program: SequenceProgram,
        opportunity_id: str,
        event: Event,
        enrollment_id: str,
        *,
        actor: str | None = None,
    ) -> SequenceOutcome:
        """Enroll ``opportunity_id`` as the sequence's re-enrollment policy allows, and store
        its first visit."""
        definition = program.definition
        sequence_id = definition.sequence_id
        policy = definition.reenrollment
        if policy is Reenrollment.NEVER:
            earlier = self._moves.enrollments.list(
                sequence_id=sequence_id, opportunity_id=opportunity_id, limit=1
            )
            if earlier and earlier[0].enrollment_id != enrollment_id:
                what = "already_enrolled" if earlier[0].active else "not_reenrolled"
                return SequenceOutcome(sequence_id, earlier[0].enrollment_id, what)
        now = self._now()
        new = Enrollment(
            enrollment_id=enrollment_id,
            sequence_id=sequence_id,
            sequence_version=definition.version,
            opportunity_id=opportunity_id,
            context={"entry": dict(event.payload)},
            entry_event_id=event.id,
            enrolled_by=actor,
            enrolled_at=now,
            updated_at=now,
        )
        # Stored at its first stop (one write; that visit's action is stored next), unless the
        # sequence ends at once (stored at visit 0, then moved on to its end).
        first = self._moves.first(new, program, event, now)
        entering = new if first is None else first[0]
        # Where the store can, the first visit goes in with the enrollment (one write).
        enter, together = self._entry(
            entering, program, event, None if first is None else first[1], now
        )
        stored, created = enter()
        what = "enrolled"
        if not created and stored.enrollment_id != enrollment_id:
            if policy is not Reenrollment.EVERY_ENTRY:
                return SequenceOutcome(sequence_id, stored.enrollment_id, "already_enrolled")
            self._moves.end(stored, EnrollmentState.ENDED, f"re-entered ({event.type} {event.id})")
            stored, created = enter()
            what = "reentered"
        if not created:  # this event enrolled it before (handled again): carry on from there
            if stored.active and stored.visit == 0:
                self._moves.advance(stored, program, event, cause=event, outcome="enrolled")
            elif stored.active and stored.visit == 1 and first is not None:
                # Its first visit may not have been stored (a crash between the two writes
                # where they are not one unit of work): stored now, or found stored.
                self._moves.store_first(stored, program, first[1], event)
            return SequenceOutcome(sequence_id, stored.enrollment_id, "already_enrolled")
        self._emit("sequence.enrolled", payload(stored, {"eventId": event.id, "by": actor}))
        if first is None:
            self._moves.advance(stored, program, event, cause=event, outcome="enrolled")
        elif not together:  # else stored with it
            self._moves.store_first(stored, program, first[1], event)
        return SequenceOutcome(sequence_id, stored.enrollment_id, what)

    def _entry(
        self,
        entering: Enrollment,
        program: SequenceProgram,
        event: Event,
        stop: Stop | None,
        now: datetime,
    ) -> tuple[Callable[[], tuple[Enrollment, bool]], bool]:
        """Storing ``entering`` (at its first ``stop``, None when it ends at once), and
        whether that stores the first visit's action with it: where the store can
        (:class:`~leadflow.ports.sequences.EnrollmentFirstVisits`; both then go in or
        neither), else the enrollment alone (its visit stored after it)."""
        store = self._moves.enrollments
        # The protocol's method looked up: an isinstance check of a runtime protocol costs
        # dozens of calls an entry.
        at_first = cast(
            "EnrollmentFirstVisits | None",
            store if getattr(store, "enroll_at_first", None) is not None else None,
        )
        if stop is None or at_first is None:
            return partial(handed_over, store.enroll, entering), False
        visit = self._moves.first_visit(entering, program, stop, event, now)
        # Both built here from validated parts, held by nobody else: handed over.
        enter = partial(at_first.enroll_at_first, visit=visit)
        return partial(handed_over, enter, entering, entering, visit), True
