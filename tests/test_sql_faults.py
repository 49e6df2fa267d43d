"""Faults across real processes on a real SQL database (issue 10, "Faults"): workers are
``python tests/fault_worker.py`` processes, each a LeadFlow on ``sql_storage``; the test action
stores its effect keyed on the idempotency key and counts how often it was applied.

- A worker is SIGKILLed in the middle of a batch (its effect stored, its batch claimed): every
  one of 2,000 actions takes effect exactly once, on PostgreSQL and on a SQLite file.
- Chaos: PostgreSQL is restarted (immediate shutdown) at random 5-40 s intervals while four
  workers run 5,000 delayed actions: workers see ``UnavailableError`` and recover; exactly once.
- Two instances handle the same event stream at once: every event's actions run once.

After each run the test checks, besides the effects: every action is ``done`` in the store; no
two runs of an action share an attempt number (two workers never held it at once); no action
ran again after a ``mark_done`` returned; every exception that escaped leadflow is one of its
own. It prints the figures (re-runs, unavailable errors, recovery times).

PostgreSQL variants need ``LEADFLOW_TEST_POSTGRES_URL``; the chaos test needs
``LEADFLOW_TEST_POSTGRES_CLUSTER`` (a cluster made by ``tests/pgcluster.py``): with its binaries it
makes a cluster of its own to restart, so the suite's server and its pooled connections live on.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow import Action, Event, FollowUpRule, ScheduledAction, ScheduledActionState
from leadflow.errors import UnavailableError
from leadflow.ports import Storage

from . import pgcluster

# Skip (not fail) where the sql extra (SQLAlchemy) is not installed.
sql_stores = pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")
import sqlalchemy as sa  # noqa: E402

from .fault_worker import (  # noqa: E402
    ACTION_TYPE,
    count_effects,
    create_effects_table,
    effects_engine,
    read_effects,
    read_log,
    recovery_times,
)

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "fault_worker.py"
PG_URL = os.environ.get(pgcluster.URL_ENV)
CLUSTER = os.environ.get(pgcluster.CLUSTER_ENV)
NEEDS_PG = f"set {pgcluster.URL_ENV} to run against PostgreSQL (see tests/pgcluster.py)"
NEEDS_CLUSTER = (
    f"set {pgcluster.CLUSTER_ENV} to a cluster made by `tests/pgcluster.py start` (the chaos test "
    "makes and restarts a cluster of its own with its binaries)"
)
BACKENDS = [
    pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=NEEDS_PG)),
    "sqlite",
]
LIVE = (ScheduledActionState.PENDING, ScheduledActionState.CLAIMED)
DRAIN_TIMEOUT = 240.0  # a guard against hanging forever, not a timing assertion


# --------------------------------------------------------------------------- databases


@dataclass
class Target:
    url: str
    effects_url: str

    def storage(self) -> Storage:
        target: Any = self.url
        if not self.url.startswith("sqlite"):
            target = sa.create_engine(self.url, pool_pre_ping=True)
        storage: Storage = sql_stores.sql_storage(target)
        return storage


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A fresh, empty database: a new database on the PostgreSQL server (dropped afterwards)
    or a SQLite file; the effects table is created (on SQLite, in a file of its own)."""
    if request.param == "sqlite":
        found = Target(f"sqlite:///{tmp_path / 'leadflow.db'}", f"sqlite:///{tmp_path / 'fx.db'}")
        create_effects_table(effects_engine(found.effects_url))
        yield found
        return
    assert PG_URL is not None
    name = f"leadflow_fault_{uuid.uuid4().hex[:12]}"
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


def schedule(storage: Storage, due: list[datetime], prefix: str) -> set[str]:
    """Store one ``fault_effect`` action per due time; returns their idempotency keys."""
    created = datetime.now(UTC)
    keys = set()
    for i, at in enumerate(due):
        key = f"{prefix}/{i:05d}"
        event = Event(id=f"{prefix}-{i:05d}", type="opportunity.created", time=at, payload={"n": i})
        action = ScheduledAction(
            idempotency_key=key,
            event=event,
            rule_id="fault",
            rule_name="fault",
            action=Action.model_validate({"actionType": ACTION_TYPE}),
            planned_at=at,
            due_at=at,
            created_at=created,
            max_attempts=100,
        )
        _, new = storage.scheduled.schedule(action)
        assert new, key
        keys.add(key)
    return keys


# --------------------------------------------------------------------------- processes


