"""Revisions on databases made by the previous ones, with data in them: 0002 (partitions) adds
the column with 0 for every existing action, which a claim pinned to partition 0 then takes;
0003 (change stamps) adds the rule stamp beside existing rules, which writes then bump; 0004
(claim filters) indexes existing pending actions by type, which filtered claims then take; 0005
(job values) adds the table a job keeps its cursor in; 0006 (cancelled activities) adds the
cancellation columns beside existing activities and lets a cancelled one free its open key;
0008 (analytics) adds the fact tables (lead arrivals, status changes, completions); 0009
(first contacts) adds each opportunity's first contact, filled from the completions there;
0010 (completion sums) indexes the completions there for their sums; 0011 (enrollment steps)
moves the step records out of the enrollments' documents into rows of their own; 0012
(completion days) sums the completions there per day; 0013 (arrivals' leads) gives the
arrivals' period index their source and owner; 0014 (completion orders) indexes the
completions by rep and time to complete and by opportunity and time; 0015 (live indexes) makes
the scheduled actions' cancellation indexes partial on the pending ones and the purge's on the
finished ones, which the cancellations and the purge then read; 0017 (SQLite pages) leaves the
activities without an open key out of the open keys' index and stores the arrivals in their
key's b-tree (SQLite only), which keep their answers and plans.
0007 (sequences) adds the sequence and enrollment tables, their stamp, and the step columns of
existing actions (NULL). The stores are today's, which read the columns of every later
revision too: a test migrates to the newest revision before it uses them. On SQLite and, with
``LEADFLOW_TEST_POSTGRES_URL``, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import inspect, text

from leadflow import ActivityState, OpenActivityExistsError
from leadflow.records import ScheduledAction, ScheduledActionState
from leadflow.sequences import EnrollmentHead, EnrollmentState, StepRecord
from leadflow.stores.sql import (
    SqlDatabase,
    SqlRuleRepository,
    SqlStorage,
    current_revision,
    head_revision,
    migrate,
    sql_storage,
)
from leadflow.stores.sql.activity_sql import activity_values
from leadflow.stores.sql.migrations.schema_0001 import build_tables as build_tables_0001
from leadflow.stores.sql.rules import _values as rule_values
from leadflow.stores.sql.scheduled_sql import action_values
from leadflow.testing.contracts import (
    at,
    make_activity,
    make_arrival,
    make_change,
    make_completion,
    make_delivery,
    make_enrollment,
    make_rule,
    make_scheduled_action,
    make_sequence,
)

from .sql_support import on_postgres, postgres_schema

HEAD = "0019"
"""The newest revision (tests/test_sql_migration_0018.py and _0019.py test the last two)."""


def _values(action: ScheduledAction) -> dict[str, object]:
    """An action's row as the revisions before 0006 stored it (no enrollment or step)."""
    values = action_values(action)
    del values["enrollment_id"], values["step_id"]
    return values


@pytest.fixture(params=["sqlite-file", pytest.param("postgres", marks=on_postgres)])
def at_0001(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    """Stores on a database migrated to revision 0001 only."""
    if request.param == "sqlite-file":
        storage = sql_storage(f"sqlite:///{tmp_path / 'old.db'}", create=False)
        try:
            yield storage
        finally:
            storage.close()
        return
    with postgres_schema() as (engine, schema):
        storage = sql_storage(engine, schema=schema, create=False)
        try:
            yield storage
        finally:
            storage.close()


def test_0002_adds_partitions_to_existing_actions(at_0001: SqlStorage) -> None:
    database = at_0001.database
    assert migrate(database, "0001") == "0001"
    old = build_tables_0001(database.tables.prefix, database.tables.schema).scheduled
    with database.engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns(old.name, old.schema)}
    assert "partition" not in columns
    rows = []
    for n in range(3):
        values = _values(make_scheduled_action(f"old-{n}", due_at=at(minutes=-n)))
        del values["partition"]
        rows.append(values)
    with database.write() as connection:
        connection.execute(old.insert(), rows)

    assert migrate(database, "0002") == "0002"
    assert current_revision(database) == "0002"
    assert migrate(database, "0002") == "0002"  # again: nothing to do
    migrate(database)
    stored = at_0001.scheduled.list()
    assert [(a.action_id, a.partition) for a in stored] == [
        ("sa-old-2", 0),
        ("sa-old-1", 0),
        ("sa-old-0", 0),
    ]
    claimed = at_0001.scheduled.claim_due(at(), worker="w1", partition=0)
    assert len(claimed) == 3
    new = make_scheduled_action("new", partition=5)
    at_0001.scheduled.schedule(new)
    assert at_0001.scheduled.get("sa-new").partition == 5
    assert at_0001.scheduled.claim_due(at(), worker="w2", partition=4) == []
    assert [a.action_id for a in at_0001.scheduled.claim_due(at(), worker="w2", partition=5)] == [
        "sa-new"
    ]


