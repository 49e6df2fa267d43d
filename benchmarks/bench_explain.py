"""Benchmark: what explaining costs next to a plain evaluation (target: at most 2x).

The workload is the engine benchmark's (``engine_workload.py``, seeded): event documents of four
types against the 20-rule set (the 8 defaults and 12 variants with groups) and the 1,000-rule
set. Each round goes through the events in chunks of 250, ``evaluate(document)`` and
``evaluate(document, explain=True)`` taking turns on each chunk (the order alternating), with the
garbage collector on. Before timing, every event is checked: the explained evaluation matches
and plans exactly what the plain one does, and explains every active rule of the event's type.
Figures are medians over rounds in microseconds per event; the ratio divides the medians.

    python benchmarks/bench_explain.py            # 4,000 events, 7 rounds
    python benchmarks/bench_explain.py --quick    # 1,000 events, 3 rounds

Exit status 0 when both rule sets stay within 2x, 1 when one does not, 2 when results differ.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_workload import make_event_documents, rule_set

from leadflow import RuleEngine

TARGET = 2.0
CHUNK = 250


def check(engine: RuleEngine, events: list[dict[str, Any]]) -> None:
    for document in events:
        plain = engine.evaluate(document)
        explained = engine.evaluate(document, explain=True)
        if plain.matched_rules != explained.matched_rules or plain.planned != explained.planned:
            raise SystemExit(f"explain changed the answer for {document['id']}")
        listening = len(engine.rules_for(document["type"]))
        rows = [e for e in explained.explanations or () if e.tree or e.reason != "inactive"]
        if (
            len(
                [
                    e
                    for e in rows
                    if e.rule_id in {r.rule_id for r in engine.rules_for(document["type"])}
                ]
            )
            != listening
        ):
            raise SystemExit(f"not every rule explained for {document['id']}")


def run(size: int, events: list[dict[str, Any]], rounds: int) -> tuple[float, float]:
    engine = RuleEngine(rule_set(size))
    check(engine, events)
    chunks = [events[i : i + CHUNK] for i in range(0, len(events), CHUNK)]
    plain_rounds: list[float] = []
    explain_rounds: list[float] = []
    for number in range(rounds):
        gc.collect()
        spent = {False: 0.0, True: 0.0}
        for index, chunk in enumerate(chunks):
            order = (False, True) if (index + number) % 2 == 0 else (True, False)
            for explain in order:
                evaluate = engine.evaluate
                start = time.perf_counter()
                for document in chunk:
                    evaluate(document, explain=explain)
                spent[explain] += time.perf_counter() - start
        plain_rounds.append(spent[False] / len(events) * 1e6)
        explain_rounds.append(spent[True] / len(events) * 1e6)
    return statistics.median(plain_rounds), statistics.median(explain_rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, rounds = (1000, 3) if args.quick else (4000, 7)
    events = make_event_documents(count)
    status = 0
    print(f"{count} events, {rounds} rounds, medians in us/event")
    print(f"{'rules':>6} {'plain':>9} {'explain':>9} {'ratio':>6}")
    for size in (20, 1000):
        plain, explained = run(size, events, rounds)
        ratio = explained / plain
        verdict = "ok" if ratio <= TARGET else f"MISSED (target {TARGET}x)"
        print(f"{size:>6} {plain:>9.2f} {explained:>9.2f} {ratio:>5.2f}x {verdict}")
        if ratio > TARGET:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
