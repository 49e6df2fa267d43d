"""A batch of enrollment moves as one statement (:meth:`~leadflow.stores.sql.sequences.
SqlEnrollmentStore.move_many`): every move's compare-and-set in a single ``UPDATE ... FROM``
over one JSON array parameter, ``RETURNING`` the rows it changed and their new ``steps``.

Against an ``executemany`` of the per-row ``UPDATE`` it makes one statement (one round trip on
PostgreSQL, where the ``executemany`` ran one statement a row) with one parameter bound by
SQLAlchemy instead of a dozen a row, and what it returns says both which compare-and-sets
succeeded (no read back when some failed) and where each moved enrollment's new step records
go (no read of ``steps``). The array is ``json_each`` on SQLite (``UPDATE ... FROM``, SQLite
3.33; ``RETURNING``, 3.35) and ``jsonb_to_recordset`` on PostgreSQL; each row is read by the
enrollments' primary key. Its rows are in the order of their ids (concurrent batches lock
rows in one order)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Connection,
    String,
    Update,
    bindparam,
    cast,
    column,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

from ...sequences import EnrollmentHead, EnrollmentState, StepRecord
from ..sequence_heads import head_document
from .direct import DriverStatement
from .tables import Tables
from .types import Document, UtcDateTime, document_text, encode_document, micros

__all__ = ["EnrollInsert", "MarkStatement", "MoveRow", "MoveStatement"]

MoveRow = tuple[EnrollmentHead, EnrollmentHead, int]
"""One move: ``(old, new, records)``: the head as read (its revision is compared), the head
that replaces it, and how many step records the move appends (``steps`` raised by that)."""

_ACTIVE: Final = EnrollmentState.ACTIVE.value
# The fields of a row of the array, in order (SQLite reads them by position).
_FIELDS: Final = ("i", "r", "q", "o", "a", "s", "v", "n", "t", "u", "e", "d")


class MoveStatement:
    """The batch ``UPDATE`` on the enrollments table of ``tables`` on ``dialect``."""

    def __init__(self, tables: Tables, dialect: str) -> None:
        self._postgresql = dialect == "postgresql"
        t = tables.enrollments
        c = t.c
        rows = bindparam("moves", type_=String)
        field: dict[str, Any]
        if self._postgresql:
            types = {"i": String, "r": BigInteger, "q": String, "o": String, "a": Boolean,
                     "s": String, "v": BigInteger, "n": BigInteger, "t": UtcDateTime,
                     "u": UtcDateTime, "e": UtcDateTime, "d": JSONB}  # fmt: skip
            each = (
                func.jsonb_to_recordset(cast(rows, JSONB))
                .table_valued(*(column(name, types[name]) for name in _FIELDS))
                .render_derived(name="m", with_types=True)
            )
            field = {name: each.c[name] for name in _FIELDS}
            active = each.c.a
            document = type_coerce(each.c.d, Document)
        else:
            each = func.json_each(rows).table_valued("value").alias("m")
            field = {
                name: func.json_extract(each.c.value, f"$[{index}]")
                for index, name in enumerate(_FIELDS)
            }
            active = field["a"] == 1
            # The document travels as an object in the array: ``json_extract`` gives its
            # JSON text (minified; numbers and strings as they were written), stored as it is.
            document = type_coerce(field["d"], Document)
        self.statement: Update = (
            update(t)
            .where(
                c.enrollment_id == field["i"],
                c.revision == field["r"],
                c.sequence_id == field["q"],
                c.opportunity_id == field["o"],
                # An ended enrollment stays ended: an active one only over an active row.
                or_(~active, c.state == literal_column(f"'{_ACTIVE}'")),
            )
            .values(
                {
                    c.document: document,
                    c.state: field["s"],
                    c.sequence_version: field["v"],
                    c.revision: c.revision + 1,
                    c.steps: c.steps + field["n"],
                    c.enrolled_at: field["t"],
                    c.updated_at: field["u"],
                    c.ended_at: field["e"],
                }
            )
            .returning(c.enrollment_id, c.steps)
        )

    def _when(self, value: datetime | None) -> Any:
        if value is None:
            return None
        return value.isoformat() if self._postgresql else micros(value)

    def parameter(self, moves: Sequence[MoveRow]) -> str:
        """The statement's one parameter: the moves as a JSON array, in the order of ids."""
        rows: list[Any] = []
        when = self._when
        for old, new, records in sorted(moves, key=lambda move: move[0].enrollment_id):
            rows.append([
                old.enrollment_id, old.revision, old.sequence_id, old.opportunity_id,
                new.active, new.state.value, new.sequence_version, records,
                when(new.enrolled_at), when(new.updated_at), when(new.ended_at),
                head_document(new),
            ])  # fmt: skip
        if self._postgresql:  # jsonb_to_recordset takes objects
            rows = [dict(zip(_FIELDS, row, strict=True)) for row in rows]
        # The whole array in one pass of the C encoder, each document's datetimes tagged as
        # they come (no encoded copy of each document first, no document encoded twice).
        return document_text(rows)

    def run(self, connection: Connection, moves: Sequence[MoveRow]) -> dict[str, int]:
        """Run the moves; the ids of the rows changed, each with its new ``steps``."""
        result = connection.execute(self.statement, {"moves": self.parameter(moves)})
        return {enrollment_id: int(steps) for enrollment_id, steps in result}


