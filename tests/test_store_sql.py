"""The SQL backend beyond the contracts: wiring (URLs, engines, prefixes, schemas, closing),
migrations, durability across storages, and driver errors translated into leadflow's tree."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import create_engine, exc, inspect, text
from sqlalchemy.pool import StaticPool

from leadflow import (
    DuplicateError,
    InvalidInputError,
    StorageError,
    UnavailableError,
)
from leadflow.records import ScheduledActionState
from leadflow.stores.sql import (
    SqlStorage,
    current_revision,
    head_revision,
    sql_errors,
    sql_storage,
    upgrade,
)
from leadflow.testing.contracts import (
    at,
    make_activity,
    make_enrollment,
    make_rule,
    make_scheduled_action,
    make_sequence,
    make_step_action,
)

from .sql_support import (
    POSTGRES_URL,
    fresh_storage,
    kind_params,
    on_postgres,
    postgres_engine,
    postgres_schema,
)

TABLES = {
    "activities",
    "rules",
    "scheduled_actions",
    "counters",
    "audit",
    "job_slots",
    "job_marks",
    "stamps",
    "job_values",
    "sequences",
    "enrollments",
    "enrollment_steps",
    "lead_arrivals",
    "lead_contacts",
    "status_changes",
    "completions",
    "completion_days",
    "alembic_version",
}


# --------------------------------------------------------------------------- wiring


def test_one_line_builds_every_store_on_one_in_memory_database() -> None:
    storage = sql_storage("sqlite://")
    storage.activities.add(make_activity("a1"))
    storage.rules.create(make_rule("r1"))
    storage.scheduled.schedule(make_scheduled_action("k1"))
    assert storage.counters.next("n") == 1
    assert [a.activity_id for a in storage.activities.for_opportunity("opp-1")] == ["a1"]
    assert isinstance(storage, SqlStorage)
    storage.close()


def test_a_file_database_keeps_its_data_for_the_next_storage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'leadflow.db'}"
    first = sql_storage(url)
    first.activities.add(make_activity("a1"))
    first.scheduled.schedule(make_scheduled_action("k1"))
    first.close()
    second = sql_storage(url)
    assert second.activities.get("a1").activity_id == "a1"
    assert [a.action_id for a in second.scheduled.list()] == ["sa-k1"]
    second.close()


def test_tables_carry_the_prefix_and_prefixes_keep_storages_apart(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    crm = sql_storage(engine, prefix="crm_")
    other = sql_storage(engine, prefix="")
    crm.activities.add(make_activity("a1"))
    assert other.activities.list().items == []
    names = set(inspect(engine).get_table_names())
    assert {f"crm_{name}" for name in TABLES} <= names
    assert names >= TABLES
    indexes = {i["name"] for i in inspect(engine).get_indexes("crm_activities")}
    assert "crm_activities_open_key" in indexes and "crm_activities_open_due" in indexes
    engine.dispose()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"prefix": "Bad-Prefix"}, "prefix"),
        ({"prefix": "x" * 31}, "prefix"),
        ({"prefix": 3}, "prefix"),
        ({"schema": "crm"}, "schema"),  # SQLite has no schemas
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        sql_storage("sqlite://", **options)
    assert refused.value.field == field


def test_bad_targets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        sql_storage(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        sql_storage("not a url")
    with pytest.raises(InvalidInputError):  # each connection would see its own empty database
        sql_storage(create_engine("sqlite://"))


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://u:p@db.example/crm", "postgresql+psycopg"),
        ("postgresql://u:p@db.example/crm", "postgresql+psycopg"),
        ("postgres+psycopg://u@db.example/crm", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db.example/crm", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_plain_postgres_urls_use_the_psycopg_driver(url: str, driver: str) -> None:
    """The URLs hosting providers hand out (postgres://, postgresql://) get psycopg 3, the
    driver the sql extra installs, instead of a plugin or import error."""
    from leadflow.stores.sql import engine_from_url

    engine = engine_from_url(url)  # no connection is made
    try:
        assert engine.url.drivername == driver
        assert engine.url.database == ("crm" if driver != "sqlite" else "x.db")
    finally:
        engine.dispose()


def test_a_sqlite_file_url_gets_wal_temporary_data_in_memory_and_full_sync(
    tmp_path: Path,
) -> None:
    """An engine made from a file URL: WAL, temporary data (statement journals) in memory
    instead of a new temporary file per ``handle`` (its activity insert's journal), a
    checkpoint every 4,000 pages of log instead of 1,000, and SQLite's default
    ``synchronous=FULL`` kept: every connection of the pool, not just the first."""
    storage = sql_storage(f"sqlite:///{tmp_path / 'pragmas.db'}")
    engine = storage.database.engine
    try:
        with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                pragma = connection.exec_driver_sql
                assert pragma("PRAGMA journal_mode").scalar() == "wal"
                assert pragma("PRAGMA temp_store").scalar() == 2  # MEMORY
                assert pragma("PRAGMA synchronous").scalar() == 2  # FULL
                assert pragma("PRAGMA wal_autocheckpoint").scalar() == 4000
    finally:
        storage.close()


@on_postgres
def test_sql_storage_opens_a_postgres_url() -> None:
    from sqlalchemy import make_url

    assert POSTGRES_URL is not None
    plain = make_url(POSTGRES_URL).set(drivername="postgres")
    with postgres_schema() as (_engine, schema):
        url = plain.render_as_string(hide_password=False)
        assert url.startswith("postgres://")
        storage = sql_storage(url, schema=schema)
        try:
            storage.activities.add(make_activity("a1"))
            assert storage.activities.get("a1").activity_id == "a1"
        finally:
            storage.close()


def test_an_engine_passed_in_is_never_disposed(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    disposed: list[bool] = []
    monkeypatch.setattr(engine, "dispose", lambda *a, **k: disposed.append(True))
    storage = sql_storage(engine)
    storage.activities.add(make_activity("a1"))
    storage.close()
    assert disposed == []
    with engine.connect() as connection:  # the host's data is still there
        assert connection.execute(text("SELECT count(*) FROM leadflow_activities")).scalar() == 1


def test_an_engine_made_from_a_url_is_disposed_by_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = sql_storage(f"sqlite:///{tmp_path / 'x.db'}")
    disposed: list[bool] = []
    monkeypatch.setattr(storage.database.engine, "dispose", lambda *a, **k: disposed.append(True))
    storage.close()
    assert disposed == [True]


def test_two_storages_on_one_file_claim_disjoint_actions(tmp_path: Path) -> None:
    """Two engines (as two processes would have) share one SQLite file: BEGIN IMMEDIATE and
    the busy timeout keep their claims apart."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    storages = [sql_storage(url), sql_storage(url)]
    for n in range(60):
        storages[0].scheduled.schedule(make_scheduled_action(f"k{n:02d}"))
    claimed: list[list[str]] = [[], [], [], []]

    def work(n: int) -> None:
        store = storages[n % 2].scheduled
        while batch := store.claim_due(at(hours=1), worker=f"w{n}", limit=4):
            claimed[n].extend(a.action_id for a in batch)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for ids in claimed for i in ids]
    assert sorted(everything) == sorted(f"sa-k{n:02d}" for n in range(60))
    assert storages[1].scheduled.list(ScheduledActionState.PENDING) == []
    for storage in storages:
        storage.close()


@on_postgres
def test_two_instances_scheduling_one_key_at_once_see_one_stored_action() -> None:
    """Two instances (two engines, as two processes have) handling one event race on the same
    idempotency key, and so on the same derived action id: one stores it, the other gets it
    back as already stored, never an error (the race can hit the primary key before the key's
    own unique index)."""
    from sqlalchemy import create_engine

    with postgres_schema() as (engine, schema):
        other = create_engine(engine.url)
        first, second = sql_storage(engine, schema=schema), sql_storage(other, schema=schema)
        results: list[object] = []
        try:
            for n in range(300):
                barrier = threading.Barrier(2)
                action = make_scheduled_action(f"race-{n}")

                def race(store: Any, action: Any = action, barrier: Any = barrier) -> None:
                    barrier.wait()
                    try:
                        results.append(store.scheduled.schedule(action)[1])
                    except Exception as error:  # reported below
                        results.append(error)

                threads = [threading.Thread(target=race, args=(s,)) for s in (first, second)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
        finally:
            first.close()
            second.close()
            other.dispose()
        errors = [r for r in results if isinstance(r, Exception)]
        assert errors == []
        assert sorted(results, key=bool) == [False] * 300 + [True] * 300  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", kind_params())
def test_sequences_and_enrollments_join_the_unit_of_work(kind: str, tmp_path: Path) -> None:
    with fresh_storage(kind, tmp_path) as storage:
        sequences, enrollments = storage.sequences, storage.enrollments
        assert sequences is not None and enrollments is not None
        stamp = sequences.stamp()

        class Boom(Exception):
            pass

        with pytest.raises(Boom), storage.unit_of_work():
            sequences.add(make_sequence("s1"))
            assert sequences.get("s1").version == 1  # reads inside see the unit's writes
            enrollments.enroll(make_enrollment("e1", sequence_id="s1"))
            storage.scheduled.schedule(make_step_action("k1", rule_id="s1", enrollment_id="e1"))
            assert [e.enrollment_id for e in enrollments.active_for("opp-1")] == ["e1"]
            raise Boom
        assert sequences.list() == [] and sequences.stamp() == stamp
        assert enrollments.list() == [] and storage.scheduled.list() == []
        with storage.unit_of_work():
            sequences.add(make_sequence("s1"))
            first, _ = enrollments.enroll(make_enrollment("e1", sequence_id="s1"))
            enrollments.update(first.model_copy(update={"visit": 1}))
            storage.scheduled.schedule(make_step_action("k1", rule_id="s1", enrollment_id="e1"))
        assert sequences.stamp() != stamp
        assert enrollments.get("e1").revision == 2
        assert storage.scheduled.get("sa-k1").enrollment_id == "e1"


# --------------------------------------------------------------------------- migrations


def _schema_of(engine: Any, schema: str | None = None) -> dict[str, Any]:
    inspector = inspect(engine)
    return {
        table: (
            [c["name"] for c in inspector.get_columns(table, schema=schema)],
            sorted(i["name"] for i in inspector.get_indexes(table, schema=schema)),
        )
        for table in inspector.get_table_names(schema=schema)
    }


def test_upgrade_twice_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert upgrade(url) == head_revision()
    engine = create_engine(url)
    before = _schema_of(engine)
    assert upgrade(engine) == head_revision()
    assert upgrade(engine, prefix="leadflow_") == head_revision()
    assert _schema_of(engine) == before
    with engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM leadflow_alembic_version"))
        assert [row[0] for row in versions] == [head_revision()]
    storage = sql_storage(engine, create=False)
    assert current_revision(storage.database) == head_revision()
    engine.dispose()


def test_without_create_a_missing_schema_is_a_storage_error() -> None:
    storage = sql_storage("sqlite://", create=False)
    assert current_revision(storage.database) is None
    with pytest.raises(StorageError) as failed:
        storage.activities.get("a1")
    assert not isinstance(failed.value, UnavailableError)
    assert isinstance(failed.value.__cause__, exc.OperationalError)


def _diff(connection: Any, storage: SqlStorage) -> list[Any]:
    tables = storage.database.tables
    context = MigrationContext.configure(
        connection,
        opts={
            "version_table": tables.version_table,
            "version_table_schema": tables.schema,
            "include_schemas": tables.schema is not None,
            "include_name": lambda name, kind, parent: kind != "schema" or name == tables.schema,
        },
    )
    return list(compare_metadata(context, tables.metadata))


@pytest.mark.parametrize("kind", [p for p in kind_params() if "memory" not in str(p)])
def test_the_migrated_schema_equals_the_tables(kind: str, tmp_path: Path) -> None:
    with fresh_storage(kind, tmp_path) as storage, storage.database.engine.connect() as connection:
        assert _diff(connection, storage) == []


@on_postgres
def test_postgres_tables_live_in_the_chosen_schema() -> None:
    with postgres_schema() as (engine, schema):
        storage = sql_storage(engine, schema=schema, prefix="crm_")
        storage.activities.add(make_activity("a1"))
        assert {f"crm_{name}" for name in TABLES} == set(
            inspect(engine).get_table_names(schema=schema)
        )
        assert upgrade(engine, schema=schema, prefix="crm_") == head_revision()
        again = sql_storage(engine, schema=schema, prefix="crm_")
        assert again.activities.get("a1").activity_id == "a1"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
            UnavailableError,
        ),
        (
            exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error")),
            UnavailableError,
        ),
        (
            exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: x")),
            StorageError,
        ),
        (
            exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")),
            UnavailableError,
        ),
        (
            exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")),
            UnavailableError,
        ),
        (exc.TimeoutError("QueuePool limit reached"), UnavailableError),
        (
            exc.IntegrityError(
                "INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed: t.x")
            ),
            DuplicateError,
        ),
        (exc.DataError("INSERT", {}, Exception("value too long")), InvalidInputError),
        (exc.ProgrammingError("SELECT", {}, Exception("syntax error")), StorageError),
        (exc.NoSuchColumnError("x"), StorageError),
    ],
)
def test_driver_errors_are_translated(error: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as raised, sql_errors("activity"):
        raise error
    assert raised.value.__cause__ is error
    if expected is StorageError:
        assert not isinstance(raised.value, UnavailableError)


def test_a_locked_database_is_unavailable_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    sql_storage(f"sqlite:///{path}").close()
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    storage = sql_storage(engine)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        with pytest.raises(UnavailableError) as refused:
            storage.activities.add(make_activity("a1"))
        assert isinstance(refused.value.__cause__, exc.OperationalError)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert storage.activities.list().items == []
    storage.activities.add(make_activity("a1"))  # the lock is gone: works again
    engine.dispose()


def test_a_lost_connection_is_unavailable_then_recovers() -> None:
    storage = sql_storage("sqlite://")
    storage.activities.add(make_activity("a1"))
    raw = storage.database.engine.raw_connection()
    raw.dbapi_connection.close()  # type: ignore[union-attr]  # the connection dies under the pool
    with pytest.raises(UnavailableError) as lost:
        storage.activities.get("a1")
    assert isinstance(lost.value.__cause__, exc.DBAPIError)
    assert lost.value.__cause__.connection_invalidated
    # The pool replaced the connection (an in-memory database starts empty again).
    with pytest.raises(StorageError):
        storage.activities.get("a1")


@on_postgres
def test_postgres_terminated_connections_are_unavailable_then_reconnect() -> None:
    with postgres_schema() as (_, schema):
        from .sql_support import POSTGRES_URL

        assert POSTGRES_URL is not None
        engine = create_engine(POSTGRES_URL, connect_args={"application_name": schema})
        storage = sql_storage(engine, schema=schema)
        storage.activities.add(make_activity("a1"))
        with postgres_engine().begin() as admin:
            admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": schema},
            )
        with pytest.raises(UnavailableError) as lost:
            storage.activities.get("a1")
        assert isinstance(lost.value.__cause__, exc.OperationalError)
        assert storage.activities.get("a1").activity_id == "a1"  # reconnected
        engine.dispose()


@on_postgres
def test_postgres_refuses_a_nul_character_as_bad_input() -> None:
    with postgres_schema() as (engine, schema):
        storage = sql_storage(engine, schema=schema)
        with pytest.raises(ValidationError):  # refused by the model, on every backend
            make_activity("a1", description="nul \x00 here")
        with pytest.raises(ValidationError):  # a changed copy is validated like a new record
            make_activity("a1").model_copy(update={"description": "nul \x00 here"})
        # Only leadflow's own unchecked shortcut carries it: the store still refuses it.
        smuggled = make_activity("a1")._evolve(description="nul \x00 here")
        with pytest.raises((InvalidInputError, ValidationError)):
            storage.activities.add(smuggled)
        assert storage.activities.list().items == []
