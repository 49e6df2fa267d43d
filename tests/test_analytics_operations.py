"""Role-checked analytics (``Operations.analytics``): sales see their own rows, dispatchers
and admins the team's; periods and names are checked."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from leadflow import (
    InvalidInputError,
    InvalidStateError,
    LeadFlow,
    ManualClock,
    Operations,
    PermissionDeniedError,
    Principal,
    Role,
)
from leadflow.adapters import StaticTeamDirectory
from leadflow.stores.memory import memory_storage

from .test_analytics_figures import AS_OF, END, START, TEAMS, load

ADMIN = Principal("boss", Role.ADMIN)
DISPATCHER = Principal("desk", Role.DISPATCHER)
BOB = Principal("bob", Role.SALES)


@pytest.fixture
def ops() -> Operations:
    storage = memory_storage()
    load(storage)
    return Operations(LeadFlow.in_memory(clock=ManualClock(AS_OF), storage=storage))


def test_the_team_sees_every_rep(ops: Operations) -> None:
    for principal in (ADMIN, DISPATCHER):
        rows = ops.analytics.leaderboard(principal, START, END)
        assert [r.rep for r in rows] == ["alice", "bob", "dave", "carol"]
        speed = ops.analytics.speed_to_lead(principal, START, END, reps=["alice"])
        assert speed.overall.leads == 2
        assert ops.analytics.funnel(principal, START, END).reached[0] == 3


def test_sales_see_their_own_rows_only(ops: Operations) -> None:
    rows = ops.analytics.leaderboard(BOB, START, END)
    assert [(r.rep, r.completed, r.overdue_now) for r in rows] == [("bob", 2, 1)]
    speed = ops.analytics.speed_to_lead(BOB, START, END)
    assert (speed.overall.leads, list(speed.by_rep)) == (2, ["bob"])
    assert ops.analytics.speed_to_lead(BOB, START, END, reps=["bob"]) == speed
    assert [r.source for r in ops.analytics.sources(BOB, START, END)] == ["(none)", "web"]
    assert [r.automation_id for r in ops.analytics.automation(BOB, START, END)] == [
        "(manual)",
        "r-web",
    ]
    with pytest.raises(PermissionDeniedError):
        ops.analytics.speed_to_lead(BOB, START, END, reps=["alice"])
    with pytest.raises(PermissionDeniedError):
        ops.analytics.funnel(BOB, START, END)
    dashboard = ops.analytics.dashboard(BOB, START, END)
    assert dashboard.funnel is None and [r.rep for r in dashboard.leaderboard] == ["bob"]


def test_teams_come_from_the_flows_team_directory(ops: Operations) -> None:
    # Without a directory that tells teams, a teams filter takes no one.
    assert ops.analytics.speed_to_lead(ADMIN, START, END, teams=["east"]).overall.leads == 0
    storage = memory_storage()
    load(storage)
    flow = LeadFlow.in_memory(clock=ManualClock(AS_OF), storage=storage)
    directory = StaticTeamDirectory(["alice", "bob", "carol"], teams=TEAMS)
    teamed = LeadFlow(storage, replace(flow.integrations, team=directory), clock=ManualClock(AS_OF))
    ops = Operations(teamed)
    east = ops.analytics.leaderboard(DISPATCHER, START, END, teams=["east"])
    assert [r.rep for r in east] == ["alice", "carol"]
    funnel = ops.analytics.funnel(ADMIN, START, END, teams=["west"], stages=["new", "lost"])
    assert funnel.reached == [1, 1]
    # Sales keep to their own rows under any filter: bob is not east.
    assert ops.analytics.leaderboard(BOB, START, END, teams=["east"]) == []
    assert [r.rep for r in ops.analytics.leaderboard(BOB, START, END, teams=["west"])] == ["bob"]
    assert ops.analytics.automation(BOB, START, END, automations=["r-web"])[0].completed == 1
    with pytest.raises(PermissionDeniedError):
        ops.analytics.leaderboard(BOB, START, END, teams=["east"], reps=["alice"])


def test_the_dashboard_holds_every_figure(ops: Operations) -> None:
    dashboard = ops.analytics.dashboard(ADMIN, START, END, rank_by="wins")
    assert dashboard.as_of == AS_OF
    assert dashboard.leaderboard[0].rep == "alice"
    assert dashboard.funnel is not None and dashboard.funnel.reached == [3, 2, 1, 0, 2]
    assert dashboard.speed_to_lead.overall.p50_seconds == 1800
    document = dashboard.to_document()
    assert set(document) == {
        "start",
        "end",
        "asOf",
        "speedToLead",
        "sources",
        "leaderboard",
        "funnel",
        "automation",
        "trend",
    }


@pytest.mark.parametrize(
    ("start", "end", "options"),
    [
        (END, START, {}),
        (START, START + timedelta(days=401), {}),
        (START.replace(tzinfo=None), END, {}),
        (START, END, {"rank_by": "charm"}),
        (START, END, {"reps": "bob"}),
        (START, END, {"teams": [3]}),
        (START, END, {"automations": "r-web"}),
        (START, END, {"sources": None, "teams": ["x"] * 1001}),
    ],
)
def test_bad_periods_and_options_are_refused(
    ops: Operations, start: object, end: object, options: dict[str, object]
) -> None:
    with pytest.raises(InvalidInputError):
        ops.analytics.leaderboard(ADMIN, start, end, **options)  # type: ignore[arg-type]


def test_a_storage_without_facts_has_no_analytics() -> None:
    storage = replace(memory_storage(), analytics=None)
    ops = Operations(LeadFlow.in_memory(clock=ManualClock(AS_OF), storage=storage))
    with pytest.raises(InvalidStateError):
        ops.analytics.dashboard(ADMIN, START, END)


def test_automation_knows_the_flows_rules_and_sequences() -> None:
    from .test_analytics_automation import load_automation

    storage = memory_storage()
    load_automation(storage)
    ops = Operations(LeadFlow.in_memory(clock=ManualClock(AS_OF), storage=storage))
    rows = {r.automation_id: r for r in ops.analytics.automation(DISPATCHER, START, END)}
    assert (rows["r-idle"].kind, rows["r-idle"].no_effect) == ("rule", True)
    assert (rows["r-seq"].kind, rows["r-seq"].enrolled) == ("sequence", 3)
    # Bob sees the activities assigned to him: six of r-idle's twelve, too few to judge.
    mine = {r.automation_id: r for r in ops.analytics.automation(BOB, START, END)}
    assert (mine["r-idle"].created, mine["r-idle"].no_effect) == (6, False)
