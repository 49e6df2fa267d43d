"""What keeping the completions' day sums costs the writes (revision 0012's trigger on the
completions): ``record_many`` of completions (1,000 a call) and ``record_completion`` one by one,
on a store with the trigger and on one without it (dropped after migrating), interleaved round
by round in one process; the median of ``--rounds`` and the ratio with / without are printed.
Each round's writes are checked after its clock stops (the store with the trigger: its day
sums count every completion once; the other: its sums come from nothing).

Run: python benchmarks/bench_completion_days.py [--backend sqlite|postgres] [--completions N]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from leadflow.activity_models import ActivityType, Outcome
from leadflow.facts import Completion
from leadflow.stores.sql import SqlStorage, sql_storage

YEAR = datetime(2026, 1, 1, tzinfo=UTC)


def completions(tag: str, n: int) -> list[Completion]:
    rng = random.Random(tag)
    made = []
    for i in range(n):
        done = YEAR + timedelta(minutes=rng.randrange(365 * 24 * 60))
        made.append(
            Completion(
                activity_id=f"{tag}-{i}",
                opportunity_id=f"o{i // 10}",
                activity_type=ActivityType.CALL,
                completed_at=done,
                assigned_to=f"rep-{i % 20}",
                rule_id=rng.choice([None, "r1", "r2"]),
                created_at=done - timedelta(hours=1),
                due_at=done + timedelta(hours=rng.randrange(-5, 5)),
                outcome=rng.choice([None, *Outcome]),
            )
        )
    return made


def store(backend: str, folder: Path, name: str) -> SqlStorage:
    if backend == "sqlite":
        return sql_storage(f"sqlite:///{folder / name}.db")
    url = os.environ.get("LEADFLOW_TEST_POSTGRES_URL")
    if not url:
        raise SystemExit("set LEADFLOW_TEST_POSTGRES_URL for --backend postgres")
    return sql_storage(url, prefix=f"{name}{os.getpid()}_")


def summed(storage: SqlStorage) -> int:
    days = storage.database.tables.completion_days.c
    with storage.database.read() as connection:
        found = connection.execute(
            select(func.coalesce(func.sum(days.completed), 0)).where(days.kind == "assigned_to")
        ).scalar_one()
    return int(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--completions", type=int, default=20_000)
    parser.add_argument("--singles", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        stores = {"with": store(args.backend, Path(folder), "wd"), "without": store(
            args.backend, Path(folder), "nd"
        )}  # fmt: skip
        bare = stores["without"]
        trigger = f"{bare.database.tables.prefix}completions_days"
        with bare.database.engine.begin() as connection:
            on = "" if args.backend == "sqlite" else f" ON {bare.database.tables.completions.name}"
            connection.exec_driver_sql(f"DROP TRIGGER {trigger}{on}")
        many: dict[str, list[float]] = {name: [] for name in stores}
        one: dict[str, list[float]] = {name: [] for name in stores}
        written = 0
        try:
            for n in range(args.rounds):
                batch_size = args.completions + args.singles
                for name, storage in stores.items():
                    analytics = storage.analytics
                    assert analytics is not None
                    batch = completions(f"{name}{n}", args.completions)
                    singles = completions(f"{name}s{n}", args.singles)
                    started = time.perf_counter()
                    for first in range(0, len(batch), 1000):
                        analytics.record_many([], [], batch[first : first + 1000])
                    many[name].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    for completion in singles:
                        analytics.record_completion(completion)
                    one[name].append((time.perf_counter() - started) / len(singles))
                written += batch_size
                assert summed(stores["with"]) == written, "the day sums count each once"
                assert summed(bare) == 0
        finally:
            for storage in stores.values():
                if args.backend == "postgres":
                    database = storage.database
                    database.tables.metadata.drop_all(database.engine)
                    with database.engine.begin() as connection:
                        connection.exec_driver_sql(
                            f"DROP FUNCTION IF EXISTS {database.tables.prefix}completions_days()"
                        )
                storage.close()
    print(
        f"{args.backend}: {args.completions:,} completions by record_many and {args.singles} "
        f"by record_completion a round, {args.rounds} rounds"
    )
    for name in stores:
        print(
            f"  {name:8s} trigger: record_many {statistics.median(many[name]):6.2f} s "
            f"({', '.join(f'{t:.2f}' for t in many[name])}); record_completion "
            f"{statistics.median(one[name]) * 1e3:.2f} ms"
        )
    ratio_many = statistics.median(many["with"]) / statistics.median(many["without"])
    ratio_one = statistics.median(one["with"]) / statistics.median(one["without"])
    print(f"  with / without: record_many {ratio_many:.2f}, record_completion {ratio_one:.2f}")


if __name__ == "__main__":
    main()
