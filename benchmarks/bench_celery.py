"""Celery workers running leadflow's due actions (issue 12): throughput and due-to-start latency
for 1, 2 and 4 workers, at a steady load and at a burst, and the catch-up after downtime.

A throwaway redis-server (tests/redis_server.py) is the broker; ``celery worker`` processes
(tests/celery_worker_app.py in bench mode, solo pool, one process each) run
:func:`leadflow.contrib.celery.install`'s tasks on PostgreSQL (``LEADFLOW_BENCH_POSTGRES_URL`` or
``LEADFLOW_TEST_POSTGRES_URL``; a new database per run, dropped afterwards) or a SQLite file.
The bench process plays Celery beat: it sends ``run_due`` every ``--tick`` seconds (the
``beat_schedule()`` default is 1 s); a ``run_due`` that comes back full queues the next batch.

- steady + burst (default): ``--rate`` actions/s come due for ``--seconds`` seconds, then
  ``--burst`` actions all due at the same instant;
- catch-up (``--downtime SECONDS``): the fleet was stopped for that long while ``--backlog-rate``
  actions/s came due (loaded with due times spread evenly over the past ``--downtime``
  seconds); new work keeps coming due at the same rate (inserted by a feeder thread a second
  ahead of its due time) while the restarted fleet drains the backlog, and for ``--settle``
  seconds after. Reported: the time until the backlog is drained and until new arrivals start
  within 1 s of their due time again, the drain rate, the latency of the backlog and of the new
  arrivals, and whether the start order follows the due order (oldest due first).

Actions are loaded with Core executemany in chunks (the loading time is reported apart). The
handler of each action logs its due time and the time it started; latency is start minus due
time (one clock: same machine). Checked: every action started exactly once (by key: the
duplicate count must be 0) and the store holds them all ``done``; a wrong answer exits 2.
Nothing is asserted on time.

    python benchmarks/bench_celery.py [--workers 1,2,4] [--rate 100] [--seconds 10]
                                      [--burst 5000] [--batch 100] [--tick 1.0]
    python benchmarks/bench_celery.py --downtime 3600 --backlog-rate 20 [--settle 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from celery_support import (
    Beat,
    Feeder,
    Fleet,
    Loader,
    analyze,
    bench_database,
    check,
    clear,
    cores_used,
    cpu_seconds,
    latency,
    load_average,
    open_storage,
    order,
    states,
)
from tests import redis_server  # importable: celery_support put the repository on sys.path
from tests.celery_worker_app import make_app

DEADLINE = 1800.0  # seconds a run may take before the bench gives up
FRESH_LAG = 1.0  # new arrivals are served again once they start within this many seconds


def spread(start: datetime, n: int, rate: float) -> list[datetime]:
    return [start + timedelta(seconds=i / rate) for i in range(n)]


def now() -> datetime:
    return datetime.now(UTC)


def run_mixed(url: str, broker: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """Steady load, then the burst, on one fleet."""
    storage = open_storage(url)
    clear(storage)
    loader = Loader(storage)
    app = make_app(broker)
    steady_n = int(args.rate * args.seconds)
    expected = steady_n + args.burst
    out: dict[str, Any] = {"scenario": "steady+burst", "workers": workers}
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
        fleet = Fleet(url, broker, Path(tmp), workers, args.batch)
        try:
            out["workers_ready_s"] = round(fleet.started_in, 1)
            out["load_before"] = load_average()
            # The burst is due after the steady phase; its rows go in first, while their due
            # time is still ahead: allow ``--load-rate`` rows/s for loading them.
            lead = 3.0
            burst_at = now() + timedelta(
                seconds=args.burst / args.load_rate + 2 * lead + args.seconds
            )
            load_s = loader.insert(
                [f"burst-{i:07d}" for i in range(args.burst)], [burst_at] * args.burst
            )
            analyze(storage)
            begin = burst_at - timedelta(seconds=args.seconds + lead)
            load_s += loader.insert(
                [f"steady-{i:07d}" for i in range(steady_n)], spread(begin, steady_n, args.rate)
            )
            out["load_s"] = round(load_s, 1)
            if now() > begin - timedelta(seconds=0.5):
                raise SystemExit("loading took too long: lower --load-rate")
            fleet.progress = time.monotonic()  # the loading was no stall
            beat = Beat(app, fleet.queue, args.tick)
            deadline = fleet.progress + DEADLINE
            phases = [(time.monotonic(), cpu_seconds())]  # steady from here, burst from its due
            while fleet.started() < expected or now() < burst_at:
                beat.tick()
                fleet.poll()
                if len(phases) == 1 and now() >= burst_at:
                    phases.append((time.monotonic(), cpu_seconds()))
                if time.monotonic() > deadline:
                    raise SystemExit(f"not drained: {fleet.started()} of {expected}")
            phases.append((time.monotonic(), cpu_seconds()))
            for label, (t0, c0), (t1, c1) in zip(
                ("steady_cores", "burst_cores"), phases, phases[1:], strict=False
            ):
                out[label] = cores_used(c0, c1, t1 - t0)
            time.sleep(1.0)
            fleet.poll()
            out["load_after"] = load_average()
        finally:
            fleet.stop()
            app.close()
    starts = fleet.tail.starts
    out["duplicates"] = check(starts, expected, states(storage))
    for name in ("steady", "burst"):
        rows = [e for e in starts if e["key"].startswith(name)]
        if not rows:
            continue
        span = max(e["at"] for e in rows) - min(e["due"] for e in rows)
        out[name] = {"actions": len(rows), "per_s": round(len(rows) / span, 1), **latency(rows)}
    storage.database.engine.dispose()
    return out


def run_catchup(url: str, broker: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """A backlog of ``--downtime`` seconds of work, new work arriving, the fleet restarted."""
    storage = open_storage(url)
    clear(storage)
    loader = Loader(storage)
    app = make_app(broker)
    rate = args.backlog_rate
    backlog_n = int(args.downtime * rate)
    out: dict[str, Any] = {"scenario": "catch-up", "workers": workers, "backlog": backlog_n}
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
        fleet = Fleet(url, broker, Path(tmp), workers, args.batch)
        feeder: Feeder | None = None
        try:
            out["workers_ready_s"] = round(fleet.started_in, 1)
            # The workers idle until the first run_due: the fleet is "down" until then.
            t0 = now()
            keys = [f"backlog-{i:07d}" for i in range(backlog_n)]
            backlog_due = spread(t0 - timedelta(seconds=args.downtime), backlog_n, rate)
            out["load_s"] = round(loader.insert(keys, backlog_due), 1)
            analyze(storage)
            feeder = Feeder(loader, "fresh", t0, rate)
            feeder.start()
            while feeder.count == 0 and feeder.is_alive():
                time.sleep(0.05)
            out["load_before"] = load_average()
            started = time.time()  # the fleet resumes: everything due before is backlog
            fleet.progress = time.monotonic()  # the loading was no stall
            beat = Beat(app, fleet.queue, args.tick)
            deadline = fleet.progress + DEADLINE
            drained_at: float | None = None
            fed: int | None = None
            while fed is None or fleet.started() < backlog_n + fed:
                beat.tick()
                fleet.poll()
                if drained_at is None:
                    if sum(e["due"] < started for e in fleet.tail.starts) >= backlog_n + int(
                        (started - t0.timestamp()) * rate
                    ):
                        drained_at = time.time()
                elif fed is None and time.time() > drained_at + args.settle:
                    fed = feeder.halt()
                if time.monotonic() > deadline:
                    raise SystemExit(f"not drained: {fleet.started()} started")
            out["load_after"] = load_average()
        finally:
            if feeder is not None and feeder.is_alive():
                feeder.halt()
            fleet.stop()
            app.close()
    starts = fleet.tail.starts
    assert fed is not None
    out["fed_after_restart"] = fed
    out["duplicates"] = check(starts, backlog_n + fed, states(storage))
    backlog = [e for e in starts if e["due"] < started]
    fresh = sorted((e for e in starts if e["due"] >= started), key=lambda e: e["due"])
    last_backlog = max(e["at"] for e in backlog)
    # Recovered: the first new arrival that started within FRESH_LAG of its due time (those
    # due earlier waited behind the backlog, served oldest due first).
    recovered = next((e["due"] for e in fresh if e["at"] - e["due"] < FRESH_LAG), None)
    if recovered is None:
        raise SystemExit("new arrivals never started within 1 s: raise --settle")
    late = [e for e in fresh if e["due"] < recovered]
    out["backlog_actions"] = len(backlog)
    out["drained_in_s"] = round(last_backlog - started, 1)
    out["drain_per_s"] = round(len(backlog) / (last_backlog - started), 1)
    out["all_starts_per_s_while_draining"] = round(
        sum(e["at"] <= last_backlog for e in starts) / (last_backlog - started), 1
    )
    out["lag_under_1s_after_s"] = round(recovered - started, 1)
    out["backlog_latency"] = latency(backlog)
    out["fresh_before_lag_under_1s"] = {"actions": len(late), **latency(late)}
    after = [e for e in fresh if e["due"] >= recovered]
    out["fresh_from_then_on"] = {"actions": len(after), **latency(after)}
    out["order"] = order(backlog, args.batch * workers)
    storage.database.engine.dispose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--tick", type=float, default=1.0)
    parser.add_argument("--load-rate", type=float, default=3000.0, help="rows/s allowed to load")
    parser.add_argument("--downtime", type=float, help="seconds: run the catch-up scenario")
    parser.add_argument("--backlog-rate", type=float, default=20.0, help="actions/s (catch-up)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the drain")
    parser.add_argument("--sqlite", action="store_true", help="use a SQLite file")
    args = parser.parse_args()

    run = run_catchup if args.downtime else run_mixed
    server = redis_server.start()
    try:
        with bench_database(args.sqlite) as url:
            print(f"backend {url.split(':')[0]}, broker {server.url}, {vars(args)}", flush=True)
            for n in [int(w) for w in args.workers.split(",")]:
                print(json.dumps(run(url, server.url, n, args)), flush=True)
    finally:
        redis_server.stop(server.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
