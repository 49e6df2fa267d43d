"""Benchmark of the in-memory activity repository at a million activities.

Loads 1,000,000 activities (50,000 opportunities, 20 reps, a year of history; generated from a
fixed seed) with ``add_many``, then times the ordinary query methods and prints medians against
the targets:

* first page (50) of overdue activities            <= 1 ms
* all activities of one opportunity                <= 0.1 ms
* statistics over ~100,000 activities (date range) <= 100 ms
* memory per activity (tracemalloc, retained)      <= 1.5 KB

Run: ``python benchmarks/bench_store.py`` (``--quick`` for 100,000 activities). Exits 1 if a
target is missed.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from leadflow.models import Activity, ActivityType, Outcome
from leadflow.queries import ActivityFilter
from leadflow.stores.memory import InMemoryActivityRepository

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
HISTORY = timedelta(days=365)
REPS = [f"rep-{n:02d}" for n in range(20)]
RULES = [f"rule-{n}" for n in range(8)]
SUBJECTS = [
    "Call new website lead",
    "Follow up on quote",
    "Return customer callback",
    "Job kickoff call",
    "Re-engage lost opportunity",
    "Urgent lead: call now",
    "Thank the referrer",
    "Weekly negotiation check-in",
]
TYPES = list(ActivityType)
TYPE_WEIGHTS = [30, 25, 8, 10, 15, 10, 2]
OUTCOMES = list(Outcome)


def generate(count: int, opportunities: int, seed: int = 20260105) -> Iterator[Activity]:
    """Deterministic activities: ~80% completed within three days, the rest open with a due
    date from a day to two weeks after creation (so some are overdue at NOW)."""
    rng = random.Random(seed)
    span = int(HISTORY.total_seconds())
    for _ in range(count):
        opportunity = rng.randrange(opportunities)
        created = NOW - timedelta(seconds=rng.randrange(span))
        data: dict[str, Any] = {
            "activity_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "opportunity_id": f"opp-{opportunity:06d}",
            "customer_id": f"cust-{opportunity // 2:06d}",
            "activity_type": rng.choices(TYPES, TYPE_WEIGHTS)[0],
            "subject": rng.choice(SUBJECTS),
            "assigned_to": rng.choice(REPS),
            "created_by": rng.choice(REPS),
            "created_at": created,
            "updated_at": created,
        }
        if rng.random() < 0.3:
            data["metadata"] = {"automationRuleId": rng.choice(RULES)}
        if rng.random() < 0.8:
            done = min(created + timedelta(seconds=rng.randrange(3 * 86400)), NOW)
            data["completed_date"] = done
            data["completed_by"] = data["assigned_to"]
            data["outcome"] = rng.choice(OUTCOMES)
            data["updated_at"] = done
        else:
            data["scheduled_date"] = created
            data["due_date"] = created + timedelta(seconds=rng.randrange(86400, 14 * 86400))
        yield Activity.model_validate(data)


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()  # warm up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 activities")
    args = parser.parse_args()
    count = 100_000 if args.quick else 1_000_000
    opportunities = count // 20
    print(f"in-memory store: {count:,} activities, {opportunities:,} opportunities, 20 reps")

    repo = InMemoryActivityRepository()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    repo.add_many(generate(count, opportunities))
    loaded = time.perf_counter() - started
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per_activity = retained / count
    print(f"loaded in {loaded:.1f} s (generation and validation included, under tracemalloc)")

    rng = random.Random(7)
    opportunity_ids = [f"opp-{rng.randrange(opportunities):06d}" for _ in range(2000)]
    picks = iter(opportunity_ids * 10)
    overdue_count = len(repo.overdue(NOW, limit=1000))
    window = HISTORY * min(1.0, 100_000 / count)
    selection = ActivityFilter(created_from=NOW - window - timedelta(days=1), created_to=NOW)
    selected = repo.statistics(selection, as_of=NOW).total

    overdue_ms = median_ms(lambda: repo.overdue(NOW, limit=50), 300)
    opportunity_ms = median_ms(lambda: repo.for_opportunity(next(picks)), 2000)
    statistics_ms = median_ms(lambda: repo.statistics(selection, as_of=NOW), 9)
    rep_overdue_ms = median_ms(lambda: repo.overdue(NOW, assigned_to="rep-07", limit=50), 100)
    one_rep = ActivityFilter(assigned_to="rep-07")
    rep_total = repo.statistics(one_rep, as_of=NOW).total
    rep_statistics_ms = median_ms(lambda: repo.statistics(one_rep, as_of=NOW), 9)
    pending_ms = median_ms(lambda: repo.pending(NOW, limit=50), 100)
    page_ms = median_ms(lambda: repo.list(limit=50), 100)
    stale_ms = median_ms(lambda: repo.stale_opportunities(NOW - timedelta(days=30)), 20)

    rows = [
        ("overdue(as_of, limit=50)", overdue_ms, "ms", 1.0),
        ("for_opportunity(id) (~20 rows)", opportunity_ms, "ms", 0.1),
        (f"statistics over {selected:,} activities", statistics_ms, "ms", 100.0),
        ("memory per activity", per_activity / 1024, "KB", 1.5),
    ]
    failed = False
    print()
    for name, value, unit, target in rows:
        ok = value <= target
        failed |= not ok
        verdict = "PASS" if ok else "FAIL"
        print(f"{name:<42} {value:>9.3f} {unit}  (target <= {target:g} {unit})  {verdict}")
    print()
    for name, value in [
        ("overdue for one rep (limit=50)", rep_overdue_ms),
        (f"statistics of one rep ({rep_total:,})", rep_statistics_ms),
        ("pending(as_of, limit=50)", pending_ms),
        ("list() first page (created_at, 50)", page_ms),
        ("stale_opportunities(30 days, 1000)", stale_ms),
    ]:
        print(f"{name:<42} {value:>9.3f} ms  (no target)")
    print(f"(open and overdue at NOW, capped at 1000: {overdue_count})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
