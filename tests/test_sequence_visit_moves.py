"""A batch's moves on written with their next visits (``move_to_visits``,
:class:`~leadflow.ports.sequences.EnrollmentVisitMoves`): held to its contract on SQL, the
backend that has it (on PostgreSQL one statement, on SQLite the visits then the moves in one
transaction); and ``run_due`` through it held to ``run_due`` through the two calls it replaces
(``schedule_many``, then ``move_many``): the same enrollments, step records, visits and
messages, a visit stored first by another writer included. SQLite in memory and in a file,
PostgreSQL when ``LEADFLOW_TEST_POSTGRES_URL`` is set."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from sqlalchemy import event

from leadflow import LeadFlow, ManualClock
from leadflow.ports.sequences import EnrollmentVisitMoves
from leadflow.records import ActionKind
from leadflow.runtime.planning import action_id_for
from leadflow.runtime.sequence_parts import step_key
from leadflow.sequences import SequenceDefinition
from leadflow.stores.memory import InMemoryEnrollmentStore
from leadflow.stores.sql import SqlStorage
from leadflow.testing.contracts import EnrollmentVisitMovesContract

from .sequence_support import opportunities
from .sql_support import fresh_storage, on_postgres
from .test_contracts_sql import _File, _Memory, _Postgres


class _Sql:
    storage: SqlStorage

    def make_storage(self) -> SqlStorage:
        return self.storage


class TestOnSqliteMemory(_Memory, _Sql, EnrollmentVisitMovesContract):
    pass


class TestOnSqliteFile(_File, _Sql, EnrollmentVisitMovesContract):
    pass


class TestOnPostgres(_Postgres, _Sql, EnrollmentVisitMovesContract):
    pass


def test_the_memory_store_moves_and_stores_apart() -> None:
    """The reference store keeps no scheduled actions: the sequencer stores the visits."""
    assert not isinstance(InMemoryEnrollmentStore(), EnrollmentVisitMoves)


# --------------------------------------------------------------------------- run_due

START = datetime(2026, 1, 5, 10, tzinfo=UTC)
KINDS = [
    pytest.param("sqlite-file", id="sqlite-file"),
    pytest.param("postgres", id="postgres", marks=on_postgres),
]
OPPORTUNITIES = [f"o{n}" for n in range(1, 9)]


def _sequence() -> SequenceDefinition:
    """Three sends a day apart, then the end: every visit of a step moves on to a wait or
    to the end (a move with no visit)."""
    steps: list[dict[str, Any]] = []
    for n in range(3):
        steps.append({"id": f"send{n}", "kind": "action",
                      "action": {"actionType": "send_email", "template": f"t{n}"}})  # fmt: skip
        steps.append({"id": f"wait{n}", "kind": "wait", "delay": 24})
    return SequenceDefinition.model_validate(
        {"sequenceId": "seq", "name": "seq", "entry": {"eventType": "opportunity.created"},
         "steps": steps}
    )  # fmt: skip


class _Apart:
    """The enrollment store without ``move_to_visits``: the two calls it replaces."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "move_to_visits":
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def two(kind: str, tmp_path: Path) -> Iterator[tuple[SqlStorage, SqlStorage]]:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with fresh_storage(kind, tmp_path / "one") as one, fresh_storage(kind, tmp_path / "two") as t:
        yield one, t


def _flow(storage: Any, apart: bool) -> tuple[LeadFlow, ManualClock]:
    clock = ManualClock(START)
    if apart:
        storage = dataclasses.replace(storage, enrollments=_Apart(storage.enrollments))
    flow = LeadFlow.in_memory(clock=clock, storage=storage)
    for opp in OPPORTUNITIES:
        opportunities(flow).add(opp, owner="alice", email=f"{opp}@example.com")
    flow.sequences.publish(_sequence())
    flow.handle_many(
        [{"type": "opportunity.created", "id": f"lead-{opp}", "time": START,
          "payload": {"opportunityId": opp}} for opp in OPPORTUNITIES]
    )  # fmt: skip
    return flow, clock


