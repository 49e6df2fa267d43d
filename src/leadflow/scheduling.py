"""Periodic jobs: leadflow's background work on cron schedules in the business's time zone, each
scheduled run done once however many app instances run the scheduler.

From the bottom up:

* :class:`Job`: a name, a cron expression read in a time zone, a function, a grace period. One
  scheduled time of a job is a **slot**, named by its local date-time (``2026-03-09T08:00``), so
  a wall-clock time that a daylight-saving change repeats is still one slot.
* a :class:`~leadflow.stores.jobs.JobStore` leases each slot to one worker at a time and
  remembers it finished, so several processes sharing the store run it once.
* :class:`Scheduler` is what jobs are registered with: :class:`JobRunner` (built in:
  :meth:`JobRunner.run_pending` for tests and simulations, a background thread for apps),
  :class:`APSchedulerAdapter` (a host's APScheduler 3), or a host's own scheduler calling
  :meth:`JobRunner.run_job` (Celery beat, Kubernetes CronJobs...).
* :class:`LeadflowJobs`: the seed's six jobs bound to a :class:`~leadflow.LeadFlow`, configured
  by :class:`JobSettings`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol, cast, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .clock import Clock, SystemClock, ensure_utc
from .errors import DuplicateError, InvalidInputError, InvalidStateError, NotFoundError
from .models import Activity, ActivityState, Event
from .ports import Notification
from .stores.base import ActivityFilter
from .stores.jobs import JobStore, SlotClaim, SlotState

if TYPE_CHECKING:
    from .service import LeadFlow

__all__ = [
    "APSchedulerAdapter",
    "Job",
    "JobContext",
    "JobFunc",
    "JobRun",
    "JobRunner",
    "JobSchedule",
    "JobSettings",
    "JobStatus",
    "LeadflowJobs",
    "Scheduler",
    "stale_event_id",
]

log = logging.getLogger("leadflow.scheduling")

_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")
_MACROS: Final = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_SLOT_KEEP: Final = timedelta(days=1)  # how long a slot record outlives its last chance to run
_STORE_RETRY: Final = timedelta(seconds=30)  # look again after the job store failed
_REMINDER_KEEP: Final = timedelta(days=1)  # a reminder mark outlives the due date by this much
_STALE_EVENTS: Final = uuid.UUID("7b1f3c2e-5a60-4f0b-8d9e-57a1e0c0ffee")
_WEEKDAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

JobFunc = Callable[["JobContext"], "Mapping[str, int] | None"]
"""A job's body: gets the slot it runs for, returns counts to report (or None)."""


# --------------------------------------------------------------------------- validation


def _zone(value: object, field: str = "timezone") -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    if isinstance(value, str):
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInputError(
                f"unknown time zone {value!r}: use an IANA name such as 'America/New_York'",
                field=field,
            ) from exc
    raise InvalidInputError("expected an IANA time zone name or a ZoneInfo", field=field)


def _cron(value: object, field: str = "cron") -> str:
    if not isinstance(value, str):
        raise InvalidInputError("expected a cron expression (a string)", field=field)
    text = " ".join(value.split())
    text = _MACROS.get(text.lower(), text)
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise InvalidInputError(
            f"invalid cron expression {value!r}: give five fields, minute hour day-of-month "
            "month day-of-week (e.g. '0 8 * * *'), or @hourly, @daily, @weekly...",
            field=field,
        )
    return text


def _duration(value: object, field: str, *, zero: bool = False) -> timedelta:
    if not isinstance(value, timedelta) or value < timedelta(0) or (not zero and not value):
        kind = "non-negative" if zero else "positive"
        raise InvalidInputError(f"must be a {kind} timedelta", field=field)
    return value


