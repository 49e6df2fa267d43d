"""Benchmark: keeping the compiled rules until they change (issue 17), before and after.

**Replay.** A history of events replayed through ``LeadFlow.handle`` on in-memory stores, the
flow's clock following the events (5-90 s apart, seeded), 20 rules (the engine benchmark's:
the 8 defaults and 12 variants). Three flows, each on its own stores, take turns on chunks of
100 events (the order rotating, the garbage collector on):

* *on change* -- the flow as shipped: the compiled rules are kept until the rule store's
  change stamp moves (read at most every ``rules_refresh`` of wall time);
* *old policy* -- the previous behaviour: the rule set is thrown away whenever 30 s of the
  flow's clock have passed (here on about 3 of 4 events) and rebuilt as it was: every rule
  read, checked (compiled once) and compiled again into a new engine;
* *every event* -- the same rebuild forced before every event.

Figures are medians over the rounds, in microseconds per event.

**One reload with 1,000 rules** (the 8 defaults and generated variants, in the memory store and
in a SQLite file): a full rebuild as before (list, check, compile), a reload of the shipped
rule book after one rule changed (list, compare, compile that one rule), and a stamp check that
finds nothing changed. Medians over ``--reps`` rounds, in milliseconds.

    python benchmarks/bench_rules_reload.py          # the full run (about a minute)
    python benchmarks/bench_rules_reload.py --quick  # fewer events and rounds
"""

from __future__ import annotations

import argparse
import gc
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_workload import make_event_documents, rule_set

from leadflow import FlowSettings, LeadFlow, ManualClock
from leadflow.ports import RuleRepository
from leadflow.rules import RuleEngine
from leadflow.runtime.rulebook import RuleBook

logging.getLogger("leadflow").setLevel(logging.CRITICAL)  # refused variants, failed handlers


def rebuild(book: RuleBook, store: RuleRepository) -> RuleEngine:
    """What the previous rule book did at every expiry: every rule read, checked, compiled."""
    usable = []
    for rule in store.list_active():
        try:
            book.check(rule)
        except Exception:
            continue
        usable.append(rule)
    return book.compile(usable)


def old_policy(flow: LeadFlow, *, always: bool) -> Callable[[], RuleEngine]:
    """The previous expiry on the flow's clock (30 s), or a rebuild at every use."""
    state: dict[str, Any] = {}

    def engine() -> RuleEngine:
        now = flow.clock.now()
        loaded = state.get("at")
        if always or loaded is None or abs(now - loaded) >= timedelta(seconds=30):
            state["engine"] = rebuild(flow.rulebook, flow.storage.rules)
            state["at"] = now
            state["rebuilds"] = state.get("rebuilds", 0) + 1
        result: RuleEngine = state["engine"]
        return result

    engine.state = state  # type: ignore[attr-defined]
    return engine


def replay_events(count: int, seed: int = 17) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    documents = make_event_documents(count, seed)
    at = documents[0]["time"]
    for document in documents:
        at += timedelta(seconds=rng.uniform(5, 90))
        document["time"] = at
    return documents


def new_flow(rules: list[Any], documents: list[dict[str, Any]]) -> LeadFlow:
    flow = LeadFlow.in_memory(
        clock=ManualClock(documents[0]["time"]),
        rules=rules,
        reps=["alice", "bob", "carol"],
    )
    opportunities = flow.integrations.opportunities
    for opportunity in {document["payload"]["opportunityId"] for document in documents}:
        opportunities.add(opportunity, owner="alice")  # type: ignore[attr-defined]
    return flow


