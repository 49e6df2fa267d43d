"""``leadflow worker`` (due actions and the periodic jobs until stopped) and ``leadflow jobs``
(one job once, for cron and Kubernetes CronJobs)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from datetime import datetime, timedelta
from types import FrameType

import click

from ..ports.periodic import JobRun, JobStatus
from ..runtime import JobSettings, LeadFlow, LeadflowJobs, unrun_rule_types
from ._base import LeadflowCommand, LeadflowGroup, fail, logs
from .integrations import build_flow
from .metrics import serve_metrics
from .options import store_options
from .stores import opened

__all__ = ["jobs", "worker"]

log = logging.getLogger("leadflow.cli")

_LEVELS = ("debug", "info", "warning", "error")


def _level(name: str) -> int:
    return int(getattr(logging, name.upper()))


def _app_options(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option(
        "--log-level",
        type=click.Choice(_LEVELS),
        default="info",
        show_default=True,
        help="Logging level (logs go to stderr).",
    )(func)
    func = click.option(
        "--timezone",
        default="UTC",
        show_default=True,
        help="The business's time zone: daily jobs run at their local time there.",
    )(func)
    func = click.option(
        "--rep",
        "reps",
        multiple=True,
        help="A sales rep for round-robin assignment (repeat it); ignored with --app.",
    )(func)
    return click.option(
        "--app",
        default=None,
        help="module:factory, called with the opened storage and returning the host's "
        "LeadFlow (its notifier, gateway, handlers). Without it the worker runs only "
        "create_activity and outbox deliveries: notifications, messages, status changes and "
        "assignments stay pending for a worker with --app.",
    )(func)


def _describe(run: JobRun) -> str:
    counts = " ".join(f"{k}={v}" for k, v in run.counts.items())
    status = "ran" if run.status is JobStatus.SUCCEEDED else "FAILED"
    error = f": {run.error}" if run.error else ""
    return (
        f"job {run.job} {status} slot {run.slot} in {run.duration.total_seconds():.3f} s "
        f"{counts}{error}"
    )


def _warn_unrun(flow: LeadFlow) -> None:
    """Log a warning for each action type of a stored active rule that this worker does not
    run: no handler here (the host's --app has it), or held (its integration only logs)."""
    unrun = unrun_rule_types(flow.storage.rules, flow.handlers.runnable())
    for action_type, rule_ids in unrun.items():
        why = (
            "its integration only logs without --app"
            if action_type in flow.handlers
            else "no handler is registered here"
        )
        log.warning(
            "this worker does not run %s actions (%s), which rule(s) %s plan: they stay "
            "pending for a worker that runs them (start one with the host's --app)",
            action_type,
            why,
            ", ".join(rule_ids),
        )


@click.command("worker", cls=LeadflowCommand)
@store_options(required=True)
@_app_options
@click.option(
    "--stop-timeout",
    type=click.FloatRange(0, 3600),
    default=60.0,
    show_default=True,
    help="Seconds to let a running job finish after SIGTERM / Ctrl-C.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (the metrics extra); 0 takes "
    "a free port (logged).",
)
@click.option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    help="The address the metrics endpoint listens on.",
)
def worker(
    url: str,
    prefix: str | None,
    schema: str | None,
    app: str | None,
    reps: tuple[str, ...],
    timezone: str,
    log_level: str,
    stop_timeout: float,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run due actions and the periodic jobs until SIGTERM or Ctrl-C.

    Due actions are claimed every minute, reminders every 30 minutes, overdue checks hourly,
    stale leads every 6 hours, the clean-up at 02:00 and summaries at 08:00 (local time in
    --timezone). Run as many workers as you like on one store: each slot and each action runs
    once. On SIGTERM the worker lets the running job finish (claimed actions are done or
    released), then exits 0. --metrics-port serves Prometheus metrics: action outcomes, due
    lag, job runs, parked actions.
    """
    settings = JobSettings(timezone=timezone)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with (
            logs(_level(log_level)),
            opened(url, create=False, prefix=prefix, schema=schema) as store,
            contextlib.ExitStack() as stack,
        ):
            storage, on_run, served = store.storage, None, None
            if metrics_port is not None:
                served = stack.enter_context(
                    serve_metrics(store.storage, metrics_port, host=metrics_host)
                )
                storage, on_run = served.storage, served.on_run
            flow = build_flow(storage, app=app, reps=reps)
            _warn_unrun(flow)
            if served is not None:
                runnable = flow.handlers.runnable()
                served.metrics.track_unhandled(flow.storage, runnable, clock=flow.clock)
            # The job runner logs each run itself (leadflow.scheduling): logging it here too
            # printed every run twice.
            runner = LeadflowJobs(flow, settings).runner(
                on_run=on_run, max_sleep=timedelta(seconds=30)
            )
            runner.start()
            log.info(
                "worker %s started on %s: jobs %s",
                runner.worker_id,
                store.target.shown,
                ", ".join(runner.jobs),
            )
            stop.wait()
            if not runner.stop(timeout=stop_timeout):
                fail(
                    f"a job was still running after {stop_timeout:g} s; exiting anyway (its "
                    "leases expire and another worker takes its work over)"
                )
            log.info("worker %s stopped cleanly", runner.worker_id)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@click.group("jobs", cls=LeadflowGroup)
def jobs() -> None:
    """List leadflow's periodic jobs, or run one once (for cron / Kubernetes CronJobs)."""


@jobs.command("list", cls=LeadflowCommand)
@click.option("--timezone", default="UTC", show_default=True, help="The business's time zone.")
def list_jobs(timezone: str) -> None:
    """The jobs with their schedules (cron, in --timezone) and what they do."""
    settings = JobSettings(timezone=timezone)
    for name in LeadflowJobs.NAMES:
        schedule = getattr(settings, name)
        click.echo(f"{name:<20} {schedule.cron:<14} grace {schedule.grace}")


@jobs.command("run", cls=LeadflowCommand)
@click.argument("name", type=click.Choice(LeadflowJobs.NAMES))
@store_options(required=True)
@_app_options
@click.option(
    "--at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"]),
    default=None,
    help="Run as of this time (ISO 8601 with its offset, e.g. 2026-03-02T02:05:00+00:00) "
    "instead of now: catch up a missed slot while it is within its grace.",
)
def run_job(
    name: str,
    url: str,
    prefix: str | None,
    schema: str | None,
    app: str | None,
    reps: tuple[str, ...],
    timezone: str,
    log_level: str,
    at: datetime | None,
) -> None:
    """Run job NAME's latest slot once and exit: call it at the job's times (see 'leadflow jobs
    list'). A slot that ran already (here or on another instance) or is past its grace is
    skipped (exit 0); a failed job exits 1."""
    with logs(_level(log_level)), opened(url, create=False, prefix=prefix, schema=schema) as store:
        flow = build_flow(store.storage, app=app, reps=reps)
        runner = LeadflowJobs(flow, JobSettings(timezone=timezone)).runner()
        run = runner.run_job(name, now=at)
    if run is None:
        click.echo(f"job {name}: nothing ran (its latest slot ran already or is past its grace)")
        return
    if run.status is not JobStatus.SUCCEEDED:
        fail(_describe(run))
    click.echo(_describe(run))
