"""The MongoDB backend (the ``mongo`` extra: pymongo): every storage port on a host's database."""

from __future__ import annotations

from .stores import (
    MongoActivityRepository,
    MongoRuleRepository,
    MongoScheduledActionStore,
    guard_literal,
)
from .support import MongoAuditLog, MongoCounterStore, MongoJobStore

__all__ = [
    "MongoActivityRepository",
    "MongoAuditLog",
    "MongoCounterStore",
    "MongoJobStore",
    "MongoRuleRepository",
    "MongoScheduledActionStore",
    "guard_literal",
]
