"""Leadflow on Celery workers (the ``celery`` extra).

:func:`install` registers three tasks on the host's Celery app::

    from celery import Celery
    from leadflow.contrib.celery import install

    app = Celery("crm", broker="redis://localhost:6379/0")
    leadflow_tasks = install(app, build_flow)  # build_flow() -> LeadFlow, called per process
    app.conf.beat_schedule = leadflow_tasks.beat_schedule()

- ``leadflow.handle_event(document)``: :meth:`LeadFlow.handle` on one event document. Safe to
  run twice: the actions it plans are stored under keys made of the event id, so a redelivered
  message finds them and does nothing again. The task acknowledges its message only once it
  returned (``acks_late``) and a message whose worker died is delivered again
  (``reject_on_worker_lost``): an event is not lost with its worker.
- ``leadflow.run_due(partition=None)``: claims a batch of due actions with its lease
  (:meth:`LeadFlow.run_due`), runs it, and goes on with the next while batches come back full,
  for up to ``batch_time`` (one second by default), then queues itself again: a backlog costs
  one broker message per second of work rather than one per batch, and a warm shutdown (which
  stops the loop after the batch in hand) waits for one batch at most.
  Leadflow's store stays the only authority for delays: nothing is put in the broker with a long
  ETA or countdown.
- ``leadflow.run_job(name)``: :meth:`JobRunner.run_job`, the slot-leased run of one of
  :class:`LeadflowJobs`; several beats, or a doubled one, run each slot once.

**Partitions.** With ``install(..., partitions=n)`` (``n`` > 1, the flows' own
``FlowSettings.partitions``), each ``run_due`` carries a partition and goes to that partition's
queue, :meth:`LeadflowTasks.due_queue` (``<queue>.due.<p>``): a worker started with
``-Q <queue>.due.<p>`` is pinned to partition ``p`` and its claims carry the partition (the shard
key of a sharded table or collection). ``beat_schedule()`` has one ``run_due`` entry per
partition and a full batch re-queues itself to its own partition's queue.

The :class:`LeadFlow` is built once per worker process by the host's factory, on the first task
that needs it (again after a fork). Importing this module imports Celery, but nothing connects
or builds anything at import time, and ``import leadflow`` never imports this module.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from ..errors import InvalidInputError, StorageError, UnavailableError
from ..limits import DEFAULT_LIMITS
from ..runtime.flow import LeadFlow
from ..runtime.jobs import JobSettings, LeadflowJobs
from ..runtime.results import DueRunReport, HandleResult
from ..scheduling.runner import JobRunner

__all__ = ["LeadflowTasks", "install"]

log = logging.getLogger("leadflow.celery")

FlowFactory = Callable[[], LeadFlow]
JobsFactory = Callable[[LeadFlow], LeadflowJobs]


class _Observer:
    """What :class:`LeadflowTasks` reports to (a :class:`~leadflow.contrib.prometheus.
    LeadflowMetrics` fits); every method is optional."""

    def __init__(self, target: object | None) -> None:
        self._target = target

    def call(self, name: str, *args: Any) -> None:
        method = getattr(self._target, name, None)
        if method is None:
            return
        try:
            method(*args)
        except Exception:  # metrics never fail the work they report
            log.exception("metrics observer %s failed", name)


class LeadflowTasks:
    """The tasks :func:`install` registered, and the per-process flow they run on.

    ``handle_event``, ``run_due`` and ``run_job`` are the Celery task objects (call
    ``.delay(...)`` / ``.apply_async(...)`` on them, or send them by name from elsewhere).
    """

    def __init__(
        self,
        app: Any,
        flow_factory: FlowFactory,
        *,
        queue: str,
        batch: int,
        prefix: str,
        jobs_factory: JobsFactory | None,
        job_settings: JobSettings | None,
        metrics: object | None,
        max_retries: int,
        partitions: int = 1,
        batch_time: timedelta = timedelta(seconds=1),
    ) -> None:
        self.app = app
        self.batch_time = batch_time
        self._stopping = threading.Event()
        self.queue = queue
        self.partitions = partitions
        self.batch = batch
        self.prefix = prefix
        self.job_settings = job_settings or JobSettings()
        self._flow_factory = flow_factory
        self._jobs_factory = jobs_factory
        self._observer = _Observer(metrics)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._flow: LeadFlow | None = None
        self._runner: JobRunner | None = None

        retry_on = (UnavailableError, StorageError)

        # Plain functions (Celery binds the task instance as the first argument of a function,
        # not of a bound method).
        def handle_event(task: Any, document: Mapping[str, Any]) -> dict[str, Any]:
            return self._handle_event(task, document)

        def run_due(task: Any, partition: int | None = None) -> dict[str, int]:
            return self._run_due(task, partition)

        def run_job(task: Any, name: str) -> dict[str, Any] | None:
            return self._run_job(task, name)

        self.handle_event: Any = app.task(
            name=f"{prefix}.handle_event",
            shared=False,  # this app only, not every app finalized later
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
            autoretry_for=retry_on,
            retry_backoff=True,
            retry_backoff_max=60,
            max_retries=max_retries,
        )(handle_event)
        self.run_due: Any = app.task(
            name=f"{prefix}.run_due",
            shared=False,
            bind=True,
            ignore_result=True,
            autoretry_for=retry_on,
            retry_backoff=True,
            retry_backoff_max=60,
            max_retries=max_retries,
        )(run_due)
        self.run_job: Any = app.task(
            name=f"{prefix}.run_job",
            shared=False,
            bind=True,
            ignore_result=True,
        )(run_job)

    # ------------------------------------------------------------------ the per-process flow

    def flow(self) -> LeadFlow:
        """This process's flow, built by the host's factory on first use (and again in a forked
        child, which must not share its parent's connections)."""
        pid = os.getpid()
        flow = self._flow
        if flow is not None and self._pid == pid:
            return flow
        with self._lock:
            if self._flow is None or self._pid != pid:
                built = self._flow_factory()
                if not isinstance(built, LeadFlow):
                    raise TypeError("the flow factory must return a leadflow.LeadFlow")
                if built.settings.partitions != self.partitions:
                    raise InvalidInputError(
                        f"the flow has {built.settings.partitions} partition(s) but the tasks "
                        f"were installed with partitions={self.partitions}: a partition "
                        "without a queue would never run",
                        field="partitions",
                    )
                self._flow, self._pid, self._runner = built, pid, None
                log.info("leadflow built for this worker", extra={"worker_id": built.worker_id})
            assert self._flow is not None
            return self._flow

    def runner(self) -> JobRunner:
        """This process's job runner (leadflow's jobs on the flow's job store)."""
        flow = self.flow()
        with self._lock:
            if self._runner is None:
                jobs = (
                    self._jobs_factory(flow)
                    if self._jobs_factory is not None
                    else LeadflowJobs(flow, self.job_settings)
                )
                self._runner = jobs.runner(worker_id=flow.worker_id)
            return self._runner

    # ------------------------------------------------------------------ task bodies

    def _handle_event(self, task: Any, document: Mapping[str, Any]) -> dict[str, Any]:
        result = self.flow().handle(document)
        self._observer.call("observe_handle", result)
        summary = _handle_summary(result)
        log.info("event handled", extra={"task_id": task.request.id, **summary})
        return summary

    def stopping(self) -> None:
        """Tell the running ``run_due`` loops to stop after their batch in hand (connected to
        Celery's ``worker_shutting_down`` signal by :func:`install`)."""
        self._stopping.set()

    def _run_due(self, task: Any, partition: int | None) -> dict[str, int]:
        flow = self.flow()
        deadline = time.monotonic() + self.batch_time.total_seconds()
        summary = _due_summary(None)
        while True:
            report = flow.run_due(limit=self.batch, partition=partition)
            self._observer.call("observe_due", report, self.batch)
            _add(summary, report)
            if report.claimed < self.batch:
                break  # drained
            if self._stopping.is_set() or time.monotonic() >= deadline:
                # A full batch and the time is up: there is probably more. The rest is its own
                # task, so a warm shutdown waits for one batch and other tasks get their turn.
                self._send_due(partition)
                summary["requeued"] = 1
                break
        if partition is not None:
            summary["partition"] = partition
        if report.claimed:
            log.info("due actions run", extra={"task_id": task.request.id, **summary})
        return summary

    def _run_job(self, task: Any, name: str) -> dict[str, Any] | None:
        runner = self.runner()
        job = runner.jobs.get(name)
        now = self.flow().now()
        # Beyond its grace the latest slot is missed (no beat asked in time); else a skip
        # means another worker or beat has the slot.
        late = job is not None and now - job.latest_at_or_before(now) > job.grace
        run = runner.run_job(name, now)
        self._observer.call("observe_job", name, run, "late" if late else "taken")
        if run is None:
            return None
        return {
            "job": run.job,
            "slot": run.slot,
            "status": run.status.value,
            "attempt": run.attempt,
            "counts": dict(run.counts),
        }

    # ------------------------------------------------------------------ helpers for the host

    def due_queue(self, partition: int | None) -> str:
        """The queue ``run_due`` of ``partition`` is sent to: ``<queue>.due.<partition>`` with
        several partitions, else the main queue. :class:`InvalidInputError` for a partition
        outside ``0 .. partitions - 1``."""
        if self.partitions == 1 or partition is None:
            return self.queue
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise InvalidInputError("expected an integer", field="partition")
        if not 0 <= partition < self.partitions:
            raise InvalidInputError(f"must be in 0..{self.partitions - 1}", field="partition")
        return f"{self.queue}.due.{partition}"

    def due_queues(self) -> list[str]:
        """Every queue ``run_due`` is sent to (one per partition)."""
        if self.partitions == 1:
            return [self.queue]
        return [self.due_queue(p) for p in range(self.partitions)]

    def _send_due(self, partition: int | None) -> Any:
        if partition is None:
            return self.run_due.apply_async(queue=self.queue)
        return self.run_due.apply_async(
            kwargs={"partition": partition}, queue=self.due_queue(partition)
        )

    def kick(self, partition: int | None = None) -> list[Any]:
        """Queue ``run_due`` (e.g. after a burst of scheduling): for ``partition``, or one per
        partition when None (a single unpinned one with one partition). Returns the
        AsyncResults."""
        if partition is not None:
            self.due_queue(partition)  # checks it
            return [self._send_due(partition)]
        if self.partitions == 1:
            return [self._send_due(None)]
        return [self._send_due(p) for p in range(self.partitions)]

    def send_event(self, document: Mapping[str, Any]) -> Any:
        """Queue ``handle_event`` for one event document (JSON-able: use
        ``Event.to_document()`` or the document you received); returns the AsyncResult."""
        return self.handle_event.apply_async(args=(dict(document),), queue=self.queue)

    def beat_schedule(
        self,
        *,
        every: timedelta = timedelta(seconds=30),
        due_every: timedelta | None = timedelta(seconds=1),
    ) -> dict[str, dict[str, Any]]:
        """Celery beat entries for leadflow: ``run_job(name)`` every ``every`` for each enabled
        job of the job settings, and ``run_due`` every ``due_every`` (None: leave due actions to
        the ``due_actions`` job alone).

        Beat is only the clock: the job runner works out each job's latest slot in the job's time
        zone (daylight saving included) and runs it once, whichever beat or tick asks first, so
        a slot runs at most ``every`` late. Raises :class:`InvalidInputError` (field
        ``every``) when ``every`` is not positive or exceeds a job's grace, since slots could
        then be missed.
        """
        if not isinstance(every, timedelta) or every <= timedelta(0):
            raise InvalidInputError("must be a positive timedelta", field="every")
        if due_every is not None and (
            not isinstance(due_every, timedelta) or due_every <= timedelta(0)
        ):
            raise InvalidInputError("must be a positive timedelta or None", field="due_every")
        entries: dict[str, dict[str, Any]] = {}
        for name in LeadflowJobs.NAMES:
            schedule = getattr(self.job_settings, name)
            if not schedule.enabled:
                continue
            if schedule.grace < every:
                raise InvalidInputError(
                    f"job {name!r} has a grace of {schedule.grace}, shorter than the beat "
                    f"interval {every}: its slots could be missed",
                    field="every",
                )
            entries[f"{self.prefix}.job.{name}"] = {
                "task": f"{self.prefix}.run_job",
                "schedule": every.total_seconds(),
                "args": (name,),
                "options": {"queue": self.queue, "expires": every.total_seconds()},
            }
        if due_every is not None:
            expires = max(due_every.total_seconds(), 1.0)
            if self.partitions == 1:
                entries[f"{self.prefix}.run_due"] = {
                    "task": f"{self.prefix}.run_due",
                    "schedule": due_every.total_seconds(),
                    "options": {"queue": self.queue, "expires": expires},
                }
            for p in range(self.partitions if self.partitions > 1 else 0):
                entries[f"{self.prefix}.run_due.{p}"] = {
                    "task": f"{self.prefix}.run_due",
                    "schedule": due_every.total_seconds(),
                    "kwargs": {"partition": p},
                    "options": {"queue": self.due_queue(p), "expires": expires},
                }
        return entries


def install(
    app: Any,
    flow_factory: FlowFactory,
    *,
    queue: str = "leadflow",
    batch: int = 100,
    prefix: str = "leadflow",
    jobs_factory: JobsFactory | None = None,
    job_settings: JobSettings | None = None,
    metrics: object | None = None,
    max_retries: int = 20,
    partitions: int = 1,
    batch_time: timedelta = timedelta(seconds=1),
) -> LeadflowTasks:
    """Register leadflow's tasks on ``app`` (a :class:`celery.Celery`); returns them.

    ``flow_factory`` builds the :class:`LeadFlow` of one worker process; it is called lazily,
    once per process. ``queue`` is where :meth:`LeadflowTasks.kick`, ``send_event``, the
    re-queued ``run_due`` and the beat entries send (start workers with ``-Q <queue>``);
    ``batch`` is how many due actions one ``run_due`` claims at a time, and ``batch_time`` how
    long one ``run_due`` task goes on claiming full batches before it re-queues itself (zero:
    one batch per task). ``jobs_factory`` builds the
    :class:`LeadflowJobs` (default: ``LeadflowJobs(flow, job_settings)``). ``metrics`` is told
    of each handled event, due run and job run (``observe_handle``, ``observe_due``,
    ``observe_job``: see :mod:`leadflow.contrib.prometheus`). Storage outages
    (:class:`UnavailableError`, :class:`StorageError`) are retried with backoff, at most
    ``max_retries`` times. ``partitions`` must equal the flows' ``FlowSettings.partitions``
    (checked when a worker builds its flow): with more than one, ``run_due`` is sent per
    partition to :meth:`LeadflowTasks.due_queue`. Raises :class:`InvalidInputError` for a bad
    ``batch`` / ``queue`` / ``partitions``.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidInputError("must be a positive integer", field="batch")
    if not isinstance(queue, str) or not queue:
        raise InvalidInputError("must be a non-empty string", field="queue")
    if (
        isinstance(partitions, bool)
        or not isinstance(partitions, int)
        or not 1 <= partitions <= DEFAULT_LIMITS.partitions
    ):
        raise InvalidInputError(
            f"must be an integer in 1..{DEFAULT_LIMITS.partitions}", field="partitions"
        )
    if not isinstance(batch_time, timedelta) or batch_time < timedelta(0):
        raise InvalidInputError("must be a non-negative timedelta", field="batch_time")
    if not callable(flow_factory):
        raise InvalidInputError("must be a callable returning a LeadFlow", field="flow_factory")
    tasks = LeadflowTasks(
        app,
        flow_factory,
        queue=queue,
        batch=batch,
        prefix=prefix,
        jobs_factory=jobs_factory,
        job_settings=job_settings,
        metrics=metrics,
        max_retries=max_retries,
        partitions=partitions,
        batch_time=batch_time,
    )
    from celery import signals  # type: ignore[import-untyped]  # the host has Celery already

    signals.worker_shutting_down.connect(lambda **_: tasks.stopping(), weak=False)
    return tasks


def _handle_summary(result: HandleResult) -> dict[str, Any]:
    return {
        "event_id": result.event.id,
        "event_type": result.event.type,
        "matched_rules": list(result.matched_rules),
        "executed": len(result.executed),
        "scheduled": len(result.scheduled),
        "duplicates": len(result.duplicates),
        "errors": len(result.all_errors()),
    }


def _due_summary(report: DueRunReport | None) -> dict[str, int]:
    summary = {"batches": 0, "claimed": 0, "succeeded": 0, "failed": 0, "parked": 0}
    if report is not None:
        _add(summary, report)
    summary["requeued"] = 0
    return summary


def _add(summary: dict[str, int], report: DueRunReport) -> None:
    summary["batches"] += 1
    for name in ("claimed", "succeeded", "failed", "parked"):
        summary[name] += getattr(report, name)
