"""Faults across real processes on a real SQL database (issue 10, "Faults"): workers are
``python tests/fault_worker.py`` processes, each a LeadFlow on ``sql_storage``; the test action
stores its effect keyed on the idempotency key and counts how often it was applied.

- A worker is SIGKILLed in the middle of a batch (its effect stored, its batch claimed): every
  one of 2,000 actions takes effect exactly once, on PostgreSQL and on a SQLite file.
- Chaos: PostgreSQL is restarted (immediate shutdown) at random 5-40 s intervals, 3 times, while
  four workers run 5,000 delayed actions: workers see ``UnavailableError`` and recover; exactly
  once.
- Two instances handle the same stream of 400 events at once: every event's actions run once.

Those are the scales CI runs (`.ci/run` sets them); a local run defaults to smaller ones, the
same checks (tests/suite.py): ``LEADFLOW_TEST_FAULT_ACTIONS`` (the SIGKILL test, default 500),
``LEADFLOW_CHAOS_RESTARTS`` and ``LEADFLOW_CHAOS_ACTIONS`` (default 1 restart, 1,000 actions;
``LEADFLOW_CHAOS_SEED`` replays a run's intervals), ``LEADFLOW_TEST_FAULT_EVENTS`` (default 100).

After each run the test checks, besides the effects: every action is ``done`` in the store; no
two runs of an action share an attempt number (two workers never held it at once); no action
ran again after a ``mark_done`` returned; every exception that escaped leadflow is one of its
own. It prints the figures (re-runs, unavailable errors, recovery times).

PostgreSQL variants need ``LEADFLOW_TEST_POSTGRES_URL``; the chaos test needs
``LEADFLOW_TEST_POSTGRES_CLUSTER`` (a cluster made by ``tests/pgcluster.py``): with its binaries it
makes a cluster of its own to restart, so the suite's server and its pooled connections live on.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow import FollowUpRule
from leadflow.errors import UnavailableError
from leadflow.ports import Storage

from . import pgcluster, suite

# Skip (not fail) where the sql extra (SQLAlchemy) is not installed.
pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")
import sqlalchemy as sa

from .fault_worker import (
    ACTION_TYPE,
    count_effects,
    create_effects_table,
    effects_engine,
    read_effects,
    recovery_times,
)
from .process_support import (
    BACKENDS,
    Processes,
    Target,
    check_exactly_once,
    fresh_target,
    report,
    schedule,  # tests/test_contrib_celery_units.py imports it from here
    state_counts,
    wait_until_drained,
)

WORKER = Path(__file__).resolve().parent / "fault_worker.py"
CLUSTER = os.environ.get(pgcluster.CLUSTER_ENV)
NEEDS_CLUSTER = (
    f"set {pgcluster.CLUSTER_ENV} to a cluster made by `tests/pgcluster.py start` (the chaos test "
    "makes and restarts a cluster of its own with its binaries)"
)
DRAIN_TIMEOUT = 240.0  # a guard against hanging forever, not a timing assertion
# The scales (CI's in .ci/run; see the module's docstring).
KILL_ACTIONS = suite.count("LEADFLOW_TEST_FAULT_ACTIONS", 500)
STREAM_EVENTS = suite.count("LEADFLOW_TEST_FAULT_EVENTS", 100)
CHAOS_RESTARTS = suite.count("LEADFLOW_CHAOS_RESTARTS", 1)
CHAOS_ACTIONS = suite.count("LEADFLOW_CHAOS_ACTIONS", 1000)


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A fresh, empty database: a new database on the PostgreSQL server (dropped afterwards)
    or a SQLite file; the effects table is created (on SQLite, in a file of its own)."""
    with fresh_target(request.param, tmp_path, "leadflow_fault") as found:
        yield found


