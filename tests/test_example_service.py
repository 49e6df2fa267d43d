"""The reference service (examples/service) over HTTP: JWT authentication, 100 requests per
minute per user, the store by URL, the jobs in the app's lifespan, the documented uvicorn
command, and the seed's end-to-end scenarios on a controlled clock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from examples.service.app import create_app
from examples.service.auth import issue_token
from examples.service.settings import ServiceSettings
from examples.service.storage import storage_from_url
from fastapi.testclient import TestClient

from leadflow import InvalidInputError, LeadflowJobs, ManualClock
from leadflow.adapters import (
    InMemoryOpportunities,
    RecordingEventSink,
    RecordingMessenger,
    RecordingNotifier,
    StaticTeamDirectory,
)
from leadflow.ports import Integrations

from .helpers import T0

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-" + "x" * 64
SETTINGS = ServiceSettings(jwt_secret=SECRET, worker="off", reps=("alice", "bob"))


class Service:
    """The app on a manual clock with recording integrations, and tokens for its users."""

    def __init__(self, settings: ServiceSettings = SETTINGS) -> None:
        self.settings = settings
        self.clock = ManualClock(T0)
        self.events = RecordingEventSink()
        self.integrations = Integrations(
            notifier=RecordingNotifier(),
            messenger=RecordingMessenger(),
            opportunities=InMemoryOpportunities(),
            team=StaticTeamDirectory(settings.reps),
            events=self.events,
        )
        self.app = create_app(settings, clock=self.clock, integrations=self.integrations)
        self.client = TestClient(self.app)
        self.flow = self.app.state.flow

    def token(self, user: str, role: str, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.settings, user, role, **kwargs)}"}

    def as_(self, user: str, role: str) -> Any:
        headers = self.token(user, role)
        client = self.client

        class As:
            def __getattr__(self, method: str) -> Any:
                def call(path: str, **kwargs: Any) -> Any:
                    return client.request(method.upper(), path, headers=headers, **kwargs)

                return call

        return As()


@pytest.fixture
def service() -> Service:
    return Service()


# --------------------------------------------------------------------------- authentication


def test_a_token_makes_the_principal(service: Service) -> None:
    admin = service.as_("admin-1", "admin")
    assert admin.put("/api/opportunities/opp-1", json={"owner": "alice"}).status_code == 204
    assert admin.post("/api/lead-activities", json={
        "opportunityId": "opp-1", "activityType": "note", "subject": "n", "assignedTo": "bob",
    }).status_code == 201  # fmt: skip
    alice = service.as_("alice", "sales")
    assert alice.get("/api/lead-activities").json()["items"] == []  # Bob's, not hers
    assert alice.get("/api/follow-up-rules").status_code == 403
    assert len(service.as_("disp-1", "dispatcher").get("/api/lead-activities").json()["items"]) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer " + jwt.encode({"sub": "a", "role": "admin", "exp": 9e9},
                                                 "another-secret-" + "y" * 32)},
        {"Authorization": "Bearer " + jwt.encode({"sub": "a", "role": "admin", "exp": 1},
                                                 SECRET)},
        {"Authorization": "Bearer " + jwt.encode({"sub": "a", "role": "owner", "exp": 9e9},
                                                 SECRET)},
        {"Authorization": "Bearer " + jwt.encode({"sub": "$ne", "role": "admin", "exp": 9e9},
                                                 SECRET)},
        {"Authorization": "Bearer " + jwt.encode({"sub": "a", "role": "admin"}, SECRET)},
        {"Authorization": "Bearer " + jwt.encode({"sub": "a", "role": "admin", "exp": 9e9},
                                                 SECRET, algorithm="HS512")},
    ],
    ids=["garbage", "other-key", "expired", "unknown-role", "bad-user", "no-exp", "other-alg"],
)  # fmt: skip
def test_bad_tokens_are_401(service: Service, headers: dict[str, str]) -> None:
    answer = service.client.get("/api/lead-activities", headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"


def test_no_token_is_401(service: Service) -> None:
    answer = service.client.get("/api/lead-activities")
    assert answer.status_code == 401 and answer.json()["error"] == "NotAuthenticatedError"
    assert service.client.put("/api/opportunities/o", json={}).status_code == 401


def test_only_admins_feed_the_stand_in_crm_and_events(service: Service) -> None:
    alice = service.as_("alice", "sales")
    assert alice.put("/api/opportunities/opp-1", json={"owner": "alice"}).status_code == 403
    assert alice.post("/api/events", json={"eventType": "estimate.created"}).status_code == 403
    admin = service.as_("admin-1", "admin")
    assert admin.put("/api/opportunities/opp-1", json={"colour": "red"}).status_code == 422


# --------------------------------------------------------------------------- rate limit


def test_the_101st_request_in_a_minute_is_429(service: Service) -> None:
    alice = service.as_("alice", "sales")
    answers = [alice.get("/api/lead-activities/pending").status_code for _ in range(100)]
    assert answers == [200] * 100
    refused = alice.get("/api/lead-activities/pending")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # Per user: Bob is not slowed down by Alice.
    assert service.as_("bob", "sales").get("/api/lead-activities/pending").status_code == 200


def test_the_limit_is_a_setting() -> None:
    service = Service(ServiceSettings(jwt_secret=SECRET, worker="off", rate_limit="3/minute"))
    admin = service.as_("admin-1", "admin")
    assert [admin.get("/api/follow-up-rules").status_code for _ in range(4)] == [200] * 3 + [429]


# --------------------------------------------------------------------------- settings and stores


def test_settings_from_the_environment() -> None:
    settings = ServiceSettings.from_env(
        {"LEADFLOW_JWT_SECRET": SECRET, "LEADFLOW_REPS": "alice, bob", "LEADFLOW_WORKER": "off",
         "LEADFLOW_RATE_LIMIT": "10/second"}
    )  # fmt: skip
    assert (settings.reps, settings.worker, settings.rate_limit) == (
        ("alice", "bob"), "off", "10/second",
    )  # fmt: skip
    assert settings.db_url == "memory://" and SECRET not in repr(settings)
    with pytest.raises(InvalidInputError, match="LEADFLOW_JWT_SECRET"):
        ServiceSettings.from_env({})
    with pytest.raises(InvalidInputError, match="32 bytes"):
        ServiceSettings(jwt_secret="short")


def test_the_store_is_chosen_by_url() -> None:
    assert storage_from_url("memory://").activities is not None
    with pytest.raises(InvalidInputError) as caught:
        storage_from_url("redis://localhost/0")
    assert caught.value.field == "db_url"


def test_sqlite_by_url(tmp_path: Path) -> None:
    pytest.importorskip("leadflow.stores.sql")
    url = f"sqlite:///{tmp_path / 'leadflow.db'}"
    first = Service(ServiceSettings(jwt_secret=SECRET, worker="off", db_url=url))
    assert len(first.as_("a", "admin").get("/api/follow-up-rules").json()) == 8
    again = Service(ServiceSettings(jwt_secret=SECRET, worker="off", db_url=url))
    assert len(again.as_("a", "admin").get("/api/follow-up-rules").json()) == 8


def test_default_rules_are_stored_once() -> None:
    service = Service()
    rules = service.as_("admin-1", "admin").get("/api/follow-up-rules").json()
    assert len(rules) == 8 and all(r["ruleId"].startswith("default-") for r in rules)
    bare = Service(ServiceSettings(jwt_secret=SECRET, worker="off", seed_default_rules=False))
    assert bare.as_("admin-1", "admin").get("/api/follow-up-rules").json() == []


def test_the_jobs_run_in_the_lifespan() -> None:
    settings = ServiceSettings(jwt_secret=SECRET, worker="inline")
    app = create_app(settings)
    with TestClient(app):
        runner = app.state.jobs
        assert runner.running and "due_actions" in runner.jobs
    assert not runner.running


# --------------------------------------------------------------------------- the seed's scenarios


def test_website_lead_call_callback_follow_up_next_day(service: Service) -> None:
    admin, alice = service.as_("admin-1", "admin"), service.as_("alice", "sales")
    crm = {"owner": "alice", "email": "buyer@example.com"}
    assert admin.put("/api/opportunities/opp-1", json=crm).status_code == 204
    handled = admin.post("/api/events", json={
        "eventId": "crm-1001", "eventType": "opportunity.created",
        "payload": {"opportunityId": "opp-1", "leadSource": "website"},
    }).json()  # fmt: skip
    assert handled["matchedRules"] == ["default-website-lead-follow-up"]
    [call] = alice.get("/api/lead-activities/opportunity/opp-1").json()
    assert (call["subject"], call["assignedTo"]) == ("Call new website lead", "alice")
    assert call["dueDate"] == "2026-01-05T10:00:00Z"  # within the hour

    service.clock.advance(minutes=40)
    done = alice.patch(f"/api/lead-activities/{call['activityId']}/complete",
                       json={"outcome": "callback_requested"}).json()  # fmt: skip
    assert done["activity"]["completedBy"] == "alice"
    assert done["followUp"]["matchedRules"] == ["default-callback-requested"]

    timeline = alice.get("/api/lead-activities/timeline/opp-1").json()
    by_subject = {a["subject"]: a for a in timeline}
    assert set(by_subject) == {"Call new website lead", "Return customer callback"}
    callback = by_subject["Return customer callback"]
    assert callback["dueDate"] == "2026-01-06T09:40:00Z"  # the next day
    assert [a["activityId"] for a in alice.get("/api/lead-activities/pending").json()] == [
        callback["activityId"]
    ]
    service.clock.advance(days=1, minutes=1)
    overdue = alice.get("/api/lead-activities/overdue").json()
    assert [a["activityId"] for a in overdue] == [callback["activityId"]]
    stats = alice.get("/api/lead-activities/statistics").json()
    assert stats["total"] == 2 and stats["byOutcome"] == {"callback_requested": 1}


def test_quote_reminder_then_overdue(service: Service) -> None:
    admin, alice = service.as_("admin-1", "admin"), service.as_("alice", "sales")
    admin.put("/api/opportunities/opp-7", json={"owner": "alice"})
    admin.post("/api/events", json={"eventId": "est-7", "eventType": "estimate.created",
                                    "payload": {"opportunityId": "opp-7"}})  # fmt: skip
    [follow_up] = alice.get("/api/lead-activities/opportunity/opp-7").json()
    assert follow_up["subject"] == "Follow up on quote"
    assert follow_up["dueDate"] == "2026-01-07T09:00:00Z"  # two days after the quote

    runner = LeadflowJobs(service.flow).runner()
    service.clock.advance(hours=47, minutes=31)  # Wednesday 08:31: the 08:30 slot
    run = runner.run_job("upcoming_reminders", service.clock.now())
    assert run is not None and run.counts["reminded"] == 1
    [reminder] = [p for n, p in service.events.events if n == "notification.upcoming_activities"]
    assert reminder["recipients"] == ["alice"]
    assert [a["activityId"] for a in reminder["activities"]] == [follow_up["activityId"]]

    service.clock.advance(minutes=59)  # 09:30: past due, the 09:00 overdue slot
    overdue = alice.get("/api/lead-activities/overdue").json()
    assert [a["activityId"] for a in overdue] == [follow_up["activityId"]]
    run = runner.run_job("overdue_check", service.clock.now())
    assert run is not None
    [notice] = [p for n, p in service.events.events if n == "notification.overdue_activities"]
    assert notice["recipients"] == ["alice"] and notice["count"] == 1


# --------------------------------------------------------------------------- the command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_documented_command_serves_the_app() -> None:
    import httpx

    port = _free_port()
    env = {**os.environ, "LEADFLOW_JWT_SECRET": SECRET, "LEADFLOW_WORKER": "inline"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "examples.service.app:create_app",
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        headers = {"Authorization": f"Bearer {issue_token(SETTINGS, 'admin-1', 'admin')}"}
        answer = None
        for _ in range(200):  # until the server listens (a few seconds at most)
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/follow-up-rules/active",
                                   headers=headers)  # fmt: skip
                break
            except httpx.TransportError:
                assert server.poll() is None, "uvicorn exited"
                time.sleep(0.05)
        assert answer is not None and answer.status_code == 200
        assert len(answer.json()) == 8
    finally:
        server.terminate()
        # uvicorn shuts down (the lifespan stops the jobs), then re-raises SIGTERM
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)


def test_tokens_expire() -> None:
    token = issue_token(SETTINGS, "alice", "sales", ttl=-1)
    service = Service()
    answer = service.client.get("/api/lead-activities",
                                headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]


# --------------------------------------------------------------------------- metrics


def test_metrics_are_served_for_prometheus(service: Service) -> None:
    """``/metrics``: leadflow's counters move as the service works (an action run by the
    rules is counted by type and outcome), with the process's own metrics beside them."""
    admin = service.as_("admin-1", "admin")
    assert admin.put("/api/opportunities/opp-1", json={"owner": "alice"}).status_code == 204
    event = {
        "eventType": "opportunity.created",
        "occurredAt": T0.isoformat(),
        "payload": {"opportunityId": "opp-1", "leadSource": "website"},
    }
    assert admin.post("/api/events", json=event).status_code in (200, 201)
    page = service.client.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    text = page.text
    assert 'leadflow_actions_total{action_type="create_activity",outcome="done"} 1.0' in text
    assert "leadflow_parked_actions" in text and "process_cpu_seconds_total" in text


def test_metrics_can_be_turned_off() -> None:
    settings = ServiceSettings.from_env({"LEADFLOW_JWT_SECRET": SECRET, "LEADFLOW_METRICS": "0"})
    assert settings.metrics is False
    app = create_app(settings, clock=ManualClock(T0))
    assert TestClient(app).get("/metrics").status_code == 404
