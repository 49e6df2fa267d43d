"""A batch of moves on written with the next visits they go to
(:meth:`~leadflow.stores.sql.sequences.SqlEnrollmentStore.move_to_visits`,
:class:`~leadflow.ports.sequences.EnrollmentVisitMoves`). A visit whose idempotency key or id
is held already is left as it is, and its move is not written.

- **PostgreSQL**: one statement, four ``WITH`` queries: the visits' ``INSERT ... ON CONFLICT
  DO NOTHING RETURNING`` their keys, the rows split by the database from one JSON array
  parameter (each row an array of the scheduled-action table's columns, one text made by the
  C encoder, where ``schedule_many``'s ``unnest`` sends one array per column that psycopg
  dumps element by element in Python); the moves' compare-and-set ``UPDATE ... FROM``
  (:class:`.enrollment_moves.MoveStatement`'s, each move written only when its visit is
  among those inserted, or it has none); the moved enrollments' step records inserted at the
  positions the ``UPDATE`` returns; the records 200 or more behind deleted. One round trip
  where a batch took three (the visits, the moves, the records).
- **SQLite**: in one write transaction (its lock held), the visits' keys and ids already
  stored read in one statement and the others inserted with one ``executemany`` (what
  ``schedule_many`` does there), then the moves whose visit went in
  (:class:`.enrollment_moves.MoveStatement`, the records' insert).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, String, Table, bindparam, func, insert, or_, select
from sqlalchemy.engine import Dialect

from ...errors import InvalidInputError
from ...records import ActionKind, ScheduledAction
from ...sequences import EnrollmentHead, StepRecord
from ...sequences.enrollment import HISTORY_LIMIT
from ..checks import check_model, is_handed_over
from ..sequence_checks import checked_moves, head_of
from ..sequence_heads import head_document
from .database import SqlDatabase
from .direct import DriverStatement, execute
from .enrollment_moves import MoveStatement
from .enrollment_steps import StepRows
from .scheduled_sql import action_values
from .tables import Tables
from .types import Document, UtcDateTime, document_text

__all__ = ["VisitInsert", "VisitMoves", "VisitWrites"]

VisitMove = tuple[EnrollmentHead, EnrollmentHead, Sequence[StepRecord], str | None]
"""One move: ``(old, new, records, visit_key)``: the head as read (its revision compared), the
head that replaces it, the records it appends, and its visit's idempotency key (None: no
visit; it is written whatever)."""


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class VisitInsert:
    """PostgreSQL: ``INSERT INTO <scheduled> SELECT <each column of each row> FROM
    jsonb_array_elements(<the array>) ON CONFLICT DO NOTHING RETURNING idempotency_key``, the
    visits' ``WITH`` query of :class:`VisitMoves`."""

    __slots__ = ("_columns", "_times", "sql")

    def __init__(self, table: Table, dialect: Dialect) -> None:
        self._columns: tuple[str, ...] = tuple(c.name for c in table.c)
        self._times: tuple[bool, ...] = tuple(isinstance(c.type, UtcDateTime) for c in table.c)
        quote = dialect.identifier_preparer.quote
        values: list[str] = []
        for index, column in enumerate(table.c):
            if isinstance(column.type, Document):  # a JSON null: no document (SQL NULL)
                values.append(f"NULLIF(r.value -> {index}, 'null'::jsonb)")
            elif isinstance(column.type, String):  # text as it is: the column checks its
                values.append(f"(r.value ->> {index})")  # length (a cast would cut it)
            else:
                typed = dialect.type_compiler_instance.process(column.type.dialect_impl(dialect))
                values.append(f"CAST(r.value ->> {index} AS {typed})")
        self.sql: str = (
            f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
            f"({', '.join(quote(name) for name in self._columns)}) "
            f"SELECT {', '.join(values)} FROM jsonb_array_elements(%s::jsonb) AS r "
            f"ON CONFLICT DO NOTHING RETURNING {quote('idempotency_key')}"
        )

    def parameter(self, rows: Sequence[Mapping[str, Any]]) -> str:
        """The array of ``rows`` (each a scheduled action's row, every column): one text, the
        datetimes of the columns as ISO text, those inside documents tagged."""
        timed = tuple(zip(self._columns, self._times, strict=True))
        return document_text(
            [[_when(row[name]) if time else row[name] for name, time in timed] for row in rows]
        )


_MOVES: Final = (
    "i text, r bigint, q text, o text, a boolean, s text, v bigint, n bigint, "
    "t timestamptz, u timestamptz, e timestamptz, d jsonb, k text, x jsonb"
)


