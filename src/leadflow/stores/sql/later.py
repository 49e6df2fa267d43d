"""Writes that wait in a unit of work on PostgreSQL, to travel to the server together.

On PostgreSQL every statement is a round trip, and so are psycopg's ``BEGIN`` and ``COMMIT``:
``handle`` stored an event's actions, its activity, its analytic fact and the acknowledgement
in five. A write that waits instead (:func:`put`) goes with the next statement that is sent
anyway, as data-modifying ``WITH`` queries of one statement (all run exactly once, whatever the
main query reads, and share its snapshot: the main query does not see their rows), or, when
nothing else is sent before the unit ends, as one statement of its own: when nothing at all was
sent in the unit (no ``BEGIN`` either), that statement runs in autocommit, a transaction by
itself, and the unit's commit has nothing left to do (:func:`~.direct.finish_later`). A unit
that only writes is then one round trip.

A waiting write may **expect** rows back: an ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
that the store answered as if it had inserted every row (the unit's planned actions, its
activity). The statement that sends it checks, in the database, that it did: its main query
casts a text to an integer only when a count falls short, so the whole statement fails and
nothing of it is written. The store call or the commit then fails with
:class:`~leadflow.ConflictError` and the unit is rolled back: whoever ran it handles the work
again without waiting writes (the runtime's planner: step by step), where the conflict is
answered as it always was (a duplicate, an open key held).

A waiting write never waits for a read: a statement that is not a carrier sends the waiting
writes first (one statement, one round trip), so every read in the unit sees them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Final

from sqlalchemy import Connection

__all__ = [
    "KEY",
    "MARK",
    "Waiting",
    "doom",
    "doomed",
    "drop",
    "peek",
    "put",
    "returns_last",
    "statement",
    "take",
]

KEY: Final = "leadflow_direct_later"
_DOOMED: Final = "leadflow_direct_doomed"
MARK: Final = "leadflow: rows this unit of work planned were already stored"
"""The text the combined statement casts to an integer when an expected row is missing (the
driver's error quotes it)."""
_PYFORMAT: Final = re.compile(r"%%|%s")
_NUMBERED: Final = re.compile(r"\$(\d+)")


class Waiting:
    """One waiting write: ``sql`` with ``%s`` placeholders (``raw``: PostgreSQL's own ``$1,
    $2...``), its ``values`` (or a function giving them when it is sent: a store may still
    change the rows it holds, :attr:`rows`), and how many rows its ``RETURNING`` must give
    (``expect``; None: no check)."""

    __slots__ = ("expect", "raw", "rows", "sql", "values")

    def __init__(
        self,
        sql: str,
        values: Sequence[Any] | Callable[[], Sequence[Any]],
        *,
        raw: bool = False,
        expect: int | None = None,
        rows: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.sql = sql
        self.values = values
        self.raw = raw
        self.expect = expect
        self.rows = rows
        """The rows of an ``INSERT`` by id, for the store that wrote it: changed in place
        while the write waits (an action marked done before it reached the database)."""

    def parameters(self) -> Sequence[Any]:
        return self.values() if callable(self.values) else self.values


def put(connection: Connection, waiting: Waiting) -> None:
    """Keep ``waiting`` on ``connection`` (in a unit of work's transaction)."""
    connection.connection.info.setdefault(KEY, []).append(waiting)


def peek(connection: Connection) -> list[Waiting]:
    """The writes waiting on ``connection``, oldest first (not taken)."""
    found: list[Waiting] = connection.connection.info.get(KEY, [])
    return found


def take(connection: Connection) -> list[Waiting]:
    """The writes waiting on ``connection``, taken off it (the caller sends them)."""
    found: list[Waiting] = connection.connection.info.pop(KEY, [])
    return found


def drop(connection: Connection) -> None:
    """Forget the waiting writes and the doom of ``connection`` (its transaction is rolled
    back)."""
    info = connection.connection.info
    info.pop(KEY, None)
    info.pop(_DOOMED, None)


def doom(connection: Connection, error: Exception) -> None:
    """Remember that a statement sending waiting writes failed in the unit: whatever caught
    the error, the unit cannot commit (:func:`doomed`)."""
    connection.connection.info[_DOOMED] = error


def doomed(connection: Connection) -> Exception | None:
    """The failure that dooms the unit on ``connection``, if any (taken off it)."""
    found: Exception | None = connection.connection.info.pop(_DOOMED, None)
    return found


def statement(entries: Sequence[Waiting], main: str | None = None) -> tuple[str, list[Any]]:
    """One raw (``$n``) statement sending ``entries``: each a ``WITH`` query, then ``main``
    (``%s`` placeholders, its parameters to go last; with expected counts, a statement ending
    in ``RETURNING``, to which a last column is added: whether every count was met), else the
    check of the expected counts, else the last entry as the main query; and the entries'
    parameters in order."""
    shape = tuple((e.sql, e.raw, e.expect) for e in entries)
    text = _text(shape, main)
    values: list[Any] = []
    for entry in entries:
        values.extend(entry.parameters())
    return text, values


@lru_cache(maxsize=512)
def _text(shape: tuple[tuple[str, bool, int | None], ...], main: str | None) -> str:
    queries: list[str] = []
    checks: list[str] = []
    offset = 0
    last = len(shape) - 1
    headless = main is None and all(expect is None for _, _, expect in shape)
    for n, (sql, raw, expect) in enumerate(shape):
        text, count = _numbered(sql, raw, offset)
        offset += count
        if headless and n == last:
            main_text = text
            break
        queries.append(f"leadflow_later_{n} AS ({text})")
        if expect is not None:
            checks.append(f"(SELECT count(*) FROM leadflow_later_{n}) = {int(expect)}")
    else:
        if main is not None:
            main_text, _ = _numbered(main, False, offset)
            if checks:
                main_text += f", ({' AND '.join(checks)}) AS leadflow_later_ok"
        else:
            condition = " AND ".join(checks)
            mark = MARK.replace("'", "''")
            main_text = f"SELECT CAST(CASE WHEN {condition} THEN '0' ELSE '{mark}' END AS integer)"
    if not queries:
        return main_text
    if main_text[:5].upper() == "WITH " and not main_text[5:].upper().startswith("RECURSIVE"):
        # The main query has ``WITH`` queries of its own: the waiting writes go among them.
        return f"WITH {', '.join(queries)}, {main_text[5:]}"
    return f"WITH {', '.join(queries)} {main_text}"


def returns_last(sql: str) -> bool:
    """Whether ``sql`` ends with its own ``RETURNING`` list (not one inside a ``WITH`` query,
    after which a parenthesis closes that query): a column can be added to it."""
    at = sql.upper().rfind(" RETURNING ")
    return at >= 0 and ")" not in sql[at:]


def _numbered(sql: str, raw: bool, offset: int) -> tuple[str, int]:
    """``sql``'s placeholders as ``$n`` from ``offset + 1``, and how many it has."""
    if raw:
        numbers = [int(found) for found in _NUMBERED.findall(sql)]
        if not offset:
            return sql, max(numbers, default=0)
        return _NUMBERED.sub(lambda m: f"${int(m[1]) + offset}", sql), max(numbers, default=0)
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match[0] == "%%":
            return "%"
        count += 1
        return f"${offset + count}"

    return _PYFORMAT.sub(number, sql), count
