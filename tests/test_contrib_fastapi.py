"""The FastAPI router over HTTP: every endpoint against every role (the answers derived from the
library's policy table, so the router cannot drift from it), every endpoint with valid and
invalid data, the error mapping, and host overrides of the policy reaching the routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Header
from fastapi.testclient import TestClient

from leadflow import Principal, Role
from leadflow.access import DEFAULT_POLICY, OPERATIONS, Operations, Policy
from leadflow.contrib.fastapi import events_router, router

from .access_support import ALICE, BOB, BY_ROLE, World, build_world
from .helpers import T0


def principal_from_headers(
    x_user: str | None = Header(default=None), x_role: str | None = Header(default=None)
) -> Principal | None:
    """The tests' stand-in for a host's authentication: who the headers say."""
    if x_user is None or x_role is None:
        return None
    return Principal(x_user, Role(x_role))


def as_(principal: Principal) -> dict[str, str]:
    return {"x-user": principal.user_id, "x-role": principal.role.value}


@dataclass
class Api:
    world: World
    client: TestClient

    def call(self, method: str, path: str, who: Principal | None, **kwargs: Any) -> Any:
        headers = as_(who) if who is not None else {}
        return self.client.request(method, path, headers=headers, **kwargs)


_SERVED: list[tuple[Operations, TestClient]] = []


def _served() -> tuple[Operations, TestClient]:
    """One app for the module (building a router takes FastAPI ~0.1 s): the routes call the
    operations object they were given, whose flow and policy each test sets."""
    if not _SERVED:
        ops = Operations(build_world(parked=False).flow)
        app = FastAPI()
        app.include_router(router(ops, principal=principal_from_headers))
        app.include_router(events_router(ops, principal=principal_from_headers))
        _SERVED.append((ops, TestClient(app)))
    return _SERVED[0]


def make_api(policy: Policy = DEFAULT_POLICY, **world: Any) -> Api:
    w = build_world(policy=policy, **world)
    ops, client = _served()
    ops.flow, ops.policy = w.flow, w.ops.policy
    return Api(w, client)


@pytest.fixture
def api() -> Api:
    return make_api()


# --------------------------------------------------------------------------- the role matrix

NEW_RULE = {
    "ruleId": "http-rule",
    "name": "http",
    "trigger": {"eventType": "estimate.created"},
    "actions": [{"actionType": "send_notification", "template": "t"}],
}
SAMPLE = {"eventType": "estimate.created", "payload": {"opportunityId": "opp-1"}}

Request = Callable[[World, Principal], tuple[str, str, dict[str, Any]]]


def _own(p: Principal) -> str:
    return p.user_id


ROUTES: dict[str, tuple[str, int, Request]] = {
    # route: (the policy operation that decides it, status on success, the request on the
    # principal's own things)
    "create_activity": (
        "activity.create",
        201,
        lambda w, p: (
            "POST",
            "/api/lead-activities",
            {
                "json": {
                    "opportunityId": f"opp-{_own(p)}",
                    "activityType": "note",
                    "subject": "n",
                    "assignedTo": _own(p),
                }
            },
        ),
    ),
    "list_activities": ("activity.read", 200, lambda w, p: ("GET", "/api/lead-activities", {})),
    "activities_for_opportunity": (
        "activity.read",
        200,
        lambda w, p: ("GET", f"/api/lead-activities/opportunity/opp-{_own(p)}", {}),
    ),
    "activities_for_customer": (
        "activity.read",
        200,
        lambda w, p: ("GET", "/api/lead-activities/customer/cust-1", {}),
    ),
    "pending_activities": (
        "activity.read",
        200,
        lambda w, p: ("GET", "/api/lead-activities/pending", {}),
    ),
    "overdue_activities": (
        "activity.read",
        200,
        lambda w, p: ("GET", "/api/lead-activities/overdue", {}),
    ),
    "activity_statistics": (
        "activity.statistics",
        200,
        lambda w, p: ("GET", "/api/lead-activities/statistics", {}),
    ),
    "activity_timeline": (
        "activity.read",
        200,
        lambda w, p: ("GET", f"/api/lead-activities/timeline/opp-{_own(p)}", {}),
    ),
    "get_activity": (
        "activity.read",
        200,
        lambda w, p: ("GET", f"/api/lead-activities/act-{_own(p)}", {}),
    ),
    "complete_activity": (
        "activity.complete",
        200,
        lambda w, p: (
            "PATCH",
            f"/api/lead-activities/act-{_own(p)}/complete",
            {"json": {"outcome": "successful"}},
        ),
    ),
    "reschedule_activity": (
        "activity.update",
        200,
        lambda w, p: (
            "PATCH",
            f"/api/lead-activities/act-{_own(p)}/reschedule",
            {"json": {"dueDate": "2026-02-01T09:00:00Z", "expectedVersion": 1}},
        ),
    ),
    "snooze_activity": (
        "activity.update",
        200,
        lambda w, p: (
            "PATCH",
            f"/api/lead-activities/act-{_own(p)}/snooze",
            {"json": {"duration": "PT2H"}},
        ),
    ),
    "reassign_activity": (
        "activity.reassign",
        200,
        lambda w, p: (
            "PATCH",
            f"/api/lead-activities/act-{_own(p)}/reassign",
            {"json": {"assignedTo": "carol"}},
        ),
    ),
    "cancel_activity": (
        "activity.cancel",
        200,
        lambda w, p: ("PATCH", f"/api/lead-activities/act-{_own(p)}/cancel", {}),
    ),
    "edit_activity": (
        "activity.update",
        200,
        lambda w, p: (
            "PATCH",
            f"/api/lead-activities/act-{_own(p)}",
            {"json": {"subject": "new subject", "priority": "urgent"}},
        ),
    ),
    "delete_activity": (
        "activity.delete",
        204,
        lambda w, p: ("DELETE", f"/api/lead-activities/act-{_own(p)}", {}),
    ),
    "create_rule": (
        "rule.write",
        201,
        lambda w, p: ("POST", "/api/follow-up-rules", {"json": NEW_RULE}),
    ),
    "list_rules": ("rule.read", 200, lambda w, p: ("GET", "/api/follow-up-rules", {})),
    "list_active_rules": (
        "rule.read",
        200,
        lambda w, p: ("GET", "/api/follow-up-rules/active", {}),
    ),
    "get_rule": ("rule.read", 200, lambda w, p: ("GET", "/api/follow-up-rules/delayed", {})),
    "update_rule": (
        "rule.write",
        200,
        lambda w, p: ("PATCH", "/api/follow-up-rules/delayed", {"json": {"priority": 3}}),
    ),
    "delete_rule": (
        "rule.write",
        200,
        lambda w, p: ("DELETE", "/api/follow-up-rules/delayed", {}),
    ),
    "test_rule": (
        "rule.test",
        200,
        lambda w, p: ("POST", "/api/follow-up-rules/delayed/test", {"json": SAMPLE}),
    ),
    "list_parked_actions": (
        "action.read_parked",
        200,
        lambda w, p: ("GET", "/api/scheduled-actions/parked", {}),
    ),
    "retry_action": (
        "action.retry",
        200,
        lambda w, p: ("POST", f"/api/scheduled-actions/{w.parked_id}/retry", {}),
    ),
    "audit_trail": ("audit.read", 200, lambda w, p: ("GET", "/api/audit-trail", {})),
}


def test_every_route_is_in_the_matrix() -> None:
    api = router(build_world(parked=False).ops, principal=principal_from_headers)
    names = {getattr(r, "name", "") for r in api.routes}
    from .test_contrib_fastapi_analytics import ANALYTICS_ROUTES  # tested on their own
    from .test_contrib_fastapi_sequences import SEQUENCE_ROUTES  # their own matrix

    schemas = {"get_rule_schema", "get_sequence_schema"}
    assert names == set(ROUTES) | schemas | set(SEQUENCE_ROUTES) | ANALYTICS_ROUTES
    assert {op for op, _, _ in ROUTES.values()} <= set(OPERATIONS)


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_route_against_role_follows_the_policy(route: str, role: Role) -> None:
    api = make_api()
    principal = BY_ROLE[role]
    operation, success, request = ROUTES[route]
    method, path, kwargs = request(api.world, principal)
    answer = api.call(method, path, principal, **kwargs)
    if role in DEFAULT_POLICY.table[operation]:
        assert answer.status_code == success, answer.text
    else:
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] == "PermissionDeniedError"
        assert operation in answer.json()["detail"]


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_no_principal_is_401_before_anything_runs(route: str) -> None:
    api = make_api()
    method, path, kwargs = ROUTES[route][2](api.world, ALICE)
    answer = api.call(method, path, None, **kwargs)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {"detail": "not authenticated", "error": "NotAuthenticatedError"}


def test_the_hosts_policy_reaches_the_routes() -> None:
    # Dispatchers may complete, admins may no longer write rules: the routes follow.
    policy = DEFAULT_POLICY.with_overrides(
        activity__complete={Role.SUPER_ADMIN, Role.ADMIN, Role.DISPATCHER, Role.SALES},
        rule__write={Role.SUPER_ADMIN},
    )
    api = make_api(policy)
    dispatcher, admin = BY_ROLE[Role.DISPATCHER], BY_ROLE[Role.ADMIN]
    done = api.call("PATCH", "/api/lead-activities/act-disp-1/complete", dispatcher, json={})
    assert done.status_code == 200 and done.json()["activity"]["completedBy"] == "disp-1"
    refused = api.call("POST", "/api/follow-up-rules", admin, json=NEW_RULE)
    assert refused.status_code == 403 and "rule.write" in refused.json()["detail"]


def test_a_flow_is_served_with_the_default_policy() -> None:
    world = build_world(parked=False)
    app = FastAPI()
    app.include_router(router(world.flow, principal=principal_from_headers, prefix="/v1"))
    client = TestClient(app)
    assert client.get("/v1/follow-up-rules", headers=as_(ALICE)).status_code == 403
    assert client.get("/v1/follow-up-rules", headers=as_(BY_ROLE[Role.ADMIN])).status_code == 200


def test_router_refuses_what_is_not_a_flow_or_a_dependency() -> None:
    with pytest.raises(TypeError):
        router("flow", principal=principal_from_headers)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        router(build_world(parked=False).flow, principal="me")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- activities

ADMIN = BY_ROLE[Role.ADMIN]
DISPATCHER = BY_ROLE[Role.DISPATCHER]


def _error(answer: Any, status: int, error: str, field: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["error"] == error, body
    if field is not None:
        assert body["field"] == field, body
    return body


def test_create_activity_stamps_the_principal(api: Api) -> None:
    answer = api.call(
        "POST",
        "/api/lead-activities",
        ALICE,
        json={
            "opportunityId": "opp-alice",
            "activityType": "call",
            "subject": "Logged call",
            "completedDate": (T0 - timedelta(minutes=5)).isoformat(),
            "outcome": "no_answer",
            "metadata": {"phoneDuration": 12},
        },
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["assignedTo"], body["createdBy"], body["completedBy"]) == ("alice",) * 3
    assert body["metadata"] == {"phoneDuration": 12.0}
    stored = api.world.flow.storage.activities.get(body["activityId"])
    assert stored.subject == "Logged call"


@pytest.mark.parametrize(
    ("document", "status", "error", "field"),
    [
        ({"activityType": "note", "subject": "s"}, 422, "RequestValidationError", "opportunityId"),
        ({"opportunityId": "opp-alice", "activityType": "nap", "subject": "s"}, 422,
         "RequestValidationError", "activityType"),
        ({"opportunityId": "opp-alice", "activityType": "note", "subject": ""}, 422,
         "RequestValidationError", "subject"),
        ({"opportunityId": "opp-alice", "activityType": "note", "subject": "s",
          "dueDate": "2026-01-05T10:00:00"}, 422, "RequestValidationError", "dueDate"),
        ({"opportunityId": "opp-alice", "activityType": "note", "subject": "s",
          "createdBy": "bob"}, 422, "RequestValidationError", "createdBy"),
        ({"opportunityId": "opp-alice", "activityType": "note", "subject": "s",
          "metadata": {"automationRuleId": "default-quote-follow-up"}}, 422,
         "InvalidInputError", "metadata.automationRuleId"),
        ({"opportunityId": "opp-alice", "activityType": "note", "subject": "s",
          "outcome": "successful"}, 422, "ValidationError", None),
        ({"opportunityId": "opp-$x", "activityType": "note", "subject": "s"}, 422,
         "RequestValidationError", "opportunityId"),
        ({"opportunityId": "opp-bob", "activityType": "note", "subject": "s"}, 403,
         "PermissionDeniedError", None),
        ({"opportunityId": "opp-alice", "activityType": "note", "subject": "s",
          "assignedTo": "bob"}, 403, "PermissionDeniedError", None),
        ({"activityId": "mine", "opportunityId": "opp-alice", "activityType": "note",
          "subject": "s"}, 403, "PermissionDeniedError", None),
    ],
)  # fmt: skip
def test_create_activity_refuses_bad_input_and_writes_nothing(
    api: Api, document: dict[str, Any], status: int, error: str, field: str | None
) -> None:
    before = api.world.flow.storage.activities.list(limit=1000).items
    _error(api.call("POST", "/api/lead-activities", ALICE, json=document), status, error, field)
    assert api.world.flow.storage.activities.list(limit=1000).items == before


def test_create_activity_conflicts_and_reserved_ids(api: Api) -> None:
    doc = {"opportunityId": "opp-alice", "activityType": "note", "subject": "s"}
    taken = api.call("POST", "/api/lead-activities", ADMIN, json={**doc, "activityId": "act-bob"})
    _error(taken, 409, "DuplicateError")
    reserved = api.call("POST", "/api/lead-activities", ADMIN, json={**doc, "activityId": "AUTO-1"})
    _error(reserved, 422, "InvalidInputError", "activityId")
    _error(api.call("POST", "/api/lead-activities", ADMIN, content=b"{"), 422,
           "RequestValidationError")  # fmt: skip


@pytest.mark.parametrize("space", [" ", "\t", "\n", "\u3000", "\u00a0", " \r\n"])
def test_reserved_ids_behind_whitespace_are_refused(api: Api, space: str) -> None:
    doc = {"opportunityId": "opp-alice", "activityType": "note", "subject": "s"}
    for who in (ADMIN, DISPATCHER):
        for activity_id in (f"{space}auto-1", f"{space}AUTO-2{space}"):
            answer = api.call(
                "POST", "/api/lead-activities", who, json={**doc, "activityId": activity_id}
            )
            assert answer.status_code == 422, answer.text  # the body's id pattern, or the check
            assert answer.json()["field"] == "activityId"
    assert not [
        a
        for a in api.world.flow.storage.activities.list(limit=1000).items
        if a.activity_id.lower() in ("auto-1", "auto-2")
    ]


def test_list_filters_sorts_and_pages(api: Api) -> None:
    first = api.call(
        "GET",
        "/api/lead-activities",
        ADMIN,
        params={"customerId": "cust-1", "sort": "dueDate", "descending": "true", "limit": 2},
    )
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 2 and page["nextCursor"]
    rest = api.call(
        "GET",
        "/api/lead-activities",
        ADMIN,
        params={"customerId": "cust-1", "sort": "dueDate", "descending": "true", "limit": 50,
                "cursor": page["nextCursor"]},
    )  # fmt: skip
    ids = [a["activityId"] for a in page["items"] + rest.json()["items"]]
    assert sorted(ids) == sorted(f"act-{u}" for u in ("root", "admin-1", "disp-1", "alice", "bob"))
    assert rest.json().get("nextCursor") is None
    # Sales see their own only, whatever they ask for.
    mine = api.call("GET", "/api/lead-activities", ALICE, params={"activityTypes": ["call"]})
    assert [a["activityId"] for a in mine.json()["items"]] == ["act-alice"]
    theirs = api.call("GET", "/api/lead-activities", ALICE, params={"assignedTo": "bob"})
    assert theirs.json()["items"] == []
    # A state is judged now unless asOf is given.
    api.world.clock.advance(hours=2)
    overdue = api.call("GET", "/api/lead-activities", ALICE, params={"state": "overdue"})
    assert [a["activityId"] for a in overdue.json()["items"]] == ["act-alice"]
    then = api.call(
        "GET", "/api/lead-activities", ALICE, params={"state": "overdue", "asOf": T0.isoformat()}
    )
    assert then.json()["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "sleeping"}, "state"),
        ({"sort": "subject"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"dueFrom": "yesterday"}, "dueFrom"),
        ({"dueFrom": "2026-01-05T10:00:00"}, "dueFrom"),
        ({"activityTypes": ["nap"]}, "activityTypes.0"),
        ({"assignedTo": "$ne"}, "assignedTo"),
        ({"bogus": "1"}, "bogus"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_list_refuses_bad_queries(api: Api, params: dict[str, Any], field: str) -> None:
    answer = api.call("GET", "/api/lead-activities", ADMIN, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field


def test_reads_by_opportunity_customer_timeline_and_one(api: Api) -> None:
    by_opp = api.call("GET", "/api/lead-activities/opportunity/opp-bob", ADMIN).json()
    assert [a["activityId"] for a in by_opp] == ["act-bob"]
    assert api.call("GET", "/api/lead-activities/opportunity/opp-bob", ALICE).json() == []
    by_customer = api.call("GET", "/api/lead-activities/customer/cust-1", ALICE).json()
    assert [a["activityId"] for a in by_customer] == ["act-alice"]
    timeline = api.call("GET", "/api/lead-activities/timeline/opp-alice", ALICE).json()
    assert [a["activityId"] for a in timeline] == ["act-alice"]
    one = api.call("GET", "/api/lead-activities/act-alice", ALICE).json()
    assert one["subject"] == "call for alice" and "openKey" not in one
    hidden = api.call("GET", "/api/lead-activities/act-bob", ALICE)
    missing = api.call("GET", "/api/lead-activities/act-nobody", ALICE)
    assert _error(hidden, 404, "NotFoundError")["detail"] == "activity 'act-bob' not found"
    assert missing.json()["detail"] == "activity 'act-nobody' not found"
    for path in (
        "/api/lead-activities/opportunity/$where",
        "/api/lead-activities/customer/a%20b",
        "/api/lead-activities/timeline/-x",
        "/api/lead-activities/%24ne",
    ):
        answer = api.call("GET", path, ADMIN)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["field"] in {"opportunityId", "customerId", "activityId"}


def test_pending_overdue_and_statistics(api: Api) -> None:
    pending = api.call("GET", "/api/lead-activities/pending", ALICE).json()
    assert [a["activityId"] for a in pending] == ["act-alice"]
    assert api.call("GET", "/api/lead-activities/overdue", ALICE).json() == []
    api.world.clock.advance(hours=2)
    overdue = api.call("GET", "/api/lead-activities/overdue", DISPATCHER, params={"limit": 2})
    assert len(overdue.json()) == 2
    bobs = api.call("GET", "/api/lead-activities/overdue", ADMIN, params={"assignedTo": "bob"})
    assert [a["activityId"] for a in bobs.json()] == ["act-bob"]
    _error(api.call("GET", "/api/lead-activities/overdue", ALICE, params={"assignedTo": "bob"}),
           403, "PermissionDeniedError")  # fmt: skip
    _error(api.call("GET", "/api/lead-activities/pending", ADMIN, params={"limit": 5000}),
           422, "RequestValidationError", "limit")  # fmt: skip
    stats = api.call("GET", "/api/lead-activities/statistics", ALICE).json()
    assert (stats["total"], stats["byState"]) == (1, {"overdue": 1})
    team = api.call("GET", "/api/lead-activities/statistics", DISPATCHER).json()
    everything = api.world.flow.storage.activities.list(limit=1000).items
    assert team["total"] == len(everything) and team["byAssignee"]["bob"] == 1
    _error(api.call("GET", "/api/lead-activities/statistics", ALICE, params={"assignedTo": "bob"}),
           403, "PermissionDeniedError")  # fmt: skip
    _error(api.call("GET", "/api/lead-activities/statistics", ADMIN, params={"state": "x"}),
           422, "RequestValidationError", "state")  # fmt: skip


def test_complete_feeds_the_rules_and_refuses_twice(api: Api) -> None:
    answer = api.call(
        "PATCH",
        "/api/lead-activities/act-alice/complete",
        ALICE,
        json={"outcome": "callback_requested", "expectedVersion": 1},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["activity"]["completedBy"] == "alice"
    assert body["followUp"]["matchedRules"] == ["default-callback-requested"]
    [run] = body["followUp"]["executed"]
    assert run["actionType"] == "create_activity" and run["ok"]
    _error(api.call("PATCH", "/api/lead-activities/act-alice/complete", ALICE, json={}),
           409, "InvalidStateError")  # fmt: skip
    stale = api.call(
        "PATCH", "/api/lead-activities/act-bob/complete", BOB, json={"expectedVersion": 7}
    )
    _error(stale, 409, "StaleWriteError")
    no_body = api.call("PATCH", "/api/lead-activities/act-bob/complete", BOB)
    assert no_body.status_code == 200 and "outcome" not in no_body.json()["activity"]


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/lead-activities/act-alice/complete", {"outcome": "maybe"}, 422, "outcome"),
        ("/api/lead-activities/act-alice/complete", {"expectedVersion": 0}, 422,
         "expectedVersion"),
        ("/api/lead-activities/act-alice/complete", {"completedBy": "bob"}, 422, "completedBy"),
        ("/api/lead-activities/act-alice/complete", [1], 422, None),
        ("/api/lead-activities/act-bob/complete", {}, 404, None),
        ("/api/lead-activities/act-gone/complete", {}, 404, None),
    ],
)  # fmt: skip
def test_complete_refuses_bad_input(
    api: Api, path: str, body: Any, status: int, field: str | None
) -> None:
    answer = api.call("PATCH", path, ALICE, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json().get("field") == field
    assert api.world.flow.storage.activities.get("act-alice").completed_date is None


def test_delete_activity(api: Api) -> None:
    answer = api.call("DELETE", "/api/lead-activities/act-bob", ADMIN)
    assert answer.status_code == 204 and answer.content == b""
    _error(api.call("GET", "/api/lead-activities/act-bob", ADMIN), 404, "NotFoundError")
    _error(api.call("DELETE", "/api/lead-activities/act-bob", ADMIN), 404, "NotFoundError")
    _error(api.call("DELETE", "/api/lead-activities/$x", ADMIN), 422, "InvalidInputError",
           "activityId")  # fmt: skip