class VisitMoves:
    """PostgreSQL: the visits and the moves of a batch in one statement (see the module
    docstring)."""

    __slots__ = ("_visits", "sql")

    def __init__(self, tables: Tables, dialect: Dialect) -> None:
        self._visits = VisitInsert(tables.scheduled, dialect)
        q = dialect.identifier_preparer.quote
        table = dialect.identifier_preparer.format_table
        enrollments, steps = table(tables.enrollments), table(tables.enrollment_steps)
        self.sql: str = (
            f"WITH v AS ({self._visits.sql}), "
            f"m AS (UPDATE {enrollments} AS t SET document = m.d, state = m.s, "
            "sequence_version = m.v, revision = t.revision + 1, steps = t.steps + m.n, "
            "enrolled_at = m.t, updated_at = m.u, ended_at = m.e "
            f"FROM jsonb_to_recordset(%s::jsonb) AS m({_MOVES}) "
            "WHERE t.enrollment_id = m.i AND t.revision = m.r AND t.sequence_id = m.q "
            "AND t.opportunity_id = m.o AND (NOT m.a OR t.state = 'active') "
            f"AND (m.k IS NULL OR m.k IN (SELECT {q('idempotency_key')} FROM v)) "
            "RETURNING t.enrollment_id, t.steps, m.n, m.x), "
            f"a AS (INSERT INTO {steps} (enrollment_id, position, record) "
            "SELECT m.enrollment_id, m.steps - m.n + x.n, x.value FROM m CROSS JOIN "
            "jsonb_array_elements(m.x) WITH ORDINALITY AS x(value, n)), "
            f"g AS (DELETE FROM {steps} AS s USING m WHERE s.enrollment_id = m.enrollment_id "
            f"AND s.position <= m.steps - {HISTORY_LIMIT}) "
            f"SELECT 0, {q('idempotency_key')}, NULL::bigint FROM v "
            "UNION ALL SELECT 1, enrollment_id, steps FROM m"
        )

    def run(
        self,
        connection: Connection,
        visits: Sequence[Mapping[str, Any]],
        moves: Sequence[VisitMove],
    ) -> tuple[set[str], dict[str, int]]:
        """Insert ``visits`` (rows) and write ``moves``: the keys of the visits that went
        in, and the ids of the enrollments moved with their new ``steps``."""
        rows = []
        for old, new, records, key in sorted(moves, key=lambda move: move[0].enrollment_id):
            rows.append({
                "i": old.enrollment_id, "r": old.revision, "q": old.sequence_id,
                "o": old.opportunity_id, "a": new.active, "s": new.state.value,
                "v": new.sequence_version, "n": len(records),
                "t": _when(new.enrolled_at), "u": _when(new.updated_at),
                "e": _when(new.ended_at), "d": head_document(new), "k": key,
                "x": [record.to_document() for record in records],
            })  # fmt: skip
        parameters = (self._visits.parameter(visits), document_text(rows))
        found = execute(connection, self.sql, parameters, returns=True)
        inserted = {key for kind, key, _ in found if kind == 0}
        moved = {key: int(steps) for kind, key, steps in found if kind == 1}
        return inserted, moved


Moved = builtins.list[tuple[EnrollmentHead | None, bool]]