def _count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError("must be a positive integer", field=field)
    return value


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True, slots=True)
class Job:
    """One periodic job.

    ``cron`` (five fields, or ``@hourly``, ``@daily``...) is read in ``timezone``. ``grace`` is
    how late a slot may still start: a slot missed by more (the process was down) is skipped,
    and of several missed slots only the latest is run. ``lease`` bounds one run: past it,
    another instance may take the slot over, so keep it above the longest expected run.

    Daylight saving (croniter's rules): a local time that does not exist runs at the first
    time after the gap (02:30 on the spring-forward day runs at 03:00). A local time that
    happens twice runs once when the hour field is fixed (``30 1 * * *``), because both
    occurrences are the same slot; a job whose hour field is a wildcard (``0 * * * *``,
    ``*/30 * * * *``) follows elapsed time and runs in both occurrences, as classic cron does.
    """

    name: str
    cron: str
    func: JobFunc
    timezone: ZoneInfo | str = "UTC"
    grace: timedelta = timedelta(minutes=10)
    lease: timedelta = timedelta(minutes=15)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise InvalidInputError(
                f"invalid job name {self.name!r}: lower-case letters, digits, '_', '.', '-'",
                field="name",
            )
        if not callable(self.func):
            raise InvalidInputError("must be callable", field="func")
        object.__setattr__(self, "cron", _cron(self.cron))
        object.__setattr__(self, "timezone", _zone(self.timezone))
        _duration(self.grace, "grace", zero=True)
        _duration(self.lease, "lease")

    @property
    def zone(self) -> ZoneInfo:
        return cast(ZoneInfo, self.timezone)

    @property
    def follows_elapsed_time(self) -> bool:
        """True when the hour field is a wildcard (``*``, ``*/6``): then a repeated local hour
        is a new slot. Otherwise slots are wall-clock times and a repeated one runs once."""
        return self.cron.split(" ")[1].startswith("*")

    def next_after(self, when: datetime) -> datetime:
        """The first scheduled time strictly after ``when``, in UTC."""
        local = ensure_utc(when, "when").astimezone(self.zone)
        following: datetime = croniter(self.cron, local).get_next(datetime)
        return following.astimezone(UTC)

    def latest_at_or_before(self, when: datetime) -> datetime:
        """The last scheduled time at or before ``when``, in UTC."""
        local = (ensure_utc(when, "when") + timedelta(microseconds=1)).astimezone(self.zone)
        previous: datetime = croniter(self.cron, local).get_prev(datetime)
        return previous.astimezone(UTC)

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        """Scheduled times in ``[start, end)``, in UTC (one per slot occurrence)."""
        end = ensure_utc(end, "end")
        times: list[datetime] = []
        at = self.next_after(ensure_utc(start, "start") - timedelta(microseconds=1))
        while at < end:
            times.append(at)
            at = self.next_after(at)
        return times

    def slot_key(self, scheduled_for: datetime) -> str:
        """The slot a scheduled time belongs to: its local date-time to the minute, with the
        UTC offset only for jobs that follow elapsed time (see :attr:`follows_elapsed_time`)."""
        local = ensure_utc(scheduled_for, "scheduled_for").astimezone(self.zone)
        if self.follows_elapsed_time:
            return local.isoformat(timespec="minutes")
        return local.strftime("%Y-%m-%dT%H:%M")


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job's function gets: the slot it runs for and the time it started."""

    job: Job
    slot: str
    scheduled_for: datetime
    now: datetime
    worker_id: str
    attempt: int = 1

    @property
    def local_time(self) -> datetime:
        """The scheduled time in the job's time zone."""
        return self.scheduled_for.astimezone(self.job.zone)