def test_0003_adds_the_rule_stamp_beside_existing_rules(at_0001: SqlStorage) -> None:
    database = at_0001.database
    assert migrate(database, "0002") == "0002"
    assert database.tables.stamps.name not in inspect(database.engine).get_table_names(
        schema=database.tables.schema
    )
    old = build_tables_0001(database.tables.prefix, database.tables.schema).rules
    with database.write() as connection:
        connection.execute(old.insert(), [rule_values(make_rule(f"r{n}"), 1) for n in range(3)])

    assert migrate(database, "0003") == "0003"
    assert current_revision(database) == "0003"
    assert migrate(database, "0003") == "0003"  # again: nothing to do
    rules = at_0001.rules
    assert [r.rule_id for r in rules.list()] == ["r0", "r1", "r2"]
    first = rules.stamp()
    assert first == 1
    rules.update(rules.get("r1"))
    rules.delete("r2")
    rules.create(make_rule("r3"))
    assert rules.stamp() == first + 3
    other = SqlDatabase(
        database.engine, prefix=database.tables.prefix, schema=database.tables.schema
    )
    assert SqlRuleRepository(other).stamp() == first + 3


def test_0004_indexes_existing_actions_by_type(at_0001: SqlStorage) -> None:
    database = at_0001.database
    assert migrate(database, "0003") == "0003"
    table = database.tables.scheduled
    old = build_tables_0001(database.tables.prefix, database.tables.schema).scheduled
    old.append_column(sa.Column("partition", sa.Integer(), nullable=False))
    old.append_column(sa.Column("rule_version", sa.BigInteger()))
    rows = [
        _values(make_scheduled_action("old-mail", action={"action_type": "send_email"})),
        _values(make_scheduled_action("old-note", due_at=at(minutes=-1))),
        _values(make_delivery("old-delivery", due_at=at(minutes=1))),
    ]
    with database.write() as connection:
        connection.execute(old.insert(), rows)
    assert migrate(database, "0004") == "0004"
    with database.engine.connect() as connection:
        if database.dialect == "sqlite":  # SQLAlchemy's inspector leaves expression indexes out
            found = connection.execute(text("SELECT name FROM sqlite_master WHERE type='index'"))
            names = {row[0] for row in found}
        else:
            indexes = inspect(connection).get_indexes(table.name, schema=table.schema)
            names = {index["name"] for index in indexes}
    assert f"{table.name}_type_pending_due" in names
    migrate(database)
    claimed = at_0001.scheduled.claim_due(at(hours=1), worker="w1", action_types=["send_email"])
    assert [a.action_id for a in claimed] == ["sa-old-mail", "sa-old-delivery"]
    (rest,) = at_0001.scheduled.claim_due(at(hours=1), worker="w2")
    assert rest.action_id == "sa-old-note"


