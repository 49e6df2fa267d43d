"""The rule format's JSON Schema (generated from a flow's registries, served by the router) and
the router's OpenAPI description: the seed's paths, response models, documented errors; the
request models held to the library's models so they cannot drift apart."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, get_args

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest
from fastapi import FastAPI, Header
from fastapi.testclient import TestClient
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from leadflow import (
    Activity,
    FollowUpRule,
    HandlerRegistry,
    LeadFlow,
    OperatorRegistry,
    Outcome,
    Principal,
    Role,
    default_rules,
)
from leadflow.contrib.fastapi import router, rule_schema
from leadflow.contrib.fastapi.bodies import ActivityCreate, RulePatch
from leadflow.contrib.fastapi.filters import ActivityListQuery, SortName
from leadflow.queries import ActivityFilter, SortField

SEED_ENDPOINTS = {
    ("POST", "/api/lead-activities"),
    ("GET", "/api/lead-activities"),
    ("GET", "/api/lead-activities/opportunity/{opportunityId}"),
    ("GET", "/api/lead-activities/customer/{customerId}"),
    ("GET", "/api/lead-activities/pending"),
    ("GET", "/api/lead-activities/overdue"),
    ("GET", "/api/lead-activities/statistics"),
    ("GET", "/api/lead-activities/timeline/{opportunityId}"),
    ("GET", "/api/lead-activities/{activityId}"),
    ("PATCH", "/api/lead-activities/{activityId}/complete"),
    ("DELETE", "/api/lead-activities/{activityId}"),
    ("POST", "/api/follow-up-rules"),
    ("GET", "/api/follow-up-rules"),
    ("GET", "/api/follow-up-rules/active"),
    ("GET", "/api/follow-up-rules/{ruleId}"),
    ("PATCH", "/api/follow-up-rules/{ruleId}"),
    ("DELETE", "/api/follow-up-rules/{ruleId}"),
    ("POST", "/api/follow-up-rules/{ruleId}/test"),
}
EXTRA_ENDPOINTS = {
    ("PATCH", "/api/lead-activities/{activityId}/reschedule"),
    ("PATCH", "/api/lead-activities/{activityId}/snooze"),
    ("PATCH", "/api/lead-activities/{activityId}/reassign"),
    ("PATCH", "/api/lead-activities/{activityId}/cancel"),
    ("PATCH", "/api/lead-activities/{activityId}"),
    ("GET", "/api/follow-up-rules/schema"),
    ("GET", "/api/scheduled-actions/parked"),
    ("POST", "/api/scheduled-actions/{actionId}/retry"),
    ("GET", "/api/audit-trail"),
}
SEQUENCE_ENDPOINTS = {
    ("POST", "/api/sequences"),
    ("GET", "/api/sequences"),
    ("GET", "/api/sequences/schema"),
    ("GET", "/api/sequences/{sequenceId}"),
    ("POST", "/api/sequences/{sequenceId}/publish"),
    ("POST", "/api/sequences/{sequenceId}/pause"),
    ("POST", "/api/sequences/{sequenceId}/resume"),
    ("POST", "/api/sequences/{sequenceId}/archive"),
    ("POST", "/api/sequences/{sequenceId}/enrollments"),
    ("POST", "/api/sequences/{sequenceId}/enrollments/matching"),
    ("GET", "/api/sequences/{sequenceId}/report"),
    ("DELETE", "/api/enrollments/{enrollmentId}"),
    ("GET", "/api/opportunities/{opportunityId}/enrollments"),
    ("GET", "/api/opportunities/{opportunityId}/timeline"),
}


class TicketParams(BaseModel):
    """Open a ticket in ``queue``."""

    queue: str
    urgent: bool = False


def _ticket(ctx: Any) -> None:
    return None


def ticketing_flow() -> LeadFlow:
    handlers = HandlerRegistry.default()
    handlers.register("open_ticket", _ticket, params=TicketParams)
    operators = OperatorRegistry.default()
    operators.register("divisible_by", lambda a, b: a % b == 0, description="a multiple of")
    return LeadFlow.in_memory(handlers=handlers, operators=operators)


def validator(flow: LeadFlow) -> Any:
    schema = rule_schema(flow)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(check: Any, document: dict[str, Any]) -> list[str]:
    return [e.message for e in check.iter_errors(document)]


def _doc(rule: FollowUpRule) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(rule.model_dump_json(by_alias=True, exclude_none=True))
    return document


RULE = {
    "name": "Ticket for big quotes",
    "trigger": {
        "eventType": "estimate.created",
        "conditions": [
            {"any": [{"field": "amount", "operator": "divisible_by", "value": 100},
                     {"not": {"field": "vip", "operator": "exists"}}]},
        ],
    },
    "actions": [
        {"actionType": "open_ticket", "delay": {"amount": 2, "unit": "business_days"},
         "params": {"queue": "sales"}},
        {"actionType": "create_activity", "subject": "Call", "activityType": "call",
         "params": {"dueWithinHours": 4}},
        {"actionType": "send_notification", "template": "quote", "params": {"any": "data"}},
    ],
}  # fmt: skip


def test_every_default_rule_is_valid_under_the_schema() -> None:
    check = validator(LeadFlow.in_memory())
    for rule in default_rules():
        assert errors(check, _doc(rule)) == [], rule.rule_id


def test_the_schema_follows_the_flows_registries() -> None:
    check = validator(ticketing_flow())
    assert errors(check, RULE) == []
    # ... and the flow agrees: the same document loads.
    ticketing_flow().rules.create(FollowUpRule.model_validate(RULE))
    plain = validator(LeadFlow.in_memory())
    assert errors(plain, RULE)  # no such operator nor action type in a default flow
    schema = rule_schema(ticketing_flow())
    operators = schema["$defs"]["condition"]["properties"]["operator"]["oneOf"]
    assert {"const": "divisible_by", "description": "a multiple of"} in operators
    assert schema["$defs"]["action.open_ticket"]["properties"]["params"]["required"] == ["queue"]
    assert "estimate.created" in schema["$defs"]["trigger"]["properties"]["eventType"]["enum"]


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r["actions"][0]["params"].pop("queue"),
        lambda r: r["actions"][0]["params"].update(queue=3),
        lambda r: r["actions"][1].pop("subject"),
        lambda r: r["actions"][1].update(activityType="nap"),
        lambda r: r["actions"][1].update(template="x"),  # create_activity takes no template
        lambda r: r["actions"][2].pop("template"),
        lambda r: r["actions"][0].update(actionType="teleport"),
        lambda r: r["actions"][0].update(delay=-1),
        lambda r: r["trigger"]["conditions"][0]["any"][0].update(operator="resembles"),
        lambda r: r["trigger"]["conditions"][0]["any"][0].update(field="a..b"),
        lambda r: r["trigger"]["conditions"].append({"all": [], "any": []}),
        lambda r: r["trigger"].update(eventType="nothing.happened"),
        lambda r: r.update(actions=[]),
        lambda r: r.update(colour="red"),
        lambda r: r.pop("name"),
    ],
)
def test_the_schema_refuses_what_the_flow_refuses(change: Any) -> None:
    document = json.loads(json.dumps(RULE))
    change(document)
    assert errors(validator(ticketing_flow()), document)
    with pytest.raises(ValueError):  # ValidationError and RuleValidationError alike
        ticketing_flow().rules.create(FollowUpRule.model_validate(document))


def test_rule_schema_takes_operations_and_refuses_anything_else() -> None:
    from leadflow import Operations

    flow = LeadFlow.in_memory()
    assert rule_schema(Operations(flow)) == rule_schema(flow)
    assert rule_schema(flow) is not rule_schema(flow)
    with pytest.raises(TypeError):
        rule_schema("flow")  # type: ignore[arg-type]


def _who(x_role: str | None = Header(default=None)) -> Principal | None:
    return None if x_role is None else Principal("u-1", Role(x_role))


@pytest.fixture(scope="module")
def served() -> tuple[LeadFlow, FastAPI]:
    flow = ticketing_flow()
    app = FastAPI()
    app.include_router(router(flow, principal=_who))
    return flow, app


def test_the_router_serves_the_schema_to_any_signed_in_user(
    served: tuple[LeadFlow, FastAPI],
) -> None:
    flow, app = served
    client = TestClient(app)
    answer = client.get("/api/follow-up-rules/schema", headers={"x-role": "sales"})
    assert answer.status_code == 200 and answer.json() == rule_schema(flow)
    assert client.get("/api/follow-up-rules/schema").status_code == 401


def test_openapi_lists_the_seed_endpoints_with_models_and_errors(
    served: tuple[LeadFlow, FastAPI],
) -> None:
    openapi = served[1].openapi()
    found = {
        (method.upper(), path)
        for path, operations in openapi["paths"].items()
        for method in operations
    }
    from .test_contrib_fastapi_analytics import ANALYTICS_ENDPOINTS

    assert found == SEED_ENDPOINTS | EXTRA_ENDPOINTS | SEQUENCE_ENDPOINTS | ANALYTICS_ENDPOINTS
    assert len([e for e in SEED_ENDPOINTS if "lead-activities" in e[1]]) == 11
    assert len([e for e in SEED_ENDPOINTS if "follow-up-rules" in e[1]]) == 7
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            success = next(code for code in responses if code.startswith("2"))
            if success != "204":
                assert "schema" in responses[success]["content"]["application/json"], path
            for code in ("401", "403", "404", "409", "422"):
                assert responses[code]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"
                }, (method, path, code)
    schemas = openapi["components"]["schemas"]
    assert "ActivityCreate" in schemas and "CompletionOut" in schemas
    for name in ("RescheduleIn", "SnoozeIn", "ReassignIn", "CancelIn", "ActivityEdit", "ChangeOut"):
        assert name in schemas, name
    assert set(schemas["ActivityEdit"]["properties"]) == {
        "subject", "description", "priority", "expectedVersion"
    }  # fmt: skip
    assert {"SequenceDefinition-Input", "EnrollIn", "EnrollmentReportOut"} <= set(schemas)


def test_request_models_follow_the_library_models() -> None:
    guarded = {"open_key", "created_by", "updated_by", "created_at", "updated_at", "version",
               "completed_by", "cancelled_at", "cancelled_by", "cancel_reason"}  # fmt: skip
    assert set(ActivityCreate.model_fields) == set(Activity.model_fields) - guarded
    fixed = {"rule_id", "version", "created_by", "updated_by", "created_at", "updated_at"}
    assert set(RulePatch.model_fields) == set(FollowUpRule.model_fields) - fixed
    attributes = set(get_args(SortField))
    assert set(get_args(SortName)) == attributes | {to_camel(a) for a in attributes}


def test_the_filter_parameters_are_the_activity_filters_fields(
    served: tuple[LeadFlow, FastAPI],
) -> None:
    """The list and statistics routes take exactly ActivityFilter's criteria (camelCase), the
    list also its sort and page: the query is derived from the filter, so a criterion added
    there is served here, with its constraints."""
    openapi = served[1].openapi()

    def parameters(path: str) -> dict[str, Any]:
        operation = openapi["paths"][path]["get"]
        return {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}

    criteria = {to_camel(name) for name in ActivityFilter.model_fields}
    assert set(parameters("/api/lead-activities/statistics")) == criteria
    listed = parameters("/api/lead-activities")
    assert set(listed) == criteria | {"sort", "descending", "limit", "cursor"}
    types = listed["activityTypes"]["schema"]["anyOf"][0]
    assert types["type"] == "array" and types["maxItems"] == 100
    assert "judged" in listed["asOf"]["description"]
    query = ActivityListQuery.model_validate({"outcomes": ["successful"], "state": "overdue"})
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    got = ActivityFilter.model_validate(query.filter(now))
    assert got.outcomes == (Outcome.SUCCESSFUL,) and got.as_of == now
