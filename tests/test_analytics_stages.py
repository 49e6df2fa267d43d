"""The funnel's one pass (:func:`~leadflow.facts.stage_sums_of_paths`) against the definition
written out plainly: for random paths (repeated statuses, statuses outside the stages, one
change or many per opportunity), in datetimes and in integer microseconds."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow.facts import StageSums, stage_sums_of_paths

STAGES = ("new", "contacted", "qualified", "won")
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _defined(
    paths: Sequence[tuple[str, str, Any]], stages: Sequence[str], seconds: Callable[[Any], float]
) -> list[StageSums]:
    """Each opportunity's path on its own: the stages it changed to, its stays (a change to
    another status ends the current one) and its last status."""
    by: dict[str, list[tuple[str, Any]]] = {}
    for on, to, at in paths:
        by.setdefault(on, []).append((to, at))
    reached: Counter[str] = Counter()
    advanced: Counter[str] = Counter()
    still: Counter[str] = Counter()
    stays: dict[str, list[float]] = {stage: [] for stage in stages}
    for path in by.values():
        statuses = {to for to, _ in path}
        for n, stage in enumerate(stages):
            if stage in statuses:
                reached[stage] += 1
                if n + 1 < len(stages) and stages[n + 1] in statuses:
                    advanced[stage] += 1
        status, since = path[0]
        for to, at in path[1:]:
            if to != status:
                if status in stays:
                    stays[status].append(seconds(at - since))
                status, since = to, at
        still[status] += 1
    return [
        StageSums(
            stage=stage,
            reached=reached[stage],
            advanced=advanced[stage],
            still_in=still[stage],
            median_stay_seconds=sorted(stays[stage])[(len(stays[stage]) + 1) // 2 - 1]
            if stays[stage]
            else None,
        )
        for stage in stages
    ]


@pytest.mark.parametrize("seed", range(6))
def test_the_pass_is_the_definition(seed: int) -> None:
    rng = random.Random(seed)
    statuses = [*STAGES, "lost", "parked"]
    paths: list[tuple[str, str, datetime]] = []
    for n in range(rng.randrange(0, 60)):
        at = T0 + timedelta(minutes=rng.randrange(10_000))
        for _ in range(rng.randrange(1, 7)):
            at += timedelta(minutes=rng.randrange(0, 3_000))  # ties too
            paths.append((f"o{n}", rng.choice(statuses), at))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    as_micros = [(on, to, (at - epoch) // timedelta(microseconds=1)) for on, to, at in paths]

    def micros_seconds(value: int) -> float:
        return value / 1_000_000

    expected = _defined(paths, STAGES, timedelta.total_seconds)
    assert stage_sums_of_paths(paths, STAGES, timedelta.total_seconds) == expected
    assert stage_sums_of_paths(as_micros, STAGES, micros_seconds) == expected
    assert _defined(as_micros, STAGES, micros_seconds) == expected
