"""Marking an action done without building the done action nobody reads.

The fast memory store offers ``mark_done_ids`` (:class:`~leadflow.ports.BatchAcknowledgement`)
and freezes each action it finishes straight into its row
(:func:`~leadflow.stores.memory.fast.finished.freeze_done`); the executor marks a run-now
action done through it where the store's class defines it (``mark_done`` elsewhere, and for a
wrapper that passes other calls on). Held here to ``mark_done_many`` and to the reference
store on random mixes of claims, and to ``mark_done`` in a flow (a lease lost while the
handler ran is still reported ``claimed``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow import FollowUpRule, HandlerRegistry, LeadFlow, ManualClock
from leadflow.errors import InvalidInputError
from leadflow.ports import BatchAcknowledgement, ScheduledActionStore, Storage
from leadflow.records import ScheduledAction, ScheduledActionState
from leadflow.stores.checks import handed_over
from leadflow.stores.memory import memory_storage
from leadflow.stores.memory.fast import FastScheduledActionStore, fast_memory_storage
from leadflow.testing.contracts import make_scheduled_action

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
_KINDS = ("pending", "claimed", "run_now", "theirs", "run_now_theirs", "done")


def _run_now(key: str, worker: str) -> ScheduledAction:
    """An action as the planner hands it over to run now: stored already claimed."""
    return make_scheduled_action(key, due_at=T0)._evolve(
        state=ScheduledActionState.CLAIMED,
        attempts=1,
        lease_owner=worker,
        lease_expires_at=T0 + LEASE,
    )


def _fill(store: ScheduledActionStore, kinds: list[str]) -> None:
    """One action per item of ``kinds``, ``sa-<n>``: pending (due later), claimed by ``w``
    through ``claim_due``, handed over claimed by ``w`` (run now), claimed by another worker
    (either way), or done already."""
    for n, kind in enumerate(kinds):
        key = str(n)
        if kind == "run_now":
            assert handed_over(store.schedule, _run_now(key, "w"))[1]
        elif kind == "run_now_theirs":
            assert handed_over(store.schedule, _run_now(key, "other"))[1]
        else:
            due = T0 + timedelta(hours=1) if kind == "pending" else T0
            store.schedule(make_scheduled_action(key, due_at=due))
            if kind != "pending":
                worker = "other" if kind == "theirs" else "w"
                [claimed] = store.claim_due(T0, worker=worker, limit=1, lease=LEASE)
                if kind == "done":
                    store.mark_done(claimed.action_id, worker=worker, now=T0)


def _state(store: ScheduledActionStore, count: int) -> list[Any]:
    """Everything the store shows of ``sa-0`` .. ``sa-<count-1>``, and what happens next."""
    shown = [a.model_dump() for a in store.list(limit=100)]
    shown += [store.get(f"sa-{n}").model_dump() for n in range(count)]
    later = T0 + LEASE + timedelta(hours=2)
    shown += [a.model_dump() for a in store.claim_due(later, worker="w2", limit=100, lease=LEASE)]
    shown.append(store.purge_finished(T0 + timedelta(minutes=2)))
    return shown


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(_KINDS), min_size=1, max_size=8),
    asked=st.lists(st.integers(0, 9), max_size=10),
    minutes=st.integers(0, 3),
)
def test_mark_done_ids_changes_the_store_as_mark_done_many_does(
    kinds: list[str], asked: list[int], minutes: int
) -> None:
    """The same actions in three stores, the same ids asked (repeats, unknown ones): the fast
    store's ``mark_done_ids`` returns the ids ``mark_done_many`` returns, in the same order,
    and leaves the store showing what ``mark_done_many`` leaves in the fast and the reference
    store (every read, the next claim, the purge of what finished)."""
    ids = [f"sa-{n}" for n in asked]
    now = T0 + timedelta(minutes=minutes)
    by_ids, by_many = fast_memory_storage().scheduled, fast_memory_storage().scheduled
    reference = memory_storage().scheduled
    for store in (by_ids, by_many, reference):
        _fill(store, kinds)
    assert isinstance(by_ids, FastScheduledActionStore)
    done = by_ids.mark_done_ids(ids, worker="w", now=now)
    assert done == [a.action_id for a in by_many.mark_done_many(ids, worker="w", now=now)]
    assert done == [a.action_id for a in reference.mark_done_many(ids, worker="w", now=now)]
    count = len(kinds)
    assert _state(by_ids, count) == _state(by_many, count) == _state(reference, count)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"action_ids": "sa-0"}, "action_ids"),
        ({"action_ids": ["sa-0", 7]}, "action_ids"),
        ({"action_ids": [f"sa-{n}" for n in range(1001)]}, "action_ids"),
        ({"worker": ""}, "worker"),
        ({"now": T0.replace(tzinfo=None)}, "now"),
    ],
)
def test_mark_done_ids_refuses_bad_input_and_changes_nothing(
    arguments: dict[str, Any], field: str
) -> None:
    store = FastScheduledActionStore()
    _fill(store, ["claimed", "run_now"])
    before = [a.model_dump() for a in store.list(limit=10)]
    call: dict[str, Any] = {"action_ids": ["sa-0", "sa-1"], "worker": "w", "now": T0}
    call.update(arguments)
    with pytest.raises(InvalidInputError) as error:
        store.mark_done_ids(call.pop("action_ids"), **call)
    assert error.value.field == field
    assert [a.model_dump() for a in store.list(limit=10)] == before


class _Counting(FastScheduledActionStore):
    """The fast store, counting each way of marking an action done."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def mark_done(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("mark_done")
        return super().mark_done(*args, **kwargs)

    def mark_done_ids(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("mark_done_ids")
        return super().mark_done_ids(*args, **kwargs)


class _Wrapper:
    """A wrapper in the style of the Prometheus one: overrides ``mark_done`` and passes every
    other call on (``mark_done_ids`` too, through ``__getattr__``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.seen: list[str] = []

    def mark_done(self, action_id: str, **kwargs: Any) -> Any:
        self.seen.append(action_id)
        return self._inner.mark_done(action_id, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _flow(scheduled: Any, steal: bool = False) -> tuple[LeadFlow, ManualClock]:
    """A flow whose one rule runs ``effect`` now; with ``steal`` the handler outlives its lease
    and another worker claims the action meanwhile."""
    import dataclasses

    clock = ManualClock(T0)
    handlers = HandlerRegistry.default()

    def effect(ctx: Any) -> str:
        if steal:
            clock.advance(timedelta(minutes=10))
            assert len(scheduled.claim_due(clock.now(), worker="other", lease=LEASE)) == 1
        return "ok"

    handlers.register("effect", effect)
    rule = {
        "ruleId": "now",
        "name": "now",
        "allowDuplicates": True,
        "trigger": {"eventType": "opportunity.created", "conditions": []},
        "actions": [{"actionType": "effect"}],
    }
    storage: Storage = dataclasses.replace(fast_memory_storage(), scheduled=scheduled)
    flow = LeadFlow.in_memory(
        storage=storage,
        handlers=handlers,
        clock=clock,
        rules=[FollowUpRule.model_validate(rule)],
    )
    return flow, clock


def _event(n: int) -> dict[str, Any]:
    return {
        "id": f"e{n}",
        "type": "opportunity.created",
        "time": T0.isoformat(),
        "payload": {"opportunityId": f"opp-{n}"},
    }


def test_a_run_now_action_is_marked_done_through_mark_done_ids() -> None:
    store = _Counting()
    assert isinstance(store, BatchAcknowledgement)
    flow, _ = _flow(store)
    result = flow.handle(_event(1))
    [run] = result.executed
    assert run.ok and run.state is ScheduledActionState.DONE
    assert store.calls == ["mark_done_ids"]
    [done] = store.list(limit=5)
    assert (done.state, done.finished_at, done.lease_expires_at) == (
        ScheduledActionState.DONE,
        T0,
        None,
    )


def test_a_wrapper_that_overrides_mark_done_sees_every_run_now_action() -> None:
    wrapper = _Wrapper(FastScheduledActionStore())
    flow, _ = _flow(wrapper)
    results = [flow.handle(_event(n)) for n in range(3)]
    ran = [r.executed[0] for r in results]
    assert all(run.ok and run.state is ScheduledActionState.DONE for run in ran)
    assert len(wrapper.seen) == 3


@pytest.mark.parametrize("make", [lambda: memory_storage().scheduled, FastScheduledActionStore])
def test_a_lease_lost_while_the_handler_ran_is_reported_claimed(make: Any) -> None:
    """The handler outlived its lease and another worker took the action: it is not marked
    done, and the run says ``claimed`` (the other worker's run is harmless, by its key)."""
    store = make()
    flow, _ = _flow(store, steal=True)
    [run] = flow.handle(_event(1)).executed
    assert run.ok and run.state is ScheduledActionState.CLAIMED
    [action] = store.list(limit=5)
    assert (action.state, action.lease_owner) == (ScheduledActionState.CLAIMED, "other")


def test_a_method_patched_onto_the_store_class_later_sees_every_mark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The executor looks ``mark_done_ids`` up on each call: what is patched onto the class
    after the flow was built (metrics, the benchmark's recorder) sees every run-now action."""
    store = FastScheduledActionStore()
    flow, _ = _flow(store)
    seen: list[str] = []
    original = FastScheduledActionStore.mark_done_ids

    def counted(self: FastScheduledActionStore, ids: Any, **kwargs: Any) -> Any:
        seen.extend(ids)
        return original(self, ids, **kwargs)

    monkeypatch.setattr(FastScheduledActionStore, "mark_done_ids", counted)
    runs = [flow.handle(_event(n)).executed[0] for n in range(3)]
    assert sorted(seen) == sorted(a.action_id for a in store.list(limit=5))
    assert len(seen) == 3 and all(run.state is ScheduledActionState.DONE for run in runs)
