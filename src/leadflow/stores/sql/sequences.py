"""Sequences in SQL: :class:`~leadflow.ports.SequenceRepository` and
:class:`~leadflow.ports.EnrollmentStore`, one table each (revision 0007).

**Definitions.** One row per version (primary key ``(sequence_id, version)``), the definition as
its document (JSON / JSONB) beside its ``status`` (the column is the truth: :meth:`set_status`
changes only it). :meth:`SqlSequenceRepository.add` reads the highest stored version and
inserts the next one in one transaction; two publishers of one version meet on the primary key
(the loser gets :class:`~leadflow.DuplicateError`). Every write bumps the ``sequences`` row of
``<prefix>stamps`` in its transaction, as rule writes bump ``rules``.

**Enrollments.** The record as its document beside the columns the queries and the checked
writes use. A partial unique index on ``(sequence_id, opportunity_id) WHERE state = 'active'``
keeps one active enrollment per pair: :meth:`SqlEnrollmentStore.enroll` is one ``INSERT ... ON
CONFLICT DO NOTHING`` (the id or the pair taken: nothing inserted, the holder is read back), so
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
    String,
    bindparam,
    cast,
    exc,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB

from ...documents import plain
from ...errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    NotFoundError,
    StaleWriteError,
)
from ...sequences import Enrollment, EnrollmentState, SequenceDefinition, SequenceStatus
from ..checks import check_id, check_limit, check_model, check_version, checked_version
from ..sequence_checks import (
    check_change,
    checked_batch,
    checked_enrollment,
    checked_ids,
    checked_marks,
    detached,
    enum_member,
)
from .database import SqlDatabase
from .errors import sql_errors, translated
from .types import encode_document

__all__ = ["SqlEnrollmentStore", "SqlSequenceRepository"]

_STAMP: Final = "sequences"  # the row of <prefix>stamps the repository bumps
_ACTIVE: Final[ColumnElement[str]] = literal_column(f"'{EnrollmentState.ACTIVE.value}'")
"""As a SQL literal: the partial index applies only when a query repeats its term."""
_MAX_LIST: Final = 10_000
_ENROLL_ATTEMPTS: Final = 20


def _sequence_id(value: object) -> str:
    value = plain(value)
    check_id(value, "sequence_id")
    assert isinstance(value, str)
    return value


# --------------------------------------------------------------------------- definitions


def _definition_values(definition: SequenceDefinition) -> dict[str, Any]:
    return {
        "sequence_id": definition.sequence_id,
        "version": definition.version,
        "status": definition.status.value,
        "definition": definition.to_document(),
        "created_at": definition.created_at,
    }


def _load_definition(row: Mapping[Any, Any]) -> SequenceDefinition:
    return SequenceDefinition.from_document(
        {**row["definition"], "version": row["version"], "status": row["status"]}
    )


class SqlSequenceRepository:
    """:class:`~leadflow.ports.SequenceRepository` on the ``<prefix>sequences`` table of
    ``database``."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._t = database.tables.sequences
        stamps = database.tables.stamps
        upsert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        self._bump = (
            upsert(stamps)
            .values(name=_STAMP, value=1)
            .on_conflict_do_update(
                index_elements=[stamps.c.name], set_={"value": stamps.c.value + 1}
            )
        )
        self._read_stamp = select(stamps.c.value).where(stamps.c.name == _STAMP)
        c = self._t.c
        self._columns = (c.definition, c.version, c.status)

    def add(self, definition: SequenceDefinition) -> SequenceDefinition:
        checked = check_model(definition, SequenceDefinition, "definition")
        c = self._t.c
        highest_of = select(func.max(c.version)).where(c.sequence_id == checked.sequence_id)
        with sql_errors("definition"):
            try:
                with self._db.write() as connection:
                    highest = int(connection.execute(highest_of).scalar() or 0)
                    if checked.version <= highest:
                        raise DuplicateError(
                            f"sequence {checked.sequence_id!r} version {checked.version} "
                            "already exists"
                        )
                    if checked.version != highest + 1:
                        raise StaleWriteError(
                            f"sequence {checked.sequence_id!r} is at version {highest}: the "
                            f"next version is {highest + 1}, not {checked.version}"
                        )
                    connection.execute(insert(self._t).values(_definition_values(checked)))
                    connection.execute(self._bump)
            except exc.IntegrityError as error:  # another publisher stored it first
                raise DuplicateError(
                    f"sequence {checked.sequence_id!r} version {checked.version} already exists"
                ) from error
        return checked

    @translated("sequences")
    def stamp(self) -> int:
        """The ``sequences`` row of ``<prefix>stamps`` (0 if missing): one primary-key read."""
        with self._db.read() as connection:
            value = connection.execute(self._read_stamp).scalar()
        return 0 if value is None else int(value)

    def _fetch(self, statement: Select[Any]) -> builtins.list[SequenceDefinition]:
        with self._db.read() as connection:
            rows = connection.execute(statement).mappings().all()
        return [_load_definition(row) for row in rows]

    @translated("sequence_id")
    def get(self, sequence_id: str, version: int | None = None) -> SequenceDefinition:
        sequence_id = _sequence_id(sequence_id)
        version = checked_version(version, "version")
        c = self._t.c
        statement = select(*self._columns).where(c.sequence_id == sequence_id)
        if version is None:
            statement = statement.order_by(c.version.desc()).limit(1)
        else:
            statement = statement.where(c.version == version)
        found = self._fetch(statement)
        if not found:
            if version is None:
                raise NotFoundError(f"no sequence {sequence_id!r}")
            raise NotFoundError(f"sequence {sequence_id!r} has no version {version}")
        return found[0]

    @translated("sequence_id")
    def versions(self, sequence_id: str) -> builtins.list[SequenceDefinition]:
        sequence_id = _sequence_id(sequence_id)
        c = self._t.c
        return self._fetch(
            select(*self._columns).where(c.sequence_id == sequence_id).order_by(c.version)
        )

    @translated("sequences")
    def list(self) -> builtins.list[SequenceDefinition]:
        c = self._t.c
        current = (
            select(c.sequence_id, func.max(c.version).label("version"))
            .group_by(c.sequence_id)
            .subquery()
        )
        statement = (
            select(*self._columns)
            .join(
                current,
                (c.sequence_id == current.c.sequence_id) & (c.version == current.c.version),
            )
            .order_by(c.sequence_id)
        )
        return self._fetch(statement)

    @translated("status")
    def set_status(
        self, sequence_id: str, version: int, status: SequenceStatus
    ) -> SequenceDefinition:
        status = enum_member(SequenceStatus, status, "status")
        sequence_id = _sequence_id(sequence_id)
        version = check_version(version, "version")
        c = self._t.c
        where = (c.sequence_id == sequence_id, c.version == version)
        statement = update(self._t).where(*where).values(status=status.value)
        with self._db.write() as connection:
            if connection.execute(statement).rowcount == 0:
                raise NotFoundError(f"sequence {sequence_id!r} has no version {version}")
            connection.execute(self._bump)
            row = connection.execute(select(*self._columns).where(*where)).mappings().one()
        return _load_definition(row)


