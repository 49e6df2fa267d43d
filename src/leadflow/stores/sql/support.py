"""The small SQL stores: counters, the audit log, job slots and marks."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final, get_args

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ...clock import ensure_utc
from ...errors import InvalidInputError, StorageError
from ...records import AuditEntry, SlotClaim, SlotRecord, SlotState
from ..checks import (
    check_model,
    checked_counts,
    checked_final,
    checked_key,
    checked_lease,
    checked_value,
)
from .database import SqlDatabase
from .errors import translated

__all__ = ["SqlAuditLog", "SqlCounterStore", "SqlJobStore"]

_SUBJECTS: Final = get_args(AuditEntry.model_fields["subject"].annotation)
_RUNNING: Final = SlotState.RUNNING.value


def _insert_for(database: SqlDatabase) -> Any:
    return postgresql.insert if database.dialect == "postgresql" else sqlite.insert


class SqlCounterStore:
    """:class:`~leadflow.ports.CounterStore`: one row per name, one upsert per call
    (``INSERT ... ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value``)."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._t = database.tables.counters
        self._insert = _insert_for(database)

    @translated("name")
    def next(self, name: str) -> int:
        c = self._t.c
        statement = (
            self._insert(self._t)
            .values(name=checked_key(name, "name"), value=1)
            .on_conflict_do_update(index_elements=[c.name], set_={"value": c.value + 1})
            .returning(c.value)
        )
        with self._db.write(atomic=False) as connection:
            value = connection.execute(statement).scalar_one()
        return int(value)


def _entry_values(entry: AuditEntry) -> dict[str, Any]:
    return {
        "entry_id": entry.entry_id,
        "subject": entry.subject,
        "subject_id": entry.subject_id,
        "change": entry.change,
        "actor": entry.actor,
        "at": entry.at,
        "before": entry.before,
        "after": entry.after,
        "note": entry.note,
    }


