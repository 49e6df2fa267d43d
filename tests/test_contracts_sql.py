"""Every shipped contract on the SQL stores: SQLite in memory and in a file always, PostgreSQL
when ``LEADFLOW_TEST_POSTGRES_URL`` is set (each test in a schema of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
)
from leadflow.stores.sql import (
    SqlDatabase,
    SqlRuleRepository,
    SqlSequenceRepository,
    SqlStorage,
    sql_storage,
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

from .sql_support import fresh_storage, on_postgres
from .suite import examples


class _Database:
    kind: str
    storage: SqlStorage
    others: list[SqlDatabase]

    @pytest.fixture(autouse=True)
    def _fresh_database(self, tmp_path: Path) -> Iterator[None]:
        self.others = []
        with fresh_storage(self.kind, tmp_path) as storage:
            self.storage = storage
            try:
                yield
            finally:
                for other in self.others:
                    other.close()

    def reopened(self) -> SqlDatabase:
        """Another database object on the same tables: its own engine on a file, the shared
        server engine on PostgreSQL (an in-memory database has only one connection)."""
        database = self.storage.database
        if self.kind == "sqlite-memory":
            return database
        target = database.engine.url if self.kind == "sqlite-file" else database.engine
        other = SqlDatabase(target, prefix=database.tables.prefix, schema=database.tables.schema)
        self.others.append(other)
        return other


class _Memory(_Database):
    kind = "sqlite-memory"


class _File(_Database):
    kind = "sqlite-file"


@on_postgres
class _Postgres(_Database):
    kind = "postgres"


class _Activities:
    storage: SqlStorage

    def make_store(self) -> ActivityRepository:
        return self.storage.activities


class _Rules(_Database):
    def make_store(self) -> RuleRepository:
        return self.storage.rules

    def open_again(self, store: RuleRepository) -> RuleRepository:
        return SqlRuleRepository(self.reopened())


class _Actions:
    storage: SqlStorage

    def make_store(self) -> ScheduledActionStore:
        return self.storage.scheduled


class _Counters:
    storage: SqlStorage

    def make_store(self) -> CounterStore:
        return self.storage.counters


class _Audit:
    storage: SqlStorage

    def make_store(self) -> AuditLog:
        return self.storage.audit


class _Jobs:
    storage: SqlStorage

    def make_store(self) -> JobStore:
        return self.storage.jobs


class TestActivityContractOnSqliteMemory(_Memory, _Activities, ActivityRepositoryContract):
    pass


class TestRuleContractOnSqliteMemory(_Memory, _Rules, RuleRepositoryContract):
    pass


class TestScheduledActionContractOnSqliteMemory(_Memory, _Actions, ScheduledActionStoreContract):
    pass


class TestCounterContractOnSqliteMemory(_Memory, _Counters, CounterStoreContract):
    pass


class TestAuditContractOnSqliteMemory(_Memory, _Audit, AuditLogContract):
    pass


class TestJobContractOnSqliteMemory(_Memory, _Jobs, JobStoreContract):
    pass


class TestActivityContractOnSqliteFile(_File, _Activities, ActivityRepositoryContract):
    pass


class TestRuleContractOnSqliteFile(_File, _Rules, RuleRepositoryContract):
    pass


class TestScheduledActionContractOnSqliteFile(_File, _Actions, ScheduledActionStoreContract):
    pass


class TestCounterContractOnSqliteFile(_File, _Counters, CounterStoreContract):
    pass


class TestAuditContractOnSqliteFile(_File, _Audit, AuditLogContract):
    pass


class TestJobContractOnSqliteFile(_File, _Jobs, JobStoreContract):
    pass


class TestActivityContractOnPostgres(_Postgres, _Activities, ActivityRepositoryContract):
    pass


class TestRuleContractOnPostgres(_Postgres, _Rules, RuleRepositoryContract):
    pass


class TestScheduledActionContractOnPostgres(_Postgres, _Actions, ScheduledActionStoreContract):
    pass


class TestCounterContractOnPostgres(_Postgres, _Counters, CounterStoreContract):
    pass


class TestAuditContractOnPostgres(_Postgres, _Audit, AuditLogContract):
    pass


class TestJobContractOnPostgres(_Postgres, _Jobs, JobStoreContract):
    pass


class _Sequences(_Database):
    def make_store(self) -> SequenceRepository:
        assert self.storage.sequences is not None
        return self.storage.sequences

    def open_again(self, store: SequenceRepository) -> SequenceRepository:
        return SqlSequenceRepository(self.reopened())


class _Enrollments:
    storage: SqlStorage

    def make_store(self) -> EnrollmentStore:
        assert self.storage.enrollments is not None
        return self.storage.enrollments


class TestSequenceContractOnSqliteMemory(_Memory, _Sequences, SequenceRepositoryContract):
    pass


class TestSequenceContractOnSqliteFile(_File, _Sequences, SequenceRepositoryContract):
    pass


class TestSequenceContractOnPostgres(_Postgres, _Sequences, SequenceRepositoryContract):
    pass


class TestEnrollmentContractOnSqliteMemory(_Memory, _Enrollments, EnrollmentStoreContract):
    pass


class TestEnrollmentContractOnSqliteFile(_File, _Enrollments, EnrollmentStoreContract):
    pass


class TestEnrollmentContractOnPostgres(_Postgres, _Enrollments, EnrollmentStoreContract):
    pass


class _Units:
    storage: SqlStorage

    def make_storage(self) -> SqlStorage:
        return self.storage


class TestUnitOfWorkContractOnSqliteMemory(_Memory, _Units, UnitOfWorkContract):
    pass


class TestUnitOfWorkContractOnSqliteFile(_File, _Units, UnitOfWorkContract):
    pass


class TestUnitOfWorkContractOnPostgres(_Postgres, _Units, UnitOfWorkContract):
    pass


def _machine_repository() -> ActivityRepository:
    return sql_storage("sqlite://").activities


TestActivityMachineOnSqliteMemory = activity_state_machine(
    _machine_repository, max_examples=examples(40)
)


class _Analytics:
    storage: SqlStorage

    def make_store(self) -> AnalyticsStore:
        assert self.storage.analytics is not None
        return self.storage.analytics


class TestAnalyticsContractOnSqliteMemory(_Memory, _Analytics, AnalyticsStoreContract):
    pass


class TestAnalyticsContractOnSqliteFile(_File, _Analytics, AnalyticsStoreContract):
    pass


class TestAnalyticsContractOnPostgres(_Postgres, _Analytics, AnalyticsStoreContract):
    pass
