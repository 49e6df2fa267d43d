"""A claim never steps over the rows a drain already finished (PostgreSQL): after ANALYZE has
seen a backlog that was all pending, the planner could read the due-order index and filter on
the state, which makes each claim of a long drain slower than the last. The pending actions
have partial indexes of their own; this reads the plan of the store's claim statement after
half a backlog was drained: unfiltered, pinned to a partition, and filtered on action types
(with as many actions of another type due: the type index keeps the claim off those too)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from leadflow.stores.sql import SqlStorage, sql_storage
from leadflow.stores.sql.scheduled import _values
from leadflow.testing.contracts import at, make_scheduled_action

from .sql_support import on_postgres, postgres_schema

pytestmark = on_postgres
BACKLOG = 4000


@pytest.fixture
def storage() -> Iterator[SqlStorage]:
    with postgres_schema() as (engine, schema):
        built = sql_storage(engine, schema=schema)
        try:
            yield built
        finally:
            built.close()


def _claim_plans(storage: SqlStorage, **claim: Any) -> list[str]:
    """EXPLAIN ANALYZE of the store's claim statement, with the parameters the store used."""
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().startswith("UPDATE") and "FOR UPDATE SKIP LOCKED" in statement:
            seen.append((statement, params))

    engine = storage.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        storage.scheduled.claim_due(at(hours=1), worker="probe", limit=100, **claim)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    claim_statement, params = seen[-1]  # the second statement: the claim itself
    with engine.connect() as connection:
        plan = connection.exec_driver_sql("EXPLAIN ANALYZE " + claim_statement, params).all()
        connection.rollback()
    return [str(row[0]) for row in plan]


FILTERED = {"action_types": ["send_notification", "create_activity"]}


@pytest.mark.parametrize("claim", [{}, {"partition": 3}, FILTERED])
def test_a_long_drain_does_not_step_over_finished_rows(
    storage: SqlStorage, claim: dict[str, Any]
) -> None:
    table = storage.database.tables.scheduled
    # With a filter, every other action is of a type the claims do not take (crm_sync): they
    # must not step over those either.
    other = {"action_type": "crm_sync"} if claim is FILTERED else {}
    rows = [
        _values(
            make_scheduled_action(
                f"k{n:05d}",
                due_at=at(),
                partition=3,
                **({"action": other} if other and n % 2 else {}),
            )
        )
        for n in range(BACKLOG * (2 if other else 1))
    ]
    with storage.database.write() as connection:
        connection.execute(table.insert(), rows)
    with storage.database.engine.connect().execution_options(
        isolation_level="AUTOCOMMIT"
    ) as connection:
        connection.execute(text(f"ANALYZE {table.schema}.{table.name}"))
    done = 0
    while done < BACKLOG // 2:
        batch = storage.scheduled.claim_due(
            at(minutes=1), worker="w", limit=100, lease=timedelta(hours=1), **claim
        )
        storage.scheduled.mark_done_many([a.action_id for a in batch], worker="w", now=at())
        done += len(batch)
    plan = _claim_plans(storage, **claim)
    removed = [re.search(r"Rows Removed by Filter: (\d+)", line) for line in plan]
    # The expired-lease arm filters the actions claimed right now (the probe's 100); the
    # pending arm must not read the 2,000 finished ones.
    assert max((int(m.group(1)) for m in removed if m), default=0) <= 100, "\n".join(plan)
    index = "type_pending_due" if claim is FILTERED else "pending_due"
    assert any(index in line for line in plan), "\n".join(plan)
