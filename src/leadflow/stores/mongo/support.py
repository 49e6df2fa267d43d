"""The small MongoDB stores: counters, the audit log, job slots and marks."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ...clock import ensure_utc
from ...errors import InvalidInputError
from ...records import RuleAuditEntry, SlotClaim, SlotRecord, SlotState
from ..checks import checked_counts, checked_final, checked_key, checked_lease

__all__ = ["MongoAuditLog", "MongoCounterStore", "MongoJobStore"]


class MongoCounterStore:
    """Counters in a MongoDB collection (``find_one_and_update`` with ``$inc``, upsert)."""

    def __init__(self, database: Any, collection: str = "leadflowCounters") -> None:
        self._collection = database[collection]

    def next(self, name: str) -> int:
        from pymongo import ReturnDocument

        document = self._collection.find_one_and_update(
            {"_id": str(name)},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(document["value"])


class MongoAuditLog:
    """The rule audit trail in a MongoDB collection (indexed by ruleId + at)."""

    def __init__(self, database: Any, collection: str = "ruleAudit") -> None:
        raw = database[collection]
        # Extend the host's codec options (UUID representation...) rather than replace them.
        self._collection = raw.with_options(
            codec_options=raw.codec_options.with_options(tz_aware=True, tzinfo=UTC)
        )

    def ensure_indexes(self) -> None:
        self._collection.create_index([("ruleId", 1), ("at", 1)])
        self._collection.create_index([("at", 1)])

    def append(self, entry: RuleAuditEntry) -> None:
        self._collection.insert_one(entry.to_document())

    def list(self, rule_id: str | None = None) -> builtins.list[RuleAuditEntry]:
        query: dict[str, Any] = {} if rule_id is None else {"ruleId": str(rule_id)}
        cursor = self._collection.find(query).sort([("at", 1), ("_id", 1)])
        return [RuleAuditEntry.from_document(doc) for doc in cursor]


def _ms(value: datetime) -> datetime:
    """``value`` at BSON precision (whole milliseconds), as the database will return it."""
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def _when(value: datetime, field: str) -> datetime:
    return _ms(ensure_utc(value, field))


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


class MongoJobStore:
    """:class:`JobStore` on two MongoDB collections (pymongo, the ``mongo`` extra).

    Slots: one document per (job, slot) with ``_id`` ``"<job>|<slot>"``. A claim is one
    ``find_one_and_update`` with ``upsert``: it matches only a running slot whose lease
    expired; when the slot does not exist, the upsert inserts it (claimed); when it exists
    and does not match, the insert collides on ``_id`` and the claim fails. Marks: one
    document per key, set the same way. Both collections have a TTL index on ``expiresAt``;
    reads also compare ``expiresAt`` because the server's TTL monitor runs only about once a
    minute. The host owns the connection: pass a pymongo ``Database``; call
    :meth:`ensure_indexes` at start-up.
    """

    def __init__(
        self,
        database: Any,
        *,
        slots_collection: str = "leadflowJobSlots",
        marks_collection: str = "leadflowJobMarks",
    ) -> None:
        from bson.codec_options import CodecOptions

        options = CodecOptions(document_class=dict, tz_aware=True, tzinfo=UTC)
        self._slots = database[checked_key(slots_collection, "slots_collection")].with_options(
            codec_options=options
        )
        self._marks = database[checked_key(marks_collection, "marks_collection")].with_options(
            codec_options=options
        )

    def ensure_indexes(self, *, ttl: bool = True) -> list[str]:
        """Create the indexes (idempotent); returns their names.

        ``ttl=False`` leaves out the TTL indexes: the server expires documents by its own wall
        clock, so a simulation whose clock is not the wall clock must purge with
        :meth:`purge_expired` instead (the cleanup job does).
        """
        from pymongo import ASCENDING, DESCENDING, IndexModel

        expiry = [
            IndexModel([("expiresAt", ASCENDING)], name="expiresAt_ttl", expireAfterSeconds=0)
        ]
        if not ttl:
            expiry = [IndexModel([("expiresAt", ASCENDING)], name="expiresAt")]
        history = IndexModel([("job", ASCENDING), ("claimedAt", DESCENDING)], name="job_claimedAt")
        names = list(self._slots.create_indexes([*expiry, history]))
        names += self._marks.create_indexes(expiry)
        return names

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
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        ident = f"{checked_key(job, 'job')}|{checked_key(slot, 'slot')}"
        owner = checked_key(worker, "worker")
        now = _when(now, "now")
        until = _ms(now + checked_lease(lease))
        expires = _when(expires_at, "expires_at")
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
        ident = f"{checked_key(job, 'job')}|{checked_key(slot, 'slot')}"
        result = self._slots.update_one(
            {"_id": ident, "token": checked_key(token, "token"), "state": SlotState.RUNNING.value},
            {
                "$set": {
                    "state": checked_final(state).value,
                    "finishedAt": _when(now, "now"),
                    "counts": checked_counts(counts),
                    "error": error,
                }
            },
        )
        return bool(result.matched_count == 1)

    def get_slot(self, job: str, slot: str) -> SlotRecord | None:
        document = self._slots.find_one(
            {"_id": f"{checked_key(job, 'job')}|{checked_key(slot, 'slot')}"}
        )
        return None if document is None else _record(document)

    def mark(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        from pymongo.errors import DuplicateKeyError

        key = checked_key(key, "key")
        now = _when(now, "now")
        try:
            self._marks.find_one_and_update(
                {"_id": key, "expiresAt": {"$lte": now}},
                {"$set": {"expiresAt": _when(expires_at, "expires_at"), "markedAt": now}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    def is_marked(self, key: str, *, now: datetime) -> bool:
        query = {"_id": checked_key(key, "key"), "expiresAt": {"$gt": _when(now, "now")}}
        return self._marks.find_one(query, {"_id": 1}) is not None

    def unmark(self, key: str) -> None:
        self._marks.delete_one({"_id": checked_key(key, "key")})

    def purge_expired(self, now: datetime) -> int:
        query = {"expiresAt": {"$lte": _when(now, "now")}}
        slots = self._slots.delete_many(query).deleted_count
        marks = self._marks.delete_many(query).deleted_count
        return int(slots) + int(marks)
