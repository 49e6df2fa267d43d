"""Sequences in SQL: :class:`~leadflow.ports.SequenceRepository` (its definitions in
:mod:`.sequence_definitions`, revision 0007) and :class:`~leadflow.ports.EnrollmentStore`
(revisions 0007 and 0011).

**Enrollments.** The record as its document beside the columns the queries and the checked
writes use; its step history as rows of their own (:mod:`.enrollment_steps`), which a step
appends to without reading or writing the rest (:meth:`SqlEnrollmentStore.move_many`). A
partial unique index on ``(sequence_id, opportunity_id) WHERE state = 'active'`` keeps one
active enrollment per pair: :meth:`SqlEnrollmentStore.enroll` is one ``INSERT ... ON CONFLICT
DO NOTHING`` (the id or the pair taken: nothing inserted, the holder is read back), so
concurrent entries store one. :meth:`SqlEnrollmentStore.update` is one ``UPDATE ... WHERE
enrollment_id = :id AND revision = :revision`` that also re-checks what may not change; when it
changes nothing, the stored row says why (not found, stale, or refused).
:meth:`SqlEnrollmentStore.mark_sending` is the same compare-and-set for the send mark alone: the
flag merged into the stored document by the database, the document not sent again.

Both take part in the storage's unit of work (``with storage.unit_of_work():``).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ...documents import plain
from ...errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StaleWriteError,
)
from ...records import ActionKind, ScheduledAction
from ...sequences import (
    Enrollment,
    EnrollmentHead,
    EnrollmentState,
    StepRecord,
)
from ..checks import (
    check_id,
    check_limit,
    check_model,
    is_handed_over,
)
from ..sequence_checks import (
    check_change,
    checked_batch,
    checked_enrollment,
    checked_ids,
    checked_marks,
    checked_moves,
    detached,
    enum_member,
    head_of,
)
from ..sequence_heads import head_document, head_from_row
from .database import SqlDatabase
from .direct import DriverStatement
from .enrollment_moves import EnrollInsert, MarkStatement, MoveStatement
from .enrollment_reads import ActiveRead, HeadsRead
from .enrollment_steps import StepRows, StepWrite
from .enrollment_visits import VisitWrites
from .errors import translated
from .scheduled_sql import action_values
from .sequence_definitions import SqlSequenceRepository

__all__ = ["SqlEnrollmentStore", "SqlSequenceRepository"]

_ACTIVE: Final[ColumnElement[str]] = literal_column(f"'{EnrollmentState.ACTIVE.value}'")
"""As a SQL literal: the partial index applies only when a query repeats its term."""
_MAX_LIST: Final = 10_000
_ENROLL_ATTEMPTS: Final = 20


# --------------------------------------------------------------------------- enrollments


def _enrollment_values(enrollment: EnrollmentHead) -> dict[str, Any]:
    """The row of ``enrollment`` (its document without the history: the history's records
    are rows of their own)."""
    return {
        "enrollment_id": enrollment.enrollment_id,
        "sequence_id": enrollment.sequence_id,
        "sequence_version": enrollment.sequence_version,
        "opportunity_id": enrollment.opportunity_id,
        "state": enrollment.state.value,
        "revision": enrollment.revision,
        "enrolled_at": enrollment.enrolled_at,
        "updated_at": enrollment.updated_at,
        "ended_at": enrollment.ended_at,
        "document": head_document(enrollment),
    }


_UPDATED_COLUMNS: Final = (
    "sequence_version", "state", "revision", "enrolled_at", "updated_at", "ended_at", "document",
)  # fmt: skip


def _update_parameters(old: EnrollmentHead, new: EnrollmentHead, steps: int) -> dict[str, Any]:
    """The parameters of the compare-and-set ``UPDATE``: ``old`` is what was read, ``new``
    what replaces it; ``steps``: the records it writes (the whole history of an update, the
    records a move appends)."""
    values = _enrollment_values(new)
    parameters = {f"v_{name}": values[name] for name in _UPDATED_COLUMNS}
    parameters["v_steps"] = steps
    parameters.update(
        w_id=old.enrollment_id, w_revision=old.revision,
        w_sequence=old.sequence_id, w_opportunity=old.opportunity_id,
    )  # fmt: skip
    return parameters


def _load_head(row: Mapping[Any, Any]) -> EnrollmentHead:
    return EnrollmentHead.from_document(
        {**row["document"], "revision": row["revision"], "state": row["state"]}
    )


def _replaced(enrollment: Enrollment) -> StepWrite:
    """An update's history write: the whole history again, at positions 1 .. n."""
    history = enrollment.history
    return (enrollment.enrollment_id, len(history), history, True)