def test_0005_adds_the_job_values(at_0001: SqlStorage) -> None:
    database = at_0001.database
    assert migrate(database, "0004") == "0004"
    names = inspect(database.engine).get_table_names(schema=database.tables.schema)
    assert database.tables.job_values.name not in names
    assert migrate(database, "0005") == "0005"
    assert migrate(database, "0005") == "0005"  # again: nothing to do
    jobs = at_0001.jobs
    assert jobs.get_value("cursor:stale") is None
    assert jobs.set_value("cursor:stale", "x", expected=None)
    assert jobs.get_value("cursor:stale") == "x"


def test_0006_adds_cancellation_to_existing_activities(at_0001: SqlStorage) -> None:
    database = at_0001.database
    assert migrate(database, "0005") == "0005"
    old = build_tables_0001(database.tables.prefix, database.tables.schema).activities
    values = activity_values(make_activity("old", open_key="k"), version=1)
    for column in ("cancelled_at", "cancelled_by", "cancel_reason"):
        del values[column]
    with database.engine.begin() as connection:
        connection.execute(old.insert().values(values))
        columns = {c["name"] for c in inspect(connection).get_columns(old.name, old.schema)}
    assert "cancelled_at" not in columns
    assert migrate(database) == head_revision() == HEAD
    activities = at_0001.activities
    found = activities.get("old")
    assert found.cancelled_at is None and found.state(at()) is ActivityState.PENDING
    with pytest.raises(OpenActivityExistsError):
        activities.add(make_activity("new", open_key="k"))
    activities.update(found.model_copy(update={"cancelled_at": at(hours=1)}))
    assert activities.add(make_activity("new", open_key="k")).open_key == "k"
    assert [a.activity_id for a in activities.pending(at())] == ["new"]


def test_0007_adds_sequences_beside_existing_actions(at_0001: SqlStorage) -> None:
    database = at_0001.database
    assert migrate(database, "0006") == "0006"
    names = set(inspect(database.engine).get_table_names(schema=database.tables.schema))
    assert database.tables.sequences.name not in names
    assert database.tables.enrollments.name not in names
    old = build_tables_0001(database.tables.prefix, database.tables.schema).scheduled
    old.append_column(sa.Column("partition", sa.Integer(), nullable=False))
    old.append_column(sa.Column("rule_version", sa.BigInteger()))
    with database.write() as connection:
        connection.execute(old.insert(), [_values(make_scheduled_action("old"))])

    assert migrate(database) == head_revision() == HEAD
    assert migrate(database) == HEAD  # again: nothing to do
    assert current_revision(database) == HEAD
    stored = at_0001.scheduled.get("sa-old")
    assert (stored.enrollment_id, stored.step_id) == (None, None)
    sequences, enrollments = at_0001.sequences, at_0001.enrollments
    assert sequences is not None and enrollments is not None
    first = sequences.stamp()
    assert first == 1
    sequences.add(make_sequence("s1"))
    assert sequences.stamp() == first + 1
    assert enrollments.enroll(make_enrollment("e1"))[1] is True
    assert enrollments.enroll(make_enrollment("e2"))[1] is False
    ended = enrollments.update(
        enrollments.get("e1").model_copy(update={"state": EnrollmentState.ENDED})
    )
    assert ended.revision == 2
    assert enrollments.enroll(make_enrollment("e2"))[1] is True


def test_0008_adds_the_fact_tables(at_0001: SqlStorage) -> None:
    database = at_0001.database
    tables = database.tables
    fact_tables = {tables.arrivals.name, tables.status_changes.name, tables.completions.name}
    assert migrate(database) == head_revision() == HEAD
    inspector = inspect(database.engine)
    assert fact_tables <= set(inspector.get_table_names(schema=tables.schema))
    indexes = {i["name"] for i in inspector.get_indexes(tables.arrivals.name, tables.schema)}
    assert f"{tables.arrivals.name}_arrived" in indexes
    analytics = at_0001.analytics
    assert analytics is not None
    assert analytics.record_arrival(make_arrival("o1")) is True
    assert [a.opportunity_id for a in analytics.arrivals(at(hours=-1), at(hours=1))] == ["o1"]


