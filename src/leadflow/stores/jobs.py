"""Job slots and marks: what lets many app instances share leadflow's periodic jobs.

A **slot** is one scheduled run of one job (``overdue_check`` at ``2026-03-09T10:00-04:00``).
The first worker to claim a slot runs it; every other worker sees it taken. A claim is a lease:
if its holder dies, the slot can be claimed again once the lease has expired (the scheduler
decides whether it is still worth running). A finished slot, succeeded or failed, is never
claimed again.

A **mark** records that something happened once ("this reminder was sent"): setting it tells
the caller whether it was the first to do so.

Both carry an expiry after which they are forgotten (a TTL index on MongoDB, a heap in memory).
"""

from __future__ import annotations

import heapq
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable

from ..clock import ensure_utc
from ..errors import InvalidInputError

__all__ = [
    "InMemoryJobStore",
    "JobStore",
    "MongoJobStore",
    "SlotClaim",
    "SlotRecord",
    "SlotState",
]

_MAX_KEY: Final = 400


class SlotState(StrEnum):
    """``running`` while a worker holds the slot; then ``succeeded`` or ``failed`` for good."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SlotRecord:
    """What the store knows about one slot. ``token`` identifies one claim: a worker that
    re-claims its own expired slot gets a new token, so a stale finish cannot land."""

    job: str
    slot: str
    state: SlotState
    owner: str
    token: str
    claimed_at: datetime
    lease_until: datetime
    expires_at: datetime
    attempts: int = 1
    finished_at: datetime | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """The answer to a claim: ``acquired`` when the caller now holds the slot; ``record`` is the
    slot as stored after the attempt (the caller's claim, or whoever has it)."""

    acquired: bool
    record: SlotRecord


@runtime_checkable
class JobStore(Protocol):
    """Slot leases and marks shared by every instance that runs leadflow's jobs.

    All methods are atomic. Datetimes must be timezone-aware (else
    :class:`~leadflow.InvalidInputError`); returned ones are UTC. Keys (job names, slot keys,
    mark keys) are non-empty strings of at most 400 characters.
    """

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
        """Take ``(job, slot)`` for ``worker`` until ``now + lease``.

        Succeeds when the slot is unknown, or when it is ``running`` and its lease expired at or
        before ``now`` (the holder crashed or overran: ``attempts`` goes up). Fails, changing
        nothing, when a live lease holds it or it finished. ``expires_at`` is when the record
        may be forgotten; set on creation only.
        """
        ...

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
        """Record the outcome of the claim ``token``. Returns False, changing nothing, when that
        claim no longer holds the slot (another worker took it over after the lease expired).
        ``state`` must be ``succeeded`` or ``failed``."""
        ...

    def get_slot(self, job: str, slot: str) -> SlotRecord | None:
        """The slot's record, or None if unknown (or forgotten)."""
        ...

    def mark(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        """Set mark ``key`` until ``expires_at``. True if this call set it; False if it was
        already set and has not expired (then nothing changes)."""
        ...

    def is_marked(self, key: str, *, now: datetime) -> bool:
        """Whether mark ``key`` is set and not expired at ``now``."""
        ...

    def unmark(self, key: str) -> None:
        """Remove mark ``key`` (no error if absent): the work it recorded did not happen."""
        ...

    def purge_expired(self, now: datetime) -> int:
        """Forget slots and marks that expired at or before ``now``; returns how many."""
        ...


def _key(value: object, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_KEY:
        raise InvalidInputError(
            f"expected a non-empty string of at most {_MAX_KEY} characters", field=field
        )
    return value


def _lease(value: object) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidInputError("must be a positive timedelta", field="lease")
    return value


def _final(state: object) -> SlotState:
    if state not in (SlotState.SUCCEEDED, SlotState.FAILED):
        raise InvalidInputError("must be 'succeeded' or 'failed'", field="state")
    return SlotState(str(state))


def _counts(counts: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(counts, Mapping):
        raise InvalidInputError("expected a mapping of names to integers", field="counts")
    return {_key(k, "counts"): int(v) for k, v in counts.items()}


# --------------------------------------------------------------------------- in memory


class InMemoryJobStore:
    """:class:`JobStore` in a dict under a lock: for one process (several runners or threads
    sharing it), tests and demos. Expired entries are dropped as time passes."""

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str], SlotRecord] = {}
        self._marks: dict[str, datetime] = {}
        # (expires_at, kind, key): popped lazily; an entry is stale if the stored expiry moved.
        self._expiry: list[tuple[datetime, str, str, str]] = []
        self._lock = threading.Lock()

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
        ident = (_key(job, "job"), _key(slot, "slot"))
        owner = _key(worker, "worker")
        now = ensure_utc(now, "now")
        until = now + _lease(lease)
        expires_at = ensure_utc(expires_at, "expires_at")
        with self._lock:
            self._drop_expired(now)
            current = self._slots.get(ident)
            if current is None:
                record = SlotRecord(
                    job=job,
                    slot=slot,
                    state=SlotState.RUNNING,
                    owner=owner,
                    token=uuid.uuid4().hex,
                    claimed_at=now,
                    lease_until=until,
                    expires_at=expires_at,
                )
                heapq.heappush(self._expiry, (expires_at, "slot", job, slot))
            elif current.state is SlotState.RUNNING and current.lease_until <= now:
                record = replace(
                    current,
                    owner=owner,
                    token=uuid.uuid4().hex,
                    claimed_at=now,
                    lease_until=until,
                    attempts=current.attempts + 1,
                )
            else:
                return SlotClaim(False, current)
            self._slots[ident] = record
            return SlotClaim(True, record)

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
        ident = (_key(job, "job"), _key(slot, "slot"))
        now = ensure_utc(now, "now")
        final, values = _final(state), _counts(counts)
        with self._lock:
            current = self._slots.get(ident)
            if current is None or current.token != token or current.state is not SlotState.RUNNING:
                return False
            self._slots[ident] = replace(
                current, state=final, finished_at=now, counts=values, error=error
            )
            return True

    def get_slot(self, job: str, slot: str) -> SlotRecord | None:
        with self._lock:
            return self._slots.get((_key(job, "job"), _key(slot, "slot")))

    def mark(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        key = _key(key, "key")
        now = ensure_utc(now, "now")
        expires_at = ensure_utc(expires_at, "expires_at")
        with self._lock:
            self._drop_expired(now)
            current = self._marks.get(key)
            if current is not None and current > now:
                return False
            self._marks[key] = expires_at
            heapq.heappush(self._expiry, (expires_at, "mark", key, ""))
            return True

    def is_marked(self, key: str, *, now: datetime) -> bool:
        key = _key(key, "key")
        now = ensure_utc(now, "now")
        with self._lock:
            current = self._marks.get(key)
            return current is not None and current > now

    def unmark(self, key: str) -> None:
        with self._lock:
            self._marks.pop(_key(key, "key"), None)

    def purge_expired(self, now: datetime) -> int:
        now = ensure_utc(now, "now")
        with self._lock:
            return self._drop_expired(now)

    def _drop_expired(self, now: datetime) -> int:
        dropped = 0
        while self._expiry and self._expiry[0][0] <= now:
            expires_at, kind, first, second = heapq.heappop(self._expiry)
            if kind == "mark":
                if self._marks.get(first) == expires_at:
                    del self._marks[first]
                    dropped += 1
            else:
                record = self._slots.get((first, second))
                if record is not None and record.expires_at == expires_at:
                    del self._slots[(first, second)]
                    dropped += 1
        return dropped


# --------------------------------------------------------------------------- MongoDB


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
        self._slots = database[_key(slots_collection, "slots_collection")].with_options(
            codec_options=options
        )
        self._marks = database[_key(marks_collection, "marks_collection")].with_options(
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

        ident = f"{_key(job, 'job')}|{_key(slot, 'slot')}"
        owner = _key(worker, "worker")
        now = _when(now, "now")
        until = _ms(now + _lease(lease))
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
        ident = f"{_key(job, 'job')}|{_key(slot, 'slot')}"
        result = self._slots.update_one(
            {"_id": ident, "token": _key(token, "token"), "state": SlotState.RUNNING.value},
            {
                "$set": {
                    "state": _final(state).value,
                    "finishedAt": _when(now, "now"),
                    "counts": _counts(counts),
                    "error": error,
                }
            },
        )
        return bool(result.matched_count == 1)

    def get_slot(self, job: str, slot: str) -> SlotRecord | None:
        document = self._slots.find_one({"_id": f"{_key(job, 'job')}|{_key(slot, 'slot')}"})
        return None if document is None else _record(document)

    def mark(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        from pymongo.errors import DuplicateKeyError

        key = _key(key, "key")
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
        query = {"_id": _key(key, "key"), "expiresAt": {"$gt": _when(now, "now")}}
        return self._marks.find_one(query, {"_id": 1}) is not None

    def unmark(self, key: str) -> None:
        self._marks.delete_one({"_id": _key(key, "key")})

    def purge_expired(self, now: datetime) -> int:
        query = {"expiresAt": {"$lte": _when(now, "now")}}
        slots = self._slots.delete_many(query).deleted_count
        marks = self._marks.delete_many(query).deleted_count
        return int(slots) + int(marks)
