"""Every port leadflow talks through, in one place, with its contract in the docstrings.

A host (or a backend) implements these :class:`~typing.Protocol` classes; nothing needs to inherit
from them. The runtime is built from two small frozen bundles, :class:`Storage` (where leadflow
keeps its state) and :class:`Integrations` (the host's world: notifications, e-mail / SMS,
opportunities, the sales team, the event bus). Every outgoing call carries an idempotency ``key``
so a host can drop the rare duplicate a crash-and-retry produces (leadflow's own writes are
exactly once; a send to a foreign system is at least once).

Every storage port has a contract suite in :mod:`leadflow.testing`; a backend passes it for every
port it implements. The integration ports and :class:`Clock` have one each too, for a host's
adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from .analytics import AnalyticsStore, BatchFacts
from .integrations import (
    Contact,
    EventSink,
    Message,
    Messenger,
    Notification,
    Notifier,
    OpportunityFields,
    OpportunityGateway,
    Scheduler,
    TeamDirectory,
)
from .scheduled import (
    AcknowledgedScheduling,
    BatchAcknowledgement,
    BatchScheduling,
    PendingCancellation,
    ScheduledActionStore,
)
from .sequences import EnrollmentStore, SequenceRepository
from .storage import (
    ActivityRepository,
    AuditLog,
    BatchActivities,
    CounterStore,
    DeferredUnits,
    DeferredWriteError,
    JobStore,
    PlainActivities,
    RuleRepository,
    SeparateSteps,
    UnitOfWork,
)

__all__ = [
    "AcknowledgedScheduling",
    "ActivityRepository",
    "AnalyticsStore",
    "AuditLog",
    "BatchAcknowledgement",
    "BatchActivities",
    "BatchFacts",
    "BatchScheduling",
    "Clock",
    "Contact",
    "CounterStore",
    "DeferredUnits",
    "DeferredWriteError",
    "EnrollmentStore",
    "EventSink",
    "Integrations",
    "JobStore",
    "Message",
    "Messenger",
    "Notification",
    "Notifier",
    "OpportunityFields",
    "OpportunityGateway",
    "PendingCancellation",
    "PlainActivities",
    "RuleRepository",
    "ScheduledActionStore",
    "Scheduler",
    "SeparateSteps",
    "SequenceRepository",
    "Storage",
    "TeamDirectory",
    "UnitOfWork",
]


@runtime_checkable
class Clock(Protocol):
    """Where leadflow reads the current time. Inject one so tests control time."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware and in UTC (a naive time is refused with
        :class:`~leadflow.InvalidInputError`). Called from many threads; reads in a row
        never go backwards."""
        ...


# --------------------------------------------------------------------------- bundles


@dataclass(frozen=True, slots=True)
class Storage:
    """Where leadflow keeps its state: one backend's stores, built by its wiring helper
    (:func:`leadflow.stores.memory.memory_storage`, :func:`leadflow.stores.sql.sql_storage`,
    :func:`leadflow.stores.mongo.mongo_storage`).

    ``unit_of_work`` groups store calls into one atomic step where the backend can (see
    :class:`~leadflow.ports.storage.UnitOfWork`): the SQL stores share one transaction in
    ``with storage.unit_of_work():`` and commit once; the default, :class:`SeparateSteps`
    (memory, MongoDB), groups nothing. ``sequences`` and ``enrollments`` hold sequence
    definitions and enrollments; every shipped backend provides them (a hand-built storage
    without them runs rules only). ``analytics`` keeps the facts the analytics are computed
    from (:mod:`leadflow.facts`), recorded as events arrive; every shipped backend provides it
    (a storage without it records nothing and has no analytics)."""

    activities: ActivityRepository
    rules: RuleRepository
    scheduled: ScheduledActionStore
    counters: CounterStore
    audit: AuditLog
    jobs: JobStore
    unit_of_work: UnitOfWork = field(default_factory=SeparateSteps, kw_only=True)
    sequences: SequenceRepository | None = field(default=None, kw_only=True)
    enrollments: EnrollmentStore | None = field(default=None, kw_only=True)
    analytics: AnalyticsStore | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class Integrations:
    """The host's world as leadflow sees it."""

    notifier: Notifier
    messenger: Messenger
    opportunities: OpportunityGateway
    team: TeamDirectory
    events: EventSink
