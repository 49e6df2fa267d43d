"""leadflow.contrib.celery with real processes (issue 12): a throwaway redis-server as broker
(``LEADFLOW_TEST_REDIS_URL``, else one started here with tests/redis_server.py) and real
``celery worker`` processes (tests/celery_worker_app.py, solo pool) on PostgreSQL
(``LEADFLOW_TEST_POSTGRES_URL``) and on a SQLite file.

- Events through four workers while one is SIGKILLed in the middle of its work (an effect
  stored, its message unacknowledged, its batch claimed): every effect exactly once, none lost.
  Each event plans two ``fault_effect`` actions: one run at once by ``handle_event``, one due
  three seconds later and run by ``run_due``. ``LEADFLOW_TEST_CELERY_EVENTS`` sets the count
  (default 2,000 on PostgreSQL, 600 on SQLite, to keep the suite's run short on two shared
  cores; the issue's 20,000 is ``LEADFLOW_TEST_CELERY_EVENTS=20000``).
- A worker stopped with SIGTERM in the middle of a batch finishes the batch before exiting:
  none of its claims is left for a lease to expire.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow import Event, FollowUpRule, ScheduledActionState

from . import pgcluster, redis_server

pytest.importorskip("celery", reason="needs the celery extra")
sql_stores = pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")
import sqlalchemy as sa  # noqa: E402

from .celery_worker_app import CONFIG_ENV, make_app  # noqa: E402
from .fault_worker import (  # noqa: E402
    ACTION_TYPE,
    count_effects,
    create_effects_table,
    effects_engine,
    read_effects,
    read_log,
)
from .test_sql_faults import Target, check_exactly_once, schedule, state_counts  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get(pgcluster.URL_ENV)
NEEDS_PG = f"set {pgcluster.URL_ENV} to run against PostgreSQL (see tests/pgcluster.py)"
NEEDS_REDIS = (
    f"needs a Redis broker: set {redis_server.URL_ENV} or install redis-server "
    "(Debian: apt-get install redis-server)"
)
BACKENDS = [
    pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=NEEDS_PG)),
    "sqlite",
]
QUEUE = "leadflow-test"
DRAIN_TIMEOUT = 300.0  # a guard against hanging forever, not a timing assertion
LIVE = (ScheduledActionState.PENDING, ScheduledActionState.CLAIMED)


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """The broker URL: the CI's server, else a redis-server of this session's own."""
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


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A fresh database (a new PostgreSQL database, dropped afterwards, or a SQLite file) with
    the effects table."""
    if request.param == "sqlite":
        found = Target(f"sqlite:///{tmp_path / 'leadflow.db'}", f"sqlite:///{tmp_path / 'fx.db'}")
        create_effects_table(effects_engine(found.effects_url))
        yield found
        return
    assert PG_URL is not None
    name = f"leadflow_celery_{uuid.uuid4().hex[:12]}"
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


