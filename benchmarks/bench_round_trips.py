"""PostgreSQL ``handle``: its unit of work in two round trips (the ``BEGIN`` with the actions'
``INSERT``, the activity, fact and acknowledgement with the ``COMMIT``:
``leadflow.stores.sql.round_trips``) against four (psycopg's own ``BEGIN`` and ``COMMIT``, the
acknowledgement's ``UPDATE`` carrying the activity and the fact), alternating batch after
batch in one process on one database, so that both see the same load.

The four-round-trip mode is the same code with the three choices switched off from here (no
``BEGIN`` sent with a statement, no ``COMMIT`` sent with the last one, the acknowledgement not
kept for the commit): what ``handle`` did before them. Printed: medians of wall and process
(CPU) time per event, the driver's part of the CPU (psycopg's ``waiting.wait``), and the round
trips per event counted in a libpq trace of one more batch (each ``Sync`` or ``Query`` message
the client sends is a wait for the server). Checked while timing: every event's actions ran
and are done, its activity stored (``bench_handle_sql.check``; a wrong answer exits 2).

Run: python benchmarks/bench_round_trips.py [--events 300] [--reps 5] [--rule notify|activity]
(the URL from LEADFLOW_BENCH_POSTGRES_URL or --url).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_handle_sql as bench
from bench_sql_queries import URL_ENV, Bad
from cpu_split import layer_split

from leadflow.stores.sql import SqlStorage, direct
from leadflow.stores.sql.scheduled import SqlScheduledActionStore


@contextmanager
def four_round_trips() -> Iterator[None]:
    """``handle`` as before the two-round-trip unit: the three choices switched off."""
    begin, send, done_sent = (
        direct.begin_to_send,
        direct.send_later,
        SqlScheduledActionStore._done_sent,
    )

    def send_later(connection: Any, waiting: Any, *, commit: bool = False) -> None:
        send(connection, waiting)

    direct.begin_to_send = lambda proxied: None  # type: ignore[assignment]
    direct.send_later = send_later  # type: ignore[assignment]
    SqlScheduledActionStore._done_sent = lambda *args: False  # type: ignore[method-assign]
    try:
        yield
    finally:
        direct.begin_to_send = begin  # type: ignore[assignment]
        direct.send_later = send  # type: ignore[assignment]
        SqlScheduledActionStore._done_sent = done_sent  # type: ignore[method-assign]


@contextmanager
def two_round_trips() -> Iterator[None]:
    yield


def round_trips(storage: SqlStorage, work: Callable[[], Any]) -> int:
    """The client's waits for the server during ``work`` (libpq trace: ``Sync`` + ``Query``)."""
    files: list[tuple[Any, Any]] = []

    def checkout(dbapi_connection: Any, *_: Any) -> None:
        handle = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed below)
        dbapi_connection.pgconn.trace(handle.fileno())
        files.append((dbapi_connection, handle))

    sa.event.listen(storage.database.engine, "checkout", checkout)
    try:
        work()
    finally:
        sa.event.remove(storage.database.engine, "checkout", checkout)
    waits = 0
    for connection, handle in files:
        connection.pgconn.untrace()
        handle.seek(0)
        for line in handle:
            parts = line.split("\t")
            if len(parts) > 3 and parts[1] == "F":
                waits += parts[3].split(" ")[0].strip() in ("Sync", "Query")
        handle.close()
    return waits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get(URL_ENV), help="PostgreSQL URL")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rule", choices=["notify", "activity"], default="notify")
    args = parser.parse_args()
    if args.url is None:
        print(f"no PostgreSQL URL (--url or {URL_ENV})")
        return 1
    if args.rule == "activity":
        bench.RULE, bench.ACTIONS = bench.ACTIVITY_ONLY, 1
    n = args.events
    modes = {"4 round trips (before)": four_round_trips, "2 round trips": two_round_trips}
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with bench.pg_storage(args.url) as storage:
        flow = bench.make_flow(storage)
        samples: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
        try:
            for mode, switch in modes.items():  # warm both paths (statements prepared)
                with switch():
                    for event in bench.events(f"warm-{len(mode)}", 30):
                        flow.handle(event)
            for rep in range(args.reps):
                for m, (mode, switch) in enumerate(modes.items()):
                    batch = bench.events(f"r{rep}-{m}", n)
                    with switch(), layer_split() as spent:
                        results, (wall, cpu) = bench.timed(
                            lambda b=batch: [flow.handle(e) for e in b]
                        )
                    bench.check(storage, results, batch)
                    driver = sum(v for k, v in spent.items() if k.startswith("driver"))
                    samples[mode].append((wall / n, cpu / n, driver / n))
            print(f"\nhandle, {n} events per batch, median of {args.reps} (rule {args.rule})")
            for m, (mode, switch) in enumerate(modes.items()):
                batch = bench.events(f"trace-{m}", n)
                with switch():
                    waits = round_trips(storage, lambda b=batch: [flow.handle(e) for e in b])
                wall = statistics.median(s[0] for s in samples[mode])
                cpu = statistics.median(s[1] for s in samples[mode])
                driver = statistics.median(s[2] for s in samples[mode])
                print(
                    f"  {mode:<24}{1 / wall:>8,.0f} events/s  wall {wall * 1e6:7.1f} us  cpu "
                    f"{cpu * 1e6:6.1f} us (driver {driver * 1e6:5.1f})  "
                    f"{waits / n:.2f} round trips / event"
                )
        except Bad as error:
            print(f"WRONG: {error}")
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
