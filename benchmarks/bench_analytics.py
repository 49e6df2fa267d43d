"""What the analytics cost on a generated dataset (issue 20's targets: every figure over a
quarter in at most 500 ms on SQLite / PostgreSQL and 1 s in memory, on 1,000,000 activities and
100,000 opportunities; the dashboard for a year in at most 5 s).

The dataset: ``--opportunities`` leads (default 10,000) arriving evenly over 2026, each from one
of 6 sources and owned by one of 20 reps; ``--per-lead`` completed activities each (default
10: 10,000 opportunities -> 100,000 completions; the issue's scale is ``--opportunities 100000``),
the first a contact 1 minute to 3 days after arrival, the others over the next weeks, a third
of them created by one of 8 rules; 3 status changes per lead, a quarter of the leads won.
The facts are written through the analytics store (SQL: ``record_many``, 1,000 facts of each
kind per call; memory: one by one), plus one open activity per lead in the activity store (for
``overdue now``; ``add_many`` where there is one).

After the load one full garbage collection runs (its time printed): the first after a load
walks every object the load made, and would otherwise land in whichever figure it falls on.

Timed: each figure over the second quarter (the leaderboard also for one team of ten reps),
the dashboard over the quarter and over the year, each answer checked (after its clock stops)
against the dataset, each interleaved with a baseline (``arrivals()`` of the quarter: the
cheapest indexed read of the period) so that a noisy machine shows in both; the median of
``--rounds`` runs is printed.

``--db FILE`` (SQLite) keeps the database in FILE: a file already there is reused as it is
(brought to the newest schema revision, not loaded again; it must hold the same dataset), so a
"before" and an "after" can be timed on copies of one load.

``--backend fast-memory`` is :func:`~leadflow.stores.memory.fast.fast_memory_storage` (the
in-memory variant for large stores: its activity statistics read indexes, not every activity).

Run: python benchmarks/bench_analytics.py [--backend memory|fast-memory|sqlite|postgres]
[--opportunities N]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leadflow import WorkingCalendar
from leadflow.activity_models import ActivityType, Outcome
from leadflow.facts import Completion, LeadArrival, StatusChange
from leadflow.ports import BatchFacts, Storage
from leadflow.runtime.analytics import Analytics
from leadflow.testing.contracts import make_activity

YEAR = datetime(2026, 1, 1, tzinfo=UTC)
QUARTER = (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
WHOLE_YEAR = (YEAR, datetime(2027, 1, 1, tzinfo=UTC))
AS_OF = datetime(2027, 1, 1, tzinfo=UTC)
SOURCES = ("website", "referral", "phone", "fair", "partner", "ads")
KINDS = (ActivityType.CALL, ActivityType.EMAIL, ActivityType.MEETING, ActivityType.FOLLOW_UP)
OUTCOMES = (Outcome.SUCCESSFUL, Outcome.NO_ANSWER, Outcome.CALLBACK_REQUESTED, None)


def facts(opportunities: int, per_lead: int, seed: int = 7) -> tuple[list[Any], ...]:
    rng = random.Random(seed)
    step = timedelta(days=365) / opportunities
    arrivals, changes, completions = [], [], []
    for n in range(opportunities):
        opportunity = f"opp-{n}"
        rep = f"rep-{n % 20}"
        arrived = YEAR + step * n
        arrivals.append(
            LeadArrival.model_construct(
                event_id=f"arr-{n}",
                opportunity_id=opportunity,
                arrived_at=arrived,
                source=SOURCES[n % len(SOURCES)],
                owner=rep,
            )
        )
        statuses = ["new", "contacted", "won" if n % 4 == 0 else "lost"]
        for k, status in enumerate(statuses):
            changes.append(
                StatusChange.model_construct(
                    event_id=f"st-{n}-{k}",
                    opportunity_id=opportunity,
                    changed_at=arrived + timedelta(days=7 * k),
                    from_status=statuses[k - 1] if k else None,
                    to_status=status,
                )
            )
        done = arrived + timedelta(minutes=rng.randint(1, 3 * 24 * 60))
        for k in range(per_lead):
            created = done - timedelta(hours=rng.randint(1, 48))
            completions.append(
                Completion.model_construct(
                    activity_id=f"act-{n}-{k}",
                    opportunity_id=opportunity,
                    activity_type=KINDS[0 if k == 0 else rng.randrange(len(KINDS))],
                    completed_at=done,
                    assigned_to=rep,
                    created_at=created,
                    due_at=created + timedelta(hours=rng.randint(1, 72)),
                    outcome=OUTCOMES[rng.randrange(len(OUTCOMES))],
                    rule_id=f"rule-{rng.randrange(8)}" if rng.random() < 0.33 else None,
                )
            )
            done += timedelta(hours=rng.randint(2, 24 * 5))
    return arrivals, changes, completions


def load(storage: Storage, data: tuple[list[Any], ...]) -> None:
    """Write the dataset through the stores: the facts in batches of 1,000 of each kind where
    the store takes batches (``record_many``: SQL; it keeps the first contacts as the runtime's
    writes do), else one by one; the open activities by ``add_many`` where there is one."""
    arrivals, changes, completions = data
    store = storage.analytics
    assert store is not None
    if isinstance(store, BatchFacts):
        for first in range(0, max(len(arrivals), len(changes), len(completions)), 1000):
            store.record_many(
                arrivals[first : first + 1000],
                changes[first : first + 1000],
                completions[first : first + 1000],
            )
    else:
        for arrival in arrivals:
            store.record_arrival(arrival)
        for change in changes:
            store.record_status_change(change)
        for completion in completions:
            store.record_completion(completion)
    opened = [
        make_activity(
            f"open-{n}",
            opportunity_id=arrival.opportunity_id,
            assigned_to=arrival.owner,
            created_at=arrival.arrived_at,
            due_date=arrival.arrived_at + timedelta(days=30),
        )
        for n, arrival in enumerate(arrivals)
    ]
    add_many = getattr(storage.activities, "add_many", None)
    if add_many is None:
        for activity in opened:
            storage.activities.add(activity)
    else:
        for first in range(0, len(opened), 1000):
            add_many(opened[first : first + 1000])


def timed(call: Callable[[], object], check: Callable[[Any], bool] | None = None) -> float:
    """Seconds ``call`` took; its answer must pass ``check`` (checked after the clock stops)."""
    started = time.perf_counter()
    answer = call()
    took = time.perf_counter() - started
    if check is not None and not check(answer):
        raise SystemExit(f"wrong answer: {str(answer)[:200]}")
    return took


def storage_for(backend: str, folder: Path, db: Path | None = None) -> Storage:
    if backend == "memory":
        from leadflow.stores.memory import memory_storage

        return memory_storage()
    if backend == "fast-memory":
        from leadflow.stores.memory.fast import fast_memory_storage

        return fast_memory_storage()
    from leadflow.stores.sql import sql_storage

    if backend == "sqlite":
        return sql_storage(f"sqlite:///{db or folder / 'bench.db'}")
    url = os.environ.get("LEADFLOW_TEST_POSTGRES_URL")
    if not url:
        raise SystemExit("set LEADFLOW_TEST_POSTGRES_URL for --backend postgres")
    return sql_storage(url, prefix=f"bench{os.getpid()}_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", choices=("memory", "fast-memory", "sqlite", "postgres"), default="memory"
    )
    parser.add_argument("--opportunities", type=int, default=10_000)
    parser.add_argument("--per-lead", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db", type=Path, help="SQLite: keep (or reuse) the database in FILE")
    args = parser.parse_args()
    if args.db is not None and args.backend != "sqlite":
        raise SystemExit("--db is for --backend sqlite")
    reuse = args.db is not None and args.db.exists()
    data = facts(args.opportunities, args.per_lead)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        storage = storage_for(args.backend, Path(folder), args.db)
        if not reuse:
            load(storage, data)
        loaded = time.perf_counter() - started
        assert storage.analytics is not None
        # The first full collection after the load walks every object it made (once: rows of
        # atoms are untracked then); run here, it is not billed to whichever figure it lands in.
        settled = timed(gc.collect)
        print(
            f"{args.backend}: {args.opportunities:,} opportunities, {len(data[2]):,} completed "
            f"activities, {len(data[1]):,} status changes "
            f"({'reused and opened' if reuse else 'loaded'} in {loaded:.1f} s; the first full "
            f"collection after it {settled:.1f} s)"
        )
        quarter, year = QUARTER, WHOLE_YEAR
        leads = sum(QUARTER[0] <= a.arrived_at < QUARTER[1] for a in data[0])
        done = sum(QUARTER[0] <= c.completed_at < QUARTER[1] for c in data[2])
        team = {f"rep-{n}": "east" if n < 10 else "west" for n in range(20)}
        analytics = Analytics(storage.analytics, storage.activities, WorkingCalendar(), teams=team)
        figures: dict[str, tuple[Callable[[], Any], Callable[[Any], bool]]] = {
            "speed to lead (quarter)": (
                lambda: analytics.speed_to_lead(*quarter),
                lambda r: r.overall.leads == leads,
            ),
            "lead sources (quarter)": (
                lambda: analytics.sources(*quarter),
                lambda r: sum(row.leads for row in r) == leads,
            ),
            "leaderboard (quarter)": (
                lambda: analytics.leaderboard(*quarter, as_of=AS_OF),
                lambda r: sum(row.completed for row in r) == done,
            ),
            "leaderboard (quarter, team east)": (
                lambda: analytics.leaderboard(*quarter, as_of=AS_OF, teams=["east"]),
                lambda r: len(r) == 10,
            ),
            "funnel (quarter)": (lambda: analytics.funnel(*quarter), lambda r: r.reached[0] > 0),
            "automation (quarter)": (
                lambda: analytics.automation(*quarter),
                lambda r: sum(row.completed for row in r) == done,
            ),
            "trend (quarter)": (
                lambda: analytics.trend(*quarter),
                lambda r: sum(row.leads for row in r) == leads,
            ),
            "dashboard (quarter)": (
                lambda: analytics.dashboard(*quarter, as_of=AS_OF),
                lambda r: r.speed_to_lead.overall.leads == leads,
            ),
            "dashboard (year)": (
                lambda: analytics.dashboard(*year, as_of=AS_OF),
                lambda r: r.speed_to_lead.overall.leads == len(data[0]),
            ),
        }
        baseline: list[float] = []
        runs: dict[str, list[float]] = {name: [] for name in figures}
        for _ in range(args.rounds):
            for name, (call, check) in figures.items():
                baseline.append(timed(lambda: storage.analytics.arrivals(*quarter)))  # type: ignore[union-attr]
                runs[name].append(timed(call, check))
        base = statistics.median(baseline) * 1000
        print(f"  {'baseline: arrivals() of the quarter':40s} {base:8.1f} ms")
        for name, values in runs.items():
            print(f"  {name:40s} {statistics.median(values) * 1000:8.1f} ms")
        close = getattr(storage, "close", None)
        if args.backend == "postgres":
            database = storage.database  # type: ignore[attr-defined]
            database.tables.metadata.drop_all(database.engine)
        if close is not None:
            close()


if __name__ == "__main__":
    main()
