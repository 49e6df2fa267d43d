"""Testing support: recording fakes of the integration ports, the contract suite every
storage backend is held to, and one contract per integration port for a host's adapters
(``docs/integrations.md``).

The fakes (:class:`RecordingNotifier`, :class:`RecordingMessenger`,
:class:`RecordingEventSink`, :class:`InMemoryOpportunities`, :class:`StaticTeamDirectory`)
import nothing extra. The contracts live in :mod:`leadflow.testing.contracts` and need the
``testing`` extra (pytest, hypothesis); importing :mod:`leadflow.testing` does not load them,
and the names below load them on first use.

Running every contract on your backend
--------------------------------------

A backend implements the six storage ports of :mod:`leadflow.ports`
(:class:`~leadflow.ports.Storage` bundles them). Put one test module in your project that
subclasses each contract and says how to make a fresh, empty store; pytest then runs every
test of the contract on your backend::

    # tests/test_my_backend.py
    from leadflow.ports import (
        ActivityRepository,
        AuditLog,
        CounterStore,
        JobStore,
        RuleRepository,
        ScheduledActionStore,
    )
    from leadflow.testing.contracts import (
        ActivityRepositoryContract,
        AuditLogContract,
        CounterStoreContract,
        JobStoreContract,
        RuleRepositoryContract,
        ScheduledActionStoreContract,
        activity_state_machine,
    )

    from my_backend import (
        MyActivities,
        MyAuditLog,
        MyCounters,
        MyJobStore,
        MyRules,
        MyScheduledActions,
    )


    class TestMyActivities(ActivityRepositoryContract):
        def make_store(self) -> ActivityRepository:
            return MyActivities()


    class TestMyRules(RuleRepositoryContract):
        def make_store(self) -> RuleRepository:
            return MyRules()


    class TestMyScheduledActions(ScheduledActionStoreContract):
        def make_store(self) -> ScheduledActionStore:
            return MyScheduledActions()


    class TestMyCounters(CounterStoreContract):
        def make_store(self) -> CounterStore:
            return MyCounters()


    class TestMyAuditLog(AuditLogContract):
        def make_store(self) -> AuditLog:
            return MyAuditLog()


    class TestMyJobStore(JobStoreContract):
        def make_store(self) -> JobStore:
            return MyJobStore()


    # Random writes and reads checked against a plain dict; the factory makes an empty store.
    TestMyActivityMachine = activity_state_machine(MyActivities)

Every contract has the same shape: an abstract ``make_store`` and a ``store`` fixture that
calls it. When each test needs a fresh resource (a database), make it in an ``autouse``
fixture of your own and use it in ``make_store``; when a store needs tearing down, override
``store`` as a generator fixture. leadflow's own backends run the contracts this way:
``tests/test_contracts_memory.py`` (in memory) and ``tests/test_contracts_mongo.py``
(mongomock-ng and, when ``LEADFLOW_TEST_MONGODB_URI`` is set, a real server) in the source
repository.

What the contracts take for granted (whole-second UTC test times in the past, stores shared
between threads, the public cursor helpers :func:`leadflow.queries.encode_cursor` and
:func:`leadflow.queries.decode_cursor`) is written down in :mod:`leadflow.testing.contracts`.
"""

from __future__ import annotations

from typing import Any

from ..adapters import (
    InMemoryOpportunities,
    RecordingEventSink,
    RecordingMessenger,
    RecordingNotifier,
    StaticTeamDirectory,
)

_CONTRACTS = frozenset(
    {
        "BASE_TIME",
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
        "ScheduledActionStoreContract",
        "SchedulerContract",
        "SequenceRepositoryContract",
        "TeamDirectoryContract",
        "activity_state_machine",
        "at",
        "make_activity",
        "make_arrival",
        "make_change",
        "make_completion",
        "make_audit_entry",
        "make_delivery",
        "make_enrollment",
        "make_rule",
        "make_scheduled_action",
        "make_sequence",
        "make_step_action",
        "reference_statistics",
    }
)


def __getattr__(name: str) -> Any:
    """Load the contract names from :mod:`leadflow.testing.contracts` on first use."""
    if name in _CONTRACTS:
        from . import contracts

        return getattr(contracts, name)
    raise AttributeError(f"module 'leadflow.testing' has no attribute {name!r}")


__all__ = [
    "BASE_TIME",
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
    "InMemoryOpportunities",
    "JobStoreContract",
    "MessengerContract",
    "NotifierContract",
    "OpportunityGatewayContract",
    "RecordingEventSink",
    "RecordingMessenger",
    "RecordingNotifier",
    "RuleRepositoryContract",
    "ScheduledActionStoreContract",
    "SchedulerContract",
    "SequenceRepositoryContract",
    "StaticTeamDirectory",
    "TeamDirectoryContract",
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