class Workers(Processes):
    """tests/fault_worker.py processes on one target, released together by a go file and
    stopped by a stop file."""

    timeout = DRAIN_TIMEOUT

    def __init__(self, target: Target, tmp_path: Path) -> None:
        super().__init__(target, tmp_path)
        self.stop_file = tmp_path / "stop"
        self.go_file = tmp_path / "go"

    def spawn(self, name: str, **config: Any) -> None:
        path = self.write_config(name, stop=str(self.stop_file), go=str(self.go_file), **config)
        self.start(name, [sys.executable, str(WORKER), str(path)])

    def go(self) -> None:
        """Release the workers together (once each has built its flow)."""
        deadline = time.monotonic() + 120
        while not all(any(e["ev"] == "ready" for e in self.log(n)) for n in self.procs):
            self.check_alive()
            if time.monotonic() >= deadline:  # a hang guard, not a timing check
                pytest.fail(f"workers not ready:\n{self.outputs()}")
            time.sleep(0.05)
        self.go_file.touch()

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


@pytest.fixture
def workers(target: Target, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(target, tmp_path)
    try:
        yield running
    finally:
        running.kill_all()


def wait_drained(
    storage: Storage, effects: sa.Engine, expected: int, run: Workers, *, handled: bool = False
) -> float:
    """Wait until no action is pending or claimed any more (the checks then find out whether
    each took effect once), and with ``handled`` until every worker handled its events;
    returns when (monotonic). Errors while the server restarts are retried."""

    def ready() -> bool:
        return not handled or all(run.wait_for(n, "handled", block=False) for n in run.procs)

    def describe() -> str:
        return (
            f"{count_effects(effects)} of {expected} effects, "
            f"states {state_counts(storage, expected + 10)}\n{run.outputs()}"
        )

    return wait_until_drained(
        storage,
        timeout=DRAIN_TIMEOUT,
        describe=describe,
        ready=ready,
        retry_on=(UnavailableError, sa.exc.OperationalError),
    )


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
def test_worker_killed_mid_batch_loses_and_doubles_nothing(
    target: Target, workers: Workers, request: pytest.FixtureRequest
) -> None:
    storage = target.storage()
    effects = effects_engine(target.effects_url)
    now = datetime.now(UTC)
    keys = schedule(storage, [now - timedelta(seconds=1)] * KILL_ACTIONS, "kill")
    # The victim stops in its first batch (5 runs of 20 claimed): it needs only one claim
    # before the others drain the queue, which a loaded machine once made it miss (25 runs
    # needed a second claim).
    for n in range(4):
        workers.spawn(f"w{n}", lease=2.0, limit=20, kill_after=5 if n == 0 else None)
    started = time.monotonic()
    workers.go()
    victim = workers.line("w0", "mid-batch")
    assert int(victim["pid"]) == workers.procs["w0"].pid
    assert workers.signal("w0", signal.SIGKILL) == -signal.SIGKILL
    killed = time.monotonic()
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
        request,
        "faults",
        f"sigkill/{target.dialect}",
        {
            **figures,
            "seconds": round(drained - started, 1),
            "after_kill": round(drained - killed, 1),
        },
    )


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
def test_two_instances_handle_one_event_stream(
    target: Target, workers: Workers, request: pytest.FixtureRequest
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
    count = STREAM_EVENTS
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
        request,
        "faults",
        f"two-instances/{target.dialect}",
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
    chaos: tuple[pgcluster.Cluster, Workers], request: pytest.FixtureRequest
) -> None:
    cluster, workers = chaos
    target = workers.target
    seed = int(os.environ.get("LEADFLOW_CHAOS_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    intervals = [rng.uniform(5, 40) for _ in range(CHAOS_RESTARTS)]
    storage = target.storage()
    effects = effects_engine(target.effects_url)
    # Due times spread over the whole chaos window (plus a little after the last restart).
    window = sum(intervals) + 5
    begin = datetime.now(UTC) + timedelta(seconds=15)  # scheduling takes a few seconds
    due = [begin + timedelta(seconds=window * i / CHAOS_ACTIONS) for i in range(CHAOS_ACTIONS)]
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
        request,
        "faults",
        "chaos/postgresql",
        {
            **figures,
            "seed": seed,
            "intervals_s": [round(i, 1) for i in intervals],
            "recovery_s": recovery_times(logs, outages),
            "drained_after_last_restart_s": round(drained - last_up, 1),
        },
    )