class JobStatus(StrEnum):
    """How a run ended; a failed run is final for its slot (the next slot runs normally)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobRun:
    """One run of one slot by this process: what a host exports as metrics.

    ``counts`` are what the job reported (e.g. ``{"purged": 12}``); ``duration`` is measured
    with a monotonic clock; ``attempt`` > 1 means the slot was taken over from a worker whose
    lease expired.
    """

    job: str
    slot: str
    scheduled_for: datetime
    started_at: datetime
    duration: timedelta
    status: JobStatus
    counts: Mapping[str, int]
    worker_id: str
    attempt: int = 1
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is JobStatus.SUCCEEDED

    @property
    def lateness(self) -> timedelta:
        """How long after its scheduled time the run started."""
        return self.started_at - self.scheduled_for


@runtime_checkable
class Scheduler(Protocol):
    """Where leadflow's jobs are registered so that something runs them at their times.

    An implementation calls, at each of the job's cron times (in ``job.timezone``), the
    slot-leased run (:meth:`JobRunner.run_job`), which makes every slot run once across all
    instances sharing a job store, whatever the scheduler does in each process.
    """

    def add_job(self, job: Job) -> None:
        """Run ``job`` at its scheduled times from now on. :class:`DuplicateError` if a job
        with its name is registered already."""
        ...


# --------------------------------------------------------------------------- running a slot


class _SlotRunner:
    """Claims a slot, runs the job, records the outcome, logs and reports it. Thread-safe."""

    def __init__(
        self,
        store: JobStore,
        worker_id: str,
        on_run: Callable[[JobRun], object] | None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self._on_run = on_run
        self._lock = threading.Lock()
        self.last_runs: dict[str, JobRun] = {}

    def latest(self) -> dict[str, JobRun]:
        with self._lock:
            return dict(self.last_runs)

    def run(self, job: Job, fire: datetime, now: datetime) -> tuple[JobRun | None, SlotClaim]:
        key = job.slot_key(fire)
        claim = self.store.claim_slot(
            job.name,
            key,
            worker=self.worker_id,
            now=now,
            lease=job.lease,
            expires_at=fire + job.grace + job.lease + _SLOT_KEEP,
        )
        fields: dict[str, Any] = {
            "job": job.name,
            "slot": key,
            "scheduled_for": fire.isoformat(),
            "worker_id": self.worker_id,
        }
        if not claim.acquired:
            log.debug(
                "slot %s of %s is %s (%s)",
                key,
                job.name,
                claim.record.state.value,
                claim.record.owner,
                extra={**fields, "holder": claim.record.owner},
            )
            return None, claim
        attempt = claim.record.attempts
        context = JobContext(job, key, fire, now, self.worker_id, attempt)
        started = time.perf_counter()
        failure: BaseException | None = None
        counts: dict[str, int] = {}
        try:
            reported = job.func(context)
            counts = {str(k): int(v) for k, v in (reported or {}).items()}
        except Exception as exc:
            failure = exc
        duration = timedelta(seconds=time.perf_counter() - started)
        status = JobStatus.SUCCEEDED if failure is None else JobStatus.FAILED
        error = None if failure is None else f"{type(failure).__name__}: {failure}"
        try:
            kept = self.store.finish_slot(
                job.name,
                key,
                token=claim.record.token,
                now=now + duration,
                state=SlotState(status.value),
                counts=counts,
                error=error,
            )
        except Exception:
            log.exception("could not record the outcome of %s %s", job.name, key, extra=fields)
        else:
            if not kept:
                log.warning(
                    "job %s outlived its lease on slot %s; another worker took it over",
                    job.name,
                    key,
                    extra=fields,
                )
        run = JobRun(
            job.name, key, fire, now, duration, status, counts, self.worker_id, attempt, error
        )
        extra = {
            **fields,
            "job_status": status.value,
            "duration_ms": round(duration.total_seconds() * 1000, 3),
            "late_seconds": round(run.lateness.total_seconds(), 3),
            "counts": counts,
            "attempt": attempt,
        }
        if failure is None:
            log.info(
                "job %s ran slot %s in %.1f ms: %s",
                job.name,
                key,
                extra["duration_ms"],
                counts,
                extra=extra,
            )
        else:
            log.error(
                "job %s failed on slot %s after %.1f ms: %s",
                job.name,
                key,
                extra["duration_ms"],
                error,
                exc_info=failure,
                extra=extra,
            )
        with self._lock:
            self.last_runs[job.name] = run
        if self._on_run is not None:
            try:
                self._on_run(run)
            except Exception:
                log.exception("on_run callback failed", extra=fields)
        return run, claim


@dataclass(slots=True)
class _JobState:
    next_fire: datetime | None = None  # the next scheduled time after the last one considered
    done_key: str | None = None  # the slot this process is finished with
    retry_at: datetime | None = None  # look again then (slot held elsewhere, store error)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobRunner:
    """The built-in :class:`Scheduler`.

    :meth:`run_pending` runs every job whose latest slot is due and not yet handled; call it
    with a controlled clock in tests, or let :meth:`start` call it from a background thread
    that sleeps until the next slot. Jobs run one after another in the calling thread; a
    failing job is logged and reported, and the others still run. Give every instance of the
    app a runner on one shared job store: each slot then runs once in total.

    ``on_run`` is called with each :class:`JobRun` (export metrics from it); ``last_runs`` keeps
    the latest run of each job. ``max_sleep`` caps one sleep of the thread, so it notices a
    wall-clock jump.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        clock: Clock | None = None,
        worker_id: str | None = None,
        on_run: Callable[[JobRun], object] | None = None,
        max_sleep: timedelta = timedelta(seconds=60),
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._slots = _SlotRunner(store, worker_id or _default_worker_id(), on_run)
        self._max_sleep = _duration(max_sleep, "max_sleep")
        self._jobs: dict[str, Job] = {}
        self._states: dict[str, _JobState] = {}
        self._lock = threading.RLock()
        self._life = threading.Lock()
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def worker_id(self) -> str:
        return self._slots.worker_id

    @property
    def store(self) -> JobStore:
        return self._slots.store

    @property
    def jobs(self) -> dict[str, Job]:
        """The registered jobs by name (a copy)."""
        with self._lock:
            return dict(self._jobs)

    @property
    def last_runs(self) -> dict[str, JobRun]:
        """The latest run of each job by this runner (a copy)."""
        return self._slots.latest()

    def add_job(self, job: Job) -> None:
        if not isinstance(job, Job):
            raise InvalidInputError("expected a Job", field="job")
        with self._lock:
            if job.name in self._jobs:
                raise DuplicateError(f"a job named {job.name!r} is registered already")
            self._jobs[job.name] = job
            self._states[job.name] = _JobState()
        self._wakeup.set()

    def add_jobs(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.add_job(job)

    # -- one step

    def run_pending(self, now: datetime | None = None) -> list[JobRun]:
        """Run, once each, the jobs whose latest slot has come and was not handled yet.

        A slot is handled when this runner ran it, found it finished (or running) elsewhere,
        or found it more than the job's grace late. A slot held by a worker whose lease
        expires within the grace period is looked at again then (see :meth:`next_run_time`).
        Returns the runs this call made. ``now`` defaults to the clock (read before each job).
        """
        fixed = ensure_utc(now, "now") if now is not None else None
        runs: list[JobRun] = []
        with self._lock:
            for job in list(self._jobs.values()):
                run = self._check(job, fixed if fixed is not None else self._clock.now())
                if run is not None:
                    runs.append(run)
        return runs

    def _check(self, job: Job, now: datetime) -> JobRun | None:
        state = self._states[job.name]
        waiting = state.next_fire is not None and now < state.next_fire
        if waiting and (state.retry_at is None or now < state.retry_at):
            return None
        fire = job.latest_at_or_before(now)
        first_look = state.next_fire is None
        state.next_fire = job.next_after(fire)
        state.retry_at = None
        key = job.slot_key(fire)
        if key == state.done_key:
            return None
        fields = {"job": job.name, "slot": key, "worker_id": self.worker_id}
        if now - fire > job.grace:
            state.done_key = key
            # At start-up the last slot is usually long gone (and ran elsewhere): not news.
            log.log(
                logging.DEBUG if first_look else logging.WARNING,
                "slot %s of %s is %s late, beyond its grace of %s: skipped",
                key,
                job.name,
                now - fire,
                job.grace,
                extra=fields,
            )
            return None
        try:
            run, claim = self._slots.run(job, fire, now)
        except Exception:
            log.exception("job store failed; will retry slot %s of %s", key, job.name, extra=fields)
            state.retry_at = now + _STORE_RETRY
            return None
        held = claim.record
        if run is None and held.state is SlotState.RUNNING and held.lease_until <= fire + job.grace:
            state.retry_at = held.lease_until  # its holder may have crashed: look again then
        else:
            state.done_key = key
        return run

    def run_job(self, name: str, now: datetime | None = None) -> JobRun | None:
        """Run job ``name``'s latest slot unless it is beyond its grace or already taken: what
        a host's own scheduler (Celery beat, a cron entry, APScheduler) calls at the job's
        times. Returns None when nothing ran. :class:`NotFoundError` for an unknown job."""
        with self._lock:
            job = self._jobs.get(name)
        if job is None:
            raise NotFoundError(f"no job named {name!r} is registered")
        when = ensure_utc(now, "now") if now is not None else self._clock.now()
        fire = job.latest_at_or_before(when)
        if when - fire > job.grace:
            log.warning(
                "job %s called %s after its last slot, beyond its grace: skipped",
                name,
                when - fire,
                extra={"job": name, "slot": job.slot_key(fire), "worker_id": self.worker_id},
            )
            return None
        run, _ = self._slots.run(job, fire, when)
        return run

    def next_run_time(self) -> datetime | None:
        """When :meth:`run_pending` next has something to do (the clock's now for a job never
        looked at); None without jobs."""
        with self._lock:
            times: list[datetime] = []
            for state in self._states.values():
                if state.next_fire is None:
                    return self._clock.now()
                times.append(state.next_fire)
                if state.retry_at is not None:
                    times.append(state.retry_at)
            return min(times, default=None)

    # -- background thread

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Run the jobs from a daemon thread until :meth:`stop`. It sleeps until the next slot
        (at most ``max_sleep``), never polls. :class:`InvalidStateError` if already running."""
        with self._life:
            if self.running:
                raise InvalidStateError("the job runner is running already")
            self._stopping.clear()
            self._wakeup.clear()
            self._thread = threading.Thread(
                target=self._loop, name=f"leadflow-jobs:{self.worker_id}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Ask the thread to stop and wait (up to ``timeout`` seconds) for the job it is running,
        if any, to finish. Returns True once the thread has ended."""
        with self._life:
            thread = self._thread
            self._stopping.set()
            self._wakeup.set()
            if thread is None:
                return True
            if thread is threading.current_thread():
                return False  # called from a job: the loop ends after it
            thread.join(timeout)
            if thread.is_alive():
                return False
            self._thread = None
            return True

    def wake(self) -> None:
        """Make the thread look at the jobs now (e.g. after moving a test clock)."""
        self._wakeup.set()

    def __enter__(self) -> JobRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        log.info("job runner started", extra={"worker_id": self.worker_id})
        while not self._stopping.is_set():
            try:
                self.run_pending()
            except Exception:
                log.exception("job runner step failed", extra={"worker_id": self.worker_id})
            self._wakeup.wait(self._sleep_seconds())
            self._wakeup.clear()
        log.info("job runner stopped", extra={"worker_id": self.worker_id})

    def _sleep_seconds(self) -> float:
        limit = self._max_sleep.total_seconds()
        wake = self.next_run_time()
        if wake is None:
            return limit
        return min(limit, max(0.0, (wake - self._clock.now()).total_seconds()))


# --------------------------------------------------------------------------- APScheduler 3


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


# --------------------------------------------------------------------------- leadflow's jobs


@dataclass(frozen=True, slots=True)
class JobSchedule:
    """When one job runs: ``cron`` in the settings' time zone; ``grace``, how late a missed
    slot may still run; ``lease``, how long one run may hold its slot before another instance
    may take it over; ``enabled``, whether it is registered at all."""

    cron: str
    grace: timedelta = timedelta(minutes=10)
    lease: timedelta = timedelta(minutes=15)
    enabled: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "cron", _cron(self.cron))
        _duration(self.grace, "grace", zero=True)
        _duration(self.lease, "lease")


