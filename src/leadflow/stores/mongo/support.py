"""The small MongoDB stores: counters, the audit log, job slots and marks."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, get_args

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from ...errors import InvalidInputError, StorageError
from ...records import AuditEntry, SlotClaim, SlotRecord, SlotState
from ..checks import checked_counts, checked_final, checked_key, checked_lease, checked_value
from .common import MongoStore, MongoTarget, bind, later, when
from .driver import driver_errors, translated

__all__ = ["MongoAuditLog", "MongoCounterStore", "MongoJobStore"]

_SUBJECTS: Final = get_args(AuditEntry.model_fields["subject"].annotation)


class MongoCounterStore(MongoStore):
    """Counters in a MongoDB collection: one document per name, ``$inc`` with upsert."""

    DEFAULT_COLLECTION = "leadflowCounters"
    INDEXES = ()  # every query is by _id

    def __init__(self, target: MongoTarget, collection: str = DEFAULT_COLLECTION) -> None:
        super().__init__(target, collection=collection)

    @translated("name")
    def next(self, name: str) -> int:
        document = self._collection.find_one_and_update(
            {"_id": checked_key(name, "name")},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if document is None:  # an upsert with ReturnDocument.AFTER always returns one
            raise StorageError(f"counter {name!r} was not returned by the server")
        return int(document["value"])


class MongoAuditLog(MongoStore):
    """:class:`~leadflow.ports.AuditLog` in a MongoDB collection, one document per entry.

    Entries of one subject kind or of one subject id are read through their own index, in
    order of ``at`` then ``_id`` (the driver's ObjectId: insertion order within one process).
    """

    DEFAULT_COLLECTION = "leadflowAudit"
    INDEXES = (
        IndexModel(
            [("subject", ASCENDING), ("at", ASCENDING), ("_id", ASCENDING)], name="subject_at"
        ),
        IndexModel(
            [("subjectId", ASCENDING), ("at", ASCENDING), ("_id", ASCENDING)], name="subjectId_at"
        ),
        IndexModel([("at", ASCENDING), ("_id", ASCENDING)], name="at"),
    )
    _ORDER: ClassVar[list[tuple[str, int]]] = [("at", ASCENDING), ("_id", ASCENDING)]

    def __init__(self, target: MongoTarget, collection: str = DEFAULT_COLLECTION) -> None:
        super().__init__(target, collection=collection)

    @translated("entry")
    def append(self, entry: AuditEntry) -> None:
        if not isinstance(entry, AuditEntry):
            raise InvalidInputError(
                f"expected an AuditEntry, got {type(entry).__name__}", field="entry"
            )
        self._collection.insert_one(AuditEntry.from_document(entry.to_document()).to_document())

    @translated("subject")
    def list(
        self, subject: str | None = None, subject_id: str | None = None
    ) -> builtins.list[AuditEntry]:
        query: dict[str, Any] = {}
        if subject is not None:
            if subject not in _SUBJECTS:
                raise InvalidInputError(f"expected one of {_SUBJECTS}", field="subject")
            query["subject"] = subject
        if subject_id is not None:
            query["subjectId"] = checked_key(subject_id, "subject_id")
        cursor = self._collection.find(query, sort=self._ORDER)
        return [AuditEntry.from_document(doc) for doc in cursor]


def _record(document: Mapping[str, Any]) -> SlotRecord:
    def utc(name: str) -> datetime:
        value: datetime = document[name]
        return value.astimezone(UTC)

    finished = document.get("finishedAt")
    return SlotRecord(
        job=str(document["job"]),
        slot=str(document["slot"]),
        state=SlotState(document["state"]),
        owner=str(document["owner"]),
        token=str(document["token"]),
        claimed_at=utc("claimedAt"),
        lease_until=utc("leaseUntil"),
        expires_at=utc("expiresAt"),
        attempts=int(document.get("attempts", 1)),
        finished_at=finished.astimezone(UTC) if finished is not None else None,
        counts={str(k): int(v) for k, v in (document.get("counts") or {}).items()},
        error=document.get("error"),
    )


def _slot_id(job: str, slot: str) -> str:
    return f"{checked_key(job, 'job')}|{checked_key(slot, 'slot')}"


class MongoJobStore:
    """:class:`~leadflow.ports.JobStore` on three MongoDB collections.

    Slots: one document per (job, slot) with ``_id`` ``"<job>|<slot>"``. A claim is one
    ``find_one_and_update`` with ``upsert``: it matches only a running slot whose lease
    expired; when the slot does not exist, the upsert inserts it (claimed); when it exists
    and does not match, the insert collides on ``_id`` and the claim fails. Marks: one
    document per key, set the same way. Both collections have a TTL index on ``expiresAt``;
    reads also compare ``expiresAt`` because the server's TTL monitor runs only about once a
    minute. Values: one document per key (``_id``), never expired, set by compare-and-set.
    The host owns the connection: pass a pymongo ``Database``; call
    :meth:`ensure_indexes` at start-up.
    """

    DEFAULT_SLOTS: ClassVar[str] = "leadflowJobSlots"
    DEFAULT_MARKS: ClassVar[str] = "leadflowJobMarks"
    DEFAULT_VALUES: ClassVar[str] = "leadflowJobValues"

    def __init__(
        self,
        database: Any,
        *,
        slots_collection: str = DEFAULT_SLOTS,
        marks_collection: str = DEFAULT_MARKS,
        values_collection: str = DEFAULT_VALUES,
    ) -> None:
        self._slots = bind(database, checked_key(slots_collection, "slots_collection"))
        self._marks = bind(database, checked_key(marks_collection, "marks_collection"))
        self._values = bind(database, checked_key(values_collection, "values_collection"))

    def ensure_indexes(self, *, ttl: bool = True) -> list[str]:
        """Create the indexes (idempotent); returns their names.

        ``ttl=False`` leaves out the TTL indexes: the server expires documents by its own wall
        clock, so a simulation whose clock is not the wall clock must purge with
        :meth:`purge_expired` instead (the cleanup job does).
        """
        expiry = [
            IndexModel([("expiresAt", ASCENDING)], name="expiresAt_ttl", expireAfterSeconds=0)
        ]
        if not ttl:
            expiry = [IndexModel([("expiresAt", ASCENDING)], name="expiresAt")]
        history = IndexModel([("job", ASCENDING), ("claimedAt", DESCENDING)], name="job_claimedAt")
        with driver_errors("indexes"):
            names = list(self._slots.create_indexes([*expiry, history]))
            names += self._marks.create_indexes(expiry)
        return names

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
        ident = _slot_id(job, slot)
        owner = checked_key(worker, "worker")
        now = when("now", now)
        until = later("lease", now, checked_lease(lease))
        expires = when("expires_at", expires_at)
        token = uuid.uuid4().hex
        for _ in range(3):
            try:
                document = self._slots.find_one_and_update(
                    {"_id": ident, "state": SlotState.RUNNING.value, "leaseUntil": {"$lte": now}},
                    {
                        "$set": {
                            "owner": owner,
                            "token": token,
                            "claimedAt": now,
                            "leaseUntil": until,
                        },
                        "$inc": {"attempts": 1},
                        "$setOnInsert": {"job": job, "slot": slot, "expiresAt": expires},
                    },
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                document = self._slots.find_one({"_id": ident})
                if document is None:  # forgotten between the two calls: claim again
                    continue
                return SlotClaim(False, _record(document))
            if document is None:  # expired by a TTL index at once: its expiry is in the past
                continue
            return SlotClaim(document["token"] == token, _record(document))
        raise InvalidInputError(
            "the slot record vanished as soon as it was written: a TTL index deletes by the "
            "server's clock, so expires_at must lie in the server's future (simulations with "
            "another clock: ensure_indexes(ttl=False))",
            field="expires_at",
        )

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
        if error is not None and not isinstance(error, str):
            raise InvalidInputError("expected a string or None", field="error")
        result = self._slots.update_one(
            {
                "_id": _slot_id(job, slot),
                "token": checked_key(token, "token"),
                "state": SlotState.RUNNING.value,
            },
            {
                "$set": {
                    "state": checked_final(state).value,
                    "finishedAt": when("now", now),
                    "counts": checked_counts(counts),
                    "error": error,
                }
            },
        )
        return bool(result.matched_count == 1)

    @translated("slot")
    def get_slot(self, job: str, slot: str) -> SlotRecord | None:
        document = self._slots.find_one({"_id": _slot_id(job, slot)})
        return None if document is None else _record(document)

    @translated("key")
    def mark(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        key = checked_key(key, "key")
        now = when("now", now)
        try:
            self._marks.find_one_and_update(
                {"_id": key, "expiresAt": {"$lte": now}},
                {"$set": {"expiresAt": when("expires_at", expires_at), "markedAt": now}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    @translated("key")
    def is_marked(self, key: str, *, now: datetime) -> bool:
        query = {"_id": checked_key(key, "key"), "expiresAt": {"$gt": when("now", now)}}
        return self._marks.find_one(query, {"_id": 1}) is not None

    @translated("key")
    def unmark(self, key: str) -> None:
        self._marks.delete_one({"_id": checked_key(key, "key")})

    @translated("key")
    def get_value(self, key: str) -> str | None:
        document = self._values.find_one({"_id": checked_key(key, "key")})
        return None if document is None else str(document["value"])

    @translated("value")
    def set_value(self, key: str, value: str, *, expected: str | None) -> bool:
        """An insert that collides on ``_id`` (``expected`` None), else an update matching the
        expected value."""
        key, value = checked_key(key, "key"), checked_value(value, "value")
        if expected is None:
            try:
                self._values.insert_one({"_id": key, "value": value})
            except DuplicateKeyError:
                return False
            return True
        result = self._values.update_one(
            {"_id": key, "value": checked_value(expected, "expected")}, {"$set": {"value": value}}
        )
        return bool(result.matched_count == 1)

    @translated("now")
    def purge_expired(self, now: datetime) -> int:
        query = {"expiresAt": {"$lte": when("now", now)}}
        slots = self._slots.delete_many(query).deleted_count
        marks = self._marks.delete_many(query).deleted_count
        return int(slots) + int(marks)
