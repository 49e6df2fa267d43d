"""SQLite: a ``handle_many`` chunk's actions held until something could read them
(``leadflow.stores.sql.held``), so the acknowledged ones go in done, without an ``UPDATE``.

Held to the slow path: the stored rows (every column of every action, every activity) and the
results are those of ``handle`` one event at a time (which holds nothing), with duplicates in
and across batches, a handler that fails (its action retried: a store call on a held row),
actions due later, and a batch overlapping earlier events; a unit's reads see its held rows, a
rolled-back unit writes none of them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")
from sqlalchemy import event, select

from leadflow import FlowSettings, HandleResult, HandlerRegistry
from leadflow.runtime.context import ActionContext
from leadflow.stores.sql import SqlStorage
from leadflow.testing.contracts import make_scheduled_action

from .helpers import T0
from .latency import Slow
from .service_support import build_flow, notifier_of, rule
from .sql_support import fresh_storage, kind_params
from .test_runtime_concurrency import together

RULES = [
    rule(
        "call",
        "opportunity.created",
        [
            {"actionType": "create_activity", "subject": "Call", "assignTo": "lead_owner"},
            {"actionType": "send_notification", "template": "new"},
            {"actionType": "flaky", "params": {}},
        ],
        allowDuplicates=True,
    ),
    rule(
        "later",
        "opportunity.created",
        [{"actionType": "send_email", "template": "hello", "delay": 1440}],
    ),
]


def _flaky(ctx: ActionContext[Any]) -> str:
    """Fails on opp-2's events (the action is then retried: a store call on its row)."""
    if ctx.opportunity_id() == "opp-2":
        raise RuntimeError("flaky failed")
    return "fine"


def _fine(ctx: ActionContext[Any]) -> str:
    return "fine"


def _created(event_id: str, opportunity: str) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventType": "opportunity.created",
        "occurredAt": T0.isoformat(),
        "payload": {"opportunityId": opportunity},
    }


def _flow(storage: SqlStorage) -> Any:
    handlers = HandlerRegistry.default()
    handlers.register("flaky", _flaky)
    settings = FlowSettings(worker_id="w1")  # the same leases on both stores
    return build_flow(storage=storage, rules=RULES, handlers=handlers, settings=settings)


def _rows(storage: SqlStorage) -> list[Any]:
    tables = storage.database.tables
    with storage.database.engine.connect() as connection:
        actions = connection.execute(
            select(tables.scheduled).order_by(tables.scheduled.c.action_id)
        ).all()
        activities = connection.execute(
            select(tables.activities).order_by(tables.activities.c.activity_id)
        ).all()
    return [tuple(row) for row in actions] + [tuple(row) for row in activities]


def _answers(results: list[Any]) -> list[Any]:
    out = []
    for r in results:
        if not isinstance(r, HandleResult):
            out.append(type(r).__name__)
            continue
        runs = [(run.ok, run.note, run.state) for run in r.executed]
        out.append((runs, sorted(r.duplicates), len(r.scheduled), len(r.all_errors())))
    return out


def _updates(storage: SqlStorage) -> Any:
    """From now on, the ``UPDATE``s of the actions' table: a function that counts them."""
    table = storage.database.tables.scheduled.name
    found: list[str] = []

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if " ".join(sql.split()).startswith(f"UPDATE {table}"):
            found.append(sql)

    event.listen(storage.database.engine, "before_cursor_execute", statement)
    return lambda: len(found)


@pytest.fixture(params=kind_params())
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _storages(kind: str, tmp_path: Path) -> Iterator[tuple[SqlStorage, SqlStorage]]:
    (tmp_path / "many").mkdir()
    (tmp_path / "one").mkdir()
    with (
        fresh_storage(kind, tmp_path / "many") as many,
        fresh_storage(kind, tmp_path / "one") as one,
    ):
        yield many, one


