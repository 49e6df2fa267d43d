"""Helpers of benchmarks/bench_celery.py: the worker fleet, a fast loader of scheduled actions,
a feeder of live arrivals, an incremental reader of the workers' logs and the statistics.

The workers (``celery -A tests.celery_worker_app worker`` in bench mode, solo pool) log one
``start`` line per handler start: the action's key, its due time and the start time (epoch
seconds, one clock: same machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import proc_cpu  # noqa: E402  (beside this module, as the benchmarks import each other)
from tests.celery_worker_app import CONFIG_ENV  # noqa: E402
from tests.fault_worker import ACTION_TYPE, read_log  # noqa: E402

from leadflow import Action, Event, ScheduledAction  # noqa: E402
from leadflow.stores.sql import SqlStorage, sql_storage  # noqa: E402
from leadflow.stores.sql.scheduled_sql import action_values as scheduled_row  # noqa: E402

URL_ENVS = ("LEADFLOW_BENCH_POSTGRES_URL", "LEADFLOW_TEST_POSTGRES_URL")
CHUNK = 5000  # rows per executemany


# --------------------------------------------------------------------------- the database


@contextmanager
def bench_database(sqlite: bool) -> Iterator[str]:
    """A new PostgreSQL database (dropped afterwards) on the test cluster, else a SQLite file."""
    pg = next((os.environ[e] for e in URL_ENVS if os.environ.get(e)), None)
    if not pg or sqlite:
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-celery-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{tmp}"
        finally:
            tmp.unlink(missing_ok=True)
        return
    name = f"leadflow_bench_celery_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(pg).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def open_storage(url: str) -> SqlStorage:
    storage = sql_storage(sa.create_engine(url) if not url.startswith("sqlite") else url)
    assert isinstance(storage, SqlStorage)
    return storage


def clear(storage: SqlStorage) -> None:
    with storage.database.write() as connection:
        connection.execute(storage.database.tables.scheduled.delete())


def analyze(storage: SqlStorage) -> None:
    """VACUUM ANALYZE the scheduled actions (PostgreSQL): the planner sees the loaded backlog,
    as autovacuum would have shown it a backlog that built up over an hour."""
    engine = storage.database.engine
    if engine.dialect.name != "postgresql":
        return
    name = storage.database.tables.scheduled.name
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'VACUUM ANALYZE "{name}"'))


def states(storage: SqlStorage) -> dict[str, int]:
    """How many scheduled actions the store holds in each state."""
    c = storage.database.tables.scheduled.c
    with storage.database.read() as connection:
        rows = connection.execute(sa.select(c.state, sa.func.count()).group_by(c.state)).all()
    return {str(state): int(n) for state, n in rows}


class Loader:
    """Rows of the ``fault_effect`` action (the bench handler), one per due time, written with
    Core executemany in chunks of :data:`CHUNK`. One row is built through the model and the
    store's own row mapping; the others copy it with their key, ids and times."""

    def __init__(self, storage: SqlStorage) -> None:
        self.storage = storage
        self.table = storage.database.tables.scheduled
        at = datetime.now(UTC)
        event = Event(id="template", type="opportunity.created", time=at, payload={})
        action = ScheduledAction(
            idempotency_key="template",
            event=event,
            rule_id="bench",
            rule_name="bench",
            action=Action.model_validate({"actionType": ACTION_TYPE}),
            planned_at=at,
            due_at=at,
            created_at=at,
        )
        self.template = scheduled_row(action)

    def rows(self, keys: Iterable[str], due: Iterable[datetime]) -> Iterator[dict[str, Any]]:
        now = datetime.now(UTC)
        for key, at in zip(keys, due, strict=True):
            row = dict(self.template)
            row.update(
                action_id=str(uuid.uuid4()),
                idempotency_key=key,
                planned_at=at,
                due_at=at,
                created_at=now,
                event={**self.template["event"], "eventId": key, "occurredAt": at},
            )
            yield row

    def insert(self, keys: list[str], due: list[datetime]) -> float:
        """Insert one action per (key, due time); returns the seconds it took."""
        began = time.perf_counter()
        rows = self.rows(keys, due)
        while True:
            chunk = [row for _, row in zip(range(CHUNK), rows, strict=False)]
            if not chunk:
                break
            with self.storage.database.write() as connection:
                connection.execute(self.table.insert(), chunk)
        return time.perf_counter() - began


