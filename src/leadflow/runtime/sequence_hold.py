"""Visits held while their sequence is paused, and their release.

A visit that comes due while its sequence is paused is **held**: its enrollment is marked
``held`` (compare-and-set) and the visit's action finishes with a note. **Releasing** it (a
resume, an active version published over the paused one, or the holder itself, below) stores
the visit again as a new action, due at once, keyed on the enrollment, its visit and the
revision that held it (``seq:<enrollment>:<visit>:r<revision>``: whoever releases a hold, the
visit is stored once), its event a ``sequence.resumed`` carrying the payload of the event the
held visit came from (as every visit carries its cause's: a message's data reads it), then
clears ``held``.

**A resume against a hold in progress** is settled by the order of their writes and reads:
a resume writes the sequence's status, then reads the held enrollments; a holder writes
``held``, then reads the sequence's status afresh (:func:`still_paused`, not the cached
programs). Whichever reads second sees the other's write: the resume finds the hold and
releases it, or the holder finds the sequence running and releases its own hold, or both
(one stored visit, by its key). No visit stays held once its sequence runs. A holder also
confirms a cached "paused" with a fresh read before it holds: another instance may have
resumed the sequence within the cache's lifetime.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from ..errors import StaleWriteError
from ..models import Event
from ..ports import EnrollmentStore, ScheduledActionStore, SequenceRepository
from ..records import ActionKind, DuplicatePolicy, ScheduledAction, ScheduledActionState
from ..rules.sequencing import SequenceProgram
from ..sequences import ActionStep, Enrollment, SequenceStatus
from .planning import action_id_for, partition_for
from .sequence_programs import running_version
from .settings import FlowSettings

__all__ = ["HELD", "RELEASED", "release", "still_paused"]

HELD = "held: the sequence is paused (it runs when the sequence is resumed)"
"""The note of a visit's action that was held."""

RELEASED = "released: the sequence was resumed while this visit was being held (it runs again now)"
"""The note of a visit's action whose holder found its sequence resumed and released it."""

_CAS_TRIES = 20


def still_paused(repository: SequenceRepository, sequence_id: str) -> bool:
    """Whether the sequence's running version is paused, read from ``repository`` now."""
    return running_version(repository, repository.get(sequence_id)).status is (
        SequenceStatus.PAUSED
    )


def release(
    enrollment: Enrollment,
    *,
    program: SequenceProgram,
    scheduled: ScheduledActionStore,
    enrollments: EnrollmentStore,
    settings: FlowSettings,
    now: datetime,
) -> None:
    """Store ``enrollment``'s held visit again, due ``now`` (keyed on the revision that held
    it, so two releases store it once), then clear ``held`` (see the module docstring)."""
    assert enrollment.step_id is not None
    step = program.definition.step(enrollment.step_id)
    key = f"seq:{enrollment.enrollment_id}:{enrollment.visit}:r{enrollment.revision}"
    # The payload of the event the held visit came from (the latest matched one, else the
    # entry's), as any visit carries its cause's: a message's data reads it.
    cause = enrollment.context.get("event", enrollment.context.get("entry"))
    event = Event(
        type="sequence.resumed",
        id=f"resume-{hashlib.sha256(key.encode()).hexdigest()[:32]}",
        time=now,
        payload={
            **(cause if isinstance(cause, dict) else {}),
            "opportunityId": enrollment.opportunity_id,
        },
    )
    scheduled.schedule(
        ScheduledAction(
            action_id=action_id_for(key),
            idempotency_key=key,
            kind=ActionKind.STEP,
            event=event,
            rule_id=enrollment.sequence_id,
            rule_name=program.definition.name,
            rule_version=enrollment.sequence_version,
            action_index=enrollment.visit,
            action=step.action if isinstance(step, ActionStep) else None,
            opportunity_id=enrollment.opportunity_id,
            enrollment_id=enrollment.enrollment_id,
            step_id=enrollment.step_id,
            partition=partition_for(enrollment.opportunity_id, settings.partitions),
            duplicates=DuplicatePolicy.ALLOW,
            explanation=f"held while the sequence was paused; resumed at {now.isoformat()}",
            planned_at=now,
            due_at=now,
            state=ScheduledActionState.PENDING,
            max_attempts=settings.retry.max_attempts,
            created_at=now,
        )
    )
    _clear_held(enrollment, enrollments, now)


def _clear_held(enrollment: Enrollment, enrollments: EnrollmentStore, now: datetime) -> None:
    """Clear ``held`` (compare-and-set), re-read and retried while the enrollment is still
    held at the same visit (its visit is stored again: it runs), left alone once it is not
    (another release cleared it, the visit ran, the enrollment ended)."""
    current = enrollment
    for _ in range(_CAS_TRIES):
        if not (current.active and current.held and current.visit == enrollment.visit):
            return
        try:
            enrollments.update(current._evolve(held=False, updated_at=now))
            return
        except StaleWriteError:
            current = enrollments.get(enrollment.enrollment_id)
    raise StaleWriteError(f"enrollment {enrollment.enrollment_id!r} kept changing")
