"""The SQL backend side by side (issue 10, "Performance"), in one run:

1. ``run_due`` throughput: N actions due now, drained by 1 and 4 worker processes (claim a batch,
   a no-op handler registered on the flow, mark done) on PostgreSQL, against PgQueuer on the same
   server (same N, same workers, batch size and a no-op job); also on a SQLite file. Every action
   must have run exactly once: each worker counts its handler's calls by idempotency key (by job
   id for PgQueuer), the parent merges the counts, and the store must hold N ``done`` actions
   (PgQueuer: an empty queue). The rate is N over the time from the release of the workers
   to the last handler call (PgQueuer's drain mode idles up to its dequeue timeout before a
   worker returns); the rate until every worker returned is printed beside it.
2. ``handle`` throughput: the service benchmark's workload (20 rules, events as mappings, the
   clock following the events, ``run_due`` every 100 events) on SQLite (memory, file) and
   PostgreSQL beside the in-memory stores, with the statements and transactions per event
   counted by SQLAlchemy event listeners (``before_cursor_execute``, ``commit``/``rollback``).
   Results are checked as in ``bench_service.py``.
3. The seed's query set at 100,000 and 1,000,000 activities (``bench_store.py``'s generator):
   ``for_opportunity``, the first ``overdue`` page, ``pending``, ``statistics`` over about 10,000
   activities; medians, their EXPLAIN plans, and every answer checked against a reference.

Medians and ratios are printed; nothing is asserted on time (a wrong answer exits 2).

Run: python benchmarks/bench_sql.py [--quick] [--url postgresql+psycopg://postgres@host:port/db]
The URL may also come from LEADFLOW_BENCH_POSTGRES_URL; without one the PostgreSQL parts are
skipped (and said so). Each part works in a schema of its own on the server, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from leadflow import (
    Action,
    Event,
    FlowSettings,
    HandlerRegistry,
    Integrations,
    LeadFlow,
    ManualClock,
    ScheduledAction,
)
from leadflow.adapters import InMemoryOpportunities, StaticTeamDirectory
from leadflow.ports import Storage
from leadflow.stores.sql import SqlStorage, sql_storage
from leadflow.stores.sql.scheduled_sql import action_values as scheduled_row  # the store's own row

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proc_cpu
from bench_service import T0, Counting, Tally, check, make_events, twenty_rules
from bench_sql_queries import URL_ENV, Bad, Trips, expect, part_queries, pg_schema

NOOP = "bench_noop"
CPU: dict[str, list[dict[str, Any]]] = {}
"""The drains of ``run_due``, by what ran (for their CPU time per action)."""
QUEUE_SCHEMA = f"pgq_bench_{uuid.uuid4().hex[:8]}"
os.environ.setdefault("PGQUEUER_SCHEMA", QUEUE_SCHEMA)  # read by pgqueuer (and the children)


# --------------------------------------------------------------------------- 1. run_due


def schedule_rows(storage: SqlStorage, n: int) -> set[str]:
    """N no-op actions due a second ago, inserted in batches with Core executemany through
    the store's table (rows built by the store's own row function)."""
    due = datetime.now(UTC) - timedelta(seconds=1)
    rows = []
    for i in range(n):
        event = Event(id=f"b-{i:06d}", type="opportunity.created", time=due, payload={"n": i})
        action = ScheduledAction(
            idempotency_key=f"bench/{i:06d}",
            event=event,
            rule_id="bench",
            rule_name="bench",
            action=Action.model_validate({"actionType": NOOP}),
            planned_at=due,
            due_at=due,
            created_at=due,
        )
        rows.append(scheduled_row(action))
    table = storage.database.tables.scheduled
    with storage.database.write() as connection:
        # Emptied as PgQueuer's queue is (TRUNCATE): a DELETE left the last repetition's rows
        # dead in the table and its indexes (the same keys again in the unique index), which
        # the next drain walked over, and PgQueuer's table had none of that.
        if storage.database.is_sqlite:
            connection.execute(table.delete())
        else:
            connection.execute(sa.text(f"TRUNCATE {table.fullname}"))
        for start in range(0, n, 2000):
            connection.execute(table.insert(), rows[start : start + 2000])
    return {str(r["idempotency_key"]) for r in rows}


def lf_worker(target: str, schema: str | None, batch: int, ready: Any, go: Any, out: Any) -> None:
    """One leadflow instance draining the due actions with ``run_due(limit=batch)``."""
    engine = sa.create_engine(target) if target.startswith("postgresql") else None
    storage = sql_storage(engine or target, schema=schema, create=False)
    trips = Trips(storage.database.engine)
    seen: Counter[str] = Counter()
    last = [0.0]

    def noop(ctx: Any) -> str:
        seen[ctx.scheduled.idempotency_key] += 1
        last[0] = time.monotonic()
        return "ok"

    handlers = HandlerRegistry.default()
    handlers.register(NOOP, noop)
    settings = FlowSettings(worker_id=f"bench-{os.getpid()}")
    flow = LeadFlow.in_memory(storage=storage, handlers=handlers, settings=settings)
    flow.run_due(limit=batch, now=datetime(2000, 1, 1, tzinfo=UTC))  # connect; claims nothing
    trips.statements = trips.transactions = 0
    ready.wait()
    go.wait()
    cpu = time.process_time()
    failed = 0
    while True:
        report = flow.run_due(limit=batch)
        failed += report.failed + report.parked
        if report.claimed == 0:
            break
    end, cpu = time.monotonic(), time.process_time() - cpu
    out.put((dict(seen), end, failed, trips.statements, trips.transactions, last[0], cpu))
    storage.close()


def pgq_worker(dsn: str, schema: str, batch: int, ready: Any, go: Any, out: Any) -> None:
    """One PgQueuer QueueManager (psycopg driver) draining the queue with a no-op job."""
    import psycopg
    from pgqueuer import PsycopgDriver, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    seen: Counter[int] = Counter()
    calls = [0]
    last = [0.0]

    async def main() -> tuple[float, float]:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        driver = PsycopgDriver(conn)
        for name in ("fetch", "execute"):  # count the queue's round trips
            inner = getattr(driver, name)

            async def counted(*args: Any, _inner: Any = inner) -> Any:
                calls[0] += 1
                return await _inner(*args)

            setattr(driver, name, counted)
        qm = QueueManager(Queries(driver))

        @qm.entrypoint(NOOP)
        async def noop(job: Any) -> None:
            seen[int(job.id)] += 1
            last[0] = time.monotonic()

        await qm.verify_structure()
        calls[0] = 0
        ready.wait()
        go.wait()
        cpu = time.process_time()
        await qm.run(
            batch_size=batch, mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=1)
        )
        end, cpu = time.monotonic(), time.process_time() - cpu
        await conn.close()
        return end, cpu

    end, cpu = asyncio.run(main())
    out.put((dict(seen), end, 0, calls[0], 0, last[0], cpu))


def server_seconds(postmaster: int | None) -> float | None:
    """The CPU time (user + system) the PostgreSQL server at ``postmaster`` (its pid) has used:
    the postmaster's own and its reaped children's (``/proc/<pid>/stat``: utime, stime,
    cutime, cstime), plus its live children's (backends, WAL writer, checkpointer, autovacuum);
    None where it cannot be read (another host, another user, no ``/proc``). A backend that
    exits between two readings counts once its parent reaps it: read after the clients have
    disconnected and the server has had a moment."""
    if postmaster is None:
        return None
    own = proc_cpu.stat(postmaster)
    if own is None:
        return None
    ticks = own.ticks(children=True)
    ticks += sum(s.ticks() for _, s in proc_cpu.processes() if s.parent == postmaster)
    return proc_cpu.ticks_to_seconds(ticks)


def postmaster_pid(dsn: str) -> int | None:
    """The server's postmaster pid, read from its data directory when this process can (a
    local server run by a superuser account, as the tests' throwaway cluster)."""
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        first = (Path(str(row[0])) / "postmaster.pid").read_text().split()[0] if row else ""
        return int(first)
    except (OSError, ValueError, IndexError, psycopg.Error):
        return None


