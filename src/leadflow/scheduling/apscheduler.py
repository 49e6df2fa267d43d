"""Putting leadflow's jobs on a host's APScheduler 3 scheduler (the ``apscheduler`` extra)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from croniter import croniter

from ..clock import Clock
from ..errors import InvalidInputError
from ..ports import JobStore
from ..ports.periodic import Job, JobRun
from .runner import JobRunner

__all__ = ["APSchedulerAdapter"]

_WEEKDAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _apscheduler_trigger(job: Job) -> Any:
    """A CronTrigger equal to the job's cron expression, in the job's time zone.

    APScheduler 3 numbers weekdays from Monday and ANDs day-of-month with day-of-week where
    cron ORs them, so fields are passed expanded (weekdays by name), and expressions it cannot
    express the same way are refused.
    """
    from apscheduler.triggers.cron import CronTrigger

    parsed = croniter(job.cron)
    raw = job.cron.split(" ")
    day, weekday = raw[2], raw[4]
    if any(mark in day.upper() for mark in ("L", "W", "?")) or parsed.nth_weekday_of_month:
        raise InvalidInputError(
            f"{job.cron!r}: L, W, ? and # are not supported by the APScheduler adapter",
            field="cron",
        )
    if day != "*" and weekday != "*":
        raise InvalidInputError(
            f"{job.cron!r}: cron runs when day-of-month OR day-of-week matches, APScheduler "
            "when both do; restrict only one of them for the APScheduler adapter",
            field="cron",
        )

    def text(values: list[Any], names: tuple[str, ...] | None = None) -> str:
        if values == ["*"]:
            return "*"
        return ",".join(names[int(v)] if names else str(v) for v in values)

    expanded = parsed.expanded
    return CronTrigger(
        minute=text(expanded[0]),
        hour=text(expanded[1]),
        day=text(expanded[2]),
        month=text(expanded[3]),
        day_of_week=text(expanded[4], _WEEKDAYS),
        timezone=job.zone,
    )


class APSchedulerAdapter:
    """A :class:`Scheduler` that puts leadflow's jobs on a host's APScheduler 3 scheduler.

    Each job becomes an APScheduler job with a ``CronTrigger`` in the job's time zone
    (``coalesce``, ``max_instances=1``, ``misfire_grace_time`` = the job's grace) whose
    function is the slot-leased :meth:`run_job`: APScheduler's job stores are per process, so
    the lease in leadflow's job store is what makes several processes run each slot once. Use
    an in-memory APScheduler job store for these jobs (the default); leadflow's store is the
    persistent part. The host starts and shuts down its scheduler.
    """

    def __init__(
        self,
        scheduler: Any,
        store: JobStore,
        *,
        clock: Clock | None = None,
        worker_id: str | None = None,
        on_run: Callable[[JobRun], object] | None = None,
        id_prefix: str = "leadflow.",
        jobstore: str = "default",
        executor: str = "default",
    ) -> None:
        self.scheduler = scheduler
        self._runner = JobRunner(store, clock=clock, worker_id=worker_id, on_run=on_run)
        self._prefix = id_prefix
        self._jobstore = jobstore
        self._executor = executor

    @property
    def worker_id(self) -> str:
        return self._runner.worker_id

    @property
    def last_runs(self) -> dict[str, JobRun]:
        return self._runner.last_runs

    def job_id(self, name: str) -> str:
        """The APScheduler id of leadflow job ``name``."""
        return f"{self._prefix}{name}"

    def add_job(self, job: Job) -> None:
        trigger = _apscheduler_trigger(job)
        self._runner.add_job(job)
        self.scheduler.add_job(
            self._runner.run_job,
            trigger=trigger,
            args=(job.name,),
            id=self.job_id(job.name),
            name=job.description or job.name,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(1, math.ceil(job.grace.total_seconds())),
            jobstore=self._jobstore,
            executor=self._executor,
        )

    def run_job(self, name: str, now: datetime | None = None) -> JobRun | None:
        """The slot-leased run APScheduler calls (see :meth:`JobRunner.run_job`)."""
        return self._runner.run_job(name, now)
