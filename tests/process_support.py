"""The real-process harness shared by tests/test_sql_faults.py, tests/test_contrib_celery.py and
tests/test_celery_partitions.py: throwaway databases, worker processes (started with a JSON
config, watched through their JSON-lines logs, stopped with a signal), waiting until the store is
drained, and the exactly-once checks.

A worker process (tests/fault_worker.py or a ``celery worker`` on tests/celery_worker_app.py)
logs one JSON object a line: ``ready``, ``run`` (key, attempt), ``done`` (key, attempt),
``error``, ``mid-batch``... (see tests/fault_worker.py). Every wait here has a deadline that is
a guard against hanging forever, never a timing assertion.

Needs SQLAlchemy and the sql extra: import it after ``pytest.importorskip("leadflow.stores.sql")``.
Celery is imported only by :class:`CeleryWorkers`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from leadflow import Action, Event, ScheduledAction, ScheduledActionState
from leadflow.ports import Storage
from leadflow.stores.sql import sql_storage

from . import pgcluster, redis_server
from .fault_worker import ACTION_TYPE, create_effects_table, effects_engine, read_effects, read_log
from .suite import FIGURES

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get(pgcluster.URL_ENV)
NEEDS_PG = f"set {pgcluster.URL_ENV} to run against PostgreSQL (see tests/pgcluster.py)"
NEEDS_REDIS = (
    f"needs a Redis broker: set {redis_server.URL_ENV} or install redis-server "
    "(Debian: apt-get install redis-server)"
)
#: The backends of a ``target`` fixture (``indirect=True``): PostgreSQL when configured, SQLite.
BACKENDS = [
    pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=NEEDS_PG)),
    "sqlite",
]
LIVE = (ScheduledActionState.PENDING, ScheduledActionState.CLAIMED)


# --------------------------------------------------------------------------- databases


@dataclass
class Target:
    """A database for the flow (``url``) and for the effects table (``effects_url``)."""

    url: str
    effects_url: str

    def storage(self) -> Storage:
        target: Any = self.url
        if not self.url.startswith("sqlite"):
            target = sa.create_engine(self.url, pool_pre_ping=True)
        storage: Storage = sql_storage(target)
        return storage

    @property
    def dialect(self) -> str:
        return self.url.split(":")[0].split("+")[0]


@contextmanager
def fresh_target(kind: str, tmp_path: Path, prefix: str) -> Iterator[Target]:
    """A fresh, empty database with the effects table: with ``kind`` ``"postgresql"`` a new
    database named ``<prefix>_<random>`` on the ``LEADFLOW_TEST_POSTGRES_URL`` server (dropped
    afterwards), with ``"sqlite"`` a file in ``tmp_path`` (the effects in a file of their own)."""
    if kind == "sqlite":
        found = Target(f"sqlite:///{tmp_path / 'leadflow.db'}", f"sqlite:///{tmp_path / 'fx.db'}")
        create_effects_table(effects_engine(found.effects_url))
        yield found
        return
    assert kind == "postgresql", kind
    assert PG_URL is not None
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    create_effects_table(effects_engine(url))
    try:
        yield Target(url, url)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def redis_broker() -> Iterator[str]:
    """The broker URL: ``LEADFLOW_TEST_REDIS_URL`` (the CI's server), else a redis-server of
    its own (stopped afterwards); skips the test when there is neither."""
    url = os.environ.get(redis_server.URL_ENV)
    if url:
        yield url
        return
    if redis_server.find_binary() is None:
        pytest.skip(NEEDS_REDIS)
    server = redis_server.start()
    try:
        yield server.url
    finally:
        redis_server.stop(server.root)


def fault_action(
    key: str, event: Event, at: datetime, created: datetime, **extra: Any
) -> ScheduledAction:
    """One ``fault_effect`` action of ``event`` due at ``at`` (``extra``: further fields)."""
    return ScheduledAction(
        idempotency_key=key,
        event=event,
        rule_id="fault",
        rule_name="fault",
        action=Action.model_validate({"actionType": ACTION_TYPE}),
        planned_at=at,
        due_at=at,
        created_at=created,
        max_attempts=100,
        **extra,
    )


def schedule(storage: Storage, due: list[datetime], prefix: str) -> set[str]:
    """Store one ``fault_effect`` action per due time; returns their idempotency keys."""
    created = datetime.now(UTC)
    keys = set()
    for i, at in enumerate(due):
        key = f"{prefix}/{i:05d}"
        event = Event(id=f"{prefix}-{i:05d}", type="opportunity.created", time=at, payload={"n": i})
        action = fault_action(key, event, at, created)
        _, new = storage.scheduled.schedule(action)
        assert new, key
        keys.add(key)
    return keys


def state_counts(storage: Storage, limit: int) -> dict[str, int]:
    """How many actions are in each state (at most ``limit`` counted per state)."""
    return {
        state.value: len(storage.scheduled.list(state, limit=limit))
        for state in ScheduledActionState
    }


def wait_until_drained(
    storage: Storage,
    *,
    timeout: float,
    describe: Callable[[], str],
    ready: Callable[[], bool] | None = None,
    left: Callable[[], bool] | None = None,
    check: Callable[[], None] | None = None,
    tick: Callable[[], None] | None = None,
    interval: float = 0.25,
    retry_on: tuple[type[Exception], ...] = (),
) -> float:
    """Wait until no action is pending or claimed any more (with ``left``: until ``left()``,
    whether work is left, is false) and ``ready()`` holds; returns when (monotonic). Each
    round first calls ``check`` (e.g. that the workers are alive), and after a round that
    found work left, ``tick`` (e.g. kick a ``run_due``). ``retry_on`` exceptions (a server
    restarting) are retried. Fails the test, with ``describe()``, after ``timeout`` seconds (a
    hang guard, not a timing check)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        if check is not None:
            check()
        try:
            if left is not None:
                live = left()
            else:
                live = any(storage.scheduled.list(state, limit=1) for state in LIVE)
            if not live and (ready is None or ready()):
                return time.monotonic()
        except retry_on as exc:  # a restart: try again
            last = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"not drained after {timeout:.0f} s: {describe()}, last error {last!r}")
        if tick is not None:
            tick()
        time.sleep(interval)


