"""The in-memory backend: every storage port, thread-safe, for tests, demos and one process.

It is the reference implementation: each store is one class guarded by one lock, keeping
plain structures (records in dicts, ``sortedcontainers.SortedList`` indexes), and states the
contract of its port by doing exactly what the docstrings in :mod:`leadflow.ports` say.
:func:`memory_storage` builds them all.

:mod:`leadflow.stores.memory.fast` holds a variant of the activity and scheduled-action stores
held to the same contracts, built for very large stores and long runs (rows as tuples of atomic
values, indexes in immutable chunks the garbage collector does not walk, finished actions as
bytes); :func:`~leadflow.stores.memory.fast.fast_memory_storage` wires it.
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
