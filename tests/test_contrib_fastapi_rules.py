"""The FastAPI router over HTTP, continued: rules (create, change, dry run, refusals), parked
actions, the audit trail, posted events, and the host's own HTTP answers passing through."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from leadflow import Operations, Principal, ScheduledActionState
from leadflow.contrib.fastapi import events_router, router

from .access_support import ALICE, build_world
from .helpers import T0
from .test_contrib_fastapi import (
    ADMIN,
    DISPATCHER,
    NEW_RULE,
    SAMPLE,
    Api,
    _error,
    api,
    as_,
    principal_from_headers,
)

__all__ = ["api"]  # the fixture, shared with the first half

# --------------------------------------------------------------------------- rules


def test_rule_crud_and_dry_run(api: Api) -> None:
    created = api.call("POST", "/api/follow-up-rules", ADMIN, json=NEW_RULE)
    assert created.status_code == 201, created.text
    assert (created.json()["createdBy"], created.json()["version"]) == ("admin-1", 1)
    assert api.call("GET", "/api/follow-up-rules/http-rule", DISPATCHER).json()["name"] == "http"
    listed = [r["ruleId"] for r in api.call("GET", "/api/follow-up-rules", ADMIN).json()]
    assert "http-rule" in listed and "delayed" in listed
    patched = api.call(
        "PATCH",
        "/api/follow-up-rules/http-rule",
        ADMIN,
        params={"expectedVersion": 1},
        json={"isActive": False, "priority": 7},
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["rule"]["version"], patched.json()["rule"]["priority"]) == (2, 7)
    active = [r["ruleId"] for r in api.call("GET", "/api/follow-up-rules/active", ADMIN).json()]
    assert "http-rule" not in active and "delayed" in active
    trial = api.call("POST", "/api/follow-up-rules/http-rule/test", ADMIN, json=SAMPLE)
    assert trial.status_code == 200, trial.text
    assert trial.json()["matched"] and trial.json()["planned"][0]["actionType"] == (
        "send_notification"
    )
    deleted = api.call("DELETE", "/api/follow-up-rules/http-rule", ADMIN)
    assert deleted.status_code == 200 and deleted.json() == {"cancelled": []}
    _error(api.call("GET", "/api/follow-up-rules/http-rule", ADMIN), 404, "NotFoundError")
    trail = api.call("GET", "/api/audit-trail", ADMIN, params={"subjectId": "http-rule"}).json()
    assert [e["change"] for e in trail] == ["created", "updated", "deleted"]


def test_rule_change_cancels_or_keeps_pending_actions(api: Api) -> None:
    api.world.flow.handle(
        {"id": "q-1", "type": "estimate.created", "time": T0, "payload": {"opportunityId": "o"}}
    )
    kept = api.call(
        "PATCH", "/api/follow-up-rules/delayed", ADMIN, params={"pending": "keep"},
        json={"priority": 1},
    )  # fmt: skip
    assert kept.json()["cancelled"] == []
    cancelled = api.call("DELETE", "/api/follow-up-rules/delayed", ADMIN).json()["cancelled"]
    assert len(cancelled) == 2  # the world's quote and q-1
    assert {(a["ruleId"], a["state"]) for a in cancelled} == {("delayed", "cancelled")}


def test_dry_run_explains_conditions(api: Api) -> None:
    trial = api.call(
        "POST",
        "/api/follow-up-rules/default-website-lead-follow-up/test",
        ADMIN,
        json={"eventType": "opportunity.created", "payload": {"leadSource": "referral"}},
    ).json()
    assert not trial["matched"] and trial["planned"] == []
    [condition] = trial["conditions"]
    assert (condition["field"], condition["actual"], condition["passed"]) == (
        "leadSource",
        "referral",
        False,
    )
    absent = api.call(
        "POST",
        "/api/follow-up-rules/default-website-lead-follow-up/test",
        ADMIN,
        json={"eventType": "opportunity.created"},
    ).json()
    assert absent["conditions"][0]["actual"] is None


BAD_RULES: list[tuple[dict[str, Any], int, str, str | None]] = [
    ({**NEW_RULE, "name": ""}, 422, "RequestValidationError", "name"),
    ({k: v for k, v in NEW_RULE.items() if k != "trigger"}, 422, "RequestValidationError",
     "trigger"),
    ({**NEW_RULE, "trigger": {"eventType": "estimate.created",
                              "conditions": [{"field": "x", "operator": "resembles"}]}},
     422, "RuleValidationError", "trigger.conditions[0]"),
    ({**NEW_RULE, "actions": [{"actionType": "teleport"}]}, 422, "RuleValidationError",
     "actions[0].actionType"),
    ({**NEW_RULE, "actions": [{"actionType": "send_notification"}]}, 422, "RuleValidationError",
     "actions[0].template"),
    ({**NEW_RULE, "ruleId": "delayed"}, 409, "DuplicateError", None),
    ({**NEW_RULE, "trigger": {"eventType": "Not An Event"}}, 422, "RequestValidationError",
     "trigger.eventType"),
    # Datetimes within hours of the calendar's ends: no UTC datetime exists for them.
    ({**NEW_RULE, "trigger": {"eventType": "estimate.created", "conditions": [
        {"field": "x", "operator": "greater_than", "value": "0001-01-01T00:30:00+01:00"}]}},
     422, "RuleValidationError", "trigger.conditions[0]"),
    ({**NEW_RULE, "trigger": {"eventType": "estimate.created", "conditions": [
        {"field": "x", "operator": "between",
         "value": ["2026-01-01T00:00:00Z", "9999-12-31T23:30:00-01:00"]}]}},
     422, "RuleValidationError", "trigger.conditions[0]"),
]  # fmt: skip


@pytest.mark.parametrize(("document", "status", "error", "field"), BAD_RULES)
def test_create_rule_refuses_bad_rules(
    api: Api, document: dict[str, Any], status: int, error: str, field: str | None
) -> None:
    before = api.world.flow.storage.rules.list()
    answer = api.call("POST", "/api/follow-up-rules", ADMIN, json=document)
    body = _error(answer, status, error)
    if field is not None:
        assert body["field"] is not None and body["field"].startswith(field), body
    assert api.world.flow.storage.rules.list() == before


@pytest.mark.parametrize(
    ("params", "body", "status", "field"),
    [
        ({}, {"ruleId": "other"}, 422, "ruleId"),
        ({}, {"version": 9}, 422, "version"),
        ({}, {"colour": "red"}, 422, "colour"),
        ({}, {"priority": "high"}, 422, "priority"),
        ({"expectedVersion": 5}, {"priority": 1}, 409, None),
        ({"pending": "maybe"}, {"priority": 1}, 422, "pending"),
        ({}, {"actions": [{"actionType": "teleport"}]}, 422, "actions[0].actionType"),
    ],
)
def test_update_rule_refuses_bad_changes(
    api: Api, params: dict[str, Any], body: dict[str, Any], status: int, field: str | None
) -> None:
    before = api.world.flow.storage.rules.get("delayed")
    answer = api.call("PATCH", "/api/follow-up-rules/delayed", ADMIN, params=params, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json().get("field") == field
    assert api.world.flow.storage.rules.get("delayed") == before


def test_rule_routes_refuse_unknown_and_malformed_ids(api: Api) -> None:
    for method, path, kwargs in (
        ("GET", "/api/follow-up-rules/nope", {}),
        ("PATCH", "/api/follow-up-rules/nope", {"json": {"priority": 1}}),
        ("DELETE", "/api/follow-up-rules/nope", {}),
        ("POST", "/api/follow-up-rules/nope/test", {"json": SAMPLE}),
    ):
        _error(api.call(method, path, ADMIN, **kwargs), 404, "NotFoundError")
    _error(api.call("GET", "/api/follow-up-rules/$x", ADMIN), 422, "InvalidInputError", "ruleId")
    _error(api.call("POST", "/api/follow-up-rules/delayed/test", ADMIN, json={"payload": {}}),
           422, "RequestValidationError", "eventType")  # fmt: skip
    bad_type = api.call(
        "POST", "/api/follow-up-rules/delayed/test", ADMIN, json={"eventType": "Bad Type"}
    )
    _error(bad_type, 422, "ValidationError")


# --------------------------------------------------------------------------- admin and events


def test_parked_actions_and_retry(api: Api) -> None:
    [parked] = api.call("GET", "/api/scheduled-actions/parked", ADMIN).json()
    assert parked["actionId"] == api.world.parked_id and "refuses" in parked["lastError"]
    retried = api.call("POST", f"/api/scheduled-actions/{api.world.parked_id}/retry", ADMIN)
    assert retried.status_code == 200 and retried.json()["state"] == "pending"
    again = api.call("POST", f"/api/scheduled-actions/{api.world.parked_id}/retry", ADMIN)
    _error(again, 409, "InvalidStateError")
    _error(api.call("POST", "/api/scheduled-actions/nope/retry", ADMIN), 404, "NotFoundError")
    _error(api.call("GET", "/api/scheduled-actions/parked", ADMIN, params={"limit": 0}),
           422, "RequestValidationError", "limit")  # fmt: skip
    action = api.world.flow.storage.scheduled.get(api.world.parked_id)
    assert action.state is ScheduledActionState.PENDING


def test_audit_trail_filters(api: Api) -> None:
    api.call("PATCH", "/api/lead-activities/act-alice/complete", ALICE, json={})
    trail = api.call(
        "GET", "/api/audit-trail", ADMIN, params={"subject": "activity", "subjectId": "act-alice"}
    ).json()
    assert [(e["change"], e["actor"]) for e in trail] == [("created", "root"),
                                                          ("completed", "alice")]  # fmt: skip
    _error(api.call("GET", "/api/audit-trail", ADMIN, params={"subject": "user"}),
           422, "InvalidInputError", "subject")  # fmt: skip


def test_events_are_posted_by_admins_only(api: Api) -> None:
    event = {
        "eventId": "crm-1",
        "eventType": "opportunity.created",
        "payload": {"opportunityId": "opp-alice", "leadSource": "website"},
    }
    _error(api.call("POST", "/api/events", ALICE, json=event), 403, "PermissionDeniedError")
    _error(api.call("POST", "/api/events", DISPATCHER, json=event), 403, "PermissionDeniedError")
    first = api.call("POST", "/api/events", ADMIN, json=event)
    assert first.status_code == 200, first.text
    assert first.json()["matchedRules"] == ["default-website-lead-follow-up"]
    assert first.json()["executed"][0]["ok"]
    again = api.call("POST", "/api/events", ADMIN, json=event).json()
    assert again["executed"] == [] and again["duplicates"]
    _error(api.call("POST", "/api/events", ADMIN, json={"eventType": "x", "payload": []}),
           422, "RequestValidationError", "payload")  # fmt: skip
    _error(api.call("POST", "/api/events", None, json=event), 401, "NotAuthenticatedError")


def test_events_router_roles_are_the_hosts() -> None:
    world = build_world(parked=False)
    app = FastAPI()
    app.include_router(
        events_router(world.flow, principal=principal_from_headers, roles=["dispatcher"])
    )
    client = TestClient(app)
    event = {"eventType": "estimate.created", "payload": {"opportunityId": "opp-alice"}}
    assert client.post("/api/events", json=event, headers=as_(DISPATCHER)).status_code == 200
    assert client.post("/api/events", json=event, headers=as_(ADMIN)).status_code == 403
    with pytest.raises(ValueError):
        events_router(world.flow, principal=principal_from_headers, roles=["owner"])


def test_host_http_exceptions_pass_through() -> None:
    def locked_out() -> Principal:
        raise HTTPException(429, detail="slow down", headers={"Retry-After": "3"})

    world = build_world(parked=False)
    app = FastAPI()
    app.include_router(router(Operations(world.flow), principal=locked_out))
    answer = TestClient(app).get("/api/lead-activities")
    assert answer.status_code == 429 and answer.headers["retry-after"] == "3"
    assert answer.json() == {"detail": "slow down"}
