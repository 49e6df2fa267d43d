"""The two small stores the service needs besides the big three: atomic counters (fair
round-robin assignment across restarts and instances) and the rule audit trail."""

from __future__ import annotations

import builtins
import threading
from datetime import UTC
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from ..models import Id, UtcDatetime, _Model, new_id

__all__ = [
    "AuditLog",
    "CounterStore",
    "InMemoryAuditLog",
    "InMemoryCounterStore",
    "MongoAuditLog",
    "MongoCounterStore",
    "RuleAuditEntry",
]


@runtime_checkable
class CounterStore(Protocol):
    """Named counters that only go up."""

    def next(self, name: str) -> int:
        """Atomically increment counter ``name`` and return its new value (first call: 1)."""
        ...


class RuleAuditEntry(_Model):
    """One change to a rule: who, when, what it was before and after (documents)."""

    entry_id: Id = Field(default_factory=new_id)
    rule_id: Id
    change: Literal["created", "updated", "deleted"]
    actor: Id
    at: UtcDatetime
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


@runtime_checkable
class AuditLog(Protocol):
    """Append-only trail of rule changes."""

    def append(self, entry: RuleAuditEntry) -> None: ...

    def list(self, rule_id: str | None = None) -> builtins.list[RuleAuditEntry]:
        """Entries (of one rule, or all), oldest first."""
        ...


class InMemoryCounterStore:
    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._lock = threading.Lock()

    def next(self, name: str) -> int:
        with self._lock:
            value = self._values.get(name, 0) + 1
            self._values[name] = value
            return value


class InMemoryAuditLog:
    def __init__(self) -> None:
        self._entries: list[RuleAuditEntry] = []
        self._lock = threading.Lock()

    def append(self, entry: RuleAuditEntry) -> None:
        with self._lock:
            self._entries.append(entry.model_copy(deep=True))

    def list(self, rule_id: str | None = None) -> builtins.list[RuleAuditEntry]:
        with self._lock:
            return [
                e.model_copy(deep=True)
                for e in self._entries
                if rule_id is None or e.rule_id == rule_id
            ]


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
