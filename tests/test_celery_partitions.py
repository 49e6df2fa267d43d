"""Partitions with real processes (issue 12): real ``celery worker`` processes
(tests/celery_worker_app.py, solo pool), each pinned to one partition by consuming only that
partition's due queue (``-Q <queue>.due.<p>``), on a PostgreSQL database, with a Redis broker
(``LEADFLOW_TEST_REDIS_URL``, else one started here); skipped without either.

The actions are planned by a LeadFlow in the test process (its clock an hour behind, so that
every action is stored pending and is already due for the workers): one delayed ``fault_effect``
per opportunity, its partition the CRC-32 of the opportunity id modulo ``partitions``.

- Three partitions, three pinned workers, started by one tick of beat (one ``run_due`` per
  ``beat_schedule()`` entry, each routed to its partition's queue) and drained by the full
  batches re-queuing themselves to their own partition: every action runs exactly once, each on
  its own partition's worker, every ``run_due`` a worker ran was for its partition.
- Two partitions; partition 1's worker is SIGKILLed in the middle of a batch: partition 0's
  actions all still run, partition 1's stay pending (its dead worker's claims stay claimed after
  their lease expired: the other worker, pinned, never takes them), until a new worker for
  partition 1 comes and runs them all; exactly once overall.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow import (
    Event,
    FlowSettings,
    FollowUpRule,
    HandlerRegistry,
    LeadFlow,
    ScheduledAction,
    ScheduledActionState,
)
from leadflow.clock import ManualClock
from leadflow.ports import Storage
from leadflow.runtime.actions import ActionContext

pytest.importorskip("celery", reason="needs the celery extra")
pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from leadflow.contrib.celery import LeadflowTasks, install
from leadflow.runtime.planning import partition_for

from .fault_worker import ACTION_TYPE, count_effects, effects_engine, read_effects
from .process_support import (
    LIVE,
    NEEDS_PG,
    PG_URL,
    CeleryWorkers,
    Target,
    check_exactly_once,
    fresh_target,
    redis_broker,
    report,
    state_counts,
    wait_until_drained,
)

pytestmark = pytest.mark.skipif(not PG_URL, reason=NEEDS_PG)

QUEUE = "leadflow-part"
DRAIN_TIMEOUT = CeleryWorkers.timeout  # a guard against hanging forever, not a timing assertion
COMMON: dict[str, Any] = {"batch": 10, "lease": 2.0, "log_tasks": True}


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with redis_broker() as url:
        yield url


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    with fresh_target("postgresql", tmp_path, "leadflow_part") as found:
        yield found


@pytest.fixture
def workers(target: Target, broker: str, tmp_path: Path) -> Iterator[CeleryWorkers]:
    running = CeleryWorkers(target, broker, tmp_path, prefix=QUEUE)
    try:
        yield running
    finally:
        running.kill_all()
        running.app.close()


def host_tasks(workers: CeleryWorkers, partitions: int) -> LeadflowTasks:
    """The tasks as the host installs them on its own app (the sending side: its factory is
    never called here, only the workers build flows)."""

    def no_flow() -> LeadFlow:
        raise AssertionError("the test process sends tasks, it does not run them")

    return install(workers.app, no_flow, queue=workers.queue, batch=10, partitions=partitions)


def plan(storage: Storage, partitions: int, count: int) -> dict[str, int]:
    """Plan one delayed ``fault_effect`` for each of ``count`` opportunities through a LeadFlow
    with ``partitions`` partitions; returns the stored actions' partitions by key (checked
    against :func:`partition_for` of their opportunity id)."""
    storage.rules.create(
        FollowUpRule.model_validate(
            {
                "ruleId": "part-fx",
                "name": "partitioned effects",
                "trigger": {"eventType": "opportunity.created", "conditions": []},
                "actions": [
                    {"actionType": ACTION_TYPE, "delay": {"amount": 10, "unit": "minutes"}}
                ],
            }
        )
    )

    def never(ctx: ActionContext) -> str:
        raise AssertionError(f"the planning flow ran {ctx.scheduled.idempotency_key}")

    handlers = HandlerRegistry.default()
    handlers.register(ACTION_TYPE, never)
    clock = ManualClock(datetime.now(UTC) - timedelta(hours=1))
    flow = LeadFlow.in_memory(
        storage=storage,
        handlers=handlers,
        clock=clock,
        settings=FlowSettings(partitions=partitions, worker_id="planner"),
    )
    for i in range(count):
        event = Event(
            id=f"ev-{i:05d}",
            type="opportunity.created",
            time=clock.now(),
            payload={"opportunityId": f"opp-{i:05d}"},
        )
        result = flow.handle(event)
        assert len(result.scheduled) == 1 and not result.executed, result
    stored: list[ScheduledAction] = storage.scheduled.list(limit=count + 10)
    assert len(stored) == count
    for action in stored:
        assert action.opportunity_id is not None
        assert action.partition == partition_for(action.opportunity_id, partitions), action
        assert action.state is ScheduledActionState.PENDING
    keys = {a.idempotency_key: a.partition for a in stored}
    spread = Counter(keys.values())
    assert sorted(spread) == list(range(partitions)), f"a partition got no action: {spread}"
    return keys


def runs_by_worker(workers: CeleryWorkers) -> dict[str, list[dict[str, Any]]]:
    return {n: [e for e in workers.log(n) if e["ev"] == "run"] for n in workers.procs}


def live_in(storage: Storage, partition: int, limit: int) -> list[ScheduledAction]:
    """The pending and claimed actions of ``partition``."""
    live = [a for state in LIVE for a in storage.scheduled.list(state, limit=limit)]
    return [a for a in live if a.partition == partition]


def due_tasks(workers: CeleryWorkers, name: str) -> list[dict[str, Any]]:
    """The ``run_due`` tasks worker ``name`` ran (``task`` lines)."""
    return [e for e in workers.log(name) if e["ev"] == "task" and e["name"].endswith("run_due")]


def test_each_partition_runs_on_its_own_worker(
    workers: CeleryWorkers, request: pytest.FixtureRequest
) -> None:
    partitions, count = 3, 300
    target = workers.target
    storage = target.storage()
    effects = effects_engine(target.effects_url)
    keys = plan(storage, partitions, count)
    tasks = host_tasks(workers, partitions)
    # Beat's run_due entries: one per partition, each routed to its partition's queue.
    entries = [e for e in tasks.beat_schedule().values() if e["task"] == tasks.run_due.name]
    routes = {e["options"]["queue"]: e.get("kwargs", {}).get("partition") for e in entries}
    assert routes == {f"{workers.queue}.due.{p}": p for p in range(partitions)}
    assert routes == {tasks.due_queue(p): p for p in range(partitions)}

    for p in range(partitions):
        workers.spawn(f"p{p}", queues=[tasks.due_queue(p)], partitions=partitions, **COMMON)
    workers.wait_ready()

    # One tick of beat's due entries (without their expiry, so that a busy machine cannot
    # drop it), then no more: each partition drains by its full batches re-queuing themselves
    # to their own partition's queue (a batch re-queued elsewhere would strand the rest).
    started = time.monotonic()
    for entry in entries:
        options = {k: v for k, v in entry["options"].items() if k != "expires"}
        workers.app.send_task(entry["task"], kwargs=entry.get("kwargs"), **options)
    drained = wait_until_drained(
        storage,
        timeout=DRAIN_TIMEOUT,
        describe=lambda: (
            f"{count_effects(effects)} of {count} effects, "
            f"states {state_counts(storage, count + 10)}\n{workers.outputs()}"
        ),
        check=workers.check_alive,
        interval=0.5,
    )

    figures = check_exactly_once(storage, effects, set(keys), workers.logs())
    runs = runs_by_worker(workers)
    for p in range(partitions):
        strays = [e for e in runs[f"p{p}"] if keys[e["key"]] != p or e["partition"] != p]
        assert not strays, f"worker p{p} ran actions of other partitions: {strays[:5]}"
        mine = {e["key"] for e in runs[f"p{p}"]}
        assert mine == {k for k, kp in keys.items() if kp == p}
    batches: dict[str, int] = {}
    for p in range(partitions):
        ran = due_tasks(workers, f"p{p}")
        pinned = {e["kwargs"].get("partition") for e in ran}
        assert pinned == {p}, f"worker p{p} ran run_due for partitions {pinned}"
        assert sum(e["result"]["claimed"] for e in ran) == len(runs[f"p{p}"])
        batches[f"p{p}"] = len(ran)
    report(
        request,
        "celery-partitions",
        "three pinned workers",
        {
            **figures,
            "per_partition": dict(sorted(Counter(keys.values()).items())),
            "per_worker": {n: len(r) for n, r in sorted(runs.items())},
            "run_due_tasks": batches,
            "seconds": round(drained - started, 1),
        },
    )


def test_a_stopped_partition_waits_for_its_own_worker(
    workers: CeleryWorkers, request: pytest.FixtureRequest
) -> None:
    partitions, count = 2, 240
    target = workers.target
    storage = target.storage()
    effects = effects_engine(target.effects_url)
    keys = plan(storage, partitions, count)
    tasks = host_tasks(workers, partitions)
    workers.spawn("p0", queues=[tasks.due_queue(0)], partitions=partitions, **COMMON)
    workers.spawn("p1", queues=[tasks.due_queue(1)], partitions=partitions, kill_after=15, **COMMON)
    workers.wait_ready()

    def kick() -> None:
        tasks.kick()  # one run_due per partition: partition 1's wait in its queue

    # Partition 1's worker dies in the middle of a batch (an effect stored, the rest of its
    # batch claimed); partition 0's actions all run all the same.
    kick()
    victim = workers.line("p1", "mid-batch")
    workers.signal("p1", signal.SIGKILL)
    wait_until_drained(
        storage,
        timeout=DRAIN_TIMEOUT,
        describe=lambda: f"partition 0: {live_in(storage, 0, count)[:5]}\n{workers.outputs()}",
        left=lambda: bool(live_in(storage, 0, count)),
        check=lambda: workers.check_alive(except_="p1"),
        tick=kick,
        interval=0.5,
    )

    # The dead worker's claims expire; the pinned p0 goes on claiming (run_due ticks) after
    # that and takes none of them.
    stranded = [a for a in live_in(storage, 1, count) if a.state is ScheduledActionState.CLAIMED]
    assert stranded, "the victim held no claimed batch"
    expiry = max(a.lease_expires_at for a in stranded if a.lease_expires_at is not None)

    def claimed_after_expiry() -> list[dict[str, Any]]:
        return [e for e in due_tasks(workers, "p0") if e["started"] > expiry.timestamp()]

    deadline = time.monotonic() + DRAIN_TIMEOUT
    while not claimed_after_expiry():
        workers.check_alive(except_="p1")
        if time.monotonic() >= deadline:  # a hang guard, not a timing check
            pytest.fail(f"p0 ran no run_due after the leases expired:\n{workers.outputs()}")
        kick()
        time.sleep(0.5)
    took = [e for e in claimed_after_expiry() if e["result"]["claimed"] != 0]
    # Seen once at a load average above 10: say what p0 took, and from which partition.
    assert not took, (
        f"p0 claimed after the leases expired: {took[:5]}\n"
        f"partition 0 live: {live_in(storage, 0, count)[:5]}\n{workers.outputs()}"
    )
    waiting = live_in(storage, 1, count)
    ran_by_p1 = {e["key"] for e in workers.log("p1") if e["ev"] == "done"}
    in_partition_1 = {k for k, p in keys.items() if p == 1}
    assert {a.idempotency_key for a in waiting} == in_partition_1 - ran_by_p1
    assert {a.idempotency_key for a in stranded} <= {a.idempotency_key for a in waiting}
    assert not [a for a in waiting if str(a.lease_owner).startswith("p0:")]
    strays = [e for e in workers.log("p0") if e["ev"] == "run" and keys[e["key"]] != 0]
    assert not strays, f"p0 ran partition 1's actions: {strays[:5]}"
    left_behind = {"pending": 0, "claimed": 0}
    for action in waiting:
        left_behind[action.state.value] += 1

    # A new worker for partition 1 runs what was left (the stranded claims once expired).
    workers.spawn("p1b", queues=[tasks.due_queue(1)], partitions=partitions, **COMMON)
    workers.line("p1b", "ready", except_="p1")
    resumed = time.monotonic()
    drained = wait_until_drained(
        storage,
        timeout=DRAIN_TIMEOUT,
        describe=lambda: f"states {state_counts(storage, count + 10)}\n{workers.outputs()}",
        check=lambda: workers.check_alive(except_="p1"),
        tick=kick,
        interval=0.5,
    )
    figures = check_exactly_once(storage, effects, set(keys), workers.logs())
    runs = runs_by_worker(workers)
    assert {e["key"] for e in runs["p0"]} == {k for k, p in keys.items() if p == 0}
    assert all(keys[e["key"]] == 1 for e in runs["p1"] + runs["p1b"])
    assert victim["key"] in {e["key"] for e in runs["p1b"]}
    assert read_effects(effects)[victim["key"]][2] == 2  # applied by p1, again by p1b: one row
    report(
        request,
        "celery-partitions",
        "partition 1's worker killed",
        {
            **figures,
            "per_partition": dict(sorted(Counter(keys.values()).items())),
            "per_worker": {n: len(r) for n, r in sorted(runs.items())},
            "left_for_partition_1": left_behind,
            "seconds_after_new_worker": round(drained - resumed, 1),
        },
    )
