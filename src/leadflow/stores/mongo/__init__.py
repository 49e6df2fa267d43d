"""The MongoDB backend (the ``mongo`` extra: pymongo): every storage port on a host's database.

One line builds them all::

    storage = mongo_storage(client["crm"])

Importing :mod:`leadflow` never imports pymongo; only importing this package does.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Final

from ...errors import InvalidInputError
from ...ports import Storage
from .activities import MongoActivityRepository
from .analytics import MongoAnalyticsStore
from .common import MongoTarget, guard_literal
from .driver import driver_errors
from .rules import MongoRuleRepository
from .scheduled import MongoScheduledActionStore
from .sequences import MongoEnrollmentStore, MongoSequenceRepository
from .support import MongoAuditLog, MongoCounterStore, MongoJobStore

__all__ = [
    "DEFAULT_COLLECTIONS",
    "MongoActivityRepository",
    "MongoAnalyticsStore",
    "MongoAuditLog",
    "MongoCounterStore",
    "MongoEnrollmentStore",
    "MongoJobStore",
    "MongoRuleRepository",
    "MongoScheduledActionStore",
    "MongoSequenceRepository",
    "driver_errors",
    "guard_literal",
    "mongo_storage",
]

DEFAULT_COLLECTIONS: Final[Mapping[str, str]] = {
    "activities": MongoActivityRepository.DEFAULT_COLLECTION,
    "rules": MongoRuleRepository.DEFAULT_COLLECTION,
    "scheduled": MongoScheduledActionStore.DEFAULT_COLLECTION,
    "counters": MongoCounterStore.DEFAULT_COLLECTION,
    "audit": MongoAuditLog.DEFAULT_COLLECTION,
    "job_slots": MongoJobStore.DEFAULT_SLOTS,
    "job_marks": MongoJobStore.DEFAULT_MARKS,
    "job_values": MongoJobStore.DEFAULT_VALUES,
    "sequences": MongoSequenceRepository.DEFAULT_COLLECTION,
    "enrollments": MongoEnrollmentStore.DEFAULT_COLLECTION,
    "arrivals": MongoAnalyticsStore.DEFAULT_ARRIVALS,
    "status_changes": MongoAnalyticsStore.DEFAULT_CHANGES,
    "completions": MongoAnalyticsStore.DEFAULT_COMPLETIONS,
}
"""The collection each store uses unless :func:`mongo_storage` is told otherwise."""


def mongo_storage(
    database: MongoTarget,
    *,
    ensure_indexes: bool = True,
    prefix: str = "",
    collections: Mapping[str, str] | None = None,
    retention: timedelta | None = None,
    job_ttl: bool = True,
) -> Storage:
    """All the Mongo stores on ``database`` (a pymongo ``Database``): the six of every
    storage, sequences, enrollments and the analytic facts, as one :class:`Storage`.

    - ``prefix`` is put before every default collection name (``"crm_"`` ->
      ``crm_leadActivities``...); ``collections`` names some collections outright, by store:
      keys of :data:`DEFAULT_COLLECTIONS` (the prefix is not added to these).
    - ``ensure_indexes`` (default on) creates every index the stores' queries rely on,
      including the unique index that keeps one open activity per open key; it is
      idempotent, so it can run at every start. Turn it off when a migration step owns indexes.
    - ``retention`` adds the TTL index that expires completed activities that long after
      completion; ``job_ttl=False`` leaves out the job collections' TTL indexes (a simulation
      whose clock is not the server's wall clock).

    The host owns the client: nothing here creates, configures or closes one. Passing a client
    instead of a database is an :class:`InvalidInputError`; a driver failure while creating
    indexes is a :class:`~leadflow.StorageError` (:class:`~leadflow.UnavailableError` when the
    server cannot be reached).
    """
    if callable(getattr(type(database), "list_database_names", None)):
        raise InvalidInputError("pass a database (client['crm']), not a client", field="database")
    if not isinstance(prefix, str):
        raise InvalidInputError("expected a string", field="prefix")
    given = dict(collections or {})
    unknown = sorted(set(given) - set(DEFAULT_COLLECTIONS))
    if unknown:
        raise InvalidInputError(
            f"unknown store(s) {unknown}; expected some of {sorted(DEFAULT_COLLECTIONS)}",
            field="collections",
        )
    names = {
        store: given.get(store, prefix + default) for store, default in DEFAULT_COLLECTIONS.items()
    }
    if len(set(names.values())) != len(names):
        raise InvalidInputError("two stores would share one collection", field="collections")
    activities = MongoActivityRepository(
        database, collection=names["activities"], retention=retention
    )
    rules = MongoRuleRepository(database, collection=names["rules"])
    scheduled = MongoScheduledActionStore(database, collection=names["scheduled"])
    counters = MongoCounterStore(database, names["counters"])
    audit = MongoAuditLog(database, names["audit"])
    jobs = MongoJobStore(
        database,
        slots_collection=names["job_slots"],
        marks_collection=names["job_marks"],
        values_collection=names["job_values"],
    )
    sequences = MongoSequenceRepository(database, collection=names["sequences"])
    enrollments = MongoEnrollmentStore(database, collection=names["enrollments"])
    analytics = MongoAnalyticsStore(
        database,
        arrivals=names["arrivals"],
        changes=names["status_changes"],
        completions=names["completions"],
    )
    if ensure_indexes:
        for store in (activities, rules, scheduled, counters, audit, sequences, enrollments):
            store.ensure_indexes()
        jobs.ensure_indexes(ttl=job_ttl)
        analytics.ensure_indexes()
    return Storage(
        activities=activities,
        rules=rules,
        scheduled=scheduled,
        counters=counters,
        audit=audit,
        jobs=jobs,
        sequences=sequences,
        enrollments=enrollments,
        analytics=analytics,
    )