class Workers:
    """Worker processes on one target, their configs and logs in ``tmp_path``."""

    def __init__(self, target: Target, tmp_path: Path) -> None:
        self.target = target
        self.dir = tmp_path
        self.stop_file = tmp_path / "stop"
        self.go_file = tmp_path / "go"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, **config: Any) -> None:
        settings = {
            "name": name,
            "url": self.target.url,
            "effects_url": self.target.effects_url,
            "log": str(self.dir / f"{name}.log"),
            "stop": str(self.stop_file),
            "go": str(self.go_file),
            **config,
        }
        path = self.dir / f"{name}.json"
        path.write_text(json.dumps(settings), encoding="utf-8")
        with open(self.dir / f"{name}.out", "wb") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, str(WORKER), str(path)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def go(self) -> None:
        """Release the workers together (once each has built its flow)."""
        deadline = time.monotonic() + 120
        while not all(any(e["ev"] == "ready" for e in self.log(n)) for n in self.procs):
            self.check_alive()
            if time.monotonic() >= deadline:  # a hang guard, not a timing check
                pytest.fail(f"workers not ready:\n{self.outputs()}")
            time.sleep(0.05)
        self.go_file.touch()

    def log(self, name: str) -> list[dict[str, Any]]:
        return read_log(self.dir / f"{name}.log")

    def logs(self) -> list[dict[str, Any]]:
        return [dict(e, worker=n) for n in self.procs for e in self.log(n)]

    def outputs(self) -> str:
        return "\n".join(
            f"--- {n}: {(self.dir / f'{n}.out').read_text(errors='replace')[-2000:]}"
            for n in self.procs
        )

    def check_alive(self, *, except_: str | None = None) -> None:
        for name, proc in self.procs.items():
            if name != except_ and proc.poll() is not None:
                raise AssertionError(f"worker {name} exited ({proc.returncode}):\n{self.outputs()}")

    def wait_for(self, name: str, ev: str, *, block: bool = True) -> dict[str, Any] | None:
        """The first ``ev`` line of worker ``name`` (None if none yet and not ``block``)."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            found = [e for e in self.log(name) if e["ev"] == ev]
            if found:
                return found[0]
            if not block:
                return None
            self.check_alive()
            if time.monotonic() >= deadline:  # a hang guard, not a timing check
                pytest.fail(f"{name} never logged {ev}:\n{self.outputs()}")
            time.sleep(0.02)

    def finish(self) -> dict[str, int]:
        """Stop the workers; their exit codes."""
        self.stop_file.touch()
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(target: Target, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(target, tmp_path)
    try:
        yield running
    finally:
        running.kill_all()


def state_counts(storage: Storage, limit: int) -> dict[str, int]:
    return {
        state.value: len(storage.scheduled.list(state, limit=limit))
        for state in ScheduledActionState
    }


def wait_drained(
    storage: Storage, effects: sa.Engine, expected: int, run: Workers, *, handled: bool = False
) -> float:
    """Wait until no action is pending or claimed any more (the checks then find out whether
    each took effect once), and with ``handled`` until every worker handled its events;
    returns when (monotonic). Errors while the server restarts are retried."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    last: Any = None
    while time.monotonic() < deadline:
        try:
            live: list[list[Any]] = [storage.scheduled.list(state, limit=1) for state in LIVE]
            if handled:
                live.append([n for n in run.procs if not run.wait_for(n, "handled", block=False)])
            if not any(live):
                return time.monotonic()
        except (UnavailableError, sa.exc.OperationalError) as exc:  # a restart: try again
            last = exc
        time.sleep(0.25)
    raise AssertionError(
        f"not drained after {DRAIN_TIMEOUT:.0f} s: {count_effects(effects)} of {expected} "
        f"effects, states {state_counts(storage, expected + 10)}, last error {last!r}\n"
        f"{run.outputs()}"
    )


# --------------------------------------------------------------------------- checks


