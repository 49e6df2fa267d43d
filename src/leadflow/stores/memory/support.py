"""The small in-memory stores: counters, the audit log, job slots and marks."""

from __future__ import annotations

import builtins
import heapq
import threading
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from ...clock import ensure_utc
from ...records import AuditEntry, SlotClaim, SlotRecord, SlotState
from ..checks import (
    check_model,
    checked_counts,
    checked_final,
    checked_key,
    checked_lease,
    checked_value,
)

__all__ = ["InMemoryAuditLog", "InMemoryCounterStore", "InMemoryJobStore"]


class InMemoryCounterStore:
    """:class:`~leadflow.ports.CounterStore` in a dict under a lock."""

    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._lock = threading.Lock()

    def next(self, name: str) -> int:
        with self._lock:
            name = checked_key(name, "name")
            value = self._values.get(name, 0) + 1
            self._values[name] = value
            return value


class InMemoryAuditLog:
    """:class:`~leadflow.ports.AuditLog` in a list under a lock; entries are validated copies,
    listed oldest first (a stable sort by ``at`` keeps insertion order among equal times)."""

    def __init__(self) -> None:
        self._entries: list[AuditEntry] = []
        self._lock = threading.Lock()

    def append(self, entry: AuditEntry) -> None:
        checked = check_model(entry, AuditEntry, "entry")
        with self._lock:
            self._entries.append(checked)

    def list(
        self, subject: str | None = None, subject_id: str | None = None
    ) -> builtins.list[AuditEntry]:
        with self._lock:
            found = [
                e
                for e in self._entries
                if (subject is None or e.subject == subject)
                and (subject_id is None or e.subject_id == subject_id)
            ]
        return [e.model_copy(deep=True) for e in sorted(found, key=lambda e: e.at)]


class InMemoryJobStore:
    """:class:`JobStore` in dicts under a lock: for one process (several runners or threads
    sharing it), tests and demos. Expired entries are dropped as time passes."""

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str], SlotRecord] = {}
        self._marks: dict[str, datetime] = {}
        self._values: dict[str, str] = {}
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
        ident = (checked_key(job, "job"), checked_key(slot, "slot"))
        owner = checked_key(worker, "worker")
        now = ensure_utc(now, "now")
        until = now + checked_lease(lease)
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
        ident = (checked_key(job, "job"), checked_key(slot, "slot"))
        now = ensure_utc(now, "now")
        final, values = checked_final(state), checked_counts(counts)
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
            return self._slots.get((checked_key(job, "job"), checked_key(slot, "slot")))

    def mark(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        key = checked_key(key, "key")
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
        key = checked_key(key, "key")
        now = ensure_utc(now, "now")
        with self._lock:
            current = self._marks.get(key)
            return current is not None and current > now

    def unmark(self, key: str) -> None:
        with self._lock:
            self._marks.pop(checked_key(key, "key"), None)

    def get_value(self, key: str) -> str | None:
        key = checked_key(key, "key")
        with self._lock:
            return self._values.get(key)

    def set_value(self, key: str, value: str, *, expected: str | None) -> bool:
        key, value = checked_key(key, "key"), checked_value(value, "value")
        if expected is not None:
            checked_value(expected, "expected")
        with self._lock:
            if self._values.get(key) != expected:
                return False
            self._values[key] = value
            return True

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
