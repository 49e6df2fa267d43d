"""SQLite: rows a unit of work inserts, held until a statement could read them.

A ``handle_many`` chunk inserts its actions claimed, runs them, then marks the successes done:
on SQLite an ``executemany`` of the rows and then an ``UPDATE`` of most of them, each row's
11 index entries written twice. Inside a unit of work SQLite's write lock is held from
``BEGIN IMMEDIATE`` to the commit, so what a store answers there is exact (the scheduled-action
store reads which keys and ids are stored, then inserts the others: nothing can come in
between). The insert itself can then wait: the store holds the rows on the unit's connection
(:func:`hold`) and answers as it would after inserting them; the acknowledgement of actions
still held changes their rows in place (:meth:`~.scheduled.SqlScheduledActionStore.mark_done_ids`),
so they go in done, with one ``executemany`` and no ``UPDATE``.

A held row never waits for a read: every store call of the unit sends the held rows first
(:meth:`~.database.SqlDatabase.write` and :meth:`~.database.SqlDatabase.read`), except those
that say they read and write none of the tables the rows go to (``beside``: a batch's
activities, its analytic facts), and the unit sends them before its commit. A rolled-back
unit drops them. So every statement that could see the rows sees them, and the unit commits
what it would have committed with the rows inserted at once; a failed insert fails the store
call that sent it, or the commit, and the unit is rolled back.

PostgreSQL has its own waiting writes (:mod:`.later`), which travel with the next statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Connection

from . import later
from .direct import DriverStatement, execute

__all__ = ["KEY", "drop", "flush", "hold", "peek"]

KEY: Final = "leadflow_sqlite_held"


def hold(
    connection: Connection, statement: DriverStatement, rows: Sequence[dict[str, Any]], key: str
) -> None:
    """Keep ``rows`` to be inserted on ``connection`` (a unit of work's) with ``statement``'s
    ``executemany`` (a one-row ``INSERT`` without ``RETURNING``) when they are sent; until
    then they can be changed in place, found by their ``key`` column
    (:attr:`~.later.Waiting.rows`)."""
    if statement.returns:  # pragma: no cover - built from leadflow's inserts
        raise ValueError("held rows are inserted with executemany: no RETURNING")
    by_key: dict[str, dict[str, Any]] = {row[key]: row for row in rows}

    def parameters() -> list[tuple[Any, ...]]:
        return statement.parameters_many(list(by_key.values()))

    connection.connection.info.setdefault(KEY, []).append(
        later.Waiting(statement.sql, parameters, rows=by_key)
    )


def peek(connection: Connection) -> list[later.Waiting]:
    """The rows held on ``connection``, as the writes that will send them (not taken)."""
    found: list[later.Waiting] = connection.connection.info.get(KEY, [])
    return found


def flush(connection: Connection) -> None:
    """Insert the rows held on ``connection`` now, oldest first, one ``executemany`` each."""
    info: Mapping[str, Any] = connection.connection.info
    if not info.get(KEY):
        return
    for waiting in connection.connection.info.pop(KEY):
        execute(connection, waiting.sql, waiting.parameters(), many=True)


def drop(connection: Connection) -> None:
    """Forget the rows held on ``connection`` (its transaction is rolled back)."""
    connection.connection.info.pop(KEY, None)
