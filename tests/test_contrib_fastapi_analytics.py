"""The analytics routes over HTTP: the figures of the hand-computed dataset as JSON, each role
seeing what its policy allows, bad periods answered 422."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from leadflow import LeadFlow, ManualClock, Principal, Role
from leadflow.contrib.fastapi import router
from leadflow.stores.memory import memory_storage

from .test_analytics_figures import AS_OF, END, START, load
from .test_contrib_fastapi import as_, principal_from_headers

ADMIN = Principal("boss", Role.ADMIN)
BOB = Principal("bob", Role.SALES)
PERIOD = {"start": START.isoformat(), "end": END.isoformat()}
ANALYTICS_ENDPOINTS = {
    ("GET", f"/api/analytics/{path}")
    for path in (
        "speed-to-lead",
        "sources",
        "leaderboard",
        "funnel",
        "automation",
        "trend",
        "dashboard",
    )
}
ANALYTICS_ROUTES = {
    f"analytics_{name}"
    for name in (
        "speed_to_lead",
        "sources",
        "leaderboard",
        "funnel",
        "automation",
        "trend",
        "dashboard",
    )
}


@pytest.fixture(scope="module")
def client() -> TestClient:
    storage = memory_storage()
    load(storage)
    app = FastAPI()
    flow = LeadFlow.in_memory(clock=ManualClock(AS_OF), storage=storage)
    app.include_router(router(flow, principal=principal_from_headers))
    return TestClient(app)


def test_speed_to_lead_and_sources(client: TestClient) -> None:
    answer = client.get("/api/analytics/speed-to-lead", params=PERIOD, headers=as_(ADMIN))
    assert answer.status_code == 200, answer.text
    overall = answer.json()["overall"]
    assert (overall["leads"], overall["p50Seconds"], overall["within1Hour"]) == (5, 1800, 0.4)
    web = client.get(
        "/api/analytics/speed-to-lead", params={**PERIOD, "sources": "web"}, headers=as_(ADMIN)
    )
    assert web.json()["overall"]["leads"] == 2
    rows = client.get("/api/analytics/sources", params=PERIOD, headers=as_(ADMIN)).json()
    assert [(r["source"], r["won"]) for r in rows] == [("(none)", 0), ("phone", 1), ("web", 1)]


def test_every_route_takes_the_filters(client: TestClient) -> None:
    params = {**PERIOD, "automations": ["r-seq", "r-web"], "sources": "phone"}
    speed = client.get("/api/analytics/speed-to-lead", params=params, headers=as_(ADMIN))
    assert speed.json()["overall"]["leads"] == 2  # o3 (r-seq), o4 (r-web)
    funnel = client.get(
        "/api/analytics/funnel", params={**params, "stages": ["new", "won"]}, headers=as_(ADMIN)
    )
    assert funnel.json()["reached"] == [1, 1]  # o3
    automation = client.get("/api/analytics/automation", params=params, headers=as_(ADMIN))
    assert [r["automationId"] for r in automation.json()] == ["r-seq"]
    board = client.get(
        "/api/analytics/leaderboard", params={**PERIOD, "reps": "bob"}, headers=as_(ADMIN)
    )
    assert [r["rep"] for r in board.json()] == ["bob"]
    teams = client.get(
        "/api/analytics/dashboard", params={**PERIOD, "teams": "east"}, headers=as_(ADMIN)
    )
    assert teams.json()["speedToLead"]["overall"]["leads"] == 0  # this flow's team knows none


def test_leaderboard_funnel_automation_dashboard(client: TestClient) -> None:
    params = {**PERIOD, "rankBy": "speed_to_lead_p50"}
    rows = client.get("/api/analytics/leaderboard", params=params, headers=as_(ADMIN)).json()
    assert [r["rep"] for r in rows] == ["alice", "bob", "carol", "dave"]
    funnel = client.get(
        "/api/analytics/funnel",
        params={**PERIOD, "stages": ["new", "contacted", "qualified", "won"]},
        headers=as_(ADMIN),
    ).json()
    assert funnel["reached"] == [3, 2, 1, 2]
    automation = client.get("/api/analytics/automation", params=PERIOD, headers=as_(ADMIN))
    assert [r["automationId"] for r in automation.json()] == ["(manual)", "r-seq", "r-web"]
    dashboard = client.get("/api/analytics/dashboard", params=PERIOD, headers=as_(ADMIN))
    assert dashboard.json()["funnel"]["stages"][0] == "new"
    assert [w["week"] for w in dashboard.json()["trend"]] == ["2026-W02", "2026-W03"]
    trend = client.get("/api/analytics/trend", params=PERIOD, headers=as_(BOB)).json()
    assert [(w["week"], w["leads"], w["completed"]) for w in trend] == [
        ("2026-W02", 2, 2),
        ("2026-W03", 0, 0),
    ]


def test_sales_see_their_own_rows(client: TestClient) -> None:
    rows = client.get("/api/analytics/leaderboard", params=PERIOD, headers=as_(BOB)).json()
    assert [r["rep"] for r in rows] == ["bob"]
    other = client.get(
        "/api/analytics/leaderboard", params={**PERIOD, "reps": "alice"}, headers=as_(BOB)
    )
    assert other.status_code == 403
    assert client.get("/api/analytics/funnel", params=PERIOD, headers=as_(BOB)).status_code == 403
    assert client.get("/api/analytics/funnel", params=PERIOD).status_code == 401


@pytest.mark.parametrize(
    "params",
    [
        {"start": END.isoformat(), "end": START.isoformat()},
        {"start": "2026-01-05T09:00:00", "end": END.isoformat()},
        {"end": END.isoformat()},
        {**PERIOD, "rankBy": "charm"},
    ],
)
def test_bad_queries_are_422(client: TestClient, params: dict[str, str]) -> None:
    answer = client.get("/api/analytics/leaderboard", params=params, headers=as_(ADMIN))
    assert answer.status_code == 422, answer.text
