"""``flow.sequences``: publish, pause, resume and archive sequences; enroll and unenroll
opportunities by hand. No role checks here (see :mod:`leadflow.access`)."""

from __future__ import annotations

import builtins
import hashlib
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..clock import ensure_utc
from ..errors import InvalidInputError, InvalidStateError, StaleWriteError
from ..models import Event
from ..ports import AnalyticsStore, Clock, EnrollmentStore
from ..rules.sequence_checks import check_sequence
from ..rules.sequencing import SequenceProgram
from ..sequences import (
    Enrollment,
    EnrollmentState,
    Reenrollment,
    SequenceDefinition,
    SequenceStatus,
    WaitForEventStep,
)
from .actions import HandlerRegistry
from .enrollment_pages import enrollments_of
from .results import SequenceOutcome
from .sequence_hold import release
from .sequence_matching import LeadFilter, leads_matching
from .sequence_parts import enrollment_id_for
from .sequence_programs import running_version
from .sequencer import Sequencer
from .settings import FlowSettings

__all__ = ["EnrollmentReport", "InFlight", "SequencesAdmin", "active_enrollments"]


def active_enrollments(store: EnrollmentStore, sequence_id: str) -> Iterator[Enrollment]:
    """Every active enrollment of ``sequence_id``, oldest first, a page at a time
    (:func:`~leadflow.runtime.enrollment_pages.enrollments_of`)."""
    return enrollments_of(store, sequence_id, EnrollmentState.ACTIVE)


class InFlight(StrEnum):
    """What publishing a new version does to enrollments on older versions: ``keep`` them on
    the version they started (the default), ``move`` them to the new version at the same step
    id (those whose step is gone end), or ``end`` them."""

    KEEP = "keep"
    MOVE = "move"
    END = "end"


@dataclass(slots=True)
class EnrollmentReport:
    """What a (bulk) enrollment did, or would do with ``dry_run``: per opportunity, the
    outcome (``enrolled``, ``already_enrolled``, ``not_reenrolled``; ``would_enroll`` in a dry
    run)."""

    sequence_id: str
    dry_run: bool
    outcomes: dict[str, SequenceOutcome] = field(default_factory=dict)

    @property
    def entering(self) -> int:
        """How many opportunities entered (or would)."""
        return sum(
            o.what in ("enrolled", "reentered", "would_enroll") for o in self.outcomes.values()
        )


