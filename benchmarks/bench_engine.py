"""Benchmark: leadflow's rule engine on the path users take, against a hand-written baseline and
three PyPI rule engines.

Every contender starts from the input a host has: the event document (a dict with ``id``,
``type``, ``time`` and ``payload``), or an ``Event`` model built from it inside the timed region.
The workload (``engine_workload.py``, seeded) is 10,000 events of four types and two rule sets:
20 rules (the 8 defaults and 12 variants, 5 of them with ``any`` / ``all`` groups) and 1,000
rules (the same plus generated variants, about a quarter with groups). The contenders
(``engine_peers.py`` for all but leadflow):

* baseline -- hand-written Python, a mapping in and planned actions out, no validation;
* leadflow ``evaluate(document)`` -- the document validated as ``Event.model_validate`` would
  (a lean path with the same checks, ``leadflow.rules.intake``), matched, actions planned;
* leadflow ``evaluate(Event.model_validate(document))`` -- what a new user writes first;
* leadflow ``match(document)`` -- validated and matched, no planning (what the peers do);
* for reference, leadflow on ``Event`` models built before timing (the engine alone) and the
  validated intake alone;
* business-rules, rule-engine, json-logic (``json-logic-qubit``) -- as their documentation
  shows, groups translated into each one's own form; "by type" (rules split by event type, their
  fastest form) and "one list". In the ``bench`` extra (``pip install -e '.[bench]'``); a peer
  that is not installed is skipped.

All contenders run in one process, interleaved: each of ``--reps`` rounds goes through the
events in chunks of 250, every contender taking its turn on each chunk (the order rotating),
with the garbage collector on as in a host (one ``gc.collect()`` per round; nothing frozen or
disabled). Figures are medians over the rounds in microseconds per event, with the fastest
round beside them (the machine is shared: load from elsewhere inflates some rounds); ratios
divide figures of the same run. Before timing, every answer is checked: the planners must
return the baseline's matched rules and planned actions (rule, action, due time) for every
event, the matchers its matched rules.

    python benchmarks/bench_engine.py            # the full run (a few minutes on 2 cores)
    python benchmarks/bench_engine.py --quick    # fewer events and rounds

Exit status: 0 when every engine agrees and every target is met, 1 when a target is missed,
2 when engines disagree.
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

from engine_peers import PEERS, Contender, build_baseline
from engine_workload import count_groups, make_event_documents, rule_set

from leadflow import Event, FollowUpRule, RuleEngine, __version__
from leadflow.rules.intake import read_event

BASELINE = "baseline (hand-written)"
EVALUATE = "leadflow evaluate(document)"
EVALUATE_MODEL = "leadflow evaluate(Event.model_validate(document))"
MATCH = "leadflow match(document)"
EVALUATE_BUILT = "leadflow evaluate(event), Event built beforehand"
MATCH_BUILT = "leadflow match(event), Event built beforehand"
INTAKE = "leadflow intake alone (read_event)"


def _planned(evaluation: Any) -> tuple[list[str], list[tuple[str, int, Any]]]:
    return (
        [rule.rule_id for rule in evaluation.matched_rules],
        [(p.rule_id, p.action_index, p.due_at) for p in evaluation.planned],
    )


def _ids(rules: list[FollowUpRule]) -> list[str]:
    return [rule.rule_id for rule in rules]


def build_leadflow(rules: Sequence[FollowUpRule]) -> list[Contender]:
    """leadflow's contenders on one engine (see the module docstring)."""
    engine = RuleEngine(rules)
    evaluate, match, validate = engine.evaluate, engine.match, Event.model_validate
    return [
        Contender(EVALUATE, evaluate, _planned, plans=True),
        Contender(EVALUATE_MODEL, lambda d: evaluate(validate(d)), _planned, plans=True),
        Contender(MATCH, match, _ids, plans=False),
        Contender(EVALUATE_BUILT, evaluate, _planned, plans=True, takes_events=True),
        Contender(MATCH_BUILT, match, _ids, plans=False, takes_events=True),
        Contender(INTAKE, read_event, lambda fields: None, plans=False),
    ]


