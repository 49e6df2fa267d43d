"""The in-memory backend: every storage port, thread-safe, for tests, demos and one process."""

from __future__ import annotations

from .stores import InMemoryActivityRepository, InMemoryRuleRepository, InMemoryScheduledActionStore
from .support import InMemoryAuditLog, InMemoryCounterStore, InMemoryJobStore

__all__ = [
    "InMemoryActivityRepository",
    "InMemoryAuditLog",
    "InMemoryCounterStore",
    "InMemoryJobStore",
    "InMemoryRuleRepository",
    "InMemoryScheduledActionStore",
]
