"""The storage contracts, shipped as pytest test classes so that every backend is held to them.

One contract per storage port of :mod:`leadflow.ports`:

- :class:`ActivityRepositoryContract` (:class:`~leadflow.ports.ActivityRepository`):
  versions, atomic open keys, every filter / sort / page size, reads scoped to an assignee,
  follow-up queries, statistics, staleness, purge;
- :class:`RuleRepositoryContract` (:class:`~leadflow.ports.RuleRepository`);
- :class:`ScheduledActionStoreContract` (:class:`~leadflow.ports.ScheduledActionStore`): the
  typed round trip, idempotent scheduling, leases, retries, parking, cancelling, purging;
- :class:`CounterStoreContract` (:class:`~leadflow.ports.CounterStore`), atomic under threads;
- :class:`AuditLogContract` (:class:`~leadflow.ports.AuditLog`);
- :class:`UnitOfWorkContract` (:class:`~leadflow.ports.storage.UnitOfWork`, a whole
  :class:`~leadflow.ports.Storage` from ``make_storage``): an atomic unit commits a block's
  writes together or none, reads inside see them; a unit that is not atomic groups nothing;
- :class:`JobStoreContract` (:class:`~leadflow.ports.JobStore`): slot leases and tokens,
  finishing, marks, expiry;
- :class:`SequenceRepositoryContract` (:class:`~leadflow.ports.SequenceRepository`):
  consecutive versions, the current one, statuses, the change stamp;
- :class:`EnrollmentStoreContract` (:class:`~leadflow.ports.EnrollmentStore`): one active
  enrollment per sequence and opportunity under threads, idempotent entry, compare-and-set
  updates, ended enrollments stay ended, listing; :class:`EnrollmentBatchesContract` for a
  store that also has :class:`~leadflow.ports.sequences.EnrollmentBatches` (many read and
  compare-and-set per call) and :class:`EnrollmentSendMarksContract` for one with
  :class:`~leadflow.ports.sequences.EnrollmentSendMarks` (the narrow "send begun" mark);
  :class:`EnrollmentStepsContract` for one with
  :class:`~leadflow.ports.sequences.EnrollmentSteps` (read and moved on without the history,
  the records appended, the newest 200 kept); :class:`EnrollmentFirstVisitsContract` for one
  with :class:`~leadflow.ports.sequences.EnrollmentFirstVisits` (a new enrollment stored with
  its first visit, both or neither); :class:`EnrollmentVisitMovesContract` for one with
  :class:`~leadflow.ports.sequences.EnrollmentVisitMoves` (a batch's moves written with their
  next visits, a move whose visit was stored first not written);
- :class:`AnalyticsStoreContract` (:class:`~leadflow.ports.AnalyticsStore`): idempotent
  facts, period queries, filters, first contacts, the first time a status was reached;
- :func:`activity_state_machine`: random operations on an activity repository, every answer
  checked against a plain dict.

And one per integration port, for a host's adapters (:mod:`.integrations`, the same shape with
a hook or two to seed the host's system and read back what reached it):
:class:`OpportunityGatewayContract`, :class:`TeamDirectoryContract`, :class:`NotifierContract`,
:class:`MessengerContract`, :class:`EventSinkContract`, :class:`ClockContract` and
:class:`SchedulerContract` (see ``docs/integrations.md``).

**One convention.** Each contract is an abstract class with one factory,
``make_store(self) -> <Port>`` (a new, empty store), and one pytest fixture, ``store``, that
calls it; every test takes ``store``. Subclass a contract under a ``Test...`` name and
implement ``make_store`` (see :mod:`leadflow.testing` for a whole backend). When a store
needs tearing down, override the fixture::

    class TestMyActivities(ActivityRepositoryContract):
        def make_store(self) -> ActivityRepository:
            return MyActivityRepository(connect())

        @pytest.fixture
        def store(self) -> Iterator[ActivityRepository]:
            repository = self.make_store()
            yield repository
            repository.close()

**Time.** Test data uses whole-second UTC times from :data:`BASE_TIME` (a Monday in January
2026) and never reads the wall clock, so backends that keep milliseconds pass too. Times are
in the past: a store that expires records by the wall clock (a MongoDB TTL index) must be
built without that for the contract.

**Threads.** Some tests call one store from eight threads at once (concurrent updates, open
keys, claims, counters, marks): a store must be safe to share between threads, as the
runtime shares it, and must make each documented atomic step atomic.

**Cursors.** :meth:`~leadflow.ports.ActivityRepository.list` pages with opaque cursors that
mark a position, not a row. :func:`leadflow.queries.encode_cursor` (``sort``, the sort
field's value, the activity id) makes the cursor for the position after that row and
:func:`leadflow.queries.decode_cursor` reads one back, raising
:class:`~leadflow.InvalidInputError` for a malformed cursor or one made for another sort
order. A backend uses them for its ``next_cursor`` and must accept any cursor they make: the
contract pages from a position no stored row has.

**Data and reference semantics.** :func:`make_activity`, :func:`make_rule`,
:func:`make_scheduled_action`, :func:`make_delivery`, :func:`make_step_action`,
:func:`make_audit_entry`, :func:`make_sequence` and :func:`make_enrollment` build valid
records; :func:`at` shifts :data:`BASE_TIME`; :func:`reference_statistics` computes what
:meth:`~leadflow.ports.ActivityRepository.statistics` must return. A backend's own tests may
use them too.

Needs the ``testing`` extra (pytest, hypothesis).
"""