def test_0009_keeps_the_first_contacts_of_the_completions_recorded_before(
    at_0001: SqlStorage,
) -> None:
    database = at_0001.database
    tables = database.tables
    assert migrate(database, "0008") == "0008"
    call, note = "call", "note"
    completions = [  # (activity, opportunity, type, hours): o1's first contact is c2 (tie: id)
        ("c3", "o1", call, 2),
        ("c2", "o1", "email", 1),
        ("c9", "o1", "meeting", 1),
        ("n1", "o1", note, 0),
        ("n2", "o2", note, 0),
        ("c4", "o3", call, 5),
    ]
    with database.write() as connection:
        connection.execute(
            tables.arrivals.insert(),
            [make_arrival(o, owner="alice").model_dump() for o in ("o1", "o2", "o3")],
        )
        connection.execute(
            tables.completions.insert(),
            [
                {
                    "activity_id": activity,
                    "opportunity_id": opportunity,
                    "activity_type": kind,
                    "completed_at": at(hours=hours),
                    "assigned_to": "bob",
                }
                for activity, opportunity, kind, hours in completions
            ],
        )
    assert migrate(database) == head_revision() == HEAD
    with database.read() as connection:
        kept = connection.execute(
            sa.select(tables.lead_contacts.c.opportunity_id, tables.lead_contacts.c.activity_id)
        ).all()
    assert sorted(kept) == [("o1", "c2"), ("o3", "c4")]
    analytics = at_0001.analytics
    assert analytics is not None
    [sums] = analytics.lead_sums(at(hours=-1), at(hours=1), status="won", day=timedelta(hours=8))
    assert (sums.leads, sums.contacted, sums.p50_seconds) == (3, 2, 3600.0)
    # A later contact recorded now leaves o1's first one; an earlier one replaces it.
    analytics.record_completion(make_completion("c0", "o1", hours=0.5))
    analytics.record_completion(make_completion("c8", "o1", hours=1.5))
    [sums] = analytics.lead_sums(at(hours=-1), at(hours=1), status="won", day=timedelta(hours=8))
    assert sums.p50_seconds == 1800.0


def test_0010_indexes_the_completions_recorded_before(at_0001: SqlStorage) -> None:
    database = at_0001.database
    tables = database.tables
    table = tables.completions.name
    assert migrate(database, "0009") == "0009"
    analytics = at_0001.analytics
    assert analytics is not None
    for n, hours in enumerate((1, 3, 2)):
        analytics.record_completion(
            make_completion(
                f"c{n}",
                f"o{n}",
                hours=hours,
                assigned_to="bob",
                created_at=at(),
                due_at=at(hours=2),
            )
        )
    assert migrate(database) == head_revision() == HEAD
    inspector = inspect(database.engine)
    indexes = {i["name"] for i in inspector.get_indexes(table, tables.schema)}
    assert {f"{table}_completed_sums", f"{table}_assignee_times", f"{table}_rule_times"} <= indexes
    assert f"{table}_assignee_completed" not in indexes  # the new one covers its reads
    changes = tables.status_changes.name
    assert f"{changes}_changed_paths" in {
        i["name"] for i in inspector.get_indexes(changes, tables.schema)
    }
    [bob] = analytics.completion_groups(at(), at(hours=4), by="assigned_to")
    assert (bob.completed, bob.with_due, bob.on_time, bob.opportunities) == (3, 3, 2, 3)
    assert bob.median_seconds_to_complete == 2 * 3600.0


