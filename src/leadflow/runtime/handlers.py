"""The built-in action types, each with the params model it is registered with.

=====================  =====================================================================
``create_activity``    an activity for the opportunity, due at the event's time plus the delay
                       (eager: created when the event is handled, so it is on the rep's list
                       and reminded before it is due)
``send_notification``  an in-app notification through the host's notifier
``update_status``      the opportunity's status; a change feeds ``opportunity.status_changed``
                       back into the rules
``assign_sales_rep``   the opportunity's owner
``send_email``         an e-mail to the opportunity's contact through the host's messenger
``send_sms``           an SMS, likewise
=====================  =====================================================================
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel

from ..activity_models import activity_document, built_activity, plain_rest, plain_shared
from ..errors import DuplicateError, InvalidInputError, OpenActivityExistsError
from ..fields import Id
from ..models import Activity, ActivityType, Event
from ..ports import BatchActivities, Message, Notification
from ..records import DuplicatePolicy
from ..stores.checks import handed_over
from .assignment import resolve_assignee
from .context import ActionContext
from .planning import activity_id_for, open_key_for

__all__ = [
    "BUILTINS",
    "CONTAINED",
    "AssignParams",
    "CreateActivityParams",
    "MessageParams",
    "NotificationParams",
    "UpdateStatusParams",
    "create_activities",
]

_CASCADES: Final = uuid.UUID("5d3c1f0e-7a51-4d1b-9b8e-1eadf1000001")


class _Params(BaseModel):
    # Frozen: the runtime reuses one parsed value per rule action (see LeadFlow._params).
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        frozen=True,
    )


class CreateActivityParams(_Params):
    """``subject`` (required), ``activityType`` (default ``follow_up``), ``description``,
    ``assignTo`` (a strategy or a user id) and ``dueWithinHours`` (a grace window after the
    planned time; default: the flow's ``due_grace``)."""

    subject: str = Field(min_length=1, max_length=500)
    activity_type: ActivityType = ActivityType.FOLLOW_UP
    description: str = Field(default="", max_length=20_000)
    assign_to: Id | None = None
    due_within_hours: float | None = Field(default=None, ge=0, le=24 * 366)
    _plain: tuple[object, ...] | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        # What every activity of the rule action shares, checked once: parsed once per rule
        # action (HandlerRegistry.parse), this value is what create_activity reads per event.
        shared = (self.activity_type, self.subject, self.description)
        self._plain = shared if plain_shared(*shared) else None

    @property
    def plain(self) -> bool:
        """Whether the type, subject and description the activities take from these settings
        are values the models take as they are (:func:`~.activity_models.plain_shared`, checked
        when they were parsed, and still these: a copy with other values is not plain): then
        only what each event gives is checked (:func:`~.activity_models.plain_rest`)."""
        private = self.__pydantic_private__  # self._plain, without pydantic's __getattr__
        checked = private["_plain"] if private is not None else None
        return checked is not None and checked == (
            self.activity_type,
            self.subject,
            self.description,
        )


class NotificationParams(_Params):
    """``template`` (required) and ``assignTo`` (who receives it; default: the opportunity's
    owner). Any other setting is passed to the template as data."""

    model_config = ConfigDict(extra="allow")

    template: str = Field(min_length=1, max_length=200)
    assign_to: Id | None = None


class UpdateStatusParams(_Params):
    """``status``: the opportunity's new status."""

    status: str = Field(min_length=1, max_length=100)


class AssignParams(_Params):
    """``assignTo``: a strategy or a user id."""

    assign_to: Id


class MessageParams(_Params):
    """``template`` (required); any other setting is passed to the template as data."""

    model_config = ConfigDict(extra="allow")

    template: str = Field(min_length=1, max_length=200)


def _reference(ctx: ActionContext[Any]) -> dict[str, Any]:
    return {
        "eventId": ctx.event.id,
        "eventType": ctx.event.type,
        "ruleId": ctx.rule_id,
        "opportunityId": ctx.scheduled.opportunity_id,
        "idempotencyKey": ctx.idempotency_key,
    }


def create_activity(ctx: ActionContext[CreateActivityParams]) -> str:
    """Create the activity: due at the planned time (plus any grace window), scheduled at the
    event's time, assigned by ``assignTo``. Skipped while this rule's previous automated activity
    for the opportunity is still open (unless the rule allows duplicates): the store refuses a
    second open activity with the same open key, atomically."""
    fields, metadata = _values(ctx)
    store = ctx.storage.activities
    # A store whose class takes the values (PlainActivities; not a wrapper that passes other
    # calls on, which may mean its own add to be called): no model built to be taken apart.
    add_plain = getattr(type(store), "add_plain", None)
    if add_plain is not None and ctx.params.plain and plain_rest(fields, metadata):
        return _created_plain(ctx, fields, metadata, add_plain(store, fields, metadata))
    activity = built_activity(fields, metadata)  # validated unless every value is plain
    return _created(ctx, activity, _added(ctx, activity))


def create_activities(
    contexts: Sequence[ActionContext[CreateActivityParams]],
) -> list[str | Exception]:
    """:func:`create_activity` for several actions at once (their params parsed): the
    activities stored with one ``add_many`` where the activity store offers it
    (:class:`~leadflow.ports.BatchActivities`; one ``add`` each otherwise), each one's note
    or the exception that failed it, in order. A store failure fails them all."""
    outcomes: list[str | Exception | None] = []
    built: list[tuple[int, Activity]] = []
    for ctx in contexts:
        try:
            built.append((len(outcomes), _activity(ctx)))
            outcomes.append(None)
        except Exception as exc:  # this action's own failure (no assignee...): the others go on
            outcomes.append(exc)
    store = contexts[0].storage.activities if contexts else None
    if built and isinstance(store, BatchActivities):
        activities = [activity for _, activity in built]
        # Validated just above and held by nobody else: handed over, not checked again.
        stored = handed_over(store.add_many, activities, *activities)
    else:
        stored = [_added(contexts[i], activity) for i, activity in built]
    for (i, activity), result in zip(built, stored, strict=True):
        outcomes[i] = _created(contexts[i], activity, result)
    return [outcome if outcome is not None else "" for outcome in outcomes]


def _added(
    ctx: ActionContext[Any], activity: Activity
) -> Activity | DuplicateError | OpenActivityExistsError:
    try:
        # Validated just above and held by nobody else: handed over, not checked again.
        return handed_over(ctx.storage.activities.add, activity)
    except (DuplicateError, OpenActivityExistsError) as refusal:
        return refusal


def _activity(ctx: ActionContext[CreateActivityParams]) -> Activity:
    """The activity a ``create_activity`` action creates."""
    return built_activity(*_values(ctx))  # validated unless every value is plain


def _values(
    ctx: ActionContext[CreateActivityParams],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields and metadata of the activity a ``create_activity`` action creates (see
    :func:`~leadflow.activity_models.built_activity`)."""
    params = ctx.params
    opportunity_id = ctx.opportunity_id()
    activity_id = activity_id_for(ctx.idempotency_key)
    grace = (
        timedelta(hours=params.due_within_hours)
        if params.due_within_hours is not None
        else ctx.settings.due_grace
    )
    due = ctx.planned_at + grace
    customer = ctx.event.get("customerId", "customer_id")
    rule_id = ctx.rule_id
    exclusive = ctx.scheduled.duplicates is DuplicatePolicy.SKIP and rule_id is not None
    fields = {
        "activity_id": activity_id,
        "opportunity_id": opportunity_id,
        "customer_id": customer if isinstance(customer, str) else None,
        "activity_type": params.activity_type,
        "subject": params.subject,
        "description": params.description,
        "scheduled_date": min(ctx.event.time, due),
        "due_date": due,
        "assigned_to": resolve_assignee(ctx, params.assign_to),
        "open_key": open_key_for(opportunity_id, rule_id) if exclusive and rule_id else None,
        "created_by": ctx.settings.system_user,
        "updated_by": ctx.settings.system_user,
        "created_at": ctx.now,
        "updated_at": ctx.now,
    }
    metadata = {
        "automationRuleId": rule_id,
        "automationRuleName": ctx.scheduled.rule_name,
        "automationExplanation": ctx.scheduled.explanation,
        "eventId": ctx.event.id,
    }
    return fields, metadata


def _created(
    ctx: ActionContext[Any],
    activity: Activity,
    stored: Activity | DuplicateError | OpenActivityExistsError,
) -> str:
    """The note of a ``create_activity`` (and ``activity.created`` when it was stored)."""
    if isinstance(stored, DuplicateError):
        return f"activity {activity.activity_id} already created"
    if isinstance(stored, OpenActivityExistsError):
        return "skipped: an activity of this rule is still open for the opportunity"
    ctx.emit("activity.created", {**stored.to_document(), "ruleId": ctx.rule_id})
    return f"created activity {activity.activity_id}"


def _created_plain(
    ctx: ActionContext[Any],
    fields: dict[str, Any],
    metadata: dict[str, Any],
    refusal: DuplicateError | OpenActivityExistsError | None,
) -> str:
    """:func:`_created` for an activity a store took as its values (``refusal``: what it
    returned): the same note, and the same ``activity.created`` document."""
    if isinstance(refusal, DuplicateError):
        return f"activity {fields['activity_id']} already created"
    if isinstance(refusal, OpenActivityExistsError):
        return "skipped: an activity of this rule is still open for the opportunity"
    ctx.emit("activity.created", {**activity_document(fields, metadata), "ruleId": ctx.rule_id})
    return f"created activity {fields['activity_id']}"


def send_notification(ctx: ActionContext[NotificationParams]) -> str:
    """An in-app notification through the host's notifier, and ``notification.<template>`` on
    the event sink (e.g. ``notification.urgent_lead``) with its ``recipients``."""
    params = ctx.params
    recipients: tuple[str, ...] = ()
    if params.assign_to is not None:
        who = resolve_assignee(ctx, params.assign_to)
        recipients = (who,) if who else ()
    elif ctx.scheduled.opportunity_id is not None:
        owner = ctx.integrations.opportunities.owner(ctx.scheduled.opportunity_id)
        recipients = (owner,) if owner else ()
    data = {**_reference(ctx), **(params.model_extra or {}), "event": dict(ctx.event.payload)}
    ctx.integrations.notifier.notify(
        Notification(
            ctx.idempotency_key, params.template, recipients, ctx.scheduled.opportunity_id, data
        )
    )
    ctx.emit(f"notification.{params.template}", {**_reference(ctx), "recipients": list(recipients)})
    return f"notified {len(recipients)} recipient(s) with {params.template}"


def update_status(ctx: ActionContext[UpdateStatusParams]) -> str:
    """Change the opportunity's status; a real change is fed back into the rules as
    ``opportunity.status_changed`` (one cascade level deeper)."""
    params = ctx.params
    opportunity_id = ctx.opportunity_id()
    actor = ctx.settings.system_user
    previous = ctx.integrations.opportunities.update_status(
        opportunity_id, params.status, actor=actor
    )
    if previous == params.status:
        return f"status already {params.status}"
    ctx.cascade(
        Event(
            id=str(uuid.uuid5(_CASCADES, ctx.idempotency_key + "/status")),
            type="opportunity.status_changed",
            time=ctx.now,
            payload={
                **ctx.event.payload,
                "opportunityId": opportunity_id,
                "oldStatus": previous,
                "newStatus": params.status,
            },
            actor=actor,
        )
    )
    return f"status {previous} -> {params.status}"


def assign_sales_rep(ctx: ActionContext[AssignParams]) -> str:
    """Make the chosen rep the opportunity's owner."""
    params = ctx.params
    opportunity_id = ctx.opportunity_id()
    rep = resolve_assignee(ctx, params.assign_to)
    if rep is None:
        raise InvalidInputError("nobody to assign", field="assignTo")
    ctx.integrations.opportunities.assign_owner(opportunity_id, rep, actor=ctx.settings.system_user)
    ctx.emit("opportunity.assigned", {**_reference(ctx), "recipients": [rep], "assignedTo": rep})
    return f"assigned {rep}"


def _message(ctx: ActionContext[MessageParams], channel: str) -> str:
    params = ctx.params
    contact = ctx.integrations.opportunities.contact(ctx.opportunity_id())
    to = contact.email if channel == "email" else contact.phone
    if not to:
        raise InvalidInputError(f"the opportunity has no {channel} contact", field="contact")
    data = {**_reference(ctx), **(params.model_extra or {}), "event": dict(ctx.event.payload)}
    ctx.integrations.messenger.send(
        Message(ctx.idempotency_key, channel, to, params.template, data)
    )
    return f"sent {channel} {params.template}"


def send_email(ctx: ActionContext[MessageParams]) -> str:
    """An e-mail to the opportunity's contact through the host's messenger."""
    return _message(ctx, "email")


def send_sms(ctx: ActionContext[MessageParams]) -> str:
    """An SMS to the opportunity's contact through the host's messenger."""
    return _message(ctx, "sms")


BUILTINS: Final[tuple[tuple[str, Any, type[BaseModel], bool, tuple[str, ...]], ...]] = (
    ("create_activity", create_activity, CreateActivityParams, True, ("activity.created",)),
    ("send_notification", send_notification, NotificationParams, False, ()),
    ("update_status", update_status, UpdateStatusParams, False, ("opportunity.status_changed",)),
    ("assign_sales_rep", assign_sales_rep, AssignParams, False, ()),
    ("send_email", send_email, MessageParams, False, ()),
    ("send_sms", send_sms, MessageParams, False, ()),
)
"""The built-in action types: (type, handler, params model, eager, causes), registered by
:meth:`HandlerRegistry.default`. ``causes``: the event types running the handler may feed back
into the rules (``activity.created`` goes to the event sink; a host that routes it back into
:meth:`LeadFlow.handle` closes that loop)."""

CONTAINED: Final[frozenset[Any]] = frozenset({create_activity})
"""Built-in handlers whose every effect is a write through the context's stores (reads aside:
the host's opportunities, the team directory): in a deferred unit of work
(:class:`~leadflow.ports.DeferredUnits`) the planner may run them before the database has said
their actions are new, the unit being rolled back and run again if one was not."""