@dataclass(frozen=True, slots=True)
class JobSettings:
    """Schedules and thresholds of leadflow's jobs; the defaults are the seed's.

    ``timezone`` is where the business is: "daily at 8 AM" means 8 AM there, across
    daylight-saving changes. Every instance sharing a job store must use the same settings.
    ``notify`` also sends each notification through the flow's :class:`~leadflow.Notifier`
    (it always goes to the event sink as ``notification.<name>``).
    """

    timezone: ZoneInfo | str = "UTC"
    due_actions: JobSchedule = JobSchedule(
        "* * * * *", grace=timedelta(minutes=10), lease=timedelta(minutes=10)
    )
    overdue_check: JobSchedule = JobSchedule("0 * * * *", grace=timedelta(minutes=30))
    upcoming_reminders: JobSchedule = JobSchedule("*/30 * * * *", grace=timedelta(minutes=10))
    stale_opportunities: JobSchedule = JobSchedule(
        "0 */6 * * *", grace=timedelta(hours=3), lease=timedelta(minutes=30)
    )
    cleanup: JobSchedule = JobSchedule(
        "0 2 * * *", grace=timedelta(hours=12), lease=timedelta(hours=1)
    )
    daily_summary: JobSchedule = JobSchedule("0 8 * * *", grace=timedelta(hours=2))
    due_actions_batch: int = 100
    due_actions_max_batches: int = 50
    overdue_limit: int = 5000
    items_per_notification: int = 50
    upcoming_window: timedelta = timedelta(minutes=30)
    upcoming_limit: int = 1000
    stale_after: timedelta = timedelta(days=7)
    stale_limit: int = 10_000
    retention: timedelta = timedelta(days=365)
    notify: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "timezone", _zone(self.timezone))
        for name in LeadflowJobs.NAMES:
            if not isinstance(getattr(self, name), JobSchedule):
                raise InvalidInputError("expected a JobSchedule", field=name)
        for name in (
            "due_actions_batch",
            "due_actions_max_batches",
            "overdue_limit",
            "items_per_notification",
            "upcoming_limit",
            "stale_limit",
        ):
            _count(getattr(self, name), name)
        for name in ("upcoming_window", "stale_after", "retention"):
            _duration(getattr(self, name), name)

    @property
    def zone(self) -> ZoneInfo:
        return cast(ZoneInfo, self.timezone)


