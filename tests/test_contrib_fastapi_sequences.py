"""The sequence routes over HTTP: every route against every role (answers derived from the
policy table), the website-lead sequence end to end (published, a lead posted to the events
endpoint, its enrollment listed and ended, the audit trail, the report and the timeline), and
arbitrary JSON into every route: only documented answers, and nothing written on a refusal."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow import Operations, Principal, Role
from leadflow.access import DEFAULT_POLICY
from leadflow.contrib.fastapi import events_router, router

from .access_support import ADMIN, ALICE, BOB, BY_ROLE, SUPER, World
from .sequence_ops_support import SEQUENCE, enrollment_of, full_snapshot, sequence_world
from .sequence_support import lead, opportunities, sequence_flow, website_lead_sequence
from .suite import examples
from .test_access_fuzz import JSON
from .test_contrib_fastapi import as_, principal_from_headers

_SERVED: list[tuple[Operations, TestClient]] = []


def served(world: World) -> TestClient:
    """One app for the module; each test points its operations at its own world."""
    if not _SERVED:
        ops = Operations(world.flow)
        app = FastAPI()
        app.include_router(router(ops, principal=principal_from_headers))
        app.include_router(events_router(ops, principal=principal_from_headers))
        _SERVED.append((ops, TestClient(app)))
    ops, client = _SERVED[0]
    ops.flow, ops.policy = world.flow, world.ops.policy
    return client


Request = Callable[[World, Principal], tuple[str, str, dict[str, Any]]]


def arrived(world: World, principal: Principal) -> dict[str, Any]:
    """Record that ``new-<user>`` (the principal's) arrived as a lead a moment ago; a filter
    that takes it (the principal's own leads of the last day)."""
    from leadflow.facts import LeadArrival

    analytics = world.flow.storage.analytics
    assert analytics is not None
    now = world.clock.now()
    user = principal.user_id
    analytics.record_arrival(
        LeadArrival(event_id=f"arrival-{user}", opportunity_id=f"new-{user}", arrived_at=now,
                    source="website", owner=user)
    )  # fmt: skip
    since, until = now.replace(hour=0), now.replace(hour=23)
    return {"arrivedFrom": since.isoformat(), "arrivedBefore": until.isoformat(),
            "owners": [principal.user_id]}  # fmt: skip


SEQUENCE_ROUTES: dict[str, tuple[str, int, Request]] = {
    # route name: (the operation that decides it, success status, a request on own things)
    "create_sequence": ("sequence.write", 201, lambda w, p: (
        "POST", "/api/sequences", {"json": {**SEQUENCE, "sequenceId": "created"}})),
    "list_sequences": ("sequence.read", 200, lambda w, p: ("GET", "/api/sequences", {})),
    "get_sequence": ("sequence.read", 200, lambda w, p: ("GET", "/api/sequences/nurture", {})),
    "publish_sequence": ("sequence.write", 200, lambda w, p: (
        "POST", "/api/sequences/nurture/publish", {"params": {"inFlight": "move"}})),
    "pause_sequence": ("sequence.write", 200, lambda w, p: (
        "POST", "/api/sequences/nurture/pause", {})),
    "resume_sequence": ("sequence.write", 409, lambda w, p: (  # it is not paused
        "POST", "/api/sequences/nurture/resume", {})),
    "archive_sequence": ("sequence.write", 200, lambda w, p: (
        "POST", "/api/sequences/nurture/archive", {})),
    "enroll": ("enrollment.write", 200, lambda w, p: (
        "POST", "/api/sequences/nurture/enrollments",
        {"json": {"opportunityIds": [f"new-{p.user_id}"], "dryRun": False}})),
    "enroll_matching": ("enrollment.write", 200, lambda w, p: (
        "POST", "/api/sequences/nurture/enrollments/matching", {"json": arrived(w, p)})),
    "sequence_report": ("sequence.report", 200, lambda w, p: (
        "GET", "/api/sequences/nurture/report", {})),
    "unenroll": ("enrollment.write", 200, lambda w, p: (
        "DELETE", f"/api/enrollments/{enrollment_of(w.flow, f'opp-{p.user_id}')}", {})),
    "opportunity_enrollments": ("activity.read", 200, lambda w, p: (
        "GET", f"/api/opportunities/opp-{p.user_id}/enrollments", {})),
    "opportunity_timeline": ("activity.read", 200, lambda w, p: (
        "GET", f"/api/opportunities/opp-{p.user_id}/timeline", {})),
}  # fmt: skip
"""The route names the router's matrix test (test_contrib_fastapi.py) leaves to this module."""


def test_every_sequence_route_is_in_the_matrix() -> None:
    world = sequence_world()
    api = router(world.ops, principal=principal_from_headers)
    names = {getattr(r, "name", "") for r in api.routes}
    assert set(SEQUENCE_ROUTES) <= names
    others = {n for n in names - set(SEQUENCE_ROUTES) if "sequence" in n or "enroll" in n}
    assert others == {"get_sequence_schema"}  # any signed-in caller, as the rule schema


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("route", sorted(SEQUENCE_ROUTES))
def test_route_against_role_follows_the_policy(route: str, role: Role) -> None:
    world = sequence_world()
    client = served(world)
    principal = BY_ROLE[role]
    operation, success, request = SEQUENCE_ROUTES[route]
    method, path, kwargs = request(world, principal)
    before = full_snapshot(world.flow)
    answer = client.request(method, path, headers=as_(principal), **kwargs)
    if role in DEFAULT_POLICY.table[operation]:
        assert answer.status_code == success, answer.text
    else:
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] == "PermissionDeniedError"
        assert full_snapshot(world.flow) == before
    assert client.request(method, path, **kwargs).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/api/sequences/nurture/enrollments", {"json": {"opportunityIds": ["new-bob"]}},
         403),
        ("DELETE", "/api/enrollments/{bob}", {}, 404),
        ("GET", "/api/opportunities/opp-bob/enrollments", {}, 200),
    ],
)  # fmt: skip
def test_a_rep_works_only_on_their_own_opportunities(
    method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    world = sequence_world()
    client = served(world)
    path = path.replace("{bob}", enrollment_of(world.flow, "opp-bob"))
    before = full_snapshot(world.flow)
    answer = client.request(method, path, headers=as_(ALICE), **kwargs)
    assert answer.status_code == status, answer.text
    if status == 200:
        assert answer.json() == []
    assert full_snapshot(world.flow) == before


def test_bad_bodies_name_the_field() -> None:
    world = sequence_world()
    client = served(world)
    answer = client.post(
        "/api/sequences",
        json={**SEQUENCE, "sequenceId": "x", "steps": [{"id": "a", "kind": "action",
                                                         "action": {"actionType": "send_fax"}}]},
        headers=as_(ADMIN),
    )  # fmt: skip
    assert answer.status_code == 422 and answer.json()["field"] == "steps[0] (a).action.actionType"
    answer = client.post("/api/sequences", json={"name": "x"}, headers=as_(ADMIN))
    assert answer.status_code == 422 and answer.json()["field"] == "steps"
    answer = client.post(
        "/api/sequences/nurture/enrollments", json={"opportunityIds": []}, headers=as_(ADMIN)
    )
    assert answer.status_code == 422 and answer.json()["field"] == "opportunityIds"
    answer = client.post(
        "/api/sequences/nurture/publish", params={"inFlight": "x"}, headers=as_(ADMIN)
    )
    assert answer.status_code == 422 and answer.json()["field"] == "inFlight"
    answer = client.post("/api/sequences", json=SEQUENCE, headers=as_(ADMIN))
    assert answer.status_code == 409 and answer.json()["error"] == "DuplicateError"


def test_the_running_version_under_a_draft() -> None:
    """A draft published on top of the running version: ``GET`` answers the latest (the
    draft), ``?running=true`` the version that runs; with ``?version=`` too, a 422."""
    world = sequence_world()
    client = served(world)
    live = client.get("/api/sequences/nurture", headers=as_(ADMIN)).json()
    answer = client.post(
        "/api/sequences/nurture/publish", params={"status": "draft"}, headers=as_(ADMIN)
    )
    assert answer.status_code == 200 and answer.json()["status"] == "draft"
    latest = client.get("/api/sequences/nurture", headers=as_(ADMIN)).json()
    assert (latest["version"], latest["status"]) == (live["version"] + 1, "draft")
    running = client.get(
        "/api/sequences/nurture", params={"running": "true"}, headers=as_(ADMIN)
    ).json()
    assert (running["version"], running["status"]) == (live["version"], "active")
    both = client.get(
        "/api/sequences/nurture", params={"running": "true", "version": 1}, headers=as_(ADMIN)
    )
    assert both.status_code == 422 and both.json()["field"] == "running"
    # The list says the same: each sequence's latest, or with ?running=true the one that runs.
    listed = client.get("/api/sequences", headers=as_(ALICE)).json()
    assert [(d["sequenceId"], d["version"], d["status"]) for d in listed] == [
        ("nurture", live["version"] + 1, "draft")
    ]
    listed = client.get("/api/sequences", params={"running": "true"}, headers=as_(ALICE)).json()
    assert [(d["sequenceId"], d["version"], d["status"]) for d in listed] == [
        ("nurture", live["version"], "active")
    ]
    bad = client.get("/api/sequences", params={"running": "maybe"}, headers=as_(ADMIN))
    assert bad.status_code == 422 and bad.json()["field"] == "running"


def test_the_sequence_schema_is_served_to_any_signed_in_user() -> None:
    from leadflow.runtime.sequence_schema import sequence_schema

    world = sequence_world()
    client = served(world)
    answer = client.get("/api/sequences/schema", headers=as_(ALICE))
    assert answer.status_code == 200 and answer.json() == sequence_schema(world.flow)
    assert client.get("/api/sequences/schema").status_code == 401


# --------------------------------------------------------------------------- end to end


def test_the_website_lead_sequence_over_http() -> None:
    flow, clock = sequence_flow()
    opportunities(flow).add("o1", owner="alice", email="lead@example.com")
    world = World(flow, Operations(flow), clock, "")
    client = served(world)
    admin, alice = as_(ADMIN), as_(ALICE)
    definition = website_lead_sequence().model_dump(mode="json", by_alias=True, exclude_none=True)
    created = client.post("/api/sequences", json=definition, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1 and created.json()["createdBy"] == ADMIN.user_id
    published = client.post("/api/sequences/website-lead/publish", headers=admin)
    assert published.status_code == 200 and published.json()["version"] == 2
    # A lead arrives through the router's event endpoint and enters the sequence.
    event = lead("o1", clock.now())
    posted = client.post(
        "/api/events",
        json={"eventId": event["id"], "eventType": event["type"], "payload": event["payload"]},
        headers=as_(SUPER),
    )
    assert posted.status_code == 200, posted.text
    listed = client.get("/api/opportunities/o1/enrollments", headers=alice)
    assert listed.status_code == 200
    [enrollment] = listed.json()
    assert enrollment["state"] == "active" and enrollment["stepId"] == "wait-1h"
    assert enrollment["history"][0]["why"].startswith("after enrolled: waits 1 hours")
    timeline = client.get("/api/opportunities/o1/timeline", headers=alice).json()
    assert [(e["kind"], e["step"]["stepId"], e["step"]["state"]) for e in timeline] == [
        ("sequence_step", "wait-1h", "pending")
    ]
    ended = client.delete(f"/api/enrollments/{enrollment['enrollmentId']}", headers=alice)
    assert ended.status_code == 200 and ended.json()["state"] == "unenrolled"
    again = client.delete(f"/api/enrollments/{enrollment['enrollmentId']}", headers=alice)
    assert again.status_code == 409
    trail = client.get("/api/audit-trail", params={"subject": "enrollment"}, headers=admin).json()
    assert [(e["change"], e["actor"]) for e in trail] == [("unenrolled", "alice")]
    assert trail[0]["before"]["state"] == "active" and trail[0]["after"]["state"] == "unenrolled"
    trail = client.get("/api/audit-trail", params={"subject": "sequence"}, headers=admin).json()
    assert [(e["change"], e["subjectId"]) for e in trail] == [
        ("created", "website-lead"),
        ("published", "website-lead"),
    ]
    report = client.get("/api/sequences/website-lead/report", headers=admin).json()
    assert report["totals"] == {"enrolled": 1, "active": 0, "completed": 0, "goalReached": 0,
                                "unenrolled": 1, "ended": 0}  # fmt: skip
    assert report["splits"] == []


# --------------------------------------------------------------------------- arbitrary JSON

IDS = st.sampled_from(["nurture", "opp-alice", "opp-bob", "new-alice", "nope", "$where", "a b"])
VALUE = JSON  # what a wire can carry


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from((True, True, True, False)).flatmap(lambda ok: valid if ok else VALUE)


BODY = mostly(
    st.fixed_dictionaries(
        {},
        optional={
            "opportunityIds": st.lists(IDS | VALUE, max_size=3) | VALUE,
            "dryRun": st.booleans() | VALUE,
            "sequenceId": IDS | VALUE,
            "name": st.text(max_size=5) | VALUE,
            "steps": st.just(SEQUENCE["steps"]) | st.lists(VALUE, max_size=2),
            "entry": st.just(SEQUENCE["entry"]) | VALUE,
            "status": st.sampled_from(["active", "archived"]) | VALUE,
        },
    )
) | st.just({**SEQUENCE, "sequenceId": "fuzzed"})
PARAMS = st.dictionaries(
    st.sampled_from(["inFlight", "status", "version", "minPerArm", "x"]),
    st.sampled_from(["keep", "move", "end", "draft", "active", "0", "2", "-1", "abc", ""]),
    max_size=3,
)
ROUTE = st.sampled_from(
    [
        ("POST", "/api/sequences"),
        ("GET", "/api/sequences/{id}"),
        ("POST", "/api/sequences/{id}/publish"),
        ("POST", "/api/sequences/{id}/pause"),
        ("POST", "/api/sequences/{id}/resume"),
        ("POST", "/api/sequences/{id}/archive"),
        ("POST", "/api/sequences/{id}/enrollments"),
        ("GET", "/api/sequences/{id}/report"),
        ("DELETE", "/api/enrollments/{id}"),
        ("GET", "/api/opportunities/{id}/enrollments"),
        ("GET", "/api/opportunities/{id}/timeline"),
    ]
)
DOCUMENTED = {200, 201, 401, 403, 404, 409, 422}


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    route=ROUTE,
    target=IDS | st.text(min_size=1, max_size=8),
    body=st.none() | BODY | VALUE,
    params=PARAMS,
    who=st.sampled_from([SUPER, ADMIN, ALICE]),
)
def test_arbitrary_json_into_the_routes(
    route: tuple[str, str], target: str, body: Any, params: dict[str, str], who: Principal
) -> None:
    world = sequence_world()
    client = served(world)
    method, template = route
    path = template.replace("{id}", quote(target.replace("/", "_"), safe=""))
    before = full_snapshot(world.flow)
    kwargs: dict[str, Any] = {"params": params, "headers": as_(who)}
    if body is not None and method == "POST":  # as a client may send it (NaN too)
        kwargs["content"] = json.dumps(body)
        kwargs["headers"] = {**as_(who), "content-type": "application/json"}
    answer = client.request(method, path, **kwargs)
    assert answer.status_code in DOCUMENTED | {405}, (answer.status_code, answer.text)
    if answer.status_code >= 400:
        assert full_snapshot(world.flow) == before, answer.text
        if answer.status_code != 405:
            assert answer.json()["error"]
    if method == "GET":
        assert full_snapshot(world.flow) == before


def test_a_real_enrollment_id_reaches_the_unenroll_route() -> None:
    # The fuzzer does not know the enrollment ids; this is the case it cannot draw.
    world = sequence_world()
    client = served(world)
    answer = client.delete(
        f"/api/enrollments/{enrollment_of(world.flow, 'opp-root')}", headers=as_(SUPER)
    )
    assert answer.status_code == 200 and answer.json()["state"] == "unenrolled"


def test_enrolling_the_leads_a_filter_takes() -> None:
    """``POST .../enrollments/matching``: the leads that arrived in the period, of the
    sources and owners given; a dry run writes nothing; a malformed filter is a 422 naming
    its field and changes nothing."""
    world = sequence_world()
    client = served(world)
    body = arrived(world, ALICE)
    arrived(world, BOB)
    url = "/api/sequences/nurture/enrollments/matching"
    before = full_snapshot(world.flow)
    dry = client.post(url, json={**body, "owners": None, "dryRun": True}, headers=as_(ADMIN))
    assert dry.status_code == 200, dry.text
    assert (dry.json()["entering"], dry.json()["dryRun"]) == (2, True)
    assert full_snapshot(world.flow) == before
    for bad, field in (
        ({**body, "arrivedBefore": body["arrivedFrom"]}, None),
        ({**body, "arrivedFrom": "2026-01-05T09:00:00"}, "arrivedFrom"),
        ({**body, "sources": []}, "sources"),
        ({**body, "owners": ["not an id"]}, "owners"),
        ({**body, "extra": 1}, "extra"),
    ):
        answer = client.post(url, json=bad, headers=as_(ADMIN))
        assert answer.status_code == 422, answer.text
        if field is not None:
            assert answer.json()["field"].startswith(field)
    assert full_snapshot(world.flow) == before
    done = client.post(url, json=body, headers=as_(ALICE))
    assert done.status_code == 200, done.text
    assert [(o["opportunityId"], o["what"]) for o in done.json()["outcomes"]] == [
        ("new-alice", "enrolled")
    ]
    taken = client.post(url, json={**body, "owners": None}, headers=as_(ALICE))
    assert taken.status_code == 403  # bob's lead is not hers: nothing written
    again = client.post(url, json={**body, "sources": ["phone"]}, headers=as_(ADMIN))
    assert again.status_code == 200 and again.json()["outcomes"] == []
