"""Throughput and latency of LeadFlow.handle on the path a host takes: 20 active rules, a
realistic event mix given as plain mappings (validated inside the timed region), the clock
following the events so that delayed actions come due and really run (``run_due`` every 100
events, inside the timed region), in-memory stores (the reference stores of
``leadflow.stores.memory`` and the fast variant, ``leadflow.stores.memory.fast``, taking
turns); the same run on mongomock-ng beside it.

Beside the engine alone, the floor of the stores (``store_floor.py``), also interleaved: the
calls a run of the flow made to the fast stores (the actions stored, the activities, the
acknowledgements, the facts, the claims of ``run_due``), recorded, then made again directly on
new fast stores with the values built before the timed region, each outcome checked against
the flow's. Reported in units of the engine beside ``handle``: what part of "5x the engine"
the stores alone already take.

What was created and sent is checked after each run: every created activity, notification and
message matches what the handler runs reported, and no action failed.

``--growth``: 1,000,000 activities preloaded, then 200,000 events: the longest single
``handle()`` (the issue: no stall beyond 100 ms), the longest garbage-collection pause and the
memory per stored activity; ``--store reference`` for the reference stores (default: fast).

Run: python benchmarks/bench_service.py [--quick] [--growth [--store reference|fast]]
Targets (issue 17): >= 25,000 events per second with the in-memory stores, and at most 5x what
the engine alone costs on the same events (measured in the same run, interleaved).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import time
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from store_floor import StoreCall, StoreFloor, call_counts, record_store_calls

from leadflow import FlowSettings, FollowUpRule, Integrations, LeadFlow, ManualClock, default_rules
from leadflow.adapters import InMemoryOpportunities, StaticTeamDirectory
from leadflow.ports import Message, Notification

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


def make_events(count: int, opportunities: int, seed: int = 7) -> list[dict[str, Any]]:
    """Events as a host holds them: plain mappings (camelCase document form)."""
    return list(iter_events(count, opportunities, seed))


def iter_events(count: int, opportunities: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """The same events one at a time, as a host receives them (a long run does not keep its
    whole input alive for the collector to walk)."""
    rng = random.Random(seed)
    for n in range(count):
        opp = f"opp-{rng.randrange(opportunities)}"
        payload: dict[str, Any] = {
            "opportunityId": opp,
            "customerId": f"cust-{opp[4:]}",
            "region": rng.choice(REGIONS),
            "priority": rng.choice(PRIORITIES),
        }
        roll = rng.random()
        if roll < 0.35:
            kind, payload["leadSource"] = "opportunity.created", rng.choice(SOURCES)
        elif roll < 0.55:
            kind, payload["newStatus"] = "opportunity.status_changed", rng.choice(STATUSES)
        elif roll < 0.75:
            kind, payload["estimateValue"] = "estimate.created", rng.randint(100, 30000)
        else:
            kind, payload["outcome"] = "activity.completed", rng.choice(OUTCOMES)
        yield {
            "eventId": f"e{n}",
            "eventType": kind,
            "occurredAt": (T0 + timedelta(seconds=5 * n)).isoformat(),
            "payload": payload,
        }


class Counting:
    """Notifier, messenger and event sink in one: counts what it gets and keeps nothing (a
    recording fake would keep every payload alive and make the collector's work grow)."""

    def __init__(self) -> None:
        self.notified = self.sent = self.emitted = 0

    def notify(self, notification: Notification) -> None:
        self.notified += 1

    def send(self, message: Message) -> None:
        self.sent += 1

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        self.emitted += 1


def build(backend: str, opportunities: int) -> tuple[LeadFlow, ManualClock]:
    clock = ManualClock(T0)
    storage = None
    if backend == "mongomock":
        import mongomock_ng

        from leadflow.stores.mongo import mongo_storage

        storage = mongo_storage(mongomock_ng.MongoClient()["bench"])
    if backend == "fast":
        from leadflow.stores.memory.fast import fast_memory_storage

        storage = fast_memory_storage()
    if storage is None:
        from leadflow.stores.memory import memory_storage

        storage = memory_storage()
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
    return flow, clock


class Tally:
    """What the handler runs reported, to check against what the ports and stores saw."""

    def __init__(self) -> None:
        self.created = self.notified = self.sent = self.failed = self.scheduled = 0
        self.duplicates = 0

    def count(self, runs: Any) -> None:
        for run in runs:
            if not run.ok:
                self.failed += 1
            elif run.note and run.note.startswith("created activity"):
                self.created += 1
            elif run.note and run.note.startswith("notified"):
                self.notified += 1
            elif run.note and run.note.startswith("sent "):
                self.sent += 1

    def add(self, result: Any) -> None:
        self.count(result.executed)
        self.scheduled += len(result.scheduled)
        self.duplicates += len(result.duplicates)
        for child in result.cascades:
            self.add(child)


def check(flow: LeadFlow, tally: Tally, activities_before: int) -> None:
    counting = flow.integrations.notifier
    assert isinstance(counting, Counting)
    stored = flow.storage.activities.statistics(None, as_of=flow.now()).total - activities_before
    assert tally.failed == 0, f"{tally.failed} action(s) failed"
    assert stored == tally.created, (stored, tally.created)
    assert counting.notified == tally.notified, (counting.notified, tally.notified)
    assert counting.sent == tally.sent, (counting.sent, tally.sent)
    assert tally.created > 0 and tally.notified > 0, "the workload acts"


def run_once(
    backend: str, events: list[dict[str, Any]], opportunities: int, freeze: bool
) -> tuple[float, list[float], Tally]:
    flow, clock = build(backend, opportunities)
    flow.engine()  # compile the rules outside the timed loop
    gc.collect()
    if freeze:  # the set-up trick a long-running server may use after start-up
        gc.freeze()
    tally = Tally()
    latencies: list[float] = []
    started, cpu = time.perf_counter(), time.process_time()
    for n, event in enumerate(events):
        begin = time.perf_counter()
        clock.set(T0 + timedelta(seconds=5 * n))
        tally.add(flow.handle(event))
        latencies.append(time.perf_counter() - begin)
        if n % 100 == 99:
            tally.count(flow.run_due(limit=1000).runs)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if freeze:
        gc.unfreeze()
    check(flow, tally, 0)
    CPU_TIMES.setdefault(backend + (" frozen" if freeze else ""), []).append(cpu)
    return elapsed, latencies, tally


def record_floor(events: list[dict[str, Any]], opportunities: int) -> list[StoreCall]:
    """The workload's store calls (:mod:`store_floor`), recorded from one run of the fast
    stores' flow, checked as :func:`run_once` checks it."""
    flow, clock = build("fast", opportunities)
    flow.engine()
    tally = Tally()
    with record_store_calls(flow.storage) as calls:
        for n, event in enumerate(events):
            clock.set(T0 + timedelta(seconds=5 * n))
            tally.add(flow.handle(event))
            if n % 100 == 99:
                tally.count(flow.run_due(limit=1000).runs)
    check(flow, tally, 0)
    return calls


def floor_once(events: list[dict[str, Any]], opportunities: int) -> None:
    """The floor of the stores: the workload's store calls, recorded from a run of the flow,
    made again on new fast stores, each outcome checked against the flow's. The recorded
    values are built before the timed region and kept out of the collector's sight
    (``gc.freeze()``) while they are made: what the collector walks is then what the stores
    keep, as in ``handle``, not the benchmark's copies of every argument (the set-up is
    frozen too, so the floor is a little lower than it would be in ``handle``'s process)."""
    from leadflow.stores.memory.fast import fast_memory_storage

    calls = record_floor(events, opportunities)
    FLOOR_CALLS[:] = [len(calls), call_counts(calls)]
    floor = StoreFloor(fast_memory_storage(), calls)
    gc.collect()
    gc.freeze()
    try:
        CPU_TIMES.setdefault("floor", []).append(floor.run())
    finally:
        gc.unfreeze()
    del floor, calls
    gc.collect()


def engine_once(events: list[dict[str, Any]]) -> float:
    """The floor: the rule engine alone evaluating the same mappings (seconds for all); the
    plans are counted and checked to be non-empty."""
    from leadflow import RuleEngine

    engine = RuleEngine(twenty_rules())
    planned = 0
    started, cpu = time.perf_counter(), time.process_time()
    for event in events:
        planned += len(engine.evaluate(event).planned)
    elapsed = time.perf_counter() - started
    CPU_TIMES.setdefault("engine", []).append(time.process_time() - cpu)
    assert planned > 0, "the workload plans actions"
    return elapsed


ENGINE_TIMES: list[float] = []
FLOOR_CALLS: list[Any] = []
"""How many store calls the floor made, and their counts by store and method."""
CPU_TIMES: dict[str, list[float]] = {}
"""The process's CPU time per run, by what ran: on a shared machine wall time also counts the
time the process waited for a core, CPU time much less so."""


def run(
    backend: str, events: list[dict[str, Any]], opportunities: int, reps: int, freeze: bool
) -> dict[str, float]:
    rates, p99s, worst = [], [], []
    tally = Tally()
    for _ in range(reps):
        if backend in ("memory", "fast") and not freeze:
            ENGINE_TIMES.append(engine_once(events))  # interleaved with the runtime's runs
            if backend == "fast":  # the stores' floor, interleaved too
                floor_once(events, opportunities)
        elapsed, latencies, tally = run_once(backend, events, opportunities, freeze)
        rates.append(len(events) / elapsed)
        latencies.sort()
        p99s.append(latencies[int(len(latencies) * 0.99)])
        worst.append(latencies[-1])
    return {
        "events_per_second": statistics.median(rates),
        "us_per_event": 1e6 / statistics.median(rates),
        "p99_ms": statistics.median(p99s) * 1e3,
        "max_ms": max(worst) * 1e3,
        "created": tally.created,
        "notified": tally.notified,
        "sent": tally.sent,
        "ran_later": tally.scheduled,
    }


def resident_bytes() -> int:
    """The process's resident memory (Linux), 0 where /proc is not there."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def merge(runs: dict[str, Any], one: dict[str, Any]) -> dict[str, Any]:
    """``runs`` (figures as lists, one item per run) with the figures of ``one`` run added."""
    return {key: [*runs.get(key, []), value] for key, value in one.items()}


def summary(runs: dict[str, Any]) -> dict[str, float]:
    """The figures of several runs: medians, the worst ``handle()`` over all of them."""
    figures = {key: statistics.median(values) for key, values in runs.items()}
    figures["max_ms"] = max(runs["max_ms"])
    figures["us_per_event"] = 1e6 / figures["events_per_second"]
    return figures


def growth(preload: int, count: int, freeze: bool, store: str) -> None:
    """The longest handle() and GC pause with ``preload`` activities already stored in the
    ``store`` variant ("fast" or "reference"), and the memory each stored activity takes; with
    ``freeze``, the set-up (rules, opportunities, preloaded activities) is moved out of the
    collector's sight with gc.freeze() after loading, as a long-running server may do."""
    from leadflow import Activity, ActivityType

    opportunities = 50_000
    flow, clock = build("fast" if store == "fast" else "memory", opportunities)
    gc.collect()
    resident = resident_bytes()
    started = time.perf_counter()
    add = getattr(flow.storage.activities, "add_many", None)
    batch: list[Activity] = []
    for i in range(preload):
        batch.append(
            Activity(
                activity_id=f"old-{i}",
                opportunity_id=f"opp-{i % opportunities}",
                activity_type=ActivityType.CALL,
                subject="Earlier call",
                assigned_to=["alice", "bob", "carol", "dave"][i % 4],
                created_at=T0 - timedelta(days=30, seconds=i),
                due_date=T0 - timedelta(days=29, seconds=i),
                completed_date=T0 - timedelta(days=29, seconds=i) if i % 3 else None,
            )
        )
        if len(batch) == 10_000:
            if add is not None:
                add(batch)
            else:
                for activity in batch:
                    flow.storage.activities.add(activity)
            batch = []
    batch = []
    gc.collect()
    per_activity = (resident_bytes() - resident) / max(preload, 1)
    print(
        f"preloaded {preload:,} activities ({store} store) in "
        f"{time.perf_counter() - started:.1f} s, {per_activity:,.0f} bytes of resident memory each"
    )
    pauses: list[float] = []
    cpu_pauses: list[float] = []
    mark: list[float] = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        # Wall time, and the process's CPU time: on a shared machine a wall-clock pause also
        # counts the time the process waited for a core.
        if phase == "start":
            mark[0], mark[1] = time.perf_counter(), time.process_time()
        else:
            pauses.append(time.perf_counter() - mark[0])
            cpu_pauses.append(time.process_time() - mark[1])

    events = iter_events(count, opportunities, seed=11)
    flow.engine()
    gc.collect()
    if freeze:
        gc.freeze()
    tally = Tally()
    # An array of doubles, not a list of floats: the collector would walk a list of 200,000
    # pointers at every full collection, the benchmark's bookkeeping inside the pause it times.
    recorded = array("d")
    gc.callbacks.append(on_gc)
    try:
        started = time.perf_counter()
        for n, event in enumerate(events):
            begin = time.perf_counter()
            clock.set(T0 + timedelta(seconds=5 * n))
            tally.add(flow.handle(event))
            recorded.append(time.perf_counter() - begin)
            if n % 100 == 99:
                tally.count(flow.run_due(limit=1000).runs)
        elapsed = time.perf_counter() - started
    finally:
        gc.callbacks.remove(on_gc)
    check(flow, tally, preload)
    latencies = sorted(recorded)
    print(
        f"{count:,} events at {preload:,} activities: {count / elapsed:,.0f} events/s, "
        f"p50 {latencies[len(latencies) // 2] * 1e3:.2f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.2f} ms, "
        f"max handle() {latencies[-1] * 1e3:.1f} ms (target <= 100 ms), "
        f"longest GC pause {max(pauses, default=0) * 1e3:.1f} ms "
        f"({max(cpu_pauses, default=0) * 1e3:.1f} ms of CPU) over {len(pauses)} collections"
        f"{' (gc.freeze after set-up)' if freeze else ''}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events and repetitions")
    parser.add_argument("--growth", action="store_true", help="1M activities, 200k events")
    parser.add_argument("--freeze", action="store_true", help="--growth with gc.freeze()")
    parser.add_argument("--store", choices=["fast", "reference"], default="fast", help="--growth")
    parser.add_argument("--preload", type=int, help="--growth: activities preloaded")
    args = parser.parse_args()
    if args.growth:
        preload = args.preload or (100_000 if args.quick else 1_000_000)
        growth(preload, 20_000 if args.quick else 200_000, args.freeze, args.store)
        return
    count, opportunities, reps = (2_000, 1_000, 3) if args.quick else (20_000, 10_000, 5)
    events = make_events(count, opportunities)
    print(
        f"LeadFlow.handle from mappings: {len(twenty_rules())} active rules, {count:,} events "
        f"over {opportunities:,} opportunities, clock following the events, median of {reps} runs"
    )
    memory, fast = {}, {}
    for _ in range(reps):  # the two variants take turns, one run each
        memory = merge(memory, run("memory", events, opportunities, 1, freeze=False))
        fast = merge(fast, run("fast", events, opportunities, 1, freeze=False))
    memory, fast = summary(memory), summary(fast)
    frozen = run("fast", events, opportunities, reps, freeze=True)
    mongo_events = events[: max(500, count // 10)]
    mongo = run("mongomock", mongo_events, opportunities, max(1, reps // 2), freeze=False)
    print(
        f"{'run':<22}{'events/s':>10}{'us/event':>10}{'p99 ms':>8}{'max ms':>8}"
        f"{'created':>9}{'notified':>9}{'sent':>6}{'later':>7}"
    )
    for name, figures, n in (
        ("in-memory reference", memory, len(events)),
        ("in-memory fast", fast, len(events)),
        ("fast, gc.freeze", frozen, len(events)),
        ("mongomock", mongo, len(mongo_events)),
    ):
        print(
            f"{name:<22}{figures['events_per_second']:>10,.0f}{figures['us_per_event']:>10.1f}"
            f"{figures['p99_ms']:>8.2f}{figures['max_ms']:>8.1f}{figures['created']:>9,.0f}"
            f"{figures['notified']:>9,.0f}{figures['sent']:>6,.0f}{figures['ran_later']:>7,.0f}"
            f"   ({n:,} events)"
        )
    engine_us = statistics.median(ENGINE_TIMES) / len(events) * 1e6
    ratio = fast["us_per_event"] / engine_us
    print(
        f"engine alone (RuleEngine.evaluate on the same mappings, interleaved): "
        f"{engine_us:.1f} us/event; handle costs {ratio:.0f}x the engine with the fast stores, "
        f"{memory['us_per_event'] / engine_us:.0f}x with the reference stores"
    )
    cpu = {
        name: statistics.median(CPU_TIMES[name]) / len(events) * 1e6
        for name in ("engine", "floor", "memory", "fast", "fast frozen")
    }
    print(
        "CPU time (median, us/event): "
        + ", ".join(f"{name} {value:.1f}" for name, value in cpu.items())
        + f"; handle / engine in CPU time: fast {cpu['fast'] / cpu['engine']:.0f}x, "
        f"reference {cpu['memory'] / cpu['engine']:.0f}x"
    )
    print(f"the stores' floor: {FLOOR_CALLS[0]:,} store calls ({FLOOR_CALLS[1]})")
    print(
        f"the stores' floor (their calls for the workload, made directly, interleaved): "
        f"{cpu['floor'] / cpu['engine']:.1f}x the engine in CPU time; handle on the fast stores "
        f"{cpu['fast'] / cpu['engine']:.1f}x, of which the floor is "
        f"{cpu['floor'] / cpu['fast']:.0%}; the rest of handle (the runtime) "
        f"{(cpu['fast'] - cpu['floor']) / cpu['engine']:.1f}x"
    )
    verdict = "PASS" if fast["events_per_second"] >= 25_000 else "FAIL"
    print(f"target >= 25,000 events/s in memory (fast stores, no gc.freeze): {verdict}")
    print(f"target handle <= 5x the engine: {'PASS' if ratio <= 5 else 'FAIL'}")


if __name__ == "__main__":
    main()
