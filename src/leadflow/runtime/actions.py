"""Action handlers: what each action type does when it runs, and the registry integrators extend.

A handler is a plain callable ``handler(context) -> str | None`` (the optional string is a short
note for logs). It must be idempotent in effect: a crash between doing the work and recording it
makes leadflow run the action again, so handlers key their writes on
``context.idempotency_key`` (the built-ins do). Raising marks the attempt failed: it is retried
with backoff and parked after the last attempt.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import DuplicateError, InvalidInputError, LeadflowError
from ..models import _ACTION_TYPE_RE, Action, Activity, ActivityMetadata, ActivityType, Event
from ..ports import Message, Notification
from ..records import ScheduledAction

if TYPE_CHECKING:
    from .flow import HandleResult, LeadFlow

__all__ = ["ActionContext", "ActionHandler", "HandlerRegistry", "activity_id_for"]

_NAMESPACE = uuid.UUID("5d3c1f0e-7a51-4d1b-9b8e-1eadf1000000")


def activity_id_for(idempotency_key: str) -> str:
    """The id of the activity an action creates: derived from its key, so a rerun finds it."""
    return str(uuid.uuid5(_NAMESPACE, idempotency_key))


@dataclass(slots=True)
class ActionContext:
    """What a handler gets: the stored action, the flow (stores and ports), the time, and the
    cascade depth. ``errors`` collects non-fatal problems (e.g. a cascade stopped by depth)."""

    flow: LeadFlow
    scheduled: ScheduledAction
    now: datetime
    depth: int
    errors: list[LeadflowError] = field(default_factory=list)
    cascades: list[HandleResult] = field(default_factory=list)

    @property
    def action(self) -> Action:
        return self.scheduled.action

    @property
    def event(self) -> Event:
        return self.scheduled.event

    @property
    def idempotency_key(self) -> str:
        return self.scheduled.idempotency_key

    @property
    def rule_id(self) -> str:
        return self.scheduled.rule_id

    def opportunity_id(self) -> str:
        """The event's opportunity; an action that needs one fails clearly without it."""
        value = self.scheduled.opportunity_id or self.event.opportunity_id
        if value is None:
            raise InvalidInputError(
                f"{self.action.action_type} needs an opportunity, the event has no opportunityId",
                field="payload.opportunityId",
            )
        return value


ActionHandler = Callable[[ActionContext], "str | None"]


class HandlerRegistry:
    """Maps action types to handlers. :meth:`default` holds the built-ins."""

    def __init__(self, handlers: dict[str, ActionHandler] | None = None) -> None:
        self._handlers: dict[str, ActionHandler] = dict(handlers or {})

    @classmethod
    def default(cls) -> HandlerRegistry:
        return cls(
            {
                "create_activity": create_activity,
                "send_notification": send_notification,
                "update_status": update_status,
                "assign_sales_rep": assign_sales_rep,
                "send_email": send_email,
                "send_sms": send_sms,
            }
        )

    def register(self, action_type: str, handler: ActionHandler, *, replace: bool = False) -> None:
        """Handle ``action_type`` with ``handler`` (an integrator's own type, or a replacement)."""
        if not re.match(_ACTION_TYPE_RE, action_type):
            raise ValueError(f"invalid action type {action_type!r}: use lower_snake_case")
        if action_type in self._handlers and not replace:
            raise ValueError(f"a handler for {action_type!r} exists (pass replace=True)")
        self._handlers[action_type] = handler

    def get(self, action_type: str) -> ActionHandler | None:
        return self._handlers.get(action_type)

    def __contains__(self, action_type: object) -> bool:
        return action_type in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))


# --------------------------------------------------------------------------- assignment


def resolve_assignee(ctx: ActionContext, strategy: str | None) -> str | None:
    """Who gets the work: ``lead_owner``, ``round_robin``, ``least_loaded`` or a user id."""
    flow = ctx.flow
    if strategy is None:
        return None
    if strategy == "lead_owner":
        return flow.opportunities.owner(ctx.opportunity_id())
    if strategy in ("round_robin", "least_loaded"):
        reps = list(flow.team.sales_reps())
        if not reps:
            raise InvalidInputError("no sales reps to assign to", field="team")
        if strategy == "round_robin":
            # One shared counter: fair across rules, restarts and app instances.
            return reps[(flow.counters.next("assignment:round_robin") - 1) % len(reps)]
        loads = flow.open_activity_counts(reps)
        return min(reps, key=lambda rep: (loads.get(rep, 0), reps.index(rep)))
    return strategy


# --------------------------------------------------------------------------- built-ins


def _payload(ctx: ActionContext) -> dict[str, Any]:
    return {
        "eventId": ctx.event.id,
        "eventType": ctx.event.type,
        "ruleId": ctx.rule_id,
        "opportunityId": ctx.scheduled.opportunity_id,
        "idempotencyKey": ctx.idempotency_key,
    }