class VisitWrites:
    """:meth:`~leadflow.ports.sequences.EnrollmentVisitMoves.move_to_visits` on ``database``
    (its checks, then :class:`VisitMoves` on PostgreSQL, :class:`VisitInsert` and the moves'
    statements on SQLite)."""

    __slots__ = ("_db", "_held", "_insert", "_moves", "_rows", "_together")

    def __init__(self, database: SqlDatabase, moves: MoveStatement, rows: StepRows) -> None:
        self._db = database
        self._moves = moves
        self._rows = rows
        dialect = database.engine.dialect
        postgresql = database.dialect == "postgresql"
        self._together = VisitMoves(database.tables, dialect) if postgresql else None
        # SQLite, in the write transaction (its lock held: nothing else writes in between):
        # the visits' keys and ids already stored read in one statement, the others inserted
        # with one ``executemany`` of the one-row ``INSERT`` through the driver (an array's
        # ``json_extract`` of each column parses the row's text once per column: more of
        # SQLite's CPU than the ``executemany``).
        self._held: DriverStatement | None = None
        self._insert: DriverStatement | None = None
        if postgresql:
            return
        c = database.tables.scheduled.c
        keys, ids = (
            select(
                func.json_each(bindparam(name, type_=String)).table_valued("value").c.value
            ).scalar_subquery()
            for name in ("keys", "ids")
        )
        self._held = DriverStatement(
            dialect,
            select(c.idempotency_key, c.action_id).where(
                or_(c.idempotency_key.in_(keys), c.action_id.in_(ids))
            ),
        )
        self._insert = DriverStatement(dialect, insert(database.tables.scheduled))

    def __call__(self, moves: object) -> Moved:
        given = _triples(moves)
        checked = checked_moves([(head, records) for head, records, _ in given])
        visits = _checked_visits(given)
        rows = [None if v is None else action_values(v) for v in visits]
        new = [
            (head if type(head) is EnrollmentHead else head_of(head))._evolve(
                revision=head.revision + 1
            )
            for head, _ in checked
        ]
        keys = [None if v is None else v.idempotency_key for v in visits]
        wanted = [row for row in rows if row is not None]
        with self._db.write() as connection:
            if self._together is not None:
                inserted, steps = self._together.run(
                    connection, wanted,
                    [(old, changed, records, key) for (old, records), changed, key
                     in zip(checked, new, keys, strict=True)],
                )  # fmt: skip
            else:
                inserted = self._sqlite_visits(connection, wanted)
                steps = self._sqlite_moves(connection, checked, new, keys, inserted)
        found: Moved = []
        for (old, _), head, key in zip(checked, new, keys, strict=True):
            stored = key is None or key in inserted
            if head.enrollment_id not in steps:
                found.append((None, stored))
            else:
                found.append((head if is_handed_over(old) else head_of(head), stored))
        return found

    def _sqlite_visits(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
        """The keys of ``rows`` inserted (those whose key and id are not held already)."""
        if not rows:
            return set()
        assert self._held is not None and self._insert is not None
        held = self._held.run(
            connection,
            {"keys": json.dumps([row["idempotency_key"] for row in rows]),
             "ids": json.dumps([row["action_id"] for row in rows])},
        )  # fmt: skip
        keys, ids = {key for key, _ in held}, {action_id for _, action_id in held}
        new = [r for r in rows if r["idempotency_key"] not in keys and r["action_id"] not in ids]
        if new:
            self._insert.run_many(connection, new)
        return {row["idempotency_key"] for row in new}

    def _sqlite_moves(
        self,
        connection: Connection,
        checked: Sequence[tuple[EnrollmentHead, list[StepRecord]]],
        new: Sequence[EnrollmentHead],
        keys: Sequence[str | None],
        inserted: set[str],
    ) -> dict[str, int]:
        """The moves whose visit went in (or that have none), with their records."""
        going = [
            (old, changed, records)
            for (old, records), changed, key in zip(checked, new, keys, strict=True)
            if key is None or key in inserted
        ]
        if not going:
            return {}
        steps = self._moves.run(connection, [(o, c, len(r)) for o, c, r in going])
        self._rows.write(
            connection,
            [(old.enrollment_id, steps[old.enrollment_id], records, False)
             for old, _, records in going if old.enrollment_id in steps and records],
        )  # fmt: skip
        return steps


def _triples(
    moves: object,
) -> list[tuple[EnrollmentHead, Sequence[StepRecord], ScheduledAction | None]]:
    if not isinstance(moves, Sequence) or isinstance(moves, str | bytes):
        raise InvalidInputError(
            f"expected a sequence of (enrollment head, records, visit), got {type(moves).__name__}",
            field="moves",
        )
    found = []
    for move in moves:
        if type(move) is tuple and len(move) == 3:  # the runtime's (no ABC check a move)
            found.append(move)
            continue
        if isinstance(move, str | bytes) or not isinstance(move, Sequence) or len(move) != 3:
            raise InvalidInputError(
                f"expected (enrollment head, records, visit), got {move!r}", field="moves"
            )
        found.append((move[0], move[1], move[2]))
    return found


def _checked_visits(
    given: Sequence[tuple[EnrollmentHead, Sequence[StepRecord], ScheduledAction | None]],
) -> list[ScheduledAction | None]:
    """Each move's visit (checked, unless the runtime handed it over): a ``step`` action of
    its head's enrollment, no key or id twice."""
    visits: list[ScheduledAction | None] = []
    keys: set[str] = set()
    ids: set[str] = set()
    for head, _, visit in given:
        if visit is None:
            visits.append(None)
            continue
        checked = check_model(visit, ScheduledAction, "moves")
        if checked.kind is not ActionKind.STEP or checked.enrollment_id != head.enrollment_id:
            raise InvalidInputError("a visit is a step action of its move's enrollment",
                                    field="moves")  # fmt: skip
        if checked.idempotency_key in keys or checked.action_id in ids:
            raise InvalidInputError("a visit given twice", field="moves")
        keys.add(checked.idempotency_key)
        ids.add(checked.action_id)
        visits.append(checked)
    return visits
