"""What a person does to activities through a flow: record, complete, delete.

A completion (or an activity recorded already completed) sets off ``activity.completed`` through
an outbox entry stored before the write (:func:`~.planning.delivery_action`), so the follow-up is
delivered exactly once whatever fails. :class:`ActivityWrites` is a part of
:class:`~leadflow.LeadFlow`: it runs on the flow's stores, clock and settings.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, LeadflowError, StorageError
from ..models import Activity, Outcome
from .planning import completed_event, delivery_action
from .results import CompletionResult, HandleResult

if TYPE_CHECKING:
    from ..ports import Storage
    from ..records import ScheduledAction
    from .context import ActionContext
    from .results import ActionRun
    from .settings import FlowSettings

__all__ = ["ActivityWrites", "activity_payload"]

log = logging.getLogger("leadflow")


class ActivityWrites:
    """Activity operations of :class:`~leadflow.LeadFlow` (which provides what is declared
    here: its storage, settings, worker id, clock, events and action runner)."""

    if TYPE_CHECKING:
        storage: Storage
        settings: FlowSettings
        worker_id: str

        def now(self) -> datetime: ...

        def emit(self, name: str, payload: dict[str, Any]) -> None: ...

        def _execute(
            self, action: ScheduledAction, *, defer_done: bool = False
        ) -> tuple[ActionRun, ActionContext]: ...

    def record_activity(self, activity: Activity) -> Activity:
        """Store an activity a person recorded. One recorded already completed (a logged call)
        also sets off ``activity.completed``, through the outbox."""
        if activity.completed_date is None:
            stored = self.storage.activities.add(activity)
            self.emit("activity.created", activity_payload(stored))
            return stored
        stored, _ = self._with_delivery(activity, lambda: self.storage.activities.add(activity))
        self.emit("activity.created", activity_payload(stored))
        return stored

    def complete_activity(
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
        activity = self.storage.activities.get(activity_id)
        now = self.now()
        planned = activity.model_copy(
            update={"completed_date": now, "outcome": outcome, "completed_by": completed_by}
        )

        def write() -> Activity:
            return self.storage.activities.complete(
                activity.activity_id,
                outcome=outcome,
                completed_by=completed_by,
                completed_at=now,
                expected_version=expected_version,
            )

        done, follow_up = self._with_delivery(planned, write)
        log.info(
            "activity completed",
            extra={"activity_id": done.activity_id, "outcome": outcome, "actor": completed_by},
        )
        return CompletionResult(done, follow_up)

    def _with_delivery(
        self, activity: Activity, write: Callable[[], Activity]
    ) -> tuple[Activity, HandleResult | None]:
        """Store an outbox entry, do ``write`` (which completes ``activity``), then deliver
        ``activity.completed``. If the write fails the entry is retired (it belongs to this
        attempt only) when the store refused it; when the outcome is unknown (a storage error,
        a crash), ``run_due`` delivers it once the lease expires, and only if the write
        happened."""
        now = self.now()
        outbox = delivery_action(
            completed_event(activity, activity_payload(activity)),
            activity,
            attempt=uuid.uuid4().hex[:16],
            now=now,
            worker=self.worker_id,
            lease=self.settings.action_lease,
            max_attempts=self.settings.retry.max_attempts,
            partitions=self.settings.partitions,
        )
        self.storage.scheduled.schedule(outbox)
        try:
            done = write()
        except BaseException as exc:
            if isinstance(exc, LeadflowError) and not isinstance(exc, StorageError):
                # A refusal (stale, already done, not found, bad input): nothing was written.
                try:
                    self.storage.scheduled.mark_done(
                        outbox.action_id, worker=self.worker_id, now=now
                    )
                except LeadflowError:
                    log.warning("could not retire an outbox entry; run_due will", exc_info=True)
            # Otherwise the write may have happened (a reply lost after it): the entry stays
            # claimed and run_due delivers it once the lease expires, if the activity is done.
            raise
        self.emit("activity.completed", activity_payload(done))
        run, ctx = self._execute(outbox)
        follow_up = ctx.cascades[0] if ctx.cascades else None
        if follow_up is not None and not run.ok:
            follow_up.errors.append(run.error())
        return done, follow_up

    def delete_activity(self, activity_id: str, *, actor: str | None) -> Activity:
        """Remove an activity; returns what was deleted."""
        activity = self.storage.activities.get(activity_id)
        self.storage.activities.delete(activity_id)
        log.info("activity deleted", extra={"activity_id": activity_id, "actor": actor})
        self.emit("activity.deleted", {"activityId": activity_id, "deletedBy": actor})
        return activity


def activity_payload(activity: Activity) -> dict[str, Any]:
    """An activity as an event payload: its camelCase document."""
    return activity.to_document()