def test_0011_moves_the_histories_of_existing_enrollments_into_rows(at_0001: SqlStorage) -> None:
    database = at_0001.database
    tables = database.tables
    assert migrate(database, "0010") == "0010"
    records = [
        StepRecord(visit=n, step_id=f"s{n}", kind="wait", at=at(minutes=n), outcome="waited")
        for n in range(3)
    ]
    old = [
        make_enrollment("e0", history=records, visit=3, step_id="s2", revision=4),
        make_enrollment("e1", opportunity_id="o1"),  # no record
    ]
    old_table = sa.Table(  # the enrollments as 0007 made them (the history in the document)
        tables.enrollments.name,
        sa.MetaData(schema=tables.schema),
        *(sa.Column(c.name, c.type) for c in tables.enrollments.c if c.name != "steps"),
    )
    with database.engine.begin() as connection:
        connection.execute(
            old_table.insert(),
            [
                {
                    "enrollment_id": e.enrollment_id, "sequence_id": e.sequence_id,
                    "sequence_version": e.sequence_version, "opportunity_id": e.opportunity_id,
                    "state": e.state.value, "revision": e.revision, "enrolled_at": e.enrolled_at,
                    "updated_at": None, "ended_at": None, "document": e.to_document(),
                }
                for e in old
            ],
        )  # fmt: skip
    assert migrate(database) == head_revision() == HEAD
    store = at_0001.enrollments
    assert store is not None
    assert store.get("e0") == old[0] and store.get("e1") == old[1]
    with database.read() as connection:
        documents = connection.execute(sa.select(tables.enrollments.c.document)).scalars().all()
        steps = connection.execute(
            sa.select(tables.enrollments.c.enrollment_id, tables.enrollments.c.steps)
        ).all()
    assert all("history" not in document for document in documents)
    assert sorted(steps) == [("e0", 3), ("e1", 0)]
    # A step appends after the records moved; the history reads back whole and in order.
    head = EnrollmentHead.model_validate(
        {k: v for k, v in store.get("e0").model_dump().items() if k != "history"}
    )
    more = StepRecord(visit=3, step_id="s3", kind="wait", at=at(hours=1), outcome="waited")
    [moved] = store.move_many([(head, [more])])  # type: ignore[attr-defined]
    assert moved is not None
    assert store.get("e0").history == [*records, more]


def test_0012_sums_the_completions_recorded_before_per_day(at_0001: SqlStorage) -> None:
    database = at_0001.database
    tables = database.tables
    assert migrate(database, "0011") == "0011"
    start = at().replace(hour=0)  # midnight: the period below is three whole days
    old = [
        make_completion(f"c{n}", f"o{n % 2}", hours=hours, assigned_to=rep, due_at=at(hours=5))
        for n, (hours, rep) in enumerate(((1, "bob"), (4, "bob"), (30, None), (50, "bob")))
    ]
    with database.write() as connection:  # as a store at 0011 wrote them: no day sums
        connection.execute(
            tables.completions.insert(),
            [{**c.model_dump(), "activity_type": str(c.activity_type)} for c in old],
        )
    assert migrate(database) == head_revision() == HEAD
    days = tables.completion_days.c
    with database.read() as connection:
        rows = connection.execute(
            sa.select(days.kind, days.keyed, days.name, days.completed, days.on_time).order_by(
                days.kind, days.day, days.keyed, days.name
            )
        ).all()
    assert rows == [  # at() is 09:00 on day 0: hours 1 and 4 on day 0, 30 on day 1, 50 on day 2
        ("assigned_to", 1, "bob", 2, 2),
        ("assigned_to", 0, "", 1, 0),
        ("assigned_to", 1, "bob", 1, 0),
        ("rule_id", 0, "", 2, 2),
        ("rule_id", 0, "", 1, 0),
        ("rule_id", 0, "", 1, 0),
    ]
    analytics = at_0001.analytics
    assert analytics is not None
    period = (start, start + timedelta(days=3))
    [none, bob] = analytics.completion_groups(*period, by="assigned_to")
    assert (none.completed, bob.completed, bob.on_time, bob.opportunities) == (1, 3, 2, 2)
    # Recorded after: counted once (the trigger), a re-record not at all.
    analytics.record_completion(make_completion("c9", "o3", hours=2, assigned_to="bob"))
    assert analytics.record_completion(old[0]) is False
    [_, bob] = analytics.completion_groups(*period, by="assigned_to")
    assert bob.completed == 4
    assert {n: g.completed for n, g in analytics.completion_buckets(
        *period, width=timedelta(days=1)
    ).items()} == {0: 3, 1: 1, 2: 1}  # fmt: skip


