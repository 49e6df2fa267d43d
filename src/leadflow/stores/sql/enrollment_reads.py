"""The enrollment store's hot reads straight through the driver (see :mod:`.direct`).

- :class:`HeadsRead`: a claimed batch's heads (:meth:`~leadflow.stores.sql.sequences.
  SqlEnrollmentStore.get_heads`, once per batch of steps in ``run_due``), the ids as one JSON
  array parameter split by the database (``json_each`` on SQLite,
  ``jsonb_array_elements_text`` on PostgreSQL), each row found by the primary key: a statement
  text fixed whatever the number of ids, so it is compiled once.
- :class:`ActiveRead`: an opportunity's active enrollments with their histories
  (:meth:`~leadflow.stores.sql.sequences.SqlEnrollmentStore.active_for`, on every event
  sequences hear).

Through SQLAlchemy each read built an execution context and ran a result processor per
column and per row (the JSON decoded, then walked again for its datetimes). Here the rows come
back as the driver's tuples and each document is decoded in one pass
(:func:`~.types.document_from_text`; on PostgreSQL the documents are read as text for that).
What a row becomes is unchanged: the same documents, validated into the same models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import Label

from ...sequences import EnrollmentState
from . import later
from .direct import DriverStatement
from .tables import Tables
from .types import document_from_text

__all__ = ["ActiveRead", "HeadRow", "HeadsRead"]

_ACTIVE: Final = EnrollmentState.ACTIVE.value

HeadRow = tuple[dict[str, Any], int, str, str]
"""A head's row, decoded: ``(document, revision, state, enrollment_id)``."""


def _text(value: Any) -> Any:
    """The document of a row as a decoded value (the driver gives text, or bytes)."""
    return document_from_text(value)


class HeadsRead:
    """``SELECT document, revision, state, enrollment_id`` of the enrollments whose ids are
    in one JSON array parameter (see the module docstring)."""

    __slots__ = ("_statement",)

    def __init__(self, tables: Tables, dialect: Dialect) -> None:
        c = tables.enrollments.c
        ids = bindparam("ids", type_=String)
        document: ColumnElement[Any]
        if dialect.name == "postgresql":
            each = func.jsonb_array_elements_text(cast(ids, JSONB)).table_valued("value")
            document = cast(c.document, Text)
        else:
            each = func.json_each(ids).table_valued("value")
            document = c.document
        wanted = c.enrollment_id.in_(select(each.c.value).scalar_subquery())
        self._statement = DriverStatement(
            dialect, select(document, c.revision, c.state, c.enrollment_id).where(wanted)
        )

    def run(self, connection: Connection, ids_json: str) -> list[HeadRow]:
        """The rows of the enrollments in ``ids_json`` (a JSON array of ids), decoded; an id
        with no enrollment has no row."""
        return [
            (_text(document), int(revision), state, enrollment_id)
            for document, revision, state, enrollment_id in self._statement.run(
                connection, {"ids": ids_json}
            )
        ]


class ActiveRead:
    """``SELECT document, revision, state, history`` of an opportunity's active enrollments,
    oldest first (``history``: the store's correlated subquery of step rows,
    :attr:`~.enrollment_steps.StepRows.history`). On PostgreSQL it runs beside the writes
    waiting in the unit of work (:meth:`~.database.SqlDatabase.read_beside`: an event's
    analytic facts, on tables it does not read): they are set aside for the read and left
    waiting for the statement that carries them."""

    __slots__ = ("_postgresql", "_statement")

    def __init__(self, tables: Tables, dialect: Dialect, history: ColumnElement[Any]) -> None:
        c = tables.enrollments.c
        self._postgresql = dialect.name == "postgresql"
        document: ColumnElement[Any] = c.document
        active: ColumnElement[bool]
        if self._postgresql:
            document = cast(c.document, Text)
            history = cast(history.element if isinstance(history, Label) else history, Text)
            active = c.state == literal_column(f"'{_ACTIVE}'")
        else:
            # A term no index serves (``state || ''``), as the send marks'
            # (.enrollment_moves): else SQLite's planner, which has no statistics, walks the
            # index on (state, enrolled_at), whose order is the one asked for, over every
            # active enrollment of every opportunity, instead of the opportunity's own on
            # (opportunity_id, enrolled_at).
            active = c.state.op("||")(literal_column("''")) == literal_column(f"'{_ACTIVE}'")
        statement = (
            select(document, c.revision, c.state, history)
            .where(c.opportunity_id == bindparam("w_opportunity"), active)
            .order_by(c.enrolled_at, c.enrollment_id)
        )
        self._statement = DriverStatement(dialect, statement)

    def run(
        self, connection: Connection, opportunity_id: str
    ) -> list[tuple[dict[str, Any], int, str, Sequence[Any]]]:
        """The rows, decoded: ``(document, revision, state, history)`` (the history as the
        subquery gives it, decoded)."""
        waiting = later.take(connection) if self._postgresql else []
        try:
            rows = self._statement.run(connection, {"w_opportunity": opportunity_id})
        finally:
            for write in waiting:  # left waiting, in their order
                later.put(connection, write)
        return [
            (_text(document), int(revision), state, _text(history) if history else [])
            for document, revision, state, history in rows
        ]
