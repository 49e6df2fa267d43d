"""PostgreSQL: a ``handle_many`` chunk whose run-now handlers read no stored action stores its
actions acknowledged (``schedule_done``, ``leadflow.stores.sql.acknowledged``): the run-now
ones go in done, and no ``UPDATE`` follows for the successes.

Held to the slow path: every column of every stored action and activity, and every result,
are those of ``handle`` one event at a time (and of SQLite, whose held rows go in done their
own way), with built-in handlers that fail (a notification retried, one parked: a failure
recorded on a row the unit stored done), a repeated event, a batch overlapping earlier
events, and actions due later. A chunk with a handler that may read its action stays on the
ordinary path (the handler sees it claimed); what a unit remembers ends with it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")
from sqlalchemy import event

from leadflow import (
    ConflictError,
    FlowSettings,
    HandleResult,
    HandlerRegistry,
    PermanentError,
)
from leadflow.ports import AcknowledgedScheduling, Notification
from leadflow.runtime.context import ActionContext
from leadflow.stores.sql import SqlStorage
from leadflow.testing.contracts import make_scheduled_action

from .helpers import T0
from .latency import Crash, Tripwire
from .service_support import build_flow, rule
from .sql_support import fresh_storage, kind_params, on_postgres
from .test_sql_held import _answers, _created, _rows

RULES = [
    rule(
        "call",
        "opportunity.created",
        [
            {"actionType": "create_activity", "subject": "Call", "assignTo": "lead_owner"},
            {"actionType": "send_notification", "template": "new"},
        ],
        allowDuplicates=True,
    ),
    rule(
        "later",
        "opportunity.created",
        [{"actionType": "send_email", "template": "hello", "delay": 1440}],
    ),
]


class Notifier:
    """Fails opp-2's notifications (retried later) and opp-4's for good (parked)."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def notify(self, notification: Notification) -> None:
        if notification.opportunity_id == "opp-2":
            raise RuntimeError("the notifier is down")
        if notification.opportunity_id == "opp-4":
            raise PermanentError("no such channel")
        self.sent.append(notification)


def _flow(storage: SqlStorage, handlers: HandlerRegistry | None = None) -> Any:
    settings = FlowSettings(worker_id="w1")  # the same leases on both stores
    return build_flow(
        storage=storage, rules=RULES, handlers=handlers, settings=settings, notifier=Notifier()
    )


@contextmanager
def _statements(storage: SqlStorage) -> Iterator[list[str]]:
    """Within the block, the statements sent on ``storage``'s tables (the test server's
    engine is shared: others are left out), each text on one line."""
    seen: list[str] = []
    schema = storage.database.tables.scheduled.schema
    engine = storage.database.engine

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        text = " ".join(sql.split())
        if schema is None or f"{schema}." in text:
            seen.append(text)

    event.listen(engine, "before_cursor_execute", statement)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)


def _updates(storage: SqlStorage, seen: list[str]) -> int:
    """The ``UPDATE``s of the actions' table in ``seen``."""
    table = storage.database.tables.scheduled.name
    return sum(s.startswith("UPDATE ") and table in s.split(" SET ")[0] for s in seen)


@pytest.mark.parametrize("kind", kind_params())
def test_a_chunk_stored_acknowledged_gives_what_handle_gives(kind: str, tmp_path: Path) -> None:
    """Every column and every result as ``handle`` one event at a time, failures of built-in
    handlers included; on PostgreSQL one ``UPDATE`` per failed run (its mark) and none for
    the successes."""
    first = [_created(f"e{n}", f"opp-{n % 4 + 1}") for n in range(12)]
    first[9] = first[4]  # repeated within the batch
    earlier = [_created("e20", "opp-3"), _created("e21", "opp-1")]
    second = [*first[6:], *earlier, _created("e22", "opp-2"), _created("e23", "opp-4")]
    (tmp_path / "many").mkdir()
    (tmp_path / "one").mkdir()
    with (
        fresh_storage(kind, tmp_path / "many") as many,
        fresh_storage(kind, tmp_path / "one") as one,
    ):
        batched, single = _flow(many), _flow(one)
        with _statements(many) as seen:
            got = _answers(batched.handle_many(first))
        assert got == _answers([single.handle(e) for e in first])
        failed = sum(1 for e in first[:9] + first[10:] if e["payload"]["opportunityId"] in
                     ("opp-2", "opp-4"))  # fmt: skip
        if kind == "postgres":
            assert _updates(many, seen) == failed  # the failures' marks; no acknowledgement
        for e in earlier:
            batched.handle(e)
            single.handle(e)
        assert _answers(batched.handle_many(second)) == _answers([single.handle(e) for e in second])
        third = [_created(f"e{n}", ("opp-1", "opp-3")[n % 2]) for n in range(30, 42)]
        with _statements(many) as seen:
            got = _answers(batched.handle_many(third))
        assert got == _answers([single.handle(e) for e in third])
        assert _updates(many, seen) == 0
        assert _rows(many) == _rows(one)
        states = {a.state.value for a in many.scheduled.list(limit=500)}
        assert states == {"done", "pending", "parked"}


