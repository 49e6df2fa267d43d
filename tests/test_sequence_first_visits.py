"""A new enrollment stored with its first visit (``enroll_at_first``,
:class:`~leadflow.ports.sequences.EnrollmentFirstVisits`) held to its contract on SQL, the
backend that has it: on PostgreSQL the visit's ``INSERT`` is one more ``WITH`` query of the
enrollment's statement, fed by the enrollment's row; on SQLite its row follows the enrollment's
in the same transaction. SQLite in memory and in a file, PostgreSQL when
``LEADFLOW_TEST_POSTGRES_URL`` is set. (The memory and MongoDB enrollment stores do not have
it: their first visits are stored by the scheduled-action store after the entry.)"""

from __future__ import annotations

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from leadflow.ports.sequences import EnrollmentFirstVisits
from leadflow.stores.memory import InMemoryEnrollmentStore
from leadflow.stores.sql import SqlStorage
from leadflow.testing.contracts import EnrollmentFirstVisitsContract

from .test_contracts_sql import _File, _Memory, _Postgres


class _Sql:
    storage: SqlStorage

    def make_storage(self) -> SqlStorage:
        return self.storage


class TestOnSqliteMemory(_Memory, _Sql, EnrollmentFirstVisitsContract):
    pass


class TestOnSqliteFile(_File, _Sql, EnrollmentFirstVisitsContract):
    pass


class TestOnPostgres(_Postgres, _Sql, EnrollmentFirstVisitsContract):
    pass


def test_the_memory_store_stores_its_visits_apart() -> None:
    """The reference store keeps no scheduled actions: the sequencer stores the visit."""
    assert not isinstance(InMemoryEnrollmentStore(), EnrollmentFirstVisits)
