"""Opening a store from a URL: what ``--url`` accepts.

=====================================  ==================================================
``sqlite:///path/to/file.sqlite``      a SQLite file (the ``sql`` extra)
``path/to/file.sqlite``                the same: a bare path is a SQLite file
``postgresql+psycopg://user@host/db``  PostgreSQL (the ``sql`` extra); ``postgres://`` and
                                       ``postgresql://`` too (psycopg 3)
``mongodb://host/db``                  MongoDB, database ``db`` (default ``leadflow``;
                                       the ``mongo`` extra)
``memory``                             in memory, gone when the command ends
=====================================  ==================================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from ..ports import Storage
from ._base import fail

__all__ = ["SQL_SCHEMES", "OpenStore", "Target", "mongo_database", "open_store", "parse_target"]

SQL_SCHEMES: Final = ("sqlite", "postgresql", "postgres")
MONGO_SCHEMES: Final = ("mongodb", "mongodb+srv")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed ``--url``: ``kind`` is ``sql``, ``mongo`` or ``memory``; ``url`` is what the
    driver gets; ``shown`` is safe to print (no password)."""

    kind: str
    url: str
    shown: str
    sqlite_path: str | None = None


@dataclass(slots=True)
class OpenStore:
    """An opened :class:`Storage` with what it needs to close, and a printable description."""

    target: Target
    storage: Storage
    closers: list[Callable[[], object]] = field(default_factory=list)
    handle: Any = None  # the SQL database or the Mongo database, for db commands

    def close(self) -> None:
        for closer in reversed(self.closers):
            with contextlib.suppress(Exception):
                closer()
        self.closers.clear()


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def parse_target(url: str) -> Target:
    """Read a ``--url``; :class:`CliError` for one leadflow cannot open."""
    text = url.strip()
    if not text:
        fail(
            "--url is empty: give sqlite:///FILE, postgresql+psycopg://..., mongodb://... or memory"
        )
    if text in ("memory", "memory://", ":memory:"):
        return Target("memory", "memory", "memory (nothing is kept)")
    if "://" not in text:
        return Target("sql", f"sqlite:///{text}", text, sqlite_path=text)
    scheme = text.split("://", 1)[0].lower()
    base = scheme.split("+", 1)[0]
    if base in SQL_SCHEMES:
        path = None
        if base == "sqlite":
            rest = text.split("://", 1)[1]
            path = rest[1:] if rest.startswith("/") and len(rest) > 1 else None
        return Target("sql", text, _hide_password(text), sqlite_path=path)
    if scheme in MONGO_SCHEMES:
        return Target("mongo", text, _hide_password(text))
    fail(
        f"unsupported URL scheme {scheme!r}: use sqlite:///FILE, postgresql+psycopg://..., "
        "mongodb://... or memory"
    )


def mongo_database(url: str) -> tuple[Any, Callable[[], object]]:
    """The database a mongodb:// URL names and how to close its client (through
    :func:`_mongo_database`, which tests replace)."""
    return _mongo_database(url)


def _mongo_database(url: str) -> tuple[Any, Callable[[], object]]:
    """The database a mongodb:// URL names (default ``leadflow``) and how to close its
    client. Tests replace this function to use mongomock."""
    try:
        import pymongo
    except ImportError:
        fail("MongoDB needs the mongo extra: pip install 'leadflow[mongo]'")
    client: Any = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000, tz_aware=True)
    return client.get_default_database(default="leadflow"), client.close


def _relax(engine: Any) -> None:
    from sqlalchemy import event

    def synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    event.listen(engine, "connect", synchronous_normal)


def _check_revision(store: OpenStore) -> None:
    from ..stores.sql import current_revision, head_revision

    try:
        current = current_revision(store.handle)
    except BaseException:
        store.close()
        raise
    if current != head_revision():
        store.close()
        fail(
            f"the tables at {store.target.shown} are at revision {current or '(none)'}, this "
            f"leadflow needs {head_revision()}: run 'leadflow db upgrade --url URL' first"
        )


def _require_sqlite_file(target: Target) -> None:
    """Refuse a SQLite path with no file: opening it would create an empty database (a typo in
    the path would then look like a store without tables)."""
    path = (target.sqlite_path or "").split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    if not Path(path).exists():
        fail(
            f"no SQLite database at {path}: create it with 'leadflow db init --url "
            f"{target.shown}' (or check the path)"
        )


def open_store(
    url: str,
    *,
    create: bool = True,
    prefix: str | None = None,
    schema: str | None = None,
    relaxed_sqlite: bool = False,
    check: bool = True,
    must_exist: bool | None = None,
) -> OpenStore:
    """Open the store at ``url``. ``create`` brings a SQL schema to the newest revision and
    creates MongoDB's indexes (both idempotent); ``prefix`` starts table / collection names
    (default: the backend's); ``schema`` is a PostgreSQL schema. ``relaxed_sqlite`` sets
    ``PRAGMA synchronous=NORMAL`` on a SQLite file (WAL: a crash of the process loses nothing,
    a power cut may lose the last commits; the demo's choice, ten times fewer fsyncs). Without
    ``create``, a SQL schema that is not at the newest revision is a :class:`CliError` naming
    the command that fixes it (unless ``check`` is off). ``must_exist`` (default: not
    ``create``) refuses a SQLite path with no file instead of creating an empty one: only
    commands that create the schema may create the database. Missing extras and bad URLs
    are :class:`CliError`; database failures are leadflow's ``StorageError``."""
    target = parse_target(url)
    if target.kind == "sql" and (not create if must_exist is None else must_exist):
        _require_sqlite_file(target)
    if target.kind == "memory":
        from ..stores.memory import memory_storage

        return OpenStore(target, memory_storage())
    if target.kind == "sql":
        try:
            from ..stores.sql import DEFAULT_PREFIX, engine_from_url, sql_storage
        except ImportError:
            fail("SQL stores need the sql extra: pip install 'leadflow[sql]'")
        closers: list[Callable[[], object]] = []
        source: Any = target.url
        if relaxed_sqlite and target.sqlite_path is not None:
            source = engine_from_url(target.url)
            _relax(source)
            closers.append(source.dispose)
        try:
            storage = sql_storage(
                source,
                prefix=DEFAULT_PREFIX if prefix is None else prefix,
                schema=schema,
                create=create,
            )
        except BaseException:
            for closer in closers:
                closer()
            raise
        closers.append(storage.close)
        opened = OpenStore(target, storage, closers, storage.database)
        if not create and check:
            _check_revision(opened)
        return opened
    if schema is not None:
        fail("--schema is for PostgreSQL only")
    from ..stores.mongo import mongo_storage

    database, close = _mongo_database(target.url)
    try:
        mongo = mongo_storage(database, ensure_indexes=create, prefix=prefix or "")
    except BaseException:
        close()
        raise
    return OpenStore(target, mongo, [close], database)


@contextlib.contextmanager
def opened(
    url: str,
    *,
    create: bool = True,
    prefix: str | None = None,
    schema: str | None = None,
    relaxed_sqlite: bool = False,
    check: bool = True,
    must_exist: bool | None = None,
) -> Iterator[OpenStore]:
    """:func:`open_store` as a context manager that closes the store."""
    store = open_store(
        url,
        create=create,
        prefix=prefix,
        schema=schema,
        relaxed_sqlite=relaxed_sqlite,
        check=check,
        must_exist=must_exist,
    )
    try:
        yield store
    finally:
        store.close()