def wal_position(dsn: str | None) -> int | None:
    """The server's WAL insert position in bytes (None without a server): the difference
    around a load or a drain is the WAL it wrote (everyone's: run nothing else on it)."""
    if dsn is None:
        return None
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')").fetchone()
    return None if row is None else int(row[0])


def cpu_line(got: dict[str, Any], n: int) -> str:
    """The drain's CPU per action: the workers', the server's, both; and the WAL per action
    of the load and of the drain, where the server's position could be read."""
    workers = got["worker_cpu"] / n * 1e6
    wal = ""
    if got.get("wal_drain") is not None and got.get("wal_load") is not None:
        load, drained = got["wal_load"] / n, got["wal_drain"] / n
        wal = f"; WAL per action: load {load:,.0f} B, drain {drained:,.0f} B"
    if got.get("server_cpu") is None:
        return f"CPU per action: workers {workers:.0f} us (server: not readable){wal}"
    server = got["server_cpu"] / n * 1e6
    both = workers + server
    return f"CPU per action: workers {workers:.0f} us + server {server:.0f} us = {both:.0f} us{wal}"


def drain(
    worker: Callable[..., None],
    args: tuple[Any, ...],
    workers: int,
    postmaster: int | None = None,
    dsn: str | None = None,
) -> dict[str, Any]:
    """Start ``workers`` processes, release them together, and collect what they ran, with the
    CPU time the workers used from their release to their end (each its own process time:
    their start-up and imports left out) and the server's (``postmaster``: its pid) from the
    release to the workers' exit."""
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Barrier(workers + 1), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(*args, ready, go, out)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    ready.wait(timeout=120)
    server = server_seconds(postmaster)
    wal = wal_position(dsn)
    start = time.monotonic()
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    wal_after = wal_position(dsn)
    worker_cpu = sum(r[6] for r in results)
    server_cpu = None
    if server is not None:
        time.sleep(0.3)  # the workers' backends exit and are reaped: their time moves to cutime
        after = server_seconds(postmaster)
        server_cpu = None if after is None else after - server
    seen: Counter[Any] = Counter()
    for counts, *_ in results:
        seen.update(counts)
    return {
        "worker_cpu": worker_cpu,
        "server_cpu": server_cpu,
        "wal_drain": None if wal is None or wal_after is None else wal_after - wal,
        "seconds": max(r[1] for r in results) - start,
        "active": max(r[5] for r in results) - start,
        "seen": seen,
        "failed": sum(r[2] for r in results),
        "statements": sum(r[3] for r in results),
        "transactions": sum(r[4] for r in results),
    }


