"""Hot statements run straight through the driver: compiled once, parameters encoded once.

``handle`` runs the same few statements for every event (an action's ``INSERT``, an
activity's ``INSERT``, the acknowledgement's ``UPDATE``). Through SQLAlchemy each execution
builds an execution context, constructs the parameters, runs every column's bind processor
and sets up a result: about as much client CPU as the driver's own work for the statement
(``docs/benchmarks.md``, "`handle` and `handle_many` on SQL"). A :class:`DriverStatement`
does that set-up once, when the store is built:

- the SQLAlchemy statement is compiled for the engine's dialect, its parameters put in
  positional order (``%s`` for psycopg, ``?`` for sqlite3), the values it fixes (a literal
  state, a ``None``) kept already encoded;
- each parameter gets the encoder of its column's type: a :class:`~.types.Document` becomes
  its JSON text (:func:`~.types.document_text`: the text ``json.dumps`` of
  :func:`~.types.encode_document` gives, what the type's bind processor and the engine's
  default serializer produce, in one pass of the C encoder), a :class:`~.types.UtcDateTime` is
  checked aware and becomes UTC (integer microseconds on SQLite), any other type runs the
  dialect's own bind processor, if it has one;
- :meth:`DriverStatement.run` takes a mapping of the named values, builds the tuple and runs
  it on a cursor of the SQLAlchemy connection's driver connection (the same connection, so
  the same transaction or autocommit mode), returning the ``RETURNING`` rows as tuples.

psycopg prepares a statement on the server after it ran five times with the same text; a
fixed statement text keeps that working (and, for statements over many rows, see
:class:`UnnestInsert`, keeps its query conversion cached: psycopg caches it only for at most
50 parameters).

What is kept from SQLAlchemy's path: the engine's ``before_cursor_execute`` and
``after_cursor_execute`` listeners are called, so tracing and statement counting see these
statements (their ``context`` is a bare object that only holds the attributes a listener sets
on it, e.g. a tracer's span; a listener's ``retval`` is ignored); a driver error becomes
SQLAlchemy's ``DBAPIError`` subclass (``IntegrityError``...), a lost connection is invalidated
as SQLAlchemy would, so :func:`~.errors.sql_errors` maps both as before. What is not: an
engine's custom ``json_serializer`` (leadflow's documents are plain JSON), and SQLAlchemy's own
statement log (``echo=True``).

Round trips on PostgreSQL (``handle``'s unit of work): a few rows go in one multi-row
``VALUES`` (:class:`ValuesInsert`), and a write whose result nobody reads (an event's analytic
fact) can wait on the unit's connection (:func:`run_later`) to travel, as a ``WITH`` query, in
front of the next statement that carries it (the acknowledgement's ``UPDATE``): the listeners
see that one statement, its text holding both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from types import SimpleNamespace
from typing import Any, Final, cast

from sqlalchemy import Connection, Table, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from ...errors import StorageError
from ...ports.units import DeferredWriteError
from . import later
from .types import Document, UtcDateTime, document_text, micros, utc_value

__all__ = [
    "DriverStatement",
    "Encoded",
    "UnnestInsert",
    "ValuesInsert",
    "drop_later",
    "execute",
    "finish_later",
    "flush_later",
    "run_later",
    "send_later",
]

Encoder = Callable[[Any], Any]
_NAMED: Final = re.compile(r"%\((\w+)\)s")
_CURSOR: Final = "leadflow_direct_cursor"
_RAW_CURSOR: Final = "leadflow_direct_raw_cursor"
_IDLE: Final = 0  # psycopg's pq.TransactionStatus.IDLE: no transaction open


class Encoded(str):
    """A document's JSON text made already (:func:`~.types.document_text`): a row may carry
    one in a document column, sent as it is (a batch's rows that share a document, a rule
    action's, encode it once)."""

    __slots__ = ()


def _document(value: Any) -> Any:
    if value is None:
        return None
    return value if type(value) is Encoded else document_text(value)


def _utc(value: Any) -> Any:
    return None if value is None else utc_value(value)


def _utc_micros(value: Any) -> Any:
    return None if value is None else micros(utc_value(value))


def _encoder(type_: Any, dialect: Dialect) -> Encoder | None:
    """How a value of column type ``type_`` is sent (None: as it is)."""
    if isinstance(type_, Document):
        return _document
    if isinstance(type_, UtcDateTime):
        return _utc_micros if dialect.name == "sqlite" else _utc
    processor: Encoder | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor


class DriverStatement:
    """One SQLAlchemy ``statement``, compiled once for ``dialect``, run through the driver (see
    the module's docstring)."""

    __slots__ = ("_free", "_template", "returns", "sql")

    def __init__(self, dialect: Dialect, statement: ClauseElement) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        if dialect.paramstyle == "qmark":
            names = list(compiled.positiontup or ())
            sql = compiled.string
        elif dialect.paramstyle == "pyformat":
            names = _NAMED.findall(compiled.string)
            sql = _NAMED.sub("%s", compiled.string)
        else:  # pragma: no cover - the two drivers leadflow supports
            raise NotImplementedError(f"paramstyle {dialect.paramstyle!r}")
        types: dict[str, Any] = {}
        fixed: dict[str, Any] = {}
        for name in names:
            bind = compiled.binds[name]
            types[name] = bind.type
            if not bind.required:  # a value the statement sets (``.values(state=...)``)
                fixed[name] = bind.effective_value
        self.sql: str = sql
        # Rows back: a ``SELECT``, or a write with ``RETURNING``.
        writes = compiled.isinsert or compiled.isupdate or compiled.isdelete
        self.returns: bool = bool(compiled.returning) or not writes
        # The parameters' list with the fixed values in place (encoded once), and where each
        # named value goes: (position, name, encoder or None).
        template: list[Any] = []
        free: list[tuple[int, str, Encoder | None]] = []
        for position, name in enumerate(names):
            encoder = _encoder(types[name], dialect)
            if name in fixed:
                value = fixed[name]
                template.append(value if encoder is None or value is None else encoder(value))
            else:
                template.append(None)
                free.append((position, name, encoder))
        self._template: tuple[Any, ...] = tuple(template)
        self._free: tuple[tuple[int, str, Encoder | None], ...] = tuple(free)

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The driver's parameters for ``values`` (every name the statement does not fix)."""
        out = list(self._template)
        for position, name, encoder in self._free:
            value = values[name]
            out[position] = value if encoder is None or value is None else encoder(value)
        return tuple(out)

    def run(
        self, connection: Connection, values: Mapping[str, Any], *, carry: bool = False
    ) -> list[tuple[Any, ...]]:
        """Run on ``connection``'s driver connection; the ``RETURNING`` rows (else ``[]``).
        ``carry``: the writes waiting on the connection (:func:`run_later`) go in front of
        this statement, in the same statement."""
        return execute(
            connection, self.sql, self.parameters(values), returns=self.returns, carry=carry
        )

    def parameters_many(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """:meth:`parameters` of each of ``rows``: the named values taken with one
        ``itemgetter`` call per row, and only the columns with an encoder encoded; a value
        that is the same object as the row before's in its column (an event's document, the
        clock's ``now`` in each of an event's actions' rows) gets the encoding made for it
        (the last value is kept, so it is the same object, never another at its address)."""
        free = self._free
        names = [name for _, name, _ in free]
        if len(names) < 2:  # itemgetter of one name gives the value alone
            return [self.parameters(row) for row in rows]
        take = itemgetter(*names)
        encoders = [(n, e) for n, (_, _, e) in enumerate(free) if e is not None]
        last: list[Any] = [None] * len(free)  # each encoded column's last value...
        made: list[Any] = [None] * len(free)  # ...and its encoding
        positions = [position for position, _, _ in free]
        whole = positions == list(range(len(self._template)))
        out: list[tuple[Any, ...]] = []
        for row in rows:
            values = list(take(row))
            for n, encode in encoders:
                value = values[n]
                if value is None:
                    continue
                if value is not last[n]:
                    last[n], made[n] = value, encode(value)
                values[n] = made[n]
            if not whole:
                parameters = list(self._template)
                for position, value in zip(positions, values, strict=True):
                    parameters[position] = value
                values = parameters
            out.append(tuple(values))
        return out

    def run_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row of ``rows`` with the driver's ``executemany`` (one call: sqlite3
        steps the one prepared statement through the rows). A statement with ``RETURNING``
        is refused: ``executemany`` returns no rows."""
        if self.returns:
            raise ValueError("executemany returns no rows: a statement without RETURNING")
        execute(connection, self.sql, self.parameters_many(rows), many=True)


def _in_turn(encoder: Encoder) -> Encoder:
    """``encoder`` for one column of a statement's rows, in turn: a value that is the same
    object as the row before's (an event's document in each of its actions' rows, which come
    together; the clock's ``now`` in an event's times) gets the encoding made for it (the
    last value is kept, so it is the same object, never another at the same address)."""
    last: list[Any] = [None, None]  # the value and its encoding

    def encode(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, encoder(value)
        return last[1]

    return encode


def execute(
    connection: Connection,
    sql: str,
    parameters: Sequence[Any],
    *,
    returns: bool = False,
    many: bool = False,
    raw: bool = False,
    carry: bool = False,
) -> list[tuple[Any, ...]]:
    """``sql`` with ``parameters`` on a cursor of ``connection``'s driver connection, with
    the engine's cursor events and SQLAlchemy's error wrapping (see the module's docstring).
    ``many``: ``parameters`` is a sequence of parameter lists, run with ``executemany``.
    ``raw`` (psycopg): ``sql`` has PostgreSQL's own ``$1, $2...`` placeholders, run on a
    ``psycopg.RawCursor``, which sends the text as it is (see :class:`ValuesInsert`).
    Writes waiting on the connection (:func:`run_later`) are run first, as their own
    statements, or with ``carry`` (a ``%s`` statement, not ``many``) in front of ``sql`` as
    ``WITH`` queries of the same statement."""
    proxied = connection.connection
    if proxied.info.get(later.KEY):
        waiting = later.take(connection)
        if carry and not (many or raw):
            return _carrying(connection, waiting, sql, parameters, returns=returns)
        send_later(connection, waiting)
    key = _RAW_CURSOR if raw else _CURSOR
    cursor: Any = proxied.info.get(key)
    if cursor is None or getattr(cursor, "closed", False):
        # One cursor per driver connection, kept with it (the pool clears ``info`` when the
        # connection is replaced): psycopg's cursor caches the dumpers it found for each
        # parameter type, which a new cursor per statement looks up again (about 20 us of
        # client CPU per action INSERT, of 155).
        if raw:
            import psycopg  # only on PostgreSQL, whose driver it is

            cursor = psycopg.RawCursor(cast(Any, proxied.driver_connection))
        else:
            cursor = proxied.cursor()
        proxied.info[key] = cursor
    dispatch = connection.dispatch
    # SQLAlchemy's own test first (``_has_events``: set once any connection event is listened
    # to on this connection, its engine or their class): asking the joined dispatch whether a
    # cursor hook has listeners cost up to 2.7 us a hook, twice a statement, five statements
    # in every ``handle`` on SQLite.
    listened = (connection._has_events or connection.engine._has_events) and bool(
        dispatch.before_cursor_execute or dispatch.after_cursor_execute
    )
    context = SimpleNamespace() if listened else None
    try:
        if listened:
            for listener in dispatch.before_cursor_execute:
                listener(connection, cursor, sql, parameters, context, many)
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows: list[tuple[Any, ...]] = list(cursor.fetchall()) if returns else []
        if listened:
            for listener in dispatch.after_cursor_execute:
                listener(connection, cursor, sql, parameters, context, many)
        return rows
    except Exception as error:
        dialect = connection.dialect
        dbapi = dialect.loaded_dbapi
        if not isinstance(error, dbapi.Error):
            raise
        lost = dialect.is_disconnect(error, proxied.dbapi_connection, cursor)
        if lost:
            connection.invalidate(error)
        raise exc.DBAPIError.instance(
            sql, parameters, error, dbapi.Error, connection_invalidated=lost, dialect=dialect
        ) from error


def run_later(connection: Connection, sql: str, parameters: Sequence[Any]) -> None:
    """PostgreSQL, in a unit of work: keep the write ``sql`` (``%s`` placeholders, none of its
    results wanted) on ``connection`` to travel with the next statement (:mod:`.later`)."""
    later.put(connection, later.Waiting(sql, parameters))


def send_later(connection: Connection, waiting: Sequence[later.Waiting]) -> None:
    """Send ``waiting`` (taken off ``connection``) as one statement; when it fails the unit
    is doomed (:func:`.later.doom`), and a row it expected but did not write is a
    :class:`~leadflow.ConflictError` (nothing of the statement is written)."""
    if not waiting:
        return
    sql, parameters = later.statement(waiting)
    try:
        execute(connection, sql, parameters, raw=True)
    except exc.DBAPIError as error:
        if later.MARK not in str(error.orig):
            later.doom(connection, error)
            raise
        raise _refused(connection) from error


def _carrying(
    connection: Connection,
    waiting: Sequence[later.Waiting],
    sql: str,
    parameters: Sequence[Any],
    *,
    returns: bool,
) -> list[tuple[Any, ...]]:
    """``sql`` with ``waiting`` in front, in one statement. Writes expected to insert rows
    need ``sql`` to return rows (the check comes back as a last column of each row): the
    statement's rows without it, or :class:`DeferredWriteError` (the unit doomed) when a
    count fell short or no row came back to say. Else the waiting writes go first."""
    checked = any(w.expect is not None for w in waiting)
    if checked and not (returns and later.returns_last(sql)):
        send_later(connection, waiting)
        return execute(connection, sql, parameters, returns=returns)
    text, combined = later.statement(waiting, sql)
    combined.extend(parameters)
    try:
        rows = execute(connection, text, combined, returns=returns, raw=True)
    except exc.DBAPIError as error:
        later.doom(connection, error)
        raise
    if not checked:
        return rows
    if not rows or not all(row[-1] for row in rows):
        raise _refused(connection)
    return [row[:-1] for row in rows]


def _refused(connection: Connection) -> DeferredWriteError:
    """The error of a waiting write that did not go in, the unit doomed by it."""
    refused = DeferredWriteError(
        "rows planned in this unit of work were already stored; it is rolled back"
    )
    later.doom(connection, refused)
    return refused


def flush_later(connection: Connection) -> None:
    """Send the writes waiting on ``connection`` now, as one statement (before a statement
    that does not carry them)."""
    send_later(connection, later.take(connection))


def finish_later(connection: Connection) -> None:
    """At the end of a unit of work, before its commit: send the waiting writes. When
    nothing was sent in the unit (psycopg sent no ``BEGIN`` yet) the one statement runs in
    autocommit, a transaction by itself, and the commit then has nothing to do: the unit is
    one round trip. A unit doomed by a failed send fails here."""
    failed = later.doomed(connection)
    if failed is not None:
        kind = DeferredWriteError if isinstance(failed, DeferredWriteError) else StorageError
        raise kind(f"a statement of this unit of work failed: {failed}") from failed
    waiting = later.take(connection)
    if not waiting:
        return
    driver: Any = connection.connection.driver_connection
    if driver.info.transaction_status != _IDLE:
        send_later(connection, waiting)
        return
    driver.autocommit = True
    try:
        send_later(connection, waiting)
    finally:
        driver.autocommit = False


def drop_later(connection: Connection) -> None:
    """Forget the writes waiting on ``connection`` (its transaction is rolled back)."""
    later.drop(connection)


class UnnestInsert:
    """PostgreSQL: ``INSERT INTO table (every column) SELECT * FROM unnest(%b::type[], ...) ON
    CONFLICT DO NOTHING RETURNING ...``: any number of rows in one statement of one parameter
    per column (an array), whose text and conversion psycopg caches like any other statement's
    (a multi-row ``VALUES`` list is one parameter per value: a new text for each number of
    rows, and beyond 50 parameters converted again on every call). Each column's values are
    encoded as :class:`DriverStatement` encodes them."""

    __slots__ = ("_columns", "_encoders", "returns", "sql")

    def __init__(self, dialect: Dialect, table: Table, returning: Sequence[str]) -> None:
        quote = dialect.identifier_preparer.quote
        self._columns: tuple[str, ...] = tuple(column.name for column in table.c)
        self._encoders: tuple[Encoder | None, ...] = tuple(
            _encoder(column.type, dialect) for column in table.c
        )
        # ``%b``: psycopg sends the arrays in its binary format (no quoting of each element).
        casts = [f"%b::{dialect.type_compiler_instance.process(c.type)}[]" for c in table.c]
        sql = (
            f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
            f"({', '.join(quote(name) for name in self._columns)}) "
            f"SELECT * FROM unnest({', '.join(casts)}) ON CONFLICT DO NOTHING"
        )
        if returning:
            sql += " RETURNING " + ", ".join(quote(name) for name in returning)
        self.sql: str = sql
        self.returns: bool = bool(returning)

    def run(
        self, connection: Connection, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Insert ``rows`` (each with every column); the ``RETURNING`` rows."""
        parameters = []
        for name, encoder in zip(self._columns, self._encoders, strict=True):
            column = list(map(itemgetter(name), rows))
            if encoder is None:
                parameters.append(column)
            else:
                encode = _in_turn(encoder)  # an event's document or times, in each action's row
                parameters.append([None if v is None else encode(v) for v in column])
        return execute(connection, self.sql, tuple(parameters), returns=self.returns)


class ValuesInsert:
    """PostgreSQL: a few rows in one ``INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING
    RETURNING ...``, the statement of ``one`` (a one-row :class:`DriverStatement` ``INSERT``)
    with one ``VALUES`` group per row, each row's values encoded as ``one`` encodes them.

    One statement text per number of rows, up to ``limit`` (so each is prepared on the server
    like any other statement). The text carries PostgreSQL's own ``$n`` placeholders and runs
    on a ``psycopg.RawCursor``: psycopg converts a ``%s`` statement of more than 50
    parameters again on every call (about 130 us of client CPU for two rows of 28 columns,
    as much as a round trip), a raw one never. For many rows :class:`UnnestInsert` is the
    one statement (a ``VALUES`` list's parameters grow with its rows)."""

    __slots__ = ("_one", "_texts", "limit", "returns")

    def __init__(self, one: DriverStatement, limit: int) -> None:
        head, found, rest = one.sql.partition(" VALUES (")
        group, found_end, tail = rest.rpartition(") ON CONFLICT")
        if not (found and found_end):  # pragma: no cover - built from leadflow's inserts
            raise ValueError(f"not a one-row INSERT ... ON CONFLICT: {one.sql[:80]!r}")
        self._one = one
        self.returns: bool = one.returns
        self.limit: int = limit
        pieces = group.split("%s")
        width = len(pieces) - 1
        texts: dict[int, str] = {}
        for rows in range(1, limit + 1):
            groups = []
            for row in range(rows):
                numbered = [pieces[0]]
                for n, piece in enumerate(pieces[1:], start=row * width + 1):
                    numbered.append(f"${n}{piece}")
                groups.append("(" + "".join(numbered) + ")")
            text = f"{head} VALUES {', '.join(groups)} ON CONFLICT{tail}"
            texts[rows] = text.replace("%%", "%")  # a literal % is itself in a raw text
        self._texts = texts

    def run(
        self, connection: Connection, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Insert ``rows`` (1 to ``limit``); the ``RETURNING`` rows."""
        sql = self._texts[len(rows)]
        return execute(connection, sql, self._parameters(rows), returns=self.returns, raw=True)

    def waiting(self, rows: Sequence[dict[str, Any]], key: str) -> later.Waiting:
        """``rows`` (1 to ``limit``) as a write that waits (:mod:`.later`), expected to insert
        every row (the statement must return rows); its :attr:`~.later.Waiting.rows` by
        ``key``, encoded when it is sent."""
        if not self.returns:  # pragma: no cover - built from leadflow's inserts
            raise ValueError("an expected insert returns its rows")
        return later.Waiting(
            self._texts[len(rows)],
            lambda: self._parameters(rows),
            raw=True,
            expect=len(rows),
            rows={row[key]: row for row in rows},
        )

    def _parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        parameters: list[Any] = []
        for row in self._one.parameters_many(rows):
            parameters.extend(row)
        return parameters