# --------------------------------------------------------------------------- enrollments


def _enrollment_values(enrollment: Enrollment) -> dict[str, Any]:
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
        "document": enrollment.to_document(),
    }


_UPDATED_COLUMNS: Final = (
    "sequence_version", "state", "revision", "enrolled_at", "updated_at", "ended_at", "document",
)  # fmt: skip


def _update_parameters(old: Enrollment, new: Enrollment) -> dict[str, Any]:
    """The parameters of the compare-and-set ``UPDATE``: ``old`` is what was read, ``new``
    what replaces it."""
    values = _enrollment_values(new)
    parameters = {f"v_{name}": values[name] for name in _UPDATED_COLUMNS}
    parameters.update(
        w_id=old.enrollment_id, w_revision=old.revision,
        w_sequence=old.sequence_id, w_opportunity=old.opportunity_id,
    )  # fmt: skip
    return parameters


def _load_enrollment(row: Mapping[Any, Any]) -> Enrollment:
    return Enrollment.from_document(
        {**row["document"], "revision": row["revision"], "state": row["state"]}
    )


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
        self._columns = (c.document, c.revision, c.state)
        # Built once, parameters bound per call (the hot path: every step reads and moves one).
        self._by_id = select(*self._columns).where(c.enrollment_id == bindparam("w_id"))
        checked = (
            c.enrollment_id == bindparam("w_id"),
            c.revision == bindparam("w_revision"),
            c.sequence_id == bindparam("w_sequence"),
            c.opportunity_id == bindparam("w_opportunity"),
        )
        values = {c[name]: bindparam(f"v_{name}", type_=c[name].type) for name in _UPDATED_COLUMNS}
        self._update_active = update(self._t).where(*checked, self._active_is()).values(values)
        self._update_any = update(self._t).where(*checked).values(values)
        self._by_ids = select(*self._columns, c.enrollment_id).where(
            c.enrollment_id.in_(bindparam("w_ids", expanding=True))
        )
        # The send mark: the flag and the change time set inside the stored document by the
        # database (a JSON merge), not the document encoded again.
        patch = bindparam("patch", type_=String)
        merged = (
            c.document.op("||")(cast(patch, JSONB))
            if database.dialect == "postgresql"
            else func.json_patch(c.document, patch)
        )
        self._mark = (
            update(self._t)
            .where(c.enrollment_id == bindparam("w_id"), c.revision == bindparam("w_revision"),
                   self._active_is())
            .values({c.document: merged, c.revision: c.revision + 1,
                     c.updated_at: bindparam("at", type_=c.updated_at.type)})
        )  # fmt: skip

    def _active_is(self) -> ColumnElement[bool]:
        return self._t.c.state == _ACTIVE

    @translated("enrollment")
    def enroll(self, enrollment: Enrollment) -> tuple[Enrollment, bool]:
        checked = checked_enrollment(enrollment)
        if checked.state is not EnrollmentState.ACTIVE:
            raise InvalidInputError("a new enrollment is active", field="state")
        stored = detached(checked._evolve(revision=1))
        values = _enrollment_values(stored)
        c = self._t.c
        by_id = select(*self._columns).where(c.enrollment_id == stored.enrollment_id)
        by_pair = select(*self._columns).where(
            c.sequence_id == stored.sequence_id,
            c.opportunity_id == stored.opportunity_id,
            self._active_is(),
        )
        for _ in range(_ENROLL_ATTEMPTS):
            with self._db.write(atomic=False) as connection:
                if connection.execute(self._add, values).first() is not None:
                    return stored, True
                row = connection.execute(by_id).mappings().first()
                if row is None:
                    row = connection.execute(by_pair).mappings().first()
            if row is not None:
                return _load_enrollment(row), False
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
        return _load_enrollment(row)

    @translated("enrollment")
    def update(self, enrollment: Enrollment) -> Enrollment:
        checked = checked_enrollment(enrollment)
        new = checked._evolve(revision=checked.revision + 1)
        parameters = _update_parameters(checked, new)
        # An ended enrollment stays ended: an active one is written only over an active row.
        statement = self._update_active if new.active else self._update_any
        with self._db.write(atomic=False) as connection:
            if connection.execute(statement, parameters).rowcount == 1:
                return detached(new)
            row = (
                connection.execute(self._by_id, {"w_id": checked.enrollment_id}).mappings().first()
            )
        if row is None:
            raise NotFoundError(f"no enrollment {checked.enrollment_id!r}")
        check_change(_load_enrollment(row), checked)
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
        return {row["enrollment_id"]: _load_enrollment(row) for row in rows}

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
            runs[-1][1].append(_update_parameters(old, changed))
        with self._db.write() as connection:
            changed_rows = 0
            for active, parameters in runs:
                statement = self._update_active if active else self._update_any
                changed_rows += connection.execute(statement, parameters).rowcount
            if changed_rows == len(new):
                return [detached(enrollment) for enrollment in new]
            ids = [enrollment.enrollment_id for enrollment in new]
            rows = connection.execute(self._by_ids, {"w_ids": ids}).mappings().all()
        stored = {row["enrollment_id"]: _load_enrollment(row) for row in rows}
        return [
            detached(enrollment) if stored.get(enrollment.enrollment_id) == enrollment else None
            for enrollment in new
        ]

    # ------------------------------------------------------------------ send marks

    @translated("marks")
    def mark_sending(
        self, marks: Sequence[tuple[str, int]], *, at: datetime
    ) -> builtins.list[bool]:
        """See :class:`~leadflow.ports.sequences.EnrollmentSendMarks`: one checked ``UPDATE``
        executed for every mark at once (in the order of their ids, in one transaction),
        setting ``revision``, ``updated_at`` and, inside the stored document, ``sending`` and
        ``updatedAt`` (a JSON merge in the database: ``json_patch`` on SQLite, ``||`` on
        PostgreSQL), the rest of the document left as it is. When fewer rows changed than
        were given, the rows are read back in that transaction to say which ones."""
        checked, at = checked_marks(marks, at)
        if not checked:
            return []
        patch = json.dumps({"sending": True, "updatedAt": encode_document(at)})
        parameters = [
            {"w_id": enrollment_id, "w_revision": revision, "patch": patch, "at": at}
            for enrollment_id, revision in sorted(checked)
        ]
        with self._db.write() as connection:
            if connection.execute(self._mark, parameters).rowcount == len(checked):
                return [True] * len(checked)
            ids = [enrollment_id for enrollment_id, _ in checked]
            rows = connection.execute(self._by_ids, {"w_ids": ids}).mappings().all()
        stored = {row["enrollment_id"]: _load_enrollment(row) for row in rows}
        return [
            (found := stored.get(enrollment_id)) is not None
            and found.active
            and found.revision == revision + 1
            and found.sending
            and found.updated_at == at
            for enrollment_id, revision in checked
        ]

    def _ordered(self) -> Select[Any]:
        c = self._t.c
        return select(*self._columns).order_by(c.enrolled_at, c.enrollment_id)

    @translated("opportunity_id")
    def active_for(self, opportunity_id: str) -> builtins.list[Enrollment]:
        opportunity_id = plain(opportunity_id)
        check_id(opportunity_id, "opportunity_id")
        statement = self._ordered().where(
            self._t.c.opportunity_id == opportunity_id, self._active_is()
        )
        with self._db.read() as connection:
            rows = connection.execute(statement).mappings().all()
        return [_load_enrollment(row) for row in rows]

    @translated("enrollments")
    def list(
        self,
        *,
        sequence_id: str | None = None,
        opportunity_id: str | None = None,
        state: EnrollmentState | None = None,
        limit: int = 100,
    ) -> builtins.list[Enrollment]:
        sequence_id = _optional_id(sequence_id, "sequence_id")
        opportunity_id = _optional_id(opportunity_id, "opportunity_id")
        wanted = None if state is None else enum_member(EnrollmentState, state, "state")
        limit = check_limit(limit, _MAX_LIST)
        c = self._t.c
        statement = self._ordered().limit(limit)
        if sequence_id is not None:
            statement = statement.where(c.sequence_id == sequence_id)
        if opportunity_id is not None:
            statement = statement.where(c.opportunity_id == opportunity_id)
        if wanted is not None:
            statement = statement.where(c.state == literal_column(f"'{wanted.value}'"))
        with self._db.read() as connection:
            rows = connection.execute(statement).mappings().all()
        return [_load_enrollment(row) for row in rows]