def check_exactly_once(
    storage: Storage, effects: sa.Engine, keys: set[str], logs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Assert exactly once in effect and in the store; return the figures."""
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
    shared = {k: v for k, v in attempts.items() if len({a for a, _ in v}) != len(v)}
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


def dialect(target: Target) -> str:
    return target.url.split(":")[0].split("+")[0]


def report(capsys: pytest.CaptureFixture[str], name: str, figures: dict[str, Any]) -> None:
    with capsys.disabled():
        print(f"\n[faults] {name}: {json.dumps(figures, default=str)}")


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
def test_worker_killed_mid_batch_loses_and_doubles_nothing(
    target: Target, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = target.storage()
    effects = effects_engine(target.effects_url)
    now = datetime.now(UTC)
    keys = schedule(storage, [now - timedelta(seconds=1)] * 2000, "kill")
    for n in range(4):
        workers.spawn(f"w{n}", lease=2.0, limit=20, kill_after=25 if n == 0 else None)
    started = time.monotonic()
    workers.go()
    victim = workers.wait_for("w0", "mid-batch")
    assert victim is not None
    os.kill(int(victim["pid"]), signal.SIGKILL)
    killed = time.monotonic()
    assert workers.procs["w0"].wait(timeout=60) == -signal.SIGKILL
    drained = wait_drained(storage, effects, len(keys), workers)
    codes = workers.finish()
    assert all(code == 0 for name, code in codes.items() if name != "w0"), workers.outputs()

    logs = workers.logs()
    figures = check_exactly_once(storage, effects, keys, logs)
    # The crash window was exercised: the victim's effect was stored, the action ran again
    # elsewhere after its lease expired, and the effect still happened once.
    assert read_effects(effects)[victim["key"]][2] >= 2
    assert any(e["ev"] == "done" and e["key"] == victim["key"] for e in logs)
    report(
        capsys,
        f"sigkill/{dialect(target)}",
        {
            **figures,
            "seconds": round(drained - started, 1),
            "after_kill": round(drained - killed, 1),
        },
    )


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
def test_two_instances_handle_one_event_stream(
    target: Target, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = target.storage()
    effects = effects_engine(target.effects_url)
    storage.rules.create(
        FollowUpRule.model_validate(
            {
                "ruleId": "fault",
                "name": "fault",
                "trigger": {"eventType": "opportunity.created", "conditions": []},
                "actions": [
                    {"actionType": ACTION_TYPE},
                    {"actionType": ACTION_TYPE, "delay": {"amount": 30, "unit": "minutes"}},
                ],
            }
        )
    )
    count = 400
    at = datetime.now(UTC) - timedelta(minutes=1)
    for n in range(2):
        workers.spawn(
            f"app{n}",
            mode="handle",
            events={"count": count, "time": at.isoformat()},
            run_at=(at + timedelta(hours=2)).isoformat(),
            lease=5.0,
        )
    started = time.monotonic()
    workers.go()
    drained = wait_drained(storage, effects, 2 * count, workers, handled=True)
    codes = workers.finish()
    assert set(codes.values()) == {0}, workers.outputs()

    stored = read_effects(effects)
    pairs = sorted((event_id, index) for event_id, index, _ in stored.values())
    assert pairs == sorted((f"ev-{i:05d}", n) for i in range(count) for n in (0, 1))
    logs = workers.logs()
    figures = check_exactly_once(storage, effects, set(stored), logs)
    refused = [e for e in logs if e["ev"] == "error" and not e["unavailable"]]
    assert not refused, f"handle() of an event the other instance handles raised: {refused[:3]}"
    handled = [e for e in logs if e["ev"] == "handled"]
    assert len(handled) == 2
    executed = sum(e["executed"] for e in handled)
    if not figures["errors"]:  # a retried handle() leaves its action to run_due
        assert executed == count
    report(
        capsys,
        f"two-instances/{dialect(target)}",
        {**figures, "executed_in_handle": executed, "seconds": round(drained - started, 1)},
    )


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[tuple[pgcluster.Cluster, Workers]]:
    """A cluster of its own, made with the binaries of the one the suite runs on (whose other
    tests keep their pooled connections), destroyed afterwards; workers on it."""
    if not CLUSTER:
        pytest.skip(NEEDS_CLUSTER)
    cluster = pgcluster.create(bindir=pgcluster.load(CLUSTER).bindir)
    running = Workers(Target(cluster.url, cluster.url), tmp_path)
    try:
        create_effects_table(effects_engine(cluster.url))
        yield cluster, running
    finally:
        running.kill_all()
        pgcluster.destroy(cluster)


def test_postgres_restarts_while_workers_run(
    chaos: tuple[pgcluster.Cluster, Workers], capsys: pytest.CaptureFixture[str]
) -> None:
    cluster, workers = chaos
    target = workers.target
    seed = int(os.environ.get("LEADFLOW_CHAOS_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    restarts = int(os.environ.get("LEADFLOW_CHAOS_RESTARTS", "3"))
    intervals = [rng.uniform(5, 40) for _ in range(restarts)]
    storage = target.storage()
    effects = effects_engine(target.effects_url)
    # Due times spread over the whole chaos window (plus a little after the last restart).
    window = sum(intervals) + 5
    begin = datetime.now(UTC) + timedelta(seconds=15)  # scheduling takes a few seconds
    due = [begin + timedelta(seconds=window * i / 5000) for i in range(5000)]
    keys = schedule(storage, due, "chaos")
    for n in range(4):
        workers.spawn(f"w{n}", lease=3.0, limit=20, retry_base=0.2)
    workers.go()
    outages: list[tuple[float, float]] = []
    try:
        for interval in intervals:
            time.sleep(interval)
            workers.check_alive()
            down = time.time()
            pgcluster.restart(cluster, mode="immediate", down=1.0)
            outages.append((down, time.time()))
    finally:
        if not pgcluster.is_running(cluster):
            pgcluster.start(cluster)
    last_up = time.monotonic()
    drained = wait_drained(storage, effects, len(keys), workers)
    codes = workers.finish()
    assert set(codes.values()) == {0}, workers.outputs()

    logs = workers.logs()
    figures = check_exactly_once(storage, effects, keys, logs)
    errors = [e for e in logs if e["ev"] == "error"]
    assert all(e["unavailable"] for e in errors), (
        "a lost connection must surface as UnavailableError: "
        f"{[e for e in errors if not e['unavailable']][:5]}"
    )
    assert figures["unavailable"] > 0, "no worker saw the server go away"
    report(
        capsys,
        "chaos/postgresql",
        {
            **figures,
            "seed": seed,
            "intervals_s": [round(i, 1) for i in intervals],
            "recovery_s": recovery_times(logs, outages),
            "drained_after_last_restart_s": round(drained - last_up, 1),
        },
    )