@on_postgres
def test_a_handler_that_may_read_its_action_sees_it_claimed(tmp_path: Path) -> None:
    """A host handler in the chunk: the ordinary path, its action claimed while it runs
    and acknowledged after; the same chunk without it goes in done."""
    seen: list[str] = []

    def peek(ctx: ActionContext[None]) -> str:
        seen.append(ctx.storage.scheduled.get(ctx.scheduled.action_id).state.value)
        return "peeked"

    handlers = HandlerRegistry.default()
    handlers.register("peek", peek)
    with fresh_storage("postgres", tmp_path) as storage:
        peeking = rule("peek", "opportunity.created", [{"actionType": "peek"}])
        flow = build_flow(
            storage=storage,
            rules=[RULES[0], peeking],
            handlers=handlers,
            settings=FlowSettings(worker_id="w1"),
        )
        with _statements(storage) as sent:
            results = flow.handle_many([_created(f"e{n}", "opp-1") for n in range(3)])
        assert all(isinstance(r, HandleResult) and not r.all_errors() for r in results)
        assert seen == ["claimed"] * 3
        assert _updates(storage, sent) == 1  # the chunk's acknowledgement
        assert {a.state.value for a in storage.scheduled.list(limit=100)} == {"done"}


def _claimed(tag: str, n: int) -> list[Any]:
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


def _row(storage: SqlStorage, action_id: str) -> dict[str, Any]:
    """A stored action's fields, its id and key left out (to compare two actions)."""
    found = storage.scheduled.get(action_id).model_dump()
    del found["action_id"], found["idempotency_key"], found["event"]
    return found


@on_postgres
def test_schedule_done_marks_as_the_acknowledgement_and_fails_as_a_claim(tmp_path: Path) -> None:
    """In a unit: the claimed actions stored as ``mark_done_ids`` leaves them, a pending one
    as it is; ``mark_failed`` (retried, parked) gives the row a claimed action's failure
    gives, ``mark_done_ids`` sends nothing; after the unit the rows are ordinary (a failure's
    mark is refused), and outside a unit nothing is stored."""
    with fresh_storage("postgres", tmp_path) as storage:
        store = storage.scheduled
        assert isinstance(store, AcknowledgedScheduling)
        later = T0.replace(hour=10)
        pending = make_scheduled_action("a-key-p", action_id="a-p")
        assert store.schedule_done(_claimed("x", 1), now=later) is None  # no unit
        assert store.list(limit=10) == []
        with storage.unit_of_work():
            assert store.schedule_done([*_claimed("a", 4), pending], now=later) == [True] * 5
            store.mark_failed("a-0", worker="w1", now=later, error="boom", retry_at=later)
            store.mark_failed(
                "a-1", worker="w1", now=later, error="gone", retry_at=later, permanent=True
            )
            with _statements(storage) as seen:
                done = store.mark_done_ids(["a-2", "a-3"], worker="w1", now=later)
            assert done == ["a-2", "a-3"] and seen == []
        with storage.unit_of_work():  # the ordinary way, for comparison
            assert store.schedule_many(_claimed("b", 4)) == [True] * 4
            store.mark_failed("b-0", worker="w1", now=later, error="boom", retry_at=later)
            store.mark_failed(
                "b-1", worker="w1", now=later, error="gone", retry_at=later, permanent=True
            )
            store.mark_done_ids(["b-2", "b-3"], worker="w1", now=later)
        for n in range(4):
            assert _row(storage, f"a-{n}") == _row(storage, f"b-{n}")
        assert [store.get(f"a-{n}").state.value for n in range(4)] == [
            "pending",
            "parked",
            "done",
            "done",
        ]
        assert store.get("a-p").state.value == "pending"
        with storage.unit_of_work(), pytest.raises(ConflictError):
            store.mark_failed("a-2", worker="w1", now=later, error="late", retry_at=later)


