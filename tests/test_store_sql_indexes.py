"""Every statement the SQL stores issue is served by an index: the stores run a workload
that calls every method, each statement is recorded, and its plan is read back (SQLite's
``EXPLAIN QUERY PLAN``; PostgreSQL's ``EXPLAIN`` with sequential scans discouraged, so that a
sequential scan in the plan means no index could serve the statement)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event

from leadflow import OpenActivityExistsError, StaleWriteError
from leadflow.models import ActivityState, ActivityType, Outcome
from leadflow.queries import ActivityFilter, ActivitySort
from leadflow.records import ScheduledActionState, SlotState
from leadflow.sequences import EnrollmentState, SequenceStatus
from leadflow.stores.sql import SqlStorage
from leadflow.stores.sql.activities import SqlActivityRepository
from leadflow.stores.sql.scheduled import SqlScheduledActionStore
from leadflow.testing.contracts import (
    at,
    make_activity,
    make_audit_entry,
    make_enrollment,
    make_rule,
    make_scheduled_action,
    make_sequence,
)

from .sql_support import fresh_storage, kind_params

Statement = tuple[str, Any]


def _load(storage: SqlStorage) -> None:
    """Enough rows that a scan would show (the stores' own statements only)."""
    for n in range(300):
        storage.activities.add(
            make_activity(
                f"a{n:04d}",
                opportunity_id=f"opp-{n % 40}",
                customer_id=f"c{n % 25}",
                assigned_to=f"u{n % 7}",
                activity_type=list(ActivityType)[n % 7],
                created_at=at(hours=n),
                due_date=at(hours=n + 24) if n % 3 else None,
                scheduled_date=at(hours=n) if n % 5 == 0 else None,
                completed_date=at(hours=n + 2) if n % 2 else None,
                outcome=Outcome.SUCCESSFUL if n % 2 else None,
                metadata={"automationRuleId": f"rule-{n % 4}"},
            )
        )
    for n in range(200):
        storage.scheduled.schedule(
            make_scheduled_action(f"k{n:04d}", due_at=at(minutes=n), opportunity_id=f"opp-{n % 40}")
        )
    assert storage.sequences is not None and storage.enrollments is not None
    for n in range(40):
        for version in range(1, 4):
            storage.sequences.add(make_sequence(f"s{n:02d}", version=version))
    for n in range(300):
        storage.enrollments.enroll(
            make_enrollment(
                f"e{n:04d}",
                sequence_id=f"s{n % 40:02d}",
                opportunity_id=f"opp-{n % 97}",
                enrolled_at=at(minutes=n),
            )
        )


def _workload(storage: SqlStorage) -> None:
    """Every method of every store, with the argument shapes that change the statements."""
    acts, day = storage.activities, at(days=3)
    acts.add(make_activity("w1", open_key="k", due_date=at(hours=5), assigned_to="u1"))
    with pytest.raises(OpenActivityExistsError):  # the held-key check
        acts.add(make_activity("w2", open_key="k", completed_date=at(hours=1)))
    acts.add(make_activity("w2", completed_date=at(hours=1)))
    assert isinstance(acts, SqlActivityRepository)
    # A batch: an id stored, a key held (SQLite reads both first; PostgreSQL after its INSERT).
    answers = acts.add_many([make_activity("w1"), make_activity("w3", open_key="k")])
    assert [type(answer).__name__ for answer in answers] == [
        "DuplicateError",
        "OpenActivityExistsError",
    ]
    acts.add_many([make_activity(f"many-{n}", open_key=f"many-{n}") for n in range(3)])
    current = acts.get("w1")
    acts.update(current.model_copy(update={"subject": "edited"}))
    acts.complete("w1", outcome=None, completed_by="u1", completed_at=at(hours=6))
    acts.delete("w2")
    sorts = [
        ActivitySort(field=f, descending=d)
        for f in ("created_at", "updated_at", "due_date", "scheduled_date", "completed_date")
        for d in (False, True)
    ]
    for sort in sorts:
        page = acts.list(sort=sort, limit=5)
        acts.list(sort=sort, limit=5, cursor=page.next_cursor)
    for f in (
        ActivityFilter(opportunity_id="opp-3"),
        ActivityFilter(customer_id="c4"),
        ActivityFilter(assigned_to="u2"),
        ActivityFilter(automation_rule_id="rule-1"),
        ActivityFilter(state=ActivityState.OVERDUE, as_of=day),
        ActivityFilter(state=ActivityState.PENDING, as_of=day),
        ActivityFilter(state=ActivityState.COMPLETED),
        ActivityFilter(created_from=at(hours=10), created_to=at(hours=20)),
        ActivityFilter(completed_from=at(hours=10), completed_to=at(hours=20)),
        ActivityFilter(opportunity_id="opp-3", assigned_to="u3"),
    ):
        acts.list(f, limit=5)
        if f.state is not ActivityState.COMPLETED:  # most of the table: read as a whole
            acts.statistics(f, as_of=day)
    for user in (None, "u1"):
        acts.for_opportunity("opp-3", assigned_to=user)
        acts.for_customer("c3", assigned_to=user)
        acts.timeline("opp-3", assigned_to=user)
        acts.pending(day, assigned_to=user)
        acts.overdue(day, assigned_to=user)
    acts.upcoming(day, timedelta(days=1))
    acts.last_activity_times(["opp-1", "opp-2"])
    acts.last_activity_times()
    acts.stale_opportunities(at(days=5))
    acts.stale_opportunities(at(days=5), after=(at(hours=100), "opp-9"))
    acts.purge_completed(at(hours=20))

    rules = storage.rules
    rules.create(make_rule("r1"))
    rules.update(rules.get("r1").model_copy(update={"priority": 3}))
    rules.list()
    rules.list_active()
    rules.delete("r1")
    rules.stamp()

    sched = storage.scheduled
    sched.schedule(make_scheduled_action("k0001"))  # the key exists
    sched.schedule(make_scheduled_action("new", due_at=at(days=-1)))
    sched.get("sa-new")
    assert isinstance(sched, SqlScheduledActionStore)
    # A batch beyond the one-by-one size, two of its keys stored (SQLite reads what is held).
    batch = [make_scheduled_action(f"k{n:04d}" if n < 2 else f"many-{n}") for n in range(12)]
    assert sched.schedule_many(batch) == [False, False] + [True] * 10
    claimed = sched.claim_due(at(hours=1), worker="w1", limit=3, lease=timedelta(minutes=1))
    sched.claim_due(at(hours=1), worker="w9", limit=3, partition=0)  # pinned to one partition
    sched.mark_done(claimed[0].action_id, worker="w1", now=at(hours=1))
    sched.mark_done_many([claimed[0].action_id, "sa-k0150"], worker="w1", now=at(hours=1))
    sched.mark_failed(
        claimed[1].action_id, worker="w1", now=at(hours=1), error="x", retry_at=at(hours=2)
    )
    sched.mark_failed(
        claimed[2].action_id, worker="w1", now=at(hours=1), error="x", retry_at=at(), permanent=True
    )
    sched.retry(claimed[2].action_id, now=at(hours=1))
    sched.cancel_for_opportunity("opp-5", now=at(hours=1))
    sched.cancel_for_rule("rule-1", now=at(hours=1))
    sched.purge_finished(at(hours=2), limit=10)
    sched.list(limit=5)
    sched.list(ScheduledActionState.PENDING, limit=5)
    sched.next_due()
    sched.next_due(partition=3)

    storage.counters.next("n")
    storage.audit.append(make_audit_entry("e1"))
    storage.audit.list("rule")
    storage.audit.list(subject_id="rule-1")
    storage.audit.list("rule", "rule-1")

    jobs = storage.jobs
    claim = jobs.claim_slot(
        "job", "s", worker="a", now=at(), lease=timedelta(minutes=1), expires_at=at(days=1)
    )
    jobs.claim_slot(
        "job", "s", worker="b", now=at(), lease=timedelta(minutes=1), expires_at=at(days=1)
    )
    jobs.claim_slot(
        "job", "s", worker="b", now=at(hours=1), lease=timedelta(minutes=1), expires_at=at(days=1)
    )
    jobs.finish_slot(
        "job", "s", token=claim.record.token, now=at(), state=SlotState.SUCCEEDED, counts={}
    )
    jobs.get_slot("job", "s")
    jobs.mark("m", now=at(), expires_at=at(hours=1))
    jobs.is_marked("m", now=at())
    jobs.unmark("m")
    jobs.purge_expired(at(days=2))
    jobs.set_value("v", "1", expected=None)
    jobs.set_value("v", "2", expected="1")
    jobs.get_value("v")
    sequences, enrollments = storage.sequences, storage.enrollments
    assert sequences is not None and enrollments is not None
    sequences.add(make_sequence("s-new"))
    sequences.add(make_sequence("s-new", version=2))
    sequences.get("s-new")
    sequences.get("s-new", 1)
    sequences.versions("s-new")
    sequences.list()
    sequences.set_status("s-new", 2, SequenceStatus.ACTIVE)
    sequences.stamp()
    first, _ = enrollments.enroll(make_enrollment("e-new", sequence_id="s-new"))
    enrollments.enroll(make_enrollment("e-other", sequence_id="s-new"))  # the pair is taken
    enrollments.get("e-new")
    ended = enrollments.update(first.model_copy(update={"state": EnrollmentState.ENDED}))
    with pytest.raises(StaleWriteError):
        enrollments.update(first)
    enrollments.update(ended)
    enrollments.active_for("opp-3")
    enrollments.list()
    enrollments.list(sequence_id="s01")
    enrollments.list(opportunity_id="opp-3")
    enrollments.list(state=EnrollmentState.ACTIVE)
    enrollments.list(sequence_id="s01", opportunity_id="opp-3", state=EnrollmentState.ENDED)


@pytest.fixture(params=[p for p in kind_params() if "memory" not in str(p)])
def recorded(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[SqlStorage, list[Statement]]]:
    with fresh_storage(request.param, tmp_path) as storage:
        _load(storage)
        statements: list[Statement] = []

        def record(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            statements.append((statement, parameters))

        event.listen(storage.database.engine, "before_cursor_execute", record)
        try:
            _workload(storage)
        finally:
            event.remove(storage.database.engine, "before_cursor_execute", record)
        yield storage, statements


def _queries(statements: list[Statement]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for statement, parameters in statements:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH"):
            found.setdefault(statement, parameters)
    return found


def sqlite_full_scans(
    connection: Connection, statement: str, parameters: Any, tables: set[str]
) -> list[str]:
    plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    scans = []
    for row in plan:
        detail = str(row[-1])
        found = re.match(r"SCAN (\w+)$", detail)
        if found and found.group(1) in tables:
            scans.append(detail)
    return scans


def postgres_full_scans(
    connection: Connection, statement: str, parameters: Any, tables: set[str]
) -> list[str]:
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plan = connection.exec_driver_sql("EXPLAIN " + statement, parameters).all()
    return [
        str(row[0]).strip()
        for row in plan
        if any(f"Seq Scan on {table}" in str(row[0]) for table in tables)
    ]


def test_every_statement_is_served_by_an_index(
    recorded: tuple[SqlStorage, list[Statement]],
) -> None:
    storage, statements = recorded
    tables = {t.name for t in storage.database.tables.metadata.tables.values()}
    queries = _queries(statements)
    assert len(queries) > 60  # the workload reached every method
    unserved: dict[str, list[str]] = {}
    with storage.database.engine.connect() as connection:
        for statement, parameters in queries.items():
            if storage.database.is_sqlite:
                scans = sqlite_full_scans(connection, statement, parameters, tables)
            else:
                scans = postgres_full_scans(connection, statement, parameters, tables)
            if scans:
                unserved[statement] = scans
        connection.rollback()
    assert unserved == {}