def test_handle_many_stores_what_handle_stores(kind: str, tmp_path: Path) -> None:
    """Every column of every stored action and activity, and every result, as ``handle``
    gives one event at a time: a first batch with an event repeated in it, then a batch
    overlapping it and events handled before it."""
    first = [_created(f"e{n}", f"opp-{n % 4 + 1}") for n in range(12)]
    first[9] = first[4]  # repeated within the batch
    earlier = [_created("e20", "opp-3"), _created("e21", "opp-1")]
    second = [*first[6:], *earlier, _created("e22", "opp-2"), _created("e23", "opp-4")]
    for many, one in _storages(kind, tmp_path):
        batched, single = _flow(many), _flow(one)
        got = _answers(batched.handle_many(first))
        want = _answers([single.handle(e) for e in first])
        assert got == want
        for e in earlier:
            batched.handle(e)
            single.handle(e)
        assert _answers(batched.handle_many(second)) == _answers([single.handle(e) for e in second])
        # No failure in the third: on SQLite its actions go in done (checked below).
        third = [_created(f"e{n}", ("opp-1", "opp-3", "opp-4")[n % 3]) for n in range(30, 42)]
        updates = _updates(many)
        assert _answers(batched.handle_many(third)) == _answers([single.handle(e) for e in third])
        if kind != "postgres":
            assert updates() == 0
        assert _rows(many) == _rows(one)
        states = {a.state.value for a in many.scheduled.list(limit=500)}
        assert states == {"done", "pending"}  # done, retried (pending), due later


def test_a_batch_on_sqlite_inserts_its_actions_done(tmp_path: Path) -> None:
    """The chunk's actions are inserted once, the acknowledged ones already done: no
    ``UPDATE`` of the actions' table when every run-now action succeeds (the flow warmed
    first: loading the sequences reads in the unit, which sends the held rows first)."""
    with fresh_storage("sqlite-file", tmp_path) as storage:
        flow = _flow(storage)
        flow.handle_many([_created(f"w{n}", "opp-3") for n in range(10)])
        seen: list[str] = []

        def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
            seen.append(" ".join(sql.split()))

        event.listen(storage.database.engine, "before_cursor_execute", statement)
        try:
            flow.handle_many([_created(f"e{n}", "opp-1") for n in range(10)])
        finally:
            event.remove(storage.database.engine, "before_cursor_execute", statement)
        table = storage.database.tables.scheduled.name
        assert sum(s.startswith(f"INSERT INTO {table}") for s in seen) == 1
        assert not [s for s in seen if s.startswith(f"UPDATE {table}")]
        mine = [a for a in storage.scheduled.list(limit=100) if a.opportunity_id == "opp-1"]
        states = sorted(a.state.value for a in mine)
        assert states == ["done"] * 30 + ["pending"] * 10


def test_handle_on_sqlite_inserts_an_events_actions_done(tmp_path: Path) -> None:
    """One event's unit of work holds its actions too: its activity and facts go beside
    them, the acknowledgement marks them done in place, and they are inserted once, done,
    with no ``UPDATE``; a repeated event inserts nothing and runs nothing again."""
    with fresh_storage("sqlite-file", tmp_path) as storage:
        flow = _flow(storage)
        flow.handle(_created("w0", "opp-3"))  # warmed: loading the rules reads in the unit
        seen: list[str] = []

        def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
            seen.append(" ".join(sql.split()))

        event.listen(storage.database.engine, "before_cursor_execute", statement)
        try:
            first = flow.handle(_created("e1", "opp-1"))
            again = flow.handle(_created("e1", "opp-1"))
        finally:
            event.remove(storage.database.engine, "before_cursor_execute", statement)
        table = storage.database.tables.scheduled.name
        assert sum(s.startswith(f"INSERT INTO {table}") for s in seen) == 1
        assert not [s for s in seen if s.startswith(f"UPDATE {table}")]
        assert first.executed and all(run.ok for run in first.executed)
        assert not again.executed and again.duplicates
        mine = [a for a in storage.scheduled.list(limit=100) if a.opportunity_id == "opp-1"]
        assert sorted(a.state.value for a in mine) == sorted(
            "done" if run.ok else "pending" for run in first.executed
        ) + ["pending"] * len(first.scheduled)


def _actions(n: int, tag: str) -> list[Any]:
    return [
        make_scheduled_action(
            f"{tag}-key-{i}",
            action_id=f"{tag}-{i}",
            state="claimed",
            lease_owner="w1",
            lease_expires_at=T0,
        )
        for i in range(n)
    ]


