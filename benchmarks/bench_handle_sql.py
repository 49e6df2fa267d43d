"""``handle`` and ``handle_many`` on PostgreSQL and a SQLite file against floors measured in the
same run (issue 17):

- ``handle``, one event at a time, against one ``INSERT`` + ``COMMIT`` per event straight
  through the driver (psycopg 3 / sqlite3) on the same database;
- ``handle_many`` (chunks of 500 events), against an ``executemany`` of 500 rows + ``COMMIT``,
  per event.

The workload: one rule on ``opportunity.created`` with two actions that run now, a
``create_activity`` (duplicates allowed: every event creates one) and a ``send_notification``;
events as mappings, each for a new opportunity. Floors and leadflow alternate in one process,
repetition after repetition, and the medians are printed with wall and process (CPU) times,
ratios, and per event and per action: statements, commits (SQLAlchemy's commit events plus the
write statements run in autocommit on PostgreSQL) and PostgreSQL round trips (statements +
BEGIN + COMMIT of each transaction), counted before the check's own reads; and where the wall
time went (in statements, between the engine's cursor events, which the stores' driver-level
statements fire too; in commits; the rest). The timed repetitions run with no listener on
the engine (as a host's engine has none: the counting listeners cost CPU of their own, about
a fifth of the Python calls of a SQLite ``handle``); the counts and the wall's split come from
one more batch of each, counted, after them. Checked while timing:
every event's activity is stored, every action ran and is done, nothing failed (a wrong answer
exits 2). Nothing is asserted on time.

Run: python benchmarks/bench_handle_sql.py [--events 2000] [--reps 5] [--url postgresql+psycopg://...]
[--calls] [--freeze] [--split] (``--split``: the CPU per event by layer, :mod:`cpu_split`, on one
more batch of each; ``--calls``: also the Python function calls per event, counted with
cProfile on one more batch of each; ``--freeze``: ``gc.freeze()`` after the warm-up, as a host
may do once it has started, so the collector's full collections no longer walk the heap the
imports built). On a SQLite file the WAL frames (pages written) per event are counted on one
more batch of each, the log emptied first and its automatic checkpoint off. The process time
the cyclic garbage collector took during the last repetition is printed per event
(``collector``), with its full collections.
(the URL may come from LEADFLOW_BENCH_POSTGRES_URL; without one PostgreSQL is skipped).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from leadflow import FlowSettings, FollowUpRule, HandleResult, Integrations, LeadFlow, ManualClock
from leadflow.adapters import InMemoryOpportunities, StaticTeamDirectory
from leadflow.stores.sql import SqlStorage, sql_storage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import T0, Counting
from bench_sql_queries import URL_ENV, Bad
from cpu_split import layer_split

CHUNK = 500
ACTIONS = 2  # per event, both run now (``--rule notify``; 1 with ``--rule activity``)
RULE = FollowUpRule.model_validate(
    {
        "ruleId": "welcome",
        "name": "welcome",
        "allowDuplicates": True,
        "trigger": {"eventType": "opportunity.created", "conditions": []},
        "actions": [
            {"actionType": "create_activity", "subject": "Call the lead", "assignTo": "alice"},
            {"actionType": "send_notification", "template": "new_lead", "assignTo": "bob"},
        ],
    }
)

ACTIVITY_ONLY = RULE.model_copy(update={"actions": RULE.actions[:1]})
"""``--rule activity``: the event's only run-now action creates an activity, a handler with
no effect outside the store: on PostgreSQL ``handle`` stores it ahead, one statement."""


def events(tag: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "eventId": f"{tag}-{n}",
            "eventType": "opportunity.created",
            "occurredAt": T0.isoformat(),
            "payload": {"opportunityId": f"{tag}-opp-{n}", "customerId": f"c-{n}"},
        }
        for n in range(count)
    ]


class Counts:
    """Statements, commits and transactions on an engine (see the module's docstring), and the
    wall time spent in statements (between the cursor events) and in commits (the dialect's
    ``do_commit``, wrapped while counting)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.statements = self.commits = self.transactions = 0
        self.in_statements = self.in_commits = 0.0
        self._started = 0.0
        self._attached = False

    def attach(self) -> None:
        """Listen to the engine (and time its commits) until :meth:`close`."""
        if self._attached:
            return
        self._attached = True
        engine = self.engine
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "after_cursor_execute", self._executed)
        sa.event.listen(engine, "commit", self._commit)
        dialect = engine.dialect
        self._do_commit = dialect.do_commit

        def timed_commit(connection: Any) -> None:
            started = time.perf_counter()
            try:
                self._do_commit(connection)
            finally:
                self.in_commits += time.perf_counter() - started

        setattr(dialect, "do_commit", timed_commit)  # noqa: B010 (wrapped while counting)

    def _statement(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        self.statements += 1
        self._started = time.perf_counter()
        raw = getattr(cursor, "connection", None)
        if getattr(raw, "autocommit", False) is True:
            if not statement.lstrip().upper().startswith("SELECT"):
                self.commits += 1
        else:
            status = getattr(getattr(raw, "info", None), "transaction_status", None)
            if status is not None:
                # psycopg: idle before a statement means it sends BEGIN first (a round trip).
                # Asked of the driver: a flag kept across statements missed the BEGIN of a
                # transaction that followed one ended without a commit event (a rollback).
                if status == 0:
                    self.transactions += 1
            elif not conn.info.get("bench_tx"):
                conn.info["bench_tx"] = True
                self.transactions += 1

    def _executed(self, *_: Any) -> None:
        self.in_statements += time.perf_counter() - self._started

    def _commit(self, conn: Any) -> None:
        conn.info["bench_tx"] = False
        info = getattr(conn.connection.driver_connection, "info", None)
        if getattr(info, "transaction_status", None) == 0:  # psycopg: none open, sends nothing
            return
        self.commits += 1

    def reset(self) -> None:
        self.statements = self.commits = self.transactions = 0
        self.in_statements = self.in_commits = 0.0

    def snapshot(self) -> tuple[int, int, int, float, float]:
        return (
            self.statements,
            self.commits,
            self.transactions,
            self.in_statements,
            self.in_commits,
        )

    def close(self) -> None:
        if not self._attached:
            return
        self._attached = False
        sa.event.remove(self.engine, "before_cursor_execute", self._statement)
        sa.event.remove(self.engine, "after_cursor_execute", self._executed)
        sa.event.remove(self.engine, "commit", self._commit)
        setattr(self.engine.dialect, "do_commit", self._do_commit)  # noqa: B010


def make_flow(storage: SqlStorage) -> LeadFlow:
    counting = Counting()
    flow = LeadFlow(
        storage,
        Integrations(
            notifier=counting,
            messenger=counting,
            opportunities=InMemoryOpportunities(),
            team=StaticTeamDirectory(["alice", "bob"]),
            events=counting,
        ),
        clock=ManualClock(T0 + timedelta(seconds=1)),
        settings=FlowSettings(rules_refresh=timedelta(days=365)),
    )
    if not storage.rules.list():
        flow.rules.create(RULE)
    flow.engine()
    return flow


def check(storage: SqlStorage, results: list[Any], batch: list[dict[str, Any]]) -> None:
    for item in results:
        if not isinstance(item, HandleResult):
            raise Bad(f"an event was refused: {item!r}")
        if len(item.executed) != ACTIONS or not all(run.ok for run in item.executed):
            raise Bad(f"event {item.event.id}: {item.executed} {item.all_errors()}")
    c = storage.database.tables.activities.c
    ids = [e["payload"]["opportunityId"] for e in batch]
    with storage.database.engine.connect() as connection:
        stored = connection.execute(
            sa.select(sa.func.count()).where(c.opportunity_id.in_(ids))
        ).scalar_one()
        t = storage.database.tables.scheduled
        done = connection.execute(
            sa.select(sa.func.count()).where(t.c.opportunity_id.in_(ids), t.c.state == "done")
        ).scalar_one()
    if stored != len(batch) or done != ACTIONS * len(batch):
        raise Bad(f"{stored} activities, {done} done actions for {len(batch)} events")


Timing = tuple[float, float]  # wall, process seconds
FREEZE = False  # ``--freeze``


class Collector:
    """The process time the cyclic garbage collector takes, and its full collections."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
            return
        self.seconds += time.process_time() - self._started
        self.full += info["generation"] == 2

    def reset(self) -> None:
        self.seconds, self.full = 0.0, 0


COLLECTOR = Collector()


def timed(work: Callable[[], Any]) -> tuple[Any, Timing]:
    gc.collect()
    COLLECTOR.reset()  # what the collector does in ``work`` (not the collection above)
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    return out, (time.perf_counter() - wall, time.process_time() - cpu)


# --------------------------------------------------------------------------- floors


def pg_floor(dsn: str, rows: int, *, batch: int) -> Timing:
    """One INSERT + COMMIT per row (``batch=1``), or ``executemany`` of ``batch`` rows + COMMIT,
    through psycopg on a fresh table (a text key and a jsonb document, like a stored action)."""
    import psycopg
    from psycopg.types.json import Jsonb

    table = f"floor_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn) as conn:
        conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, doc jsonb NOT NULL)")
        conn.commit()
        data = [(f"r{n}", Jsonb({"n": n, "subject": "Call the lead"})) for n in range(rows)]
        sql = f"INSERT INTO {table} (id, doc) VALUES (%s, %s)"
        try:

            def run() -> None:
                with conn.cursor() as cursor:
                    for start in range(0, rows, batch):
                        if batch == 1:
                            cursor.execute(sql, data[start])
                        else:
                            cursor.executemany(sql, data[start : start + batch])
                        conn.commit()

            _, timing = timed(run)
        finally:
            conn.execute(f"DROP TABLE {table}")
            conn.commit()
    return timing


def sqlite_floor(path: Path, rows: int, *, batch: int) -> Timing:
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    table = f"floor_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE TABLE {table} (id TEXT PRIMARY KEY, doc TEXT NOT NULL)")
    conn.commit()
    data = [(f"r{n}", f'{{"n": {n}, "subject": "Call the lead"}}') for n in range(rows)]
    sql = f"INSERT INTO {table} (id, doc) VALUES (?, ?)"

    def run() -> None:
        for start in range(0, rows, batch):
            if batch == 1:
                conn.execute(sql, data[start])
            else:
                conn.executemany(sql, data[start : start + batch])
            conn.commit()

    try:
        _, timing = timed(run)
    finally:
        conn.execute(f"DROP TABLE {table}")
        conn.commit()
        conn.close()
    return timing


# --------------------------------------------------------------------------- leadflow


Snapshot = tuple[int, int, int, float, float]  # Counts.snapshot()


def run_handle(
    flow: LeadFlow, storage: SqlStorage, counts: Counts, batch: list[Any]
) -> tuple[Timing, Snapshot]:
    """``handle`` each of ``batch``, timed; what ``counts`` saw (nothing unless attached)."""
    counts.reset()
    results, timing = timed(lambda: [flow.handle(e) for e in batch])
    seen = counts.snapshot()  # before the check's own statements
    check(storage, results, batch)
    return timing, seen


def run_many(
    flow: LeadFlow, storage: SqlStorage, counts: Counts, batch: list[Any]
) -> tuple[Timing, Snapshot]:
    """``handle_many(batch)``, timed; what ``counts`` saw (nothing unless attached)."""
    counts.reset()
    results, timing = timed(lambda: flow.handle_many(batch))
    seen = counts.snapshot()
    check(storage, results, batch)
    return timing, seen


def per(seen: Snapshot, n: int, postgres: bool) -> str:
    s, c, t = seen[0] / n, seen[1] / n, seen[2] / n
    text = f"{s:.3f} statements, {c:.3f} commits"
    if postgres:
        text += f", {s + 2 * t:.3f} round trips"
    return text


def report(seen: Snapshot, wall: float, n: int, postgres: bool) -> str:
    statements, commits = seen[3] / n, seen[4] / n
    rest = wall / n - statements - commits
    return (
        f"per event {per(seen, n, postgres)}; per action {per(seen, n * ACTIONS, postgres)}\n"
        f"    wall per event: statements {statements * 1e6:.0f} us, commits {commits * 1e6:.0f} "
        f"us, the rest (leadflow, SQLAlchemy) {rest * 1e6:.0f} us; collector "
        f"{COLLECTOR.seconds / n * 1e6:.0f} us of CPU ({COLLECTOR.full} full collections)"
    )


def python_calls(flow: LeadFlow, storage: SqlStorage, counts: Counts, n: int) -> str:
    """Python function calls per event (cProfile) of ``handle`` and of ``handle_many``, on
    ``n`` more events each: a count the machine's load does not move."""
    found = []
    for label, run in (("handle", run_handle), ("handle_many", run_many)):
        profile = cProfile.Profile()
        batch = events(f"calls-{label}", n)
        profile.enable()
        try:
            run(flow, storage, counts, batch)  # its check's reads are counted too (~1%)
        finally:
            profile.disable()
        total = pstats.Stats(profile, stream=io.StringIO()).total_calls  # type: ignore[attr-defined]
        found.append(f"{label} {total / n:,.0f}")
    return "Python function calls per event: " + ", ".join(found)


def layers(flow: LeadFlow, storage: SqlStorage, n: int) -> str:
    """``--split``: the CPU per event of each layer (:mod:`cpu_split`) in one more batch of
    ``handle`` and of ``handle_many``."""
    lines = []
    for label in ("handle", "handle_many"):
        batch = events(f"split-{label}", n)
        with layer_split() as spent:
            if label == "handle":
                results, (_, cpu) = timed(lambda b=batch: [flow.handle(e) for e in b])
            else:
                results, (_, cpu) = timed(lambda b=batch: flow.handle_many(b))
        check(storage, results, batch)
        parts = sorted(spent.items(), key=lambda item: -item[1])
        rest = cpu - sum(spent.values())
        lines.append(f"  CPU per event, {label}: {cpu / n * 1e6:.0f} us")
        lines += [f"    {part:<48}{seconds / n * 1e6:>7.1f} us" for part, seconds in parts]
        lines.append(f"    {'the rest (runtime, stores, encoding)':<48}{rest / n * 1e6:>7.1f} us")
    return "\n".join(lines)


def wal_frames(flow: LeadFlow, storage: SqlStorage, counts: Counts, n: int) -> str:
    """SQLite file: the WAL frames (pages written, one frame each) per event of ``handle`` (one
    commit an event) and of ``handle_many``, on ``n`` more events each: the log emptied first
    and the automatic checkpoint off meanwhile (a count the machine's load does not move)."""
    engine = storage.database.engine
    wal = Path(f"{engine.url.database}-wal")

    def no_checkpoints(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")

    engine.dispose()  # every connection made again, with the pragma
    sa.event.listen(engine, "connect", no_checkpoints)
    found = []
    try:
        for label, run in (("handle", run_handle), ("handle_many", run_many)):
            with engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                page = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
            run(flow, storage, counts, events(f"frames-{label}", n))
            frames = max(wal.stat().st_size - 32, 0) / (page + 24)  # the log's header, frames
            found.append(f"{label} {frames / n:.2f}")
    finally:
        sa.event.remove(engine, "connect", no_checkpoints)
        engine.dispose()
    return f"WAL frames ({page} bytes each) per event: " + ", ".join(found)


def compare(
    name: str,
    floor: Callable[[int], Timing],
    storage: SqlStorage,
    n: int,
    reps: int,
    postgres: bool,
    calls: bool = False,
    split: bool = False,
) -> None:
    flow = make_flow(storage)
    counts = Counts(storage.database.engine)
    try:
        run_handle(flow, storage, counts, events("warm", 50))  # connect, compile, warm caches
        if FREEZE:
            gc.collect()
            gc.freeze()
        samples: dict[str, list[Timing]] = {k: [] for k in ("f1", "handle", "f500", "many")}
        last: dict[str, str] = {}
        for rep in range(reps):  # timed with no listener on the engine
            samples["f1"].append(floor(1))
            samples["handle"].append(run_handle(flow, storage, counts, events(f"h{rep}", n))[0])
            samples["f500"].append(floor(CHUNK))
            samples["many"].append(run_many(flow, storage, counts, events(f"m{rep}", n))[0])
        counts.attach()  # one more batch of each, counted (the listeners' own CPU in it)
        timing, seen = run_handle(flow, storage, counts, events("ch", n))
        last["handle"] = "counted: " + report(seen, timing[0], n, postgres)
        timing, seen = run_many(flow, storage, counts, events("cm", n))
        last["many"] = "counted: " + report(seen, timing[0], n, postgres)
        if calls:
            last["calls"] = python_calls(flow, storage, counts, min(n, 500))
        if split:
            last["split"] = layers(flow, storage, n)
        if not postgres and storage.database.engine.url.database:
            last["frames"] = wal_frames(flow, storage, counts, min(n, 500))
    finally:
        counts.close()

    def median(key: str) -> tuple[float, float]:
        walls = statistics.median(w for w, _ in samples[key]) / n
        cpus = statistics.median(c for _, c in samples[key]) / n
        return walls, cpus

    print(f"\n{name}: {n:,} events per run, median of {reps}")
    for label, key, base in (
        ("floor: INSERT + COMMIT per event", "f1", None),
        ("handle", "handle", "f1"),
        (f"floor: executemany {CHUNK} + COMMIT, per event", "f500", None),
        ("handle_many", "many", "f500"),
    ):
        wall, cpu = median(key)
        line = f"  {label:<46}{1 / wall:>10,.0f} events/s  {wall * 1e6:>8.1f} us"
        line += f"  cpu {cpu * 1e6:>7.1f} us"
        if base is not None:
            line += f"  {wall / median(base)[0]:>5.2f}x the floor"
        print(line)
        if key in last:
            print(f"    {last[key]}")
    if "calls" in last:
        print(f"  {last['calls']}")
    if "split" in last:
        print(last["split"])
    if "frames" in last:
        print(f"  {last['frames']}")


@contextmanager
def pg_storage(url: str) -> Iterator[SqlStorage]:
    engine = sa.create_engine(url, pool_size=4)
    schema = f"lf_bench_{uuid.uuid4().hex[:8]}"
    storage = sql_storage(engine, schema=schema)
    try:
        yield storage
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get(URL_ENV), help="PostgreSQL URL")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", choices=["postgresql", "sqlite"], action="append")
    parser.add_argument(
        "--calls", action="store_true", help="count Python function calls per event (cProfile)"
    )
    parser.add_argument(
        "--rule",
        choices=["notify", "activity"],
        default="notify",
        help="the rule: an activity and a notification run now (default), or the activity alone",
    )
    parser.add_argument(
        "--freeze", action="store_true", help="gc.freeze() after the warm-up (see the docstring)"
    )
    parser.add_argument(
        "--split", action="store_true", help="CPU per event by layer, one more batch (cpu_split)"
    )
    args = parser.parse_args()
    global FREEZE
    FREEZE = args.freeze
    gc.callbacks.append(COLLECTOR)
    if args.rule == "activity":
        global RULE, ACTIONS
        RULE, ACTIONS = ACTIVITY_ONLY, 1
    parts = set(args.only or ["postgresql", "sqlite"])
    n, reps = args.events, args.reps
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    try:
        if "postgresql" in parts:
            if args.url is None:
                print(f"PostgreSQL skipped: no server URL (--url or {URL_ENV})")
            else:
                dsn = sa.make_url(args.url).set(drivername="postgresql")
                plain = dsn.render_as_string(hide_password=False)
                with pg_storage(args.url) as storage:
                    compare(
                        "PostgreSQL",
                        lambda b: pg_floor(plain, n, batch=b),
                        storage,
                        n,
                        reps,
                        True,
                        args.calls,
                        args.split,
                    )
        if "sqlite" in parts:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "bench.db"
                storage = sql_storage(f"sqlite:///{path}")
                try:
                    floor_path = Path(tmp) / "floor.db"
                    compare(
                        "SQLite file (WAL)",
                        lambda b: sqlite_floor(floor_path, n, batch=b),
                        storage,
                        n,
                        reps,
                        False,
                        args.calls,
                        args.split,
                    )
                finally:
                    storage.close()
    except Bad as error:
        print(f"WRONG ANSWER: {error}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
