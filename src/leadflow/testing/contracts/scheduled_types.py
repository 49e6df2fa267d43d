"""The scheduled-action contract for claim filters (issue 19): a claim given ``action_types``
takes only the actions of those types, and every action without a type (a delivery, a
sequence's timer visit), in due order, and neither takes nor parks the others; two workers
with disjoint filters never take each other's actions; an unfiltered claim takes every type."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from ...errors import InvalidInputError
from ...ports import ScheduledActionStore
from ...records import ScheduledAction, ScheduledActionState
from .data import at, make_delivery, make_scheduled_action, make_step_action

__all__ = ["ScheduledActionTypeFilterTests"]

_TYPES = ("send_notification", "send_email", "crm_sync")


def _typed(key: str, action_type: str, **fields: object) -> ScheduledAction:
    return make_scheduled_action(key, action={"action_type": action_type}, **fields)


def _ids(actions: list[ScheduledAction]) -> list[str]:
    return [action.action_id for action in actions]


class ScheduledActionTypeFilterTests:
    """Mixed into :class:`~leadflow.testing.contracts.ScheduledActionStoreContract`: the tests
    use its ``store`` fixture."""

    def test_filtered_claims_take_only_those_types_and_deliveries_in_due_order(
        self, store: ScheduledActionStore
    ) -> None:
        for n in range(9):
            store.schedule(_typed(f"k{n}", _TYPES[n % 3], due_at=at(minutes=-n)))
        store.schedule(make_delivery("d1", due_at=at(minutes=-4.5)))
        first = store.claim_due(at(), worker="w1", limit=3, action_types=["crm_sync"])
        # crm_sync is k2, k5, k8; the delivery sits between k5 and k4 in due order.
        assert _ids(first) == ["sa-k8", "sa-k5", "sa-d1"]
        assert _ids(store.claim_due(at(), worker="w1", action_types={"crm_sync"})) == ["sa-k2"]
        assert store.claim_due(at(), worker="w1", action_types=("crm_sync",)) == []
        assert store.claim_due(at(), worker="w1", action_types=["send_sms"]) == []
        two = store.claim_due(at(), worker="w2", action_types=["send_email", "send_notification"])
        assert _ids(two) == ["sa-k7", "sa-k6", "sa-k4", "sa-k3", "sa-k1", "sa-k0"]

    def test_an_empty_filter_claims_deliveries_only(self, store: ScheduledActionStore) -> None:
        store.schedule(_typed("k1", "send_email"))
        store.schedule(make_delivery("d1", due_at=at(minutes=1)))
        assert _ids(store.claim_due(at(minutes=1), worker="w1", action_types=[])) == ["sa-d1"]
        assert store.get("sa-k1").state is ScheduledActionState.PENDING

    def test_filtered_claims_take_a_sequences_timer_visits(
        self, store: ScheduledActionStore
    ) -> None:
        """A visit without an action (a wait's end, a ``wait_for_event``'s timeout) has no
        type: any worker runs it, as a delivery; a visit of an action step is its action's
        type. A flow's ``run_due`` always filters on the types it runs: a store that took
        only deliveries among the untyped never moved a sequence past a wait."""
        store.schedule(make_step_action("timer", action=None, due_at=at(minutes=-2)))
        store.schedule(make_step_action("send", action_index=2, due_at=at(minutes=-1)))
        store.schedule(_typed("k1", "crm_sync"))
        first = store.claim_due(at(), worker="w1", action_types=["send_email"])
        assert _ids(first) == ["sa-timer"]
        second = store.claim_due(at(), worker="w1", action_types=["send_notification"])
        assert _ids(second) == ["sa-send"]
        assert _ids(store.claim_due(at(), worker="w1", action_types=[])) == []
        assert store.get("sa-k1").state is ScheduledActionState.PENDING

    def test_unfiltered_claims_take_every_type(self, store: ScheduledActionStore) -> None:
        for n, action_type in enumerate(_TYPES):
            store.schedule(_typed(f"k{n}", action_type, due_at=at(minutes=n)))
        store.schedule(make_delivery("d1", due_at=at(minutes=5)))
        claimed = store.claim_due(at(hours=1), worker="w1", action_types=None)
        assert _ids(claimed) == ["sa-k0", "sa-k1", "sa-k2", "sa-d1"]

    def test_expired_leases_of_other_types_are_neither_retaken_nor_parked(
        self, store: ScheduledActionStore
    ) -> None:
        store.schedule(_typed("k-a", "send_email"))
        store.schedule(_typed("k-b", "crm_sync", max_attempts=1))
        store.claim_due(at(), worker="w1", lease=timedelta(minutes=1))
        later = at(minutes=5)
        (retaken,) = store.claim_due(later, worker="w2", action_types=["send_email"])
        assert (retaken.action_id, retaken.attempts) == ("sa-k-a", 2)
        assert store.get("sa-k-b").state is ScheduledActionState.CLAIMED
        assert store.claim_due(later, worker="w3", action_types=["crm_sync"]) == []
        assert store.get("sa-k-b").state is ScheduledActionState.PARKED

    def test_a_filter_and_a_partition_combine(self, store: ScheduledActionStore) -> None:
        for n in range(6):
            store.schedule(_typed(f"k{n}", _TYPES[n % 2], partition=n % 3, due_at=at(minutes=n)))
        # k0 (notification, p0), k3 (email, p0); k1 (email, p1), k4 (notification, p1)...
        claimed = store.claim_due(at(hours=1), worker="w", partition=1, action_types=["send_email"])
        assert _ids(claimed) == ["sa-k1"]

    @pytest.mark.parametrize(
        "action_types",
        ["send_email", b"send_email", {"send_email": 1}, [1], ["Send-Email"], ["a\n"], [None], 7],
    )
    def test_bad_filters_are_refused_and_change_nothing(
        self, store: ScheduledActionStore, action_types: object
    ) -> None:
        store.schedule(make_scheduled_action("k1"))
        with pytest.raises(InvalidInputError) as caught:
            store.claim_due(at(), worker="w1", action_types=action_types)  # type: ignore[arg-type]
        assert caught.value.field == "action_types"
        assert store.get("sa-k1").state is ScheduledActionState.PENDING

    def test_workers_with_disjoint_filters_never_take_each_others_actions(
        self, store: ScheduledActionStore
    ) -> None:
        total = 60
        for n in range(total):
            store.schedule(_typed(f"k{n:03d}", _TYPES[n % 3], due_at=at(minutes=-n)))
        workers = {"mail": ["send_email"], "crm": ["crm_sync", "send_notification"]}
        claims: dict[str, list[ScheduledAction]] = {name: [] for name in workers}
        barrier = threading.Barrier(len(workers))

        def work(worker: str) -> None:
            barrier.wait()
            while batch := store.claim_due(
                at(), worker=worker, limit=4, action_types=workers[worker]
            ):
                claims[worker].extend(batch)

        threads = [threading.Thread(target=work, args=(name,)) for name in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for worker, taken in claims.items():
            assert {a.action_type for a in taken} <= set(workers[worker])
        everything = _ids(claims["mail"]) + _ids(claims["crm"])
        assert sorted(everything) == sorted(f"sa-k{n:03d}" for n in range(total))
