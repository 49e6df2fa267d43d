"""Every shipped contract on the MongoDB stores: mongomock-ng always, a real server when
``LEADFLOW_TEST_MONGODB_URI`` is set."""

from __future__ import annotations

from collections.abc import Iterator

import mongomock_ng
import pytest

from leadflow.ports import RuleRepository, SequenceRepository, Storage
from leadflow.stores.mongo import (
    MongoActivityRepository,
    MongoAnalyticsStore,
    MongoAuditLog,
    MongoCounterStore,
    MongoEnrollmentStore,
    MongoJobStore,
    MongoRuleRepository,
    MongoScheduledActionStore,
    MongoSequenceRepository,
    mongo_storage,
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

from .mongo_support import RecordingDatabase, on_server, server_database
from .suite import examples


class _OnFake:
    @pytest.fixture(autouse=True)
    def _fresh_database(self) -> None:
        self.database = RecordingDatabase(mongomock_ng.MongoClient()["leadflow"])


@on_server
class _OnServer:
    @pytest.fixture(autouse=True)
    def _fresh_database(self) -> Iterator[None]:
        with server_database() as database:
            self.database = RecordingDatabase(database)
            yield


class _Activities:
    database: RecordingDatabase

    def make_store(self) -> MongoActivityRepository:
        store = MongoActivityRepository(self.database)  # type: ignore[arg-type]
        store.ensure_indexes()
        return store


class _Rules:
    database: RecordingDatabase

    def make_store(self) -> MongoRuleRepository:
        store = MongoRuleRepository(self.database)  # type: ignore[arg-type]
        store.ensure_indexes()
        return store

    def open_again(self, store: RuleRepository) -> MongoRuleRepository:
        return MongoRuleRepository(self.database)  # type: ignore[arg-type]


class _Actions:
    database: RecordingDatabase

    def make_store(self) -> MongoScheduledActionStore:
        store = MongoScheduledActionStore(self.database)  # type: ignore[arg-type]
        store.ensure_indexes()
        return store


class _Counters:
    database: RecordingDatabase

    def make_store(self) -> MongoCounterStore:
        return MongoCounterStore(self.database)  # type: ignore[arg-type]


class _Audit:
    database: RecordingDatabase

    def make_store(self) -> MongoAuditLog:
        store = MongoAuditLog(self.database)  # type: ignore[arg-type]
        store.ensure_indexes()
        return store


class _Jobs:
    database: RecordingDatabase

    def make_store(self) -> MongoJobStore:
        store = MongoJobStore(self.database)
        # The contract's clock is not the server's (its times are in the past): no TTL index.
        store.ensure_indexes(ttl=False)
        return store


class _Sequences:
    database: RecordingDatabase

    def make_store(self) -> MongoSequenceRepository:
        store = MongoSequenceRepository(self.database)  # type: ignore[arg-type]
        store.ensure_indexes()
        return store

    def open_again(self, store: SequenceRepository) -> MongoSequenceRepository:
        return MongoSequenceRepository(self.database)  # type: ignore[arg-type]


class _Enrollments:
    database: RecordingDatabase

    def make_store(self) -> MongoEnrollmentStore:
        store = MongoEnrollmentStore(self.database)  # type: ignore[arg-type]
        store.ensure_indexes()
        return store


class TestSequenceContractOnFake(_OnFake, _Sequences, SequenceRepositoryContract):
    pass


class TestEnrollmentContractOnFake(_OnFake, _Enrollments, EnrollmentStoreContract):
    pass


class TestSequenceContractOnServer(_OnServer, _Sequences, SequenceRepositoryContract):
    pass


class TestEnrollmentContractOnServer(_OnServer, _Enrollments, EnrollmentStoreContract):
    pass


class TestActivityContractOnFake(_OnFake, _Activities, ActivityRepositoryContract):
    pass


class TestRuleContractOnFake(_OnFake, _Rules, RuleRepositoryContract):
    pass


class TestScheduledActionContractOnFake(_OnFake, _Actions, ScheduledActionStoreContract):
    pass


class TestCounterContractOnFake(_OnFake, _Counters, CounterStoreContract):
    pass


class TestAuditContractOnFake(_OnFake, _Audit, AuditLogContract):
    pass


class TestJobContractOnFake(_OnFake, _Jobs, JobStoreContract):
    pass


class TestActivityContractOnServer(_OnServer, _Activities, ActivityRepositoryContract):
    pass


class TestRuleContractOnServer(_OnServer, _Rules, RuleRepositoryContract):
    pass


class TestScheduledActionContractOnServer(_OnServer, _Actions, ScheduledActionStoreContract):
    pass


class TestCounterContractOnServer(_OnServer, _Counters, CounterStoreContract):
    pass


class TestAuditContractOnServer(_OnServer, _Audit, AuditLogContract):
    pass


class TestJobContractOnServer(_OnServer, _Jobs, JobStoreContract):
    pass


class TestUnitOfWorkContractOnFake(UnitOfWorkContract):
    def make_storage(self) -> Storage:
        return mongo_storage(mongomock_ng.MongoClient()["units"])


def _machine_repository() -> MongoActivityRepository:
    store = MongoActivityRepository(mongomock_ng.MongoClient()["machine"])
    store.ensure_indexes()
    return store


TestActivityMachineOnFake = activity_state_machine(_machine_repository, max_examples=examples(100))


class _Analytics:
    database: RecordingDatabase

    def make_store(self) -> MongoAnalyticsStore:
        store = MongoAnalyticsStore(self.database)  # type: ignore[arg-type]
        store.ensure_indexes()
        return store


class TestAnalyticsContractOnFake(_OnFake, _Analytics, AnalyticsStoreContract):
    pass


class TestAnalyticsContractOnServer(_OnServer, _Analytics, AnalyticsStoreContract):
    pass