def _held_first(flow: LeadFlow, opp: str) -> None:
    """Another writer's visit 2 of ``opp``'s enrollment, stored before the step moves on:
    at ``send1`` instead of ``wait0`` (a timer and a matching event racing for it)."""
    store = flow.storage.enrollments
    assert store is not None
    [enrollment] = [e for e in store.list(limit=50) if e.opportunity_id == opp]
    [first] = [a for a in flow.storage.scheduled.list(limit=50)
               if a.enrollment_id == enrollment.enrollment_id]  # fmt: skip
    key = step_key(enrollment.enrollment_id, 2)
    other = first.model_copy(
        update={"action_id": action_id_for(key), "idempotency_key": key, "action_index": 2,
                "step_id": "send1", "due_at": START + timedelta(hours=30),
                "explanation": "stored first by another writer"}
    )  # fmt: skip
    flow.storage.scheduled.schedule(other)


def _state(flow: LeadFlow) -> tuple[Any, ...]:
    store = flow.storage.enrollments
    assert store is not None
    enrollments = sorted(
        (e.opportunity_id, e.state.value, e.visit, e.step_id, e.revision,
         [(r.visit, r.step_id, r.kind, r.outcome, r.why) for r in e.history])
        for e in store.list(limit=50)
    )  # fmt: skip
    actions = sorted(
        (a.opportunity_id, a.action_index, a.step_id, a.state.value, a.due_at, a.explanation,
         a.attempts)
        for a in flow.storage.scheduled.list(limit=500)
        if a.kind is ActionKind.STEP
    )  # fmt: skip
    sent = sorted(m.template for m in flow.integrations.messenger.sent)  # type: ignore[attr-defined]
    return enrollments, actions, sent


def test_run_due_moves_as_the_two_calls_move(two: tuple[SqlStorage, SqlStorage]) -> None:
    together, apart = _flow(two[0], apart=False), _flow(two[1], apart=True)
    for flow, _ in (together, apart):
        _held_first(flow, "o3")
    for hours in (0, 25, 31, 50, 75, 100):
        for flow, clock in (together, apart):
            clock.set(START + timedelta(hours=hours, minutes=1))
            while flow.run_due(limit=500).claimed:
                pass
        assert _state(together[0]) == _state(apart[0]), hours
    enrollments, _, sent = _state(together[0])
    assert all(state == "completed" for _, state, *_ in enrollments)
    assert len(sent) == 3 * len(OPPORTUNITIES)
    [o3] = [e for e in enrollments if e[0] == "o3"]
    # o3 went on to the visit stored first (send1, no wait before it), the others waited.
    assert [step for _, step, kind, outcome, _ in o3[5] if outcome == "scheduled"][:2] == [
        "send0",
        "send1",
    ]
    assert any("stored first by another writer" in why for *_, why in o3[5])


def test_a_batchs_moves_are_one_statement_on_postgresql(kind: str, tmp_path: Path) -> None:
    """Per batch of moves: the visits, the moves and their records in one statement on
    PostgreSQL (three with the two calls); the same on SQLite as the two calls make."""
    counts: dict[bool, int] = {}
    seen: list[str] = []

    def statement(conn: Any, cursor: Any, text: str, *args: Any) -> None:
        if not text.lstrip().upper().startswith("BEGIN"):
            seen.append(text)

    for apart in (False, True):
        (tmp_path / str(apart)).mkdir()
        with fresh_storage(kind, tmp_path / str(apart)) as storage:
            flow, clock = _flow(storage, apart)
            clock.set(START + timedelta(minutes=1))
            seen.clear()
            engine = storage.database.engine
            event.listen(engine, "before_cursor_execute", statement)
            try:
                assert flow.run_due(limit=500).claimed == len(OPPORTUNITIES)
            finally:
                event.remove(engine, "before_cursor_execute", statement)
            counts[apart] = len(seen)
    if kind == "postgres":
        assert counts[False] == counts[True] - 2
    else:
        assert counts[False] == counts[True]
