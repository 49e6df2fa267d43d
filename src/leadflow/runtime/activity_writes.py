"""What a person does to activities through a flow: record, complete, change (reschedule,
reassign, edit, cancel), delete.

A completion (or an activity recorded already completed) sets off ``activity.completed`` through
the completion :class:`~.outbox.Outbox`, so the follow-up is delivered exactly once whatever
fails; a change sets off its event (``activity.rescheduled``...) the same way.
:class:`ActivityWrites` is built from explicit parts: the activity store, the outbox, the
emitter and the clock.
"""

from __future__ import annotations

import logging
from datetime import datetime

from ..clock import ensure_utc
from ..errors import (
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    StaleWriteError,
)
from ..models import Activity, Outcome
from ..ports import ActivityRepository, Clock
from .emitter import Emitter
from .outbox import Outbox, activity_payload
from .planning import change_event
from .results import ChangeResult, CompletionResult

__all__ = ["ActivityWrites", "activity_payload"]

log = logging.getLogger("leadflow")


class ActivityWrites:
    """Record, complete and delete activities (no role checks: see :mod:`leadflow.access`)."""

    def __init__(
        self, *, activities: ActivityRepository, outbox: Outbox, emit: Emitter, clock: Clock
    ) -> None:
        self._activities = activities
        self._outbox = outbox
        self._emit = emit
        self._clock = clock

    def _now(self) -> datetime:
        return ensure_utc(self._clock.now(), "clock.now()")

    def record(self, activity: Activity) -> Activity:
        """Store an activity a person recorded. One recorded already completed (a logged call)
        also sets off ``activity.completed``, through the outbox."""
        if activity.completed_date is None:
            stored = self._activities.add(activity)
            self._emit("activity.created", activity_payload(stored))
            return stored
        # Refused here when the id is taken, before the outbox entry is stored, so the refusal
        # writes nothing (only a concurrent record of the same id, refused by the store, leaves
        # its retired entry behind).
        try:
            self._activities.get(activity.activity_id)
        except NotFoundError:
            pass
        else:
            raise DuplicateError(f"activity {activity.activity_id!r} already exists")
        stored, deliver = self._outbox.around(activity, lambda: self._activities.add(activity))
        self._emit("activity.completed", activity_payload(stored))
        deliver()
        self._emit("activity.created", activity_payload(stored))
        return stored

    def complete(
        self,
        activity_id: str,
        *,
        outcome: Outcome | str | None,
        completed_by: str | None,
        expected_version: int | None = None,
    ) -> CompletionResult:
        """Mark an activity done and feed ``activity.completed`` into the rules (seed, Example 1,
        step 7). Every way the completion can fail (not found, already completed, a stale or bad
        version, a concurrent completion, a crash) leaves the follow-up deliverable exactly once.
        """
        if outcome is not None and not isinstance(outcome, Outcome):
            if outcome not in Outcome._value2member_map_:
                raise InvalidInputError(f"unknown outcome {str(outcome)[:80]!r}", field="outcome")
            outcome = Outcome(outcome)
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise InvalidInputError("must be an integer", field="expected_version")
        activity = self._activities.get(activity_id)
        # What the store would refuse is refused before the outbox entry is stored: a refusal
        # writes nothing (only a concurrent change, refused by the store, leaves its retired
        # entry behind).
        if activity.completed_date is not None:
            raise InvalidStateError(f"activity {activity.activity_id!r} is already completed")
        if activity.cancelled_at is not None:
            raise InvalidStateError(f"activity {activity.activity_id!r} is cancelled")
        if expected_version is not None and expected_version != activity.version:
            raise StaleWriteError(
                f"activity {activity.activity_id!r} is at version {activity.version}, "
                f"not {expected_version}"
            )
        now = self._now()
        planned = activity.model_copy(
            update={"completed_date": now, "outcome": outcome, "completed_by": completed_by}
        )

        def write() -> Activity:
            return self._activities.complete(
                activity.activity_id,
                outcome=outcome,
                completed_by=completed_by,
                completed_at=now,
                expected_version=expected_version,
            )

        done, deliver = self._outbox.around(planned, write)
        self._emit("activity.completed", activity_payload(done))
        follow_up = deliver()
        log.info(
            "activity completed",
            extra={"activity_id": done.activity_id, "outcome": outcome, "actor": completed_by},
        )
        return CompletionResult(done, follow_up)

    def change(
        self,
        changed: Activity,
        event_type: str,
        *,
        previous: dict[str, object],
        actor: str | None,
        reason: str | None = None,
    ) -> ChangeResult:
        """Store ``changed`` (an activity as read, with the change applied; its ``version`` is
        the one read, so a write in between is a :class:`StaleWriteError` and nothing is
        written) and feed ``event_type`` into the rules through the outbox: exactly once,
        whatever fails. ``previous`` holds the changed fields' values before (camelCase)."""
        now = self._now()
        planned = changed._evolve(version=changed.version + 1)
        event = change_event(
            event_type, planned, previous=previous, actor=actor, time=now, reason=reason
        )
        stored, deliver = self._outbox.around(
            planned, lambda: self._activities.update(changed), event=event
        )
        self._emit(event_type, dict(event.payload))
        follow_up = deliver()
        log.info(
            "activity changed",
            extra={"activity_id": stored.activity_id, "change": event_type, "actor": actor},
        )
        return ChangeResult(stored, event, follow_up)

    def delete(self, activity_id: str, *, actor: str | None) -> Activity:
        """Remove an activity; returns what was deleted."""
        activity = self._activities.get(activity_id)
        self._activities.delete(activity_id)
        log.info("activity deleted", extra={"activity_id": activity_id, "actor": actor})
        self._emit("activity.deleted", {"activityId": activity_id, "deletedBy": actor})
        return activity
