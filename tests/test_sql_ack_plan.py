"""The acknowledgement finds its rows through the primary key (PostgreSQL), whatever the drain
left behind: every claimed row version of every action drained since the last vacuum keeps an
entry in the claimed actions' partial index (``_leases``), and a plan that reads that index
costs what the drain has done so far, not the batch (see
:func:`leadflow.stores.sql.claim_sql.state_unindexed`). Autovacuum is off for the table here,
as between two of its runs during a long drain."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from leadflow.stores.sql import SqlStorage, sql_storage
from leadflow.testing.contracts import at

from .sql_support import on_postgres, postgres_schema
from .test_sql_claim_plan import _backlog

pytestmark = on_postgres
DRAINED = 3000
BATCH = 100


@pytest.fixture
def storage() -> Iterator[SqlStorage]:
    with postgres_schema() as (engine, schema):
        built = sql_storage(engine, schema=schema)
        try:
            yield built
        finally:
            built.close()


def _plan_of(storage: SqlStorage, acknowledge: Callable[[list[str]], Any]) -> list[str]:
    """EXPLAIN ANALYZE (rolled back) of the acknowledgement ``acknowledge`` runs, for a fresh
    claim of a batch: the statement and parameters of a first acknowledgement, its ids
    replaced by the fresh batch's (whose rows are then still claimed)."""
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().startswith("UPDATE"):
            seen.append((statement, params))

    first, fresh = (
        [a.action_id for a in storage.scheduled.claim_due(at(minutes=1), worker="w", limit=BATCH)]
        for _ in range(2)
    )
    assert len(first) == len(fresh) == BATCH
    engine = storage.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        acknowledge(first)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    (statement, params), *_ = seen
    swapped: Any = (  # the driver's parameters are positional, SQLAlchemy's by name
        {key: fresh if value == first else value for key, value in params.items()}
        if isinstance(params, dict)
        else type(params)(fresh if value == first else value for value in params)
    )
    assert swapped != params
    with engine.connect() as connection:
        plan = connection.exec_driver_sql("EXPLAIN ANALYZE " + statement, swapped).all()
        connection.rollback()
    return [str(row[0]) for row in plan]


def _drained(storage: SqlStorage) -> None:
    table = storage.database.tables.scheduled
    with storage.database.engine.connect().execution_options(
        isolation_level="AUTOCOMMIT"
    ) as connection:
        connection.execute(
            text(f"ALTER TABLE {table.schema}.{table.name} SET (autovacuum_enabled = false)")
        )
    _backlog(storage, {}, size=DRAINED + 3 * BATCH)
    done = 0
    while done < DRAINED:
        batch = storage.scheduled.claim_due(
            at(minutes=1), worker="w", limit=BATCH, lease=timedelta(hours=1)
        )
        acked = storage.scheduled.mark_done_ids(
            [a.action_id for a in batch], worker="w", now=at(minutes=1)
        )
        assert len(acked) == len(batch) == BATCH
        done += len(batch)


@pytest.mark.parametrize("method", ["mark_done_ids", "mark_done_many"])
def test_the_acknowledgement_reads_its_rows_by_id_after_a_long_drain(
    storage: SqlStorage, method: str
) -> None:
    _drained(storage)
    mark = getattr(storage.scheduled, method)
    plan = _plan_of(storage, lambda ids: mark(ids, worker="w", now=at(minutes=2)))
    text_ = "\n".join(plan)
    handled = [int(m.group(1)) for m in re.finditer(r"actual time=\S+ rows=(\d+)", text_)]
    assert handled[0] == BATCH, text_  # the fresh batch acknowledged
    # The batch's rows, each with its pending and its claimed version in the primary key:
    # at most 2 entries an action, never the 3,000 claimed versions the drain left behind.
    assert handled and max(handled) <= 2 * BATCH, text_
    assert "_leases" not in text_, text_
    assert "_pkey" in text_, text_


def test_the_acknowledgement_still_marks_only_the_workers_claimed_actions(
    storage: SqlStorage,
) -> None:
    """The state's test is written so that no index serves it, and still tests: an action
    another worker holds, or one already done, is left as it is."""
    _backlog(storage, {}, size=6)
    mine = storage.scheduled.claim_due(at(minutes=1), worker="w", limit=3)
    theirs = storage.scheduled.claim_due(at(minutes=1), worker="other", limit=2)
    ids = [a.action_id for a in (*mine, *theirs)]
    assert storage.scheduled.mark_done_ids(ids, worker="w", now=at(minutes=2)) == ids[:3]
    assert storage.scheduled.mark_done_ids(ids, worker="w", now=at(minutes=3)) == []
    states = {storage.scheduled.get(i).state.value for i in ids[3:]}
    assert states == {"claimed"}
    many = storage.scheduled.mark_done_many(ids, worker="other", now=at(minutes=4))
    assert [a.action_id for a in many] == ids[3:]
