"""Sequence definitions in SQL: :class:`~leadflow.ports.SequenceRepository` on the
``<prefix>sequences`` table (revision 0007).

One row per version (primary key ``(sequence_id, version)``), the definition as its document
(JSON / JSONB) beside its ``status`` (the column is the truth: :meth:`set_status` changes only
it). :meth:`SqlSequenceRepository.add` reads the highest stored version and inserts the next one
in one transaction; two publishers of one version meet on the primary key (the loser gets
:class:`~leadflow.DuplicateError`). Every write bumps the ``sequences`` row of
``<prefix>stamps`` in its transaction, as rule writes bump ``rules``. Its writes take part in
the storage's unit of work (``with storage.unit_of_work():``).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import Select, exc, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ...documents import plain
from ...errors import DuplicateError, NotFoundError, StaleWriteError
from ...sequences import SequenceDefinition, SequenceStatus
from ..checks import check_id, check_model, check_version, checked_version
from ..sequence_checks import enum_member
from .database import SqlDatabase
from .errors import sql_errors, translated

__all__ = ["SqlSequenceRepository"]

_STAMP: Final = "sequences"  # the row of <prefix>stamps the repository bumps


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
