"""One database as the SQL stores use it: the engine, the tables, and how a store method gets a
connection in a read or a write transaction on either engine.

**PostgreSQL** (psycopg 3): the atomic steps are single statements (``UPDATE ... WHERE version
= ...``, ``INSERT ... ON CONFLICT``, ``FOR UPDATE SKIP LOCKED`` claims), which READ COMMITTED
makes safe. A method whose statements need no transaction around them (reads, and writes whose
statements each stand on their own: :meth:`SqlDatabase.write` with ``atomic=False``) runs on a
connection in autocommit (``isolation_level="AUTOCOMMIT"``, switched on the client, reset when
the connection goes back to the pool): one round trip per statement instead of BEGIN,
statement, COMMIT. At READ COMMITTED every statement takes its own snapshot anyway, so a
transaction around such statements would add round trips and nothing else. The rest (an add
that checks an open key first, job slots, migrations) run in one transaction.

**SQLite**: a write runs in ``BEGIN IMMEDIATE``, which takes the database's write lock at once,
so a transaction never finds after reading that it may not write; another process holding the
lock is waited for up to the connection's busy timeout (pysqlite's ``timeout``: 5 s by default,
30 s on engines built here from a URL), after which the call fails with
:class:`~leadflow.UnavailableError`. Within one process, writers queue on a lock first rather
than spin in SQLite's busy handler. An in-memory database is one connection shared by every
store (a ``StaticPool``), so every call, read or write, takes that lock.

**A unit of work** (:meth:`SqlDatabase.unit`, the storage's ``unit_of_work``) is one
connection in one transaction (``BEGIN IMMEDIATE`` on SQLite, under the process's write lock)
that every :meth:`~SqlDatabase.write` and :meth:`~SqlDatabase.read` of the calling context
(a ``contextvars`` variable) uses until the block ends: committed once when it ends without an
exception, rolled back otherwise. Inside it ``atomic=False`` changes nothing: the statements
run in the unit's transaction. After a statement failed inside a unit, PostgreSQL can only
roll the transaction back: a caller that catches a store error inside a unit must not expect
to go on writing in it (the runtime's planner handles the event again step by step instead).
On PostgreSQL a write whose result nobody reads may wait in a unit (:meth:`SqlDatabase.later`:
``handle``'s analytic fact) and go with the next statement, or before the commit; its failure
then fails that store call or the commit, and the unit is rolled back all the same. On
SQLite the rows a batch inserts may be held in a unit (:meth:`SqlDatabase.hold`,
:mod:`.held`) until a statement could read them, or the commit.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from contextvars import ContextVar
from typing import Any, Final

from sqlalchemy import URL, Connection, Engine, create_engine, event, exc, make_url
from sqlalchemy.pool import StaticPool

from ...errors import InvalidInputError
from . import held as held_rows
from . import later as waiting_writes
from .direct import DriverStatement, drop_later, execute, finish_later, flush_later, run_later
from .errors import sql_errors
from .tables import DEFAULT_PREFIX, Tables, build_tables

__all__ = [
    "SQLITE_CHECKPOINT_PAGES",
    "SQLITE_FILE_PRAGMAS",
    "SqlDatabase",
    "SqlUnitOfWork",
    "engine_from_url",
    "with_driver",
]

_SCHEMA: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")
_DIALECTS: Final = ("sqlite", "postgresql")
_MOST_WAITING: Final = 32
"""Writes that wait together in a deferred unit (:meth:`SqlDatabase.defer`); more go first.
(A statement carries at most 65,535 parameters: 32 rows of a few dozen stay far below.)"""
SQLITE_BUSY_TIMEOUT: Final = 30.0
"""Seconds a connection made here from a ``sqlite:`` URL waits for another writer."""
SQLITE_CHECKPOINT_PAGES: Final = 4000
"""The WAL's length, in pages, past which a commit copies the log into the database file
(SQLite's automatic checkpoint; its default is 1,000). Every commit writes each page it
changed to the log (one frame each: ``handle`` about 40, one per table and index an event
touches); a checkpoint then reads the latest frame of each page and writes it into the file,
and flushes it. The longer the log between checkpoints, the more often the same page (an
index's last leaf, an inner page, the header) was written more than once, and is copied
once: per ``handle`` event about 102 -> 94 ``pwrite`` and 28 -> 19 ``pread`` calls, 1.12 ->
1.03 flushes (``strace``, 1,000 events). The price: the log file grows to about 16 MB
instead of 4 (and stays that long; it is reused), a checkpoint happens about every 90 events
instead of 23 and takes that much longer, and opening a database after a crash reads a
longer log. What a commit guarantees is unchanged: each still flushes the log
(``synchronous=FULL``)."""
SQLITE_FILE_PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA temp_store=MEMORY",
    f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}",
)
"""Set on every connection of an engine made here for a SQLite file (a host's engine is left
alone). WAL: readers do not wait for the writer. ``temp_store=MEMORY``: SQLite's temporary
data stays in memory instead of a temporary file; its statement journals above all. In a
transaction of several statements (a unit of work), a statement that may fail half-way keeps
the first version of every page it changes, so that a failure undoes only its own part; past
64 KiB that journal goes to a new, unlinked file: ``handle``'s activity insert (the table and
its 16 indexes, a 4 KiB page each) crossed it on every event, an ``open``, ``unlink`` and
about 30 ``pwrite`` calls of an event's CPU. The data is the same, only where it waits
changes; nothing temporary is durable, so ``synchronous`` (FULL, SQLite's default) and what a
commit guarantees are unchanged. The price: a statement's temporary data (that journal, a
sort no index serves) takes memory instead of a file; leadflow's writes change a bounded
number of rows per statement (a batch of at most 1,000 actions). ``wal_autocheckpoint``: see
:data:`SQLITE_CHECKPOINT_PAGES`. The rest is left at SQLite's defaults on purpose
(``synchronous=FULL``, no ``journal_size_limit``: the log is overwritten in place, which
flushes cheaper than a longer file; the page size, cache and ``mmap_size``, which measured no
better): docs/sql.md, "SQLite settings"."""


def _in_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in str(url.query.get("mode", ""))


def with_driver(url: str | URL) -> URL:
    """``url`` parsed, with PostgreSQL on psycopg 3 (the driver the ``sql`` extra installs)
    when it names no driver: ``postgres://`` (what hosting providers hand out) and
    ``postgresql://`` (SQLAlchemy's default driver, psycopg2, is not installed) become
    ``postgresql+psycopg://``; ``postgres+DRIVER://`` becomes ``postgresql+DRIVER://``."""
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql"):
        parsed = parsed.set(drivername=f"postgresql+{driver or 'psycopg'}")
    return parsed


def engine_from_url(url: str | URL) -> Engine:
    """An engine for ``url`` set up for leadflow: an in-memory SQLite database is one shared
    connection (``StaticPool``) usable from every thread; a SQLite file gets WAL journaling
    (readers do not wait for the writer), temporary data in memory
    (:data:`SQLITE_FILE_PRAGMAS`) and a 30 s busy timeout; other URLs get SQLAlchemy's
    defaults (a ``QueuePool``). ``postgres://`` and ``postgresql://`` use psycopg 3
    (:func:`with_driver`)."""
    parsed = with_driver(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed)
    if _in_memory(parsed):
        return create_engine(
            parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for pragma in SQLITE_FILE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    return engine


class SqlDatabase:
    """The engine and the tables every SQL store of one :class:`~leadflow.ports.Storage` shares.

    ``target`` is an SQLAlchemy ``Engine`` (the host's: leadflow never disposes it) or a URL
    (``sqlite:///path.db``, ``sqlite://`` in memory, ``postgresql+psycopg://...``), for which
    an engine is made with :func:`engine_from_url` and disposed by :meth:`close`. ``schema``
    (PostgreSQL only) names the schema the tables live in.
    """

    def __init__(
        self,
        target: Engine | str | URL,
        *,
        prefix: str = DEFAULT_PREFIX,
        schema: str | None = None,
    ) -> None:
        if isinstance(target, Engine):
            engine, owned = target, False
        elif isinstance(target, str | URL):
            with sql_errors("url"):
                try:
                    engine = engine_from_url(target)
                except exc.ArgumentError as error:  # a malformed URL, an unknown driver
                    raise InvalidInputError(str(error), field="url") from error
            owned = True
        else:
            raise InvalidInputError(
                f"expected an SQLAlchemy Engine or a URL, got {type(target).__name__}",
                field="engine_or_url",
            )
        self.engine: Engine = engine
        self.owns_engine: bool = owned
        self.dialect: str = engine.dialect.name
        if self.dialect not in _DIALECTS:
            raise InvalidInputError(
                f"unsupported database {self.dialect!r}; expected SQLite or PostgreSQL",
                field="engine_or_url",
            )
        if schema is not None:
            if self.dialect != "postgresql":
                raise InvalidInputError("a schema is for PostgreSQL only", field="schema")
            if not isinstance(schema, str) or not _SCHEMA.match(schema):
                raise InvalidInputError(
                    "expected at most 63 lower-case letters, digits or '_'", field="schema"
                )
        self.tables: Tables = build_tables(prefix, schema, dialect=self.dialect)
        self.shared = self.dialect == "sqlite" and _in_memory(engine.url)
        if self.shared and not isinstance(engine.pool, StaticPool):
            raise InvalidInputError(
                "an in-memory SQLite engine needs poolclass=StaticPool (and "
                "check_same_thread=False), else each connection sees another empty database",
                field="engine_or_url",
            )
        self._lock = threading.RLock()
        self._waits = self.dialect == "postgresql"  # writes may wait in a unit (:meth:`later`)
        # One variable per database object (its name is only a label).
        self._unit: ContextVar[Connection | None] = ContextVar("leadflow_unit", default=None)
        self._defers: ContextVar[int] = ContextVar("leadflow_unit_defers", default=0)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def in_unit(self) -> bool:
        """Whether the calling context is inside a unit of work on this database."""
        return self._unit.get() is not None

    @contextmanager
    def unit(self, *, deferred: int = 0) -> Iterator[None]:
        """One transaction for every store call of the block (see the module's docstring);
        a block inside another joins it. ``deferred``: the stores may answer writes before
        sending them (:class:`~leadflow.ports.DeferredUnits`, :mod:`.later`; PostgreSQL): 1
        those that only a rare collision refuses, 2 also those a repeated event refuses.
        A failed commit is a :class:`~leadflow.StorageError`
        (:class:`~leadflow.UnavailableError` when the connection was lost: then whether it
        committed is unknown)."""
        if self._unit.get() is not None:
            yield
            return
        if deferred and self._waits:
            defers = self._defers.set(deferred)
            try:
                with self.unit():
                    yield
            finally:
                self._defers.reset(defers)
            return
        guard: AbstractContextManager[Any] = self._lock if self.is_sqlite else nullcontext()
        with guard, sql_errors("unit_of_work"), self.engine.connect() as connection:
            if self.is_sqlite:
                _begin_immediate(connection)
            else:
                connection.begin()
            token = self._unit.set(connection)
            try:
                yield
                if self._waits:
                    finish_later(connection)
                else:
                    held_rows.flush(connection)
            except BaseException:
                self._unit.reset(token)
                with suppress(exc.SQLAlchemyError):  # the connection is gone: so is the work
                    drop_later(connection)
                    held_rows.drop(connection)
                with suppress(exc.SQLAlchemyError):
                    connection.rollback()
                raise
            self._unit.reset(token)
            connection.commit()

    def close(self) -> None:
        """Dispose the engine if it was made here from a URL; a host's engine is left alone."""
        if self.owns_engine:
            self.engine.dispose()

    def later(self, statement: DriverStatement, values: Mapping[str, Any]) -> bool:
        """PostgreSQL, inside a unit of work: keep the write ``statement`` (a
        :class:`~.direct.DriverStatement` whose results nobody reads) to go in front of the
        next statement that carries it (``write(carry=True)``: one that does not read the
        table it writes), else before the unit's next statement or its commit: True.
        Elsewhere nothing is kept: False, the caller runs it now. A failure of the write then
        fails the statement carrying it, or the commit: the unit is rolled back, as for any
        statement that fails in it."""
        unit = self._unit.get()
        if unit is None or not self._waits:
            return False
        run_later(unit, statement.sql, statement.parameters(values))
        return True

    def defers(self, *, ahead: bool = False) -> bool:
        """Whether :meth:`defer` would keep a write now (with ``ahead``: one it may answer
        ahead): a caller asks first when building the write costs something (an activity's
        parameters, about 10 us), so that nothing is built to be thrown away on SQLite, or
        outside a deferred unit."""
        return self._defers.get() >= (2 if ahead else 1) and self._unit.get() is not None

    def defer(self, waiting: waiting_writes.Waiting, *, ahead: bool = False) -> bool:
        """PostgreSQL, inside a deferred unit of work (:meth:`unit`; with ``ahead``, one that
        allows it): keep ``waiting`` (a write the store answers without sending it,
        :mod:`.later`) to travel with the unit's next statement or as its last: True.
        Elsewhere nothing is kept: False, the caller runs it now."""
        unit = self._unit.get()
        if unit is None or self._defers.get() < (2 if ahead else 1):
            return False
        if len(waiting_writes.peek(unit)) >= _MOST_WAITING:  # one statement stays small
            flush_later(unit)
        waiting_writes.put(unit, waiting)
        return True

    def hold(self, statement: DriverStatement, rows: Sequence[dict[str, Any]], key: str) -> bool:
        """SQLite, inside a unit of work: hold ``rows`` to be inserted with ``statement``
        when a statement could read them, or before the commit (:mod:`.held`): True.
        Elsewhere nothing is held: False, the caller inserts them now."""
        unit = self._unit.get()
        if unit is None or not self.is_sqlite:
            return False
        held_rows.hold(unit, statement, rows, key)
        return True

    def waiting(self) -> list[waiting_writes.Waiting]:
        """The writes waiting in the calling context's unit of work, oldest first (empty
        outside one): PostgreSQL's (:mod:`.later`), SQLite's held rows (:mod:`.held`)."""
        unit = self._unit.get()
        if unit is None:
            return []
        return held_rows.peek(unit) if self.is_sqlite else waiting_writes.peek(unit)

    @contextmanager
    def write(
        self, *, atomic: bool = True, carry: bool = False, beside: bool = False
    ) -> Iterator[Connection]:
        """A connection in a write transaction, committed when the block ends without error
        and rolled back otherwise. ``atomic=False``: the block's statements each stand on
        their own (each is atomic, none depends on another's being undone); on PostgreSQL
        they then run in autocommit. SQLite always takes its write lock (``BEGIN IMMEDIATE``).
        Inside a unit of work: the unit's connection and transaction; the writes kept by
        :meth:`later` are run first, unless ``carry`` (the block runs one driver statement
        with ``carry=True``, which takes them along, or none that reads what they write); on
        SQLite the rows held by :meth:`hold` are inserted first, unless ``beside`` (the block
        reads and writes none of the tables they go to)."""
        unit = self._unit.get()
        if unit is not None:
            if self._waits:
                if not carry:
                    flush_later(unit)
            elif not beside:
                held_rows.flush(unit)
            yield unit
            return
        if self.dialect != "sqlite":
            if not atomic:
                with self.engine.connect() as connection:
                    yield connection.execution_options(isolation_level="AUTOCOMMIT")
                return
            with self.engine.begin() as connection:
                yield connection
            return
        with self._lock, self.engine.connect() as connection:
            _begin_immediate(connection)
            try:
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.commit()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading (autocommit on PostgreSQL; on SQLite its transaction, if
        any, is rolled back at the end). Inside a unit of work: the unit's connection, which
        sees the unit's writes."""
        unit = self._unit.get()
        if unit is not None:
            if self._waits:
                flush_later(unit)
            else:
                held_rows.flush(unit)
            yield unit
            return
        if self.dialect != "sqlite":
            with self.engine.connect() as connection:
                yield connection.execution_options(isolation_level="AUTOCOMMIT")
            return
        guard: AbstractContextManager[Any] = self._lock if self.shared else nullcontext()
        with guard, self.engine.connect() as connection:
            yield connection

    @contextmanager
    def read_beside(self) -> Iterator[Connection]:
        """:meth:`read` for a read of tables no waiting write touches (:meth:`later`,
        :meth:`defer`, :meth:`hold`: an event's analytic facts, its planned actions, its
        activities):
        inside a unit of work the unit's connection, the waiting writes left waiting for a
        statement that carries them."""
        unit = self._unit.get()
        if unit is not None:
            yield unit
            return
        with self.read() as connection:
            yield connection


class SqlUnitOfWork:
    """The :class:`~leadflow.ports.storage.UnitOfWork` of the SQL stores (``atomic``): every
    store call of ``with storage.unit_of_work():`` runs in one transaction of ``database``,
    committed once (see :meth:`SqlDatabase.unit`)."""

    __slots__ = ("database",)

    def __init__(self, database: SqlDatabase) -> None:
        self.database = database

    @property
    def atomic(self) -> bool:
        return True

    @property
    def active(self) -> bool:
        return self.database.in_unit

    def __call__(self) -> AbstractContextManager[None]:
        return self.database.unit()

    def deferred(self, *, ahead: bool = False) -> AbstractContextManager[None]:
        """:class:`~leadflow.ports.DeferredUnits`: a unit whose writes the stores may answer
        before sending them (on PostgreSQL; on SQLite an ordinary unit)."""
        return self.database.unit(deferred=2 if ahead else 1)

    def __repr__(self) -> str:
        return f"SqlUnitOfWork({self.database.engine.url!r})"


def _begin_immediate(connection: Connection) -> None:
    """Start SQLite's write transaction on ``connection``.

    pysqlite (in its default mode) begins no transaction before our first statement, so
    ``BEGIN IMMEDIATE`` can be issued as is. An engine configured with SQLAlchemy's recipe (a
    ``begin`` event that emits ``BEGIN``) has already begun a deferred, still empty
    transaction: that one is ended first.
    """
    connection.begin()
    raw: Any = connection.connection.dbapi_connection
    if getattr(raw, "in_transaction", False):
        connection.exec_driver_sql("COMMIT")
    # Straight through the driver (cursor events and error mapping kept, see .direct): a
    # statement without parameters or results gains nothing from SQLAlchemy's execution
    # context, which cost about as much as the statement itself on every write.
    execute(connection, "BEGIN IMMEDIATE", (), returns=False)
