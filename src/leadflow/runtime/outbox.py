"""The completion outbox: ``activity.completed`` (and the change events of an activity,
``activity.rescheduled``...) delivered exactly once whatever fails.

Before a write that completes an activity, an outbox entry (a scheduled action of kind
``delivery``, claimed by this worker) is stored (:func:`~.planning.delivery_action`); after the
write, the executor runs it at once. If the process dies in between, the entry's lease expires
and ``run_due`` runs it: :meth:`Outbox.deliver`, the executor's runner for the ``delivery``
kind, feeds the event into the rules only if the write really happened.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..clock import ensure_utc
from ..errors import LeadflowError, NotFoundError, StorageError
from ..models import Activity, Event
from ..ports import ActivityRepository, Clock, ScheduledActionStore
from .context import ActionContext
from .executor import Executor
from .planning import completed_event, delivery_action
from .results import HandleResult
from .settings import FlowSettings

__all__ = ["Outbox", "activity_payload"]

log = logging.getLogger("leadflow")

Handle = Callable[[Event, int], HandleResult]
"""The planner's ``handle(event, depth)``."""


def activity_payload(activity: Activity) -> dict[str, Any]:
    """An activity as an event payload: its camelCase document."""
    return activity.to_document()


class Outbox:
    """Stores outbox entries around completing writes and delivers them (registered with the
    executor as the runner of ``ActionKind.DELIVERY``)."""

    def __init__(
        self,
        *,
        activities: ActivityRepository,
        scheduled: ScheduledActionStore,
        executor: Executor,
        handle: Handle,
        settings: FlowSettings,
        clock: Clock,
    ) -> None:
        self._activities = activities
        self._scheduled = scheduled
        self._executor = executor
        self._handle = handle
        self._settings = settings
        self._clock = clock

    def _now(self) -> datetime:
        return ensure_utc(self._clock.now(), "clock.now()")

    def around(
        self, activity: Activity, write: Callable[[], Activity], *, event: Event | None = None
    ) -> tuple[Activity, Callable[[], HandleResult | None]]:
        """Store an outbox entry for ``activity``'s completion (or for ``event``, a change a
        person made to it: see :func:`~.planning.change_event`), then do ``write`` (which
        completes or changes it). Returns what ``write`` returned and a function that delivers
        the entry now (call it after telling the host about the write).

        If the write fails the entry is retired (it belongs to this attempt only) when the
        store refused it; when the outcome is unknown (a storage error, a crash), ``run_due``
        delivers it once the lease expires, and only if the write happened."""
        now = self._now()
        settings = self._settings
        worker = self._executor.worker_id
        entry = delivery_action(
            event if event is not None else completed_event(activity, activity_payload(activity)),
            activity,
            attempt=uuid.uuid4().hex[:16],
            now=now,
            worker=worker,
            lease=settings.action_lease,
            max_attempts=settings.retry.max_attempts,
            partitions=settings.partitions,
        )
        self._scheduled.schedule(entry)
        try:
            done = write()
        except BaseException as exc:
            if isinstance(exc, LeadflowError) and not isinstance(exc, StorageError):
                # A refusal (stale, already done, not found, bad input): nothing was written.
                try:
                    self._scheduled.mark_done(entry.action_id, worker=worker, now=now)
                except LeadflowError:
                    log.warning("could not retire an outbox entry; run_due will", exc_info=True)
            # Otherwise the write may have happened (a reply lost after it): the entry stays
            # claimed and run_due delivers it once the lease expires, if the activity is done.
            raise

        def deliver_now() -> HandleResult | None:
            run, ctx = self._executor.execute(entry)
            follow_up = ctx.cascades[0] if ctx.cascades else None
            if follow_up is not None and not run.ok:
                follow_up.errors.append(run.error())
            return follow_up

        return done, deliver_now

    def deliver(self, ctx: ActionContext[Any]) -> str:
        """Deliver an outbox entry: feed the completion of ``activity_id`` into the rules if the
        write it was stored before really happened (the event is rebuilt from what is stored).
        A change event (``activity.rescheduled``...) is delivered as stored, if the activity
        reached the version the change wrote (``payload.version``)."""
        activity_id = ctx.scheduled.activity_id
        event = ctx.event
        if activity_id is not None:
            try:
                activity = self._activities.get(activity_id)
            except NotFoundError:
                return "activity is gone; nothing to deliver"
            if event.type != "activity.completed":
                written = event.payload.get("version")
                if not isinstance(written, int) or activity.version < written:
                    return "activity was not changed; nothing to deliver"
            elif activity.completed_date is None:
                return "activity was not completed; nothing to deliver"
            else:
                event = completed_event(activity, activity_payload(activity))
        ctx.cascades.append(self._handle(event, ctx.depth))
        return f"delivered {event.type} {event.id}"
