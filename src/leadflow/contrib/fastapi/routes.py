# Depends() as a parameter default is how FastAPI declares a dependency whose callable is only
# known when the router is built (an annotation could not name it: FastAPI resolves string
# annotations in the module's globals).
# ruff: noqa: B008
"""The router factories: the seed's endpoints on :class:`~leadflow.access.Operations`, and the
endpoint through which a host posts its own events.

Every route calls exactly one role-checked operation with the principal the host's dependency
yields; who may do what is the operations' policy, never decided here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from ...access import Operations, Principal, Role
from ...errors import PermissionDeniedError
from ...models import Activity, FollowUpRule
from ...queries import ActivityStatistics
from ...records import AuditEntry, ScheduledAction
from ...runtime.flow import LeadFlow
from ...runtime.schema import rule_schema
from .analytics_routes import analytics_routes
from .bodies import (
    ActivityCreate,
    ActivityEdit,
    ActivityPage,
    AuditQuery,
    CancelIn,
    ChangeOut,
    CompletionIn,
    CompletionOut,
    EventIn,
    HandleOut,
    LimitQuery,
    ParkedQuery,
    PendingQuery,
    ReassignIn,
    RescheduleIn,
    RuleChangeOut,
    RulePatch,
    RuleTestOut,
    RuleWriteQuery,
    SnoozeIn,
)
from .errors import ERROR_RESPONSES, LeadflowRoute, NotAuthenticatedError
from .filters import ActivityListQuery, StatisticsQuery
from .sequence_routes import sequence_routes

__all__ = ["PrincipalDependency", "events_router", "router"]

PrincipalDependency = Callable[..., Any]
"""A FastAPI dependency (sync or async, with its own dependencies) that yields the caller's
:class:`~leadflow.Principal`, or ``None`` when nobody is authenticated (answered 401). It may
also raise ``HTTPException`` itself (e.g. 401 for a bad token, 429 from a rate limiter)."""

ActivityIdPath = Annotated[str, Path(alias="activityId")]
OpportunityIdPath = Annotated[str, Path(alias="opportunityId")]
CustomerIdPath = Annotated[str, Path(alias="customerId")]
RuleIdPath = Annotated[str, Path(alias="ruleId")]
ActionIdPath = Annotated[str, Path(alias="actionId")]

_ACTIVITIES = "lead-activities"
_RULES = "follow-up-rules"


def _operations(source: Operations | LeadFlow) -> Operations:
    if isinstance(source, Operations):
        return source
    if isinstance(source, LeadFlow):
        return Operations(source)
    raise TypeError("expected leadflow Operations or a LeadFlow")


def _current(dependency: PrincipalDependency) -> Callable[..., Principal]:
    if not callable(dependency):
        raise TypeError("principal must be a FastAPI dependency (a callable)")

    def current(found: Principal | None = Depends(dependency)) -> Principal:
        if found is None:
            raise NotAuthenticatedError
        if not isinstance(found, Principal):
            raise TypeError(f"the principal dependency returned {type(found).__name__}")
        return found

    return current


def router(
    source: Operations | LeadFlow,
    *,
    principal: PrincipalDependency,
    prefix: str = "/api",
    tags: Iterable[str] = ("leadflow",),
) -> APIRouter:
    """An ``APIRouter`` with the seed's endpoints (11 under ``/lead-activities``, 7 under
    ``/follow-up-rules``), the changes of an open activity (reschedule, snooze, reassign,
    cancel, edit), the rule schema, parked actions, the audit trail, the sequence routes
    (:mod:`~leadflow.contrib.fastapi.sequence_routes`) and the analytics routes
    (:mod:`~leadflow.contrib.fastapi.analytics_routes`), under ``prefix``.

    ``source`` is an :class:`~leadflow.access.Operations` (with the host's policy) or a
    :class:`~leadflow.LeadFlow` (the default policy). ``principal`` is the host's dependency
    yielding the caller's :class:`~leadflow.Principal` (``None``: 401). Errors are answered as
    :mod:`leadflow.contrib.fastapi.errors` maps them, whatever the app's handlers.
    """
    ops = _operations(source)
    api = APIRouter(
        prefix=prefix,
        tags=list(tags),
        route_class=LeadflowRoute,
        responses=dict(ERROR_RESPONSES),
    )
    current = _current(principal)
    _activity_routes(api, ops, current)
    _rule_routes(api, ops, current)
    _admin_routes(api, ops, current)
    sequence_routes(api, ops, current)  # /sequences, /enrollments, /opportunities/...
    analytics_routes(api, ops, current)  # /analytics/...
    return api


def _activity_routes(api: APIRouter, ops: Operations, current: Callable[..., Principal]) -> None:
    base = f"/{_ACTIVITIES}"
    opts: dict[str, Any] = {"response_model_exclude_none": True}

    @api.post(base, status_code=201, response_model=Activity, summary="Create activity", **opts)
    def create_activity(body: ActivityCreate, who: Principal = Depends(current)) -> Any:
        return ops.create_activity(who, body.given())

    @api.get(base, response_model=ActivityPage, summary="List activities (with filters)", **opts)
    def list_activities(
        query: Annotated[ActivityListQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        page = ops.list_activities(
            who,
            query.filter(ops.flow.now()),
            sort=query.sort_order(),
            limit=query.limit,
            cursor=query.cursor,
        )
        return ActivityPage(items=page.items, next_cursor=page.next_cursor)

    @api.get(
        f"{base}/opportunity/{{opportunityId}}",
        response_model=list[Activity],
        summary="Activities for opportunity",
        **opts,
    )
    def activities_for_opportunity(
        opportunity_id: OpportunityIdPath, who: Principal = Depends(current)
    ) -> Any:
        return ops.activities_for_opportunity(who, opportunity_id)

    @api.get(
        f"{base}/customer/{{customerId}}",
        response_model=list[Activity],
        summary="Activities for customer",
        **opts,
    )
    def activities_for_customer(
        customer_id: CustomerIdPath, who: Principal = Depends(current)
    ) -> Any:
        return ops.activities_for_customer(who, customer_id)

    @api.get(f"{base}/pending", response_model=list[Activity], summary="Pending follow-ups", **opts)
    def pending_activities(
        query: Annotated[LimitQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return ops.pending_activities(who, assigned_to=query.assigned_to, limit=query.limit)

    @api.get(f"{base}/overdue", response_model=list[Activity], summary="Overdue activities", **opts)
    def overdue_activities(
        query: Annotated[LimitQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return ops.overdue_activities(who, assigned_to=query.assigned_to, limit=query.limit)

    @api.get(
        f"{base}/statistics",
        response_model=ActivityStatistics,
        summary="Analytics & metrics",
        **opts,
    )
    def activity_statistics(
        query: Annotated[StatisticsQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return ops.activity_statistics(who, query.filter(ops.flow.now()))

    @api.get(
        f"{base}/timeline/{{opportunityId}}",
        response_model=list[Activity],
        summary="Chronological timeline",
        **opts,
    )
    def activity_timeline(
        opportunity_id: OpportunityIdPath, who: Principal = Depends(current)
    ) -> Any:
        return ops.activity_timeline(who, opportunity_id)

    @api.get(f"{base}/{{activityId}}", response_model=Activity, summary="Single activity", **opts)
    def get_activity(activity_id: ActivityIdPath, who: Principal = Depends(current)) -> Any:
        return ops.get_activity(who, activity_id)

    @api.patch(
        f"{base}/{{activityId}}/complete",
        response_model=CompletionOut,
        summary="Mark complete",
        **opts,
    )
    def complete_activity(
        activity_id: ActivityIdPath,
        body: CompletionIn | None = None,
        who: Principal = Depends(current),
    ) -> Any:
        body = body or CompletionIn()
        result = ops.complete_activity(
            who, activity_id, body.outcome, expected_version=body.expected_version
        )
        follow_up = HandleOut.of(result.follow_up) if result.follow_up is not None else None
        return CompletionOut(activity=result.activity, follow_up=follow_up)

    _change_routes(api, ops, current)

    @api.delete(
        f"{base}/{{activityId}}",
        status_code=204,
        response_class=Response,
        summary="Delete activity",
    )
    def delete_activity(activity_id: ActivityIdPath, who: Principal = Depends(current)) -> None:
        ops.delete_activity(who, activity_id)


def _change_routes(api: APIRouter, ops: Operations, current: Callable[..., Principal]) -> None:
    """The changes of an open activity: each answers the changed activity and its event."""
    base = f"/{_ACTIVITIES}/{{activityId}}"
    opts: dict[str, Any] = {"response_model": ChangeOut, "response_model_exclude_none": True}

    @api.patch(f"{base}/reschedule", summary="Reschedule (new due date)", **opts)
    def reschedule_activity(
        activity_id: ActivityIdPath, body: RescheduleIn, who: Principal = Depends(current)
    ) -> Any:
        return ChangeOut.of(
            ops.reschedule_activity(
                who, activity_id, body.due_date, expected_version=body.expected_version
            )
        )

    @api.patch(f"{base}/snooze", summary="Snooze (due date later)", **opts)
    def snooze_activity(
        activity_id: ActivityIdPath, body: SnoozeIn, who: Principal = Depends(current)
    ) -> Any:
        return ChangeOut.of(
            ops.snooze_activity(
                who,
                activity_id,
                duration=body.duration,
                until=body.until,
                expected_version=body.expected_version,
            )
        )

    @api.patch(f"{base}/reassign", summary="Reassign", **opts)
    def reassign_activity(
        activity_id: ActivityIdPath, body: ReassignIn, who: Principal = Depends(current)
    ) -> Any:
        return ChangeOut.of(
            ops.reassign_activity(
                who, activity_id, body.assigned_to, expected_version=body.expected_version
            )
        )

    @api.patch(f"{base}/cancel", summary="Cancel (kept in the timeline)", **opts)
    def cancel_activity(
        activity_id: ActivityIdPath, body: CancelIn | None = None, who: Principal = Depends(current)
    ) -> Any:
        body = body or CancelIn()
        return ChangeOut.of(
            ops.cancel_activity(
                who, activity_id, reason=body.reason, expected_version=body.expected_version
            )
        )

    @api.patch(base, summary="Edit subject, description, priority", **opts)
    def edit_activity(
        activity_id: ActivityIdPath, body: ActivityEdit, who: Principal = Depends(current)
    ) -> Any:
        return ChangeOut.of(
            ops.edit_activity(
                who, activity_id, body.changes(), expected_version=body.expected_version
            )
        )


def _rule_routes(api: APIRouter, ops: Operations, current: Callable[..., Principal]) -> None:
    base = f"/{_RULES}"
    opts: dict[str, Any] = {"response_model_exclude_none": True}

    @api.post(base, status_code=201, response_model=FollowUpRule, summary="Create rule", **opts)
    def create_rule(body: FollowUpRule, who: Principal = Depends(current)) -> Any:
        return ops.create_rule(who, body)

    @api.get(base, response_model=list[FollowUpRule], summary="List all rules", **opts)
    def list_rules(who: Principal = Depends(current)) -> Any:
        return ops.list_rules(who)

    @api.get(f"{base}/active", response_model=list[FollowUpRule], summary="Active rules", **opts)
    def list_active_rules(who: Principal = Depends(current)) -> Any:
        return ops.list_active_rules(who)

    @api.get(
        f"{base}/schema",
        response_model=dict[str, Any],
        summary="JSON Schema of the rule format",
        description="Generated from this flow's operators, event types and action types "
        "(with each action's params). Any authenticated caller may read it.",
    )
    def get_rule_schema(who: Principal = Depends(current)) -> Any:
        return rule_schema(ops.flow)

    @api.get(f"{base}/{{ruleId}}", response_model=FollowUpRule, summary="Single rule", **opts)
    def get_rule(rule_id: RuleIdPath, who: Principal = Depends(current)) -> Any:
        return ops.get_rule(who, rule_id)

    @api.patch(f"{base}/{{ruleId}}", response_model=RuleChangeOut, summary="Update rule", **opts)
    def update_rule(
        rule_id: RuleIdPath,
        body: RulePatch,
        query: Annotated[RuleWriteQuery, Query()],
        who: Principal = Depends(current),
    ) -> Any:
        change = ops.update_rule(
            who,
            rule_id,
            body.changes(),
            expected_version=query.expected_version,
            pending=query.pending,
        )
        return RuleChangeOut.of(change)

    @api.delete(f"{base}/{{ruleId}}", response_model=RuleChangeOut, summary="Delete rule", **opts)
    def delete_rule(
        rule_id: RuleIdPath,
        query: Annotated[PendingQuery, Query()],
        who: Principal = Depends(current),
    ) -> Any:
        return RuleChangeOut.of(ops.delete_rule(who, rule_id, pending=query.pending))

    @api.post(
        f"{base}/{{ruleId}}/test",
        response_model=RuleTestOut,
        summary="Test rule with sample data",
        description="A dry run: whether the stored rule matches the sample event, why, and "
        "what it would plan. Writes nothing.",
    )
    def test_rule(rule_id: RuleIdPath, body: EventIn, who: Principal = Depends(current)) -> Any:
        sample = body.document(ops.flow.now())
        return RuleTestOut.of(ops.test_rule(who, rule_id, sample))


def _admin_routes(api: APIRouter, ops: Operations, current: Callable[..., Principal]) -> None:
    opts: dict[str, Any] = {"response_model_exclude_none": True}

    @api.get(
        "/scheduled-actions/parked",
        response_model=list[ScheduledAction],
        summary="Parked actions (failed for good, waiting for a person)",
        **opts,
    )
    def list_parked_actions(
        query: Annotated[ParkedQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return ops.list_parked_actions(who, limit=query.limit)

    @api.post(
        "/scheduled-actions/{actionId}/retry",
        response_model=ScheduledAction,
        summary="Retry a parked action (due now, fresh attempts)",
        **opts,
    )
    def retry_action(action_id: ActionIdPath, who: Principal = Depends(current)) -> Any:
        return ops.retry_action(who, action_id)

    @api.get(
        "/audit-trail",
        response_model=list[AuditEntry],
        summary="Who changed what, when",
        **opts,
    )
    def audit_trail(
        query: Annotated[AuditQuery, Query()], who: Principal = Depends(current)
    ) -> Any:
        return ops.audit_trail(who, query.subject, query.subject_id)


def events_router(
    source: Operations | LeadFlow,
    *,
    principal: PrincipalDependency,
    roles: Iterable[Role | str] = (Role.SUPER_ADMIN, Role.ADMIN),
    prefix: str = "/api",
) -> APIRouter:
    """``POST {prefix}/events``: the host posts one of its domain events (``eventType``,
    ``payload``, optionally ``eventId`` and ``occurredAt``, default now) and gets back what
    handling it did.

    Posting events is a system operation outside the policy table: only principals whose role
    is in ``roles`` (default: super admins and admins) may, others get 403. A host usually
    mounts it behind its own service authentication (a separate dependency) or does not mount
    it and calls ``flow.handle`` in process.
    """
    ops = _operations(source)
    allowed = frozenset(Role(r) for r in roles)
    api = APIRouter(
        prefix=prefix, tags=["leadflow"], route_class=LeadflowRoute, responses=dict(ERROR_RESPONSES)
    )
    current = _current(principal)

    @api.post("/events", response_model=HandleOut, summary="Handle a host event")
    def post_event(body: EventIn, who: Principal = Depends(current)) -> Any:
        if who.role not in allowed:
            raise PermissionDeniedError(f"role {who.role.value!r} may not post events")
        return HandleOut.of(ops.flow.handle(body.document(ops.flow.now())))

    return api
