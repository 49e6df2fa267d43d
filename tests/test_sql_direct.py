"""Hot statements through the driver (``leadflow.stores.sql.direct``): what they store reads
back as SQLAlchemy's path stores it, the engine's cursor events see them, a driver error is
mapped to leadflow's errors as before, and the many-row ``unnest`` form stores what one by one
stores. SQLite in memory and in a file, PostgreSQL when a server is set."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow import DuplicateError, InvalidInputError
from leadflow.clock import ensure_utc
from leadflow.stores.sql import SqlStorage
from leadflow.stores.sql.direct import DriverStatement
from leadflow.stores.sql.errors import sql_errors
from leadflow.stores.sql.scheduled import SqlScheduledActionStore
from leadflow.stores.sql.types import (
    decode_document,
    document_from_text,
    document_text,
    encode_document,
    micros,
    utc_value,
)
from leadflow.testing.contracts import at, make_delivery, make_scheduled_action

from .sql_support import fresh_storage, kind_params


@pytest.fixture(params=kind_params())
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    with fresh_storage(request.param, tmp_path) as built:
        yield built


ARRIVAL: dict[str, Any] = {
    "opportunity_id": "o",
    "event_id": "e",
    "arrived_at": at(),
    "source": None,
    "owner": None,
}


def _arrival_insert(storage: SqlStorage) -> tuple[sa.Table, DriverStatement]:
    table = storage.database.tables.arrivals
    engine = storage.database.engine
    insert = sa.insert(table).returning(table.c.event_id)
    return table, DriverStatement(engine.dialect, insert)


def test_a_scheduled_action_reads_back_as_it_was_stored(storage: SqlStorage) -> None:
    """The store's ``schedule`` runs through the driver: documents (with datetimes inside),
    times and the rest read back equal, through SQLAlchemy's path."""
    when = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    plain = make_scheduled_action("doc", due_at=at())
    event = plain.event.model_copy(update={"payload": {"when": when, "n": [1, "x"]}})
    action = plain.model_copy(update={"event": event})
    stored, created = storage.scheduled.schedule(action)
    assert created
    back = storage.scheduled.get(stored.action_id)
    assert back == stored
    assert back.event.payload["when"] == when.astimezone(UTC)
    assert storage.scheduled.schedule(action) == (back, False)


def test_the_cursor_events_see_the_statement(storage: SqlStorage) -> None:
    _, statement = _arrival_insert(storage)
    seen: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        seen.append((sql, params))
        context.span = sql  # what a tracer keeps on the context until after_cursor_execute

    def after(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        ended.append(context.span)

    engine = storage.database.engine
    ended: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    try:
        with storage.database.write() as connection:
            rows = statement.run(
                connection,
                ARRIVAL,
            )
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "after_cursor_execute", after)
    assert rows == [("e",)]
    assert [sql for sql, _ in seen if sql != "BEGIN IMMEDIATE"] == [statement.sql]
    assert ended[-1] == statement.sql


