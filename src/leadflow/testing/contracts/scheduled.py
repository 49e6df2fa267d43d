"""The scheduled-action contract: idempotent scheduling, every typed field kept, leases,
retries and parking, copies, UTC and argument checks; cancelling and purging are mixed in."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from ...errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
)
from ...ports import ScheduledActionStore
from ...records import ActionKind, DuplicatePolicy, ScheduledActionState
from .data import (
    BASE_TIME,
    assert_utc,
    at,
    make_delivery,
    make_scheduled_action,
    make_step_action,
)
from .scheduled_cleanup import ScheduledActionCleanupTests
from .scheduled_partitions import ScheduledActionPartitionTests
from .scheduled_types import ScheduledActionTypeFilterTests

__all__ = ["ScheduledActionStoreContract"]


class ScheduledActionStoreContract(
    ScheduledActionCleanupTests,
    ScheduledActionPartitionTests,
    ScheduledActionTypeFilterTests,
    abc.ABC,
):
    """Every test a :class:`~leadflow.ports.ScheduledActionStore` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_store`; the cancel and purge tests
    come from :class:`ScheduledActionCleanupTests`, the partition tests from
    :class:`ScheduledActionPartitionTests`, the claim filter's from
    :class:`ScheduledActionTypeFilterTests`.
    """

    @abc.abstractmethod
    def make_store(self) -> ScheduledActionStore:
        """A new, empty store."""

    @pytest.fixture
    def store(self) -> ScheduledActionStore:
        return self.make_store()

    def test_is_a_scheduled_action_store(self, store: ScheduledActionStore) -> None:
        assert isinstance(store, ScheduledActionStore)

    def test_every_typed_field_comes_back_equal(self, store: ScheduledActionStore) -> None:
        rule_action = make_scheduled_action(
            "k-rule",
            rule_id="rule-7",
            rule_name="Call web leads",
            action_index=2,
            action={
                "action_type": "create_activity",
                "subject": "Call the lead",
                "delay": {"amount": 2, "unit": "business_days"},
                "params": {"note": ["x"]},
            },
            activity_id="act-9",
            planned_at=at(hours=1),
            due_at=at(hours=3),
            depth=3,
            duplicates=DuplicatePolicy.ALLOW,
            explanation="leadSource equals 'website'",
            max_attempts=7,
            created_at=at(minutes=-5),
        )
        delivery = make_delivery("k-delivery", depth=1, planned_at=at(hours=2), due_at=at(hours=2))
        assert (delivery.kind, delivery.action, delivery.rule_id) == (
            ActionKind.DELIVERY,
            None,
            None,
        )
        for action in (rule_action, delivery):
            stored, created = store.schedule(action)
            assert created is True
            assert stored == action
            assert store.get(action.action_id) == action
        assert store.list() == [delivery, rule_action]  # soonest due first
        assert store.list(ScheduledActionState.PENDING) == [delivery, rule_action]
        # Claiming and finishing change only the lifecycle fields.
        leased = {"state", "attempts", "lease_owner", "lease_expires_at", "updated_at"}
        finished = leased | {"finished_at"}
        claimed = store.claim_due(at(hours=3), worker="w1")
        assert [a.action_id for a in claimed] == ["sa-k-delivery", "sa-k-rule"]
        for got, original in zip(claimed, (delivery, rule_action), strict=True):
            assert got.model_dump(exclude=leased) == original.model_dump(exclude=leased)
            done = store.mark_done(got.action_id, worker="w1", now=at(hours=4))
            assert done.model_dump(exclude=finished) == original.model_dump(exclude=finished)
            assert store.get(got.action_id) == done

    def test_a_sequence_step_comes_back_equal(self, store: ScheduledActionStore) -> None:
        """A step of a sequence enrollment (kind ``step``): its enrollment and step ids, the
        sequence as ``rule_id`` and its version, the visit as ``action_index``; with the step's
        action, or none (a timer)."""
        step = make_step_action(
            "k-step",
            action={
                "action_type": "create_activity",
                "subject": "Call",
                "params": {"n": ["x"]},
            },
            rule_version=3,
            action_index=4,
            step_id="call-1",
            enrollment_id="enr-7",
            due_at=at(hours=1),
        )
        timer = make_step_action(
            "k-timer",
            action=None,
            action_index=5,
            step_id="wait_2",
            enrollment_id="enr-7",
            due_at=at(hours=2),
        )
        assert (timer.kind, timer.action, timer.action_type) == (
            ActionKind.STEP,
            None,
            "sequence_timer",
        )
        for action in (step, timer):
            stored, created = store.schedule(action)
            assert created is True
            assert stored == action
            assert store.get(action.action_id) == action
            again, created = store.schedule(action)
            assert (again, created) == (action, False)
        assert store.list() == [step, timer]
        leased = {"state", "attempts", "lease_owner", "lease_expires_at", "updated_at"}
        claimed = store.claim_due(at(hours=2), worker="w1")
        assert [a.action_id for a in claimed] == ["sa-k-step", "sa-k-timer"]
        for got, original in zip(claimed, (step, timer), strict=True):
            assert got.model_dump(exclude=leased) == original.model_dump(exclude=leased)
            assert (got.kind, got.enrollment_id) == (ActionKind.STEP, "enr-7")
            done = store.mark_done(got.action_id, worker="w1", now=at(hours=3))
            assert (done.step_id, done.action_index) == (original.step_id, original.action_index)
            assert store.get(got.action_id) == done

    def test_planned_at_defaults_to_due_at(self, store: ScheduledActionStore) -> None:
        stored, _ = store.schedule(make_scheduled_action("k1", due_at=at(hours=5)))
        assert stored.planned_at == at(hours=5)
        store.claim_due(at(hours=5), worker="w1")
        failed = store.mark_failed(
            "sa-k1", worker="w1", now=at(hours=5), error="boom", retry_at=at(hours=6)
        )
        # A retry moves when it may run next, not when it was planned for.
        assert (failed.due_at, failed.planned_at) == (at(hours=6), at(hours=5))
        assert store.get("sa-k1").planned_at == at(hours=5)

    def test_schedule_is_idempotent_by_key(self, store: ScheduledActionStore) -> None:
        first, _ = store.schedule(make_scheduled_action("k1"))
        again, created = store.schedule(
            make_scheduled_action("k1", action_id="sa-other", due_at=at(days=9))
        )
        assert created is False
        assert again == first
        assert [a.action_id for a in store.list()] == ["sa-k1"]
        with pytest.raises(NotFoundError):
            store.get("sa-other")

    def test_schedule_with_a_taken_id_is_refused(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        with pytest.raises(DuplicateError):
            store.schedule(make_scheduled_action("k2", action_id="sa-k1"))
        assert [a.idempotency_key for a in store.list()] == ["k1"]

    def test_get_unknown_raises_not_found(self, store: ScheduledActionStore) -> None:
        with pytest.raises(NotFoundError):
            store.get("nope")

    def test_claim_due_claims_due_pending_actions_oldest_first(
        self, store: ScheduledActionStore
    ) -> None:
        store.schedule(make_scheduled_action("late", due_at=at(hours=2)))
        store.schedule(make_scheduled_action("b", due_at=at(hours=1)))
        store.schedule(make_scheduled_action("a", due_at=at(hours=1)))
        store.schedule(make_scheduled_action("first", due_at=at()))
        store.schedule(make_scheduled_action("future", due_at=at(hours=3)))
        claimed = store.claim_due(at(hours=2), worker="w1", limit=3, lease=timedelta(minutes=10))
        assert [a.action_id for a in claimed] == ["sa-first", "sa-a", "sa-b"]
        for action in claimed:
            assert action.state is ScheduledActionState.CLAIMED
            assert action.lease_owner == "w1"
            assert action.lease_expires_at == at(hours=2, minutes=10)
            assert action.attempts == 1
            assert store.get(action.action_id) == action
        # ``due_at <= now``: "late" is due exactly now.
        assert [a.action_id for a in store.claim_due(at(hours=2), worker="w1")] == ["sa-late"]
        assert store.claim_due(at(hours=2), worker="w1") == []

    def test_a_claimed_action_is_not_claimed_again_while_leased(
        self, store: ScheduledActionStore
    ) -> None:
        store.schedule(make_scheduled_action("k1"))
        assert len(store.claim_due(at(), worker="w1", lease=timedelta(minutes=5))) == 1
        assert store.claim_due(at(minutes=4), worker="w2") == []
        assert store.claim_due(at(minutes=4), worker="w1") == []

    def test_an_expired_lease_is_reclaimed(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        store.claim_due(at(), worker="w1", lease=timedelta(minutes=5))
        reclaimed = store.claim_due(at(minutes=5), worker="w2", lease=timedelta(minutes=5))
        assert [(a.lease_owner, a.attempts) for a in reclaimed] == [("w2", 2)]
        assert reclaimed[0].lease_expires_at == at(minutes=10)
        with pytest.raises(ConflictError):
            store.mark_done("sa-k1", worker="w1", now=at(minutes=6))
        done = store.mark_done("sa-k1", worker="w2", now=at(minutes=7))
        assert done.state is ScheduledActionState.DONE

    def test_a_late_finish_counts_while_nobody_reclaimed(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        store.claim_due(at(), worker="w1", lease=timedelta(minutes=5))
        done = store.mark_done("sa-k1", worker="w1", now=at(minutes=30))
        assert done.state is ScheduledActionState.DONE
        assert store.claim_due(at(hours=1), worker="w2") == []

    def test_concurrent_claims_never_share_an_action(self, store: ScheduledActionStore) -> None:
        total = 120
        for n in range(total):
            store.schedule(make_scheduled_action(f"k{n:03d}", due_at=at(minutes=n % 7)))
        claims: dict[str, list[str]] = {}
        barrier = threading.Barrier(6)

        def work(worker: str) -> None:
            mine = claims.setdefault(worker, [])
            barrier.wait()
            while batch := store.claim_due(at(hours=1), worker=worker, limit=7):
                mine.extend(a.action_id for a in batch)

        threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        everything = [i for ids in claims.values() for i in ids]
        assert len(everything) == total
        assert len(set(everything)) == total
        for worker, ids in claims.items():
            for action_id in ids:
                assert store.get(action_id).lease_owner == worker

    def test_two_workers_claim_disjoint_sets(self, store: ScheduledActionStore) -> None:
        for n in range(5):
            store.schedule(make_scheduled_action(f"k{n}"))
        first = store.claim_due(at(), worker="w1", limit=3)
        second = store.claim_due(at(), worker="w2", limit=3)
        assert [a.action_id for a in first] == ["sa-k0", "sa-k1", "sa-k2"]
        assert [a.action_id for a in second] == ["sa-k3", "sa-k4"]

    def test_mark_done(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        with pytest.raises(ConflictError):
            store.mark_done("sa-k1", worker="w1", now=at())  # not claimed
        store.claim_due(at(), worker="w1")
        with pytest.raises(ConflictError):
            store.mark_done("sa-k1", worker="w2", now=at())
        done = store.mark_done("sa-k1", worker="w1", now=at(minutes=1))
        assert (done.state, done.finished_at, done.attempts) == (
            ScheduledActionState.DONE,
            at(minutes=1),
            1,
        )
        assert store.get("sa-k1") == done
        with pytest.raises(ConflictError):
            store.mark_done("sa-k1", worker="w1", now=at(minutes=2))
        with pytest.raises(NotFoundError):
            store.mark_done("ghost", worker="w1", now=at())

    def test_mark_done_many_finishes_only_what_the_worker_holds(
        self, store: ScheduledActionStore
    ) -> None:
        for n in range(5):
            store.schedule(make_scheduled_action(f"k{n}", due_at=at(minutes=n)))
        claimed = store.claim_due(at(minutes=2), worker="w1")
        assert [a.action_id for a in claimed] == ["sa-k0", "sa-k1", "sa-k2"]
        store.mark_done("sa-k1", worker="w1", now=at(minutes=3))
        before = {a.action_id: a for a in store.list()}
        assert store.mark_done_many(["sa-k0", "sa-k2"], worker="w2", now=at(minutes=4)) == []
        asked = ["sa-k2", "sa-k0", "sa-k1", "sa-k3", "ghost", "sa-k2"]
        done = store.mark_done_many(asked, worker="w1", now=at(minutes=4))
        assert [a.action_id for a in done] == ["sa-k2", "sa-k0"]  # in the order asked
        for action in done:
            assert (action.state, action.finished_at, action.lease_expires_at) == (
                ScheduledActionState.DONE,
                at(minutes=4),
                None,
            )
            assert store.get(action.action_id) == action
        assert store.get("sa-k1") == before["sa-k1"]  # finished before: left alone
        assert store.get("sa-k3") == before["sa-k3"]  # pending: left alone
        assert store.mark_done_many([], worker="w1", now=at(minutes=5)) == []
        assert store.claim_due(at(hours=1), worker="w3") != []  # k3 and k4 still claimable

    @pytest.mark.parametrize(
        ("ids", "worker", "now"),
        [
            ("sa-k0", "w1", None),  # a string is not a list of ids
            ([{"$ne": None}], "w1", None),
            (["sa-k0", 7], "w1", None),
            (["x"] * 1001, "w1", None),
            (["sa-k0"], "", None),
            (["sa-k0"], "w1", datetime(2026, 3, 2, 9, 0)),  # naive
        ],
    )
    def test_mark_done_many_refuses_bad_input_and_changes_nothing(
        self, store: ScheduledActionStore, ids: object, worker: str, now: datetime | None
    ) -> None:
        store.schedule(make_scheduled_action("k0"))
        (held,) = store.claim_due(at(), worker="w1")
        with pytest.raises(InvalidInputError):
            store.mark_done_many(ids, worker=worker, now=now or at(minutes=1))  # type: ignore[arg-type]
        assert store.get("sa-k0") == held

    def test_failures_retry_then_park(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1", max_attempts=3))
        now = at()
        for attempt in (1, 2):
            (claimed,) = store.claim_due(now, worker="w1")
            assert claimed.attempts == attempt
            failed = store.mark_failed(
                "sa-k1",
                worker="w1",
                now=now,
                error=f"boom {attempt}",
                retry_at=now + timedelta(minutes=10),
            )
            assert failed.state is ScheduledActionState.PENDING
            assert failed.due_at == now + timedelta(minutes=10)
            assert failed.last_error == f"boom {attempt}"
            assert store.claim_due(now + timedelta(minutes=9), worker="w1") == []
            now += timedelta(minutes=10)
        (claimed,) = store.claim_due(now, worker="w1")
        assert claimed.attempts == 3
        parked = store.mark_failed(
            "sa-k1", worker="w1", now=now, error="boom 3", retry_at=now + timedelta(hours=1)
        )
        assert parked.state is ScheduledActionState.PARKED
        assert parked.last_error == "boom 3"
        assert store.claim_due(at(days=30), worker="w1") == []
        assert [a.action_id for a in store.list(ScheduledActionState.PARKED)] == ["sa-k1"]

    def test_mark_failed_needs_the_lease(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        store.claim_due(at(), worker="w1", lease=timedelta(minutes=1))
        store.claim_due(at(minutes=2), worker="w2")
        with pytest.raises(ConflictError):
            store.mark_failed("sa-k1", worker="w1", now=at(minutes=3), error="x", retry_at=at())
        assert store.get("sa-k1").lease_owner == "w2"
        with pytest.raises(NotFoundError):
            store.mark_failed("ghost", worker="w1", now=at(), error="x", retry_at=at())

    def test_retry_a_parked_action(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1", max_attempts=1))
        store.claim_due(at(), worker="w1")
        store.mark_failed("sa-k1", worker="w1", now=at(), error="boom", retry_at=at(hours=1))
        assert store.get("sa-k1").last_error == "boom"
        retried = store.retry("sa-k1", now=at(days=1))
        assert retried.state is ScheduledActionState.PENDING
        assert (retried.due_at, retried.attempts) == (at(days=1), 0)
        # a fresh start: the old failure no longer describes the action
        assert retried.last_error is None
        assert (retried.lease_owner, retried.lease_expires_at) == (None, None)
        assert store.get("sa-k1").last_error is None
        (claimed,) = store.claim_due(at(days=1), worker="w2")
        assert claimed.attempts == 1
        with pytest.raises(InvalidStateError):
            store.retry("sa-k1", now=at(days=1))  # claimed, not parked
        with pytest.raises(NotFoundError):
            store.retry("ghost", now=at())

    def test_an_action_that_kills_its_worker_is_parked(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1", max_attempts=2))
        store.claim_due(at(), worker="w1", lease=timedelta(minutes=1))
        store.claim_due(at(minutes=1), worker="w2", lease=timedelta(minutes=1))
        assert store.claim_due(at(minutes=2), worker="w3") == []
        parked = store.get("sa-k1")
        assert parked.state is ScheduledActionState.PARKED
        assert parked.attempts == 2

    def test_list_by_state(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("c", due_at=at(hours=2)))
        store.schedule(make_scheduled_action("a", due_at=at(hours=1)))
        store.schedule(make_scheduled_action("b", due_at=at(hours=1)))
        store.schedule(make_scheduled_action("d", due_at=at(minutes=1)))
        store.claim_due(at(minutes=1), worker="w1", limit=1)
        assert [a.action_id for a in store.list()] == ["sa-d", "sa-a", "sa-b", "sa-c"]
        assert [a.action_id for a in store.list(limit=2)] == ["sa-d", "sa-a"]
        pending = store.list(ScheduledActionState.PENDING)
        assert [a.action_id for a in pending] == ["sa-a", "sa-b", "sa-c"]
        assert [a.action_id for a in store.list(ScheduledActionState.CLAIMED)] == ["sa-d"]
        assert store.list(ScheduledActionState.DONE) == []

    def test_next_due_is_the_earliest_pending_due_time(self, store: ScheduledActionStore) -> None:
        assert store.next_due() is None
        store.schedule(make_scheduled_action("c", due_at=at(hours=2)))
        store.schedule(make_scheduled_action("b", due_at=at(hours=1)))
        store.schedule(make_scheduled_action("a", due_at=at(minutes=-5)))
        assert store.next_due() == at(minutes=-5)
        assert_utc(store.next_due())
        [claimed] = store.claim_due(at(), worker="w1", lease=timedelta(minutes=1))
        assert store.next_due() == at(hours=1)  # a claimed action is not pending
        store.mark_failed(
            claimed.action_id, worker="w1", now=at(), error="x", retry_at=at(minutes=30)
        )
        assert store.next_due() == at(minutes=30)  # pending again, due at its retry
        store.cancel_for_opportunity("opp-1", now=at())
        assert store.next_due() is None

    def test_arguments_are_checked(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        naive = datetime(2026, 1, 5, 9)
        calls: list[Callable[[], object]] = [
            lambda: store.claim_due(naive, worker="w1"),
            lambda: store.claim_due(BASE_TIME, worker="w1", limit=0),
            lambda: store.list(limit=0),
            lambda: store.cancel_for_opportunity("opp-1", now=naive),
            lambda: store.retry("sa-k1", now=naive),
            lambda: store.cancel_for_rule("rule-1", now=naive),
            lambda: store.purge_finished(naive),
            lambda: store.purge_finished(BASE_TIME, limit=0),
            # beyond the 64-bit range, or a lease past the year 9999: refused alike everywhere
            lambda: store.claim_due(BASE_TIME, worker="w1", limit=2**63),
            lambda: store.list(limit=2**63),
            lambda: store.purge_finished(BASE_TIME, limit=2**63),
            lambda: store.claim_due(BASE_TIME, worker="w1", lease=timedelta(days=999_999_999)),
            lambda: store.claim_due(
                datetime.max.replace(tzinfo=UTC), worker="w1", lease=timedelta(seconds=1)
            ),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError):
                call()
        assert store.get("sa-k1").state is ScheduledActionState.PENDING
        store.claim_due(BASE_TIME, worker="w1")
        for call in [
            lambda: store.mark_done("sa-k1", worker="w1", now=naive),
            lambda: store.mark_failed("sa-k1", worker="w1", now=naive, error="x", retry_at=naive),
        ]:
            with pytest.raises(InvalidInputError):
                call()
        claimed = store.get("sa-k1")
        assert (claimed.state, claimed.lease_owner) == (ScheduledActionState.CLAIMED, "w1")

    def test_returned_actions_are_copies(self, store: ScheduledActionStore) -> None:
        """Actions are immutable values; the documents inside them (the event's payload, the
        action's params) are the caller's own copies, in and out."""
        original = make_scheduled_action(
            "k1",
            action={"action_type": "send_notification", "template": "t", "params": {"n": ["x"]}},
            explanation="why",
        )
        stored, _ = store.schedule(original)
        for action in (stored, store.get("sa-k1"), store.list()[0]):
            assert action.action is not None
            action.action.params["n"].append("changed")
            action.event.payload["tags"].append("changed")
            for target, name, value in (
                (action, "attempts", 99),
                (action, "explanation", "changed"),
                (action, "planned_at", at(days=9)),
                (action.action, "template", "changed"),
                (action.event, "payload", {}),
            ):
                with pytest.raises(ValidationError):
                    setattr(target, name, value)
        assert store.get("sa-k1") == original
        (claimed,) = store.claim_due(at(), worker="w1")
        with pytest.raises(ConflictError):
            store.mark_done("sa-k1", worker="w2", now=at())
        assert claimed.lease_owner == "w1"
        assert original.action is not None
        original.action.params["n"].append("after")
        original.event.payload["tags"].append("after")
        got = store.get("sa-k1")
        assert got.action is not None and got.action.params == {"n": ["x"]}
        assert got.event.payload["tags"] == ["web"]

    def test_returned_datetimes_are_utc(self, store: ScheduledActionStore) -> None:
        plus2 = timezone(timedelta(hours=2))
        store.schedule(make_scheduled_action("k1", due_at=datetime(2026, 1, 5, 11, tzinfo=plus2)))
        (claimed,) = store.claim_due(datetime(2026, 1, 5, 11, tzinfo=plus2), worker="w1")
        assert claimed.due_at == BASE_TIME
        done = store.mark_done("sa-k1", worker="w1", now=datetime(2026, 1, 5, 12, tzinfo=plus2))
        for value in (
            claimed.due_at,
            claimed.lease_expires_at,
            claimed.created_at,
            done.finished_at,
            store.get("sa-k1").finished_at,
        ):
            assert_utc(value)
        assert done.finished_at == at(hours=1)