def _optional_id(value: object, field: str) -> str | None:
    value = plain(value)
    check_id(value, field, optional=True)
    assert value is None or isinstance(value, str)
    return value


class SqlEnrollmentStore:
    """:class:`~leadflow.ports.EnrollmentStore` on the ``<prefix>enrollments`` table of
    ``database``."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._t = database.tables.enrollments
        upsert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        c = self._t.c
        # Any unique constraint: the id, or the one active enrollment of the pair.
        self._add = upsert(self._t).on_conflict_do_nothing().returning(c.enrollment_id)
        # SQLite's entry (PostgreSQL's is one statement, below): the row and its records
        # straight through the driver, as every ``handle`` statement is (see .direct).
        self._add_direct = (
            DriverStatement(database.engine.dialect, self._add)
            if database.dialect == "sqlite"
            else None
        )
        self._rows = StepRows(database.tables, database.dialect, driver=database.engine.dialect)
        self._moves = MoveStatement(database.tables, database.dialect)
        self._visit_moves = VisitWrites(database, self._moves, self._rows)
        self._marks = MarkStatement(database.tables, database.dialect)
        self._enroll = (  # PostgreSQL: the row and its records in one statement
            EnrollInsert(database.tables, database.engine.dialect)
            if database.dialect == "postgresql"
            else None
        )
        # enroll_at_first: on PostgreSQL the first visit in the same statement, on SQLite its
        # row inserted after the enrollment's in the same transaction.
        self._enroll_visit = (
            EnrollInsert(database.tables, database.engine.dialect, visit=True)
            if database.dialect == "postgresql"
            else None
        )
        self._add_visit = (
            DriverStatement(
                database.engine.dialect,
                sqlite.insert(database.tables.scheduled).on_conflict_do_nothing(),
            )
            if database.dialect == "sqlite"
            else None
        )
        self._head = (c.document, c.revision, c.state)
        self._columns = (*self._head, self._rows.history)
        # Built once, parameters bound per call (the hot path: every step reads and moves one).
        self._by_id = select(*self._columns).where(c.enrollment_id == bindparam("w_id"))
        self._by_pair = select(*self._columns).where(  # the pair's active one (enroll)
            c.sequence_id == bindparam("w_sequence"),
            c.opportunity_id == bindparam("w_opportunity"),
            self._active_is(),
        )
        checked = (
            c.enrollment_id == bindparam("w_id"),
            c.revision == bindparam("w_revision"),
            c.sequence_id == bindparam("w_sequence"),
            c.opportunity_id == bindparam("w_opportunity"),
        )
        values = {c[name]: bindparam(f"v_{name}", type_=c[name].type) for name in _UPDATED_COLUMNS}
        # An update writes the whole history again (its records at positions 1 .. n); a move
        # appends its records after the newest (:class:`.enrollment_moves.MoveStatement`).
        replaced = {**values, c.steps: bindparam("v_steps", type_=c.steps.type)}
        self._update_active = update(self._t).where(*checked, self._active_is()).values(replaced)
        self._update_any = update(self._t).where(*checked).values(replaced)
        in_ids = c.enrollment_id.in_(bindparam("w_ids", expanding=True))
        self._by_ids = select(*self._columns, c.enrollment_id).where(in_ids)
        self._heads_by_ids = select(*self._head, c.enrollment_id).where(in_ids)
        self._lists: dict[tuple[bool, bool, EnrollmentState | None, bool], Select[Any]] = {}
        # A batch's heads and an event's active enrollments: straight through the driver.
        driver = database.engine.dialect
        self._heads = HeadsRead(database.tables, driver)
        self._active = ActiveRead(database.tables, driver, self._rows.history)

    def _active_is(self) -> ColumnElement[bool]:
        return self._t.c.state == _ACTIVE

    def _load(self, row: Mapping[Any, Any]) -> Enrollment:
        """An enrollment from a row of :attr:`_columns` (its document and history)."""
        return self._loaded(row["document"], row["revision"], row["state"], row["history"])

    def _loaded(self, document: Any, revision: Any, state: Any, history: Any) -> Enrollment:
        """An enrollment from its row's document, columns and history (decoded)."""
        return Enrollment.from_document(
            {**document, "revision": revision, "state": state,
             "history": self._rows.records(history)}
        )  # fmt: skip

    @translated("enrollment")
    def enroll(self, enrollment: Enrollment) -> tuple[Enrollment, bool]:
        return self._enrolled(enrollment, None)

    @translated("enrollment")
    def enroll_at_first(
        self, enrollment: Enrollment, visit: ScheduledAction
    ) -> tuple[Enrollment, bool]:
        """See :class:`~leadflow.ports.sequences.EnrollmentFirstVisits`: on PostgreSQL one
        statement (:class:`.enrollment_moves.EnrollInsert` with the visit's ``INSERT`` as one
        more ``WITH`` query fed by the enrollment's), on SQLite the visit's row inserted after
        the enrollment's, in its transaction."""
        checked = check_model(visit, ScheduledAction, "visit")
        owner = plain(getattr(enrollment, "enrollment_id", None))
        if checked.kind is not ActionKind.STEP or checked.enrollment_id != owner:
            raise InvalidInputError("expected the enrollment's own step action", field="visit")
        return self._enrolled(enrollment, action_values(checked))

    def _enrolled(
        self, enrollment: Enrollment, visit: dict[str, Any] | None
    ) -> tuple[Enrollment, bool]:
        """:meth:`enroll`, with ``visit`` (a scheduled action's row) inserted when the
        enrollment went in (:meth:`enroll_at_first`)."""
        checked = checked_enrollment(enrollment)
        if checked.state is not EnrollmentState.ACTIVE:
            raise InvalidInputError("a new enrollment is active", field="state")
        stored = checked._evolve(revision=1)
        if not is_handed_over(checked):  # else the runtime's, held by it alone: not copied
            stored = detached(stored)
        values = _enrollment_values(stored)
        by_id = {"w_id": stored.enrollment_id}
        by_pair = {"w_sequence": stored.sequence_id, "w_opportunity": stored.opportunity_id}
        values["steps"] = len(stored.history)
        history: builtins.list[StepWrite] = [
            (stored.enrollment_id, len(stored.history), stored.history, False)
        ]
        for _ in range(_ENROLL_ATTEMPTS):
            # ``carry``: on PostgreSQL the writes waiting in the unit go with the insert
            # (:class:`.enrollment_moves.EnrollInsert`); SQLite keeps none waiting.
            with self._db.write(carry=True) as connection:  # the row and its history's rows
                if self._enroll is not None:  # PostgreSQL: the row and its records at once
                    entry = self._enroll if visit is None else self._enroll_visit
                    assert entry is not None
                    if entry.run(connection, values, stored.history, visit):
                        return stored, True
                elif self._add_direct is not None and self._add_direct.run(connection, values):
                    self._rows.write(connection, history)
                    if visit is not None:
                        assert self._add_visit is not None
                        self._add_visit.run(connection, visit)
                    return stored, True
                row = connection.execute(self._by_id, by_id).mappings().first()
                if row is None:
                    row = connection.execute(self._by_pair, by_pair).mappings().first()
            if row is not None:
                return self._load(row), False
            # The active one ended between the two statements: enroll again.
        raise ConflictError(
            f"enrollment of {stored.opportunity_id!r} in {stored.sequence_id!r} kept colliding "
            "with concurrent writes; retry"
        )

    @translated("enrollment_id")
    def get(self, enrollment_id: str) -> Enrollment:
        enrollment_id = plain(enrollment_id)
        check_id(enrollment_id, "enrollment_id")
        with self._db.read() as connection:
            row = connection.execute(self._by_id, {"w_id": enrollment_id}).mappings().first()
        if row is None:
            raise NotFoundError(f"no enrollment {enrollment_id!r}")
        return self._load(row)

    @translated("enrollment")
    def update(self, enrollment: Enrollment) -> Enrollment:
        checked = checked_enrollment(enrollment)
        new = checked._evolve(revision=checked.revision + 1)
        parameters = _update_parameters(checked, new, len(new.history))
        # An ended enrollment stays ended: an active one is written only over an active row.
        statement = self._update_active if new.active else self._update_any
        with self._db.write() as connection:  # the row and its history's rows together
            if connection.execute(statement, parameters).rowcount == 1:
                self._rows.write(connection, [_replaced(new)])
                return detached(new)
            row = (
                connection.execute(self._by_id, {"w_id": checked.enrollment_id}).mappings().first()
            )
        if row is None:
            raise NotFoundError(f"no enrollment {checked.enrollment_id!r}")
        check_change(self._load(row), checked)
        raise StaleWriteError(  # pragma: no cover - changed and read back in between
            f"enrollment {checked.enrollment_id!r} changed meanwhile: re-read it"
        )

    # ------------------------------------------------------------------ batches

    @translated("enrollment_ids")
    def get_many(self, enrollment_ids: Sequence[str]) -> dict[str, Enrollment]:
        """See :class:`~leadflow.ports.sequences.EnrollmentBatches`: one ``SELECT ... WHERE
        enrollment_id IN (...)``."""
        ids = checked_ids(enrollment_ids)
        if not ids:
            return {}
        with self._db.read() as connection:
            rows = connection.execute(self._by_ids, {"w_ids": ids}).mappings().all()
        return {row["enrollment_id"]: self._load(row) for row in rows}

    @translated("enrollments")
    def update_many(self, enrollments: Sequence[Enrollment]) -> builtins.list[Enrollment | None]:
        """See :class:`~leadflow.ports.sequences.EnrollmentBatches`: the compare-and-set
        ``UPDATE`` of :meth:`update` executed for every enrollment at once (an ``executemany``
        per run of active or ended ones, in the order of their ids, in one transaction). When fewer
        rows changed than were given, the rows are read back in that transaction to say which
        ones: a row this write changed is at ``revision + 1`` holding what was written (until
        the transaction ends, no other write can change it)."""
        checked = checked_batch(enrollments)
        if not checked:
            return []
        new = [enrollment._evolve(revision=enrollment.revision + 1) for enrollment in checked]
        # In the order of their ids (concurrent calls lock rows in one order: no deadlock),
        # each run of active or ended ones one ``executemany``.
        runs: builtins.list[tuple[bool, builtins.list[dict[str, Any]]]] = []
        pairs = sorted(zip(checked, new, strict=True), key=lambda pair: pair[0].enrollment_id)
        for old, changed in pairs:
            if not runs or runs[-1][0] is not changed.active:
                runs.append((changed.active, []))
            runs[-1][1].append(_update_parameters(old, changed, len(changed.history)))
        with self._db.write() as connection:
            changed_rows = 0
            for active, parameters in runs:
                statement = self._update_active if active else self._update_any
                changed_rows += connection.execute(statement, parameters).rowcount
            written: builtins.list[Enrollment | None] = builtins.list(new)
            if changed_rows != len(new):
                ids = [enrollment.enrollment_id for enrollment in new]
                heads = connection.execute(self._heads_by_ids, {"w_ids": ids}).mappings().all()
                stored = {row["enrollment_id"]: _load_head(row) for row in heads}
                written = [e if stored.get(e.enrollment_id) == head_of(e) else None for e in new]
            self._rows.write(connection, [_replaced(e) for e in written if e is not None])
        return [None if e is None else detached(e) for e in written]

    # ------------------------------------------------------------------ send marks

    @translated("marks")
    def mark_sending(
        self, marks: Sequence[tuple[str, int]], *, at: datetime
    ) -> builtins.list[bool]:
        """See :class:`~leadflow.ports.sequences.EnrollmentSendMarks`: one checked ``UPDATE
        ... FROM`` over a JSON array of the marks (:class:`.enrollment_moves.MarkStatement`),
        setting ``revision``, ``updated_at`` and, inside the stored document, ``sending`` and
        ``updatedAt`` (a JSON merge in the database: ``json_patch`` on SQLite, ``||`` on
        PostgreSQL), the rest of the document left as it is; the ids it returns are those
        marked."""
        checked, at = checked_marks(marks, at)
        if not checked:
            return []
        with self._db.write() as connection:
            marked = self._marks.run(connection, checked, at)
        return [enrollment_id in marked for enrollment_id, _ in checked]

    # ------------------------------------------------------------------ steps

    @translated("enrollment_ids")
    def get_heads(self, enrollment_ids: Sequence[str]) -> dict[str, EnrollmentHead]:
        """See :class:`~leadflow.ports.sequences.EnrollmentSteps`: one ``SELECT ... WHERE
        enrollment_id IN (...)`` of the enrollments' rows, their histories' rows not read."""
        ids = checked_ids(enrollment_ids)
        if not ids:
            return {}
        with self._db.read() as connection:
            rows = self._heads.run(connection, json.dumps(ids))
        # The store's own rows: built without validating them again where every value is
        # what the store writes (:mod:`..sequence_heads`).
        return {
            enrollment_id: head_from_row(document, revision, state)
            for document, revision, state, enrollment_id in rows
        }

    @translated("moves")
    def move_many(
        self, moves: Sequence[tuple[EnrollmentHead, Sequence[StepRecord]]]
    ) -> builtins.list[EnrollmentHead | None]:
        """See :class:`~leadflow.ports.sequences.EnrollmentSteps`: in one transaction, every
        move's compare-and-set (that of :meth:`update_many`, with ``steps`` raised by the
        records appended) as one ``UPDATE ... FROM`` over a JSON array of the moves,
        ``RETURNING`` the rows it changed and their new ``steps``
        (:class:`.enrollment_moves.MoveStatement`), then the moved enrollments' records
        inserted at those positions (one multi-row ``INSERT``) and the rows 200 or more behind
        the newest deleted (one ``DELETE`` executemany, where there are such rows): none of
        the history read or written again."""
        checked = checked_moves(moves)
        if not checked:
            return []
        new = [
            (head if type(head) is EnrollmentHead else head_of(head))._evolve(
                revision=head.revision + 1
            )
            for head, _ in checked
        ]
        with self._db.write() as connection:
            steps = self._moves.run(
                connection,
                [
                    (old, changed, len(records))
                    for (old, records), changed in zip(checked, new, strict=True)
                ],
            )
            written: builtins.list[EnrollmentHead | None] = [
                head if head.enrollment_id in steps else None for head in new
            ]
            self._rows.write(
                connection,
                [(head.enrollment_id, steps[head.enrollment_id], records, False)
                 for head, (_, records) in zip(written, checked, strict=True)
                 if head is not None and records],
            )  # fmt: skip
        return [
            None if head is None else head if is_handed_over(old) else head_of(head)
            for head, (old, _) in zip(written, checked, strict=True)
        ]

    @translated("moves")
    def move_to_visits(
        self, moves: Sequence[tuple[EnrollmentHead, Sequence[StepRecord], ScheduledAction | None]]
    ) -> builtins.list[tuple[EnrollmentHead | None, bool]]:
        """See :class:`~leadflow.ports.sequences.EnrollmentVisitMoves`: on PostgreSQL one
        statement, on SQLite the visits' ``INSERT`` then :meth:`move_many`'s statements for
        the moves whose visit went in (:mod:`.enrollment_visits`)."""
        return self._visit_moves(moves)

    def _ordered(self) -> Select[Any]:
        c = self._t.c
        return select(*self._columns).order_by(c.enrolled_at, c.enrollment_id)

    @translated("opportunity_id")
    def active_for(self, opportunity_id: str) -> builtins.list[Enrollment]:
        opportunity_id = plain(opportunity_id)
        check_id(opportunity_id, "opportunity_id")
        # On every event sequences hear: it reads enrollments, which no write waiting in the
        # unit (the event's analytic facts) touches; those wait for a statement to carry them.
        with self._db.read_beside() as connection:  # straight through the driver
            found = self._active.run(connection, opportunity_id)
        return [self._loaded(*row) for row in found]

    def _listing(
        self,
        by_sequence: bool,
        by_opportunity: bool,
        state: EnrollmentState | None,
        paged: bool = False,
    ) -> Select[Any]:
        """:meth:`list`'s statement for its filters (``w_sequence``, ``w_opportunity``,
        ``w_limit`` and, ``paged``, ``w_after`` / ``w_after_at`` bound per call)."""
        c = self._t.c
        # SQLite's planner has no statistics: of two indexes in the order asked for, it may
        # walk the wider one (a sequence's every enrollment, every one in a state) for a few
        # rows of the narrower (an opportunity's). The terms of the wider are written so
        # that no index serves them (``column || ''``): the opportunity's index, else the
        # sequence's, is the one read.
        sqlite = self._db.dialect == "sqlite"

        def term(column: Any, wider: bool) -> Any:
            return column.op("||")(literal_column("''")) if sqlite and wider else column

        statement = self._ordered().limit(bindparam("w_limit"))
        if by_sequence:
            statement = statement.where(
                term(c.sequence_id, by_opportunity) == bindparam("w_sequence")
            )
        if by_opportunity:
            statement = statement.where(c.opportunity_id == bindparam("w_opportunity"))
        if state is not None:
            statement = statement.where(
                term(c.state, by_opportunity or by_sequence) == literal_column(f"'{state.value}'")
            )
        if paged:
            since = bindparam("w_after_at", type_=c.enrolled_at.type)
            statement = statement.where(
                or_(
                    c.enrolled_at > since,
                    and_(c.enrolled_at == since, c.enrollment_id > bindparam("w_after")),
                )
            )
        return statement

    @translated("enrollments")
    def list(
        self,
        *,
        sequence_id: str | None = None,
        opportunity_id: str | None = None,
        state: EnrollmentState | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> builtins.list[Enrollment]:
        sequence_id = _optional_id(sequence_id, "sequence_id")
        opportunity_id = _optional_id(opportunity_id, "opportunity_id")
        start = _optional_id(after, "after")
        wanted = None if state is None else enum_member(EnrollmentState, state, "state")
        limit = check_limit(limit, _MAX_LIST)
        key = (sequence_id is not None, opportunity_id is not None, wanted, start is not None)
        statement = self._lists.get(key)
        if statement is None:  # built once per kind of listing, parameters bound per call
            statement = self._lists[key] = self._listing(*key)
        parameters = {"w_sequence": sequence_id, "w_opportunity": opportunity_id, "w_limit": limit}
        c = self._t.c
        with self._db.read() as connection:
            if start is not None:  # the page after that enrollment, in the listing's order
                since = connection.execute(
                    select(c.enrolled_at).where(c.enrollment_id == start)
                ).scalar()
                if since is None:
                    raise NotFoundError(f"no enrollment {start!r}")
                parameters.update(w_after=start, w_after_at=since)
            rows = connection.execute(statement, parameters).mappings().all()
        return [self._load(row) for row in rows]
