"""The SQL store's batch acknowledgement without reading rows back (``mark_done_ids``, the
optional :class:`~leadflow.ports.BatchAcknowledgement`): it changes the store exactly as
``mark_done_many`` does and returns the finished ids in the order given; ``run_due`` and
``handle_many`` use it, and a wrapper that overrides ``mark_done_many`` (metrics, logs) still
sees every acknowledgement. SQLite in memory and in a file, PostgreSQL when a server is set."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow import FollowUpRule, HandlerRegistry, InvalidInputError, LeadFlow, ManualClock
from leadflow.ports import BatchAcknowledgement
from leadflow.records import ScheduledActionState
from leadflow.stores.sql import SqlStorage
from leadflow.stores.sql.scheduled import SqlScheduledActionStore
from leadflow.testing.contracts import at, make_scheduled_action

from .sql_support import fresh_storage, kind_params

EFFECT = "ack_effect"


@pytest.fixture(params=kind_params())
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    with fresh_storage(request.param, tmp_path) as built:
        yield built


def _claimed(storage: SqlStorage) -> list[str]:
    """Five actions: a, b, c claimed by ``w``, d claimed by ``other``, e pending (due later)."""
    store = storage.scheduled
    for key in "abcd":
        store.schedule(make_scheduled_action(key, due_at=at()))
    store.schedule(make_scheduled_action("e", due_at=at(hours=5)))
    ours = store.claim_due(at(), worker="w", limit=3, lease=timedelta(hours=1))
    theirs = store.claim_due(at(), worker="other", limit=3, lease=timedelta(hours=1))
    assert [a.action_id for a in ours] == ["sa-a", "sa-b", "sa-c"]
    assert [a.action_id for a in theirs] == ["sa-d"]
    return ["sa-c", "sa-d", "sa-a", "sa-e", "sa-unknown", "sa-c"]  # asked for, in this order


def _rows(storage: SqlStorage) -> list[Any]:
    return [a.model_dump() for a in storage.scheduled.list(limit=10)]


def test_mark_done_ids_does_what_mark_done_many_does(tmp_path: Path) -> None:
    """The same calls on two fresh SQLite stores, one through each method: the same ids back,
    in the order asked (repeats once), and the same rows stored afterwards."""
    with (
        fresh_storage("sqlite-file", tmp_path) as many,
        fresh_storage("sqlite-file", tmp_path) as ids,
    ):
        asked = _claimed(many)
        assert _claimed(ids) == asked
        done = many.scheduled.mark_done_many(asked, worker="w", now=at(minutes=1))
        assert ids.scheduled.mark_done_ids(asked, worker="w", now=at(minutes=1)) == [
            a.action_id for a in done
        ]
        assert [a.action_id for a in done] == ["sa-c", "sa-a"]
        assert _rows(ids) == _rows(many)


def test_mark_done_ids_finishes_only_what_the_worker_holds(storage: SqlStorage) -> None:
    asked = _claimed(storage)
    store = storage.scheduled
    assert store.mark_done_ids(asked, worker="w", now=at(minutes=1)) == ["sa-c", "sa-a"]
    state = {a.action_id: a for a in store.list(limit=10)}
    assert state["sa-a"].state is ScheduledActionState.DONE
    assert state["sa-a"].finished_at == at(minutes=1)
    assert state["sa-a"].lease_expires_at is None
    assert state["sa-b"].state is ScheduledActionState.CLAIMED  # not asked for
    assert state["sa-d"].state is ScheduledActionState.CLAIMED  # another worker's
    assert state["sa-d"].lease_owner == "other"
    assert state["sa-e"].state is ScheduledActionState.PENDING
    assert store.mark_done_ids(asked, worker="w", now=at(minutes=2)) == []  # already done
    assert store.mark_done_ids([], worker="w", now=at()) == []


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"action_ids": "sa-a"}, "action_ids"),
        ({"action_ids": ["sa-a", 7]}, "action_ids"),
        ({"action_ids": [f"sa-{n}" for n in range(1001)]}, "action_ids"),
        ({"worker": ""}, "worker"),
        ({"now": at().replace(tzinfo=None)}, "now"),
    ],
)
def test_mark_done_ids_refuses_bad_input_and_writes_nothing(
    storage: SqlStorage, arguments: dict[str, Any], field: str
) -> None:
    asked = _claimed(storage)
    before = _rows(storage)
    call: dict[str, Any] = {"action_ids": asked, "worker": "w", "now": at(minutes=1)}
    call.update(arguments)
    with pytest.raises(InvalidInputError) as error:
        storage.scheduled.mark_done_ids(call.pop("action_ids"), **call)
    assert error.value.field == field
    assert _rows(storage) == before


class _CountingStore(SqlScheduledActionStore):
    """The SQL store, counting each way of acknowledging a batch."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[str] = []

    def mark_done_many(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("mark_done_many")
        return super().mark_done_many(*args, **kwargs)

    def mark_done_ids(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("mark_done_ids")
        return super().mark_done_ids(*args, **kwargs)


class _Wrapper:
    """A store wrapper in the style of the Prometheus one: overrides ``mark_done_many`` and
    passes every other call on (``mark_done_ids`` too, through ``__getattr__``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.seen: list[str] = []

    def mark_done_many(self, action_ids: Any, **kwargs: Any) -> Any:
        done = self._inner.mark_done_many(action_ids, **kwargs)
        self.seen += [a.action_id for a in done]
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _flow(storage: SqlStorage, scheduled: Any) -> tuple[LeadFlow, list[str]]:
    import dataclasses

    ran: list[str] = []
    handlers = HandlerRegistry.default()
    handlers.register(EFFECT, lambda ctx: ran.append(ctx.scheduled.action_id) or "ok")
    rule = {
        "ruleId": "later",
        "name": "later",
        "allowDuplicates": True,
        "trigger": {"eventType": "opportunity.created", "conditions": []},
        "actions": [{"actionType": EFFECT, "delay": {"amount": 1, "unit": "hours"}}],
    }
    flow = LeadFlow.in_memory(
        storage=dataclasses.replace(storage, scheduled=scheduled),
        handlers=handlers,
        clock=ManualClock(at()),
        rules=[FollowUpRule.model_validate(rule)],
    )
    return flow, ran


def _events(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"e{i}",
            "type": "opportunity.created",
            "time": at().isoformat(),
            "payload": {"opportunityId": f"opp-{i}"},
        }
        for i in range(n)
    ]


def test_run_due_acknowledges_through_mark_done_ids(storage: SqlStorage) -> None:
    store = _CountingStore(storage.database)
    assert isinstance(store, BatchAcknowledgement)
    flow, ran = _flow(storage, store)
    assert all(not isinstance(r, Exception) for r in flow.handle_many(_events(3)))
    report = flow.run_due(now=at(hours=2))
    assert report.succeeded == 3 and len(ran) == 3
    assert store.calls == ["mark_done_ids"]
    assert {a.state for a in storage.scheduled.list(limit=10)} == {ScheduledActionState.DONE}


def test_a_wrapper_that_overrides_mark_done_many_sees_every_acknowledgement(
    storage: SqlStorage,
) -> None:
    wrapper = _Wrapper(storage.scheduled)
    flow, ran = _flow(storage, wrapper)
    assert all(not isinstance(r, Exception) for r in flow.handle_many(_events(3)))
    report = flow.run_due(now=at(hours=2))
    assert report.succeeded == 3
    assert sorted(wrapper.seen) == sorted(ran) and len(ran) == 3