from __future__ import annotations

from . import _rewrite  # noqa: F401  (first: registers the modules below for rewriting)
from .activities import ActivityRepositoryContract
from .activity_listing import ActivityListingTests
from .activity_reports import ActivityReportTests
from .analytics import (
    AnalyticsStoreContract,
    make_arrival,
    make_change,
    make_completion,
)
from .data import (
    BASE_TIME,
    at,
    make_activity,
    make_audit_entry,
    make_delivery,
    make_enrollment,
    make_rule,
    make_scheduled_action,
    make_sequence,
    make_step_action,
)
from .enrollments import EnrollmentStoreContract
from .integrations import (
    EventSinkContract,
    MessengerContract,
    NotifierContract,
    OpportunityGatewayContract,
    TeamDirectoryContract,
)
from .jobs import JobStoreContract
from .machine import activity_state_machine
from .periodic import ClockContract, SchedulerContract
from .reference import reference_statistics
from .rules import RuleRepositoryContract
from .scheduled import ScheduledActionStoreContract
from .scheduled_cleanup import ScheduledActionCleanupTests
from .sequence_batches import EnrollmentBatchesContract
from .sequence_first_visits import EnrollmentFirstVisitsContract
from .sequence_marks import EnrollmentSendMarksContract
from .sequence_steps import EnrollmentStepsContract
from .sequence_visit_moves import EnrollmentVisitMovesContract
from .sequences import SequenceRepositoryContract
from .support import AuditLogContract, CounterStoreContract
from .units import UnitOfWorkContract

__all__ = [
    "BASE_TIME",
    "ActivityListingTests",
    "ActivityReportTests",
    "ActivityRepositoryContract",
    "AnalyticsStoreContract",
    "AuditLogContract",
    "ClockContract",
    "CounterStoreContract",
    "EnrollmentBatchesContract",
    "EnrollmentFirstVisitsContract",
    "EnrollmentSendMarksContract",
    "EnrollmentStepsContract",
    "EnrollmentStoreContract",
    "EnrollmentVisitMovesContract",
    "EventSinkContract",
    "JobStoreContract",
    "MessengerContract",
    "NotifierContract",
    "OpportunityGatewayContract",
    "RuleRepositoryContract",
    "ScheduledActionCleanupTests",
    "ScheduledActionStoreContract",
    "SchedulerContract",
    "SequenceRepositoryContract",
    "TeamDirectoryContract",
    "UnitOfWorkContract",
    "activity_state_machine",
    "at",
    "make_activity",
    "make_arrival",
    "make_audit_entry",
    "make_change",
    "make_completion",
    "make_delivery",
    "make_enrollment",
    "make_rule",
    "make_scheduled_action",
    "make_sequence",
    "make_step_action",
    "reference_statistics",
]