def _item(activity: Activity) -> dict[str, Any]:
    return {
        "activityId": activity.activity_id,
        "opportunityId": activity.opportunity_id,
        "customerId": activity.customer_id,
        "activityType": activity.activity_type.value,
        "subject": activity.subject,
        "dueDate": activity.due_date,
        "assignedTo": activity.assigned_to,
    }


def _by_assignee(activities: Iterable[Activity]) -> dict[str | None, list[Activity]]:
    """Activities grouped by assignee: assignees in name order, the unassigned last."""
    groups: dict[str | None, list[Activity]] = {}
    for activity in activities:
        groups.setdefault(activity.assigned_to, []).append(activity)
    return dict(sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or "")))


def stale_event_id(opportunity_id: str, last_activity_at: datetime) -> str:
    """The id of the ``opportunity.stale_detected`` event for one stale period: the same for
    every detection until the opportunity has a newer activity, so the rules act once."""
    at = ensure_utc(last_activity_at, "last_activity_at").isoformat()
    return str(uuid.uuid5(_STALE_EVENTS, f"{opportunity_id}/{at}"))


class LeadflowJobs:
    """The seed's background jobs, bound to one flow and one job store.

    ============================  ==================  =========================================
    job                           default schedule    what it does
    ============================  ==================  =========================================
    ``due_actions``               every minute        :meth:`LeadFlow.run_due` until drained
    ``overdue_check``             hourly              ``notification.overdue_activities``, one
                                                      per assignee with their overdue items
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

    NAMES: Final = (
        "due_actions",
        "overdue_check",
        "upcoming_reminders",
        "stale_opportunities",
        "cleanup",
        "daily_summary",
    )

    def __init__(
        self, flow: LeadFlow, store: JobStore, settings: JobSettings | None = None
    ) -> None:
        self.flow = flow
        self.store = store
        self.settings = settings or JobSettings()

    def jobs(self) -> list[Job]:
        """The enabled jobs, ready to register with any :class:`Scheduler`."""
        bodies: dict[str, tuple[JobFunc, str]] = {
            "due_actions": (self.run_due_actions, "Run the scheduled actions that are due"),
            "overdue_check": (self.check_overdue, "Notify assignees of overdue activities"),
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
        """One ``overdue_activities`` notification per assignee (unassigned ones together,
        to no recipient: the host decides), listing up to ``items_per_notification`` items
        with the full count."""
        limit = self.settings.overdue_limit
        overdue = self.flow.activities.overdue(ctx.now, limit=limit)
        sent = failed = 0
        for assignee, group in _by_assignee(overdue).items():
            key = f"overdue_activities:{ctx.slot}:{assignee or '-'}"
            payload = {
                "key": key,
                "assignedTo": assignee,
                "asOf": ctx.now,
                "count": len(group),
                "activities": [_item(a) for a in group[: self.settings.items_per_notification]],
            }
            if self._send("overdue_activities", key, assignee, payload, ctx):
                sent += 1
            else:
                failed += 1
        return {
            "overdue": len(overdue),
            "notifications": sent,
            "failed": failed,
            "truncated": int(len(overdue) == limit),
        }

    def remind_upcoming(self, ctx: JobContext) -> dict[str, int]:
        """Remind each assignee of their activities due in the next ``upcoming_window``.

        Each (activity, due date) is marked in the job store before its reminder goes out, so
        overlapping windows, restarts and other instances never remind it twice; a changed
        due date is a new reminder. If sending fails the marks are removed and the next run
        tries again; a crash between marking and sending loses that reminder (at most once).
        """
        window, limit = self.settings.upcoming_window, self.settings.upcoming_limit
        upcoming = self.flow.activities.upcoming(ctx.now, window, limit=limit)
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
        for assignee, group in _by_assignee(a for a, _ in fresh).items():
            key = f"upcoming_activities:{ctx.slot}:{assignee or '-'}"
            payload = {
                "key": key,
                "assignedTo": assignee,
                "asOf": ctx.now,
                "count": len(group),
                "activities": [_item(a) for a in group],
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

        The event id derives from the opportunity and its last activity time, so detecting it
        again before anything new happens is a no-op for the rules; a mark in the job store
        skips it altogether and keeps the event-sink copy to one. The rules are fed before the
        mark is set: a crash in between only makes the next run feed the same event (which the
        flow recognises) again. A new activity (e.g. one a re-engagement rule creates) starts a
        new period.
        """
        stale_after = self.settings.stale_after
        activities = self.flow.activities
        stale = activities.stale_opportunities(
            ctx.now - stale_after, limit=self.settings.stale_limit
        )
        last_times = activities.last_activity_times(stale) if stale else {}
        detected = already = matched = failed = 0
        for opportunity_id in stale:
            last = last_times.get(opportunity_id)
            if last is None:  # its activities were deleted meanwhile
                continue
            mark = f"stale:{opportunity_id}:{last.isoformat()}"
            if self.store.is_marked(mark, now=ctx.now):
                already += 1
                continue
            payload = {
                "opportunityId": opportunity_id,
                "lastActivityAt": last,
                "staleSince": last + stale_after,
                "daysSinceLastActivity": (ctx.now - last) // timedelta(days=1),
            }
            event = Event(
                id=stale_event_id(opportunity_id, last),
                type="opportunity.stale_detected",
                time=ctx.now,
                payload=payload,
                actor=self.flow.system_user,
            )
            try:
                result = self.flow.handle(event)
            except Exception:
                log.exception(
                    "stale opportunity %s could not be handled",
                    opportunity_id,
                    extra={"job": ctx.job.name, "slot": ctx.slot, "opportunity_id": opportunity_id},
                )
                failed += 1
                continue
            self.store.mark(mark, now=ctx.now, expires_at=ctx.now + self.settings.retention)
            self.flow.emit("opportunity.stale_detected", {"eventId": event.id, **payload})
            detected += 1
            matched += bool(result.matched_rules)
        return {
            "stale": len(stale),
            "detected": detected,
            "already_detected": already,
            "rules_matched": matched,
            "failed": failed,
        }

    def clean_up(self, ctx: JobContext) -> dict[str, int]:
        """Purge completed activities completed more than ``retention`` ago (open ones always
        stay) and forget expired job records."""
        purged = self.flow.activities.purge_completed(ctx.now - self.settings.retention)
        forgotten = self.store.purge_expired(ctx.now)
        return {"purged": purged, "job_records_purged": forgotten}

    def send_daily_summaries(self, ctx: JobContext) -> dict[str, int]:
        """One ``daily_summary`` per user with anything to report: open activities not yet
        overdue (``pending``), ``overdue`` ones, and those completed yesterday, where
        "yesterday" is the local calendar day before the slot's, in the settings' time zone."""
        zone = ctx.job.zone
        today = ctx.local_time.date()
        midnight = clock_time(0)
        day_start = datetime.combine(today, midnight, tzinfo=zone)
        yesterday_start = datetime.combine(today - timedelta(days=1), midnight, tzinfo=zone)
        now, activities = ctx.now, self.flow.activities

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
                "userId": user,
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
        if self.settings.notify:
            try:
                self.flow.notifier.notify(
                    Notification(key, template, (recipient,) if recipient else (), None, payload)
                )
            except Exception:
                log.exception(
                    "notifier failed for %s",
                    key,
                    extra={"job": ctx.job.name, "slot": ctx.slot, "notification_key": key},
                )
                return False
        self.flow.emit(f"notification.{template}", payload)
        return True
