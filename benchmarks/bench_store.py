"""Benchmark of the in-memory activity repository at a million activities (the fast variant,
``leadflow.stores.memory.fast``, by default; ``--store reference`` for the reference store).

Loads 1,000,000 activities (50,000 opportunities, 20 reps, a year of history; generated from a
fixed seed) with ``add``, then times the ordinary query methods and prints medians against the
targets:

* first page (50) of overdue activities            <= 1 ms
* all activities of one opportunity                <= 0.1 ms
* statistics over ~100,000 activities (date range) <= 100 ms
* memory per activity (tracemalloc, retained)      <= 1.5 KB

Every timed call's answer is kept and checked afterwards against a plain reference computed
outside the timed region (a second pass over the same generated activities, with
:func:`leadflow.testing.contracts.reference_statistics` for the statistics). Also reported: the
time of a full ``gc.collect()`` with the store loaded.

Run: ``python benchmarks/bench_store.py`` (``--quick`` for 100,000 activities). Exits 1 if a
target is missed, 2 if a query returned a wrong answer.
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
from heapq import nsmallest
from typing import Any

from leadflow.models import Activity, ActivityType, Outcome
from leadflow.queries import ActivityFilter
from leadflow.stores.memory import InMemoryActivityRepository
from leadflow.stores.memory.fast import FastActivityRepository
from leadflow.testing.contracts import reference_statistics

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


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, list[Any]]:
    """The median time of ``repeat`` calls in ms (after a warm-up call), and their answers."""
    call()
    samples, answers = [], []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        answer = call()
        samples.append(time.perf_counter_ns() - start)
        answers.append(answer)
    return statistics.median(samples) / 1e6, answers


class Reference:
    """The expected answers, computed the obvious way from a second pass over the same
    generated activities (never inside a timed region)."""

    def __init__(self, activities: Iterator[Activity], picks: set[str], window: ActivityFilter):
        overdue: list[tuple[datetime, str, str | None]] = []
        pending: list[tuple[bool, datetime, str]] = []
        created: list[tuple[bool, datetime, str]] = []
        self.by_opportunity: dict[str, list[tuple[datetime, str]]] = {o: [] for o in picks}
        last: dict[str, datetime] = {}
        self.selected: list[Activity] = []
        self.rep: list[Activity] = []
        for a in activities:
            assert a.created_at is not None
            created.append((True, a.created_at, a.activity_id))
            if a.completed_date is None:
                if a.due_date is not None and a.due_date < NOW:
                    overdue.append((a.due_date, a.activity_id, a.assigned_to))
                elif a.scheduled_date is None or a.scheduled_date <= NOW:
                    pending.append((a.due_date is None, a.due_date or NOW, a.activity_id))
            if a.opportunity_id in self.by_opportunity:
                self.by_opportunity[a.opportunity_id].append((a.created_at, a.activity_id))
            moment = max(a.created_at, a.completed_date or a.created_at)
            if last.get(a.opportunity_id, moment) <= moment:
                last[a.opportunity_id] = moment
            assert window.created_from is not None and window.created_to is not None
            if window.created_from <= a.created_at < window.created_to:
                self.selected.append(a)
            if a.assigned_to == "rep-07":
                self.rep.append(a)
        overdue.sort()
        self.overdue = [i for _, i, _ in overdue[:50]]
        self.rep_overdue = [i for _, i, who in overdue if who == "rep-07"][:50]
        self.pending = [i for _, _, i in nsmallest(50, pending)]
        self.first_page = [i for _, _, i in nsmallest(50, created)]
        since = NOW - timedelta(days=30)
        self.stale = sorted((t, o) for o, t in last.items() if t < since)[:1000]
        for rows in self.by_opportunity.values():
            rows.sort()


def ids(activities: list[Activity]) -> list[str]:
    return [a.activity_id for a in activities]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 activities")
    parser.add_argument("--store", choices=["fast", "reference"], default="fast")
    args = parser.parse_args()
    count = 100_000 if args.quick else 1_000_000
    opportunities = count // 20
    print(
        f"in-memory store ({args.store}): {count:,} activities, {opportunities:,} opportunities, "
        "20 reps"
    )

    repo = FastActivityRepository() if args.store == "fast" else InMemoryActivityRepository()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    for activity in generate(count, opportunities):
        repo.add(activity)
    loaded = time.perf_counter() - started
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per_activity = retained / count
    print(f"loaded in {loaded:.1f} s (generation and validation included, under tracemalloc)")

    rng = random.Random(7)
    opportunity_ids = [f"opp-{rng.randrange(opportunities):06d}" for _ in range(2000)]
    picks = iter(opportunity_ids * 10)
    window_length = HISTORY * min(1.0, 100_000 / count)
    selection = ActivityFilter(created_from=NOW - window_length - timedelta(days=1), created_to=NOW)
    one_rep = ActivityFilter(assigned_to="rep-07")
    gc_ms, _ = timed(gc.collect, 3)  # before the reference's models exist
    started = time.perf_counter()
    ref = Reference(generate(count, opportunities), set(opportunity_ids), selection)
    print(f"reference answers computed in {time.perf_counter() - started:.1f} s")
    overdue_ms, overdue = timed(lambda: repo.overdue(NOW, limit=50), 300)
    opportunity_ms, per_opportunity = timed(
        lambda: (o := next(picks), repo.for_opportunity(o)), 2000
    )
    statistics_ms, stats = timed(lambda: repo.statistics(selection, as_of=NOW), 9)
    rep_overdue_ms, rep_overdue = timed(
        lambda: repo.overdue(NOW, assigned_to="rep-07", limit=50), 100
    )
    rep_statistics_ms, rep_stats = timed(lambda: repo.statistics(one_rep, as_of=NOW), 9)
    pending_ms, pending = timed(lambda: repo.pending(NOW, limit=50), 100)
    page_ms, pages = timed(lambda: repo.list(limit=50), 100)
    stale_ms, stale = timed(lambda: repo.stale_opportunities(NOW - timedelta(days=30)), 20)

    wrong: list[str] = []

    def check(name: str, answers: list[Any], expected: Any) -> None:
        if any(answer != expected for answer in answers):
            wrong.append(name)

    check("overdue", [ids(a) for a in overdue], ref.overdue)
    check("overdue for one rep", [ids(a) for a in rep_overdue], ref.rep_overdue)
    check("pending", [ids(a) for a in pending], ref.pending)
    check("list", [ids(p.items) for p in pages], ref.first_page)
    check("stale_opportunities", stale, ref.stale)
    expected_stats = reference_statistics(ref.selected, selection, NOW)
    check("statistics", stats, expected_stats)
    check("statistics of one rep", rep_stats, reference_statistics(ref.rep, one_rep, NOW))
    for opportunity_id, found in per_opportunity:
        if ids(found) != [i for _, i in ref.by_opportunity[opportunity_id]]:
            wrong.append(f"for_opportunity({opportunity_id})")
            break
    selected = expected_stats.total

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
        (f"statistics of one rep ({rep_stats[0].total:,})", rep_statistics_ms),
        ("pending(as_of, limit=50)", pending_ms),
        ("list() first page (created_at, 50)", page_ms),
        ("stale_opportunities(30 days, 1000)", stale_ms),
        ("full gc.collect() with the store loaded", gc_ms),
    ]:
        print(f"{name:<42} {value:>9.3f} ms  (no target)")
    print()
    if wrong:
        print(f"WRONG ANSWERS: {', '.join(wrong)}")
        return 2
    print("every timed answer matched the reference")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
