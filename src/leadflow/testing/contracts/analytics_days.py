"""The contract of the completions' sums over many days (``completion_groups`` and
``completion_buckets`` over periods of whole days, ragged ends, within a day, across the
epoch): a part of :class:`~leadflow.testing.contracts.AnalyticsStoreContract`. Each answer
equals the definition (:func:`~leadflow.facts.groups_of`, the buckets counted one by one) over
the completions recorded, whether they came one by one, many at once, or again."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from ...activity_models import ActivityType, Outcome
from ...facts import Completion
from ...ports import AnalyticsStore
from ...stores.analytics_sums import buckets_of, groups_in
from .data import at

__all__ = ["DaySumsContract"]

_MIDNIGHT = datetime(2026, 1, 5, tzinfo=UTC)  # the day of the contract's ``at()``
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)


def _completions(seed: int) -> list[Completion]:
    """80 completions over five days from :data:`_MIDNIGHT` (whole minutes) and 10 around
    the Unix epoch, with and without each key, creation, due date and outcome."""
    rng = random.Random(seed)
    made = []
    for n in range(90):
        base = _MIDNIGHT if n < 80 else _EPOCH - _DAY
        done = base + timedelta(minutes=rng.randrange(5 * 24 * 60 if n < 80 else 2 * 24 * 60))
        made.append(
            Completion(
                activity_id=f"d{n}",
                opportunity_id=f"o{rng.randrange(8)}",
                activity_type=ActivityType.CALL,
                completed_at=done,
                assigned_to=rng.choice(["alice", "bob", None]),
                rule_id=rng.choice(["r1", "r2", None]),
                created_at=rng.choice([None, done - timedelta(minutes=rng.randrange(1, 600))]),
                due_at=rng.choice([None, done + timedelta(minutes=rng.randrange(-300, 300))]),
                outcome=rng.choice([None, *Outcome]),
            )
        )
    return made


class DaySumsContract:
    """The sums over days' tests (mixed into the analytics store's contract)."""

    def test_sums_over_days_and_their_ends_follow_the_definition(
        self, store: AnalyticsStore
    ) -> None:
        completions = _completions(20)
        for completion in completions[:40]:
            store.record_completion(completion)
        many = getattr(store, "record_many", None)
        rest = completions[40:]
        if many is not None:
            many([], [], rest[:30] + completions[:5])  # some again, in a batch
            many([], [], rest[30:] + rest[:3] + rest[30:32])  # twice in one batch too
        else:
            for completion in rest:
                store.record_completion(completion)
        for completion in completions[::7]:
            assert store.record_completion(completion) is False  # again: nothing changes
        periods = [
            (_MIDNIGHT, _MIDNIGHT + 3 * _DAY),  # whole days
            (at(), at(days=3, hours=6.5)),  # ragged at both ends
            (_MIDNIGHT + _DAY, at(days=2)),  # whole days, a ragged end
            (at(hours=1), at(hours=9)),  # within a day
            (_MIDNIGHT - _DAY, _MIDNIGHT + 9 * _DAY),  # every one of them
            (_EPOCH - _DAY, _EPOCH + _DAY),  # across the epoch
            (_EPOCH - timedelta(hours=30), _EPOCH + timedelta(hours=2)),
        ]
        for start, end in periods:
            inside = [c for c in completions if start <= c.completed_at < end]
            for by in ("assigned_to", "rule_id"):
                for keys in (None, ["alice", "r1", None], ["bob", "r2"]):
                    found = store.completion_groups(start, end, by=by, keys=keys)
                    assert found == groups_in(inside, by, keys), (start, end, by, keys)
            for width in (_DAY, 2 * _DAY, timedelta(hours=5)):
                bucketed: list[tuple[str | None, frozenset[str | None] | None]] = [
                    (None, None),
                    ("assigned_to", frozenset({"bob", None})),
                ]
                for grouping, wanted in bucketed:
                    buckets = store.completion_buckets(
                        start, end, width=width, by=grouping, keys=wanted
                    )
                    assert buckets == buckets_of(inside, start, width, grouping, wanted), (
                        start,
                        end,
                        width,
                        grouping,
                    )
