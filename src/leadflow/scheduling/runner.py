"""Running job slots: the slot-leased run every scheduler calls, and :class:`JobRunner`, the
built-in scheduler (``run_pending`` for tests and simulations, a background thread for apps)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from ..clock import Clock, SystemClock, ensure_utc
from ..errors import DuplicateError, InvalidInputError, InvalidStateError, NotFoundError
from ..ports import JobStore
from ..ports.periodic import Job, JobContext, JobRun, JobStatus, _duration
from ..records import SlotClaim, SlotState

__all__ = ["JobRunner"]

log = logging.getLogger("leadflow.scheduling")

_SLOT_KEEP: Final = timedelta(days=1)  # how long a slot record outlives its last chance to run
_STORE_RETRY: Final = timedelta(seconds=30)  # look again after the job store failed


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

    def _now(self) -> datetime:
        """The clock's time in UTC (:class:`InvalidInputError` for a clock giving naive
        times: every slot is computed from it)."""
        return ensure_utc(self._clock.now(), "clock.now()")

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
                run = self._check(job, fixed if fixed is not None else self._now())
                if run is not None:
                    runs.append(run)
        return runs

    def _check(self, job: Job, now: datetime) -> JobRun | None:
        state = self._states[job.name]
        waiting = state.next_fire is not None and now < state.next_fire
        if waiting and (state.retry_at is None or now < state.retry_at):
            return None
        known = state.next_fire  # a scheduled time (next_after's), or None at the first look
        following = job.next_after(known) if known is not None and known <= now else None
        if known is not None and following is not None and now < following:
            fire = known  # the slot that came due, the next one not yet: no search back
        else:
            fire = job.latest_at_or_before(now)
            following = job.next_after(fire)
        first_look = known is None
        state.next_fire = following
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
        when = ensure_utc(now, "now") if now is not None else self._now()
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
                    return self._now()
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
        return min(limit, max(0.0, (wake - self._now()).total_seconds()))


# --------------------------------------------------------------------------- APScheduler 3
