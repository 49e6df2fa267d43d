"""The memory stores' sums of the analytic facts against their definitions, on random facts
spread over a few days (times at any instant, some on midnight) and random periods (bounds at
midnight or anywhere, within a day or across many), on both memory stores: the completions'
groups and buckets added up from the days' sums and the partial days' rows must equal
:func:`~leadflow.facts.groups_of` and :func:`~leadflow.stores.analytics_sums.buckets_of` over
every completion of the period, under random keys and parts; the funnel's stages and the won
touches, summed from the stores' rows, :func:`~leadflow.facts.stage_sums_of` and
:func:`~leadflow.facts.touches_of` over the period's facts."""

from __future__ import annotations

import gc
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from leadflow.activity_models import ActivityType, Outcome
from leadflow.facts import (
    Completion,
    StatusChange,
    groups_of,
    stage_sums_of,
    touches_of,
    trimmed,
)
from leadflow.ports import AnalyticsStore
from leadflow.stores.analytics_sums import buckets_of
from leadflow.stores.memory import InMemoryAnalyticsStore
from leadflow.stores.memory.fast.analytics import FastAnalyticsStore

DAY = timedelta(days=1)
ORIGIN = datetime(2026, 3, 1, tzinfo=UTC)
REPS = ("ann", "bob", "cy", None)
RULES = ("r1", "r2", None)
OUTCOMES = (Outcome.SUCCESSFUL, Outcome.NO_ANSWER, None)


def _instant(rng: random.Random) -> datetime:
    """Somewhere in the 6 days from ORIGIN: a third of them on a midnight or a whole hour."""
    day = ORIGIN + DAY * rng.randrange(6)
    kind = rng.randrange(3)
    if kind == 0:
        return day
    if kind == 1:
        return day + timedelta(hours=rng.randrange(24))
    return day + timedelta(seconds=rng.uniform(0, 86_400))


def _completions(rng: random.Random, n: int) -> list[Completion]:
    found = []
    for k in range(n):
        done = _instant(rng)
        created = done - timedelta(minutes=rng.randrange(1, 600)) if rng.random() < 0.8 else None
        found.append(
            Completion(
                activity_id=f"a{k}",
                opportunity_id=f"o{rng.randrange(n // 3 + 1)}",
                activity_type=rng.choice((ActivityType.CALL, ActivityType.EMAIL)),
                completed_at=done,
                assigned_to=rng.choice(REPS),
                created_at=created,
                due_at=done + timedelta(minutes=rng.randrange(-300, 300))
                if rng.random() < 0.7
                else None,
                outcome=rng.choice(OUTCOMES),
                rule_id=rng.choice(RULES),
            )
        )
    return found


def _period(rng: random.Random) -> tuple[datetime, datetime]:
    start, end = sorted((_instant(rng), _instant(rng) + rng.choice((DAY, 0 * DAY))))
    if rng.random() < 0.2:
        start -= DAY * rng.randrange(1, 4)
    return start, end + timedelta(microseconds=1) if start == end else end


STORES: list[Callable[[], AnalyticsStore]] = [InMemoryAnalyticsStore, FastAnalyticsStore]


@pytest.mark.parametrize("make", STORES, ids=["reference", "fast"])
@pytest.mark.parametrize("seed", range(6))
def test_day_sums_equal_the_definition(make: Callable[[], AnalyticsStore], seed: int) -> None:
    rng = random.Random(seed)
    completions = _completions(rng, rng.choice((30, 120, 300)))
    store = make()
    for completion in completions:
        assert store.record_completion(completion)
    for _ in range(25):
        start, end = _period(rng)
        inside = [c for c in completions if start <= c.completed_at < end]
        by = rng.choice(("assigned_to", "rule_id"))
        choices = REPS if by == "assigned_to" else RULES
        keys = None if rng.random() < 0.4 else set(rng.sample(choices, rng.randrange(1, 3)))
        median, opportunities = rng.random() < 0.6, rng.random() < 0.6
        taken = [c for c in inside if keys is None or getattr(c, by) in keys]
        expected = trimmed(groups_of(taken, by), median=median, opportunities=opportunities)
        found = store.completion_groups(
            start, end, by=by, keys=keys, median=median, opportunities=opportunities
        )
        assert found == expected, (start, end, by, keys)

        width = rng.choice((timedelta(hours=5), DAY, 2 * DAY, 7 * DAY, DAY + timedelta(hours=7)))
        bucket_by = None if keys is None and rng.random() < 0.5 else by
        bucket_keys = None if bucket_by is None else keys
        wanted = None if bucket_keys is None else frozenset(bucket_keys)
        assert store.completion_buckets(
            start, end, width=width, by=bucket_by, keys=bucket_keys
        ) == buckets_of(
            sorted(inside, key=lambda c: c.completed_at), start, width, bucket_by, wanted
        )


