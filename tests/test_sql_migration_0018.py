"""Revision 0018 (SQLite only; nothing runs on PostgreSQL) on a database made by 0017 with data
in it: the activities' opportunity/type and opportunity/assignee indexes dropped, their rule
index and the arrivals' source and owner indexes partial on the rows that have the value. The
rows stored before and after keep their answers; on SQLite the reads take the indexes left
(the opportunity's range of ``_opportunity_created``, the partial ones), on PostgreSQL every
index is still there. (The migrated schema against the tables, both engines:
``tests/test_store_sql.py``.)"""

from __future__ import annotations

from leadflow import ActivityFilter
from leadflow.models import Activity
from leadflow.stores.sql import SqlStorage, head_revision, migrate
from leadflow.testing.contracts import at, make_activity, make_arrival

from .test_sql_migrations import HEAD, _index_names, _plan, at_0001

__all__ = ["at_0001"]  # the fixture, shared with the other revisions' tests

_DROPPED = ("opportunity_type",)


def _activity(activity_id: str, hours: int, rule: str | None, **fields: object) -> Activity:
    metadata = {"automationRuleId": rule} if rule is not None else {}
    return make_activity(activity_id, created_at=at(hours=hours), metadata=metadata, **fields)


def test_0018_drops_two_activity_indexes_and_leaves_rows_without_a_value_out(
    at_0001: SqlStorage,
) -> None:
    database = at_0001.database
    activities, arrivals = database.tables.activities.name, database.tables.arrivals.name
    assert migrate(database, "0017") == "0017"
    store, analytics = at_0001.activities, at_0001.analytics
    assert analytics is not None
    before = [
        _activity("a1", 1, "r1", opportunity_id="o1", assigned_to="alice"),
        _activity("a2", 2, None, opportunity_id="o1", assigned_to="bob", activity_type="email"),
        _activity("a3", 3, "r2", opportunity_id="o2", assigned_to="alice"),
    ]
    for activity in before:
        store.add(activity)
    for n, (source, owner) in enumerate((("web", "alice"), (None, None), ("fair", None))):
        analytics.record_arrival(make_arrival(f"o{n}", hours=n, source=source, owner=owner))

    assert migrate(database) == head_revision() == HEAD
    store.add(_activity("a4", 4, "r1", opportunity_id="o1", assigned_to="alice"))
    store.add(_activity("a5", 5, None, opportunity_id="o1", assigned_to="alice"))
    analytics.record_arrival(make_arrival("o3", hours=3, source="web", owner=None))

    mine = store.for_opportunity("o1", assigned_to="alice")
    assert [a.activity_id for a in mine] == ["a1", "a4", "a5"]
    assert [a.activity_id for a in store.timeline("o1", assigned_to="bob")] == ["a2"]
    both = ActivityFilter(opportunity_id="o1", assigned_to="alice")
    assert [a.activity_id for a in store.list(both).items] == ["a1", "a4", "a5"]
    stats = store.statistics(ActivityFilter(opportunity_id="o1"), as_of=at(hours=9))
    assert (stats.total, stats.by_type) == (4, {"call": 3, "email": 1})
    ruled = store.list(ActivityFilter(automation_rule_id="r1"))
    assert [a.activity_id for a in ruled.items] == ["a1", "a4"]
    period = (at(), at(hours=9))
    assert [a.opportunity_id for a in analytics.arrivals(*period, sources=["web"])] == ["o0", "o3"]
    assert [a.opportunity_id for a in analytics.arrivals(*period, owners=["alice"])] == ["o0"]
    assert [a.opportunity_id for a in analytics.arrivals(*period)] == ["o0", "o1", "o2", "o3"]

    names = _index_names(database, activities)
    if database.dialect != "sqlite":
        assert {f"{activities}_{name}" for name in _DROPPED} <= names
        return
    assert not {f"{activities}_{name}" for name in _DROPPED} & names
    with database.read() as connection:
        definitions = dict(
            connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            ).all()
        )
    assert "automation_rule_id IS NOT NULL" in definitions[f"{activities}_rule_created"]
    assert "source IS NOT NULL" in definitions[f"{arrivals}_source_arrived"]
    assert "owner IS NOT NULL" in definitions[f"{arrivals}_owner_arrived"]
    reads = (
        (  # one rep's part of an opportunity, in creation order (its index kept)
            f"SELECT activity_id FROM {activities} WHERE opportunity_id = ? AND assigned_to = ? "
            "ORDER BY created_at, activity_id",
            ("o1", "alice"),
            f"{activities}_opportunity_assignee",
        ),
        (  # one opportunity's activities by type (statistics): the opportunity's range of
            # either opportunity-led index (SQLite picks by the data; both are a few rows)
            f"SELECT activity_type, count(*) FROM {activities} WHERE opportunity_id = ? "
            "GROUP BY activity_type",
            ("o1",),
            (f"{activities}_opportunity_created", f"{activities}_opportunity_assignee"),
        ),
        (
            f"SELECT activity_id FROM {activities} WHERE automation_rule_id = ? "
            "ORDER BY created_at, activity_id",
            ("r1",),
            f"{activities}_rule_created",
        ),
        (
            f"SELECT opportunity_id FROM {arrivals} WHERE source IN (?) AND arrived_at >= ?",
            ("web", 0),
            f"{arrivals}_source_arrived",
        ),
        (
            f"SELECT opportunity_id FROM {arrivals} WHERE owner IN (?) AND arrived_at >= ?",
            ("alice", 0),
            f"{arrivals}_owner_arrived",
        ),
    )
    for sql, parameters, index in reads:
        plan = _plan(database, sql, *parameters)
        accepted = (index,) if isinstance(index, str) else index
        assert any(f"INDEX {name} " in plan + " " for name in accepted), (sql, plan)
        assert "SCAN" not in plan, (sql, plan)
