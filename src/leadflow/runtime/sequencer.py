"""The sequencer: sequences on the runtime's own machinery.

Each visit of an enrollment is one stored action of kind ``step`` in the scheduled-action
store (leases, partitions, retries, parking, as any action), keyed on the enrollment and the
visit number: ``seq:<enrollment>:<visit>``. What it does when it runs (the executor's runner
for the kind, :meth:`Sequencer.run_step`): an ``action`` step runs its handler; a timer (a
``wait``'s end, a ``wait_for_event``'s timeout) moves the enrollment on.

**Moving on** (:class:`~leadflow.runtime.sequence_moves.Moves`): the next visit's action is
stored first, then the enrollment record is moved to it by compare-and-set. A worker that
claims the stored visit before the record reached it (it was due at once) fails the attempt,
retried as any failure, and runs it once it has. **Entering** writes the new enrollment once,
already at its first stop, then stores that visit (handling the entry again stores a visit a
crash lost in between); where the enrollment store can
(:class:`~leadflow.ports.sequences.EnrollmentFirstVisits`), the visit goes in with it.

**Goals against steps** are settled by the order of the compare-and-sets on the enrollment
record: an action step first marks the enrollment ``sending`` (a compare-and-set) and only
then calls its handler; a goal ends the enrollment (a compare-and-set). If the goal's write
comes first, the step finds the enrollment ended and sends nothing (and is never retried);
if the step's comes first, its send began before the goal was stored, and it completes (a
rerun after a crash or a failed attempt finds the send begun at the ended enrollment's visit
and runs the handler again, same idempotency key, without moving on). On SQL the goal's
write and the event are one unit of work, so "stored" means committed.

**A claimed batch** (:meth:`Sequencer.run_steps`, the executor's batch runner for the kind,
up to :data:`~leadflow.runtime.executor.BATCH_SIZE` visits): its enrollments are read in one
store call and the "send begun" marks of its action steps written in one, where the store has
:class:`~leadflow.ports.sequences.EnrollmentBatches` (a mark whose compare-and-set fails there
is done again on its own, from a fresh read), committed before the first of their handlers
runs: each send of the batch begins at that commit. After the handlers, the batch's moves on
(next visits stored, enrollments moved) are one unit of work, never after the executor
acknowledges the batch (with atomic units, the acknowledgement's unit: one commit for both, see
:class:`~leadflow.runtime.executor.Finishing`): a step's guarantee is a plain action's, its
effect once by its idempotency key (a crash before that commit runs the batch's steps again,
same keys).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ..clock import ensure_utc
from ..errors import (
    ConflictError,
    NotFoundError,
    PermanentError,
    StaleWriteError,
)
from ..models import Event
from ..ports import (
    Clock,
    CounterStore,
    EnrollmentStore,
    OpportunityGateway,
    ScheduledActionStore,
    SequenceRepository,
    UnitOfWork,
)
from ..ports.sequences import EnrollmentBatches, EnrollmentSteps
from ..ports.storage import SeparateSteps
from ..rules.sequencing import SequenceProgram
from ..rules.vocabulary import Vocabulary
from ..sequences import (
    ActionStep,
    Enrollment,
    EnrollmentHead,
    EnrollmentState,
    SequenceStatus,
    WaitForEventStep,
)
from .context import ActionContext
from .emitter import Emitter
from .executor import Finishing
from .results import SequenceOutcome
from .sequence_batch import finishing, together
from .sequence_entry import Entries
from .sequence_hold import HELD, RELEASED, release, still_paused
from .sequence_moves import Move, Moves
from .sequence_parts import (
    EnrollParams,
    Recipients,
    Visit,
    as_version,
    enrollment_id_for,
)
from .sequence_programs import Programs, running_version
from .settings import FlowSettings

__all__ = ["SequenceOutcome", "Sequencer"]

log = logging.getLogger("leadflow")


class Sequencer:
    """Enrolls, moves and ends enrollments; runs their steps (see the module docstring).

    Built from explicit parts: the sequence and enrollment stores, the scheduled-action store
    (where every visit is stored), the gateway (the recipient's time zone and owner for
    branches), the vocabulary the flow's rules use, settings, clock and emitter. ``run`` is
    the handler registry's runner for an action step's handler."""

    def __init__(
        self,
        *,
        sequences: SequenceRepository,
        enrollments: EnrollmentStore,
        scheduled: ScheduledActionStore,
        counters: CounterStore,
        opportunities: OpportunityGateway,
        vocabulary: Callable[[], Vocabulary],
        run: Callable[[ActionContext[Any]], str | None],
        settings: FlowSettings,
        clock: Clock,
        emit: Emitter,
        units: UnitOfWork | None = None,
    ) -> None:
        self.sequences = sequences
        self.scheduled = scheduled
        self._recipients = Recipients(opportunities, counters, settings.contact_daily_cap)
        self._run_handler = run
        self._clock = clock
        self._emit = emit
        self._lease = settings.action_lease
        self._settings = settings
        self.programs = Programs(sequences, vocabulary, settings.rules_refresh)
        self._units: UnitOfWork = units if units is not None else SeparateSteps()
        self.moves = Moves(
            enrollments=enrollments, scheduled=scheduled, recipients=self._recipients,
            settings=settings, clock=clock, emit=emit, units=self._units,
        )  # fmt: skip
        self.entries = Entries(self.moves, emit, self.now)

    @property
    def enrollments(self) -> EnrollmentStore:
        return self.moves.enrollments

    @enrollments.setter
    def enrollments(self, store: EnrollmentStore) -> None:
        self.moves.enrollments = store

    def now(self) -> datetime:
        return ensure_utc(self._clock.now(), "clock.now()")

    def end(
        self,
        enrollment: Enrollment,
        state: EnrollmentState,
        reason: str,
        *,
        goal: str | None = None,
        event: Event | None = None,
    ) -> Enrollment | None:
        """End an active enrollment (see :meth:`Moves.end`)."""
        return self.moves.end(enrollment, state, reason, goal=goal, event=event)

    # ------------------------------------------------------------------ events

    def listens(self, event: Event) -> bool:
        """Whether ``event`` may enroll, end or move an enrollment (cheap: a set lookup)."""
        self.programs.refresh()
        return event.type in self.programs.listening and event.opportunity_id is not None

    def on_event(self, event: Event) -> list[SequenceOutcome]:
        """Goals and waits of the opportunity's active enrollments first (a goal ends the
        enrollment; a matching event moves a wait on), then entries."""
        if not self.listens(event):
            return []
        opportunity_id = event.opportunity_id
        assert opportunity_id is not None
        outcomes: list[SequenceOutcome] = []
        # Read only when some version's goal or wait reacts to this type of event: an entry
        # event nothing else listens to (a new lead) costs no read.
        if event.type in self.programs.reacting:
            for enrollment in self.enrollments.active_for(opportunity_id):
                outcome = self._react(enrollment, event)
                if outcome is not None:
                    outcomes.append(outcome)
        for program in list(self.programs.current.values()):
            if program.definition.status is SequenceStatus.ACTIVE and program.enters(event):
                outcomes.append(self._enter(program, event, opportunity_id))
        return outcomes

    def _react(self, enrollment: Enrollment, event: Event) -> SequenceOutcome | None:
        program = self.programs.get(enrollment.sequence_id, enrollment.sequence_version)
        goal = program.goal_reached(event)
        if goal is not None:
            ended = self.end(
                enrollment, EnrollmentState.GOAL_REACHED, f"goal {goal!r}", goal=goal, event=event
            )
            if ended is not None:
                return SequenceOutcome(enrollment.sequence_id, enrollment.enrollment_id,
                                       "goal_reached", goal)  # fmt: skip
            return None
        step_id = enrollment.step_id
        if (
            enrollment.waiting_for == event.type
            and step_id is not None
            and program.wait_matches(step_id, event)
        ):
            moved = self.moves.advance(enrollment, program, event, cause=event, outcome="matched")
            if moved:
                return SequenceOutcome(enrollment.sequence_id, enrollment.enrollment_id,
                                       "matched", step_id)  # fmt: skip
        return None

    def _enter(
        self, program: SequenceProgram, event: Event, opportunity_id: str
    ) -> SequenceOutcome:
        definition = program.definition
        sequence_id = definition.sequence_id
        enrollment_id = enrollment_id_for(sequence_id, event.id)
        return self.enroll(program, opportunity_id, event, enrollment_id)

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
        its first visit (:meth:`Entries.enroll`)."""
        return self.entries.enroll(program, opportunity_id, event, enrollment_id, actor=actor)

    def enroll_action(self, ctx: ActionContext[EnrollParams]) -> str:
        """The ``enroll`` rule action: enroll the event's opportunity in the sequence (once
        per rule action: the enrollment is keyed on the action's idempotency key). An unknown
        sequence, or one that is not active, is a :class:`PermanentError` (parked with the
        reason)."""
        sequence_id = ctx.params.sequence_id
        self.programs.refresh()
        program = self.programs.current.get(sequence_id)
        if program is None or program.definition.status is not SequenceStatus.ACTIVE:
            self.programs.invalidate()  # published a moment ago on another instance?
            self.programs.refresh()
            program = self.programs.current.get(sequence_id)
        if program is None or program.definition.status is not SequenceStatus.ACTIVE:
            raise PermanentError(f"sequence {sequence_id!r} is not active: nobody enrolled")
        outcome = self.enroll(
            program, ctx.opportunity_id(), ctx.event,
            enrollment_id_for(sequence_id, ctx.idempotency_key),
        )  # fmt: skip
        return f"{outcome.what}: {outcome.enrollment_id} in {sequence_id}"

    # ------------------------------------------------------------------ running visits

    def run_step(self, ctx: ActionContext[Any]) -> str | None:
        """The executor's runner for one ``step`` action (see :meth:`run_steps`)."""
        [outcome] = self.run_steps([ctx])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def run_steps(self, contexts: Sequence[ActionContext[Any]]) -> list[str | Exception | None]:
        """:meth:`start_steps`, its moves written at once (in a unit of their own)."""
        return list(self.start_steps(contexts).finish(False))

    def start_steps(self, contexts: Sequence[ActionContext[Any]]) -> Finishing:
        """The executor's batch runner for ``step`` actions: each one's note, or the exception
        that fails its attempt (see the module docstring). The "send begun" marks of the
        batch's action steps are committed together (one unit of work on SQL) before any of
        their handlers runs (the goal-versus-send rule needs them durable; a SQLite unit
        would hold the database's write lock through the handlers); then the handlers run, and
        the batch's moves (next visits stored, enrollments moved) are one unit of work after
        the last of them, or earlier once half the lease has passed, as the executor
        acknowledges plain actions. A unit that fails is done again one visit at a time, so
        that one visit's failure fails only its own attempt. The last moves are left to the
        returned :class:`~leadflow.runtime.executor.Finishing`: the executor writes them in
        its acknowledgement's unit of work, where it can."""
        outcomes: list[str | Exception | None] = [None] * len(contexts)
        visits: list[Visit] = []
        # The sequences' statuses as of this batch, not of the cache: a pause made through
        # another instance holds the batch's visits at once (one read of the store's stamp a
        # batch; programs compiled again only when it moved).
        self.programs.invalidate()
        read = self._read(contexts)
        for index, ctx in enumerate(contexts):
            try:
                looked = self._look(ctx, index, read)
            except Exception as exc:
                outcomes[index] = exc
                continue
            if isinstance(looked, Visit):
                visits.append(looked)
            else:
                outcomes[index] = looked
        self._together([v for v in visits if v.kind == "send"], self._mark, self._mark_many)
        leases = [c.scheduled.lease_expires_at for c in contexts if c.scheduled.lease_expires_at]
        flush_at = min(leases) - self._lease / 2 if leases else None
        moving: list[Visit] = []
        for visit in visits:
            if visit.failed is not None or visit.final:
                continue
            if visit.kind in ("send", "rerun"):
                try:
                    visit.note = self._run_handler(visit.ctx)
                except Exception as exc:
                    visit.failed = exc
                    continue
            if visit.kind != "rerun":  # a rerun's enrollment ended: it does not move on
                moving.append(visit)
            if moving and flush_at is not None and self.now() >= flush_at:
                self._together(moving, self._move, self._move_many)
                moving = []
        # Moved on after the handlers, all in one unit (the acknowledgement's, where the
        # executor can): a crash before it commits runs the batch's steps again (same
        # idempotency keys), as a plain action whose acknowledgement was not stored yet.
        return finishing(outcomes, visits, moving, self._move, self._move_many,
                         units=self._units, unit=self.moves.unit)  # fmt: skip

    def _read(self, contexts: Sequence[ActionContext[Any]]) -> dict[str, EnrollmentHead] | None:
        """The enrollments of a batch's visits in one read where the store can, without their
        histories where it can (:class:`~leadflow.ports.sequences.EnrollmentSteps`: a step
        then neither reads nor writes the history); None: each visit reads its own, and so
        does every visit when that read fails."""
        store = self.enrollments
        ids = [i for i in (ctx.scheduled.enrollment_id for ctx in contexts) if i is not None]
        try:
            if len(contexts) > 1 and isinstance(store, EnrollmentSteps):
                return store.get_heads(ids)
            if len(contexts) > 1 and isinstance(store, EnrollmentBatches):
                return dict(store.get_many(ids))
            return None
        except Exception:
            log.warning("reading a batch's enrollments failed: one at a time now", exc_info=True)
            return None

    def _look(
        self, ctx: ActionContext[Any], index: int, read: dict[str, EnrollmentHead] | None = None
    ) -> str | Visit:
        """What a claimed visit does: a final note (skipped, held), or what is left to do.
        ``read``: the batch's enrollments read together (:meth:`_read`)."""
        action = ctx.scheduled
        assert action.enrollment_id is not None and action.step_id is not None
        found = None if read is None else read.get(action.enrollment_id)
        enrollment: EnrollmentHead
        if found is not None:
            enrollment = found
        elif read is not None:
            return f"skipped: enrollment {action.enrollment_id} is gone"
        else:
            try:
                enrollment = self.enrollments.get(action.enrollment_id)
            except NotFoundError:
                return f"skipped: enrollment {action.enrollment_id} is gone"
        if not enrollment.active:
            if (
                enrollment.sending
                and enrollment.visit == action.action_index
                and enrollment.step_id == action.step_id
            ):  # its send began before the end was stored: a rerun (crash, retry) completes it
                try:
                    ran = self.programs.get(enrollment.sequence_id, enrollment.sequence_version)
                except NotFoundError as exc:
                    raise PermanentError(f"sequence version not found: {exc}") from None
                return Visit(index, as_version(ctx, enrollment, ran), enrollment, None, "rerun")
            return f"skipped: enrollment {enrollment.state.value} ({enrollment.end_reason})"
        if enrollment.visit < action.action_index:
            # Stored by a writer that has not moved the enrollment to it yet (its second
            # write is on its way, or it crashed and its rerun will make it): not skipped,
            # tried again after the retry backoff (parked with this reason if it never comes).
            raise ConflictError(
                f"enrollment {enrollment.enrollment_id} is at visit {enrollment.visit}, behind "
                f"this visit {action.action_index}: the writer that stored it has not moved it"
            )
        if enrollment.visit != action.action_index or enrollment.step_id != action.step_id:
            return f"skipped: enrollment moved on to visit {enrollment.visit}"
        try:
            program = self.programs.get(enrollment.sequence_id, enrollment.sequence_version)
        except NotFoundError as exc:
            raise PermanentError(f"sequence version not found: {exc}") from None
        stopped = self._stopped(enrollment.sequence_id)
        if stopped is SequenceStatus.PAUSED:
            return self._hold(enrollment)
        if stopped is not None:  # archived: its enrollments end, whatever ended them not yet
            ended = self.moves.end(enrollment, EnrollmentState.ENDED, "sequence archived")
            return "skipped: the sequence is archived" + (" (enrollment ended)" if ended else "")
        step = program.definition.step(action.step_id)
        if isinstance(step, ActionStep):
            capped = self._recipients.capped(enrollment, program, step, self.now())
            if capped is None:
                ctx = as_version(ctx, enrollment, program)
                return Visit(index, ctx, enrollment, program, "send", outcome="done")
            zone = self._recipients.lazy_zone(enrollment.opportunity_id, program)
            stop = program.deferred(step.id, self.now(), zone, capped)
            return Visit(index, ctx, enrollment, program, "deferred", outcome="deferred",
                          stop=stop, note=f"deferred: {capped}")  # fmt: skip
        outcome = "timed_out" if isinstance(step, WaitForEventStep) else "done"
        return Visit(index, ctx, enrollment, program, "timer", outcome=outcome,
                      note=f"{step.kind} {step.id}: {outcome}")  # fmt: skip

    def _together(
        self,
        visits: list[Visit],
        work: Callable[[Visit], None],
        many: Callable[[list[Visit]], None] | None = None,
    ) -> None:
        together(visits, work, many, units=self._units, unit=self.moves.unit)

    def _mark(self, visit: Visit) -> None:
        self._marked(visit, self.moves.begin_send(visit.enrollment, visit.ctx.scheduled))

    @staticmethod
    def _marked(visit: Visit, begun: EnrollmentHead | None) -> None:
        if begun is None:
            visit.note = "skipped: the enrollment ended before the send began"
            visit.final = True
        else:
            visit.enrollment = begun
            visit.final = False

    def _mark_many(self, visits: list[Visit]) -> None:
        """:meth:`_mark` on each of ``visits`` (see :meth:`Moves.begin_sends`)."""
        begun = self.moves.begin_sends([(v.enrollment, v.ctx.scheduled) for v in visits])
        for visit, enrollment in zip(visits, begun, strict=True):
            self._marked(visit, enrollment)

    def _move(self, visit: Visit) -> None:
        assert visit.program is not None and visit.outcome is not None
        moved = self.moves.advance(
            visit.enrollment, visit.program, None, cause=visit.ctx.scheduled.event,
            outcome=visit.outcome, stop=visit.stop,
        )  # fmt: skip
        if visit.kind == "timer" and not moved:
            visit.note = "skipped: moved on meanwhile"

    def _move_many(self, visits: list[Visit]) -> None:
        """:meth:`_move` on each of ``visits`` (see :meth:`Moves.advance_many`)."""
        moved = self.moves.advance_many(
            [Move(v.enrollment, v.program, v.ctx.scheduled.event, v.outcome, v.stop)
             for v in visits if v.program is not None and v.outcome is not None]
        )  # fmt: skip
        for visit, ok in zip(visits, moved, strict=True):
            if visit.kind == "timer" and not ok:
                visit.note = "skipped: moved on meanwhile"

    def _stopped(self, sequence_id: str) -> SequenceStatus | None:
        """None while the sequence runs; else the status that stops its visits (paused,
        archived), as the cached programs say it and a fresh look agrees (another instance
        may have resumed it within the cache's lifetime)."""
        self.programs.refresh()
        current = self.programs.current.get(sequence_id)
        if current is not None and current.definition.status is SequenceStatus.ACTIVE:
            return None
        self.programs.invalidate()
        self.programs.refresh()
        current = self.programs.current.get(sequence_id)
        if current is not None:
            status = current.definition.status
        else:  # not running: archived (its enrollments end as archiving goes through them)
            status = running_version(self.sequences, self.sequences.get(sequence_id)).status
        return None if status is SequenceStatus.ACTIVE else status

    def _hold(self, enrollment: EnrollmentHead) -> str:
        """The sequence is paused: mark the visit held (resuming stores it again, due then).
        Then the sequence's status is read afresh: a resume whose status write came first
        found no hold to release, so the holder releases its own
        (:mod:`~leadflow.runtime.sequence_hold`)."""
        try:
            whole = self.moves.as_read(enrollment)
            held = self.enrollments.update(whole._evolve(held=True, updated_at=self.now()))
        except StaleWriteError:
            current = self.enrollments.get(enrollment.enrollment_id)
            if current.active and current.visit == enrollment.visit and not current.held:
                raise
            return HELD
        if still_paused(self.sequences, enrollment.sequence_id):
            return HELD
        self.programs.invalidate()
        release(
            held,
            program=self.programs.get(held.sequence_id, held.sequence_version),
            scheduled=self.scheduled,
            enrollments=self.enrollments,
            settings=self._settings,
            now=self.now(),
        )
        return RELEASED
