"""The scheduler core on a controlled clock: cron in a time zone across daylight-saving changes,
slots run once across runners sharing a store (in memory and on mongomock), catch-up within
grace, failures, crashed lease holders, and the background thread. The job stores themselves
are held to JobStoreContract (tests/test_contracts_*.py)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow import DuplicateError, InvalidInputError, InvalidStateError, ManualClock
from leadflow.errors import NotFoundError
from leadflow.ports import JobStore
from leadflow.records import SlotState
from leadflow.scheduling import Job, JobContext, JobRun, JobRunner, JobStatus, Scheduler
from leadflow.stores.memory import InMemoryJobStore
from leadflow.stores.mongo import MongoJobStore

from .scheduling_support import JOB_BACKENDS, NY, drive, job_store, noop_job, ny, recorder, utc
from .suite import examples


@pytest.fixture(params=JOB_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def local(times: list[datetime]) -> list[str]:
    return [t.astimezone(NY).strftime("%m-%d %H:%M %Z") for t in times]


# ------------------------------------------------------------------ jobs and time zones


def test_a_job_reads_its_cron_in_its_time_zone_across_spring_forward() -> None:
    summary = noop_job("summary", "0 8 * * *", timezone="America/New_York")
    fires = summary.fire_times(ny(2026, 3, 6), ny(2026, 3, 10))
    assert fires == [
        utc(2026, 3, 6, 13),
        utc(2026, 3, 7, 13),
        utc(2026, 3, 8, 12),
        utc(2026, 3, 9, 12),
    ]
    assert [summary.slot_key(t) for t in fires] == [
        "2026-03-06T08:00",
        "2026-03-07T08:00",
        "2026-03-08T08:00",
        "2026-03-09T08:00",
    ]


def test_a_skipped_local_time_fires_at_the_end_of_the_gap() -> None:
    cleanup = noop_job("cleanup", "0 2 * * *", timezone="America/New_York")
    late = noop_job("late", "30 2 * * *", timezone="America/New_York")
    assert local(cleanup.fire_times(ny(2026, 3, 7), ny(2026, 3, 10))) == [
        "03-07 02:00 EST",
        "03-08 03:00 EDT",
        "03-09 02:00 EDT",
    ]
    assert local(late.fire_times(ny(2026, 3, 8), ny(2026, 3, 9))) == ["03-08 03:00 EDT"]
    assert late.slot_key(utc(2026, 3, 8, 7)) == "2026-03-08T03:00"


def test_a_repeated_local_time_is_one_slot_unless_the_hour_is_a_wildcard() -> None:
    fixed = noop_job("fixed", "30 1 * * *", timezone="America/New_York")
    hourly = noop_job("hourly", "0 * * * *", timezone="America/New_York")
    assert not fixed.follows_elapsed_time and hourly.follows_elapsed_time
    # croniter fires the repeated 01:30 twice; both are the same slot.
    first, second = fixed.fire_times(ny(2026, 11, 1), ny(2026, 11, 1, 12))
    assert (first, second) == (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30))
    assert fixed.slot_key(first) == fixed.slot_key(second) == "2026-11-01T01:30"
    # The hourly job's two 01:00s are an hour apart in real time: two slots.
    one_edt, one_est = utc(2026, 11, 1, 5), utc(2026, 11, 1, 6)
    assert hourly.slot_key(one_edt) == "2026-11-01T01:00-04:00"
    assert hourly.slot_key(one_est) == "2026-11-01T01:00-05:00"


def test_the_runner_runs_a_repeated_fixed_time_once_and_every_real_hour_of_a_long_day() -> None:
    clock = ManualClock(ny(2026, 10, 31, 0))
    calls: list[tuple[str, datetime, datetime]] = []
    runner = JobRunner(InMemoryJobStore(), clock=clock)
    for name, cron in [("fixed", "30 1 * * *"), ("hourly", "0 * * * *"), ("summary", "0 8 * * *")]:
        runner.add_job(Job(name, cron, recorder(calls), timezone="America/New_York"))
    drive(clock, [runner], until=ny(2026, 11, 3, 0))
    times = {name: [at for job, at, _ in calls if job == name] for name in ("fixed", "hourly")}
    assert local(times["fixed"]) == ["10-31 01:30 EDT", "11-01 01:30 EDT", "11-02 01:30 EST"]
    on_the_long_day = [t for t in times["hourly"] if t.astimezone(NY).date() == date(2026, 11, 1)]
    assert len(on_the_long_day) == 25
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(on_the_long_day))
    summaries = [at for job, at, _ in calls if job == "summary"]
    assert summaries == [utc(2026, 10, 31, 12), utc(2026, 11, 1, 13), utc(2026, 11, 2, 13)]


_TRANSITIONS = [utc(2026, 3, 8, 7), utc(2026, 11, 1, 6)]


@settings(max_examples=examples(150), deadline=None)
@given(
    cron=st.sampled_from(["* * * * *", "0 * * * *", "*/30 * * * *", "30 1 * * *", "0 2 * * *"]),
    transition=st.sampled_from(_TRANSITIONS),
    offset=st.integers(min_value=-3 * 3600, max_value=3 * 3600),
)
def test_latest_and_next_bracket_any_instant_near_a_transition(
    cron: str, transition: datetime, offset: int
) -> None:
    job = noop_job("p", cron, timezone="America/New_York")
    now = transition + timedelta(seconds=offset)
    latest = job.latest_at_or_before(now)
    following = job.next_after(latest)
    assert latest <= now < following
    assert job.next_after(now) == following


def _fresh(job: Job, when: datetime, *, previous: bool) -> datetime:
    """A lookup as a fresh croniter per call does it (the job keeps its parsed one)."""
    zone = ZoneInfo(str(job.timezone))
    if previous:
        local = (when + timedelta(microseconds=1)).astimezone(zone)
        found: datetime = croniter(job.cron, local).get_prev(datetime)
    else:
        found = croniter(job.cron, when.astimezone(zone)).get_next(datetime)
    return found.astimezone(UTC)


@settings(max_examples=examples(200), deadline=None)
@given(
    cron=st.sampled_from(
        [
            "0 8 * * *",
            "*/15 * * * *",
            "30 1 * * *",
            "30 2 * * *",
            "0 * * * *",
            "5 4 * * 1-5",
            "0 9 1 * *",
            "0 0 29 2 *",
            "*/7 3 * * *",
        ]
    ),
    timezone=st.sampled_from(
        [
            "UTC",
            "America/New_York",
            "Europe/Berlin",
            "Australia/Sydney",
            "America/Santiago",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
        ]
    ),
    instants=st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31)),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_a_job_keeps_its_parsed_cron_and_answers_as_a_fresh_parse_would(
    cron: str, timezone: str, instants: list[tuple[datetime, bool]]
) -> None:
    job = noop_job("p", cron, timezone=timezone)
    for naive, previous in instants:  # lookups of either kind, in any order, on one job
        when = naive.replace(tzinfo=UTC)
        found = job.latest_at_or_before(when) if previous else job.next_after(when)
        assert found == _fresh(job, when, previous=previous)


def test_threads_sharing_a_job_get_the_answers_of_a_fresh_parse() -> None:
    job = noop_job("p", "*/15 * * * *", timezone="Europe/Berlin")
    start = utc(2026, 3, 29, 0)
    instants = [start + timedelta(minutes=7 * n, seconds=n) for n in range(400)]
    expected = [_fresh(job, when, previous=n % 2 == 0) for n, when in enumerate(instants)]
    wrong: list[int] = []

    def look(offset: int) -> None:
        for n in range(offset, len(instants), 2):
            when = instants[n]
            found = job.latest_at_or_before(when) if n % 2 == 0 else job.next_after(when)
            if found != expected[n]:
                wrong.append(n)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch inside a lookup, not only between them
    try:
        for _ in range(3):
            threads = [threading.Thread(target=look, args=(k % 2,)) for k in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert wrong == []


@pytest.mark.parametrize(
    ("cron", "timezone", "field"),
    [
        ("0 8 * *", "UTC", "cron"),
        ("0 0 8 * * *", "UTC", "cron"),
        ("61 * * * *", "UTC", "cron"),
        ("0 8 * * *", "Mars/Olympus", "timezone"),
        ("0 8 * * *", "", "timezone"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(cron: str, timezone: str, field: str) -> None:
    with pytest.raises(InvalidInputError) as error:
        noop_job("job", cron, timezone=timezone)
    assert error.value.field == field


def test_macros_and_names_are_checked() -> None:
    assert noop_job("daily", "@daily").cron == "0 0 * * *"
    assert noop_job("hourly", " 0   *  * * * ").cron == "0 * * * *"
    with pytest.raises(InvalidInputError, match="job name"):
        noop_job("Bad Name", "@daily")
    with pytest.raises(InvalidInputError, match="grace"):
        noop_job("job", "@daily", grace=timedelta(seconds=-1))


# ------------------------------------------------------------------ the runner, one process


def test_run_pending_runs_a_due_slot_once_and_reports_when_to_look_again() -> None:
    clock = ManualClock(utc(2026, 3, 2, 10, 0))
    calls: list[tuple[str, datetime, datetime]] = []
    runner = JobRunner(InMemoryJobStore(), clock=clock, worker_id="w1")
    runner.add_job(Job("hourly", "0 * * * *", recorder(calls)))
    assert isinstance(runner, Scheduler)
    assert runner.next_run_time() == clock.now()  # never looked at: now
    [run] = runner.run_pending()
    assert (run.job, run.slot, run.status, run.counts) == (
        "hourly",
        "2026-03-02T10:00+00:00",
        JobStatus.SUCCEEDED,
        {"calls": 1},
    )
    assert run.ok and run.worker_id == "w1" and run.lateness == timedelta(0)
    assert runner.run_pending(utc(2026, 3, 2, 10, 30)) == []
    assert runner.next_run_time() == utc(2026, 3, 2, 11)
    assert runner.last_runs == {"hourly": run}
    record = runner.store.get_slot("hourly", run.slot)
    assert record is not None and record.state is SlotState.SUCCEEDED
    assert record.counts == {"calls": 1}


def test_a_runner_down_for_a_day_catches_up_each_job_once_within_its_grace() -> None:
    clock = ManualClock(ny(2026, 3, 9, 0))
    calls: list[tuple[str, datetime, datetime]] = []
    runner = JobRunner(InMemoryJobStore(), clock=clock)
    body = recorder(calls)
    for name, cron, grace in [
        ("minutely", "* * * * *", timedelta(minutes=10)),
        ("hourly", "0 * * * *", timedelta(minutes=30)),
        ("cleanup", "0 2 * * *", timedelta(hours=12)),
        ("summary", "0 8 * * *", timedelta(hours=2)),
        ("stale", "0 */6 * * *", timedelta(hours=3)),
    ]:
        runner.add_job(Job(name, cron, body, timezone="America/New_York", grace=grace))
    drive(clock, [runner], until=ny(2026, 3, 9, 12))
    before = Counter(job for job, _, _ in calls)
    assert before == {"minutely": 720, "hourly": 12, "cleanup": 1, "summary": 1, "stale": 2}
    calls.clear()

    # Down from noon until 09:10 the next day: nothing is replayed, the latest slot of each job
    # runs once if it is within its grace; the 06:00 stale check is 3h10m late (grace 3h).
    clock.set(ny(2026, 3, 10, 9, 10))
    runs = runner.run_pending()
    assert [(r.job, r.scheduled_for.astimezone(NY).strftime("%d %H:%M")) for r in runs] == [
        ("minutely", "10 09:10"),
        ("hourly", "10 09:00"),
        ("cleanup", "10 02:00"),
        ("summary", "10 08:00"),
    ]
    assert runs[3].lateness == timedelta(hours=1, minutes=10)
    assert runner.run_pending() == []
    drive(clock, [runner], until=ny(2026, 3, 11, 9))
    assert Counter(job for job, _, _ in calls)["summary"] == 2  # today's catch-up, then 11th 08:00


def test_a_slot_missed_beyond_its_grace_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(ny(2026, 3, 10, 7, 59))
    calls: list[tuple[str, datetime, datetime]] = []
    runner = JobRunner(InMemoryJobStore(), clock=clock)
    runner.add_job(
        Job("summary", "0 8 * * *", recorder(calls), timezone=NY, grace=timedelta(hours=2))
    )
    assert runner.run_pending() == []  # yesterday's slot: long gone at start-up, quietly
    with caplog.at_level(logging.WARNING, logger="leadflow.scheduling"):
        assert runner.run_pending(ny(2026, 3, 10, 10, 1)) == []
    [record] = caplog.records
    assert "beyond its grace" in record.getMessage()
    assert record.__dict__["job"] == "summary" and record.__dict__["slot"] == "2026-03-10T08:00"
    assert calls == []
    assert runner.next_run_time() == ny(2026, 3, 11, 8)


def test_a_failing_job_is_logged_and_recorded_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(utc(2026, 3, 2, 10))
    calls: list[tuple[str, datetime, datetime]] = []
    reported: list[JobRun] = []

    def broken(ctx: JobContext) -> None:
        raise RuntimeError("database on fire")

    runner = JobRunner(InMemoryJobStore(), clock=clock, on_run=reported.append)
    runner.add_job(Job("broken", "0 * * * *", broken))
    runner.add_job(Job("fine", "0 * * * *", recorder(calls)))
    with caplog.at_level(logging.INFO, logger="leadflow.scheduling"):
        failed, fine = runner.run_pending()
    assert (failed.status, failed.error, failed.counts) == (
        JobStatus.FAILED,
        "RuntimeError: database on fire",
        {},
    )
    assert fine.ok and len(calls) == 1
    assert reported == [failed, fine]
    by_job = {r.__dict__["job"]: r for r in caplog.records if "job_status" in r.__dict__}
    assert by_job["broken"].levelno == logging.ERROR and by_job["broken"].exc_info is not None
    assert by_job["fine"].__dict__["counts"] == {"calls": 1}
    assert by_job["fine"].__dict__["duration_ms"] >= 0
    record = runner.store.get_slot("broken", failed.slot)
    assert record is not None and record.state is SlotState.FAILED
    assert record.error == "RuntimeError: database on fire"
    # A failed slot is finished: not retried; the next slot runs normally.
    assert runner.run_pending(utc(2026, 3, 2, 10, 30)) == []
    assert [r.job for r in runner.run_pending(utc(2026, 3, 2, 11))] == ["broken", "fine"]


def test_a_failing_on_run_hook_does_not_break_the_run() -> None:
    def hook(run: JobRun) -> None:
        raise ValueError("metrics backend down")

    runner = JobRunner(InMemoryJobStore(), clock=ManualClock(utc(2026, 3, 2, 10)), on_run=hook)
    runner.add_job(noop_job("hourly", "0 * * * *"))
    [run] = runner.run_pending()
    assert run.ok


def test_run_job_is_what_a_host_scheduler_calls() -> None:
    clock = ManualClock(utc(2026, 3, 2, 8, 0, 5))
    calls: list[tuple[str, datetime, datetime]] = []
    runner = JobRunner(InMemoryJobStore(), clock=clock)
    runner.add_job(Job("summary", "0 8 * * *", recorder(calls), grace=timedelta(hours=1)))
    run = runner.run_job("summary")
    assert run is not None and run.scheduled_for == utc(2026, 3, 2, 8)
    assert runner.run_job("summary") is None  # the slot is done
    assert runner.run_job("summary", utc(2026, 3, 2, 9, 30)) is None  # beyond grace
    assert len(calls) == 1
    with pytest.raises(NotFoundError):
        runner.run_job("nope")
    with pytest.raises(DuplicateError):
        runner.add_job(noop_job("summary", "@daily"))


# ------------------------------------------------------------------ many instances


def test_two_runners_sharing_a_store_run_each_slot_once(backend: str) -> None:
    start = ny(2026, 3, 7, 22)
    clock = ManualClock(start)
    store = job_store(backend)
    calls: list[tuple[str, datetime, datetime]] = []
    runners = [JobRunner(store, clock=clock, worker_id=f"app-{i}") for i in (1, 2)]
    jobs = [
        Job("every5", "*/5 * * * *", recorder(calls), timezone=NY),
        Job("hourly", "0 * * * *", recorder(calls), timezone=NY),
        Job("cleanup", "0 2 * * *", recorder(calls), timezone=NY),
        Job("summary", "0 8 * * *", recorder(calls), timezone=NY),
    ]
    for runner in runners:
        runner.add_jobs(jobs)
    end = ny(2026, 3, 8, 10)
    runs = drive(clock, runners, until=end)
    # Every scheduled time ran exactly once in total, through the spring-forward night.
    expected = sorted((job.name, t) for job in jobs for t in job.fire_times(start, end))
    assert sorted((name, at) for name, at, _ in calls) == expected
    assert sorted((r.job, r.scheduled_for) for r in runs) == expected
    assert local([t for name, t in expected if name == "cleanup"]) == ["03-08 03:00 EDT"]
    assert {r.worker_id for r in runs} == {"app-1"}  # it always looks first here


def test_two_runners_alternating_first_still_run_each_slot_once(backend: str) -> None:
    clock = ManualClock(utc(2026, 3, 2, 0))
    store = job_store(backend)
    calls: list[tuple[str, datetime, datetime]] = []
    first, second = (JobRunner(store, clock=clock, worker_id=f"app-{i}") for i in (1, 2))
    for runner in (first, second):
        runner.add_job(Job("every10", "*/10 * * * *", recorder(calls)))
    runs: list[JobRun] = []
    for step in range(36):
        clock.set(utc(2026, 3, 2, 0) + timedelta(minutes=10 * step))
        order = (first, second) if step % 2 else (second, first)
        for runner in order:
            runs.extend(runner.run_pending())
    assert len(calls) == len(runs) == 36
    assert Counter(r.worker_id for r in runs) == {"app-1": 18, "app-2": 18}


def test_concurrent_claims_of_one_slot_let_exactly_one_run() -> None:
    store = InMemoryJobStore()
    clock = ManualClock(utc(2026, 3, 2, 9))
    calls: list[tuple[str, datetime, datetime]] = []
    runners = [JobRunner(store, clock=clock, worker_id=f"w{i}") for i in range(8)]
    for runner in runners:
        runner.add_job(Job("hourly", "0 * * * *", recorder(calls)))
    barrier = threading.Barrier(len(runners))
    results: list[JobRun | None] = []
    lock = threading.Lock()

    def race(runner: JobRunner) -> None:
        barrier.wait()
        run = runner.run_job("hourly")
        with lock:
            results.append(run)

    threads = [threading.Thread(target=race, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and sum(r is not None for r in results) == 1


def test_a_crashed_holders_slot_is_taken_over_when_its_lease_expires_within_grace(
    backend: str,
) -> None:
    store = job_store(backend)
    fire = utc(2026, 3, 2, 8)
    clock = ManualClock(fire)
    calls: list[tuple[str, datetime, datetime]] = []
    job = Job(
        "summary",
        "0 8 * * *",
        recorder(calls),
        grace=timedelta(hours=1),
        lease=timedelta(minutes=15),
    )
    # Another instance claimed the slot and died without finishing.
    crashed = store.claim_slot(
        "summary",
        job.slot_key(fire),
        worker="crashed",
        now=fire,
        lease=job.lease,
        expires_at=fire + timedelta(days=2),
    )
    assert crashed.acquired
    runner = JobRunner(store, clock=clock, worker_id="survivor")
    runner.add_job(job)
    clock.set(fire + timedelta(minutes=1))
    assert runner.run_pending() == []
    assert runner.next_run_time() == fire + timedelta(minutes=15)  # the lease's end
    clock.set(runner.next_run_time() or fire)
    [run] = runner.run_pending()
    assert (run.slot, run.attempt, run.worker_id) == ("2026-03-02T08:00", 2, "survivor")
    record = store.get_slot("summary", run.slot)
    assert record is not None and record.state is SlotState.SUCCEEDED and record.attempts == 2
    # The crashed worker's late finish does not overwrite the outcome.
    assert not store.finish_slot(
        "summary",
        run.slot,
        token=crashed.record.token,
        now=clock.now(),
        state=SlotState.FAILED,
        counts={},
    )


def test_a_lease_ending_after_the_grace_is_not_waited_for_and_the_next_slot_runs() -> None:
    store = InMemoryJobStore()
    fire = utc(2026, 3, 2, 8)
    calls: list[tuple[str, datetime, datetime]] = []
    job = Job(
        "summary",
        "0 8 * * *",
        recorder(calls),
        grace=timedelta(minutes=10),
        lease=timedelta(minutes=30),
    )
    store.claim_slot(
        "summary",
        job.slot_key(fire),
        worker="crashed",
        now=fire,
        lease=job.lease,
        expires_at=fire + timedelta(days=2),
    )
    clock = ManualClock(fire)
    runner = JobRunner(store, clock=clock)
    runner.add_job(job)
    assert runner.run_pending() == []
    assert runner.next_run_time() == utc(2026, 3, 3, 8)
    drive(clock, [runner], until=utc(2026, 3, 3, 9))
    assert [at for _, at, _ in calls] == [utc(2026, 3, 3, 8)]


def test_a_run_that_outlives_its_lease_loses_the_slot_to_another_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemoryJobStore()
    clock = ManualClock(utc(2026, 3, 2, 8))
    other = JobRunner(store, clock=clock, worker_id="other")
    calls: list[tuple[str, datetime, datetime]] = []

    def slow(ctx: JobContext) -> dict[str, int]:
        clock.advance(minutes=20)  # longer than the lease: "other" takes over meanwhile
        assert other.run_job("cleanup") is not None
        return {"done": 1}

    other.add_job(
        Job(
            "cleanup",
            "0 8 * * *",
            recorder(calls),
            lease=timedelta(minutes=15),
            grace=timedelta(hours=1),
        )
    )
    slow_runner = JobRunner(store, clock=clock, worker_id="slow")
    slow_runner.add_job(
        Job("cleanup", "0 8 * * *", slow, lease=timedelta(minutes=15), grace=timedelta(hours=1))
    )
    with caplog.at_level(logging.WARNING, logger="leadflow.scheduling"):
        [run] = slow_runner.run_pending()
    assert run.ok and len(calls) == 1
    assert any("outlived its lease" in r.getMessage() for r in caplog.records)
    record = store.get_slot("cleanup", run.slot)
    assert record is not None and record.owner == "other" and record.attempts == 2


# ------------------------------------------------------------------ the background thread


def test_the_thread_runs_due_jobs_sleeps_until_the_next_slot_and_stops_cleanly() -> None:
    clock = ManualClock(utc(2026, 3, 2, 9, 59, 59))
    ran = threading.Event()
    seen: list[JobRun] = []

    def on_run(run: JobRun) -> None:
        seen.append(run)
        ran.set()

    runner = JobRunner(
        InMemoryJobStore(), clock=clock, on_run=on_run, max_sleep=timedelta(seconds=30)
    )
    runner.add_job(noop_job("hourly", "0 * * * *", grace=timedelta(minutes=5)))
    checks = 0
    original = runner.run_pending

    def counting(now: datetime | None = None) -> list[JobRun]:
        nonlocal checks
        checks += 1
        return original(now)

    runner.run_pending = counting  # type: ignore[method-assign]
    runner.start()
    try:
        assert runner.running
        with pytest.raises(InvalidStateError):
            runner.start()
        time.sleep(0.2)
        assert checks == 1 and seen == []  # asleep (the clock says one second to go), not polling
        clock.set(utc(2026, 3, 2, 10))
        runner.wake()
        assert ran.wait(5)
        assert [r.slot for r in seen] == ["2026-03-02T10:00+00:00"]
    finally:
        # The thread sleeps up to 30 s (max_sleep); joining within 5 s shows stop() wakes it.
        assert runner.stop(timeout=5)
    assert not runner.running
    assert runner.stop()  # stopping a stopped runner is fine


def test_the_runner_works_as_a_context_manager_and_can_restart() -> None:
    clock = ManualClock(utc(2026, 3, 2, 10))
    ran = threading.Event()
    runner = JobRunner(InMemoryJobStore(), clock=clock, on_run=lambda run: ran.set())
    runner.add_job(noop_job("hourly", "0 * * * *"))
    with runner:
        assert ran.wait(5)
    assert not runner.running
    ran.clear()
    clock.set(utc(2026, 3, 2, 11))
    with runner:
        assert ran.wait(5)


# ------------------------------------------------------------------ the Mongo job store
# What every job store promises is JobStoreContract (leadflow.testing.contracts), run on both
# backends by tests/test_contracts_memory.py and tests/test_contracts_mongo.py.


def test_mongo_job_store_creates_ttl_indexes() -> None:
    import mongomock_ng

    database = mongomock_ng.MongoClient(tz_aware=True)["ttl"]
    store = MongoJobStore(database, slots_collection="slots", marks_collection="marks")
    assert isinstance(store, JobStore)
    store.ensure_indexes()
    for name in ("slots", "marks"):
        info = database[name].index_information()
        assert info["expiresAt_ttl"]["expireAfterSeconds"] == 0
    assert "job_claimedAt" in database["slots"].index_information()


def test_a_clock_giving_naive_times_is_refused_before_any_slot_is_computed() -> None:
    class NaiveClock:
        def now(self) -> datetime:
            return datetime(2026, 3, 2, 9, 0)

    runner = JobRunner(InMemoryJobStore(), clock=NaiveClock())
    runner.add_job(noop_job("tick", "* * * * *"))
    with pytest.raises(InvalidInputError) as caught:
        runner.run_pending()
    assert caught.value.field == "clock.now()"