# --------------------------------------------------------------------------- measurement


def disagreement(
    contender: Contender,
    inputs: Sequence[Any],
    reference: list[tuple[list[str], list[tuple[str, int, Any]]]],
) -> str | None:
    """None when ``contender`` answers as the baseline on every input, else a description."""
    if contender.name == INTAKE:
        return None
    for i, item in enumerate(inputs):
        got = contender.read(contender.run(item))
        expected = reference[i] if contender.plans else reference[i][0]
        if got != expected:
            return (
                f"{contender.name} disagrees on event {i}:\n    expected {expected}\n"
                f"    got      {got}"
            )
    return None


def interleaved(
    contenders: list[Contender],
    documents: list[Any],
    events: list[Event],
    reps: int,
    chunk: int = 250,
) -> dict[str, list[float]]:
    """Microseconds per event of every contender in each of ``reps`` rounds. A round runs the
    inputs in chunks of ``chunk`` events; every contender takes its turn on each chunk, in an
    order that rotates from chunk to chunk, so that a burst of load from elsewhere on the
    machine falls on all of them alike."""
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    chunks = [
        (documents[i : i + chunk], events[i : i + chunk]) for i in range(0, len(documents), chunk)
    ]
    for rep in range(reps):
        spent = dict.fromkeys(samples, 0)
        gc.collect()
        for k, (some_documents, some_events) in enumerate(chunks):
            shift = (rep + k) % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                inputs: list[Any] = some_events if contender.takes_events else some_documents
                run = contender.run
                start = time.perf_counter_ns()
                for item in inputs:
                    run(item)
                spent[contender.name] += time.perf_counter_ns() - start
        for name, elapsed in spent.items():
            samples[name].append(elapsed / len(documents) / 1000)
    return samples


def measure_point(
    label: str, rules: list[FollowUpRule], documents: list[dict[str, Any]], reps: int
) -> tuple[dict[str, float], list[str]]:
    """Check every contender against the baseline, then time them all, interleaved. Returns the
    median us/event by contender name and the disagreements found."""
    events = [Event.model_validate(d) for d in documents]
    active = [r for r in rules if r.is_active]
    print(
        f"\n== {label}: {len(rules):,} rules ({count_groups(active)} with any/all groups), "
        f"{len(documents):,} events, median of {reps} interleaved rounds"
    )
    baseline = build_baseline(rules)
    reference = [baseline.run(d) for d in documents]
    matched = sum(len(ids) for ids, _ in reference) / len(documents)
    planned = sum(len(p) for _, p in reference) / len(documents)
    print(f"   per event: {matched:.2f} matched rules, {planned:.2f} planned actions on average")
    contenders = [baseline, *build_leadflow(rules)]
    for name, module, build in PEERS:
        try:
            __import__(module)
        except ImportError:
            print(f"   {name}: not installed, skipped (pip install -e '.[bench]')")
            continue
        contenders += [build(rules, single) for single in (False, True)]
    problems = []
    ok = []
    for contender in contenders:
        problem = disagreement(
            contender, events if contender.takes_events else documents, reference
        )
        if problem is None:
            ok.append(contender)
        else:
            print(f"   FAILURE: {problem}")
            problems.append(problem)
    samples = interleaved(ok, documents, events, reps)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    best = {name: min(values) for name, values in samples.items()}
    base, base_best = medians[BASELINE], best[BASELINE]
    evaluate, evaluate_best = medians.get(EVALUATE, math.nan), best.get(EVALUATE, math.nan)
    print(f"   {'contender':<50} {'median':>8} {'ratio':>7}   {'best':>8} {'ratio':>7}")
    for name in samples:
        line = (
            f"   {name:<50} {medians[name]:>8.2f} {medians[name] / base:>6.2f}x"
            f"   {best[name]:>8.2f} {best[name] / base_best:>6.2f}x"
        )
        if "(by type)" in name or "(one list)" in name:
            line += (
                f"   {medians[name] / evaluate:>5.1f}x / {best[name] / evaluate_best:.1f}x"
                " evaluate(document)"
            )
        print(line)
    print("   (us/event; ratio: to the baseline of the same run; best: the fastest round)")
    medians.update({f"{name} [best]": value for name, value in best.items()})
    return medians, problems


