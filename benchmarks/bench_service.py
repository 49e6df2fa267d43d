"""Throughput of LeadFlow.handle: 20 active rules, a realistic event mix, in-memory stores, one
core; the same run on mongomock-ng reported beside it.

Run: python benchmarks/bench_service.py [--quick]
Target: >= 10,000 events per second with the in-memory stores.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from leadflow import Event, FollowUpRule, LeadFlow, ManualClock, default_rules

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SOURCES = ["website", "referral", "phone", "ads", "partner", "walk_in"]
PRIORITIES = ["low", "normal", "normal", "high", "urgent"]
STATUSES = ["contacted", "qualified", "won", "lost", "negotiating", "on_hold"]
OUTCOMES = ["successful", "no_answer", "voicemail", "callback_requested", "not_interested"]
REGIONS = ["north", "south", "east", "west"]


def twenty_rules() -> list[FollowUpRule]:
    """The 8 defaults plus 12 variants (1-3 conditions, a mix of operators and actions)."""
    variants: list[dict[str, Any]] = []
    for i in range(12):
        kind = i % 4
        if kind == 0:
            trigger = {
                "eventType": "opportunity.created",
                "conditions": [
                    {"field": "leadSource", "operator": "in", "value": SOURCES[i % 6 : i % 6 + 2]},
                    {"field": "region", "operator": "equals", "value": REGIONS[i % 4]},
                ],
            }
            action = {
                "actionType": "create_activity",
                "activityType": "email",
                "subject": f"Welcome e-mail {i}",
                "delay": 2,
                "assignTo": "round_robin",
            }
        elif kind == 1:
            trigger = {
                "eventType": "estimate.created",
                "conditions": [
                    {"field": "estimateValue", "operator": "greater_than", "value": 2000 * i},
                ],
            }
            action = {"actionType": "send_notification", "template": f"big_quote_{i}"}
        elif kind == 2:
            trigger = {
                "eventType": "opportunity.status_changed",
                "conditions": [
                    {"field": "newStatus", "operator": "equals", "value": STATUSES[i % 6]},
                    {"field": "region", "operator": "not_equals", "value": REGIONS[i % 4]},
                    {"field": "priority", "operator": "in", "value": ["high", "urgent"]},
                ],
            }
            action = {
                "actionType": "create_activity",
                "activityType": "follow_up",
                "subject": f"Status follow-up {i}",
                "delay": 24,
                "assignTo": "lead_owner",
            }
        else:
            trigger = {
                "eventType": "activity.completed",
                "conditions": [
                    {"field": "outcome", "operator": "equals", "value": OUTCOMES[i % 5]},
                ],
            }
            action = {"actionType": "send_email", "template": f"after_call_{i}", "delay": 1}
        variants.append(
            {
                "ruleId": f"variant-{i:02d}",
                "name": f"variant {i}",
                "trigger": trigger,
                "actions": [action],
                "priority": i,
            }
        )
    return default_rules() + [FollowUpRule.model_validate(v) for v in variants]


def make_events(count: int, opportunities: int, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for n in range(count):
        opp = f"opp-{rng.randrange(opportunities)}"
        base = {
            "opportunityId": opp,
            "customerId": f"cust-{opp[4:]}",
            "region": rng.choice(REGIONS),
            "priority": rng.choice(PRIORITIES),
        }
        roll = rng.random()
        time_ = T0 + timedelta(seconds=n)
        if roll < 0.35:
            events.append(
                Event(
                    id=f"e{n}",
                    type="opportunity.created",
                    time=time_,
                    payload={**base, "leadSource": rng.choice(SOURCES)},
                )
            )
        elif roll < 0.55:
            events.append(
                Event(
                    id=f"e{n}",
                    type="opportunity.status_changed",
                    time=time_,
                    payload={**base, "newStatus": rng.choice(STATUSES)},
                )
            )
        elif roll < 0.75:
            events.append(
                Event(
                    id=f"e{n}",
                    type="estimate.created",
                    time=time_,
                    payload={**base, "estimateValue": rng.randint(100, 30000)},
                )
            )
        else:
            events.append(
                Event(
                    id=f"e{n}",
                    type="activity.completed",
                    time=time_,
                    payload={**base, "outcome": rng.choice(OUTCOMES)},
                )
            )
    return events


def build(backend: str, opportunities: int) -> LeadFlow:
    clock = ManualClock(T0)
    parts: dict[str, Any] = {}
    if backend == "mongomock":
        import mongomock_ng

        from leadflow import (
            MongoActivityRepository,
            MongoAuditLog,
            MongoCounterStore,
            MongoRuleRepository,
            MongoScheduledActionStore,
        )

        db = mongomock_ng.MongoClient()["bench"]
        parts = {
            "activities": MongoActivityRepository(db),
            "rules": MongoRuleRepository(db),
            "scheduled": MongoScheduledActionStore(db),
            "counters": MongoCounterStore(db),
            "audit": MongoAuditLog(db),
        }
        for part in parts.values():
            if hasattr(part, "ensure_indexes"):
                part.ensure_indexes()
    flow = LeadFlow.in_memory(
        clock=clock,
        rule_set=twenty_rules(),
        reps=["alice", "bob", "carol", "dave"],
        rules_refresh=timedelta(days=365),
        **parts,
    )
    owners = ["alice", "bob", "carol", "dave"]
    for i in range(opportunities):
        flow.opportunities.add(
            f"opp-{i}",
            owner=owners[i % 4],
            email=f"c{i}@example.com",  # type: ignore[attr-defined]
            phone="+15550100",
        )
    return flow


def run(backend: str, events: list[Event], opportunities: int, reps: int) -> dict[str, float]:
    rates, stats = [], {}
    for _ in range(reps):
        flow = build(backend, opportunities)
        flow.engine()  # compile the rules outside the timed loop
        # The pre-built events and opportunities are setup, not work: move them out of the
        # collector's sight (as long-running servers do after start-up with gc.freeze()), so
        # full collections walk only what handling creates.
        gc.collect()
        gc.freeze()
        started = time.perf_counter()
        actions = 0
        for event in events:
            result = flow.handle(event)
            actions += len(result.executed) + len(result.scheduled)
        elapsed = time.perf_counter() - started
        gc.unfreeze()
        rates.append(len(events) / elapsed)
        stats = {"actions_per_event": actions / len(events)}
    return {
        "events_per_second": statistics.median(rates),
        "us_per_event": 1e6 / statistics.median(rates),
        **stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events and repetitions")
    args = parser.parse_args()
    count, opportunities, reps = (2_000, 1_000, 3) if args.quick else (20_000, 10_000, 5)
    events = make_events(count, opportunities)
    print(
        f"LeadFlow.handle: {len(twenty_rules())} active rules, {count:,} events over "
        f"{opportunities:,} opportunities, median of {reps} runs"
    )
    memory = run("memory", events, opportunities, reps)
    mongo_events = events[: max(500, count // 10)]
    mongo = run("mongomock", mongo_events, opportunities, max(1, reps // 2))
    print(f"{'backend':<12}{'events/s':>12}{'us/event':>12}{'actions/event':>15}")
    for name, figures, n in (
        ("in-memory", memory, len(events)),
        ("mongomock", mongo, len(mongo_events)),
    ):
        print(
            f"{name:<12}{figures['events_per_second']:>12,.0f}{figures['us_per_event']:>12.1f}"
            f"{figures['actions_per_event']:>15.2f}   ({n:,} events)"
        )
    ratio = mongo["us_per_event"] / memory["us_per_event"]
    print(
        f"mongomock costs {ratio:.1f}x the in-memory run per event (a fake in Python, not a server)"
    )
    verdict = "PASS" if memory["events_per_second"] >= 10_000 else "FAIL"
    print(f"target >= 10,000 events/s in memory: {verdict} ({memory['events_per_second']:,.0f})")


if __name__ == "__main__":
    main()
