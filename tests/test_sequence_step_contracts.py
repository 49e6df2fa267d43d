"""The enrollment stores' moves without the history (:class:`~leadflow.ports.sequences.
EnrollmentSteps`) held to their contract on every backend: memory, SQLite in memory and in a
file, PostgreSQL when ``LEADFLOW_TEST_POSTGRES_URL`` is set, MongoDB (mongomock-ng, a real
server when ``LEADFLOW_TEST_MONGODB_URI`` is set)."""

from __future__ import annotations

from leadflow.stores.memory import InMemoryEnrollmentStore
from leadflow.testing.contracts import EnrollmentStepsContract

from .test_contracts_mongo import _Enrollments as _MongoEnrollments
from .test_contracts_mongo import _OnFake, _OnServer
from .test_contracts_sql import _Enrollments as _SqlEnrollments
from .test_contracts_sql import _File, _Memory, _Postgres


class TestInMemory(EnrollmentStepsContract):
    def make_store(self) -> InMemoryEnrollmentStore:
        return InMemoryEnrollmentStore()


class TestOnSqliteMemory(_Memory, _SqlEnrollments, EnrollmentStepsContract):
    pass


class TestOnSqliteFile(_File, _SqlEnrollments, EnrollmentStepsContract):
    pass


class TestOnPostgres(_Postgres, _SqlEnrollments, EnrollmentStepsContract):
    pass


class TestOnMongoFake(_OnFake, _MongoEnrollments, EnrollmentStepsContract):
    pass


class TestOnMongoServer(_OnServer, _MongoEnrollments, EnrollmentStepsContract):
    pass