class SqlAuditLog:
    """:class:`~leadflow.ports.AuditLog` on one table; entries are listed by ``at``, then in
    insertion order (an auto-incremented sequence number)."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._t = database.tables.audit

    @translated("entry")
    def append(self, entry: AuditEntry) -> None:
        checked = check_model(entry, AuditEntry, "entry")
        with self._db.write(atomic=False) as connection:
            connection.execute(insert(self._t).values(_entry_values(checked)))

    @translated("subject")
    def list(
        self, subject: str | None = None, subject_id: str | None = None
    ) -> builtins.list[AuditEntry]:
        c = self._t.c
        statement = select(self._t).order_by(c.at, c.seq)
        if subject is not None:
            if subject not in _SUBJECTS:
                raise InvalidInputError(f"expected one of {_SUBJECTS}", field="subject")
            statement = statement.where(c.subject == subject)
        if subject_id is not None:
            statement = statement.where(c.subject_id == checked_key(subject_id, "subject_id"))
        with self._db.read() as connection:
            rows = connection.execute(statement).mappings().all()
        return [
            AuditEntry.model_validate({k: v for k, v in row.items() if k != "seq"}) for row in rows
        ]


def _record(row: Mapping[Any, Any]) -> SlotRecord:
    return SlotRecord(
        job=str(row["job"]),
        slot=str(row["slot"]),
        state=SlotState(row["state"]),
        owner=str(row["owner"]),
        token=str(row["token"]),
        claimed_at=row["claimed_at"],
        lease_until=row["lease_until"],
        expires_at=row["expires_at"],
        attempts=int(row["attempts"]),
        finished_at=row["finished_at"],
        counts={str(k): int(v) for k, v in (row["counts"] or {}).items()},
        error=row["error"],
    )


class SqlJobStore:
    """:class:`~leadflow.ports.JobStore` on three tables (slots keyed by job and slot;
    marks and values by key). A claim is at most three statements in one transaction, each
    atomic on its own: ``INSERT ... ON CONFLICT DO NOTHING`` (an unknown slot), else an
    ``UPDATE`` that matches only a running slot whose lease expired, else a read of whoever
    holds it. A mark is one upsert whose update applies only to an expired mark; a value is
    one compare-and-set."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        self._slots = database.tables.job_slots
        self._marks = database.tables.job_marks
        self._values = database.tables.job_values
        self._insert = _insert_for(database)

    @translated("slot")
    def claim_slot(
        self,
        job: str,
        slot: str,
        *,
        worker: str,
        now: datetime,
        lease: timedelta,
        expires_at: datetime,
    ) -> SlotClaim:
        job, slot = checked_key(job, "job"), checked_key(slot, "slot")
        owner = checked_key(worker, "worker")
        now = ensure_utc(now, "now")
        until = now + checked_lease(lease)
        expires = ensure_utc(expires_at, "expires_at")
        token = uuid.uuid4().hex
        t, c = self._slots, self._slots.c
        create = (
            self._insert(t)
            .values(
                job=job,
                slot=slot,
                state=_RUNNING,
                owner=owner,
                token=token,
                claimed_at=now,
                lease_until=until,
                expires_at=expires,
                attempts=1,
                counts={},
            )
            .on_conflict_do_nothing(index_elements=[c.job, c.slot])
            .returning(*t.c)
        )
        take_over = (
            update(t)
            .where(c.job == job, c.slot == slot, c.state == _RUNNING, c.lease_until <= now)
            .values(
                owner=owner, token=token, claimed_at=now, lease_until=until, attempts=c.attempts + 1
            )
            .returning(*t.c)
        )
        current = select(t).where(c.job == job, c.slot == slot)
        for _ in range(3):
            with self._db.write() as connection:
                row = connection.execute(create).mappings().first()
                if row is None:
                    row = connection.execute(take_over).mappings().first()
                if row is not None:
                    return SlotClaim(True, _record(row))
                row = connection.execute(current).mappings().first()
            if row is not None:
                return SlotClaim(False, _record(row))
            # Purged between the statements: claim again.
        raise StorageError(f"slot {job!r}/{slot!r} kept vanishing while being claimed")

    @translated("counts")
    def finish_slot(
        self,
        job: str,
        slot: str,
        *,
        token: str,
        now: datetime,
        state: SlotState,
        counts: Mapping[str, int],
        error: str | None = None,
    ) -> bool:
        job, slot = checked_key(job, "job"), checked_key(slot, "slot")
        now = ensure_utc(now, "now")
        final, values = checked_final(state), checked_counts(counts)
        if error is not None and not isinstance(error, str):
            raise InvalidInputError("expected a string or None", field="error")
        if not isinstance(token, str):
            raise InvalidInputError("expected a string", field="token")
        c = self._slots.c
        statement = (
            update(self._slots)
            .where(c.job == job, c.slot == slot, c.token == token, c.state == _RUNNING)
            .values(state=final.value, finished_at=now, counts=values, error=error)
        )
        with self._db.write() as connection:
            return bool(connection.execute(statement).rowcount == 1)

    @translated("slot")
    def get_slot(self, job: str, slot: str) -> SlotRecord | None:
        c = self._slots.c
        statement = select(self._slots).where(
            c.job == checked_key(job, "job"), c.slot == checked_key(slot, "slot")
        )
        with self._db.read() as connection:
            row = connection.execute(statement).mappings().first()
        return None if row is None else _record(row)

    @translated("key")
    def mark(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        key = checked_key(key, "key")
        now = ensure_utc(now, "now")
        expires = ensure_utc(expires_at, "expires_at")
        c = self._marks.c
        statement = (
            self._insert(self._marks)
            .values(key=key, expires_at=expires, marked_at=now)
            .on_conflict_do_update(
                index_elements=[c.key],
                set_={"expires_at": expires, "marked_at": now},
                where=c.expires_at <= now,
            )
            .returning(c.key)
        )
        with self._db.write() as connection:
            return connection.execute(statement).first() is not None

    @translated("key")
    def is_marked(self, key: str, *, now: datetime) -> bool:
        c = self._marks.c
        statement = select(c.key).where(
            c.key == checked_key(key, "key"), c.expires_at > ensure_utc(now, "now")
        )
        with self._db.read() as connection:
            return connection.execute(statement).first() is not None

    @translated("key")
    def unmark(self, key: str) -> None:
        statement = delete(self._marks).where(self._marks.c.key == checked_key(key, "key"))
        with self._db.write() as connection:
            connection.execute(statement)

    @translated("key")
    def get_value(self, key: str) -> str | None:
        c = self._values.c
        statement = select(c.value).where(c.key == checked_key(key, "key"))
        with self._db.read() as connection:
            row = connection.execute(statement).first()
        return None if row is None else str(row[0])

    @translated("value")
    def set_value(self, key: str, value: str, *, expected: str | None) -> bool:
        """One statement: an insert that does nothing on a conflict (``expected`` None), else
        an update that matches only the expected value."""
        key, value = checked_key(key, "key"), checked_value(value, "value")
        c = self._values.c
        if expected is None:
            statement: Any = (
                self._insert(self._values)
                .values(key=key, value=value)
                .on_conflict_do_nothing(index_elements=[c.key])
                .returning(c.key)
            )
        else:
            statement = (
                update(self._values)
                .where(c.key == key, c.value == checked_value(expected, "expected"))
                .values(value=value)
                .returning(c.key)
            )
        with self._db.write() as connection:
            return connection.execute(statement).first() is not None

    @translated("now")
    def purge_expired(self, now: datetime) -> int:
        now = ensure_utc(now, "now")
        with self._db.write() as connection:
            slots = connection.execute(delete(self._slots).where(self._slots.c.expires_at <= now))
            marks = connection.execute(delete(self._marks).where(self._marks.c.expires_at <= now))
        return int(slots.rowcount) + int(marks.rowcount)