class SequencesAdmin:
    """Sequence administration through a flow: every definition is compiled against the
    flow's vocabulary and its action steps' settings checked by their handlers before it is
    stored."""

    def __init__(
        self,
        *,
        sequencer: Sequencer,
        handlers: HandlerRegistry,
        settings: FlowSettings,
        clock: Clock,
        analytics: AnalyticsStore | None = None,
    ) -> None:
        self._sequencer = sequencer
        self._analytics = analytics
        self._repository = sequencer.sequences
        self._enrollments = sequencer.enrollments
        self._handlers = handlers
        self._settings = settings
        self._clock = clock

    def _now(self) -> datetime:
        return ensure_utc(self._clock.now(), "clock.now()")

    # ------------------------------------------------------------------ definitions

    def check(self, definition: SequenceDefinition) -> SequenceProgram:
        """Compile ``definition`` for this flow; :class:`InvalidInputError` naming the step
        and field when a condition, an action type or an action's settings are refused."""
        if not isinstance(definition, SequenceDefinition):
            raise InvalidInputError(
                f"expected a SequenceDefinition, got {type(definition).__name__}",
                field="definition",
            )
        vocabulary = self._sequencer.programs.vocabulary()
        check_sequence(definition, vocabulary)
        return SequenceProgram(definition, vocabulary)

    def publish(
        self,
        definition: SequenceDefinition | Mapping[str, Any],
        *,
        actor: str | None = None,
        in_flight: InFlight | str = InFlight.KEEP,
        status: SequenceStatus = SequenceStatus.ACTIVE,
    ) -> SequenceDefinition:
        """Store ``definition`` as its sequence's next version (1 for a new one), ``active``
        unless ``status`` says otherwise (``draft``), and apply ``in_flight`` to enrollments on
        older versions. An active version published over a paused one runs the sequence again:
        the visits the pause held are released, due now, as :meth:`resume` does. Returns the
        stored version."""
        if isinstance(definition, Mapping):
            definition = SequenceDefinition.model_validate(definition)
        policy = InFlight(in_flight)
        existing = self._repository.versions(definition.sequence_id)
        version = existing[-1].version + 1 if existing else 1
        now = self._now()
        candidate = definition.model_copy(
            update={
                "version": version,
                "status": SequenceStatus(status),
                "created_by": actor or definition.created_by,
                "created_at": definition.created_at or now,
                "updated_at": now,
            }
        )
        self.check(candidate)
        before = running_version(self._repository, existing[-1]) if existing else None
        stored = self._repository.add(candidate)
        self._sequencer.programs.invalidate()
        if before is not None and stored.status is SequenceStatus.ACTIVE:
            if policy is not InFlight.KEEP:
                self._in_flight(stored, policy)
            if before.status is SequenceStatus.PAUSED:
                # The sequence runs again, on the new version: what the pause held is
                # released as a resume would (the paused version can no longer be resumed).
                self._release_held(stored.sequence_id)
        return stored

    def _in_flight(self, new: SequenceDefinition, policy: InFlight) -> None:
        step_ids = {step.id for step in new.steps}
        for enrollment in self._active(new.sequence_id):
            if enrollment.sequence_version == new.version:
                continue
            if policy is InFlight.MOVE and (
                enrollment.step_id is None or enrollment.step_id in step_ids
            ):
                self._move(enrollment, new)
            else:
                why = "moved to" if policy is InFlight.MOVE else "ended by"
                self._sequencer.end(
                    enrollment, EnrollmentState.ENDED, f"version {new.version} published ({why})"
                )

    def _move(self, enrollment: Enrollment, new: SequenceDefinition) -> None:
        """Move an active enrollment to version ``new`` at its step (compare-and-set, re-read
        and retried while it moves on meanwhile; one that ended is left as it is). What it
        waits for is the new version's step's: a ``wait_for_event`` there may wait for
        another event type than the old one did."""
        current = enrollment
        version = new.version
        for _ in range(20):
            if not current.active or current.sequence_version == version:
                return
            step = None if current.step_id is None else new.step(current.step_id)
            waiting = step.event_type if isinstance(step, WaitForEventStep) else None
            try:
                self._enrollments.update(
                    current._evolve(
                        sequence_version=version, waiting_for=waiting, updated_at=self._now()
                    )
                )
                return
            except StaleWriteError:
                current = self._enrollments.get(enrollment.enrollment_id)
        raise StaleWriteError(f"enrollment {enrollment.enrollment_id!r} kept changing")

    def _active(self, sequence_id: str) -> Iterator[Enrollment]:
        return active_enrollments(self._enrollments, sequence_id)

    def get(self, sequence_id: str, version: int | None = None) -> SequenceDefinition:
        return self._repository.get(sequence_id, version)

    def list(self, *, running: bool = False) -> builtins.list[SequenceDefinition]:
        """The current (latest) version of every sequence, or with ``running`` the version of
        each that runs (:meth:`running`)."""
        latest = self._repository.list()
        if not running:
            return latest
        return [running_version(self._repository, definition) for definition in latest]

    def running(self, sequence_id: str) -> SequenceDefinition:
        """The version that runs: the latest one that is not a draft (a draft stored on top
        of it is an edit not yet published), or the latest when all are drafts.
        :class:`NotFoundError` for an unknown sequence."""
        return running_version(self._repository, self._repository.get(sequence_id))

    def _set(self, current: SequenceDefinition, status: SequenceStatus) -> SequenceDefinition:
        changed = self._repository.set_status(current.sequence_id, current.version, status)
        self._sequencer.programs.invalidate()
        return changed

    def pause(self, sequence_id: str) -> SequenceDefinition:
        """No new entries; due steps are held (they run, late and once, after :meth:`resume`).
        Acts on the running version (:meth:`running`)."""
        current = self.running(sequence_id)
        if current.status is not SequenceStatus.ACTIVE:
            raise InvalidStateError(f"sequence {sequence_id!r} is {current.status.value}")
        return self._set(current, SequenceStatus.PAUSED)

    def resume(self, sequence_id: str) -> SequenceDefinition:
        """Entries again, and every step held while paused is due now."""
        current = self.running(sequence_id)
        if current.status is not SequenceStatus.PAUSED:
            raise InvalidStateError(f"sequence {sequence_id!r} is {current.status.value}")
        changed = self._set(current, SequenceStatus.ACTIVE)
        self._release_held(sequence_id)
        return changed

    def _release_held(self, sequence_id: str) -> None:
        now = self._now()
        for enrollment in self._active(sequence_id):
            if enrollment.held:
                self._release(enrollment, now)

    def _release(self, enrollment: Enrollment, now: datetime) -> None:
        """Store the held visit again, due now, then clear ``held`` (see
        :mod:`~leadflow.runtime.sequence_hold`)."""
        sequencer = self._sequencer
        release(
            enrollment,
            program=sequencer.programs.get(enrollment.sequence_id, enrollment.sequence_version),
            scheduled=sequencer.scheduled,
            enrollments=self._enrollments,
            settings=self._settings,
            now=now,
        )

    def archive(self, sequence_id: str) -> SequenceDefinition:
        """Retire the sequence: no entries, and its active enrollments end."""
        changed = self._set(self.running(sequence_id), SequenceStatus.ARCHIVED)
        for enrollment in self._active(sequence_id):
            self._sequencer.end(enrollment, EnrollmentState.ENDED, "sequence archived")
        return changed

    # ------------------------------------------------------------------ enrollments

    def enroll(
        self,
        sequence_id: str,
        opportunity_ids: Iterable[str],
        *,
        actor: str | None = None,
        dry_run: bool = False,
    ) -> EnrollmentReport:
        """Enroll existing opportunities by hand (the re-enrollment policy applies); with
        ``dry_run`` nothing is written and the report says who would enter."""
        definition = self.running(sequence_id)
        if definition.status is not SequenceStatus.ACTIVE:
            raise InvalidStateError(
                f"sequence {sequence_id!r} is {definition.status.value}: it enrolls nobody"
            )
        ids = list(dict.fromkeys(opportunity_ids))
        if len(ids) > 10_000:
            raise InvalidInputError("at most 10,000 opportunities at once", field="opportunityIds")
        program = self._sequencer.programs.get(sequence_id, definition.version)
        report = EnrollmentReport(sequence_id, dry_run)
        batch = uuid.uuid4().hex
        now = self._now()
        for opportunity_id in ids:
            event = Event(
                type="sequence.enrollment_requested",
                id=f"manual-{batch[:16]}-{hashlib.sha256(opportunity_id.encode()).hexdigest()[:24]}",
                time=now,
                payload={"opportunityId": opportunity_id, "sequenceId": sequence_id,
                         "enrolledBy": actor},
            )  # fmt: skip
            if dry_run:
                report.outcomes[opportunity_id] = self._would(definition, opportunity_id)
                continue
            report.outcomes[opportunity_id] = self._sequencer.enroll(
                program, opportunity_id, event, enrollment_id_for(sequence_id, event.id),
                actor=actor,
            )  # fmt: skip
        return report

    def enroll_matching(
        self,
        sequence_id: str,
        where: LeadFilter | Mapping[str, Any],
        *,
        actor: str | None = None,
        dry_run: bool = False,
    ) -> EnrollmentReport:
        """Enroll the leads ``where`` takes (:mod:`~leadflow.runtime.sequence_matching`: those
        leadflow saw arrive in a period, of given sources and owners) as :meth:`enroll` would
        enroll their ids; with ``dry_run`` nothing is written and the report says who would
        enter. :class:`InvalidStateError` without an analytics store."""
        lead_filter = where if isinstance(where, LeadFilter) else LeadFilter.model_validate(where)
        definition = self.running(sequence_id)
        if definition.status is not SequenceStatus.ACTIVE:
            raise InvalidStateError(
                f"sequence {sequence_id!r} is {definition.status.value}: it enrolls nobody"
            )
        ids = leads_matching(self._analytics, lead_filter)
        return self.enroll(sequence_id, ids, actor=actor, dry_run=dry_run)

    def _would(self, definition: SequenceDefinition, opportunity_id: str) -> SequenceOutcome:
        sid = definition.sequence_id
        earlier = self._enrollments.list(
            sequence_id=sid, opportunity_id=opportunity_id, limit=10_000
        )
        active = [e for e in earlier if e.active]
        if active and definition.reenrollment is not Reenrollment.EVERY_ENTRY:
            return SequenceOutcome(sid, active[0].enrollment_id, "already_enrolled")
        if earlier and definition.reenrollment is Reenrollment.NEVER:
            return SequenceOutcome(sid, earlier[0].enrollment_id, "not_reenrolled")
        return SequenceOutcome(sid, "", "would_enroll")

    def unenroll(self, enrollment_id: str, *, actor: str | None = None) -> Enrollment:
        """End an enrollment by hand; its pending step is cancelled."""
        enrollment = self._enrollments.get(enrollment_id)
        ended = self._sequencer.end(
            enrollment, EnrollmentState.UNENROLLED, f"unenrolled by {actor or 'the system'}"
        )
        if ended is None:
            raise InvalidStateError(
                f"enrollment {enrollment_id!r} has ended already ({enrollment.state.value})"
            )
        return ended

    def enrollments(self, opportunity_id: str) -> builtins.list[Enrollment]:
        """Every enrollment of an opportunity, oldest first, each with its step history."""
        return self._enrollments.list(opportunity_id=opportunity_id, limit=10_000)
