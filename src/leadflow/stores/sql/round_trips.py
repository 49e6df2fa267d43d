"""PostgreSQL round trips of a unit of work: its ``BEGIN`` with its first statement, its
``COMMIT`` with its last.

psycopg sends a transaction's ``BEGIN`` as a round trip of its own before the first statement,
and ``COMMIT`` as another after the last: ``handle``'s unit with a notification (its actions'
``INSERT`` answered before the handler runs, then the activity, the fact and the
acknowledgement) was four round trips for two statements. In psycopg's pipeline mode several
messages go before the client waits: :func:`pipelined` sends ``BEGIN`` and the statement, or
the statement and ``COMMIT``, and waits once (the server skips what follows a failed statement
up to the pipeline's end, so a failed statement commits nothing). Which statements go so is
:mod:`.direct`'s choice (:func:`~.direct.execute`): the first one sent through it in a unit
that allows it (:func:`begin_first`), and the statement that sends a deferred unit's waiting
writes at its end (:func:`~.direct.finish_later`). Only ``handle``'s (deferred) units allow
the first: psycopg's pipeline mode has Python of its own (about twice psycopg's function
calls per event), which a round trip saved pays for only when the server is not far away
in time (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any, Final

from sqlalchemy import Connection, exc

__all__ = ["IDLE", "begin_first", "begin_to_send", "end_unit", "pipelined"]

IDLE: Final = 0  # psycopg's pq.TransactionStatus.IDLE: no transaction open
_BEGINS: Final = "leadflow_direct_begins"  # begin_first: allowed on this connection
_COMMANDS: Final = "leadflow_direct_commands"  # a cursor for a pipelined COMMIT


def begin_first(connection: Connection) -> None:
    """PostgreSQL, at the start of a unit of work on ``connection`` (SQLAlchemy's transaction
    begun, nothing sent): the unit's ``BEGIN`` may go in the same round trip as its first
    statement sent through :func:`.direct.execute` (psycopg's pipeline mode), instead of a
    round trip of its own before it; psycopg is left as its own ``BEGIN`` leaves it. A first
    statement sent by SQLAlchemy itself gets psycopg's own ``BEGIN``, as before.
    :func:`end_unit` ends what this allows."""
    connection.connection.info[_BEGINS] = True


def end_unit(connection: Connection) -> None:
    """At the end of a unit of work on ``connection``: what :func:`begin_first` allowed is
    over."""
    with suppress(exc.SQLAlchemyError):  # a connection lost: nothing to forget
        connection.connection.info.pop(_BEGINS, None)


def begin_to_send(proxied: Any) -> bytes | None:
    """The ``BEGIN`` to send with the next statement on ``proxied`` (:func:`begin_first`),
    or None: not allowed, already in a transaction (or autocommit), or a transaction whose
    characteristics leadflow does not spell (read-only, deferrable: psycopg's own then)."""
    if not proxied.info.get(_BEGINS):
        return None
    driver: Any = proxied.driver_connection
    if driver.autocommit or driver.info.transaction_status != IDLE:
        return None
    if driver.read_only is not None or driver.deferrable is not None:
        return None
    if not hasattr(driver, "_autocommit"):  # pragma: no cover - psycopg 3.2 and 3.3 have it
        return None
    level = driver.isolation_level
    if level is None:
        return b"BEGIN"
    return f"BEGIN ISOLATION LEVEL {level.name.replace('_', ' ')}".encode()


def pipelined(
    proxied: Any,
    cursor: Any,
    sql: str,
    parameters: Sequence[Any],
    *,
    begin: bytes | None,
    commit: bool,
    errors: type[Exception],
) -> None:
    """``sql`` on ``cursor`` in one round trip with ``begin`` before it and/or ``COMMIT``
    after it (psycopg's pipeline mode: the server skips what follows a failed statement up
    to the pipeline's end, so a failed ``sql`` commits nothing; psycopg raises its error).
    The statement's results are left on ``cursor``; a driver error (``errors``) is the
    first one the server gave."""
    driver: Any = proxied.driver_connection
    if begin is not None:
        driver.autocommit = True  # no BEGIN of psycopg's own: ours goes with ``sql``
    first: Exception | None = None
    try:
        with driver.pipeline():
            try:
                if begin is not None:
                    cursor.execute(begin)
                cursor.execute(sql, parameters)
                if commit:
                    commands = proxied.info.get(_COMMANDS)
                    if commands is None or commands.closed:
                        commands = proxied.info[_COMMANDS] = driver.cursor()
                    commands.execute(b"COMMIT")
            except errors as error:
                # A result processed while queuing: the pipeline is ended (its Sync sent and
                # the rest read) before the error is raised, without psycopg's warning about
                # an error left in the block.
                first = error
    except errors:
        if first is None:
            raise
    finally:
        if begin is not None:
            _autocommit_off(driver)
    if first is not None:
        raise first


def _autocommit_off(driver: Any) -> None:
    """Back to psycopg's ordinary mode after :func:`pipelined` sent a ``BEGIN``: in the
    transaction that ``BEGIN`` opened, the state psycopg's own ``BEGIN`` leaves (``autocommit``
    off, a transaction open), which psycopg's setter refuses to reach once the transaction is
    open: its attribute is set instead (:func:`begin_to_send` checks that it exists)."""
    if driver.info.transaction_status == IDLE:
        driver.autocommit = False
    else:
        driver._autocommit = False