def test_0014_orders_the_completions_recorded_before(at_0001: SqlStorage) -> None:
    """Revision 0014 indexes the completions there by rep and time to complete and by
    opportunity and time; the medians per rep and the won touches read them, with the same
    answers for the completions recorded before and after."""
    database = at_0001.database
    tables = database.tables
    table = tables.completions.name
    assert migrate(database, "0012") == "0012"
    analytics = at_0001.analytics
    assert analytics is not None
    for n, hours in enumerate((1, 5, 2)):  # bob's times to complete: 1, 5 and 2 hours
        analytics.record_completion(
            make_completion(
                f"c{n}", f"o{n}", hours=hours, assigned_to="bob", created_at=at(), rule_id="r1"
            )
        )
    assert migrate(database) == head_revision() == HEAD
    with database.read() as connection:  # SQLAlchemy reflects no expression index on SQLite
        indexes = set(
            connection.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %(s)s AND tablename = %(t)s",
                {"s": tables.schema, "t": table},
            ).scalars()
            if database.dialect == "postgresql"
            else connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE tbl_name = ?", (table,)
            ).scalars()
        )
    assert {f"{table}_assignee_spent", f"{table}_opportunity_touches"} <= indexes
    period = (at(), at(hours=24))
    [bob] = analytics.completion_groups(*period, by="assigned_to")
    assert bob.median_seconds_to_complete == 2 * 3600.0
    analytics.record_completion(
        make_completion("c3", "o3", hours=8, assigned_to="bob", created_at=at(hours=7))
    )
    [bob] = analytics.completion_groups(*period, by="assigned_to")
    assert bob.median_seconds_to_complete == 3600.0  # 1, 1, 2, 5 hours: the 2nd
    analytics.record_status_change(make_change("s1", "o1", "won", hours=6))
    [touch] = analytics.won_touches(*period, "won")
    assert (touch.key, touch.converted, touch.wins) == ("r1", 1, 1)


def test_0013_indexes_the_arrivals_recorded_before_with_their_source_and_owner(
    at_0001: SqlStorage,
) -> None:
    database = at_0001.database
    tables = database.tables
    name = tables.arrivals.name
    assert migrate(database, "0012") == "0012"
    analytics = at_0001.analytics
    assert analytics is not None
    for n, (source, owner) in enumerate((("web", "alice"), (None, None), ("fair", "bob"))):
        analytics.record_arrival(make_arrival(f"o{n}", hours=n, source=source, owner=owner))
    assert migrate(database) == head_revision() == HEAD
    inspector = inspect(database.engine)
    [index] = [
        i for i in inspector.get_indexes(name, tables.schema) if i["name"] == f"{name}_arrived"
    ]
    assert index["column_names"] == ["arrived_at", "opportunity_id", "source", "owner"]
    analytics.record_arrival(make_arrival("o3", hours=3, source="web", owner="alice"))
    sums = analytics.lead_sums(
        at(hours=-1), at(hours=4), status="won", day=timedelta(hours=8), by="source"
    )
    assert [(s.key, s.leads) for s in sums] == [(None, 1), ("fair", 1), ("web", 2)]


def _index_names(database: SqlDatabase, table: str) -> set[str]:
    with database.read() as connection:  # SQLAlchemy reflects no partial predicate on SQLite
        return set(
            connection.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %(s)s AND tablename = %(t)s",
                {"s": database.tables.schema, "t": table},
            ).scalars()
            if database.dialect == "postgresql"
            else connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE tbl_name = ?", (table,)
            ).scalars()
        )


