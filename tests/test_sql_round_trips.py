"""PostgreSQL round trips of ``handle``'s unit of work (``stores/sql/direct.py``): the unit's
``BEGIN`` goes with its first statement and its ``COMMIT`` with its last (psycopg's pipeline
mode), and the acknowledgement of actions the unit itself inserted waits for that last
statement. Counted independently of leadflow's own cursor events, in a libpq trace of what
the client sent: each ``Sync`` (extended protocol) or ``Query`` (simple protocol) message is a
point where the client waits for the server. What is stored and reported stays what the memory
store gives; a connection goes back to the pool as psycopg's own ``BEGIN`` would leave it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, update
from sqlalchemy import event as sa_event

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from leadflow import DuplicateError, HandleResult, LeadFlow
from leadflow.adapters import RecordingNotifier
from leadflow.ports.integrations import Notification
from leadflow.stores.sql import SqlStorage, sql_storage

from .helpers import T0
from .service_support import build_flow, rule
from .sql_support import fresh_storage, on_postgres

pytestmark = on_postgres

NOTE = rule(
    "note",
    "opportunity.created",
    [
        {"actionType": "create_activity", "subject": "Note", "assignTo": "bob"},
        {"actionType": "send_notification", "template": "new", "assignTo": "bob"},
    ],
    allowDuplicates=True,
)
TELL = rule("tell", "opportunity.created", [{"actionType": "send_notification", "template": "t"}])


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SqlStorage]:
    with fresh_storage("postgres", tmp_path) as built:
        yield built


def _event(event_id: str, opportunity: str) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventType": "opportunity.created",
        "occurredAt": T0.isoformat(),
        "payload": {"opportunityId": opportunity},
    }


def _ready(flow: LeadFlow) -> LeadFlow:
    flow.engine()
    assert flow.sequencer is not None
    flow.sequencer.programs.refresh()
    return flow


def _said(result: HandleResult) -> tuple[Any, ...]:
    return (
        [(r.idempotency_key, r.action_type, r.ok, r.state) for r in result.executed],
        sorted(result.duplicates),
        [str(e) for e in result.all_errors()],
    )


@contextmanager
def _traced(storage: SqlStorage) -> Iterator[list[str]]:
    """The frontend messages of every pooled connection checked out meanwhile (libpq trace)."""
    found: list[str] = []
    files: list[tuple[Any, Any]] = []
    engine = storage.database.engine

    def checkout(dbapi_connection: Any, *_: Any) -> None:
        handle = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed when the block ends)
        dbapi_connection.pgconn.trace(handle.fileno())
        files.append((dbapi_connection, handle))

    sa_event.listen(engine, "checkout", checkout)
    try:
        yield found
    finally:
        sa_event.remove(engine, "checkout", checkout)
        for connection, handle in files:
            connection.pgconn.untrace()
            handle.seek(0)
            for line in handle:
                parts = line.split("\t")
                if len(parts) > 3 and parts[1] == "F":
                    found.append(parts[3].split(" ")[0].strip())
            handle.close()


def _round_trips(messages: list[str]) -> int:
    return sum(1 for m in messages if m in ("Sync", "Query"))


@pytest.mark.parametrize(
    ("rules", "expected"), [([NOTE], 2), ([TELL], 2)], ids=["activity+notify", "notify"]
)
def test_handle_with_a_notification_is_two_round_trips(
    storage: SqlStorage, rules: list[Any], expected: int
) -> None:
    """``BEGIN`` + the actions' ``INSERT``; the notification; the activity, the fact and the
    acknowledgement + ``COMMIT`` (four round trips before: ``BEGIN`` and ``COMMIT`` each on
    their own)."""
    flow = _ready(build_flow(storage=storage, rules=rules))
    reference = _ready(build_flow(rules=rules))
    flow.handle(_event("warm", "opp-2"))  # connections made, statements prepared
    reference.handle(_event("warm", "opp-2"))
    with _traced(storage) as messages:
        result = flow.handle(_event("e1", "opp-1"))
    assert _round_trips(messages) == expected, messages
    assert _said(result) == _said(reference.handle(_event("e1", "opp-1")))
    states = {a.idempotency_key: a.state.value for a in storage.scheduled.list(limit=100)}
    assert [states[r.idempotency_key] for r in result.executed] == ["done"] * len(rules[0].actions)
    # handled again: its actions found stored, nothing run twice, nothing half-written
    again = flow.handle(_event("e1", "opp-1"))
    assert _said(again) == _said(reference.handle(_event("e1", "opp-1")))
    assert again.executed == [] and len(again.duplicates) == len(rules[0].actions)


class _Tampering(RecordingNotifier):
    """Changes the lease owner of its action's row in the unit it runs in, the first time:
    the acknowledgement waiting for the commit then falls short."""

    def __init__(self, storage: SqlStorage) -> None:
        super().__init__()
        self.storage = storage
        self.tampered = 0

    def notify(self, notification: Notification) -> None:
        super().notify(notification)
        if self.tampered:
            return
        self.tampered += 1
        table = self.storage.database.tables.scheduled
        with self.storage.database.write() as connection:  # the unit's own connection
            connection.execute(
                update(table).where(table.c.action_index == 1).values(lease_owner="someone-else")
            )


def test_an_acknowledgement_that_falls_short_at_the_commit_writes_nothing(
    storage: SqlStorage,
) -> None:
    """The waiting acknowledgement expects every row: when one is no longer this worker's,
    the commit's statement fails, nothing of the unit is written, and the event is handled
    again in an ordinary unit (the notification sent again, with the same key)."""
    notifier = _Tampering(storage)
    flow = _ready(build_flow(storage=storage, rules=[NOTE], notifier=notifier))
    result = flow.handle(_event("e1", "opp-1"))
    assert notifier.tampered == 1
    assert [n.key for n in notifier.sent] == [notifier.sent[0].key] * 2  # the redo's
    assert [r.ok for r in result.executed] == [True, True] and not result.all_errors()
    stored = storage.scheduled.list(limit=10)
    worker = flow.worker_id
    assert {(a.state.value, a.lease_owner) for a in stored} == {("done", worker)}, stored
    assert len(storage.activities.for_opportunity("opp-1")) == 1


def test_connections_go_back_to_the_pool_as_psycopg_leaves_them(storage: SqlStorage) -> None:
    """After units whose ``BEGIN`` went with a statement (committed, rolled back and redone,
    failed), every connection checked in is out of autocommit and of any transaction, and
    allows nothing more (the next unit allows it again)."""
    seen: list[tuple[bool, int, bool]] = []
    engine = storage.database.engine

    def checkin(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:
            seen.append(
                (
                    dbapi_connection.autocommit,
                    int(dbapi_connection.info.transaction_status),
                    "leadflow_direct_begins" in record.info,
                )
            )

    flow = _ready(build_flow(storage=storage, rules=[NOTE, TELL]))
    sa_event.listen(engine, "checkin", checkin)
    try:
        flow.handle(_event("e1", "opp-1"))
        flow.handle(_event("e1", "opp-1"))  # a repeat: refused ahead, redone
        flow.handle_many([_event("e2", "opp-2"), _event("e3", "opp-3")])
        with pytest.raises(RuntimeError), storage.unit_of_work.deferred():  # type: ignore[attr-defined]
            storage.scheduled.mark_done_ids(["nothing"], worker="w", now=T0)  # with the BEGIN
            raise RuntimeError("a failure in the unit")
    finally:
        sa_event.remove(engine, "checkin", checkin)
    assert seen and set(seen) == {(False, 0, False)}, seen


def test_a_unit_whose_first_statement_fails_writes_nothing_and_the_next_one_works(
    storage: SqlStorage,
) -> None:
    """The first statement of ``handle``'s unit, sent with its ``BEGIN``, refused by the
    server (a rule of the database's, not leadflow's): the unit is rolled back, the event
    stored step by step is refused again and the error raised, nothing of it is written, and
    the same connections serve the next event as before."""
    table = storage.database.tables.scheduled.fullname
    with storage.database.engine.begin() as connection:
        connection.exec_driver_sql(
            f"ALTER TABLE {table} ADD CONSTRAINT refuse_bad "
            "CHECK (idempotency_key NOT LIKE 'bad/%%')"
        )
    flow = _ready(build_flow(storage=storage, rules=[TELL]))
    flow.handle(_event("warm", "opp-2"))
    with pytest.raises(DuplicateError, match="refuse_bad"):  # step by step, as before
        flow.handle(_event("bad", "opp-1"))
    assert [a.event.id for a in storage.scheduled.list(limit=10)] == ["warm"]
    with _traced(storage) as messages:
        result = flow.handle(_event("good", "opp-1"))
    assert _round_trips(messages) == 2, messages
    assert [(r.ok, r.state.value) for r in result.executed] == [(True, "done")]


def test_a_unit_keeps_the_engine_s_isolation_level(storage: SqlStorage) -> None:
    """The ``BEGIN`` sent with the first statement opens the transaction psycopg's own would
    (the engine's isolation level)."""
    url = storage.database.engine.url
    schema = storage.database.tables.scheduled.schema
    for options, level in (
        ({"isolation_level": "REPEATABLE READ"}, "repeatable read"),
        ({"isolation_level": "SERIALIZABLE"}, "serializable"),
        ({}, "read committed"),
    ):
        engine = create_engine(url, **options)  # type: ignore[arg-type]
        try:
            other = sql_storage(engine, schema=schema)
            seen: list[str] = []
            with other.unit_of_work():
                other.scheduled.list(limit=1)  # a SQLAlchemy statement: psycopg's own BEGIN
                with other.database.read() as connection:
                    seen.append(connection.exec_driver_sql("SHOW transaction_isolation").scalar())
            with other.unit_of_work.deferred():  # type: ignore[attr-defined]
                # the first statement through the driver, with the unit's BEGIN
                other.scheduled.mark_done_ids(["nothing"], worker="w", now=T0)
                with other.database.read() as connection:
                    seen.append(connection.exec_driver_sql("SHOW transaction_isolation").scalar())
            assert seen == [level, level], (options, seen)
        finally:
            engine.dispose()
