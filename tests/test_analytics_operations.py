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
from leadflow.stores.memory import memory_storage

from .test_analytics_figures import AS_OF, END, START, load

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
    }


@pytest.mark.parametrize(
    ("start", "end", "options"),
    [
        (END, START, {}),
        (START, START + timedelta(days=401), {}),
        (START.replace(tzinfo=None), END, {}),
        (START, END, {"rank_by": "charm"}),
        (START, END, {"reps": "bob"}),
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
