"""The seed's periodic jobs bound to a flow: due actions, overdue checks, reminders, stale leads,
clean-up and daily summaries, configured by :class:`JobSettings`."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import TYPE_CHECKING, Any, Final

from .. import limits as _limits
from ..clock import ensure_utc
from ..errors import InvalidInputError
from ..fields import ID_RE
from ..models import Activity, ActivityState, Event
from ..ports import JobStore, Scheduler
from ..ports.periodic import Job, JobContext, JobFunc, JobRun
from ..queries import ActivityFilter
from ..scheduling.runner import JobRunner
from .escalation import OverdueCheck, overdue_event_id
from .job_settings import JOB_NAMES, JobSchedule, JobSettings
from .notices import activity_item, by_assignee, send_notice

if TYPE_CHECKING:
    from .flow import LeadFlow

__all__ = [
    "JobSchedule",
    "JobSettings",
    "LeadflowJobs",
    "overdue_event_id",
    "stale_event",
    "stale_event_id",
]

log = logging.getLogger("leadflow.scheduling")

_MARGIN: Final = timedelta(milliseconds=1)  # a backend may keep times to the millisecond only
_REMINDER_KEEP: Final = timedelta(days=1)  # a reminder mark outlives the due date by this much
_STALE_EVENTS: Final = uuid.UUID("7b1f3c2e-5a60-4f0b-8d9e-57a1e0c0ffee")
_RETRY_KEEP: Final = 100  # stale opportunities whose event failed, retried at the next run


def _cursor(
    value: str | None,
) -> tuple[tuple[datetime, str] | None, list[tuple[datetime, str]]]:
    """The stale job's stored cursor: its position and the keys to retry."""
    if value is None:
        return None, []
    document = json.loads(value)

    def key(item: list[str]) -> tuple[datetime, str]:
        return datetime.fromisoformat(item[0]), item[1]

    after = document.get("after")
    return (None if after is None else key(after)), [key(i) for i in document.get("retry", [])]


def _cursor_value(after: tuple[datetime, str] | None, retry: list[tuple[datetime, str]]) -> str:
    def item(key: tuple[datetime, str]) -> list[str]:
        return [ensure_utc(key[0], "after").isoformat(), key[1]]

    return json.dumps(
        {"after": None if after is None else item(after), "retry": [item(k) for k in retry]},
        separators=(",", ":"),
    )


def stale_event_id(opportunity_id: str, last_activity_at: datetime) -> str:
    """The id of the ``opportunity.stale_detected`` event for one stale period: the same for
    every detection until the opportunity has a newer activity, so the rules act once."""
    at = ensure_utc(last_activity_at, "last_activity_at").isoformat()
    return str(uuid.uuid5(_STALE_EVENTS, f"{opportunity_id}/{at}"))


def stale_event(
    opportunity_id: str,
    last_activity_at: datetime,
    now: datetime,
    *,
    stale_after: timedelta,
    actor: str | None,
) -> Event:
    """The ``opportunity.stale_detected`` event of one stale period, as ``Event(...)`` builds
    it. When every value is one the job took from the stores and the clock as they give it
    (ids that match the id pattern, UTC datetimes within the limits) the model is made
    without pydantic walking its fields and payload again (``tests/test_stale_event.py``
    holds the two to each other); anything else goes through the validating constructor."""
    payload = {
        "opportunityId": opportunity_id,
        "lastActivityAt": last_activity_at,
        "staleSince": last_activity_at + stale_after,
        "daysSinceLastActivity": (now - last_activity_at) // timedelta(days=1),
    }
    fields: dict[str, Any] = {
        "id": stale_event_id(opportunity_id, last_activity_at),
        "type": "opportunity.stale_detected",
        "time": now,
        "payload": payload,
        "actor": actor,
    }
    limits = _limits.DEFAULT_LIMITS
    plain = (
        type(opportunity_id) is str
        and ID_RE.match(opportunity_id) is not None
        and (actor is None or (type(actor) is str and ID_RE.match(actor) is not None))
        and all(
            type(moment) is datetime
            and moment.tzinfo is UTC
            and limits.earliest <= moment <= limits.latest
            for moment in (now, last_activity_at, payload["staleSince"])
        )
    )
    if not plain:
        return Event(**fields)
    event = Event.__new__(Event)
    _set(event, "__dict__", fields)
    _set(event, "__pydantic_fields_set__", set(fields))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


_set = object.__setattr__


