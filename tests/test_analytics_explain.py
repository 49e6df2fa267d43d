"""The analytics' queries use their indexes: every SELECT the figures send (the dashboard,
unfiltered and under every filter) is explained, and none reads an analytics table (lead
arrivals, status changes, completions, first contacts) whole.

SQLite: ``EXPLAIN QUERY PLAN``, where a whole-table (or whole-index) read is a ``SCAN <table>``
line (``SCAN`` of a subquery's rows is fine). PostgreSQL: ``EXPLAIN`` with sequential scans
made as dear as the planner allows (``enable_seqscan = off``: on a small table the planner
would rightly prefer one), where such a read is ``Seq Scan on <table>``, or an ``Index Scan`` /
``Index Only Scan`` without any ``Index Cond`` (the whole index). The rules' and sequences'
tables are read whole by design (a flow's configuration) and are left out. The activity table
is read through ``ActivityRepository.statistics`` (overdue now, the activities each automation
created): on SQLite none of those reads is a ``SCAN`` of it either (its mean time to first
completion once read the whole ``(opportunity_id, activity_type)`` index to group in its
order); PostgreSQL's plans on a table this small say nothing of its plans at scale (with
sequential scans off it reads whichever small index costs least), so they are not judged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from leadflow import WorkingCalendar
from leadflow.runtime.analytics import Analytics
from leadflow.stores.sql import SqlStorage
from leadflow.testing.contracts import make_completion

from .sql_support import fresh_storage, on_postgres
from .test_analytics_figures import AS_OF, END, START, TEAMS, load

WATCHED = ("lead_arrivals", "status_changes", "completions", "lead_contacts", "completion_days")


def _statements(storage: SqlStorage) -> list[tuple[str, Any]]:
    """Every SELECT the figures send, under no filter and under each."""
    seen: list[tuple[str, Any]] = []
    engine = storage.database.engine

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    analytics = Analytics(
        storage.analytics,  # type: ignore[arg-type]
        storage.activities,
        WorkingCalendar(),
        teams=TEAMS,
        rules=storage.rules,
        sequences=storage.sequences,
        enrollments=storage.enrollments,
    )
    event.listen(engine, "before_cursor_execute", grab)
    try:
        for filters in (
            {},
            {"reps": ["alice", "(none)"]},
            {"teams": ["east"]},
            {"sources": ["web"]},
            {"automations": ["r-web", "(manual)"]},
        ):
            analytics.dashboard(START, END, as_of=AS_OF, **filters)  # type: ignore[arg-type]
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    return seen


def _watched(name: str) -> bool:
    return any(name.endswith(table) for table in WATCHED)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=on_postgres)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    kind = "sqlite-file" if request.param == "sqlite" else "postgres"
    with fresh_storage(kind, tmp_path) as made:
        load(made)
        yield made


def test_no_figure_reads_an_analytics_table_whole(
    storage: SqlStorage,
) -> None:
    statements = _statements(storage)
    tables = {t for s, _ in statements for t in re.findall(r"\b(\w+)\b", s) if _watched(t)}
    assert tables == {
        "leadflow_lead_arrivals",
        "leadflow_status_changes",
        "leadflow_completions",
        "leadflow_lead_contacts",
        "leadflow_completion_days",
    }
    whole: list[str] = []
    with storage.database.engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in statements:
            if postgres:
                plan = [row[0] for row in connection.exec_driver_sql(
                    "EXPLAIN " + statement, parameters
                )]  # fmt: skip
                whole += _pg_whole_reads(plan)
            else:
                plan = [row[-1] for row in connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters
                )]  # fmt: skip
                whole += [
                    line
                    for line in plan
                    if (found := re.match(r"SCAN (\w+)", line)) and _watched(found.group(1))
                ]
    assert whole == []


def _pg_whole_reads(plan: list[str]) -> list[str]:
    found = []
    for n, line in enumerate(plan):
        seq = re.search(r"Seq Scan on (\w+)", line)
        if seq and _watched(seq.group(1)):
            found.append(line.strip())
        index = re.search(r"Index (?:Only )?Scan(?: Backward)? using \w+ on (\w+)", line)
        if index and _watched(index.group(1)):
            depth = len(line) - len(line.lstrip())
            details = []
            for more in plan[n + 1 :]:
                if len(more) - len(more.lstrip()) <= depth or "->" in more:
                    break
                details.append(more)
            if not any("Index Cond" in d for d in details):
                found.append(line.strip())
    return found


def test_activity_statistics_read_their_filter_range_on_sqlite(tmp_path: Path) -> None:
    with fresh_storage("sqlite-file", tmp_path) as storage:
        load(storage)
        statements = [
            (statement, parameters)
            for statement, parameters in _statements(storage)
            if "leadflow_activities" in statement
        ]
        # overdue now, and the activities each automation created (two statements each).
        assert len(statements) >= 4
        with storage.database.engine.connect() as connection:
            scans = [
                line
                for statement, parameters in statements
                for *_, line in connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters
                )
                if line.startswith("SCAN leadflow_activities")
            ]
    assert scans == []


def test_completion_sums_read_indexes_alone_on_sqlite(tmp_path: Path) -> None:
    """The completions summed per rep and per automation: the counts of the period's whole
    days from a range of the day sums' primary key (revision 0012), its ragged ends from their
    range of the covering ``(completed_at, ...)`` index; each rep's distinct opportunities
    and each automation's median from that key's range of the period in its ``(key,
    completed_at, ...)`` index (revision 0010); over a period this long against the store's
    history, each rep's median from the rep's ``(assigned_to, completed_at - created_at,
    ...)`` index and each automation's distinct opportunities from its ``(rule_id,
    opportunity_id, completed_at)`` one (revision 0014; the store's first and last
    completion from the ``completed_at`` index); no row of the table read; nothing scans."""
    with fresh_storage("sqlite-file", tmp_path) as storage:
        load(storage)
        store = storage.analytics
        assert store is not None
        seen: list[tuple[str, Any]] = []

        def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            seen.append((statement, parameters))

        engine = storage.database.engine
        event.listen(engine, "before_cursor_execute", grab)
        try:
            by_rep = store.completion_groups(START, END, by="assigned_to")
            by_rule = store.completion_groups(START, END, by="rule_id", keys=["r-web", None])
        finally:
            event.remove(engine, "before_cursor_execute", grab)
        assert any(g.median_seconds_to_complete is not None for g in [*by_rep, *by_rule])
        with engine.connect() as connection:
            plans = [
                [line for *_, line in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + s, p)]
                for s, p in seen
            ]
    searches = [line for plan in plans for line in plan if "leadflow_completions" in line]
    assert searches and all(line.startswith("SEARCH") for line in searches)
    assert all("COVERING INDEX" in line for line in searches)
    used = {found.group(1) for line in searches if (found := re.search(r"INDEX (\w+)", line))}
    assert used == {
        "leadflow_completions_assignee_times",
        "leadflow_completions_rule_times",
        "leadflow_completions_completed_sums",  # the period's ragged ends
        "leadflow_completions_assignee_spent",  # the medians per rep
        "leadflow_completions_rule_opportunities",  # the distinct opportunities per automation
        "leadflow_completions_completed",  # the store's first and last completion
    }
    days = [line for plan in plans for line in plan if "leadflow_completion_days" in line]
    assert days and all(
        line.startswith("SEARCH leadflow_completion_days USING PRIMARY KEY (kind=? AND day>? AND")
        for line in days
    )


def test_the_day_sums_read_their_range(storage: SqlStorage) -> None:
    """A period's whole days read a range of ``completion_days``' primary key (by grouping and
    day) and nothing else of it, its counts per key and per week alike: SQLite's ``SEARCH
    ... USING PRIMARY KEY (kind=? AND day>? AND day<?)``, PostgreSQL's index scan of the
    primary key with both bounds in its ``Index Cond`` (sequential scans off)."""
    store = storage.analytics
    assert store is not None
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "completion_days" in statement:
            seen.append((statement, parameters))

    engine = storage.database.engine
    start = START.replace(hour=0)
    event.listen(engine, "before_cursor_execute", grab)
    try:
        store.completion_groups(start, END, by="assigned_to", keys=["alice", None])
        store.completion_groups(start, END, by="rule_id")
        store.completion_buckets(start, END, width=timedelta(days=7))
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    assert len(seen) == 3
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
            for statement, parameters in seen:
                plan = "\n".join(
                    row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)
                )
                assert "Index Scan using leadflow_completion_days_pkey" in plan, plan
                assert re.search(r"Index Cond: .*kind.*day >= .*day < ", plan), plan
                assert "Seq Scan" not in plan, plan
        else:
            for statement, parameters in seen:
                plan = [
                    row[-1]
                    for row in connection.exec_driver_sql(
                        "EXPLAIN QUERY PLAN " + statement, parameters
                    )
                ]
                days = [line for line in plan if "completion_days" in line]
                assert days == [
                    "SEARCH leadflow_completion_days USING PRIMARY KEY (kind=? AND day>? AND day<?)"
                ], plan


def _median_plans(storage: SqlStorage, start: Any, end: Any) -> tuple[list[str], list[Any]]:
    """The plan lines of the median-per-rep statements (``ORDER BY ... LIMIT ... OFFSET``) of
    ``completion_groups`` per rep over ``[start, end)``, and its groups."""
    store = storage.analytics
    assert store is not None
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "OFFSET" in statement:
            seen.append((statement, parameters))

    engine = storage.database.engine
    event.listen(engine, "before_cursor_execute", grab)
    try:
        groups = store.completion_groups(start, end, by="assigned_to", opportunities=False)
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    assert seen
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.exec_driver_sql("SET enable_seqscan = off")
        lines = [
            str(row[0] if postgres else row[-1])
            for statement, parameters in seen
            for row in connection.exec_driver_sql(
                ("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + statement, parameters
            )
        ]
    return lines, groups


def test_the_median_per_rep_seeks_the_middle_of_its_time_order(storage: SqlStorage) -> None:
    """Each rep's median over a period that is most of the store's history walks the rep's
    range of the ``(assigned_to, completed_at - created_at, ...)`` index (revision 0014) in
    order: no sort (SQLite: no temporary B-tree; PostgreSQL: no Sort node, the index's
    ``Index Cond`` on the rep). Over a short period of a long history it sorts the period's
    completions of the rep instead (SQLite, from their range of the ``(assigned_to,
    completed_at, ...)`` index). Both answer the same: the nearest-rank median."""
    long, by_rep = _median_plans(storage, START - timedelta(days=2), END + timedelta(days=2))
    text = "\n".join(long)
    assert "assignee_spent" in text, text
    if storage.database.dialect == "postgresql":
        assert "Sort" not in text and "Seq Scan" not in text, text
        assert re.search(r"Index Cond: .*assigned_to", text), text
    else:
        assert all("TEMP B-TREE" not in line for line in long), long
        assert all(
            line.startswith(
                "SEARCH leadflow_completions USING COVERING INDEX "
                "leadflow_completions_assignee_spent (assigned_to=?"
            )
            for line in long
        ), long
    alice = {g.key: g for g in by_rep}["alice"]
    # alice's completions: c1 (3 min), c3 (23 h), f1 (1 h): the 2nd of 3 is 1 h.
    assert alice.median_seconds_to_complete == 3600.0
    # A completion a year on makes a week short against the store's history.
    store = storage.analytics
    assert store is not None
    store.record_completion(
        make_completion("late", "o9", hours=24 * 400, assigned_to="alice", created_at=END)
    )
    short, by_rep = _median_plans(storage, START, START + timedelta(days=1, hours=2))
    if storage.database.dialect == "sqlite":
        assert any("leadflow_completions_assignee_times" in line for line in short), short
        assert not any("assignee_spent" in line for line in short), short
    alice = {g.key: g for g in by_rep}["alice"]
    assert alice.median_seconds_to_complete == 3600.0  # the same three completions
    short, by_rep = _median_plans(storage, START, START + timedelta(hours=6))
    assert {g.key: g for g in by_rep}["alice"].median_seconds_to_complete == 180.0  # c1


def test_won_touches_probe_each_won_opportunity(storage: SqlStorage) -> None:
    """The won opportunities' conversions and last touches: each won opportunity's range of
    the ``(opportunity_id, completed_at, rule_id, activity_id)`` index (revision 0014), no
    row of the table read, the period's other completions not read (SQLite). PostgreSQL: a
    ``LATERAL`` probe per won opportunity, not a join hashing the period's completions (at
    1,000,000 completions its plan probes that index: docs/benchmarks.md)."""
    store = storage.analytics
    assert store is not None
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    engine = storage.database.engine
    event.listen(engine, "before_cursor_execute", grab)
    try:
        touches = store.won_touches(START, END, "won")
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    # o1 (won on day 2): c1 by r-web, f1 by hand, the last before the win; o3: c3 by r-seq.
    assert [(t.key, t.converted, t.wins) for t in touches] == [
        (None, 1, 1),
        ("r-seq", 1, 1),
        ("r-web", 1, 0),
    ]
    assert len(seen) == 2
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in seen:
            plan = [
                str(row[0] if postgres else row[-1])
                for row in connection.exec_driver_sql(
                    ("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + statement, parameters
                )
            ]
            text = "\n".join(plan)
            if postgres:  # which index: a matter of the table's size (see the top)
                assert "Hash Join" not in text and "Seq Scan" not in text, text
            else:
                reads = [line for line in plan if "leadflow_completions" in line]
                assert reads and all(
                    line.startswith(
                        "SEARCH leadflow_completions USING COVERING INDEX "
                        "leadflow_completions_opportunity_touches (opportunity_id=?"
                    )
                    for line in reads
                ), plan


def test_distinct_opportunities_per_automation_walk_in_opportunity_order_on_sqlite(
    tmp_path: Path,
) -> None:
    """Each automation's distinct opportunities over a period that is not short against the
    store's history: its range of the ``(rule_id, opportunity_id, completed_at)`` index
    (revision 0014) grouped in that order (no temporary B-tree); over a short one, its range
    of the period in the ``(rule_id, completed_at, ...)`` index. The same counts."""
    with fresh_storage("sqlite-file", tmp_path) as storage:
        load(storage)
        store = storage.analytics
        assert store is not None
        engine = storage.database.engine

        def counted(start: Any, end: Any) -> tuple[dict[str | None, int], list[str]]:
            seen: list[tuple[str, Any]] = []

            def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
                if "opportunity_id" in statement:
                    seen.append((statement, parameters))

            event.listen(engine, "before_cursor_execute", grab)
            try:
                groups = store.completion_groups(start, end, by="rule_id", median=False)
            finally:
                event.remove(engine, "before_cursor_execute", grab)
            with engine.connect() as connection:
                plan = [
                    line
                    for statement, parameters in seen
                    for *_, line in connection.exec_driver_sql(
                        "EXPLAIN QUERY PLAN " + statement, parameters
                    )
                ]
            return {g.key: g.opportunities for g in groups}, plan

        # r-web: c1 (o1), c2 (o2), c4 (o4; day 7), c6 (o6); r-seq: c3 (o3); by hand: n2, f1.
        found, plan = counted(START - timedelta(days=2), END + timedelta(days=2))
        assert found == {None: 2, "r-seq": 1, "r-web": 4}
        reads = [line for line in plan if "leadflow_completions" in line]
        assert reads and all(
            line.startswith(
                "SEARCH leadflow_completions USING COVERING INDEX "
                "leadflow_completions_rule_opportunities (rule_id"
            )
            for line in reads
        ), plan
        assert not any("TEMP B-TREE" in line for line in plan), plan
        store.record_completion(  # a completion a year on: a week is short now
            make_completion("late", "o9", hours=24 * 400, rule_id="r-web")
        )
        found, plan = counted(START - timedelta(days=2), END + timedelta(days=2))
        assert found == {None: 2, "r-seq": 1, "r-web": 4}
        assert all("rule_opportunities" not in line for line in plan), plan
        assert any("leadflow_completions_rule_times" in line for line in plan), plan


def test_lead_queries_read_the_period_s_arrivals_from_their_index_alone(
    storage: SqlStorage,
) -> None:
    """Every lead query (speed to lead, sources, the leaderboard's leads, the trend's, the
    late contacts) reads the period's arrivals as a range of ``lead_arrivals_arrived``, which
    holds their source and owner (revision 0013): no row of the table. SQLite: ``SEARCH ...
    USING COVERING INDEX``; PostgreSQL: a scan of that index with the period in its ``Index
    Cond`` (sequential and bitmap scans off: on a table this small the planner would rightly
    prefer them), index-only once a vacuum has set the table's visibility map, which another
    session's open transaction can hold back: so not asserted here."""
    store = storage.analytics
    assert store is not None
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "lead_arrivals" in statement:
            seen.append((statement, parameters))

    engine = storage.database.engine
    day = timedelta(hours=8)
    event.listen(engine, "before_cursor_execute", grab)
    try:
        for by in (None, "rep", "source"):
            store.lead_sums(START, END, status="won", day=day, by=by)
        store.late_contacts(START, END, day=day)
        store.lead_summary(
            START, END, status="won", day=day, groupings=[None, "rep", "source"], late=True
        )
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    assert len(seen) == 5
    name = storage.database.tables.arrivals.name
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
            connection.exec_driver_sql("SET enable_bitmapscan = off")
            for statement, parameters in seen:
                plan = [
                    row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)
                ]
                reads = [line.strip() for line in plan if f" on {name}" in line]
                assert reads and all(
                    re.match(rf"(->  )?Index (Only )?Scan using {name}_arrived on {name}", line)
                    for line in reads
                ), plan
                assert any(re.search(r"Index Cond: .*arrived_at >= .*arrived_at < ", line)
                           for line in plan), plan  # fmt: skip
        else:
            for statement, parameters in seen:
                plan = [
                    row[-1]
                    for row in connection.exec_driver_sql(
                        "EXPLAIN QUERY PLAN " + statement, parameters
                    )
                ]
                assert [line for line in plan if name in line] == [
                    f"SEARCH {name} USING COVERING INDEX {name}_arrived "
                    "(arrived_at>? AND arrived_at<?)"
                ], plan
