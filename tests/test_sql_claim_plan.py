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
from sqlalchemy import String, cast, event, func, select, text, true

from leadflow.stores.sql import SqlStorage, sql_storage
from leadflow.stores.sql.scheduled_sql import action_values as _values
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
    """EXPLAIN ANALYZE of the store's claim statement, with the parameters the store used,
    after the settings the store made in the claim's transaction (``set_config``)."""
    seen: list[tuple[str, Any]] = []
    settings: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().startswith("UPDATE") and "FOR UPDATE SKIP LOCKED" in statement:
            seen.append((statement, params))
        elif "set_config" in statement and not seen:
            settings.append((statement, params))

    engine = storage.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        storage.scheduled.claim_due(at(hours=1), worker="probe", limit=100, **claim)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    claim_statement, params = seen[-1]  # the second statement: the claim itself
    with engine.connect() as connection:
        for setting, values in settings:
            connection.exec_driver_sql(setting, values)
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
    _backlog(storage, claim)
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


def _backlog(storage: SqlStorage, claim: dict[str, Any], size: int = BACKLOG) -> None:
    """``size`` actions due (as many of another type besides for a filtered claim), all in
    partition 3: one row of each kind built by the store's row function, copied in SQL."""
    table = storage.database.tables.scheduled
    templates = [_values(make_scheduled_action("k", due_at=at(), partition=3))]
    if claim is FILTERED:  # as many of a type the claims do not take (crm_sync)
        other = make_scheduled_action(
            "o", due_at=at(), partition=3, action={"action_type": "crm_sync"}
        )
        templates.append(_values(other))
    series = func.generate_series(1, size - 1).table_valued("n").render_derived(name="g")
    n = series.c.n
    copies = select(
        *(
            (column + "-" + cast(n, String)).label(column.name)
            if column.name in ("action_id", "idempotency_key")
            else column
            for column in table.c
        )
    ).select_from(table.join(series, true()))
    with storage.database.write() as connection:
        connection.execute(table.insert(), templates)
        connection.execute(table.insert().from_select([c.name for c in table.c], copies))


@pytest.mark.parametrize("claim", [{}, {"partition": 3}, FILTERED])
def test_the_claim_walks_the_pending_index_without_statistics(
    storage: SqlStorage, claim: dict[str, Any]
) -> None:
    """Never analyzed (autovacuum off for the table, so no statistics at all): the planner
    guesses a handful of pending rows, and left to itself reads every due one through a
    bitmap of the pending index and sorts them all. The claim must walk the index in its
    order and stop after the batch: no node of its plan handles more than the batch (100 per
    arm of the union; 300 with the type filter's three arms)."""
    table = storage.database.tables.scheduled
    with storage.database.engine.connect().execution_options(
        isolation_level="AUTOCOMMIT"
    ) as connection:
        connection.execute(
            text(f"ALTER TABLE {table.schema}.{table.name} SET (autovacuum_enabled = false)")
        )
    _backlog(storage, claim, size=20_000)  # at 4,000 the guess still favours the walk
    with storage.database.read() as connection:
        analyzed = connection.execute(
            text(
                "SELECT last_analyze, last_autoanalyze FROM pg_stat_user_tables "
                "WHERE schemaname = :schema AND relname = :name"
            ),
            {"schema": table.schema, "name": table.name},
        ).one()
    assert analyzed == (None, None)
    plan = _claim_plans(storage, **claim)
    handled = [int(m.group(1)) for m in re.finditer(r"actual time=\S+ rows=(\d+)", "\n".join(plan))]
    assert handled and max(handled) <= 300, "\n".join(plan)
    index = "type_pending_due" if claim is FILTERED else "pending_due"
    assert any("Index Scan using" in line and index in line for line in plan), "\n".join(plan)


def test_a_claim_inside_a_unit_of_work_leaves_the_setting_as_it_found_it(
    storage: SqlStorage,
) -> None:
    """The claim's ``set_config(..., true)`` lasts until its transaction ends; inside a unit of
    work that is the unit's, so the claim puts the setting back for the unit's other
    statements (and a host's own session setting is what it finds and restores)."""
    _backlog(storage, {}, size=3)
    show = text("SELECT current_setting('enable_bitmapscan')")
    with storage.database.unit(), storage.database.read() as connection:
        connection.execute(text("SELECT set_config('enable_bitmapscan', 'off', true)"))
        assert len(storage.scheduled.claim_due(at(minutes=1), worker="w", limit=2)) == 2
        assert connection.execute(show).scalar_one() == "off"
        connection.execute(text("SELECT set_config('enable_bitmapscan', 'on', true)"))
        assert len(storage.scheduled.claim_due(at(minutes=1), worker="w", limit=2)) == 1
        assert connection.execute(show).scalar_one() == "on"
    with storage.database.read() as connection:
        assert connection.execute(show).scalar_one() == "on"


@pytest.mark.parametrize("claim", [{}, {"partition": 3}, FILTERED])
def test_the_claim_walks_the_pending_index_after_statistics_saw_nothing_pending(
    storage: SqlStorage, claim: dict[str, Any]
) -> None:
    """A quiet hour, then a burst: ``ANALYZE`` saw every action finished, then a backlog
    arrived. Had the statistics kept the states, the planner would believe no action is
    pending, every partial index of the pending ones would look nearly empty, and a filtered
    claim read every pending action through the smallest of them and sorted them, for each
    type (about 100 ms a claim at 20,000). The state has no statistics (revision 0015): the
    claim walks its index in order and stops after the batch."""
    table = storage.database.tables.scheduled
    name = f"{table.schema}.{table.name}"
    _backlog(storage, claim, size=20_000)
    with storage.database.write() as connection:  # everything finished, then analyzed
        connection.execute(text(f"UPDATE {name} SET state = 'done', finished_at = due_at"))
    with storage.database.engine.connect().execution_options(
        isolation_level="AUTOCOMMIT"
    ) as connection:
        connection.execute(text(f"ANALYZE {name}"))
        connection.execute(text(f"DELETE FROM {name}"))
    _backlog(storage, claim, size=20_000)
    plan = _claim_plans(storage, **claim)
    handled = [int(m.group(1)) for m in re.finditer(r"actual time=\S+ rows=(\d+)", "\n".join(plan))]
    assert handled and max(handled) <= 300, "\n".join(plan)
    index = "type_pending_due" if claim is FILTERED else "pending_due"
    assert any("Index Scan using" in line and index in line for line in plan), "\n".join(plan)