class Feeder(threading.Thread):
    """New work arriving at ``rate`` actions/s, due from ``start`` on: every 0.2 s it inserts
    the actions due within the next second (planned ahead, as rules plan them). The first
    round also inserts those already due since ``start``. Keys: ``{prefix}-{n:07d}``."""

    def __init__(self, loader: Loader, prefix: str, start: datetime, rate: float) -> None:
        super().__init__(daemon=True)
        self.loader, self.prefix, self.start_at, self.rate = loader, prefix, start, rate
        self.count = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def due(self, n: int) -> datetime:
        return self.start_at + timedelta(seconds=n / self.rate)

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                horizon = datetime.now(UTC) + timedelta(seconds=1)
                upto = self.count
                while self.due(upto) < horizon:
                    upto += 1
                if upto > self.count:
                    span = range(self.count, upto)
                    self.loader.insert(
                        [f"{self.prefix}-{n:07d}" for n in span], [self.due(n) for n in span]
                    )
                    self.count = upto
                self._halt.wait(0.2)
        except BaseException as error:  # reported by the bench, which then stops
            self.error = error

    def halt(self) -> int:
        """Stop feeding; returns how many actions were fed."""
        self._halt.set()
        self.join()
        if self.error is not None:
            raise self.error
        return self.count


# --------------------------------------------------------------------------- the workers