def test_day_sums_follow_later_records() -> None:
    """A day already summed takes the completions recorded afterwards."""
    store = InMemoryAnalyticsStore()
    rng = random.Random(3)
    completions = _completions(rng, 90)
    period = (ORIGIN, ORIGIN + 6 * DAY)
    for n, completion in enumerate(completions):
        store.record_completion(completion)
        if n % 30 == 29:
            found = store.completion_groups(*period, by="assigned_to")
            assert found == groups_of(completions[: n + 1], "assigned_to")


STATUSES = ("new", "contacted", "won", "lost")


def _changes(rng: random.Random, n: int, opportunities: int) -> list[StatusChange]:
    return [
        StatusChange(
            event_id=f"e{rng.randrange(10**6)}-{k}",
            opportunity_id=f"o{rng.randrange(opportunities)}",
            changed_at=_instant(rng) if rng.random() < 0.9 else ORIGIN + DAY,  # some ties
            from_status=None,
            to_status=rng.choice(STATUSES),
        )
        for k in range(n)
    ]


@pytest.mark.parametrize("make", STORES, ids=["reference", "fast"])
@pytest.mark.parametrize("seed", range(6))
def test_stages_and_touches_equal_the_definition(
    make: Callable[[], AnalyticsStore], seed: int
) -> None:
    rng = random.Random(seed)
    completions = _completions(rng, rng.choice((30, 120, 300)))
    opportunities = len({c.opportunity_id for c in completions})
    changes = _changes(rng, rng.choice((20, 80, 250)), opportunities + 2)
    store = make()
    for completion in completions:
        store.record_completion(completion)
    for change in changes:
        store.record_status_change(change)
    for _ in range(20):
        start, end = _period(rng)
        inside = sorted(
            (c for c in changes if start <= c.changed_at < end),
            key=lambda c: (c.changed_at, c.event_id),
        )
        stages = rng.sample(STATUSES, rng.randrange(1, 5))
        assert store.stage_sums(start, end, stages) == stage_sums_of(inside, stages)
        status = rng.choice(STATUSES)
        won_at: dict[str, datetime] = {}
        for change in inside:
            if change.to_status == status:
                won_at.setdefault(change.opportunity_id, change.changed_at)
        keys = None if rng.random() < 0.5 else set(rng.sample(RULES, rng.randrange(1, 3)))
        done = [c for c in completions if start <= c.completed_at < end]
        assert store.won_touches(start, end, status, keys=keys) == touches_of(won_at, done, keys)


def test_fast_store_keeps_completions_untracked() -> None:
    """The fast store keeps its completions where a collection does not walk them (tuples of
    atoms), and reads them back as the models it was given, enums and all."""
    completions = _completions(random.Random(5), 60)
    store = FastAnalyticsStore()
    for completion in completions:
        store.record_completion(completion)
    gc.collect()
    kept = store._completions.values()
    assert kept and not any(gc.is_tracked(row) for row in kept)
    period = (ORIGIN, ORIGIN + 6 * DAY)
    found = store.completions(*period)
    assert found == sorted(completions, key=lambda c: (c.completed_at, c.activity_id))
    assert all(isinstance(c.activity_type, ActivityType) for c in found)
    assert {type(c.outcome) for c in found} == {Outcome, type(None)}
    reference = InMemoryAnalyticsStore()
    for completion in completions:
        reference.record_completion(completion)
    ids = [f"o{n}" for n in range(0, 21, 2)]
    assert store.completions_of(ids, *period) == reference.completions_of(ids, *period)
    assert store.first_contacts(*period) == reference.first_contacts(*period)
