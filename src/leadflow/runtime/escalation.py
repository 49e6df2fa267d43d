"""The ``overdue_check`` job: each assignee notified of their overdue activities, and each
overdue activity escalated as an ``activity.overdue`` event, once per threshold.

Escalation
----------

For each threshold of :attr:`JobSettings.overdue_thresholds` (default one hour and one day) an
open activity whose due date is that long past (``due date <= now - threshold``) is fed into the
rules as an ``activity.overdue`` event (:meth:`LeadFlow.handle`, the path every event takes),
then reported to the event sink under the same name. Rules act on it (notify the manager when
``threshold`` is 24, reassign...). Completed activities are never escalated.

**Once per activity, due date and threshold.** The event id derives from the three
(:func:`overdue_event_id`), so feeding it again plans nothing twice (the rules' idempotency
keys); a changed due date (an activity rescheduled, then missed again) is a new escalation.
Each escalation is also marked in the job store (``JobStore.mark``, as the reminders are), after
the rules were fed and before the event-sink copy goes out: only the run that set the mark sends
that copy. So of two runs at once (a run that outlived its lease and the one that took over),
each escalation reaches the rules and the sink once; a crash after feeding the rules and before
the mark only makes the next run feed it again (a no-op for the rules) and send the copy; a crash
between the mark and the copy loses that copy (the rules have acted).

**A cursor per threshold.** The job walks the activities in (due date, activity id) order from
a position it keeps in the job store (value ``cursor:<job name>:<threshold in seconds>``), so
each run reads only the activities that crossed a threshold since the previous run, however many
were escalated before: at most ``escalation_limit`` per threshold (the rest the next run,
``escalations_truncated``). The cursor moves by compare-and-set at the end of the threshold's
walk: a run taken over writes nothing. An escalation whose event could not be handled stops its
threshold's walk there; the next run tries it again. One case is not seen: an activity that
appears behind a threshold's cursor (recorded, or rescheduled, with a due date already more than
the threshold in the past) is escalated only at the later thresholds it has not crossed yet. A
new threshold starts from the beginning: every open activity already past it is escalated.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ..clock import ensure_utc
from ..models import Activity, ActivityState, Event
from ..ports import JobStore
from ..ports.periodic import JobContext
from ..queries import ActivityFilter, ActivitySort, encode_cursor
from .job_settings import JobSettings
from .notices import activity_item, by_assignee, send_notice

if TYPE_CHECKING:
    from .flow import LeadFlow

__all__ = ["ESCALATION_COUNTS", "OverdueCheck", "overdue_event_id", "threshold_hours"]

log = logging.getLogger("leadflow.scheduling")

_OVERDUE_EVENTS: Final = uuid.UUID("0c5e7d1a-93b4-4f2e-a6d8-e5ca1a7e0001")
_MARGIN: Final = timedelta(milliseconds=1)  # a backend may keep times to the millisecond only
_PAGE: Final = 1000  # the activity store's largest page
_SORT: Final = ActivitySort(field="due_date")

ESCALATION_COUNTS: Final = (
    "escalated",
    "already_escalated",
    "escalations_matched",
    "escalations_failed",
    "escalations_truncated",
)
"""What the overdue check reports about escalations, besides its notification counts:
``escalated`` (fed to the rules and sent to the sink by this run), ``already_escalated`` (found
marked: done before, or by a run at the same time), ``escalations_matched`` (escalated and
matched by at least one rule), ``escalations_failed`` (not handled; tried again next run) and
``escalations_truncated`` (thresholds that reached ``escalation_limit``)."""


def overdue_event_id(activity_id: str, due_date: datetime, threshold: timedelta) -> str:
    """The id of the ``activity.overdue`` event of one activity, due date and threshold: the
    same at every run, so the rules act once."""
    due = ensure_utc(due_date, "due_date").isoformat()
    seconds = int(threshold.total_seconds())
    return str(uuid.uuid5(_OVERDUE_EVENTS, f"{activity_id}/{due}/{seconds}"))


def threshold_hours(threshold: timedelta) -> int | float:
    """A threshold in hours, as the event carries it: a whole number when it is one."""
    hours = threshold / timedelta(hours=1)
    return int(hours) if hours.is_integer() else hours


def _position(value: str | None) -> tuple[datetime, str] | None:
    if value is None:
        return None
    after = json.loads(value).get("after")
    return None if after is None else (datetime.fromisoformat(after[0]), after[1])


def _position_value(position: tuple[datetime, str]) -> str:
    due, activity_id = position
    after = [ensure_utc(due, "after").isoformat(), activity_id]
    return json.dumps({"after": after}, separators=(",", ":"))


class OverdueCheck:
    """The body of the ``overdue_check`` job (:meth:`run`), bound to a flow, a job store and
    the job settings."""

    def __init__(self, flow: LeadFlow, store: JobStore, settings: JobSettings) -> None:
        self.flow = flow
        self.store = store
        self.settings = settings

    def run(self, ctx: JobContext) -> dict[str, int]:
        """The notifications (:meth:`notify`), then the escalations (:meth:`escalate`)."""
        return {**self.notify(ctx), **self.escalate(ctx)}

    def notify(self, ctx: JobContext) -> dict[str, int]:
        """One ``overdue_activities`` notification per assignee (unassigned ones together,
        to no recipient: the host decides), listing up to ``items_per_notification`` items
        with the full count."""
        settings = self.settings
        limit = settings.overdue_limit
        overdue = self.flow.storage.activities.overdue(ctx.now, limit=limit)
        sent = failed = 0
        for assignee, group in by_assignee(overdue).items():
            key = f"overdue_activities:{ctx.slot}:{assignee or '-'}"
            payload = {
                "key": key,
                "recipients": [assignee] if assignee else [],
                "asOf": ctx.now,
                "count": len(group),
                "activities": [activity_item(a) for a in group[: settings.items_per_notification]],
            }
            if send_notice(
                self.flow, "overdue_activities", key, assignee, payload, ctx, notify=settings.notify
            ):
                sent += 1
            else:
                failed += 1
        return {
            "overdue": len(overdue),
            "notifications": sent,
            "failed": failed,
            "truncated": int(len(overdue) == limit),
        }

    def escalate(self, ctx: JobContext) -> dict[str, int]:
        """Feed ``activity.overdue`` into the rules for each open activity that crossed a
        threshold since the previous run (see the module's docstring)."""
        counts = dict.fromkeys(ESCALATION_COUNTS, 0)
        for level, threshold in enumerate(self.settings.overdue_thresholds, 1):
            self._walk(ctx, level, threshold, counts)
        return counts

    def _walk(
        self, ctx: JobContext, level: int, threshold: timedelta, counts: dict[str, int]
    ) -> None:
        """One threshold: escalate what crossed it after the cursor, then move the cursor."""
        key = f"cursor:{ctx.job.name}:{int(threshold.total_seconds())}"
        stored = self.store.get_value(key)
        position = after = _position(stored)
        crossed, truncated = self._crossed(ctx.now - threshold, ctx.now, after)
        counts["escalations_truncated"] += truncated
        for activity in crossed:
            if not self._escalate(ctx, activity, level, threshold, counts):
                break  # the next run starts here again
            assert activity.due_date is not None
            position = (activity.due_date, activity.activity_id)
        if position is None or position == after:
            return
        if not self.store.set_value(key, _position_value(position), expected=stored):
            log.warning(
                "the escalation cursor moved during this run (another instance took the slot "
                "over); this run's position is dropped",
                extra={"job": ctx.job.name, "slot": ctx.slot, "cursor": key},
            )

    def _crossed(
        self, cutoff: datetime, now: datetime, after: tuple[datetime, str] | None
    ) -> tuple[list[Activity], bool]:
        """Open activities due at or before ``cutoff``, after ``after`` in (due date, id)
        order, up to ``escalation_limit``; and whether the limit was reached."""
        limit = self.settings.escalation_limit
        activities = self.flow.storage.activities
        # The bound is applied here: a store keeping milliseconds (BSON) rounds a query's bounds.
        query = ActivityFilter(state=ActivityState.OVERDUE, as_of=now, due_to=cutoff + _MARGIN)
        cursor = None if after is None else encode_cursor(_SORT, after[0], after[1])
        found: list[Activity] = []
        while len(found) < limit:
            page = activities.list(
                query, sort=_SORT, limit=min(_PAGE, limit - len(found)), cursor=cursor
            )
            for activity in page.items:
                if activity.due_date is None or activity.due_date > cutoff:
                    return found, False
                if activity.completed_date is None:
                    found.append(activity)
            if page.next_cursor is None or not page.items:
                return found, False
            cursor = page.next_cursor
        return found, True

    def _escalate(
        self,
        ctx: JobContext,
        activity: Activity,
        level: int,
        threshold: timedelta,
        counts: dict[str, int],
    ) -> bool:
        """One escalation, unless its mark says it happened; False if the flow failed to
        handle it (logged)."""
        due = activity.due_date
        assert due is not None
        seconds = int(threshold.total_seconds())
        mark = f"escalation:{activity.activity_id}:{due.isoformat()}:{seconds}"
        if self.store.is_marked(mark, now=ctx.now):
            counts["already_escalated"] += 1
            return True
        late = ctx.now - due
        payload: dict[str, Any] = {
            "activityId": activity.activity_id,
            "opportunityId": activity.opportunity_id,
            "customerId": activity.customer_id,
            "activityType": activity.activity_type.value,
            "subject": activity.subject,
            "assignedTo": activity.assigned_to,
            "dueDate": due,
            "threshold": threshold_hours(threshold),
            "level": level,
            "overdueFor": round(late / timedelta(hours=1), 2),
            "overdueSeconds": int(late.total_seconds()),
            "asOf": ctx.now,
        }
        event = Event(
            id=overdue_event_id(activity.activity_id, due, threshold),
            type="activity.overdue",
            time=ctx.now,
            payload=payload,
            actor=self.flow.settings.system_user,
        )
        try:
            result = self.flow.handle(event)
        except Exception:
            log.exception(
                "the escalation of activity %s could not be handled",
                activity.activity_id,
                extra={"job": ctx.job.name, "slot": ctx.slot, "activity_id": activity.activity_id},
            )
            counts["escalations_failed"] += 1
            return False
        if not self.store.mark(mark, now=ctx.now, expires_at=ctx.now + self.settings.retention):
            counts["already_escalated"] += 1  # a run at the same time marked it first
            return True
        self.flow.emit("activity.overdue", {"eventId": event.id, **payload})
        counts["escalated"] += 1
        counts["escalations_matched"] += bool(result.matched_rules)
        return True
