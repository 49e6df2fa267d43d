"""The in-memory backend: every storage port, thread-safe, for tests, demos and one process.

It is the reference implementation: each store is one class guarded by one lock, with sorted
indexes (:class:`~.chunks.ChunkedIndex`, held to ``sortedcontainers.SortedList`` by a property
test), and states the contract of its port by doing exactly what the docstrings in
:mod:`leadflow.ports` say. :func:`memory_storage` builds all six.
"""

from __future__ import annotations

from ...ports import Storage
from .activities import InMemoryActivityRepository
from .analytics import InMemoryAnalyticsStore
from .rules import InMemoryRuleRepository
from .scheduled import InMemoryScheduledActionStore
from .sequences import InMemoryEnrollmentStore, InMemorySequenceRepository
from .support import InMemoryAuditLog, InMemoryCounterStore, InMemoryJobStore

__all__ = [
    "InMemoryActivityRepository",
    "InMemoryAnalyticsStore",
    "InMemoryAuditLog",
    "InMemoryCounterStore",
    "InMemoryEnrollmentStore",
    "InMemoryJobStore",
    "InMemoryRuleRepository",
    "InMemoryScheduledActionStore",
    "InMemorySequenceRepository",
    "memory_storage",
]


def memory_storage() -> Storage:
    """A :class:`~leadflow.ports.Storage` of new, empty in-memory stores (activities, rules,
    scheduled actions, counters, audit log, job slots, sequences, enrollments, analytic
    facts)."""
    return Storage(
        activities=InMemoryActivityRepository(),
        rules=InMemoryRuleRepository(),
        scheduled=InMemoryScheduledActionStore(),
        counters=InMemoryCounterStore(),
        audit=InMemoryAuditLog(),
        jobs=InMemoryJobStore(),
        sequences=InMemorySequenceRepository(),
        enrollments=InMemoryEnrollmentStore(),
        analytics=InMemoryAnalyticsStore(),
    )
