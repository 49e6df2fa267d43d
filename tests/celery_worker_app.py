"""The Celery app of the Celery tests and benchmark: ``celery -A tests.celery_worker_app worker``
with ``LEADFLOW_CELERY_CONFIG`` naming a JSON config (written by the test).

Each worker process builds, through :func:`leadflow.contrib.celery.install`, a LeadFlow on a SQL
database with one extra action type, ``fault_effect`` (as in tests/fault_worker.py): its handler
stores its effect keyed on the idempotency key (an upsert counting re-applications) and logs a
``run`` line; ``mark_done`` logs ``done`` (tests/fault_worker.py's ``DoneLogging``). With
``kill_after`` the worker logs ``mid-batch`` after that many effects and waits to be killed;
with ``hold_first`` the first effect waits until the worker is shutting down, then logs
``released`` (the SIGTERM test: the signal lands in the middle of a batch, whatever the
machine's speed). ``ready`` is logged
when the worker consumes, ``shutdown`` when it stops. ``partitions`` (default 1) is the flow's
``FlowSettings.partitions`` and ``install``'s ``partitions``; ``run`` lines carry the action's
partition. With ``log_tasks`` each task that ran logs a ``task`` line (its name, kwargs, start
time ``started`` and result). ``bench`` logs ``start`` lines (due time, start time)
without the effects table, for benchmarks/bench_celery.py.

Config keys: name, url, effects_url, log, broker, queue, batch, lease, visibility_timeout,
kill_after, hold_first, bench, partitions, log_tasks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery import Celery, signals  # type: ignore[import-untyped]

from leadflow import FlowSettings, HandlerRegistry, LeadFlow
from leadflow.contrib.celery import LeadflowTasks, install
from leadflow.runtime.actions import ActionContext
from leadflow.runtime.settings import RetryPolicy

from .fault_worker import _APPLY, ACTION_TYPE, KILL_WAIT, DoneLogging, Log, effects_engine

CONFIG_ENV = "LEADFLOW_CELERY_CONFIG"


def load_config() -> dict[str, Any]:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        return {}
    config: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return config


def make_app(broker: str, *, visibility_timeout: float = 3600.0) -> Celery:
    """A Celery app on ``broker`` configured as the tests run it (JSON, no result backend)."""
    app = Celery("leadflow-tests", broker=broker)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_prefetch_multiplier=4,
        # A dead worker's unacknowledged messages come back after the visibility timeout, at
        # the next sweep: one a second here (kombu's default is a scan every 100 s).
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


class Worker:
    """One worker process's test side: the effect handler and the flow factory."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.name = str(config["name"])
        self.log = Log(str(config["log"]))
        self.bench = bool(config.get("bench"))
        self.effects = None if self.bench else effects_engine(str(config["effects_url"]))
        self.kill_after: int | None = config.get("kill_after")
        self.hold_first = bool(config.get("hold_first"))
        self.shutting_down = False  # set by Celery's worker_shutting_down (SIGTERM)
        self.partitions = int(config.get("partitions", 1))
        self.runs = 0

    def effect(self, ctx: ActionContext) -> str:
        scheduled = ctx.scheduled
        if self.bench:
            self.log.write(
                "start",
                key=scheduled.idempotency_key,
                due=scheduled.due_at.timestamp(),
                at=time.time(),
            )
            return "bench"
        self.log.write(
            "run",
            key=scheduled.idempotency_key,
            attempt=scheduled.attempts,
            partition=scheduled.partition,
        )
        if self.hold_first and self.runs == 0:
            # Celery's SIGTERM handler runs between two of these sleeps (this is its main
            # thread) and sets shutting_down; a hang guard, KILL_WAIT, bounds the wait.
            deadline = time.monotonic() + KILL_WAIT
            while not self.shutting_down and time.monotonic() < deadline:
                time.sleep(0.01)
            self.log.write("released", shutting_down=self.shutting_down)
        assert self.effects is not None
        with self.effects.begin() as conn:
            conn.execute(
                _APPLY,
                {
                    "key": scheduled.idempotency_key,
                    "worker": self.name,
                    "event_id": scheduled.event.id,
                    "action_index": scheduled.action_index,
                },
            )
        self.runs += 1
        if self.kill_after is not None and self.runs == self.kill_after:
            self.log.write("mid-batch", key=scheduled.idempotency_key, pid=os.getpid())
            time.sleep(KILL_WAIT)
        return "effect stored"

    def flow(self) -> LeadFlow:
        from leadflow.stores.sql import sql_storage

        url = str(self.config["url"])
        target: Any = url
        if not url.startswith("sqlite"):
            target = sa.create_engine(url, pool_pre_ping=True, pool_size=2)
        storage = sql_storage(target)
        if not self.bench:
            storage = dataclasses.replace(
                storage, scheduled=DoneLogging(storage.scheduled, self.log)
            )
        handlers = HandlerRegistry.default()
        handlers.register(ACTION_TYPE, self.effect)
        retry = timedelta(seconds=0.2)
        settings = FlowSettings(
            action_lease=timedelta(seconds=float(self.config.get("lease", 5.0))),
            retry=RetryPolicy(max_attempts=100, base=retry, cap=retry * 4),
            worker_id=f"{self.name}:{os.getpid()}",
            partitions=self.partitions,
        )
        return LeadFlow.in_memory(storage=storage, handlers=handlers, settings=settings)


_config = load_config()
app = make_app(
    str(_config.get("broker", "memory://")),
    visibility_timeout=float(_config.get("visibility_timeout", 3600.0)),
)
tasks: LeadflowTasks | None = None

if _config:
    _worker = Worker(_config)
    tasks = install(
        app,
        _worker.flow,
        queue=str(_config.get("queue", "leadflow")),
        batch=int(_config.get("batch", 100)),
        # (passed only when set, so the app still loads where install() has no partitions)
        **({"partitions": _worker.partitions} if _worker.partitions != 1 else {}),
    )

    @signals.worker_ready.connect  # type: ignore[untyped-decorator]
    def _ready(**_: Any) -> None:
        assert tasks is not None
        tasks.flow()  # build it now: the first task's latency is not the factory's
        _worker.log.write("ready", pid=os.getpid(), at=datetime.now(UTC).isoformat())

    @signals.worker_shutting_down.connect  # type: ignore[untyped-decorator]
    def _shutting_down(**_: Any) -> None:
        _worker.shutting_down = True

    @signals.worker_shutdown.connect  # type: ignore[untyped-decorator]
    def _shutdown(**_: Any) -> None:
        _worker.log.write("shutdown", runs=_worker.runs)

    if _config.get("log_tasks"):
        _started: dict[str, float] = {}

        @signals.task_prerun.connect  # type: ignore[untyped-decorator]
        def _prerun(task_id: str, **_: Any) -> None:
            _started[task_id] = time.time()

        @signals.task_postrun.connect  # type: ignore[untyped-decorator]
        def _postrun(
            task_id: str, task: Any, kwargs: Any = None, retval: Any = None, **_: Any
        ) -> None:
            _worker.log.write(
                "task",
                name=task.name,
                kwargs=kwargs or {},
                started=_started.pop(task_id, None),
                result=retval if isinstance(retval, dict) else repr(retval),
            )
