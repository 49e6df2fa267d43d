"""The APScheduler 3 adapter: jobs registered with CronTriggers in the job's time zone, calling
the slot-leased run, so APScheduler processes and built-in runners share slots."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("apscheduler")

from apscheduler.schedulers.background import BackgroundScheduler

from leadflow import InvalidInputError, LeadFlow, ManualClock
from leadflow.runtime.jobs import JobSettings, LeadflowJobs
from leadflow.scheduling import APSchedulerAdapter, Job, JobRun, JobRunner, Scheduler
from leadflow.stores.memory import InMemoryJobStore

from .scheduling_support import NY, noop_job, ny, recorder, utc


def next_fires(aps_job: Any, after: datetime, count: int) -> list[datetime]:
    times: list[datetime] = []
    previous = None
    now = after
    for _ in range(count):
        fire = aps_job.trigger.get_next_fire_time(previous, now)
        times.append(fire.astimezone(UTC))
        previous = now = fire + timedelta(microseconds=1)
    return times


def test_leadflow_jobs_become_cron_triggered_apscheduler_jobs_in_the_business_zone() -> None:
    scheduler = BackgroundScheduler(timezone="UTC")
    adapter = APSchedulerAdapter(scheduler, InMemoryJobStore())
    assert isinstance(adapter, Scheduler)
    jobs = LeadflowJobs(
        LeadFlow.in_memory(), JobSettings(timezone="America/New_York"), store=InMemoryJobStore()
    )
    jobs.register(adapter)
    ids = sorted(job.id for job in scheduler.get_jobs())
    assert ids == sorted(f"leadflow.{name}" for name in LeadflowJobs.NAMES)
    summary = scheduler.get_job("leadflow.daily_summary")
    assert (summary.coalesce, summary.max_instances, summary.misfire_grace_time) == (
        True,
        1,
        7200,
    )
    assert summary.args == ("daily_summary",)
    # 08:00 New York on both sides of the spring-forward change.
    assert next_fires(summary, ny(2026, 3, 6, 9), 3) == [
        utc(2026, 3, 7, 13),
        utc(2026, 3, 8, 12),
        utc(2026, 3, 9, 12),
    ]
    stale = scheduler.get_job("leadflow.stale_opportunities")
    assert [t.astimezone(NY).hour for t in next_fires(stale, ny(2026, 3, 9, 1), 4)] == [
        6,
        12,
        18,
        0,
    ]


def test_weekday_numbers_mean_what_cron_means() -> None:
    # APScheduler 3 counts weekdays from Monday; cron from Sunday. The adapter translates.
    scheduler = BackgroundScheduler(timezone="UTC")
    adapter = APSchedulerAdapter(scheduler, InMemoryJobStore())
    adapter.add_job(noop_job("weekdays", "0 9 * * 1-5", timezone="America/New_York"))
    adapter.add_job(noop_job("sundays", "0 9 * * 0", timezone="America/New_York"))
    weekdays = next_fires(scheduler.get_job("leadflow.weekdays"), ny(2026, 3, 1), 5)
    assert [t.astimezone(NY).strftime("%a %H:%M") for t in weekdays] == [
        "Mon 09:00",
        "Tue 09:00",
        "Wed 09:00",
        "Thu 09:00",
        "Fri 09:00",
    ]
    [sunday] = next_fires(scheduler.get_job("leadflow.sundays"), ny(2026, 3, 2), 1)
    assert sunday.astimezone(NY).strftime("%a %d") == "Sun 08"


@pytest.mark.parametrize("cron", ["0 8 1 * 1", "0 8 L * *", "0 8 15W * *", "0 8 * * 5#2"])
def test_expressions_apscheduler_would_read_differently_are_refused(cron: str) -> None:
    adapter = APSchedulerAdapter(BackgroundScheduler(timezone="UTC"), InMemoryJobStore())
    with pytest.raises(InvalidInputError) as error:
        adapter.add_job(noop_job("odd", cron))
    assert error.value.field == "cron"


def test_an_apscheduler_process_and_a_built_in_runner_share_each_slot() -> None:
    store = InMemoryJobStore()
    clock = ManualClock(ny(2026, 11, 1, 1, 30))
    calls: list[tuple[str, datetime, datetime]] = []
    job = Job("nightly", "30 1 * * *", recorder(calls), timezone=NY, grace=timedelta(minutes=30))
    scheduler = BackgroundScheduler(timezone="UTC")
    reported: list[JobRun] = []
    adapter = APSchedulerAdapter(scheduler, store, clock=clock, on_run=reported.append)
    adapter.add_job(job)
    runner = JobRunner(store, clock=clock)
    runner.add_job(job)

    aps_job = scheduler.get_job(adapter.job_id("nightly"))
    # APScheduler fires at 01:30 EDT and again at 01:30 EST (the repeated hour).
    first, second = next_fires(aps_job, ny(2026, 11, 1), 2)
    assert (first, second) == (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30))
    clock.set(first)
    run = aps_job.func(*aps_job.args)
    assert isinstance(run, JobRun) and run.slot == "2026-11-01T01:30"
    assert runner.run_pending() == []  # the built-in runner in another process: taken
    clock.set(second)
    assert aps_job.func(*aps_job.args) is None  # same slot: runs once
    assert len(calls) == 1 and reported == [run] and adapter.last_runs == {"nightly": run}


def test_a_started_apscheduler_runs_the_job_through_the_lease() -> None:
    ran = threading.Event()
    seen: list[JobRun] = []

    def on_run(run: JobRun) -> None:
        seen.append(run)
        ran.set()

    scheduler = BackgroundScheduler(timezone="UTC")
    adapter = APSchedulerAdapter(scheduler, InMemoryJobStore(), on_run=on_run)
    adapter.add_job(noop_job("minutely", "* * * * *", grace=timedelta(minutes=5)))
    scheduler.start()
    try:
        scheduler.get_job("leadflow.minutely").modify(next_run_time=datetime.now(UTC))
        scheduler.wakeup()
        assert ran.wait(10)
    finally:
        scheduler.shutdown(wait=True)
    [run] = seen
    assert run.ok and run.job == "minutely"
    assert adapter.run_job("minutely", run.started_at) is None  # that slot is done
