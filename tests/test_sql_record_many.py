"""The facts of many events in one step (``record_many``, the optional
:class:`~leadflow.ports.BatchFacts` of the SQL analytics store) and ``handle_many``'s use of it:
a chunk's facts go in one ``INSERT`` per kind, and what is recorded is what ``handle`` one by
one records. SQLite in memory and in a file, PostgreSQL when a server is set."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")
from sqlalchemy import event

from leadflow import InvalidInputError
from leadflow.facts import Completion, LeadArrival, StatusChange
from leadflow.ports import BatchFacts, Storage
from leadflow.stores.sql import SqlStorage

from .helpers import T0
from .service_support import build_flow, rule
from .sql_support import fresh_storage, kind_params

_START, _END = T0 - timedelta(days=30), T0 + timedelta(days=30)


@pytest.fixture(params=kind_params())
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    with fresh_storage(request.param, tmp_path) as built:
        yield built


def _arrival(n: int) -> LeadArrival:
    return LeadArrival(
        event_id=f"ev-a{n}", opportunity_id=f"opp-{n}", arrived_at=T0, source="web", owner="u1"
    )


def _change(n: int) -> StatusChange:
    return StatusChange(
        event_id=f"ev-c{n}", opportunity_id=f"opp-{n}", changed_at=T0, to_status="won"
    )


def _completion(n: int) -> Completion:
    return Completion(
        activity_id=f"act-{n}",
        opportunity_id=f"opp-{n}",
        activity_type="call",
        completed_at=T0,
        assigned_to="u1",
    )


def _facts(storage: Storage) -> tuple[list[Any], list[Any], list[Any]]:
    store = storage.analytics
    assert store is not None
    return (
        sorted(a.model_dump_json() for a in store.arrivals(_START, _END)),
        sorted(c.model_dump_json() for c in store.status_changes(_START, _END)),
        sorted(c.model_dump_json() for c in store.completions(_START, _END)),
    )


def test_record_many_records_what_record_one_by_one_records(
    storage: SqlStorage, tmp_path: Path
) -> None:
    store = storage.analytics
    assert isinstance(store, BatchFacts)
    store.record_arrival(_arrival(0))  # stored already: left alone
    arrivals = [_arrival(0), _arrival(1), _arrival(1), _arrival(2)]  # a repeat in the list
    changes = [_change(1), _change(2)]
    completions = [_completion(1), _completion(1)]
    store.record_many(arrivals, changes, completions)
    store.record_many(arrivals, changes, completions)  # again: nothing twice
    with fresh_storage("sqlite-memory", tmp_path) as other:
        assert other.analytics is not None
        for arrival in arrivals:
            other.analytics.record_arrival(arrival)
        for change in changes:
            other.analytics.record_status_change(change)
        for completion in completions:
            other.analytics.record_completion(completion)
        assert _facts(storage) == _facts(other)
    assert [len(kind) for kind in _facts(storage)] == [3, 2, 1]


def test_record_many_is_one_insert_per_kind(storage: SqlStorage) -> None:
    store = storage.analytics
    assert isinstance(store, BatchFacts)
    inserts: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append(statement)

    engine = storage.database.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        store.record_many([_arrival(n) for n in range(50)], [_change(1)], [])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(inserts) == 2  # the arrivals and the changes; no completions, no statement
    assert len(_facts(storage)[0]) == 50


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (("x", [], []), "arrivals"),
        (([_change(1)], [], []), "arrivals"),  # a fact of another kind
        (([], [{"eventId": "e"}], []), "changes"),
        (([], [], [_completion(1)] * 1001), "completions"),
    ],
)
def test_record_many_refuses_bad_input_and_writes_nothing(
    storage: SqlStorage, arguments: tuple[Any, Any, Any], field: str
) -> None:
    store = storage.analytics
    assert isinstance(store, BatchFacts)
    good = [_arrival(1)]
    with pytest.raises(InvalidInputError) as refused:
        store.record_many(
            good + arguments[0] if isinstance(arguments[0], list) else arguments[0],
            arguments[1],
            arguments[2],
        )
    assert refused.value.field == field
    assert _facts(storage) == ([], [], [])


def _events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for n in range(6):
        at = T0 + timedelta(minutes=n)
        events.append(
            {"eventId": f"c{n}", "eventType": "opportunity.created", "occurredAt": at,
             "payload": {"opportunityId": f"opp-{n}", "source": "web", "ownerId": "u1"}}
        )  # fmt: skip
        events.append(
            {"eventId": f"s{n}", "eventType": "opportunity.status_changed", "occurredAt": at,
             "payload": {"opportunityId": f"opp-{n}", "previousStatus": "new",
                         "newStatus": "qualified"}}
        )  # fmt: skip
    return events


@pytest.mark.parametrize("kind", kind_params())
def test_handle_many_records_what_handle_records(kind: Any, tmp_path: Path) -> None:
    recorded = []
    for batched in (True, False):
        (tmp_path / str(batched)).mkdir()
        with fresh_storage(kind, tmp_path / str(batched)) as storage:
            flow = build_flow(storage=storage, rules=[])
            if batched:
                flow.handle_many(_events())
            else:
                for one in _events():
                    flow.handle(one)
            recorded.append(_facts(storage))
    assert recorded[0] == recorded[1]
    assert [len(kind) for kind in recorded[0]] == [6, 6, 0]


def _refuse_arrivals_of(storage: SqlStorage, event_id: str) -> None:
    """A rule of the database (not leadflow's) that refuses the arrival of ``event_id``."""
    table = storage.database.tables.arrivals.fullname
    with storage.database.engine.begin() as connection:
        if storage.database.is_sqlite:
            connection.exec_driver_sql(
                f"CREATE TRIGGER refuse_arrival BEFORE INSERT ON {table} "
                f"WHEN NEW.event_id = '{event_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            connection.exec_driver_sql(
                f"ALTER TABLE {table} ADD CONSTRAINT refuse_arrival "
                f"CHECK (event_id <> '{event_id}')"
            )


def test_a_fact_kept_for_later_in_a_unit_is_written_with_it_or_not_at_all(
    storage: SqlStorage,
) -> None:
    """In a unit of work an arrival may wait (on PostgreSQL) for the unit's next statement:
    a read in the unit sees it, the commit writes it, a rollback drops it, and a unit after
    it on the same connection carries nothing of it."""
    store = storage.analytics
    assert isinstance(store, BatchFacts)
    units = storage.unit_of_work
    with units():
        store.record_many([_arrival(1)], [_change(1)], [])
        assert [a.event_id for a in store.arrivals(_START, _END)] == ["ev-a1"]  # seen
        store.record_many([_arrival(2)], [], [])  # waits until the commit
    with pytest.raises(RuntimeError), units():
        store.record_many([_arrival(3)], [], [])
        raise RuntimeError("the host gives up")
    with units():
        storage.scheduled.mark_done_ids(["sa-none"], worker="w", now=T0)  # would carry one
    arrivals, changes, _ = _facts(storage)
    assert [len(arrivals), len(changes)] == [2, 1]
    assert "ev-a3" not in "".join(arrivals)


def test_a_refused_fact_fails_the_unit_and_is_reported_step_by_step(
    storage: SqlStorage, caplog: pytest.LogCaptureFixture
) -> None:
    """``handle``'s arrival, refused by the database: in the unit (on PostgreSQL it went with
    the acknowledgement, whose statement fails) the unit is rolled back, the event handled
    again step by step: its actions stand, the refusal is in the result's errors, nothing of
    the fact is stored."""
    flow = build_flow(
        storage=storage,
        rules=[
            rule(
                "call",
                "opportunity.created",
                [
                    {"actionType": "create_activity", "subject": "Call", "assignTo": "u1"},
                    {"actionType": "send_notification", "template": "new", "assignTo": "u1"},
                ],
                allowDuplicates=True,
            )
        ],
    )
    assert flow.sequencer is not None
    flow.sequencer.programs.refresh()  # the sequences' stamp read now, not in the unit
    _refuse_arrivals_of(storage, "bad")
    result = flow.handle(
        {
            "eventId": "bad",
            "eventType": "opportunity.created",
            "occurredAt": T0.isoformat(),
            "payload": {"opportunityId": "opp-bad"},
        }
    )
    assert [run.ok for run in result.executed] == [True, True]
    assert len(result.errors) == 1 and "refuse" in str(result.errors[0])
    rolled_back = [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()]
    failed_in = "action_ids" if storage.database.dialect == "postgresql" else "facts"
    assert len(rolled_back) == 1 and f"({failed_in}:" in rolled_back[0]
    assert _facts(storage) == ([], [], [])
    assert {a.state.value for a in storage.scheduled.list(limit=10)} == {"done"}
    assert len(storage.activities.for_opportunity("opp-bad")) == 1