def test_schedule_done_on_sqlite_is_none(tmp_path: Path) -> None:
    """SQLite's held rows go in done already: nothing to do, nothing stored."""
    with fresh_storage("sqlite-file", tmp_path) as storage:
        with storage.unit_of_work():
            assert storage.scheduled.schedule_done(_claimed("a", 2), now=T0) is None
        assert storage.scheduled.list(limit=10) == []


def _crash(*_: Any) -> None:
    raise Crash


@pytest.mark.parametrize("kind", kind_params())
def test_a_crash_in_a_chunk_stored_acknowledged_leaves_nothing(kind: str, tmp_path: Path) -> None:
    """The process dies after the chunk's actions and activities were sent: nothing of the
    chunk is stored; handed in again, each event is handled once."""
    with fresh_storage(kind, tmp_path) as storage:
        added = Tripwire(storage.activities, after={"add_many": _crash})
        flow = _flow(dataclasses.replace(storage, activities=added))
        events = [_created(f"e{n}", ("opp-1", "opp-3")[n % 2]) for n in range(6)]
        with pytest.raises(Crash):
            flow.handle_many(events)
        assert added.calls.get("add_many") == 1
        assert storage.scheduled.list(limit=100) == []
        added.after.clear()
        results = flow.handle_many(events)
        assert all(isinstance(r, HandleResult) and not r.all_errors() for r in results)
        states = sorted(a.state.value for a in storage.scheduled.list(limit=100))
        assert states == ["done"] * 12 + ["pending"] * 6


@on_postgres
def test_a_wrapper_that_passes_it_on_keeps_the_acknowledgement(tmp_path: Path) -> None:
    """A store wrapped by a class that watches the acknowledgements and passes the rest on
    (``__getattr__``): its chunks are stored claimed and acknowledged after, as before."""
    with fresh_storage("postgres", tmp_path) as storage:
        watched = Tripwire(storage.scheduled)
        flow = _flow(dataclasses.replace(storage, scheduled=watched))
        flow.handle_many([_created(f"e{n}", "opp-1") for n in range(3)])
        assert "schedule_done" not in watched.calls
        assert watched.calls.get("mark_done_many", 0) + watched.calls.get("mark_done_ids", 0) == 1


@on_postgres
def test_a_chunk_with_an_event_for_sequences_keeps_the_acknowledgement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event a sequence listens to (its entry): the sequencer takes it inside the chunk,
    so the chunk's actions are stored claimed and acknowledged after, as before."""
    from .test_sequences_sql import entry, sql_flow

    calls: list[int] = []
    with fresh_storage("postgres", tmp_path) as storage:
        store_class = type(storage.scheduled)
        original = store_class.schedule_done

        def schedule_done(self: Any, actions: Any, *, now: Any) -> Any:
            calls.append(len(actions))
            return original(self, actions, now=now)

        monkeypatch.setattr(store_class, "schedule_done", schedule_done)
        flow, clock, _ = sql_flow(storage)
        flow.rules.create(RULES[0])
        flow.engine()
        with _statements(storage) as seen:
            results = flow.handle_many([entry(clock, "o1"), entry(clock, "o2")])
        assert all(isinstance(r, HandleResult) and r.sequences for r in results)
        assert calls == []
        assert _updates(storage, seen) >= 1  # the acknowledgement
        runs = [run for r in results if isinstance(r, HandleResult) for run in r.executed]
        assert runs and all(run.ok for run in runs)