def measure_memory(size: int) -> tuple[int, int]:
    """Bytes held by ``size`` rule models, and by a RuleEngine compiled from them."""
    docs = [r.to_document() for r in rule_set(size)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        models = [FollowUpRule.model_validate(d) for d in docs]
        after_models = tracemalloc.get_traced_memory()[0]
        engine = RuleEngine(models)
        gc.collect()
        after_engine = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(engine.rules) == size
    return after_models - before, after_engine - after_models


# --------------------------------------------------------------------------- report


def targets(
    small: dict[str, float], large: dict[str, float], engine_bytes: int, agreed: bool
) -> list[tuple[bool, str]]:
    """The issue's targets, each with the figure behind it."""
    out: list[tuple[bool, str]] = []
    ratio = small[EVALUATE] / small[BASELINE]
    best = small[EVALUATE + " [best]"] / small[BASELINE + " [best]"]
    out.append(
        (
            ratio <= 3,
            f"20 rules: evaluate(document) within 3x of the baseline ({ratio:.2f}x; "
            f"{small[EVALUATE]:.2f} vs {small[BASELINE]:.2f} us; best rounds {best:.2f}x)",
        )
    )
    for point, rows in (("20 rules", small), ("1,000 rules", large)):
        for peer, _, _ in PEERS:
            names = [f"{peer} (by type)", f"{peer} (one list)"]
            forms = [rows[k] for k in names if k in rows]
            if not forms:
                continue
            speedup = min(forms) / rows[EVALUATE]
            also = min(forms) / rows[MATCH]
            best = min(rows[f"{k} [best]"] for k in names if k in rows)
            out.append(
                (
                    speedup >= 10,
                    f"{point}: evaluate(document) >= 10x faster than {peer} in its fastest "
                    f"form ({speedup:.1f}x; best rounds {best / rows[EVALUATE + ' [best]']:.1f}x; "
                    f"match(document) {also:.1f}x)",
                )
            )
    out.append(
        (small[EVALUATE] <= 5, f"20 rules: evaluate(document) <= 5 us ({small[EVALUATE]:.2f})")
    )
    out.append(
        (
            large[EVALUATE] <= 100,
            f"1,000 rules: evaluate(document) <= 100 us ({large[EVALUATE]:.1f})",
        )
    )
    out.append(
        (engine_bytes <= 10e6, f"1,000 compiled rules <= 10 MB ({engine_bytes / 1e6:.2f} MB)")
    )
    out.append((agreed, "every contender answers as the baseline on every event"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds")
    parser.add_argument("--events", type=int, help="events at 20 rules (10,000; --quick 2,000)")
    parser.add_argument("--reps", type=int, help="interleaved rounds (default 7; --quick 3)")
    parser.add_argument(
        "--large-events", type=int, help="events at 1,000 rules (default 500; --quick 100)"
    )
    args = parser.parse_args(argv)
    n_events = args.events or (2_000 if args.quick else 10_000)
    reps = args.reps or (3 if args.quick else 7)
    large_events = args.large_events or (100 if args.quick else 500)

    print(
        f"leadflow {__version__}, CPython {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}"
    )
    documents = make_event_documents(max(n_events, large_events))
    small, problems = measure_point("20 rules", rule_set(20), documents[:n_events], reps)
    large, more = measure_point("1,000 rules", rule_set(1000), documents[:large_events], reps)
    problems += more
    model_bytes, engine_bytes = measure_memory(1000)
    print(
        f"\n== memory of 1,000 rules (tracemalloc): compiled RuleEngine "
        f"{engine_bytes / 1e6:.2f} MB, not counting the rules' pydantic models "
        f"({model_bytes / 1e6:.2f} MB, built beforehand)"
    )
    print("\n== targets")
    results = targets(small, large, engine_bytes, not problems)
    for ok, text in results:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    if problems:
        print("\nFAILURE: contenders disagree (details above); they were left out of the timing.")
        return 2
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