def test_0015_makes_the_cancellation_and_purge_indexes_partial(at_0001: SqlStorage) -> None:
    """Revision 0015 replaces the scheduled actions' cancellation and purge indexes with
    partial ones over the actions stored before; the cancellations and the purge give the
    same answers, and on SQLite their plans read the new indexes."""
    database = at_0001.database
    table = database.tables.scheduled.name
    assert migrate(database, "0014") == "0014"
    scheduled = at_0001.scheduled
    for n in range(3):
        scheduled.schedule(make_scheduled_action(f"o1-{n}", opportunity_id="o1"))
        scheduled.schedule(make_scheduled_action(f"r2-{n}", opportunity_id="o2", rule_id="r2"))
    [first] = scheduled.claim_due(at(), worker="w", limit=1)
    scheduled.mark_done(first.action_id, worker="w", now=at(minutes=1))
    before = {
        f"{table}_{name}" for name in ("opportunity_state", "rule_state_due", "state_finished")
    }
    after = {f"{table}_{name}" for name in ("opportunity_pending", "rule_pending", "finished")}
    assert before <= _index_names(database, table) and not after & _index_names(database, table)

    assert migrate(database) == head_revision() == HEAD
    names = _index_names(database, table)
    assert after <= names and not before & names
    done = first.action_id
    assert scheduled.cancel_for_opportunity("o1", now=at(minutes=2)) == (
        2 if done.startswith("sa-o1") else 3
    )
    cancelled = scheduled.cancel_for_rule("r2", now=at(minutes=2))
    assert {a.action_id for a in cancelled} == {f"sa-r2-{n}" for n in range(3)} - {done}
    assert scheduled.purge_finished(at(minutes=1), limit=100) == 0  # finished at 1 and 2 min
    assert scheduled.purge_finished(at(minutes=3), limit=100) == 6
    assert scheduled.list() == []
    if database.dialect == "sqlite":
        with database.read() as connection:
            for sql, index in (
                (
                    f"UPDATE {table} SET state = 'cancelled' WHERE opportunity_id = 'o1' "
                    "AND state = 'pending'",
                    "opportunity_pending",
                ),
                (
                    f"UPDATE {table} SET state = 'cancelled' WHERE rule_id = 'r2' "
                    "AND state = 'pending'",
                    "rule_pending",
                ),
                (
                    f"SELECT action_id FROM {table} WHERE state IN ('done', 'cancelled') "
                    "AND finished_at < 0 LIMIT 10",
                    "finished",
                ),
            ):
                plan = " ".join(
                    str(row[-1]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)
                )
                assert f"INDEX {table}_{index}" in plan, plan