def replay(events: int, reps: int) -> None:
    documents = replay_events(events)
    rules = rule_set(20)
    flows = {name: new_flow(rules, documents) for name in ("on change", "old policy", "every")}
    policies = {
        "old policy": old_policy(flows["old policy"], always=False),
        "every": old_policy(flows["every"], always=True),
    }
    for name, engine in policies.items():
        flows[name].rulebook.engine = engine  # type: ignore[method-assign]
    chunks = [documents[i : i + 100] for i in range(0, len(documents), 100)]
    timings: dict[str, list[float]] = {name: [] for name in flows}
    names = list(flows)
    for round_ in range(reps):
        spent = dict.fromkeys(names, 0.0)
        for c, chunk in enumerate(chunks):
            order = names[(c + round_) % 3 :] + names[: (c + round_) % 3]
            for name in order:
                flow = flows[name]
                clock = flow.clock
                assert isinstance(clock, ManualClock)
                start = time.perf_counter()
                for document in chunk:
                    clock.set(document["time"])
                    flow.handle({**document, "id": f"{document['id']}-{round_}"})
                spent[name] += time.perf_counter() - start
            # the clocks go back for the next round: business time jumps back by weeks
        for name in names:
            timings[name].append(spent[name] / len(documents) * 1e6)
        gc.collect()
    book = flows["on change"].rulebook
    print(f"replay: {events} events x {reps} rounds, 20 rules, clock following the events")
    print("  (5-90 s apart), in-memory stores, us per event (median, fastest round):")
    for name, label in (
        ("on change", "kept until the stamp moves"),
        ("old policy", "rebuilt every 30 s of flow time"),
        ("every", "rebuilt before every event"),
    ):
        values = timings[name]
        print(f"  {label:34} {statistics.median(values):8.0f} {min(values):8.0f}")
    old = policies["old policy"].state["rebuilds"]  # type: ignore[attr-defined]
    print(
        f"  rebuilds: old policy {old} of {events * reps} events; on change: {book.reloads} "
        f"reload(s), {book.stamp_checks} stamp check(s), {book.compiled_rules} rules compiled"
    )


def reload_costs(reps: int) -> None:
    from leadflow.stores.memory import memory_storage
    from leadflow.stores.sql import sql_storage

    rules = rule_set(1000)
    with tempfile.TemporaryDirectory() as folder:
        backends = {
            "memory": memory_storage(),
            "sqlite file": sql_storage(f"sqlite:///{Path(folder) / 'rules.db'}"),
        }
        print(f"one reload, {len(rules)} rules, ms (median, fastest of {reps}):")
        for label, storage in backends.items():
            for rule in rules:
                storage.rules.create(rule)
            flow = LeadFlow.in_memory(
                storage=storage, settings=FlowSettings(rules_refresh=timedelta(0))
            )
            book = flow.rulebook
            book.engine()
            loaded = len(book.engine().rules)
            full: list[float] = []
            changed: list[float] = []
            unchanged: list[float] = []
            ids = [r.rule_id for r in book.engine().rules]
            for n in range(reps):
                start = time.perf_counter()
                rebuild(book, storage.rules)
                full.append(time.perf_counter() - start)
                stored = storage.rules.get(ids[n * 7 % len(ids)])
                storage.rules.update(stored.model_copy(update={"description": f"edit {n}"}))
                compiled = book.compiled_rules
                start = time.perf_counter()
                book.engine()
                changed.append(time.perf_counter() - start)
                assert book.compiled_rules == compiled + 1
                start = time.perf_counter()
                book.engine()
                unchanged.append(time.perf_counter() - start)
            for name, values in (
                ("full rebuild (before)", full),
                ("one rule changed (after)", changed),
                ("nothing changed: stamp check", unchanged),
            ):
                print(
                    f"  {label:12} {name:30} {statistics.median(values) * 1e3:9.2f}"
                    f" {min(values) * 1e3:9.2f}"
                )
            print(f"  {label:12} ({loaded} rules load with the default handlers)")
            close = getattr(storage, "close", None)
            if close is not None:
                close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args()
    events = args.events or (400 if args.quick else 2000)
    reps = args.reps or (3 if args.quick else 7)
    replay(events, reps)
    reload_costs(reps)


if __name__ == "__main__":
    main()
