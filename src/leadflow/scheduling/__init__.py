"""Generic cron machinery: jobs, slots leased through a job store, the built-in runner and the
APScheduler adapter. leadflow's own jobs are in :mod:`leadflow.runtime.jobs`."""

from __future__ import annotations

from ..ports import Scheduler
from ..ports.periodic import Job, JobContext, JobFunc, JobRun, JobStatus
from .apscheduler import APSchedulerAdapter
from .runner import JobRunner

__all__ = [
    "APSchedulerAdapter",
    "Job",
    "JobContext",
    "JobFunc",
    "JobRun",
    "JobRunner",
    "JobStatus",
    "Scheduler",
]
