"""Helpers of ``bench_sql.py`` (wrong-answer handling, a throwaway PostgreSQL schema, round-trip
counting) and its part 3: the seed's query set on a bulk-loaded activity table, with medians,
EXPLAIN plans and every answer checked against a reference computed while loading."""

from __future__ import annotations

import heapq
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_store import NOW, generate

from leadflow.models import Activity
from leadflow.queries import ActivityFilter
from leadflow.stores.sql import SqlStorage, sql_storage
from leadflow.stores.sql.activity_sql import activity_values
from leadflow.testing.contracts import reference_statistics

URL_ENV = "LEADFLOW_BENCH_POSTGRES_URL"


class Bad(Exception):
    """A benchmark produced a wrong answer (exit 2)."""


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise Bad(what)


@contextmanager
def pg_schema(url: str) -> Iterator[tuple[sa.Engine, str]]:
    """An engine on ``url`` and a fresh schema name, the schema dropped afterwards."""
    engine = sa.create_engine(url, pool_size=4)
    schema = f"lf_bench_{uuid.uuid4().hex[:8]}"
    try:
        yield engine, schema
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


class Trips:
    """Statements and transactions on an engine, by SQLAlchemy event listeners. On PostgreSQL
    psycopg sends BEGIN before a transaction's first statement and COMMIT or ROLLBACK at its
    end, so the round trips are ``statements + 2 * transactions``; a statement on a connection
    in autocommit is in no transaction (psycopg sends neither, checked with a libpq trace)."""

    def __init__(self, engine: sa.Engine, keep: bool = False) -> None:
        self.statements = self.transactions = 0
        self.kinds: Counter[str] = Counter()
        self.keep = keep
        self.seen: list[tuple[str, Any]] = []
        sa.event.listen(engine, "before_cursor_execute", self._execute)
        for name in ("commit", "rollback"):
            sa.event.listen(engine, name, self._end)
        sa.event.listen(engine.pool, "reset", self._reset)

    def _execute(self, conn: Any, _c: Any, statement: str, params: Any, *_: Any) -> None:
        self.statements += 1
        if self.keep:
            self.seen.append((statement, params))
        self.kinds[" ".join(statement.split())[:72]] += 1
        autocommit = getattr(conn.connection.dbapi_connection, "autocommit", False) is True
        if not autocommit and not conn.info.get("bench_tx"):
            conn.info["bench_tx"] = True
            self.transactions += 1

    def _end(self, conn: Any) -> None:
        conn.info["bench_tx"] = False

    def _reset(self, _dbapi: Any, record: Any, *_: Any) -> None:
        record.info["bench_tx"] = False


# --------------------------------------------------------------------------- 3. queries


class Expected:
    """The answers, computed from the generated activities while they are loaded."""

    def __init__(self, count: int) -> None:
        self.picks: dict[str, list[tuple[datetime, str]]] = {
            f"opp-{k * 997 % (count // 20):06d}": [] for k in range(1, 6)
        }
        span = timedelta(days=365) * (10_000 / count)
        start = NOW - timedelta(days=200)
        self.window = ActivityFilter(created_from=start, created_to=start + span)
        self.selected: list[Activity] = []
        self.overdue: list[tuple[datetime, str]] = []
        self.pending: list[tuple[datetime, str]] = []

    def add(self, a: Activity) -> None:
        assert a.created_at is not None
        if a.opportunity_id in self.picks:
            self.picks[a.opportunity_id].append((a.created_at, a.activity_id))
        if a.completed_date is None and a.due_date is not None:
            if a.due_date < NOW:
                self.overdue.append((a.due_date, a.activity_id))
            elif a.scheduled_date is None or a.scheduled_date <= NOW:
                self.pending.append((a.due_date, a.activity_id))
        w = self.window
        if w.created_from is not None and w.created_to is not None:  # always: set above
            self.selected += [a] if w.created_from <= a.created_at < w.created_to else []


