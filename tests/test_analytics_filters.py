"""Every figure under the filters (rep, team, lead source, automation), on the hand-computed
dataset of :mod:`tests.test_analytics_figures` and on every backend.

Teams: alice and carol are ``east``, bob is ``west``, dave is in none. A lead's automation is
its first contact's: o1, o2 and o4 were first contacted by ``r-web``'s activities, o3 by
``r-seq``'s, o5 not at all.
"""

from __future__ import annotations

import pytest

from leadflow import InvalidInputError
from leadflow.runtime.analytics import Analytics

from .test_analytics_figures import AS_OF, END, START, analytics

__all__ = ["analytics"]


def _leads(analytics: Analytics, **filters: list[str]) -> tuple[int, int, float | None]:
    overall = analytics.speed_to_lead(START, END, **filters).overall
    return overall.leads, overall.contacted, overall.p50_seconds


def test_speed_to_lead_by_team_source_and_automation(analytics: Analytics) -> None:
    assert _leads(analytics, teams=["east"]) == (3, 3, 82800)  # o1, o3, o4 (carol's contact)
    assert _leads(analytics, teams=["west"]) == (2, 1, 1800)  # o2, o5
    assert _leads(analytics, teams=["nowhere"]) == (0, 0, None)
    assert _leads(analytics, teams=["east"], reps=["bob"]) == (0, 0, None)  # both must hold
    assert _leads(analytics, teams=["east", "west"], reps=["bob"]) == (2, 1, 1800)
    assert _leads(analytics, automations=["r-seq"]) == (1, 1, 82800)
    assert _leads(analytics, automations=["r-web"], sources=["phone"]) == (1, 1, 244800)
    assert _leads(analytics, sources=["(none)"]) == (1, 0, None)  # o5: no source


def test_lead_sources_by_automation_and_team(analytics: Analytics) -> None:
    web = analytics.sources(START, END, automations=["r-web"])
    rows = [(r.source, r.leads, r.won) for r in web]
    assert rows == [("phone", 1, 0), ("web", 2, 1)]
    east = [(r.source, r.leads, r.won) for r in analytics.sources(START, END, teams=["east"])]
    assert east == [("phone", 2, 1), ("web", 1, 1)]


def _board(analytics: Analytics, **filters: list[str]) -> list[tuple[str, int, int, int]]:
    rows = analytics.leaderboard(START, END, as_of=AS_OF, **filters)
    return [(r.rep, r.completed, r.overdue_now, r.wins) for r in rows]


def test_leaderboard_by_team_source_and_automation(analytics: Analytics) -> None:
    assert _board(analytics, teams=["east"]) == [("alice", 3, 0, 2), ("carol", 0, 0, 0)]
    assert _board(analytics, teams=["west"]) == [("bob", 2, 1, 0)]
    # Completions of phone leads: c3 (o3, alice); c4 came after the period.
    phone = _board(analytics, sources=["phone"])
    assert [row for row in phone if row[0] != "bob"] == [("alice", 1, 0, 1), ("carol", 0, 0, 0)]
    # r-web's completions: c1 (alice), c2 (bob), c6 (dave); the open activities are manual.
    assert _board(analytics, automations=["r-web"]) == [
        ("alice", 1, 0, 1),
        ("bob", 1, 0, 0),
        ("dave", 1, 0, 0),
        ("carol", 0, 0, 0),
    ]


def _funnel(analytics: Analytics, **filters: list[str]) -> list[int]:
    stages = ("new", "contacted", "qualified", "won")
    return analytics.funnel(START, END, stages=stages, **filters).reached


def test_funnel_by_team_source_and_automation(analytics: Analytics) -> None:
    assert _funnel(analytics) == [3, 2, 1, 2]
    assert _funnel(analytics, teams=["east"]) == [2, 1, 1, 2]  # o1, o3
    assert _funnel(analytics, reps=["bob"]) == [1, 1, 0, 0]  # o2
    assert _funnel(analytics, sources=["web"]) == [2, 2, 0, 1]  # o1, o2
    assert _funnel(analytics, automations=["r-seq"]) == [1, 0, 1, 1]  # o3, touched by c3
    assert _funnel(analytics, automations=["(manual)"]) == [2, 2, 0, 1]  # o1 (f1), o2 (n2)


def test_automation_by_source_and_team(analytics: Analytics) -> None:
    phone = analytics.automation(START, END, sources=["phone"])
    assert [(r.automation_id, r.completed, r.wins) for r in phone] == [("r-seq", 1, 1)]
    west = analytics.automation(START, END, teams=["west"])
    assert [(r.automation_id, r.completed, r.wins) for r in west] == [
        ("(manual)", 1, 0),
        ("r-web", 1, 0),
    ]
    only = analytics.automation(START, END, automations=["r-web"])
    assert [r.automation_id for r in only] == ["r-web"]


def test_the_dashboard_takes_the_filters(analytics: Analytics) -> None:
    dashboard = analytics.dashboard(START, END, as_of=AS_OF, teams=["west"])
    assert dashboard.speed_to_lead.overall.leads == 2
    assert [r.rep for r in dashboard.leaderboard] == ["bob"]
    assert dashboard.funnel is not None and dashboard.funnel.reached[0] == 1


@pytest.mark.parametrize("field", ["reps", "teams", "sources", "automations"])
@pytest.mark.parametrize("value", ["alice", [1], ["x"] * 1001])
def test_bad_filters_are_refused_naming_the_field(
    analytics: Analytics, field: str, value: object
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        analytics.speed_to_lead(START, END, **{field: value})  # type: ignore[arg-type]
    assert caught.value.field == field