class LeadflowJobs:
    """The seed's background jobs, bound to one flow and one job store.

    ============================  ==================  =========================================
    job                           default schedule    what it does
    ============================  ==================  =========================================
    ``due_actions``               every minute        :meth:`LeadFlow.run_due` until drained
    ``overdue_check``             hourly              ``notification.overdue_activities``, one
                                                      per assignee with their overdue items;
                                                      ``activity.overdue`` into the rules once
                                                      per activity and threshold (1 h, 24 h)
    ``upcoming_reminders``        every 30 minutes    ``notification.upcoming_activities`` for
                                                      activities due within 30 minutes, each
                                                      activity (and due date) reminded once
    ``stale_opportunities``       every 6 hours       ``opportunity.stale_detected`` into the
                                                      rules, once per stale period
    ``cleanup``                   daily at 02:00      purge completed activities older than
                                                      the retention; forget expired job records
    ``daily_summary``             daily at 08:00      ``notification.daily_summary`` per user
    ============================  ==================  =========================================

    Each job body returns counts (reported in :class:`JobRun`). A failure on one item (a
    notifier that raises for one user) is logged and counted as ``failed``; the others go on.
    """

    NAMES: Final = JOB_NAMES

    def __init__(
        self,
        flow: LeadFlow,
        settings: JobSettings | None = None,
        *,
        store: JobStore | None = None,
    ) -> None:
        if settings is not None and not isinstance(settings, JobSettings):
            raise InvalidInputError(
                "expected JobSettings (pass a job store as store=)", field="settings"
            )
        self.flow = flow
        self.store = store if store is not None else flow.storage.jobs
        self.settings = settings or JobSettings()
        self.overdue = OverdueCheck(flow, self.store, self.settings)

    def jobs(self) -> list[Job]:
        """The enabled jobs, ready to register with any :class:`Scheduler`."""
        bodies: dict[str, tuple[JobFunc, str]] = {
            "due_actions": (self.run_due_actions, "Run the scheduled actions that are due"),
            "overdue_check": (self.check_overdue, "Notify of and escalate overdue activities"),
            "upcoming_reminders": (self.remind_upcoming, "Remind of activities due soon"),
            "stale_opportunities": (self.detect_stale, "Feed stale opportunities to the rules"),
            "cleanup": (self.clean_up, "Purge old completed activities"),
            "daily_summary": (self.send_daily_summaries, "Send each user's daily summary"),
        }
        jobs = []
        for name in self.NAMES:
            schedule: JobSchedule = getattr(self.settings, name)
            if not schedule.enabled:
                continue
            func, description = bodies[name]
            jobs.append(
                Job(
                    name,
                    schedule.cron,
                    func,
                    timezone=self.settings.zone,
                    grace=schedule.grace,
                    lease=schedule.lease,
                    description=description,
                )
            )
        return jobs

    def register(self, scheduler: Scheduler) -> list[Job]:
        """Add the enabled jobs to ``scheduler``; returns them."""
        jobs = self.jobs()
        for job in jobs:
            scheduler.add_job(job)
        return jobs

    def runner(
        self,
        *,
        worker_id: str | None = None,
        on_run: Callable[[JobRun], object] | None = None,
        max_sleep: timedelta = timedelta(seconds=60),
    ) -> JobRunner:
        """A :class:`JobRunner` on the flow's clock with these jobs registered (not started)."""
        runner = JobRunner(
            self.store,
            clock=self.flow.clock,
            worker_id=worker_id,
            on_run=on_run,
            max_sleep=max_sleep,
        )
        self.register(runner)
        return runner

    # -- the jobs

    def run_due_actions(self, ctx: JobContext) -> dict[str, int]:
        """Claim and run due actions in batches until a batch comes back short (or the batch
        limit is reached; the next minute goes on)."""
        totals = {"batches": 0, "claimed": 0, "succeeded": 0, "failed": 0, "parked": 0}
        size = self.settings.due_actions_batch
        for _ in range(self.settings.due_actions_max_batches):
            report = self.flow.run_due(limit=size, now=ctx.now)
            totals["batches"] += 1
            totals["claimed"] += report.claimed
            totals["succeeded"] += report.succeeded
            totals["failed"] += report.failed
            totals["parked"] += report.parked
            if report.claimed < size:
                break
        return totals

    def check_overdue(self, ctx: JobContext) -> dict[str, int]:
        """One ``overdue_activities`` notification per assignee, then each open activity past
        a threshold of ``overdue_thresholds`` escalated once as ``activity.overdue`` into the
        rules and to the event sink (see :mod:`leadflow.runtime.escalation`)."""
        return self.overdue.run(ctx)

    def remind_upcoming(self, ctx: JobContext) -> dict[str, int]:
        """Remind each assignee of their activities due within ``reminder_lead`` (30 minutes:
        the seed's "30 minutes before due"), strictly before their due time.

        Each (activity, due date) is marked in the job store before its reminder goes out, so
        overlapping windows, restarts and other instances never remind it twice; a changed
        due date is a new reminder. If sending fails the marks are removed and the next run
        tries again; a crash between marking and sending loses that reminder (at most once).
        """
        window, limit = self.settings.reminder_lead, self.settings.upcoming_limit
        # Due in (now, now + lead]: reminded ahead of time, never at the due time itself. The
        # bounds are applied here: a store keeping milliseconds (BSON) rounds a query's bounds.
        upcoming = [
            activity
            for activity in self.flow.storage.activities.upcoming(
                ctx.now, window + _MARGIN, limit=limit
            )
            if activity.due_date is not None and ctx.now < activity.due_date <= ctx.now + window
        ]
        fresh: list[tuple[Activity, str]] = []
        already = 0
        for activity in upcoming:
            if activity.due_date is None:
                continue
            mark = f"reminder:{activity.activity_id}:{activity.due_date.isoformat()}"
            if self.store.mark(mark, now=ctx.now, expires_at=activity.due_date + _REMINDER_KEEP):
                fresh.append((activity, mark))
            else:
                already += 1
        marks = {activity.activity_id: mark for activity, mark in fresh}
        sent = reminded = failed = 0
        for assignee, group in by_assignee(a for a, _ in fresh).items():
            key = f"upcoming_activities:{ctx.slot}:{assignee or '-'}"
            payload = {
                "key": key,
                "recipients": [assignee] if assignee else [],
                "asOf": ctx.now,
                "count": len(group),
                "activities": [activity_item(a) for a in group],
            }
            if self._send("upcoming_activities", key, assignee, payload, ctx):
                sent += 1
                reminded += len(group)
            else:
                failed += len(group)
                for activity in group:
                    self.store.unmark(marks[activity.activity_id])
        return {
            "upcoming": len(upcoming),
            "reminded": reminded,
            "already_reminded": already,
            "notifications": sent,
            "failed": failed,
        }

    def detect_stale(self, ctx: JobContext) -> dict[str, int]:
        """Feed ``opportunity.stale_detected`` into the rules for each opportunity without
        activity for ``stale_after``, once per stale period.

        The job walks the stale opportunities in (last activity time, opportunity id) order
        from a cursor it keeps in the job store (value ``cursor:<job name>``): each run sees
        those that became stale since the previous run, up to ``stale_limit`` of them (the rest
        the next run), at a cost that follows them, not every opportunity ever stale. A new
        activity moves an opportunity past the cursor: a new period, detected when it is stale
        again. The cursor moves by compare-and-set at the end of a run: a run that overran its
        lease while another instance took over writes nothing. (An opportunity whose last time
        moves back behind the cursor, when its latest activity is deleted or one is recorded
        with a date older than ``stale_after``, is not detected until its next activity.)

        The event id derives from the opportunity and its last activity time, so feeding it
        again is a no-op for the rules; a mark in the job store skips it altogether and keeps
        the event-sink copy to one. The rules are fed before the mark is set and the cursor
        moves last: a crash in between only makes the next run feed the same events (which the
        flow recognises) again. An opportunity whose event fails is retried at the next run
        (up to 100 kept with the cursor; past that, the cursor stops before the next failure).
        """
        key = f"cursor:{ctx.job.name}"
        stored = self.store.get_value(key)
        after, retry = _cursor(stored)
        activities = self.flow.storage.activities
        counts = dict.fromkeys(("detected", "already_detected", "rules_matched", "failed"), 0)
        failed: list[tuple[datetime, str]] = []
        if retry:
            current = activities.last_activity_times([o for _, o in retry])
            for last, opportunity_id in retry:
                if current.get(opportunity_id) == last and not self._feed(
                    ctx, last, opportunity_id, counts
                ):
                    failed.append((last, opportunity_id))
        limit = self.settings.stale_limit
        stale = activities.stale_opportunities(
            ctx.now - self.settings.stale_after, after=after, limit=limit
        )
        position = after
        for last, opportunity_id in stale:
            if not self._feed(ctx, last, opportunity_id, counts):
                if len(failed) >= _RETRY_KEEP:
                    break
                failed.append((last, opportunity_id))
            position = (last, opportunity_id)
        value = _cursor_value(position, failed)
        if value != (stored or _cursor_value(None, [])) and not self.store.set_value(
            key, value, expected=stored
        ):
            log.warning(
                "the stale-opportunity cursor moved during this run (another instance took the "
                "slot over); this run's position is dropped",
                extra={"job": ctx.job.name, "slot": ctx.slot},
            )
        return {
            "stale": len(stale) + len(retry),
            **counts,
            "truncated": int(len(stale) == limit),
        }

    def _feed(
        self, ctx: JobContext, last: datetime, opportunity_id: str, counts: dict[str, int]
    ) -> bool:
        """One stale opportunity into the rules, unless its mark says it was; False if the
        flow failed to handle it (logged)."""
        mark = f"stale:{opportunity_id}:{last.isoformat()}"
        if self.store.is_marked(mark, now=ctx.now):
            counts["already_detected"] += 1
            return True
        event = stale_event(
            opportunity_id,
            last,
            ctx.now,
            stale_after=self.settings.stale_after,
            actor=self.flow.settings.system_user,
        )
        payload = event.payload
        try:
            result = self.flow.handle(event)
        except Exception:
            log.exception(
                "stale opportunity %s could not be handled",
                opportunity_id,
                extra={"job": ctx.job.name, "slot": ctx.slot, "opportunity_id": opportunity_id},
            )
            counts["failed"] += 1
            return False
        self.store.mark(mark, now=ctx.now, expires_at=ctx.now + self.settings.retention)
        self.flow.emit("opportunity.stale_detected", {"eventId": event.id, **payload})
        counts["detected"] += 1
        counts["rules_matched"] += bool(result.matched_rules)
        return True

    def clean_up(self, ctx: JobContext) -> dict[str, int]:
        """Purge completed activities completed more than ``retention`` ago (open ones always
        stay) and forget expired job records."""
        purged = self.flow.storage.activities.purge_completed(ctx.now - self.settings.retention)
        actions = self.flow.purge_finished(ctx.now)
        forgotten = self.store.purge_expired(ctx.now)
        return {"purged": purged, "actions_purged": actions, "job_records_purged": forgotten}

    def send_daily_summaries(self, ctx: JobContext) -> dict[str, int]:
        """One ``daily_summary`` per user with anything to report: open activities not yet
        overdue (``pending``), ``overdue`` ones, and those completed yesterday, where
        "yesterday" is the local calendar day before the slot's, in the settings' time zone."""
        zone = ctx.job.zone
        today = ctx.local_time.date()
        midnight = clock_time(0)
        day_start = datetime.combine(today, midnight, tzinfo=zone)
        yesterday_start = datetime.combine(today - timedelta(days=1), midnight, tzinfo=zone)
        now, activities = ctx.now, self.flow.storage.activities

        def per_user(filter: ActivityFilter) -> dict[str, int]:
            return activities.statistics(filter, as_of=now).by_assignee

        pending = per_user(ActivityFilter(state=ActivityState.PENDING, as_of=now))
        overdue = per_user(ActivityFilter(state=ActivityState.OVERDUE, as_of=now))
        completed = per_user(ActivityFilter(completed_from=yesterday_start, completed_to=day_start))
        users = sorted(set(pending) | set(overdue) | set(completed))
        sent = failed = 0
        for user in users:
            key = f"daily_summary:{today.isoformat()}:{user}"
            payload = {
                "key": key,
                "recipients": [user],
                "date": today.isoformat(),
                "timezone": zone.key,
                "asOf": now,
                "pending": pending.get(user, 0),
                "overdue": overdue.get(user, 0),
                "completedYesterday": completed.get(user, 0),
            }
            if self._send("daily_summary", key, user, payload, ctx):
                sent += 1
            else:
                failed += 1
        return {"users": len(users), "notifications": sent, "failed": failed}

    def _send(
        self,
        template: str,
        key: str,
        recipient: str | None,
        payload: dict[str, Any],
        ctx: JobContext,
    ) -> bool:
        """Notifier (when enabled), then the event sink. False if the notifier raised."""
        return send_notice(
            self.flow, template, key, recipient, payload, ctx, notify=self.settings.notify
        )