@pytest.mark.parametrize("where", ["class", "connection"])
def test_cursor_listeners_anywhere_see_the_statement(
    storage: SqlStorage, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cursor hook listened to on the ``Engine`` class (as a tracer may) or on one
    connection sees the statements sent through the driver, as one on the engine does
    (the test above): the statements look for listeners where SQLAlchemy does."""
    _, statement = _arrival_insert(storage)
    seen: list[str] = []

    def before(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        seen.append(sql)

    # Listening on the class marks every engine as listened to: put back at the end.
    monkeypatch.setattr(sa.Engine, "_has_events", sa.Engine._has_events)
    with storage.database.write() as connection:
        target: Any = sa.Engine if where == "class" else connection
        sa.event.listen(target, "before_cursor_execute", before)
        try:
            statement.run(connection, ARRIVAL)
        finally:
            sa.event.remove(target, "before_cursor_execute", before)
    assert statement.sql in seen


def test_a_unique_violation_is_a_duplicate_error(storage: SqlStorage) -> None:
    table, statement = _arrival_insert(storage)
    values = ARRIVAL
    with storage.database.write() as connection:
        statement.run(connection, values)
    with (
        pytest.raises(DuplicateError, match="unique constraint"),
        sql_errors("arrival"),
        storage.database.write() as connection,
    ):
        statement.run(connection, values)
    with storage.database.read() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    assert count == 1


def test_a_naive_datetime_is_refused_before_anything_is_sent(storage: SqlStorage) -> None:
    _, statement = _arrival_insert(storage)
    with pytest.raises(InvalidInputError, match="naive"):
        statement.parameters(ARRIVAL | {"arrived_at": datetime(2026, 1, 1)})


def test_mark_done_ids_on_many_ids_is_one_statement(storage: SqlStorage) -> None:
    """The acknowledgement's ids travel as one parameter (an array on PostgreSQL, a JSON array
    on SQLite): 150 ids, one statement, only the claimed ones marked."""
    store = storage.scheduled
    for n in range(150):
        store.schedule(make_scheduled_action(f"m{n}", due_at=at()))
    store.schedule(make_scheduled_action("later", due_at=at(hours=5)))
    claimed = store.claim_due(at(), worker="w", limit=150, lease=timedelta(hours=1))
    assert len(claimed) == 150
    asked = [a.action_id for a in claimed] + ["sa-unknown", "sa-later"]
    statements: list[str] = []
    engine = storage.database.engine
    scheduled = storage.scheduled
    assert isinstance(scheduled, SqlScheduledActionStore)

    def count(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        if sql != "BEGIN IMMEDIATE":  # SQLite's write lock
            statements.append(sql)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        done = scheduled.mark_done_ids(asked, worker="w", now=at(minutes=1))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert done == [a.action_id for a in claimed]
    assert len(statements) == 1
    assert store.get("sa-later").state.value == "pending"
    assert {store.get(i).state.value for i in done} == {"done"}


def test_schedule_many_stores_what_schedule_stores(tmp_path: Path, storage: SqlStorage) -> None:
    """Rows of every shape (a delivery without a rule or action, a document holding a
    datetime, a claimed action with a lease) through ``schedule_many`` (on PostgreSQL one
    ``unnest`` statement) read back as ``schedule`` one by one stores them; a key already
    stored is not inserted again."""
    when = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=-5)))
    plain = make_scheduled_action("p", due_at=at())
    event = plain.event.model_copy(update={"payload": {"when": when, "n": [1, None, "x"]}})
    actions = [
        plain.model_copy(update={"event": event}),
        make_delivery("d", due_at=at(minutes=3)),
        make_scheduled_action(
            "c",
            due_at=at(),
            state="claimed",
            lease_owner="w",
            lease_expires_at=at(hours=1),
            explanation="why",
        ),
    ]
    scheduled = storage.scheduled
    assert isinstance(scheduled, SqlScheduledActionStore)
    assert scheduled.schedule_many(actions) == [True, True, True]
    with fresh_storage("sqlite-memory", tmp_path) as reference:
        for action in actions:
            reference.scheduled.schedule(action)
        expected = [reference.scheduled.get(a.action_id) for a in actions]
    assert [scheduled.get(a.action_id) for a in actions] == expected
    assert scheduled.schedule_many([*actions[:1], make_scheduled_action("new")]) == [False, True]


def test_a_batch_of_123_actions_stores_each_once(storage: SqlStorage) -> None:
    """123 actions, 5 of them stored before and one whose id an action with another key
    holds: ``schedule_many`` says which it created, in one statement on PostgreSQL; on SQLite
    in two (the keys and ids already held, then one ``executemany`` of the others)."""
    scheduled = storage.scheduled
    assert isinstance(scheduled, SqlScheduledActionStore)
    actions = [make_scheduled_action(f"b{n:03}", due_at=at()) for n in range(123)]
    for action in actions[:5]:
        scheduled.schedule(action)
    scheduled.schedule(
        make_scheduled_action("holder", due_at=at(), action_id=actions[60].action_id)
    )
    statements: list[str] = []

    def count(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        if sql != "BEGIN IMMEDIATE":
            statements.append(sql)

    engine = storage.database.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        created = scheduled.schedule_many(actions)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert created == [False] * 5 + [True] * 55 + [False] + [True] * 62
    assert len(statements) == (1 if storage.database.dialect == "postgresql" else 2)
    stored = scheduled.list(limit=200)
    expected = [a.idempotency_key for a in actions if a is not actions[60]] + ["holder"]
    assert sorted(a.idempotency_key for a in stored) == sorted(expected)
    assert all(scheduled.get(a.action_id) == a for a in actions[5:] if a is not actions[60])


@pytest.mark.parametrize("size", [1, 2, 8, 9])
def test_a_few_actions_are_one_statement(storage: SqlStorage, size: int) -> None:
    """``schedule_many`` of a few actions (one event's, in ``handle``), one stored before and
    one whose id an action with another key holds: which it created, and on PostgreSQL one
    statement, a multi-row ``VALUES`` with PostgreSQL's own placeholders up to 8 rows (the
    cursor events see it as sent), ``unnest`` beyond; on SQLite the one-row ``INSERT`` per
    row up to 8 (then what is held read first, and one ``executemany``)."""
    scheduled = storage.scheduled
    assert isinstance(scheduled, SqlScheduledActionStore)
    actions = [
        make_scheduled_action(f"f{n}", due_at=at(minutes=n), explanation=f"why {n}")
        for n in range(size)
    ]
    scheduled.schedule(actions[0])
    if size > 1:
        holder = make_scheduled_action("holder", due_at=at(), action_id=actions[-1].action_id)
        scheduled.schedule(holder)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        if sql != "BEGIN IMMEDIATE":
            statements.append(sql)

    engine = storage.database.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        created = scheduled.schedule_many(actions)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    expected = [False] + [True] * (size - 2) + [False] * (size > 1)
    assert created == expected
    if storage.database.dialect == "postgresql":
        assert len(statements) == 1
        assert ("unnest" in statements[0]) == (size > 8)
        assert ("$1::VARCHAR" in statements[0]) == (size <= 8)
    else:
        assert len(statements) == (size if size <= 8 else 2)
    for action, fresh in zip(actions, created, strict=True):
        if fresh:
            assert scheduled.get(action.action_id) == action
    assert scheduled.schedule_many(actions) == [False] * size


def test_sqlite_acknowledges_by_primary_key(tmp_path: Path) -> None:
    """SQLite's acknowledgement looks each id up by the primary key, not through the state
    index (which would read every claimed action and probe the id list)."""
    with fresh_storage("sqlite-file", tmp_path) as storage:
        scheduled = storage.scheduled
        assert isinstance(scheduled, SqlScheduledActionStore)
        sql = scheduled._w.done_ids_direct.sql
        with storage.database.engine.connect() as connection:
            plan = connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + sql, ("done", None, 1, 1, '["a"]', "w")
            ).all()
    searches = [row[3] for row in plan if "leadflow_scheduled_actions" in row[3]]
    assert searches and all("(action_id=?)" in step for step in searches), plan


def test_document_text_is_the_text_of_the_encoded_document() -> None:
    """The driver path's JSON text (one pass of the C encoder, datetimes tagged on the way)
    is the text ``json.dumps`` gives of :func:`encode_document`, what SQLAlchemy's path sends;
    anything else JSON cannot hold is still refused."""
    east = timezone(timedelta(hours=-5))
    documents: list[Any] = [
        None,
        "text",
        3,
        1.5,
        [],
        {},
        datetime(2026, 3, 1, 7, tzinfo=east),
        {"a": 1, "when": datetime(2026, 3, 1, 12, 30, 0, 17, tzinfo=UTC), "x": None},
        {"nested": [{"at": datetime(2026, 3, 1, tzinfo=east)}, [at(), "é", True]], "k": {}},
        [[[datetime(2030, 1, 1, tzinfo=UTC)]], {"$other": "kept", "n": -0.25}],
    ]
    for document in documents:
        assert document_text(document) == json.dumps(encode_document(document))
        assert decode_document(json.loads(document_text(document))) == (
            document.astimezone(UTC) if isinstance(document, datetime) else document
        )
    with pytest.raises(TypeError):
        document_text({"a": {1, 2}})


_keys = st.text(alphabet="ab$é.\x00 ", min_size=0, max_size=3)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
    | st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    )
)
_documents = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=16,
)


@settings(max_examples=300, deadline=None)
@given(_documents)
def test_document_from_text_is_the_two_pass_decode(document: Any) -> None:
    """The claim's one-pass decode (the C decoder calling back per object) gives what the
    JSON parse followed by :func:`decode_document` gives, for any JSON-like document with
    datetimes anywhere (the top level included), from text or UTF-8 bytes."""
    text = document_text(document)
    expected = decode_document(json.loads(text))
    assert document_from_text(text) == expected == document
    assert document_from_text(text.encode()) == expected


class _Moment(datetime):
    """A datetime subclass (as some libraries hand out): the short way is for plain ones."""


_zones = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(0))])


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_zones | st.none()
    ),
    st.booleans(),
)
def test_utc_value_answers_as_ensure_utc(value: datetime, subclass: bool) -> None:
    """The driver path's datetime check (a short way for plain UTC datetimes within the
    limits) gives what :func:`~leadflow.clock.ensure_utc` gives: the same UTC datetime, the
    same refusal (naive, beyond the limits) with the same message, and the same microseconds
    on SQLite (:func:`micros`, now with its unit built once)."""
    if subclass:
        value = _Moment.fromisoformat(value.isoformat())
    try:
        expected: datetime | str = ensure_utc(value)
    except InvalidInputError as error:
        expected = str(error)
    try:
        got: datetime | str = utc_value(value)
    except InvalidInputError as error:
        got = str(error)
    assert got == expected
    if isinstance(got, datetime):
        assert got.tzinfo is UTC
        assert micros(got) == (got - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