def test_a_unit_reads_its_held_rows_and_a_rollback_drops_them(kind: str, tmp_path: Path) -> None:
    """Inside a unit the rows a batch holds are read back (a read sends them first), an
    acknowledgement of held and sent rows together marks both, and a unit that fails
    writes none of them."""
    with fresh_storage(kind, tmp_path) as storage:
        store = storage.scheduled
        with storage.unit_of_work():
            assert store.schedule_many(_actions(10, "a")) == [True] * 10
            assert store.get("a-3").action_id == "a-3"  # read: sent first
            assert store.schedule_many(_actions(10, "b")) == [True] * 10
            ids = ["a-1", "b-2", "b-5"]
            assert store.mark_done_ids(ids, worker="w1", now=T0) == ids
        assert store.get("b-5").state.value == "done" and store.get("a-2").state.value == "claimed"
        with pytest.raises(RuntimeError), storage.unit_of_work():
            store.schedule_many(_actions(10, "c"))
            raise RuntimeError("the unit fails")
        with storage.unit_of_work():  # on the same connection: nothing of the failed unit
            store.schedule_many(_actions(10, "d"))
        assert not [a for a in store.list(limit=100) if a.action_id.startswith("c-")]
        assert len(store.list(limit=100)) == 30


def test_a_second_batch_in_a_unit_keeps_the_first_held(kind: str, tmp_path: Path) -> None:
    """Two ``schedule_many`` calls in one unit (a chunk of more than 1,000 actions): the
    second tells a key or an id the first holds from a new one, both stay held (on SQLite:
    no ``UPDATE`` for an acknowledgement over both), and what is stored is what separate
    calls store."""
    with fresh_storage(kind, tmp_path) as storage:
        store = storage.scheduled
        first = _actions(10, "a")
        again = make_scheduled_action("a-key-3", action_id="other", state="claimed")
        taken = make_scheduled_action("fresh-key", action_id="a-4", state="claimed")
        second = [*_actions(9, "b"), again, taken]
        updates = _updates(storage)
        with storage.unit_of_work():
            assert store.schedule_many(first) == [True] * 10
            assert store.schedule_many(second) == [True] * 9 + [False, False]
            ids = ["a-1", "b-2", "b-5", "a-9"]
            assert store.mark_done_ids(ids, worker="w1", now=T0) == ids
        if kind != "postgres":
            assert updates() == 0
        stored = {a.action_id: a for a in store.list(limit=100)}
        assert len(stored) == 19 and "other" not in stored
        assert stored["a-4"].idempotency_key == "a-key-4"
        done = sorted(i for i, a in stored.items() if a.state.value == "done")
        assert done == sorted(ids)
        assert all(stored[i].finished_at == T0 for i in ids)


@pytest.mark.parametrize("kind", ["sqlite-file", *[p for p in kind_params() if p.id == "postgres"]])
def test_overlapping_batches_on_threads_act_once(kind: str, tmp_path: Path) -> None:
    """Four threads hand in overlapping batches at once, the stores slowed (a few ms per
    call, widening every window between a check and its write): each event's actions run
    once in all (the other threads report them as duplicates), one activity per event, one
    notification per action, every action done."""
    events = [_created(f"e{n}", ("opp-1", "opp-3", "opp-4")[n % 3]) for n in range(16)]
    with fresh_storage(kind, tmp_path) as storage:
        slow = dataclasses.replace(
            storage,
            scheduled=Slow(storage.scheduled, 0.003),
            activities=Slow(storage.activities, 0.003),
        )
        handlers = HandlerRegistry.default()
        handlers.register("flaky", _fine)
        flow = build_flow(
            storage=slow, rules=RULES[:1], handlers=handlers, settings=FlowSettings(worker_id="w1")
        )
        flow.engine()
        batches = [events[n * 2 : n * 2 + 10] for n in range(4)]
        answers = together(4, lambda n: flow.handle_many(batches[n]))
        ran: dict[str, int] = {}
        for results in answers:
            assert isinstance(results, list), results
            for result in results:
                assert isinstance(result, HandleResult) and not result.all_errors()
                ran[result.event.id] = ran.get(result.event.id, 0) + len(result.executed)
        assert ran == {e["eventId"]: 3 for e in events}
        stored = storage.activities.for_opportunity
        assert sorted(len(stored(o)) for o in ("opp-1", "opp-3", "opp-4")) == [5, 5, 6]
        keys = [n.key for n in notifier_of(flow).sent]
        assert len(keys) == len(set(keys)) == len(events)
        states = [a.state.value for a in storage.scheduled.list(limit=500)]
        assert states == ["done"] * 3 * len(events)