def load(storage: SqlStorage, count: int) -> Expected:
    """Bulk-load ``count`` activities: Core executemany of the store's rows, 5,000 a batch."""
    expected = Expected(count)
    table = storage.database.tables.activities
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for activity in generate(count, count // 20):
        expected.add(activity)
        rows.append(activity_values(activity, version=1))
        if len(rows) == 5000:
            with storage.database.write() as connection:
                connection.execute(table.insert(), rows)
            rows = []
    if rows:
        with storage.database.write() as connection:
            connection.execute(table.insert(), rows)
    with storage.database.write() as connection:
        connection.exec_driver_sql(f"ANALYZE {table.fullname}")
    print(f"  loaded {count:,} activities in {time.perf_counter() - started:.1f} s (+ ANALYZE)")
    return expected


def explain(storage: SqlStorage, call: Callable[[], Any]) -> list[str]:
    """The plan of every statement ``call`` makes."""
    engine = storage.database.engine
    trips = Trips(engine, keep=True)
    call()
    for name in ("commit", "rollback"):
        sa.event.remove(engine, name, trips._end)
    sa.event.remove(engine, "before_cursor_execute", trips._execute)
    sa.event.remove(engine.pool, "reset", trips._reset)
    pg = storage.database.dialect == "postgresql"
    lines: list[str] = []
    with engine.connect() as connection:
        for statement, params in trips.seen:
            if statement.lstrip().upper().startswith(("BEGIN", "COMMIT")):
                continue
            prefix = "EXPLAIN (COSTS OFF) " if pg else "EXPLAIN QUERY PLAN "
            rows = connection.exec_driver_sql(prefix + statement, params).all()
            lines += [str(r[0]) for r in rows] if pg else [str(r[3]) for r in rows]
            lines.append("--")
    return lines[:-1]


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    call()
    samples, answer = [], None
    for _ in range(repeat):
        start = time.perf_counter_ns()
        answer = call()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e6, answer


def query_set(storage: SqlStorage, count: int, label: str) -> None:
    print(f"\n  {label}, {count:,} activities:")
    expected = load(storage, count)
    acts = storage.activities
    first = next(iter(expected.picks))
    window = expected.window
    queries: list[tuple[str, Callable[[], Any], int, Callable[[Any], bool]]] = [
        (
            f"for_opportunity({first!r})",
            lambda: acts.for_opportunity(first),
            100,
            lambda got: (
                [a.activity_id for a in got] == [i for _, i in sorted(expected.picks[first])]
            ),
        ),
        (
            "overdue(now, limit=50)",
            lambda: acts.overdue(NOW, limit=50),
            50,
            lambda got: (
                [a.activity_id for a in got]
                == [i for _, i in heapq.nsmallest(50, expected.overdue)]
            ),
        ),
        (
            "pending(now, limit=50)",
            lambda: acts.pending(NOW, limit=50),
            50,
            lambda got: (
                [a.activity_id for a in got]
                == [i for _, i in heapq.nsmallest(50, expected.pending)]
            ),
        ),
        (
            f"statistics over {len(expected.selected):,} (created range)",
            lambda: acts.statistics(window, as_of=NOW),
            15,
            lambda got: got == reference_statistics(expected.selected, window, NOW),
        ),
    ]
    for name, call, repeat, right in queries:
        ms, answer = timed(call, repeat)
        expect(right(answer), f"{label} {count:,}: wrong answer from {name}")
        print(f"    {name:<44}{ms:>9.2f} ms median of {repeat}")
        for line in explain(storage, call):
            print(f"        {line}")


def part_queries(url: str | None, sizes: list[int], sqlite_max: int, tmp: Path) -> None:
    print("\n3. the seed's queries (bench_store.py's activities: 20 per opportunity, 20 reps)")
    for count in sizes:
        if url is not None:
            with pg_schema(url) as (engine, schema):
                storage = sql_storage(engine, schema=schema)
                query_set(storage, count, "PostgreSQL")
        else:
            print(f"  PostgreSQL skipped: no server URL (--url or {URL_ENV})")
        if count <= sqlite_max:
            storage = sql_storage(f"sqlite:///{tmp / f'q{count}.db'}")
            try:
                query_set(storage, count, "SQLite file")
            finally:
                storage.close()
        else:
            print(f"  SQLite at {count:,}: skipped (--sqlite-max {sqlite_max:,})")