def test_0016_drops_the_due_index_and_lists_every_state_in_due_order(at_0001: SqlStorage) -> None:
    """Revision 0016 drops the scheduled actions' due-time index over every row; ``list()``
    of every state still gives them all in due order (then id), across states, and honours
    its limit; on SQLite each state's part reads ``_state_due`` and nothing scans the table."""
    database = at_0001.database
    table = database.tables.scheduled.name
    assert migrate(database, "0015") == "0015"
    assert f"{table}_due" in _index_names(database, table)
    scheduled = at_0001.scheduled
    for n in range(6):
        scheduled.schedule(make_scheduled_action(f"a{n}", due_at=at(minutes=10 - n)))
    claimed = scheduled.claim_due(at(minutes=20), worker="w", limit=3)  # due at 5, 6 and 7 min
    scheduled.mark_done(claimed[0].action_id, worker="w", now=at(minutes=21))

    assert migrate(database) == head_revision() == HEAD
    assert f"{table}_due" not in _index_names(database, table)
    listed = scheduled.list()
    assert [a.action_id for a in listed] == [f"sa-a{n}" for n in range(5, -1, -1)]
    assert [a.state.value for a in listed[:3]] == ["done", "claimed", "claimed"]
    assert [a.action_id for a in scheduled.list(limit=2)] == ["sa-a5", "sa-a4"]
    assert [a.action_id for a in scheduled.list(ScheduledActionState.PENDING, limit=2)] == [
        "sa-a2",
        "sa-a1",
    ]
    if database.dialect == "sqlite":
        store = scheduled
        statement = store._list_statement(None, 10)  # type: ignore[attr-defined]
        sql = str(statement.compile(database.engine, compile_kwargs={"literal_binds": True}))
        with database.read() as connection:
            plan = [str(row[-1]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
        reads = [d for d in plan if table + " " in d + " "]
        assert reads and all(f"INDEX {table}_state_due" in d for d in reads), plan


def _plan(database: SqlDatabase, sql: str, *parameters: object) -> str:
    with database.read() as connection:
        rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, tuple(parameters))
        return " ".join(str(row[-1]) for row in rows)


def test_0017_leaves_keyless_activities_out_of_the_key_index_and_arrivals_in_their_key(
    at_0001: SqlStorage,
) -> None:
    """Revision 0017 (SQLite; nothing on PostgreSQL): the open keys' unique index takes only
    the open activities with a key, the arrivals become a ``WITHOUT ROWID`` table; the rows
    stored before keep their answers, an open key is still held once (and freed by a
    completion), and the reads of a key and of the arrivals use the indexes."""
    database = at_0001.database
    activities, arrivals = database.tables.activities.name, database.tables.arrivals.name
    assert migrate(database, "0016") == "0016"
    store, analytics = at_0001.activities, at_0001.analytics
    assert analytics is not None
    store.add(make_activity("keyed", open_key="k1"))
    store.add(make_activity("plain"))
    for n, source in enumerate(("web", "fair", None)):
        analytics.record_arrival(make_arrival(f"o{n}", hours=n, source=source, owner="alice"))

    assert migrate(database) == head_revision() == HEAD
    with pytest.raises(OpenActivityExistsError):
        store.add(make_activity("again", open_key="k1"))
    store.add(make_activity("plain-2"))  # keyless activities never conflict
    assert {a.activity_id for a in store.list().items} == {"keyed", "plain", "plain-2"}
    [refused] = store.add_many([make_activity("batch", open_key="k1")])
    assert isinstance(refused, OpenActivityExistsError)
    store.complete("keyed", outcome=None, completed_by="alice", completed_at=at(hours=1))
    store.add(make_activity("next", open_key="k1"))  # the completion freed the key
    assert analytics.record_arrival(make_arrival("o1", hours=9)) is False  # the first one wins
    assert [(a.opportunity_id, a.source) for a in analytics.arrivals(at(), at(hours=3))] == [
        ("o0", "web"),
        ("o1", "fair"),
        ("o2", None),
    ]
    assert set(analytics.arrivals_of(["o1", "o9"])) == {"o1"}
    if database.dialect != "sqlite":
        return
    with database.read() as connection:
        table_sql = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = ?", (arrivals,)
        ).scalar_one()
        key_sql = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = ?", (f"{activities}_open_key",)
        ).scalar_one()
    assert "WITHOUT ROWID" in table_sql
    assert "open_key IS NOT NULL" in key_sql
    assert {f"{arrivals}_{n}" for n in ("arrived", "source_arrived", "owner_arrived")} <= (
        _index_names(database, arrivals)
    )
    key_reads = (  # as the stores read a key (add, add_many): they imply the NOT NULL
        f"SELECT activity_id FROM {activities} WHERE open_key = ? "
        "AND completed_date IS NULL AND cancelled_at IS NULL LIMIT 1",
        f"SELECT open_key FROM {activities} WHERE open_key IN (SELECT value FROM json_each(?)) "
        "AND completed_date IS NULL AND cancelled_at IS NULL",
    )
    for sql in key_reads:
        assert f"INDEX {activities}_open_key" in _plan(database, sql, "k1"), sql
    by_key = f"SELECT source FROM {arrivals} WHERE opportunity_id = ?"
    assert "PRIMARY KEY" in _plan(database, by_key, "o1")
