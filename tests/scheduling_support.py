"""Shared pieces of the scheduling tests: job stores on each backend and an honest driver."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from leadflow import ManualClock
from leadflow.ports import JobStore
from leadflow.scheduling import Job, JobContext, JobRun, JobRunner
from leadflow.stores.memory import InMemoryJobStore
from leadflow.stores.mongo import MongoJobStore

NY = ZoneInfo("America/New_York")
JOB_BACKENDS = ["memory", "mongo"]


def ny(*args: int) -> datetime:
    """A New York wall-clock time as an aware datetime (fold 0 for a repeated time)."""
    return datetime(*args, tzinfo=NY)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def job_store(backend: str) -> JobStore:
    if backend == "memory":
        return InMemoryJobStore()
    import mongomock_ng

    store = MongoJobStore(mongomock_ng.MongoClient(tz_aware=True)["leadflow_jobs_test"])
    # The simulated clock is not the server's: no TTL index, expiry by purge_expired.
    store.ensure_indexes(ttl=False)
    return store


def recorder(
    calls: list[tuple[str, datetime, datetime]],
) -> Callable[[JobContext], Mapping[str, int]]:
    """A job body that records (job, scheduled time, start time)."""

    def body(ctx: JobContext) -> Mapping[str, int]:
        calls.append((ctx.job.name, ctx.scheduled_for, ctx.now))
        return {"calls": 1}

    return body


def noop_job(name: str, cron: str, **options: object) -> Job:
    return Job(name, cron, lambda ctx: None, **options)


def drive(clock: ManualClock, runners: Iterable[JobRunner], until: datetime) -> list[JobRun]:
    """Run the runners as their threads would, jumping the clock to the next time any of them
    asks for; the runners alone decide what is due. Stops before ``until``."""
    group = list(runners)
    runs: list[JobRun] = []
    while True:
        for runner in group:
            runs.extend(runner.run_pending())
        wake = min(t for t in (r.next_run_time() for r in group) if t is not None)
        assert wake > clock.now(), "a runner asked to run again without time passing"
        if wake >= until:
            return runs
        clock.set(wake)