# --------------------------------------------------------------------------- processes


class Processes:
    """Worker processes on one target, their configs (``<name>.json``), logs (``<name>.log``)
    and outputs (``<name>.out``) in ``dir``."""

    #: how long a wait may last before the test fails (a hang guard)
    timeout = 240.0
    #: how much of each worker's output a failure shows
    tail = 2000

    def __init__(self, target: Target, tmp_path: Path) -> None:
        self.target = target
        self.dir = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def write_config(self, name: str, **config: Any) -> Path:
        """Write worker ``name``'s config (its name, the target, its log, then ``config``)."""
        settings = {
            "name": name,
            "url": self.target.url,
            "effects_url": self.target.effects_url,
            "log": str(self.dir / f"{name}.log"),
            **config,
        }
        path = self.dir / f"{name}.json"
        path.write_text(json.dumps(settings), encoding="utf-8")
        return path

    def start(self, name: str, command: list[str], *, env: dict[str, str] | None = None) -> None:
        """Start worker ``name`` (in the project root, output to ``<name>.out``)."""
        with open(self.dir / f"{name}.out", "wb") as out:
            self.procs[name] = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self, name: str) -> list[dict[str, Any]]:
        return read_log(self.dir / f"{name}.log")

    def logs(self) -> list[dict[str, Any]]:
        """Every worker's log lines, each with ``worker`` set to the worker's name."""
        return [dict(e, worker=n) for n in self.procs for e in self.log(n)]

    def outputs(self) -> str:
        return "\n".join(
            f"--- {n}: {(self.dir / f'{n}.out').read_text(errors='replace')[-self.tail :]}"
            for n in self.procs
        )

    def check_alive(self, *, except_: str | Collection[str] | None = None) -> None:
        """Raise if a worker (other than ``except_``: a name or names) has exited."""
        skip = {except_} if isinstance(except_, str) else set(except_ or ())
        for name, proc in self.procs.items():
            if name not in skip and proc.poll() is not None:
                raise AssertionError(f"worker {name} exited ({proc.returncode}):\n{self.outputs()}")

    def wait_for(
        self, name: str, ev: str, *, block: bool = True, except_: str | None = None
    ) -> dict[str, Any] | None:
        """The first ``ev`` line of worker ``name`` (None if none yet and not ``block``); while
        waiting, the workers but ``except_`` must stay alive."""
        deadline = time.monotonic() + self.timeout
        while True:
            found = [e for e in self.log(name) if e["ev"] == ev]
            if found:
                return found[0]
            if not block:
                return None
            self.check_alive(except_=except_)
            if time.monotonic() >= deadline:  # a hang guard, not a timing check
                pytest.fail(f"{name} never logged {ev}:\n{self.outputs()}")
            time.sleep(0.02)

    def line(self, name: str, ev: str, *, except_: str | None = None) -> dict[str, Any]:
        """The first ``ev`` line of worker ``name``, waited for."""
        found = self.wait_for(name, ev, except_=except_)
        assert found is not None
        return found

    def signal(self, name: str, sig: int = signal.SIGKILL, *, timeout: float | None = 60) -> int:
        """Send ``sig`` to worker ``name`` and wait for it to exit; its exit code."""
        proc = self.procs[name]
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class CeleryWorkers(Processes):
    """``celery worker`` processes (tests/celery_worker_app.py, solo pool) on one database and
    broker, consuming a queue of their own (``queue``, unique per instance) unless told
    otherwise; ``app`` sends them tasks."""

    timeout = 300.0
    tail = 3000

    def __init__(self, target: Target, broker: str, tmp_path: Path, *, prefix: str) -> None:
        from .celery_worker_app import make_app

        super().__init__(target, tmp_path)
        self.broker = broker
        self.queue = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.app = make_app(broker)

    def spawn(self, name: str, *, queues: list[str] | None = None, **config: Any) -> None:
        """Start worker ``name`` consuming ``queues`` (default: ``[self.queue]``), its config
        ``config`` (see tests/celery_worker_app.py)."""
        from .celery_worker_app import CONFIG_ENV

        path = self.write_config(name, broker=self.broker, queue=self.queue, **config)
        command = [
            sys.executable, "-m", "celery", "-A", "tests.celery_worker_app", "worker",
            "-P", "solo", "-Q", ",".join(queues or [self.queue]), "-n", f"{name}@%h",
            "-l", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.start(name, command, env={**os.environ, CONFIG_ENV: str(path)})

    def wait_ready(self) -> None:
        for name in self.procs:
            self.wait_for(name, "ready")

    def send_event(self, document: dict[str, Any]) -> None:
        self.app.send_task("leadflow.handle_event", args=(document,), queue=self.queue)

    def kick(self, *, queue: str | None = None, **kwargs: Any) -> None:
        """Queue one ``run_due`` (what beat's entry does) on ``queue`` (default: ``self.queue``),
        with ``kwargs``."""
        self.app.send_task("leadflow.run_due", kwargs=kwargs or None, queue=queue or self.queue)


# --------------------------------------------------------------------------- checks


def shared_claims(logs: list[dict[str, Any]]) -> dict[str, list[tuple[int, str]]]:
    """The actions one claim (attempt) of which ran twice while its first holder was still
    alive: two workers held it at once, or one ran it after another had carried on. A claim
    whose holder was dead before the second run began may run again (see
    :func:`check_exactly_once`)."""
    attempts: dict[str, list[tuple[int, str]]] = defaultdict(list)
    run_times: dict[tuple[str, int], list[tuple[float, str]]] = defaultdict(list)
    last_seen: dict[str, float] = {}  # each worker's last log line: it was alive until then
    for entry in logs:
        worker = entry.get("worker")
        if worker is not None:
            last_seen[worker] = max(last_seen.get(worker, 0.0), float(entry["t"]))
        if entry["ev"] == "run":
            attempts[entry["key"]].append((int(entry["attempt"]), entry["worker"]))
            run_times[entry["key"], int(entry["attempt"])].append((float(entry["t"]), worker))

    def holder_died_first(runs: list[tuple[float, str]]) -> bool:
        runs = sorted(runs)
        return all(last_seen[w] < later for (_, w), (later, _) in pairwise(runs))

    return {
        k: v
        for k, v in attempts.items()
        if len({a for a, _ in v}) != len(v)
        and not all(holder_died_first(run_times[k, a]) for a in {a for a, _ in v})
    }


def check_exactly_once(
    storage: Storage, effects: sa.Engine, keys: set[str], logs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Assert exactly once, in effect and in the store: every key's effect stored, none other;
    every action done; no two runs of one claim (attempt) of an action (two workers never held
    it at once); no run after a ``mark_done`` returned; every exception that escaped leadflow
    one of its own. Returns the figures.

    One claim may run twice only when its first holder was dead before the second run began:
    ``handle`` stores an event's actions and runs the due ones in one transaction, so a worker
    killed before its commit leaves no claim behind, and the event handed in again runs them
    again under the same attempt number (the effect is keyed, so it applies once). Overlapping
    runs of one claim, or one after its holder carried on, still fail."""
    stored = read_effects(effects)
    missing, extra = keys - set(stored), set(stored) - keys
    assert not missing and not extra, (
        f"{len(missing)} effect(s) lost (e.g. {sorted(missing)[:5]}), "
        f"{len(extra)} unexpected (e.g. {sorted(extra)[:5]})"
    )
    done = storage.scheduled.list(ScheduledActionState.DONE, limit=len(keys) + 10)
    assert {a.idempotency_key for a in done} == keys, state_counts(storage, len(keys) + 10)
    assert len(done) == len(keys)

    attempts: dict[str, list[tuple[int, str]]] = defaultdict(list)
    done_at: dict[str, int] = {}
    for entry in logs:
        if entry["ev"] == "run":
            attempts[entry["key"]].append((int(entry["attempt"]), entry["worker"]))
        elif entry["ev"] == "done":
            first = done_at.get(entry["key"], int(entry["attempt"]))
            done_at[entry["key"]] = min(first, int(entry["attempt"]))
    shared = shared_claims(logs)
    assert not shared, f"two runs of one claim (attempt) of an action: {list(shared.items())[:5]}"
    after_done = {
        k: (done_at[k], v) for k, v in attempts.items() if k in done_at and max(v)[0] > done_at[k]
    }
    assert not after_done, f"ran again after mark_done: {list(after_done.items())[:5]}"

    errors = [e for e in logs if e["ev"] == "error"]
    foreign = [e for e in errors if not e["leadflow"]]
    assert not foreign, f"raw driver exceptions escaped leadflow: {foreign[:5]}"
    runs = sum(len(v) for v in attempts.values())
    return {
        "actions": len(keys),
        "handler_runs": runs,
        "reruns": runs - len(keys),
        "retaken": sum(1 for v in attempts.values() if max(v)[0] > 1),
        "effect_reapplied": sum(applied for _, _, applied in stored.values()) - len(stored),
        "errors": len(errors),
        "unavailable": sum(1 for e in errors if e["unavailable"]),
        "error_types": sorted({e["type"] for e in errors}),
    }


def report(request: pytest.FixtureRequest, tag: str, name: str, figures: Any) -> None:
    """Keep ``[tag] name: figures`` with the test's report: tests/conftest.py prints every test's
    figures at the end of the run (also with ``-n``, whose test processes print nothing)."""
    line = f"[{tag}] {name}: {json.dumps(figures, default=str)}"
    request.node.user_properties.append((FIGURES, line))