def pg_dsn(url: str) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL URL."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(False)


def check_once(seen: Counter[Any], expected: set[Any], name: str) -> None:
    doubled = [k for k, v in seen.items() if v != 1]
    expect(not doubled, f"{name}: {len(doubled)} action(s) ran more than once")
    expect(set(seen) == expected, f"{name}: {len(expected - set(seen))} action(s) never ran")


def run_due_leadflow(
    target: str, schema: str | None, n: int, workers: int, batch: int, postmaster: int | None
) -> float:
    storage = sql_storage(
        sa.create_engine(target) if target.startswith("postgresql") else target, schema=schema
    )
    dsn = pg_dsn(target) if target.startswith("postgresql") else None
    before = wal_position(dsn)
    keys = schedule_rows(storage, n)
    loaded = wal_position(dsn)
    got = drain(lf_worker, (target, schema, batch), workers, postmaster, dsn)
    got["wal_load"] = None if before is None or loaded is None else loaded - before
    check_once(got["seen"], keys, "leadflow")
    expect(got["failed"] == 0, f"leadflow: {got['failed']} failed runs")
    table = storage.database.tables.scheduled
    with storage.database.read() as connection:
        done = connection.execute(
            sa.select(sa.func.count()).where(table.c.state == "done")
        ).scalar_one()
    expect(done == n, f"leadflow: {done} of {n} actions done in the store")
    storage.close()
    per = (got["statements"] / n, got["transactions"] / n)
    print(
        f"  leadflow  {workers} worker(s): {n / got['active']:>8,.0f} actions/s to the last effect "
        f"({n / got['seconds']:,.0f}/s until the workers returned; "
        f"{per[0]:.2f} statements + {per[1]:.2f} transactions per action)\n"
        f"            {cpu_line(got, n)}"
    )
    backend = "pg" if target.startswith("postgresql") else "sqlite"
    CPU.setdefault(f"leadflow {backend} x{workers}", []).append(got)
    return float(n / got["active"])


async def pgq_enqueue(dsn: str, n: int) -> set[int]:
    import psycopg
    from pgqueuer import PsycopgDriver, Queries

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        queries = Queries(PsycopgDriver(conn))
        if not await queries.has_table("pgqueuer"):
            await queries.install()
        await conn.execute(f'TRUNCATE "{QUEUE_SCHEMA}".pgqueuer, "{QUEUE_SCHEMA}".pgqueuer_log')
        ids: list[int] = []
        for start in range(0, n, 5000):
            size = min(5000, n - start)
            ids += await queries.enqueue([NOOP] * size, [None] * size, [0] * size)
        return set(ids)