def create_activity(ctx: ActionContext) -> str:
    """Create the activity now, scheduled at the planned time (event time + delay) and due one
    due-window later, assigned by ``assignTo``; skipped while this rule's previous automated
    activity for the opportunity is still open (unless the rule allows duplicates)."""
    flow, action = ctx.flow, ctx.action
    opportunity_id = ctx.opportunity_id()
    activity_id = activity_id_for(ctx.idempotency_key)
    if not ctx.scheduled.extra.get("allowDuplicates", False):
        for existing in flow.activities.for_opportunity(opportunity_id):
            if (
                existing.completed_date is None
                and existing.metadata.automation_rule_id == ctx.rule_id
                and existing.activity_id != activity_id
            ):
                return f"skipped: activity {existing.activity_id} of this rule is still open"
    scheduled_at = ctx.scheduled.extra.get("plannedAt")
    scheduled_date = datetime.fromisoformat(scheduled_at) if scheduled_at else ctx.now
    window_hours = action.params.get("dueWithinHours")
    window = (
        timedelta(hours=float(window_hours))
        if isinstance(window_hours, int | float) and not isinstance(window_hours, bool)
        else flow.due_window
    )
    customer = ctx.event.get("customerId", "customer_id")
    activity = Activity(
        activity_id=activity_id,
        opportunity_id=opportunity_id,
        customer_id=customer if isinstance(customer, str) else None,
        activity_type=action.activity_type or ActivityType.FOLLOW_UP,
        subject=action.subject or "Follow up",
        description=action.description or "",
        scheduled_date=scheduled_date,
        due_date=scheduled_date + window,
        assigned_to=resolve_assignee(ctx, action.assign_to),
        metadata=ActivityMetadata.model_validate(
            {
                "automationRuleId": ctx.rule_id,
                "automationRuleName": ctx.scheduled.extra.get("ruleName"),
                "automationExplanation": ctx.scheduled.extra.get("explanation"),
                "eventId": ctx.event.id,
            }
        ),
        created_by=flow.system_user,
        updated_by=flow.system_user,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    try:
        stored = flow.activities.add(activity)
    except DuplicateError:
        return f"activity {activity_id} already created"
    flow.emit("activity.created", flow.activity_event_payload(stored, rule_id=ctx.rule_id))
    return f"created activity {activity_id}"


def send_notification(ctx: ActionContext) -> str:
    """An in-app notification through the host's notifier, and ``notification.<template>`` on
    the event sink (e.g. ``notification.urgent_lead``)."""
    flow, action = ctx.flow, ctx.action
    template = action.template or "notification"
    recipients: tuple[str, ...] = ()
    if action.assign_to is not None:
        who = resolve_assignee(ctx, action.assign_to)
        recipients = (who,) if who else ()
    elif ctx.scheduled.opportunity_id is not None:
        owner = flow.opportunities.owner(ctx.scheduled.opportunity_id)
        recipients = (owner,) if owner else ()
    data = {**_payload(ctx), **action.params, "event": dict(ctx.event.payload)}
    flow.notifier.notify(
        Notification(ctx.idempotency_key, template, recipients, ctx.scheduled.opportunity_id, data)
    )
    flow.emit(f"notification.{template}", {**_payload(ctx), "recipients": list(recipients)})
    return f"notified {len(recipients)} recipient(s) with {template}"


def update_status(ctx: ActionContext) -> str:
    """Change the opportunity's status; a real change is fed back into the rules as
    ``opportunity.status_changed`` (one cascade level deeper)."""
    flow = ctx.flow
    opportunity_id = ctx.opportunity_id()
    status = str(ctx.action.params["status"])
    previous = flow.opportunities.update_status(opportunity_id, status, actor=flow.system_user)
    if previous == status:
        return f"status already {status}"
    cascade = Event(
        id=str(uuid.uuid5(_NAMESPACE, ctx.idempotency_key + "/status")),
        type="opportunity.status_changed",
        time=ctx.now,
        payload={
            **ctx.event.payload,
            "opportunityId": opportunity_id,
            "oldStatus": previous,
            "newStatus": status,
        },
        actor=flow.system_user,
    )
    flow.cascade(cascade, ctx)
    return f"status {previous} -> {status}"


def assign_sales_rep(ctx: ActionContext) -> str:
    """Make the chosen rep the opportunity's owner."""
    opportunity_id = ctx.opportunity_id()
    rep = resolve_assignee(ctx, ctx.action.assign_to)
    if rep is None:
        raise InvalidInputError("nobody to assign", field="assignTo")
    ctx.flow.opportunities.assign_owner(opportunity_id, rep, actor=ctx.flow.system_user)
    ctx.flow.emit("opportunity.assigned", {**_payload(ctx), "assignedTo": rep})
    return f"assigned {rep}"


def _message(ctx: ActionContext, channel: str) -> str:
    contact = ctx.flow.opportunities.contact(ctx.opportunity_id())
    to = contact.email if channel == "email" else contact.phone
    if not to:
        raise InvalidInputError(f"the opportunity has no {channel} contact", field="contact")
    template = ctx.action.template or channel
    data = {**_payload(ctx), **ctx.action.params, "event": dict(ctx.event.payload)}
    ctx.flow.messenger.send(Message(ctx.idempotency_key, channel, to, template, data))
    return f"sent {channel} {template}"


def send_email(ctx: ActionContext) -> str:
    """An e-mail to the opportunity's contact through the host's messenger."""
    return _message(ctx, "email")


def send_sms(ctx: ActionContext) -> str:
    """An SMS to the opportunity's contact through the host's messenger."""
    return _message(ctx, "sms")
