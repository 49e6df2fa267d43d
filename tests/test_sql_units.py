"""One commit per event on SQL (issue 17): ``handle`` runs an event's planning and its run-now
actions in one unit of work, ``handle_many`` a whole chunk of events; what reaches the database
is counted (statements, and commits: SQLAlchemy's commit events of an open transaction plus
every write statement that succeeded in autocommit on PostgreSQL, each its own transaction).
A crash inside a unit leaves nothing of it; a store error inside one rolls it back and the
event is handled again step by step; a refused event in a batch is reported in its slot and
half-writes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")
from sqlalchemy import Engine, event, select

from leadflow import Event, HandleResult, InvalidInputError, LeadFlow, ScheduledActionState
from leadflow.errors import StorageError
from leadflow.stores.sql import SqlStorage

from .helpers import T0
from .latency import Crash, Tripwire
from .service_support import build_flow, notifier_of, payloads, rule
from .sql_support import fresh_storage, kind_params

RULES = [
    rule(
        "call",
        "opportunity.created",
        [{"actionType": "create_activity", "subject": "Call", "assignTo": "lead_owner"}],
        allowDuplicates=True,
    ),
    rule("tell", "opportunity.created", [{"actionType": "send_notification", "template": "new"}]),
    rule(
        "later",
        "opportunity.created",
        [{"actionType": "send_email", "template": "hello", "delay": 1440}],
    ),
]


class Counts:
    """Statements and commits on ``engine`` while it is open (see the module's docstring)."""

    def __init__(self) -> None:
        self.statements = 0
        self.commits = 0

    def statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements += 1

    def ran(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        """A write that succeeded in autocommit: committed (a failed one wrote nothing)."""
        raw = getattr(cursor, "connection", None)
        write = not statement.lstrip().upper().startswith(("SELECT", "BEGIN"))
        if getattr(raw, "autocommit", False) is True and write:
            self.commits += 1

    def commit(self, conn: Any) -> None:
        info = getattr(conn.connection.driver_connection, "info", None)
        if getattr(info, "transaction_status", None) == 0:  # psycopg: none open, sends nothing
            return
        self.commits += 1

    def reset(self) -> None:
        self.statements = self.commits = 0


@contextmanager
def counted(engine: Engine) -> Iterator[Counts]:
    counts = Counts()
    event.listen(engine, "before_cursor_execute", counts.statement)
    event.listen(engine, "after_cursor_execute", counts.ran)
    event.listen(engine, "commit", counts.commit)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", counts.statement)
        event.remove(engine, "after_cursor_execute", counts.ran)
        event.remove(engine, "commit", counts.commit)


@pytest.fixture(params=kind_params())
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    with fresh_storage(request.param, tmp_path) as found:
        yield found


def flow_on(storage: Any) -> LeadFlow:
    return build_flow(storage=storage, rules=RULES)


def created(event_id: str, opportunity: str = "opp-1") -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventType": "opportunity.created",
        "occurredAt": T0.isoformat(),
        "payload": {"opportunityId": opportunity},
    }


def states(storage: SqlStorage) -> dict[str, int]:
    found: dict[str, int] = {}
    for action in storage.scheduled.list(limit=1000):
        found[action.state.value] = found.get(action.state.value, 0) + 1
    return found


def arrivals(storage: SqlStorage) -> list[Any]:
    with storage.database.read() as connection:
        return list(connection.execute(select(storage.database.tables.arrivals)))


def activities(storage: SqlStorage) -> list[str]:
    return sorted(
        a.activity_id
        for opp in ("opp-1", "opp-2", "opp-3", "opp-4")
        for a in storage.activities.for_opportunity(opp)
    )


def test_handle_commits_once_per_event(storage: SqlStorage) -> None:
    flow = flow_on(storage)
    flow.engine()  # the rules are read (and compiled) before counting
    assert flow.sequencer is not None
    flow.sequencer.programs.refresh()  # and the sequences (none): their stamp read once
    with counted(storage.database.engine) as counts:
        result = flow.handle(created("e1"))
        assert counts.commits == 1
        # SQLite: BEGIN IMMEDIATE, the stored keys read, 1 activity, the arrival fact, and the
        # 3 actions held until the commit, the acknowledged ones marked done in place (one
        # executemany, no UPDATE); on PostgreSQL the event's actions are stored together and
        # the activity and the arrival fact go with the acknowledgement (a notification runs
        # now: the actions are stored before their handlers run)
        assert counts.statements == (5 if storage.database.is_sqlite else 2), counts.statements
        counts.reset()
        again = flow.handle(created("e1"))
        assert counts.commits <= 1
    assert [run.ok for run in result.executed] == [True, True]
    assert [run.state for run in result.executed] == [ScheduledActionState.DONE] * 2
    assert len(result.scheduled) == 1 and not result.all_errors()
    assert len(again.duplicates) == 3 and not again.executed
    assert states(storage) == {"done": 2, "pending": 1}
    assert [a.event_id for a in arrivals(storage)] == ["e1"]
    assert len(activities(storage)) == 1
    assert len(payloads(flow, "activity.created")) == 1
    assert len(notifier_of(flow).sent) == 1


def test_handle_many_reports_each_event_and_commits_once_per_chunk(storage: SqlStorage) -> None:
    flow = flow_on(storage)
    flow.engine()
    assert flow.sequencer is not None
    flow.sequencer.programs.refresh()
    batch: list[Any] = [created(f"e{n}", f"opp-{n % 4 + 1}") for n in range(10)]
    batch[5] = {"eventType": "opportunity.created"}  # refused: no id, no time
    batch[7] = created("e3", "opp-4")  # the same event as slot 3
    batch.append(Event.model_validate(created("e10")))
    with counted(storage.database.engine) as counts:
        results = flow.handle_many(batch)
        assert counts.commits == 1
        # One fact INSERT (the lead's arrival) per event, + a few per chunk: the actions in
        # one INSERT, the activities in one, one acknowledgement.
        assert counts.statements <= 9 + 5
        counts.reset()
        second = flow.handle_many([created("e1"), created("e11", "opp-2")])
        assert counts.commits == 1
    assert len(results) == 11
    refused = results[5]
    assert isinstance(refused, InvalidInputError)
    handled = [r for n, r in enumerate(results) if n not in (5, 7)]
    assert all(isinstance(r, HandleResult) for r in handled)
    for r in handled:
        assert isinstance(r, HandleResult)
        assert [run.ok for run in r.executed] == [True, True] and len(r.scheduled) == 1
        assert not r.duplicates and not r.all_errors()
    twice = results[7]
    assert isinstance(twice, HandleResult)
    assert not twice.executed and len(twice.duplicates) == 3
    assert [r.event.id for r in handled] == [f"e{n}" for n in (0, 1, 2, 3, 4, 6, 8, 9, 10)]
    first, fresh = second
    assert isinstance(first, HandleResult) and len(first.duplicates) == 3
    assert isinstance(fresh, HandleResult) and len(fresh.executed) == 2
    assert len(activities(storage)) == 10
    assert states(storage) == {"done": 20, "pending": 10}
    assert len(payloads(flow, "activity.created")) == 10
    assert len(notifier_of(flow).sent) == 10


def _crash(*_: Any) -> None:
    raise Crash


def test_a_crash_inside_the_unit_leaves_nothing(storage: SqlStorage) -> None:
    wired = Tripwire(storage.scheduled, before={"mark_done_many": _crash})
    flow = flow_on(dataclasses.replace(storage, scheduled=wired))
    with pytest.raises(Crash):
        flow.handle(created("e1"))
    with pytest.raises(Crash):
        flow.handle_many([created("e2"), created("e3", "opp-2")])
    assert states(storage) == {} and activities(storage) == []
    assert payloads(flow, "activity.created") == []  # its own events wait for the commit
    # The host hands the events in again: they are handled once.
    wired.before.clear()
    flow.handle(created("e1"))
    flow.handle_many([created("e2"), created("e3", "opp-2")])
    assert states(storage) == {"done": 6, "pending": 3}
    assert len(activities(storage)) == 3 == len(payloads(flow, "activity.created"))


def test_a_store_error_inside_the_unit_is_handled_step_by_step(storage: SqlStorage) -> None:
    failures = [1]

    def fail_once(*_: Any) -> None:
        if failures:
            failures.pop()
            raise StorageError("the database failed: injected")

    wired = Tripwire(storage.scheduled, before={"mark_done_many": fail_once})
    flow = flow_on(dataclasses.replace(storage, scheduled=wired))
    result = flow.handle(created("e1"))
    assert [run.state for run in result.executed] == [ScheduledActionState.DONE] * 2
    assert not result.all_errors() and len(result.scheduled) == 1
    assert states(storage) == {"done": 2, "pending": 1}
    assert len(activities(storage)) == 1 == len(payloads(flow, "activity.created"))
    # The notifier was called by the rolled-back attempt too, with the same idempotency key.
    keys = {n.key for n in notifier_of(flow).sent}
    assert len(keys) == 1


def test_a_refused_event_in_a_batch_half_writes_nothing(storage: SqlStorage) -> None:
    def refuse(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if name == "schedule_many" or args[0].event.id == "bad":
            raise StorageError("the database failed: injected")

    wired = Tripwire(storage.scheduled, before={"schedule_many": refuse, "schedule": refuse})
    flow = flow_on(dataclasses.replace(storage, scheduled=wired))
    results = flow.handle_many([created("e1"), created("bad", "opp-2"), created("e2", "opp-3")])
    assert isinstance(results[1], StorageError)
    for n in (0, 2):
        r = results[n]
        assert isinstance(r, HandleResult) and len(r.executed) == 2 and not r.all_errors()
    assert states(storage) == {"done": 4, "pending": 2}
    assert all(a.event.id != "bad" for a in storage.scheduled.list(limit=100))
    assert storage.activities.for_opportunity("opp-2") == []
    assert len(activities(storage)) == 2 == len(payloads(flow, "activity.created"))