def run_due_pgqueuer(dsn: str, n: int, workers: int, batch: int, postmaster: int | None) -> float:
    import psycopg

    before = wal_position(dsn)
    ids = asyncio.run(pgq_enqueue(dsn, n))
    loaded = wal_position(dsn)
    got = drain(pgq_worker, (dsn, QUEUE_SCHEMA, batch), workers, postmaster, dsn)
    got["wal_load"] = None if before is None or loaded is None else loaded - before
    check_once(got["seen"], ids, "PgQueuer")
    with psycopg.connect(dsn) as conn:
        left = conn.execute(f'SELECT count(*) FROM "{QUEUE_SCHEMA}".pgqueuer').fetchone()
    expect(left is not None and left[0] == 0, f"PgQueuer: {left} jobs left in the queue")
    print(
        f"  PgQueuer  {workers} worker(s): {n / got['active']:>8,.0f} jobs/s to the last effect    "
        f"({n / got['seconds']:,.0f}/s until the workers returned; "
        f"{got['statements'] / n:.3f} driver calls per job)\n"
        f"            {cpu_line(got, n)}"
    )
    CPU.setdefault(f"PgQueuer x{workers}", []).append(got)
    return float(n / got["active"])


def part_run_due(
    url: str | None, n: int, reps: int, batch: int, tmp: Path, sqlite: bool = True
) -> None:
    print(f"\n1. run_due: {n:,} due actions, batch {batch}, median of {reps} run(s)")
    rates: dict[str, list[float]] = {}
    if url is None:
        print(f"  PostgreSQL skipped: no server URL (--url or {URL_ENV})")
    else:
        import psycopg

        dsn = pg_dsn(url)
        postmaster = postmaster_pid(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{QUEUE_SCHEMA}"')
        try:
            with pg_schema(url) as (_engine, schema):
                for _rep in range(reps):
                    for workers in (1, 4):
                        rates.setdefault(f"leadflow pg x{workers}", []).append(
                            run_due_leadflow(url, schema, n, workers, batch, postmaster)
                        )
                        rates.setdefault(f"PgQueuer x{workers}", []).append(
                            run_due_pgqueuer(dsn, n, workers, batch, postmaster)
                        )
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{QUEUE_SCHEMA}" CASCADE')
    target = f"sqlite:///{tmp / 'run_due.db'}"
    for _rep in range(reps if sqlite else 0):
        for workers in (1, 4):
            rates.setdefault(f"leadflow sqlite x{workers}", []).append(
                run_due_leadflow(target, None, n, workers, batch, None)
            )
    print("  medians:")
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, rate in medians.items():
        print(f"    {name:<22}{rate:>10,.0f} /s")
    for workers in (1, 4):
        ours, theirs = medians.get(f"leadflow pg x{workers}"), medians.get(f"PgQueuer x{workers}")
        if ours and theirs:
            print(f"    leadflow / PgQueuer, {workers} worker(s): {ours / theirs:.2f}x")
    print("  CPU per action, medians (workers + server; the machine's 2 cores bound a drain's")
    print("  rate by this sum when the workers and the server share them):")
    for name, runs in CPU.items():
        worker = statistics.median(r["worker_cpu"] for r in runs) / n * 1e6
        servers = [r["server_cpu"] for r in runs if r["server_cpu"] is not None]
        if servers:
            server = statistics.median(servers) / n * 1e6
            print(f"    {name:<22}{worker:>7.0f} + {server:>5.0f} = {worker + server:>6.0f} us")
        else:
            print(f"    {name:<22}{worker:>7.0f} us (workers)")
    walled = {name: runs for name, runs in CPU.items() if all(r.get("wal_drain") for r in runs)}
    if walled:
        print("  WAL per action, medians (load, drain):")
    for name, runs in walled.items():
        load = statistics.median(r["wal_load"] for r in runs) / n
        drained = statistics.median(r["wal_drain"] for r in runs) / n
        print(f"    {name:<22}{load:>7,.0f} B {drained:>7,.0f} B")


# --------------------------------------------------------------------------- 2. handle


def handle_run(storage: Storage, events: list[dict[str, Any]], opportunities: int) -> float:
    """The service benchmark's loop on ``storage``; returns events per second (checked)."""
    clock = ManualClock(T0)
    counting = Counting()
    gateway = InMemoryOpportunities()
    flow = LeadFlow(
        storage,
        Integrations(
            notifier=counting,
            messenger=counting,
            opportunities=gateway,
            team=StaticTeamDirectory(["alice", "bob", "carol", "dave"]),
            events=counting,
        ),
        clock=clock,
        settings=FlowSettings(rules_refresh=timedelta(days=365)),
    )
    for rule in twenty_rules():
        storage.rules.create(rule)
    owners = ["alice", "bob", "carol", "dave"]
    for i in range(opportunities):
        gateway.add(f"opp-{i}", owner=owners[i % 4], email=f"c{i}@example.com", phone="+15550100")
    flow.engine()
    gc.collect()
    tally = Tally()
    trips = Trips(storage.database.engine) if isinstance(storage, SqlStorage) else None
    started = time.perf_counter()
    for n, event in enumerate(events):
        clock.set(T0 + timedelta(seconds=5 * n))
        tally.add(flow.handle(event))
        if n % 100 == 99:
            tally.count(flow.run_due(limit=1000).runs)
    elapsed = time.perf_counter() - started
    try:
        check(flow, tally, 0)
    except AssertionError as error:
        raise Bad(f"handle: {error}") from error
    rate = len(events) / elapsed
    if trips is None:
        print(f"    {rate:>8,.0f} events/s")
    else:
        s, t = trips.statements / len(events), trips.transactions / len(events)
        print(
            f"    {rate:>8,.0f} events/s; per event {s:.2f} statements, {t:.2f} transactions "
            f"(PostgreSQL round trips {s + 2 * t:.2f}); most frequent statements per event:"
        )
        for kind, count in trips.kinds.most_common(7):
            print(f"      {count / len(events):6.2f}  {kind}")
    return rate


def part_handle(url: str | None, count: int, reps: int, tmp: Path) -> None:
    opportunities = count // 2
    events = make_events(count, opportunities)
    print(f"\n2. handle: {count:,} events, 20 rules, median of {reps} run(s)")
    from leadflow.stores.memory import memory_storage

    runs: dict[str, Callable[[], float]] = {
        "in-memory": lambda: handle_run(memory_storage(), events, opportunities),
    }

    def sqlite(target: str) -> float:
        storage = sql_storage(target)
        try:
            return handle_run(storage, events, opportunities)
        finally:
            storage.close()

    runs["sqlite memory"] = lambda: sqlite("sqlite://")
    runs["sqlite file"] = lambda: sqlite(f"sqlite:///{tmp / f'h{uuid.uuid4().hex[:6]}.db'}")
    if url is not None:

        def postgres() -> float:
            with pg_schema(url) as (engine, schema):
                return handle_run(sql_storage(engine, schema=schema), events, opportunities)

        runs["postgresql"] = postgres
    else:
        print(f"  PostgreSQL skipped: no server URL (--url or {URL_ENV})")
    medians = {}
    for name, run in runs.items():
        print(f"  {name}:")
        medians[name] = statistics.median(run() for _ in range(reps))
    base = medians["in-memory"]
    for name, rate in medians.items():
        print(f"    {name:<16}{rate:>9,.0f} events/s  {base / rate:>6.1f}x the in-memory time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get(URL_ENV), help="PostgreSQL URL")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--only", choices=["run_due", "handle", "queries"], action="append")
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="PostgreSQL sessions with synchronous_commit=off (PGOPTIONS), to see the fsync cost",
    )
    parser.add_argument("--sqlite-max", type=int, default=100_000, help="largest SQLite load")
    parser.add_argument(
        "--actions", type=int, default=None, help="run_due: actions due (default 5,000)"
    )
    parser.add_argument("--no-sqlite", action="store_true", help="run_due: PostgreSQL only")
    args = parser.parse_args()
    parts = set(args.only or ["run_due", "handle", "queries"])
    quick = args.quick
    if args.async_commit:  # libpq reads PGOPTIONS: every connection, ours and PgQueuer's
        os.environ["PGOPTIONS"] = "-c synchronous_commit=off"
        print("PostgreSQL sessions run with synchronous_commit=off")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if "run_due" in parts:
                actions = args.actions or (2_000 if quick else 5_000)
                part_run_due(
                    args.url, actions, 1 if quick else 3, 100, Path(tmp), not args.no_sqlite
                )
            if "handle" in parts:
                part_handle(args.url, 300 if quick else 1_000, 1 if quick else 3, Path(tmp))
            if "queries" in parts:
                sizes = [20_000] if quick else [100_000, 1_000_000]
                part_queries(args.url, sizes, args.sqlite_max, Path(tmp))
        except Bad as error:
            print(f"WRONG ANSWER: {error}")
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
