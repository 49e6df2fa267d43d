"""An enrollment's step history in SQL: one row of ``<prefix>enrollment_steps`` per record
(revision 0011), at its position (1 for the enrollment's first record ever); ``steps`` on the
enrollment's row is the position of its newest record, and rows 200 or more behind it are
deleted. A step appends its records (an ``INSERT`` of those rows, a ``DELETE`` of the positions
that fell behind) without reading or writing the rest, whatever the history's length; a read
of an enrollment with its history aggregates its rows in the same statement as the enrollment's
row (one snapshot: a step committed in between cannot show in one and not the other)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    String,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.engine import Dialect

from ...sequences import StepRecord
from ...sequences.enrollment import HISTORY_LIMIT
from .direct import DriverStatement
from .tables import Tables
from .types import Document, document_text

__all__ = ["StepRows", "StepWrite"]

StepWrite = tuple[str, int, Sequence[StepRecord], bool]
"""What one write does to an enrollment's history: ``(enrollment_id, steps, records,
replace)``: ``steps`` is the enrollment's ``steps`` after the write (its row updated in the same
transaction, by ``len(records)``); ``records`` are appended at the positions up to it;
``replace``: the rows before them are deleted (the whole history written again), else only
those that fell 200 or more behind."""

_ALL: Final = 2**63 - 1  # past every position


class StepRows:
    """The statements on ``<prefix>enrollment_steps`` for the enrollment store of ``tables``
    on ``dialect``."""

    def __init__(self, tables: Tables, dialect: str, *, driver: Dialect | None = None) -> None:
        self._dialect = dialect
        e, s = tables.enrollments.c, tables.enrollment_steps.c
        mine = s.enrollment_id == e.enrollment_id
        self.history: ColumnElement[Any]
        """The enrollment's records (a correlated subquery, for a read of the enrollments
        table): on PostgreSQL a JSON array in their order, on SQLite one of ``[position,
        record]`` pairs (its aggregate takes no order; :meth:`records` sorts them)."""
        aggregated: ColumnElement[Any]
        if dialect == "postgresql":
            aggregated = func.coalesce(
                func.jsonb_agg(aggregate_order_by(s.record, s.position)),
                literal_column("'[]'::jsonb"),
            )
        else:
            # ``[[position, record], ...]`` from the stored texts as they are (no JSON
            # function parses the records again).
            pairs = func.group_concat(func.printf("[%d,%s]", s.position, s.record), ",")
            aggregated = func.printf("[%s]", func.coalesce(pairs, ""))
        self.history = type_coerce(
            select(aggregated).where(mine).correlate(tables.enrollments).scalar_subquery(),
            Document,
        ).label("history")
        # Every enrollment's new records in one JSON array parameter, ``[[id, first, [record,
        # ...]], ...]``, split into rows by the database: one statement whatever the number
        # of enrollments (their records encoded at once).
        rows = bindparam("rows", type_=String)
        enrollment_id: ColumnElement[Any]
        position: ColumnElement[Any]
        record: ColumnElement[Any]
        if dialect == "postgresql":
            each = func.jsonb_array_elements(cast(rows, JSONB)).table_valued("value").alias("r")
            records = (
                func.jsonb_array_elements(each.c.value.op("->")(2))
                .table_valued("value", with_ordinality="n")
                .render_derived(name="x")
            )
            enrollment_id = each.c.value.op("->>")(0)
            position = cast(each.c.value.op("->>")(1), BigInteger) + records.c.n
            record = records.c.value
        else:
            each = func.json_each(rows).table_valued("value").alias("r")
            records = func.json_each(each.c.value, "$[2]").table_valued("key", "value").alias("x")
            enrollment_id = func.json_extract(each.c.value, "$[0]")
            position = func.json_extract(each.c.value, "$[1]") + records.c.key + 1
            record = records.c.value
        self._insert = insert(tables.enrollment_steps).from_select(
            ["enrollment_id", "position", "record"],
            select(enrollment_id, position, record).select_from(each.join(records, true())),
        )
        # SQLite (``driver``: the engine's dialect): the insert straight through the driver
        # (see .direct), as an entry's other statements are; PostgreSQL's entry inserts its
        # records with the row (.enrollment_moves.EnrollInsert).
        self._insert_direct = (
            DriverStatement(driver, self._insert)
            if driver is not None and dialect == "sqlite"
            else None
        )
        self._delete = delete(tables.enrollment_steps).where(
            s.enrollment_id == bindparam("w_id"), s.position <= bindparam("upto")
        )

    def records(self, history: Any) -> list[Any]:
        """The record documents of a row's :attr:`history`, oldest first."""
        if self._dialect == "postgresql":
            return list(history or ())
        return [record for _, record in sorted(history or (), key=lambda pair: pair[0])]

    def write(self, connection: Connection, writes: Iterable[StepWrite]) -> None:
        """Each of ``writes`` (see :data:`StepWrite`): one ``DELETE`` executemany of the rows
        behind, one ``INSERT ... SELECT`` of the new ones (every enrollment's records in one
        JSON array the database splits: ``json_each`` on SQLite, ``jsonb_array_elements`` on
        PostgreSQL)."""
        rows: list[list[Any]] = []
        behind: list[dict[str, Any]] = []
        for enrollment_id, steps, records, replace in writes:
            if records:
                rows.append([enrollment_id, steps - len(records),
                             [record.to_document() for record in records]])  # fmt: skip
            upto = _ALL if replace else (steps - HISTORY_LIMIT if records else 0)
            if upto > 0:
                behind.append({"w_id": enrollment_id, "upto": upto})
        if behind:
            connection.execute(self._delete, behind)
        if rows:
            text = document_text(rows)  # one pass of the C encoder, datetimes tagged
            if self._insert_direct is not None:
                self._insert_direct.run(connection, {"rows": text})
            else:
                connection.execute(self._insert, {"rows": text})
