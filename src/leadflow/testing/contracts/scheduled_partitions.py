"""The scheduled-action contract for partitions: a claim pinned to a partition takes (and parks)
only that partition's actions, in due order; an unpinned claim takes from all of them."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from ...errors import InvalidInputError
from ...limits import DEFAULT_LIMITS
from ...ports import ScheduledActionStore
from ...records import ScheduledAction, ScheduledActionState
from .data import at, make_scheduled_action

__all__ = ["ScheduledActionPartitionTests"]


def _ids(actions: list[ScheduledAction]) -> list[str]:
    return [action.action_id for action in actions]


class ScheduledActionPartitionTests:
    """Mixed into :class:`~leadflow.testing.contracts.ScheduledActionStoreContract`: the tests
    use its ``store`` fixture."""

    def test_partition_is_kept(self, store: ScheduledActionStore) -> None:
        last = DEFAULT_LIMITS.partitions - 1
        action = make_scheduled_action("k-p", partition=last)
        stored, _ = store.schedule(action)
        assert stored.partition == last
        assert store.get("sa-k-p") == action
        assert make_scheduled_action("k-default").partition == 0

    def test_pinned_claims_take_only_their_partition_in_due_order(
        self, store: ScheduledActionStore
    ) -> None:
        for n in range(9):
            store.schedule(make_scheduled_action(f"k{n}", partition=n % 3, due_at=at(minutes=-n)))
        first = store.claim_due(at(), worker="w1", limit=2, partition=1)
        assert _ids(first) == ["sa-k7", "sa-k4"]  # partition 1, oldest due first
        assert {a.partition for a in first} == {1}
        assert _ids(store.claim_due(at(), worker="w1", partition=1)) == ["sa-k1"]
        assert store.claim_due(at(), worker="w1", partition=1) == []
        assert store.claim_due(at(), worker="w1", partition=7) == []  # an empty partition
        # Unpinned: every other partition, one order across them.
        rest = store.claim_due(at(), worker="w2")
        assert _ids(rest) == ["sa-k8", "sa-k6", "sa-k5", "sa-k3", "sa-k2", "sa-k0"]

    def test_expired_leases_are_retaken_and_parked_within_the_partition(
        self, store: ScheduledActionStore
    ) -> None:
        store.schedule(make_scheduled_action("k-a", partition=1))
        store.schedule(make_scheduled_action("k-b", partition=2, max_attempts=1))
        store.claim_due(at(), worker="w1", lease=timedelta(minutes=1))
        later = at(minutes=5)
        # Partition 1's claim neither takes nor parks partition 2's expired, exhausted action.
        (retaken,) = store.claim_due(later, worker="w2", partition=1)
        assert (retaken.action_id, retaken.attempts) == ("sa-k-a", 2)
        assert store.get("sa-k-b").state is ScheduledActionState.CLAIMED
        assert store.claim_due(later, worker="w3", partition=2) == []
        assert store.get("sa-k-b").state is ScheduledActionState.PARKED

    def test_next_due_of_one_partition(self, store: ScheduledActionStore) -> None:
        for n in range(6):
            store.schedule(make_scheduled_action(f"k{n}", partition=n % 3, due_at=at(minutes=n)))
        assert [store.next_due(partition=p) for p in (0, 1, 2, 7)] == [
            at(),
            at(minutes=1),
            at(minutes=2),
            None,
        ]
        store.claim_due(at(minutes=9), worker="w1", partition=1)
        assert store.next_due(partition=1) is None
        assert store.next_due() == at()

    @pytest.mark.parametrize(
        "partition", [-1, DEFAULT_LIMITS.partitions, "1", 1.0, True, [0], 2**70]
    )
    def test_bad_partition_is_refused_and_changes_nothing(
        self, store: ScheduledActionStore, partition: object
    ) -> None:
        store.schedule(make_scheduled_action("k1"))
        with pytest.raises(InvalidInputError) as caught:
            store.claim_due(at(), worker="w1", partition=partition)  # type: ignore[arg-type]
        assert caught.value.field == "partition"
        with pytest.raises(InvalidInputError) as caught:
            store.next_due(partition=partition)  # type: ignore[arg-type]
        assert caught.value.field == "partition"
        assert store.get("sa-k1").state is ScheduledActionState.PENDING

    def test_pinned_and_unpinned_workers_claim_each_action_once(
        self, store: ScheduledActionStore
    ) -> None:
        total, partitions = 90, 3
        for n in range(total):
            store.schedule(
                make_scheduled_action(f"k{n:03d}", partition=n % partitions, due_at=at(minutes=-n))
            )
        claims: dict[str, list[tuple[str, int]]] = {}
        workers = [(f"p{p}", p) for p in range(partitions)] + [("any", None)]
        barrier = threading.Barrier(len(workers))

        def work(worker: str, partition: int | None) -> None:
            mine = claims.setdefault(worker, [])
            barrier.wait()
            while batch := store.claim_due(at(), worker=worker, limit=4, partition=partition):
                mine.extend((a.action_id, a.partition) for a in batch)

        threads = [threading.Thread(target=work, args=w) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        everything = [action_id for taken in claims.values() for action_id, _ in taken]
        assert sorted(everything) == sorted(f"sa-k{n:03d}" for n in range(total))
        for worker, partition in workers:
            if partition is not None:
                assert {p for _, p in claims[worker]} <= {partition}