class MarkStatement:
    """The send marks of a batch (:meth:`~leadflow.stores.sql.sequences.SqlEnrollmentStore.
    mark_sending`) as one ``UPDATE ... FROM`` over a JSON array of ``[id, revision]`` pairs
    (in the order of their ids), ``RETURNING`` the ids of the rows it marked: on each, the
    flag and the change time merged into the stored document by the database (``json_patch``
    on SQLite, ``||`` on PostgreSQL), ``revision`` raised, ``updated_at`` set."""

    def __init__(self, tables: Tables, dialect: str) -> None:
        t = tables.enrollments
        c = t.c
        rows = bindparam("marks", type_=String)
        patch = bindparam("patch", type_=String)
        enrollment_id: ColumnElement[Any]
        revision: ColumnElement[Any]
        merged: ColumnElement[Any]
        if dialect == "postgresql":
            each = (
                func.jsonb_to_recordset(cast(rows, JSONB))
                .table_valued(column("i", String), column("r", BigInteger))
                .render_derived(name="m", with_types=True)
            )
            enrollment_id, revision = each.c.i, each.c.r
            merged = c.document.op("||")(cast(patch, JSONB))
        else:
            pairs = func.json_each(rows).table_valued("value").alias("m")
            enrollment_id = func.json_extract(pairs.c.value, "$[0]")
            revision = func.json_extract(pairs.c.value, "$[1]")
            merged = func.json_patch(c.document, patch)
        # On SQLite a term no index serves (``state || ''``): the planner would otherwise walk
        # the index on state, every active enrollment, with the array scanned for each.
        state = c.state if dialect == "postgresql" else c.state.op("||")(literal_column("''"))
        active = state == literal_column(f"'{_ACTIVE}'")
        self._postgresql = dialect == "postgresql"
        self.statement: Update = (
            update(t)
            .where(
                c.enrollment_id == enrollment_id,
                c.revision == revision,
                active,
            )
            .values(
                {
                    c.document: merged,
                    c.revision: c.revision + 1,
                    c.updated_at: bindparam("at", type_=c.updated_at.type),
                }
            )
            .returning(c.enrollment_id)
        )

    def run(
        self, connection: Connection, marks: Sequence[tuple[str, int]], at: datetime
    ) -> set[str]:
        """Mark ``marks`` (``(enrollment_id, revision)``, each id once) at ``at``; the ids
        of the rows marked."""
        ordered = sorted(marks)
        rows: list[Any] = [{"i": i, "r": r} for i, r in ordered] if self._postgresql else ordered
        patch = json.dumps({"sending": True, "updatedAt": encode_document(at)})
        parameters = {"marks": json.dumps(rows), "patch": patch, "at": at}
        return {
            enrollment_id for (enrollment_id,) in connection.execute(self.statement, parameters)
        }


class EnrollInsert:
    """A new enrollment's row and its first step records in one statement on PostgreSQL
    (:meth:`~leadflow.stores.sql.sequences.SqlEnrollmentStore.enroll`): the row's ``INSERT
    ... ON CONFLICT DO NOTHING RETURNING`` in a ``WITH`` query that feeds the records'
    ``INSERT ... SELECT`` (a data-modifying ``WITH``: the records go in only when the row
    did), one round trip instead of two. None on SQLite, which has no such statement. Run
    through the driver (:class:`~.direct.DriverStatement`), carrying the writes waiting in
    the unit of work (``handle``'s arrival fact: a table this statement does not read), so
    that entering a sequence does not send them as a statement of their own. With ``visit``,
    a third ``WITH`` query inserts the enrollment's first visit into the scheduled actions
    (:meth:`~leadflow.stores.sql.sequences.SqlEnrollmentStore.enroll_at_first`), also only
    when the row went in: an entry is then one statement, not two."""

    def __init__(self, tables: Tables, dialect: Dialect, *, visit: bool = False) -> None:
        t, s = tables.enrollments, tables.enrollment_steps
        values = {c: bindparam(f"c_{c.name}", type_=c.type) for c in t.c}
        added = (
            postgresql.insert(t)
            .values(values)
            .on_conflict_do_nothing()
            .returning(t.c.enrollment_id)
            .cte("added")
        )
        records = (
            func.jsonb_array_elements(cast(bindparam("records", type_=String), JSONB))
            .table_valued("value", with_ordinality="n")
            .render_derived(name="x")
        )
        rows = (
            insert(s)
            .from_select(
                ["enrollment_id", "position", "record"],
                select(added.c.enrollment_id, records.c.n, records.c.value).select_from(
                    added.join(records, true())
                ),
            )
            .cte("added_steps")
        )
        statement = select(added.c.enrollment_id).add_cte(rows)
        if visit:  # the first visit's action: one row for the enrollment's one, else none
            a = tables.scheduled
            visits = (
                postgresql.insert(a)
                .from_select(
                    list(a.c.keys()),
                    select(
                        *(cast(bindparam(f"s_{c.name}", type_=c.type), c.type) for c in a.c)
                    ).select_from(added),
                )
                .on_conflict_do_nothing()  # its key or id held: left as it is
                .cte("added_visit")
            )
            statement = statement.add_cte(visits)
        self.statement = DriverStatement(dialect, statement)

    def run(
        self,
        connection: Connection,
        values: dict[str, Any],
        records: Sequence[StepRecord],
        visit: dict[str, Any] | None = None,
    ) -> bool:
        """Insert the row of ``values`` (its columns) and, if it went in, ``records`` at
        positions 1 .. n and (built with ``visit=True``) the scheduled action of ``visit``
        (its columns); whether it went in (else an enrollment held its id or its pair)."""
        parameters = {f"c_{name}": value for name, value in values.items()}
        parameters["records"] = document_text([record.to_document() for record in records])
        if visit is not None:
            parameters.update({f"s_{name}": value for name, value in visit.items()})
        return bool(self.statement.run(connection, parameters, carry=True))
