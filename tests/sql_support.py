"""SQL test infrastructure: fresh databases on SQLite (memory, a file) or on a PostgreSQL server
when ``LEADFLOW_TEST_POSTGRES_URL`` is set (each test in a schema of its own, dropped
afterwards), and the skip mark for the server variants."""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import StaticPool

from leadflow.stores.sql import SqlStorage, sql_storage

POSTGRES_URL = os.environ.get("LEADFLOW_TEST_POSTGRES_URL")
NEEDS_SERVER = (
    "set LEADFLOW_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres) "
    "to run against a real PostgreSQL server"
)
# One skip mark (rather than a skip at run time) folds into one summary line.
on_postgres = pytest.mark.skipif(POSTGRES_URL is None, reason=NEEDS_SERVER)
KINDS = ("sqlite-memory", "sqlite-file", "postgres")

_engines: dict[str, Engine] = {}


def postgres_engine() -> Engine:
    """One engine per test session (its pool is shared by the tests)."""
    assert POSTGRES_URL is not None
    if "postgres" not in _engines:
        _engines["postgres"] = create_engine(POSTGRES_URL, pool_size=10, max_overflow=10)
    return _engines["postgres"]


@contextmanager
def postgres_schema() -> Iterator[tuple[Engine, str]]:
    """A new, empty schema on the test server, dropped afterwards."""
    engine = postgres_engine()
    schema = f"lf_test_{uuid.uuid4().hex[:12]}"
    try:
        yield engine, schema
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


_templates: dict[str, Path] = {}


def _template_file() -> Path:
    """A SQLite file this test process migrated to the newest revision once (closed, so its
    write-ahead log is checkpointed into it): copying it is a fresh, migrated database without
    running the migrations again for every test."""
    if "file" not in _templates:
        folder = Path(tempfile.mkdtemp(prefix="leadflow-template-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "template.db"
        sql_storage(f"sqlite:///{path}").close()
        _templates["file"] = path
    return _templates["file"]


def _memory_engine() -> Engine:
    """An in-memory SQLite database holding the migrated schema (copied from the template with
    SQLite's backup API), as the one shared connection leadflow needs (``StaticPool``)."""
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    template = sqlite3.connect(_template_file())
    try:
        template.backup(connection)
    finally:
        template.close()
    return create_engine("sqlite://", poolclass=StaticPool, creator=lambda: connection)


@contextmanager
def fresh_storage(kind: str, tmp_path: Path, **options: object) -> Iterator[SqlStorage]:
    """A new :class:`SqlStorage` on an empty database of ``kind`` (see :data:`KINDS`).

    With the default options, the SQLite kinds start from a copy of a database migrated once
    per test process (what ``sql_storage`` would build, without running every migration per
    test); ``sql_storage`` still checks the copy's revision. Migrations have tests of their
    own (tests/test_sql_migrations.py)."""
    if kind == "sqlite-memory" and not options:
        engine = _memory_engine()
        try:
            storage = sql_storage(engine)
            try:
                yield storage
            finally:
                storage.close()
        finally:
            engine.dispose()
        return
    if kind == "sqlite-memory":
        storage = sql_storage("sqlite://", **options)  # type: ignore[arg-type]
    elif kind == "sqlite-file":
        path = tmp_path / f"{uuid.uuid4().hex[:8]}.db"
        if not options:
            shutil.copyfile(_template_file(), path)
        storage = sql_storage(f"sqlite:///{path}", **options)  # type: ignore[arg-type]
    elif kind == "postgres":
        with postgres_schema() as (engine, schema):
            storage = sql_storage(engine, schema=schema, **options)  # type: ignore[arg-type]
            try:
                yield storage
            finally:
                storage.close()
        return
    else:  # pragma: no cover - a typo in a test
        raise ValueError(kind)
    try:
        yield storage
    finally:
        storage.close()


def kind_params() -> list[object]:
    """``KINDS`` as pytest parameters, the server one skipped without a server."""
    return [
        pytest.param("sqlite-memory", id="sqlite-memory"),
        pytest.param("sqlite-file", id="sqlite-file"),
        pytest.param("postgres", id="postgres", marks=on_postgres),
    ]


@pytest.fixture(
    name="sql",
    params=[
        pytest.param("sqlite-file", id="sqlite-file"),
        pytest.param("postgres", id="postgres", marks=on_postgres),
    ],
)
def sql_file_or_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    """The fixture ``sql``: fresh storage on a SQLite file, and on the test server when there
    is one. A test module takes it by importing this function."""
    with fresh_storage(str(request.param), tmp_path) as found:
        yield found
