"""Every shipped contract on the in-memory stores: the reference stores of
``leadflow.stores.memory`` and the fast variant's activity and scheduled-action stores
(``leadflow.stores.memory.fast``), held to the same suites."""

from __future__ import annotations

from leadflow.ports import (
    ActivityRepository,
    AnalyticsStore,
    AuditLog,
    CounterStore,
    EnrollmentStore,
    JobStore,
    RuleRepository,
    ScheduledActionStore,
    SequenceRepository,
    Storage,
)
from leadflow.stores.memory import (
    InMemoryActivityRepository,
    InMemoryAnalyticsStore,
    InMemoryAuditLog,
    InMemoryCounterStore,
    InMemoryEnrollmentStore,
    InMemoryJobStore,
    InMemoryRuleRepository,
    InMemoryScheduledActionStore,
    InMemorySequenceRepository,
    memory_storage,
)
from leadflow.stores.memory.fast import (
    FastActivityRepository,
    FastAnalyticsStore,
    FastScheduledActionStore,
    fast_memory_storage,
)
from leadflow.testing.contracts import (
    ActivityRepositoryContract,
    AnalyticsStoreContract,
    AuditLogContract,
    CounterStoreContract,
    EnrollmentStoreContract,
    JobStoreContract,
    RuleRepositoryContract,
    ScheduledActionStoreContract,
    SequenceRepositoryContract,
    UnitOfWorkContract,
    activity_state_machine,
)

from .suite import examples


class TestInMemoryActivityRepository(ActivityRepositoryContract):
    def make_store(self) -> ActivityRepository:
        return InMemoryActivityRepository()


class TestFastActivityRepository(ActivityRepositoryContract):
    def make_store(self) -> ActivityRepository:
        return FastActivityRepository()


class TestInMemoryRuleRepository(RuleRepositoryContract):
    def make_store(self) -> RuleRepository:
        return InMemoryRuleRepository()


class TestInMemoryScheduledActionStore(ScheduledActionStoreContract):
    def make_store(self) -> ScheduledActionStore:
        return InMemoryScheduledActionStore()


class TestFastScheduledActionStore(ScheduledActionStoreContract):
    def make_store(self) -> ScheduledActionStore:
        return FastScheduledActionStore()


class TestInMemoryCounterStore(CounterStoreContract):
    def make_store(self) -> CounterStore:
        return InMemoryCounterStore()


class TestInMemoryAuditLog(AuditLogContract):
    def make_store(self) -> AuditLog:
        return InMemoryAuditLog()


class TestInMemoryJobStore(JobStoreContract):
    def make_store(self) -> JobStore:
        return InMemoryJobStore()


TestInMemoryActivityStateMachine = activity_state_machine(
    InMemoryActivityRepository, max_examples=examples(100)
)

TestFastActivityStateMachine = activity_state_machine(
    FastActivityRepository, max_examples=examples(100)
)


class TestInMemoryUnitOfWork(UnitOfWorkContract):
    def make_storage(self) -> Storage:
        return memory_storage()


class TestFastUnitOfWork(UnitOfWorkContract):
    def make_storage(self) -> Storage:
        return fast_memory_storage()


class TestInMemorySequenceRepository(SequenceRepositoryContract):
    def make_store(self) -> SequenceRepository:
        return InMemorySequenceRepository()


class TestInMemoryEnrollmentStore(EnrollmentStoreContract):
    def make_store(self) -> EnrollmentStore:
        return InMemoryEnrollmentStore()


class TestInMemoryAnalyticsStore(AnalyticsStoreContract):
    def make_store(self) -> AnalyticsStore:
        return InMemoryAnalyticsStore()


class TestFastAnalyticsStore(AnalyticsStoreContract):
    def make_store(self) -> AnalyticsStore:
        return FastAnalyticsStore()
