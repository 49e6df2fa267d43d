"""Revision 0019: on PostgreSQL the state/due index leaves the claimed actions out (the claim's
row version of every action entered it for ``list(state=claimed)`` alone); the lists of every
state keep their answers and their order, the claimed ones read from the leases' index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from leadflow.records import ScheduledActionState
from leadflow.stores.sql import SqlStorage, head_revision, migrate, sql_storage
from leadflow.testing.contracts import at, make_scheduled_action

from .sql_support import on_postgres, postgres_schema
from .test_sql_migrations import HEAD


@pytest.fixture(params=["sqlite-file", pytest.param("postgres", marks=on_postgres)])
def at_0018(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    """Stores on a database migrated to revision 0018."""
    if request.param == "sqlite-file":
        storage = sql_storage(f"sqlite:///{tmp_path / 'old.db'}", create=False)
        try:
            assert migrate(storage.database, "0018") == "0018"
            yield storage
        finally:
            storage.close()
        return
    with postgres_schema() as (engine, schema):
        storage = sql_storage(engine, schema=schema, create=False)
        try:
            assert migrate(storage.database, "0018") == "0018"
            yield storage
        finally:
            storage.close()


def _state_due(storage: SqlStorage) -> str:
    """The state/due index's definition as the database holds it."""
    database = storage.database
    name = f"{database.tables.scheduled.name}_state_due"
    with database.read() as connection:
        if database.dialect == "postgresql":
            return str(
                connection.exec_driver_sql(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = %(s)s "
                    "AND indexname = %(i)s",
                    {"s": database.tables.schema, "i": name},
                ).scalar_one()
            )
        return str(
            connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = ?", (name,)
            ).scalar_one()
        )


def test_0019_leaves_the_claimed_actions_out_of_the_state_due_index(at_0018: SqlStorage) -> None:
    scheduled = at_0018.scheduled
    for n in range(8):
        scheduled.schedule(make_scheduled_action(f"a{n}", due_at=at(minutes=10 - n)))
    claimed = scheduled.claim_due(at(minutes=20), worker="w", limit=4)  # due at 3 to 6 min
    scheduled.mark_done(claimed[0].action_id, worker="w", now=at(minutes=21))
    assert "claimed" not in _state_due(at_0018)

    assert migrate(at_0018.database) == head_revision() == HEAD
    definition = _state_due(at_0018)
    if at_0018.database.dialect == "postgresql":
        assert "WHERE ((state)::text <> 'claimed'::text)" in definition, definition
    else:
        assert "WHERE" not in definition, definition
    assert [a.action_id for a in scheduled.list(ScheduledActionState.CLAIMED)] == [
        "sa-a6",
        "sa-a5",
        "sa-a4",
    ]
    assert [a.action_id for a in scheduled.list(ScheduledActionState.CLAIMED, limit=2)] == [
        "sa-a6",
        "sa-a5",
    ]
    listed = scheduled.list()
    assert [a.action_id for a in listed] == [f"sa-a{n}" for n in range(7, -1, -1)]
    assert [a.state.value for a in listed[:4]] == ["done", "claimed", "claimed", "claimed"]
    assert [a.action_id for a in scheduled.list(ScheduledActionState.DONE)] == ["sa-a7"]
    assert [a.action_id for a in scheduled.list(ScheduledActionState.PENDING, limit=2)] == [
        "sa-a3",
        "sa-a2",
    ]
