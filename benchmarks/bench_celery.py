"""Celery workers running leadflow's due actions (issue 12): throughput and due-to-start latency
for 1, 2 and 4 workers, at a steady load and at a burst.

A throwaway redis-server (tests/redis_server.py) is the broker; ``celery worker`` processes
(tests/celery_worker_app.py in bench mode, solo pool, one process each) run
:func:`leadflow.contrib.celery.install`'s tasks on PostgreSQL (``LEADFLOW_BENCH_POSTGRES_URL`` or
``LEADFLOW_TEST_POSTGRES_URL``; a new database per run, dropped afterwards) or a SQLite file.
The bench process plays Celery beat: it sends ``run_due`` every ``--tick`` seconds (the
``beat_schedule()`` default is 1 s); a ``run_due`` that comes back full queues the next batch.

- steady: ``--rate`` actions/s come due for ``--seconds`` seconds;
- burst: ``--burst`` actions all due at the same instant (what a fleet finds after downtime).

The handler of each action logs its due time and the time it started; latency is start minus due
time (one clock: same machine). Checked: every action started exactly once (by key) and the store
holds them all ``done``; a wrong answer exits 2. Nothing is asserted on time.

    python benchmarks/bench_celery.py [--workers 1,2,4] [--rate 100] [--seconds 10]
                                      [--burst 5000] [--batch 100] [--tick 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import redis_server  # noqa: E402
from tests.celery_worker_app import CONFIG_ENV, make_app  # noqa: E402
from tests.fault_worker import ACTION_TYPE, read_log  # noqa: E402

from leadflow import Action, Event, ScheduledAction, ScheduledActionState  # noqa: E402
from leadflow.stores.sql import SqlStorage, sql_storage  # noqa: E402
from leadflow.stores.sql.scheduled import _values as scheduled_row  # noqa: E402

URL_ENVS = ("LEADFLOW_BENCH_POSTGRES_URL", "LEADFLOW_TEST_POSTGRES_URL")


def insert(storage: SqlStorage, due: list[datetime], prefix: str) -> None:
    """One action per due time, loaded with Core executemany through the store's table."""
    now = datetime.now(UTC)
    rows = []
    for i, at in enumerate(due):
        event = Event(id=f"{prefix}-{i:06d}", type="opportunity.created", time=at, payload={})
        action = ScheduledAction(
            idempotency_key=f"{prefix}/{i:06d}",
            event=event,
            rule_id="bench",
            rule_name="bench",
            action=Action.model_validate({"actionType": ACTION_TYPE}),
            planned_at=at,
            due_at=at,
            created_at=now,
        )
        rows.append(scheduled_row(action))
    table = storage.database.tables.scheduled
    with storage.database.write() as connection:
        for start in range(0, len(rows), 2000):
            connection.execute(table.insert(), rows[start : start + 2000])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def worker_command(queue: str, name: str) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "tests.celery_worker_app", "worker",
        "-P", "solo", "-Q", queue, "-n", f"{name}@%h", "-l", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


class Fleet:
    def __init__(self, url: str, broker: str, workdir: Path, n: int, batch: int) -> None:
        self.dir = workdir
        self.queue = f"bench-{uuid.uuid4().hex[:8]}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = [workdir / f"w{i}.log" for i in range(n)]
        for i in range(n):
            config = {
                "name": f"w{i}",
                "url": url,
                "log": str(self.logs[i]),
                "broker": broker,
                "queue": self.queue,
                "batch": batch,
                "lease": 60.0,
                "bench": True,
            }
            path = workdir / f"w{i}.json"
            path.write_text(json.dumps(config), encoding="utf-8")
            out = open(workdir / f"w{i}.out", "wb")  # noqa: SIM115 (closed with the process)
            self.procs.append(
                subprocess.Popen(
                    worker_command(self.queue, f"w{i}"),
                    cwd=ROOT,
                    env={**os.environ, CONFIG_ENV: str(path)},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 120
        while not all(any(e["ev"] == "ready" for e in read_log(p)) for p in self.logs):
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                raise SystemExit(f"a worker did not start; see {workdir}")
            time.sleep(0.05)

    def starts(self) -> list[dict[str, Any]]:
        return [e for p in self.logs for e in read_log(p) if e["ev"] == "start"]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run(url: str, broker: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    storage = sql_storage(sa.create_engine(url) if not url.startswith("sqlite") else url)
    assert isinstance(storage, SqlStorage)
    with storage.database.write() as connection:
        connection.execute(storage.database.tables.scheduled.delete())
    app = make_app(broker)
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
        fleet = Fleet(url, broker, Path(tmp), workers, args.batch)
        try:
            lead = 3.0  # seconds before the first steady action comes due
            begin = datetime.now(UTC) + timedelta(seconds=lead)
            steady_n = int(args.rate * args.seconds)
            steady = [begin + timedelta(seconds=i / args.rate) for i in range(steady_n)]
            burst_at = begin + timedelta(seconds=args.seconds + 3)
            insert(storage, steady, f"steady{workers}")
            insert(storage, [burst_at] * args.burst, f"burst{workers}")
            expected = steady_n + args.burst
            deadline = time.monotonic() + 600
            while True:
                app.send_task("leadflow.run_due", queue=fleet.queue)
                time.sleep(args.tick)
                if datetime.now(UTC) > burst_at and len(fleet.starts()) >= expected:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"not drained: {len(fleet.starts())} of {expected}")
            time.sleep(1.0)
            starts = fleet.starts()
        finally:
            fleet.stop()
            app.close()
    done = storage.scheduled.list(ScheduledActionState.DONE, limit=expected + 10)
    counts = Counter(e["key"] for e in starts)
    if len(counts) != expected or len(starts) != expected or len(done) != expected:
        print(f"WRONG: {len(starts)} starts of {len(counts)} keys, {len(done)} done, {expected}")
        sys.exit(2)
    out: dict[str, Any] = {"workers": workers}
    for name, rows in (
        ("steady", [e for e in starts if e["due"] < burst_at.timestamp() - 0.5]),
        ("burst", [e for e in starts if e["due"] >= burst_at.timestamp() - 0.5]),
    ):
        lat = [e["at"] - e["due"] for e in rows]
        span = max(e["at"] for e in rows) - min(e["due"] for e in rows)
        out[name] = {
            "actions": len(rows),
            "per_s": round(len(rows) / span, 1),
            "p50": round(statistics.median(lat), 3),
            "p99": round(pct(lat, 0.99), 3),
            "max": round(max(lat), 3),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--tick", type=float, default=1.0)
    parser.add_argument("--sqlite", action="store_true", help="use a SQLite file")
    args = parser.parse_args()

    pg = next((os.environ[e] for e in URL_ENVS if os.environ.get(e)), None)
    admin = None
    tmp = tempfile.mkdtemp(prefix="bench-celery-db-")
    if pg and not args.sqlite:
        name = f"leadflow_bench_celery_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.make_url(pg).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tmp}/leadflow.db"
    server = redis_server.start()
    print(f"backend {url.split(':')[0]}, broker {server.url}, {vars(args)}")
    try:
        for n in [int(w) for w in args.workers.split(",")]:
            result = run(url, server.url, n, args)
            print(json.dumps(result), flush=True)
    finally:
        redis_server.stop(server.root)
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