class CeleryWorkers:
    """``celery worker`` processes on one database and broker; configs and logs in ``dir``."""

    def __init__(self, target: Target, broker: str, tmp_path: Path) -> None:
        self.target = target
        self.broker = broker
        self.dir = tmp_path
        self.queue = f"{QUEUE}-{uuid.uuid4().hex[:8]}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.app = make_app(broker)

    def spawn(self, name: str, **config: Any) -> None:
        settings = {
            "name": name,
            "url": self.target.url,
            "effects_url": self.target.effects_url,
            "log": str(self.dir / f"{name}.log"),
            "broker": self.broker,
            "queue": self.queue,
            **config,
        }
        path = self.dir / f"{name}.json"
        path.write_text(json.dumps(settings), encoding="utf-8")
        command = [
            sys.executable, "-m", "celery", "-A", "tests.celery_worker_app", "worker",
            "-P", "solo", "-Q", self.queue, "-n", f"{name}@%h", "-l", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with open(self.dir / f"{name}.out", "wb") as out:
            self.procs[name] = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, CONFIG_ENV: str(path)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self, name: str) -> list[dict[str, Any]]:
        return read_log(self.dir / f"{name}.log")

    def logs(self) -> list[dict[str, Any]]:
        return [dict(e, worker=n) for n in self.procs for e in self.log(n)]

    def outputs(self) -> str:
        return "\n".join(
            f"--- {n}: {(self.dir / f'{n}.out').read_text(errors='replace')[-3000:]}"
            for n in self.procs
        )

    def check_alive(self, *, except_: str | None = None) -> None:
        for name, proc in self.procs.items():
            if name != except_ and proc.poll() is not None:
                raise AssertionError(f"worker {name} exited ({proc.returncode}):\n{self.outputs()}")

    def wait_for(self, name: str, ev: str, *, except_: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            found = [e for e in self.log(name) if e["ev"] == ev]
            if found:
                return found[0]
            self.check_alive(except_=except_)
            if time.monotonic() >= deadline:  # a hang guard, not a timing check
                pytest.fail(f"{name} never logged {ev}:\n{self.outputs()}")
            time.sleep(0.02)

    def wait_ready(self) -> None:
        for name in self.procs:
            self.wait_for(name, "ready")

    def send_event(self, document: dict[str, Any]) -> None:
        self.app.send_task("leadflow.handle_event", args=(document,), queue=self.queue)

    def kick(self) -> None:
        self.app.send_task("leadflow.run_due", queue=self.queue)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(target: Target, broker: str, tmp_path: Path) -> Iterator[CeleryWorkers]:
    running = CeleryWorkers(target, broker, tmp_path)
    try:
        yield running
    finally:
        running.kill_all()
        running.app.close()


def event_count(target: Target) -> int:
    default = 2000 if target.url.startswith("postgresql") else 600
    return int(os.environ.get("LEADFLOW_TEST_CELERY_EVENTS", default))


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
def test_events_through_four_workers_one_killed(
    target: Target, workers: CeleryWorkers, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = target.storage()
    effects = effects_engine(target.effects_url)
    storage.rules.create(
        FollowUpRule.model_validate(
            {
                "ruleId": "celery-fx",
                "name": "celery effects",
                "trigger": {"eventType": "opportunity.created", "conditions": []},
                "actions": [
                    {"actionType": ACTION_TYPE},
                    {"actionType": ACTION_TYPE, "delay": {"amount": 0.05, "unit": "minutes"}},
                ],
            }
        )
    )
    count = event_count(target)
    common = {"batch": 20, "lease": 3.0, "visibility_timeout": 8.0}
    workers.spawn("w0", kill_after=max(count // 8, 5), **common)
    for n in range(1, 4):
        workers.spawn(f"w{n}", **common)
    workers.wait_ready()

    started = time.monotonic()
    for i in range(count):
        at = datetime.now(UTC)
        event = Event(
            id=f"ev-{i:05d}", type="opportunity.created", time=at, payload={"opportunityId": i}
        )
        workers.send_event(event.to_document())
        if i % 200 == 0:
            workers.kick()  # what beat's run_due entry does
    victim = workers.wait_for("w0", "mid-batch")
    workers.procs["w0"].send_signal(signal.SIGKILL)
    workers.procs["w0"].wait()
    killed = time.monotonic()

    expected = 2 * count
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        workers.check_alive(except_="w0")
        done = count_effects(effects)
        live = [storage.scheduled.list(state, limit=1) for state in LIVE]
        if done >= expected and not any(live):
            break
        if time.monotonic() >= deadline:  # a hang guard, not a timing check
            pytest.fail(
                f"not drained: {done} of {expected} effects, "
                f"states {state_counts(storage, expected + 10)}\n{workers.outputs()}"
            )
        workers.kick()
        time.sleep(0.5)
    drained = time.monotonic()

    planned = storage.scheduled.list(limit=expected + 10)
    keys = {a.idempotency_key for a in planned}
    assert len(planned) == len(keys) == expected, "each event planned its two actions once"
    figures = check_exactly_once(storage, effects, keys, workers.logs())
    pairs = sorted((event_id, index) for event_id, index, _ in read_effects(effects).values())
    assert pairs == [(f"ev-{i:05d}", n) for i in range(count) for n in range(2)]
    figures.update(
        events=count,
        victim_key=victim["key"],
        seconds_total=round(drained - started, 1),
        seconds_after_kill=round(drained - killed, 1),
        per_worker={
            n: sum(1 for e in workers.log(n) if e["ev"] == "run") for n in sorted(workers.procs)
        },
    )
    with capsys.disabled():
        backend = target.url.split(":")[0].split("+")[0]
        print(f"\n[celery] kill one of four ({backend}): {json.dumps(figures)}")


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
def test_sigterm_finishes_the_claimed_batch(
    target: Target, workers: CeleryWorkers, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = target.storage()
    keys = schedule(storage, [datetime.now(UTC) - timedelta(seconds=1)] * 30, "term")
    # A long lease: were the batch left claimed, nothing would take it over during the test.
    workers.spawn("w0", batch=10, lease=600.0, effect_sleep=0.2)
    workers.wait_ready()
    workers.kick()
    first = workers.wait_for("w0", "run")
    workers.procs["w0"].send_signal(signal.SIGTERM)
    code = workers.procs["w0"].wait(timeout=DRAIN_TIMEOUT)
    assert code == 0, workers.outputs()

    counts = state_counts(storage, 100)
    assert counts["claimed"] == 0, f"claims left for their lease to expire: {counts}"
    runs = [e for e in workers.log("w0") if e["ev"] == "run"]
    done = storage.scheduled.list(ScheduledActionState.DONE, limit=100)
    assert len(runs) == 10 == len(done), (len(runs), counts)  # the whole batch, nothing more
    assert counts["pending"] == len(keys) - 10
    assert any(e["ev"] == "shutdown" for e in workers.log("w0"))
    with capsys.disabled():
        print(f"\n[celery] SIGTERM mid-batch: first run {first['key']}, states {counts}")
