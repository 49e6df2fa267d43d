"""The cleanup part of the scheduled-action contract: cancelling an opportunity's or a rule's
pending actions, and purging finished ones after the retention period.

Mixed into :class:`~leadflow.testing.contracts.ScheduledActionStoreContract`; the ``store``
fixture comes from there.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from ...errors import InvalidInputError, NotFoundError
from ...ports import PendingCancellation, ScheduledActionStore
from ...records import ScheduledAction, ScheduledActionState
from .data import at, make_delivery, make_scheduled_action

__all__ = ["ScheduledActionCleanupTests"]

PENDING = ScheduledActionState.PENDING
CLAIMED = ScheduledActionState.CLAIMED
DONE = ScheduledActionState.DONE
PARKED = ScheduledActionState.PARKED
CANCELLED = ScheduledActionState.CANCELLED


def _action_ids(actions: list[ScheduledAction]) -> list[str]:
    return [a.action_id for a in actions]


def _done(store: ScheduledActionStore, key: str, finished: datetime, **fields: object) -> None:
    """Schedule action ``key`` due at ``finished`` and carry it out then."""
    store.schedule(make_scheduled_action(key, due_at=finished, **fields))
    (claimed,) = store.claim_due(finished, worker="w-done", limit=1)
    assert claimed.action_id == f"sa-{key}"
    store.mark_done(claimed.action_id, worker="w-done", now=finished)


def _parked(store: ScheduledActionStore, key: str, when: datetime, **fields: object) -> None:
    """Schedule action ``key`` with one attempt due at ``when`` and fail it then."""
    store.schedule(make_scheduled_action(key, due_at=when, max_attempts=1, **fields))
    (claimed,) = store.claim_due(when, worker="w-park", limit=1)
    assert claimed.action_id == f"sa-{key}"
    store.mark_failed(claimed.action_id, worker="w-park", now=when, error="boom", retry_at=when)


def _claimed(store: ScheduledActionStore, key: str, when: datetime, **fields: object) -> None:
    """Schedule action ``key`` due at ``when`` and claim it then (a one-hour lease)."""
    store.schedule(make_scheduled_action(key, due_at=when, **fields))
    (claimed,) = store.claim_due(when, worker="w-busy", limit=1, lease=timedelta(hours=1))
    assert claimed.action_id == f"sa-{key}"


class ScheduledActionCleanupTests:
    """:meth:`cancel_for_opportunity`, :meth:`cancel_for_rule` and :meth:`purge_finished`."""

    # ------------------------------------------------------------------ cancel

    def test_cancel_for_opportunity(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("p1"))
        store.schedule(make_scheduled_action("p2", due_at=at(days=2)))
        store.schedule(make_scheduled_action("claimed", due_at=at(minutes=-1)))
        store.schedule(make_scheduled_action("other", opportunity_id="opp-2"))
        store.claim_due(at(minutes=-1), worker="w1")
        assert store.cancel_for_opportunity("opp-1", now=at(hours=1)) == 2
        for action_id in ("sa-p1", "sa-p2"):
            cancelled = store.get(action_id)
            # A cancelled action is finished: it carries its finish time, so a purge can find it.
            assert (cancelled.state, cancelled.finished_at) == (CANCELLED, at(hours=1))
        assert store.get("sa-claimed").state is CLAIMED
        assert store.get("sa-other").state is PENDING
        assert store.cancel_for_opportunity("opp-1", now=at(hours=1)) == 0
        assert store.cancel_for_opportunity("opp-404", now=at(hours=1)) == 0
        later = store.claim_due(at(days=3), worker="w2")
        assert _action_ids(later) == ["sa-claimed", "sa-other"]  # lease expired

    def test_cancel_pending_cancels_only_what_is_still_pending(
        self, store: ScheduledActionStore
    ) -> None:
        assert isinstance(store, PendingCancellation)
        store.schedule(make_scheduled_action("a", due_at=at(hours=1)))
        store.schedule(make_scheduled_action("b", due_at=at(hours=2)))
        _claimed(store, "busy", at(minutes=-30))
        _done(store, "finished", at(minutes=-20))
        before = store.get("sa-b")
        ids = ["sa-b", "sa-busy", "sa-finished", "sa-404", "sa-a"]
        cancelled = store.cancel_pending(ids, now=at(minutes=1))
        assert _action_ids(cancelled) == ["sa-b", "sa-a"]  # the order given
        for action in cancelled:
            assert (action.state, action.finished_at) == (CANCELLED, at(minutes=1))
            assert store.get(action.action_id) == action
        changes = {"state", "finished_at", "updated_at"}
        assert cancelled[0].model_dump(exclude=changes) == before.model_dump(exclude=changes)
        assert store.get("sa-busy").state is CLAIMED
        assert store.get("sa-finished").state is DONE
        assert store.cancel_pending(ids, now=at(minutes=2)) == []  # nothing pending is left
        assert store.cancel_pending([], now=at(minutes=2)) == []

    @pytest.mark.parametrize("bad", ["sa-a", {"sa-a": 1}, ["sa a"], [1], ["$where"]])
    def test_cancel_pending_refuses_what_is_no_list_of_ids(
        self, store: ScheduledActionStore, bad: object
    ) -> None:
        assert isinstance(store, PendingCancellation)
        store.schedule(make_scheduled_action("a"))
        with pytest.raises(InvalidInputError):
            store.cancel_pending(bad, now=at())  # type: ignore[arg-type]
        assert store.get("sa-a").state is PENDING

    def test_cancel_for_rule(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("late", due_at=at(hours=2)))
        store.schedule(make_scheduled_action("soon", due_at=at(hours=1), opportunity_id="opp-2"))
        store.schedule(make_scheduled_action("mid", due_at=at(hours=1, minutes=30)))
        _claimed(store, "busy", at(minutes=-30))
        _done(store, "finished", at(minutes=-20))
        _parked(store, "stuck", at(minutes=-10))
        store.schedule(make_scheduled_action("rule-2", rule_id="rule-2", due_at=at(minutes=5)))
        store.schedule(make_delivery("delivery", due_at=at(minutes=5)))
        before = {a.action_id: a for a in store.list()}

        cancelled = store.cancel_for_rule("rule-1", now=at(minutes=1))
        assert _action_ids(cancelled) == ["sa-soon", "sa-mid", "sa-late"]  # soonest due first
        for action in cancelled:
            assert (action.state, action.finished_at) == (CANCELLED, at(minutes=1))
            assert store.get(action.action_id) == action
            changes = {"state", "finished_at", "updated_at"}
            assert action.model_dump(exclude=changes) == before[action.action_id].model_dump(
                exclude=changes
            )
        # Claimed ones finish, done and parked ones stay, other rules and deliveries are untouched.
        for action_id, state in [
            ("sa-busy", CLAIMED),
            ("sa-finished", DONE),
            ("sa-stuck", PARKED),
            ("sa-rule-2", PENDING),
            ("sa-delivery", PENDING),
        ]:
            assert store.get(action_id) == before[action_id]
            assert before[action_id].state is state
        assert store.cancel_for_rule("rule-1", now=at(minutes=2)) == []
        assert store.cancel_for_rule("rule-404", now=at(minutes=2)) == []
        # Cancelled actions are never claimed; the busy one is reclaimed once its lease ends.
        claimed = store.claim_due(at(days=1), worker="w2")
        assert _action_ids(claimed) == ["sa-busy", "sa-delivery", "sa-rule-2"]

    def test_cancel_for_rule_below_a_version_keeps_newer_plans(
        self, store: ScheduledActionStore
    ) -> None:
        for version in (None, 1, 2, 3, 4):
            key = f"v{version}"
            store.schedule(make_scheduled_action(key, rule_version=version, due_at=at(hours=1)))
        assert store.get("sa-v3").rule_version == 3
        cancelled = store.cancel_for_rule("rule-1", now=at(minutes=1), below_version=3)
        assert sorted(_action_ids(cancelled)) == ["sa-v1", "sa-v2", "sa-vNone"]
        assert [store.get(f"sa-v{v}").state for v in (3, 4)] == [PENDING, PENDING]
        assert store.cancel_for_rule("rule-1", now=at(minutes=2), below_version=3) == []
        for bad in (0, -1, True, "3", 1.5):
            with pytest.raises(InvalidInputError) as caught:
                store.cancel_for_rule("rule-1", now=at(minutes=2), below_version=bad)  # type: ignore[arg-type]
            assert caught.value.field == "below_version"
        assert store.get("sa-v3").state is PENDING
        remaining = store.cancel_for_rule("rule-1", now=at(minutes=3))  # no version: every one
        assert sorted(_action_ids(remaining)) == ["sa-v3", "sa-v4"]

    def test_cancelled_actions_returned_are_copies(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        (cancelled,) = store.cancel_for_rule("rule-1", now=at(minutes=1))
        with pytest.raises(ValidationError):
            cancelled.state = PENDING
        cancelled.event.payload["tags"].append("changed")
        stored = store.get("sa-k1")
        assert stored.state is CANCELLED and stored.event.payload["tags"] == ["web"]
        assert store.claim_due(at(days=1), worker="w1") == []

    # ------------------------------------------------------------------ purge

    def test_purge_finished_deletes_only_old_done_and_cancelled(
        self, store: ScheduledActionStore
    ) -> None:
        _done(store, "old-done", at(hours=1))
        _done(store, "edge-done", at(hours=2))  # finished exactly at `before`: kept
        _done(store, "new-done", at(hours=3))
        store.schedule(make_delivery("old-delivery", due_at=at(minutes=30)))
        (delivery,) = store.claim_due(at(minutes=30), worker="w1", limit=1)
        assert delivery.action_id == "sa-old-delivery"
        store.mark_done("sa-old-delivery", worker="w1", now=at(minutes=30))
        store.schedule(make_scheduled_action("old-cancelled", rule_id="rule-9", due_at=at()))
        store.cancel_for_rule("rule-9", now=at(hours=1))
        # However old, what is not finished stays.
        _parked(store, "old-parked", at(days=-10))
        _claimed(store, "old-claimed", at(days=-20))
        store.schedule(make_scheduled_action("old-pending", due_at=at(days=-30)))

        assert store.purge_finished(at(hours=2)) == 3
        for gone in ("sa-old-done", "sa-old-cancelled", "sa-old-delivery"):
            with pytest.raises(NotFoundError):
                store.get(gone)
        left = {a.action_id: a.state for a in store.list()}
        assert left == {
            "sa-old-pending": PENDING,
            "sa-old-claimed": CLAIMED,
            "sa-old-parked": PARKED,
            "sa-edge-done": DONE,
            "sa-new-done": DONE,
        }
        assert store.purge_finished(at(hours=2)) == 0
        assert store.purge_finished(at(days=365)) == 2
        assert set(_action_ids(store.list())) == {
            "sa-old-pending",
            "sa-old-claimed",
            "sa-old-parked",
        }

    def test_purge_finished_respects_the_limit(self, store: ScheduledActionStore) -> None:
        for n in range(5):
            _done(store, f"d{n}", at(minutes=n))
        _done(store, "recent", at(hours=5))
        assert store.purge_finished(at(hours=1), limit=2) == 2
        assert len(store.list(DONE)) == 4
        assert store.purge_finished(at(hours=1), limit=2) == 2
        assert store.purge_finished(at(hours=1), limit=2) == 1
        assert store.purge_finished(at(hours=1), limit=2) == 0
        assert _action_ids(store.list()) == ["sa-recent"]

    def test_a_purged_key_may_be_scheduled_again(self, store: ScheduledActionStore) -> None:
        _done(store, "k1", at())
        _done(store, "k2", at(hours=3))
        # Kept: scheduling the key again is still a no-op.
        again, created = store.schedule(make_scheduled_action("k1", due_at=at(days=1)))
        assert created is False and again.state is DONE
        assert store.purge_finished(at(hours=1)) == 1
        fresh, created = store.schedule(make_scheduled_action("k1", due_at=at(days=1)))
        assert created is True
        assert (fresh.state, fresh.attempts, fresh.due_at) == (PENDING, 0, at(days=1))
        assert store.get("sa-k1") == fresh
        _, created = store.schedule(make_scheduled_action("k2", due_at=at(days=1)))
        assert created is False
        assert _action_ids(store.claim_due(at(days=1), worker="w1")) == ["sa-k1"]