class LogTail:
    """The ``start`` lines appended to the workers' logs since the last call (a line still being
    written is kept for the next call)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.offsets = [0] * len(paths)
        self.rest = [b""] * len(paths)
        self.starts: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        new: list[dict[str, Any]] = []
        for i, path in enumerate(self.paths):
            if not path.exists():
                continue
            with open(path, "rb") as file:
                file.seek(self.offsets[i])
                data = self.rest[i] + file.read()
                self.offsets[i] = file.tell()
            *lines, self.rest[i] = data.split(b"\n")
            for line in lines:
                entry = json.loads(line)
                if entry["ev"] == "start":
                    new.append(entry)
        self.starts.extend(new)
        return new


def worker_command(queue: str, name: str) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "tests.celery_worker_app", "worker",
        "-P", "solo", "-Q", queue, "-n", f"{name}@%h", "-l", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


class Fleet:
    """``n`` Celery worker processes on ``url``, consuming a queue of their own; ready (the flow
    built) when the constructor returns. ``started_in``: seconds until all were ready."""

    def __init__(self, url: str, broker: str, workdir: Path, n: int, batch: int) -> None:
        began = time.monotonic()
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
            with open(workdir / f"w{i}.out", "wb") as out:
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
        self.dir = workdir
        self.tail = LogTail(self.logs)
        self.progress = time.monotonic()
        deadline = time.monotonic() + 120
        try:
            while not all(any(e["ev"] == "ready" for e in read_log(p)) for p in self.logs):
                if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                    raise SystemExit(f"a worker did not start; see {workdir}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began

    def poll(self, stall: float = 60.0) -> None:
        """Read the new ``start`` lines; a dead worker, or ``stall`` seconds without a start,
        ends the bench (with the workers' output)."""
        if self.tail.poll():
            self.progress = time.monotonic()
        dead = any(p.poll() is not None for p in self.procs)
        if dead or time.monotonic() - self.progress > stall:
            for out in sorted(self.dir.glob("w*.out")):
                print(f"--- {out.name}", out.read_text(errors="replace")[-3000:], sep="\n")
            raise SystemExit(f"{'a worker died' if dead else 'stalled'}: {self.started()}")

    def started(self) -> int:
        return len(self.tail.starts)

    def stop(self) -> None:
        """SIGTERM (a warm shutdown: the batch in hand finishes), SIGKILL after 60 s."""
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Beat:
    """The bench's Celery beat: :meth:`tick` sends ``run_due`` at fixed intervals (a slow
    iteration of the caller does not stretch the period), and sleeps until the next one."""

    def __init__(self, app: Any, queue: str, every: float) -> None:
        self.app, self.queue, self.every = app, queue, every
        self.next = time.monotonic()

    def tick(self) -> None:
        self.app.send_task("leadflow.run_due", queue=self.queue)
        self.next += self.every
        time.sleep(max(0.0, self.next - time.monotonic()))


# --------------------------------------------------------------------------- statistics


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(rows: list[dict[str, Any]]) -> dict[str, float]:
    """p50 / p99 / max of start minus due time, in seconds."""
    lat = [e["at"] - e["due"] for e in rows]
    if not lat:
        return {}
    return {
        "p50": round(pct(lat, 0.5), 3),
        "p99": round(pct(lat, 0.99), 3),
        "max": round(max(lat), 3),
    }


def order(rows: list[dict[str, Any]], window: int) -> dict[str, float]:
    """How closely the start order follows the due order: Spearman's rank correlation, and the
    share of actions started after one due more than ``window`` places later (the batches in
    flight at once may interleave; beyond them, an inversion means not oldest-due-first)."""
    n = len(rows)
    if n < 2:
        return {"spearman": 1.0, "inverted_beyond_window": 0.0}
    by_due = sorted(range(n), key=lambda i: (rows[i]["due"], rows[i]["key"]))
    due_rank = [0] * n
    for rank, i in enumerate(by_due):
        due_rank[i] = rank
    by_start = sorted(range(n), key=lambda i: rows[i]["at"])
    d2 = sum((due_rank[i] - s) ** 2 for s, i in enumerate(by_start))
    inverted, highest = 0, -1
    for i in by_start:
        if highest > due_rank[i] + window:
            inverted += 1
        highest = max(highest, due_rank[i])
    return {
        "spearman": round(1 - 6 * d2 / (n * (n * n - 1)), 5),
        "inverted_beyond_window": round(inverted / n, 5),
    }


def check(starts: list[dict[str, Any]], expected: int, store: dict[str, int]) -> int:
    """The number of duplicate starts; exits 2 (a wrong answer) unless every one of the
    ``expected`` actions started exactly once and the store holds them all ``done``."""
    counts = Counter(e["key"] for e in starts)
    duplicates = len(starts) - len(counts)
    if len(counts) != expected or duplicates or store != {"done": expected}:
        print(
            f"WRONG: {len(starts)} starts of {len(counts)} keys ({duplicates} duplicates), "
            f"expected {expected}; store {store}"
        )
        sys.exit(2)
    return duplicates


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system, seconds) used so far by PostgreSQL's processes (``postgres``),
    by Celery worker processes and by Redis, read from /proc (Linux); processes that ended
    meanwhile are not counted, so read it around a phase during which they all live."""
    totals = {"postgres": 0.0, "workers": 0.0, "redis": 0.0}
    for pid, found in proc_cpu.processes():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        command = raw.replace(b"\0", b" ").decode(errors="replace")
        used = proc_cpu.ticks_to_seconds(found.ticks())
        if found.name == "postgres":
            totals["postgres"] += used
        elif "celery" in command and " worker " in command:
            totals["workers"] += used
        elif found.name.startswith("redis-server"):
            totals["redis"] += used
    return totals


def cores_used(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Average cores each kind of process used between two :func:`cpu_seconds` readings."""
    return {k: round((after[k] - before[k]) / seconds, 2) for k in before}
