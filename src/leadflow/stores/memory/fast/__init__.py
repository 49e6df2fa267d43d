"""A variant of the in-memory activity and scheduled-action stores for very large stores and
long runs, held to the same contracts as the reference stores of :mod:`leadflow.stores.memory`
(the same contract suites run against both).

What it does differently, and why: an activity is kept as a row, a plain tuple of atomic
values (:mod:`.activity_rows`, its extra metadata pickled), every query is answered from an
ordered index of key tuples, and the indexes and the rows by id live in immutable tuple chunks
(:mod:`.chunks`); a finished scheduled action is kept only as bytes (its pickled fields). The
garbage collector stops walking tuples that hold only atomic values, so a million stored
activities add next to nothing to a full collection (about 30 ms of CPU against about 400 ms
with models in ``SortedList`` indexes, docs/benchmarks.md, "Growth"); the price is paid on
every write (a chunk is rebuilt, a finished action pickled) and every read (a model built from
a row). :func:`fast_memory_storage` wires these two with the reference stores for the rest.
"""

from __future__ import annotations

from ....ports import Storage
from .activities import FastActivityRepository
from .analytics import FastAnalyticsStore
from .scheduled import FastScheduledActionStore

__all__ = [
    "FastActivityRepository",
    "FastAnalyticsStore",
    "FastScheduledActionStore",
    "fast_memory_storage",
]


def fast_memory_storage() -> Storage:
    """A :class:`~leadflow.ports.Storage` of new, empty in-memory stores: the activities and
    scheduled actions and analytic facts of this package, the reference stores for the rest."""
    # Imported here: the reference package's analytics store imports this package's chunks.
    from .. import (
        InMemoryAuditLog,
        InMemoryCounterStore,
        InMemoryEnrollmentStore,
        InMemoryJobStore,
        InMemoryRuleRepository,
        InMemorySequenceRepository,
    )

    return Storage(
        activities=FastActivityRepository(),
        rules=InMemoryRuleRepository(),
        scheduled=FastScheduledActionStore(),
        counters=InMemoryCounterStore(),
        audit=InMemoryAuditLog(),
        jobs=InMemoryJobStore(),
        sequences=InMemorySequenceRepository(),
        enrollments=InMemoryEnrollmentStore(),
        analytics=FastAnalyticsStore(),
    )
