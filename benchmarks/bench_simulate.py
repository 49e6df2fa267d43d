"""Benchmark: a backtest of 1,000,000 recorded events (target: at most 60 s on this machine).

The history (seeded, written to a JSON Lines file before timing) is a year of a sales team's
events over about 250,000 opportunities: 40% ``opportunity.created`` (owner, lead source,
priority, status), 25% status changes, 15% ``estimate.created`` and 20% ``activity.completed``
(completions as recorded, with outcomes). The rule set is the 20-rule set of the engine
benchmark (the 8 defaults and 12 variants, groups included) plus the defaults' delays, so
activities, notifications, delayed actions, duplicates skipped and stale detections all occur.
Timed: ``leadflow.simulate.simulate(rules, path)`` from reading the file to the finished report
(one run; the garbage collector on): every event goes through the real ``LeadFlow`` on memory
storage, delayed actions run at their due times and the stale-opportunity job at its slots, so
the rate is the runtime's. The report's totals are printed so a run can be checked
against another (the simulation is deterministic).

    python benchmarks/bench_simulate.py             # 1,000,000 events
    python benchmarks/bench_simulate.py --events 100000

Exit status 0 when the target is met, 1 when it is missed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_workload import rule_set

from leadflow.simulate import SimulationSettings, simulate

TARGET_SECONDS_PER_MILLION = 60.0
REPS = tuple(f"rep-{i:02d}" for i in range(25))
START = datetime(2025, 1, 1, tzinfo=UTC)


def write_history(path: Path, count: int, seed: int = 20261129) -> None:
    rng = random.Random(seed)
    span = timedelta(days=365).total_seconds()
    step = span / count
    opened = 0
    sources = ["website", "referral", "phone", "walk_in", "social", "trade_show", "partner"]
    statuses = ["contacted", "qualified", "negotiating", "won", "lost", "on_hold"]
    outcomes = ["successful", "no_answer", "callback_requested", "not_interested", "left_voicemail"]
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            when = (START + timedelta(seconds=n * step)).isoformat()
            roll = rng.random()
            if roll < 0.4 or opened == 0:
                opened += 1
                payload = {
                    "opportunityId": f"opp-{opened}",
                    "assignedTo": rng.choice(REPS),
                    "leadSource": rng.choice(sources),
                    "priority": rng.choice(["low", "medium", "high", "urgent"]),
                    "status": "new",
                    "estimatedValue": rng.randint(500, 50_000),
                    "region": rng.choice(["north", "south", "east", "west"]),
                }
                kind = "opportunity.created"
            else:
                opp = f"opp-{rng.randint(max(1, opened - 2000), opened)}"
                if roll < 0.65:
                    kind = "opportunity.status_changed"
                    payload = {"opportunityId": opp, "newStatus": rng.choice(statuses)}
                elif roll < 0.8:
                    kind = "estimate.created"
                    payload = {"opportunityId": opp, "amount": rng.randint(100, 20_000)}
                else:
                    kind = "activity.completed"
                    payload = {"opportunityId": opp, "outcome": rng.choice(outcomes),
                               "activityType": "call"}  # fmt: skip
            record = {"eventId": f"e{n}", "eventType": kind, "occurredAt": when, "payload": payload}
            out.write(json.dumps(record) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.jsonl"
        began = time.perf_counter()
        write_history(path, args.events)
        print(f"wrote {args.events:,} events in {time.perf_counter() - began:.1f} s "
              f"({path.stat().st_size / 1e6:.0f} MB)")  # fmt: skip
        rules = rule_set(20)
        settings = SimulationSettings(reps=REPS)
        began, cpu = time.perf_counter(), time.process_time()
        report = simulate(rules, path, settings=settings)
        spent, cpu = time.perf_counter() - began, time.process_time() - cpu
    per_million = spent / args.events * 1_000_000
    print(
        f"simulated {report.events:,} events in {spent:.1f} s "
        f"({args.events / spent:,.0f} events/s; {per_million:.1f} s per million); "
        f"CPU {cpu:.1f} s ({cpu / args.events * 1e6:.1f} us per event: on a shared machine "
        "the steadier figure)"
    )
    print(
        f"activities {report.activities:,}, notifications {report.notifications:,}, "
        f"status changes {report.status_changes:,}, stale {report.stale_detected:,}, "
        f"pending {sum(report.pending_at_end.values()):,}, parked {sum(report.parked.values()):,}, "
        f"busiest {report.busiest}, depth {report.max_cascade_depth}, "
        f"refused {report.events_refused}"
    )
    ok = per_million <= TARGET_SECONDS_PER_MILLION
    print("target met" if ok else f"target MISSED ({TARGET_SECONDS_PER_MILLION:.0f} s/million)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
