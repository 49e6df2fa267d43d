"""leadflow.contrib.celery with real processes (issue 12): a throwaway redis-server as broker
(``LEADFLOW_TEST_REDIS_URL``, else one started here with tests/redis_server.py) and real
``celery worker`` processes (tests/celery_worker_app.py, solo pool) on PostgreSQL
(``LEADFLOW_TEST_POSTGRES_URL``) and on a SQLite file.

- Events through four workers while one is SIGKILLed in the middle of its work (an effect
  stored, its message unacknowledged, its batch claimed): every effect exactly once, none lost.
  Each event plans two ``fault_effect`` actions: one run at once by ``handle_event``, one due
  three seconds later and run by ``run_due``. ``LEADFLOW_TEST_CELERY_EVENTS`` sets the count on
  PostgreSQL (default 2,000 to keep a local run short; CI runs the issue's 20,000) and
  ``LEADFLOW_TEST_CELERY_SQLITE_EVENTS`` on SQLite (default 200; CI runs 600): `.ci/run` sets
  both (tests/suite.py).
- A worker stopped with SIGTERM in the middle of a batch finishes the batch before exiting:
  none of its claims is left for a lease to expire.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow import Event, FollowUpRule, ScheduledActionState

pytest.importorskip("celery", reason="needs the celery extra")
pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from . import suite
from .fault_worker import ACTION_TYPE, count_effects, effects_engine, read_effects
from .process_support import (
    BACKENDS,
    CeleryWorkers,
    Target,
    check_exactly_once,
    fresh_target,
    redis_broker,
    report,
    schedule,
    state_counts,
    wait_until_drained,
)

QUEUE = "leadflow-test"
DRAIN_TIMEOUT = CeleryWorkers.timeout  # a guard against hanging forever, not a timing assertion


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """The broker URL: the CI's server, else a redis-server of this session's own."""
    with redis_broker() as url:
        yield url


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A fresh database (a new PostgreSQL database, dropped afterwards, or a SQLite file) with
    the effects table."""
    with fresh_target(request.param, tmp_path, "leadflow_celery") as found:
        yield found


@pytest.fixture
def workers(target: Target, broker: str, tmp_path: Path) -> Iterator[CeleryWorkers]:
    running = CeleryWorkers(target, broker, tmp_path, prefix=QUEUE)
    try:
        yield running
    finally:
        running.kill_all()
        running.app.close()


def event_count(target: Target) -> int:
    if target.url.startswith("postgresql"):
        return suite.count("LEADFLOW_TEST_CELERY_EVENTS", 2000)
    return suite.count("LEADFLOW_TEST_CELERY_SQLITE_EVENTS", 200)


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
def test_events_through_four_workers_one_killed(
    target: Target, workers: CeleryWorkers, request: pytest.FixtureRequest
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
    common: dict[str, Any] = {"batch": 20, "lease": 3.0, "visibility_timeout": 8.0}
    # The victim is killed after a hundredth of the events' effects (at least 5): at the
    # local scale (200 events over four workers) an eighth was sometimes more than it got
    # before the others drained the queue, and a twentieth still was once in CI (600 events
    # on SQLite, beside the rest of the suite, after handle got faster): the test failed
    # waiting for its kill point.
    workers.spawn("w0", kill_after=max(count // 100, 5), **common)
    for n in range(1, 4):
        workers.spawn(f"w{n}", **common)
    workers.wait_ready()

    started = time.monotonic()
    for i in range(count):
        at = datetime.now(UTC)
        event = Event(
            id=f"ev-{i:05d}",
            type="opportunity.created",
            time=at,
            payload={"opportunityId": f"opp-{i}"},
        )
        workers.send_event(event.to_document())
        if i % 200 == 0:
            workers.kick()  # what beat's run_due entry does
    victim = workers.line("w0", "mid-batch")
    workers.signal("w0", signal.SIGKILL, timeout=None)
    killed = time.monotonic()

    expected = 2 * count
    drained = wait_until_drained(
        storage,
        timeout=max(DRAIN_TIMEOUT, 0.05 * count),  # 20,000 events: 1,000 s at most
        describe=lambda: (
            f"{count_effects(effects)} of {expected} effects, "
            f"states {state_counts(storage, expected + 10)}\n{workers.outputs()}"
        ),
        # Both the effects and the store: the killed worker's event may have applied its
        # effects (at least once, a foreign write) in a unit of work that was then rolled
        # back; its task is delivered again after the visibility timeout and must be planned
        # and done before the count is read.
        ready=lambda: (
            count_effects(effects) >= expected
            and len(storage.scheduled.list(ScheduledActionState.DONE, limit=expected + 10))
            >= expected
        ),
        check=lambda: workers.check_alive(except_="w0"),
        tick=workers.kick,
        interval=0.5,
    )

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
    report(request, "celery", f"kill one of four ({target.dialect})", figures)


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
def test_sigterm_finishes_the_claimed_batch(
    target: Target, workers: CeleryWorkers, request: pytest.FixtureRequest
) -> None:
    storage = target.storage()
    keys = schedule(storage, [datetime.now(UTC) - timedelta(seconds=1)] * 30, "term")
    # A long lease: were the batch left claimed, nothing would take it over during the test.
    # The first effect holds its batch until the SIGTERM arrived (hold_first).
    workers.spawn("w0", batch=10, lease=600.0, hold_first=True)
    workers.wait_ready()
    workers.kick()
    first = workers.line("w0", "run")
    code = workers.signal("w0", signal.SIGTERM, timeout=DRAIN_TIMEOUT)
    assert code == 0, workers.outputs()
    assert workers.line("w0", "released", except_="w0")["shutting_down"], workers.outputs()

    counts = state_counts(storage, 100)
    assert counts["claimed"] == 0, f"claims left for their lease to expire: {counts}"
    runs = [e for e in workers.log("w0") if e["ev"] == "run"]
    done = storage.scheduled.list(ScheduledActionState.DONE, limit=100)
    assert len(runs) == 10 == len(done), (len(runs), counts)  # the whole batch, nothing more
    assert counts["pending"] == len(keys) - 10
    assert any(e["ev"] == "shutdown" for e in workers.log("w0"))
    report(request, "celery", "SIGTERM mid-batch", {"first_run": first["key"], "states": counts})
