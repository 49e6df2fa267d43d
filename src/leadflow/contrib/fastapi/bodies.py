"""What the HTTP routes take and give, as pydantic models (camelCase on the wire, like every
leadflow document). Activities, rules, statistics, scheduled actions and audit entries are
leadflow's own models; the models here are the requests' shapes and the summaries of results
(completion, rule change, dry run, handled event)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ...fields import Id, UtcDatetime
from ...models import (
    Action,
    Activity,
    ActivityPriority,
    ActivityType,
    FollowUpRule,
    Outcome,
    Trigger,
)
from ...records import ScheduledAction, ScheduledActionState
from ...rules.fields import MISSING
from ...runtime.results import ActionRun, ChangeResult, HandleResult, RuleChange, RuleTestResult
from ...runtime.settings import PendingPolicy

__all__ = [
    "ActionRunOut",
    "ActivityCreate",
    "ActivityEdit",
    "ActivityPage",
    "AuditQuery",
    "CancelIn",
    "ChangeOut",
    "CompletionIn",
    "CompletionOut",
    "ConditionOut",
    "EventIn",
    "HandleOut",
    "LimitQuery",
    "ParkedQuery",
    "PendingQuery",
    "PlannedOut",
    "ReassignIn",
    "RescheduleIn",
    "RuleChangeOut",
    "RulePatch",
    "RuleTestOut",
    "RuleWriteQuery",
    "ScheduledOut",
    "SnoozeIn",
]


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
    )

    def given(self) -> dict[str, Any]:
        """What the caller sent, camelCase (defaults are not the caller's choice)."""
        return self.model_dump(by_alias=True, exclude_unset=True)


# --------------------------------------------------------------------------- requests


class ActivityCreate(_Wire):
    """A new activity. ``activityId`` only for roles that choose ids; ``assignedTo`` another
    user only for roles that create for others (sales: themselves, on their own
    opportunities). Audit and automation fields are set by leadflow, never by the caller."""

    activity_id: Id | None = None
    opportunity_id: Id
    customer_id: Id | None = None
    activity_type: ActivityType
    subject: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=20_000)
    scheduled_date: UtcDatetime | None = None
    due_date: UtcDatetime | None = None
    completed_date: UtcDatetime | None = Field(
        default=None, description="record an activity that already happened (a logged call)"
    )
    assigned_to: Id | None = None
    outcome: Outcome | None = None
    metadata: dict[str, Any] | None = None


class LimitQuery(_Wire):
    """``assignedTo`` (staff: anyone's; sales: only their own) and ``limit``."""

    assigned_to: Id | None = None
    limit: int = Field(default=50, ge=1, le=1000)


class CompletionIn(_Wire):
    """How the activity ended, and optionally the version the caller saw."""

    outcome: Outcome | None = None
    expected_version: int | None = Field(default=None, ge=1)


class _Versioned(_Wire):
    expected_version: int | None = Field(
        default=None, ge=1, description="the version the caller saw: 409 if the activity moved on"
    )


class RescheduleIn(_Versioned):
    """A new due date: timezone-aware, not in the past, not before the scheduled date."""

    due_date: UtcDatetime


class SnoozeIn(_Versioned):
    """Move the due date later: by ``duration`` (ISO 8601, e.g. ``PT2H``, or seconds; from the
    due date, or from now when that is past), or to ``until``. Exactly one of the two."""

    duration: timedelta | None = Field(default=None, gt=timedelta(0), le=timedelta(days=366))
    until: UtcDatetime | None = None


class ReassignIn(_Versioned):
    """Who the activity goes to."""

    assigned_to: Id


class ActivityEdit(_Versioned):
    """The fields to change (those sent; ``priority: null`` clears it)."""

    subject: str | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=20_000, description="the notes")
    priority: ActivityPriority | None = None

    def changes(self) -> dict[str, Any]:
        """The fields sent (a null subject or description is refused by the operation)."""
        return {
            name: getattr(self, name)
            for name in ("subject", "description", "priority")
            if name in self.model_fields_set
        }


class CancelIn(_Versioned):
    """Why (optional)."""

    reason: str | None = Field(default=None, max_length=1000)


class RulePatch(_Wire):
    """Fields of a rule to change; the others stay. ``ruleId``, ``version`` and the audit
    fields cannot be changed."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    trigger: Trigger | None = None
    actions: list[Action] | None = Field(default=None, min_length=1, max_length=20)
    is_active: bool | None = None
    priority: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    stop_processing: bool | None = None
    allow_duplicates: bool | None = None

    def changes(self) -> dict[str, Any]:
        """Only the fields sent, in their raw (validated) form."""
        return {k: v for k, v in self.given().items() if v is not None}


class RuleWriteQuery(_Wire):
    """``expectedVersion``: refuse (409) if the rule moved on; ``pending``: what happens to the
    rule's pending delayed actions (default: the flow's setting, ``cancel``)."""

    expected_version: int | None = Field(default=None, ge=1)
    pending: PendingPolicy | None = None


class PendingQuery(_Wire):
    """``pending``: what happens to the rule's pending delayed actions (default: the flow's
    setting, ``cancel``)."""

    pending: PendingPolicy | None = None


class EventIn(_Wire):
    """An event: ``eventType`` and ``payload``; ``eventId`` makes a redelivery harmless;
    ``occurredAt`` defaults to now. The envelope is the one ``LeadFlow.handle`` takes: ``type``,
    ``id`` and ``time`` are accepted for ``eventType``, ``eventId`` and ``occurredAt``."""

    event_id: Id | None = Field(
        default=None, validation_alias=AliasChoices("eventId", "event_id", "id")
    )
    event_type: str = Field(
        min_length=1,
        max_length=100,
        validation_alias=AliasChoices("eventType", "event_type", "type"),
    )
    occurred_at: UtcDatetime | None = Field(
        default=None, validation_alias=AliasChoices("occurredAt", "occurred_at", "time")
    )
    payload: dict[str, Any] = Field(default_factory=dict)
    actor: Id | None = None

    def document(self, now: datetime) -> dict[str, Any]:
        raw = self.model_dump(by_alias=True, exclude_none=True)
        raw.setdefault("occurredAt", now)
        return raw


class AuditQuery(_Wire):
    subject: str | None = Field(default=None, description="rule, activity or action")
    subject_id: Id | None = None


class ParkedQuery(_Wire):
    limit: int = Field(default=100, ge=1, le=1000)


# --------------------------------------------------------------------------- responses


class ActivityPage(_Wire):
    """One page; pass ``nextCursor`` back as ``cursor`` for the next (null on the last)."""

    items: list[Activity]
    next_cursor: str | None = None


class ScheduledOut(_Wire):
    """A stored action, briefly."""

    action_id: str
    action_type: str
    rule_id: str | None
    state: ScheduledActionState
    due_at: datetime

    @classmethod
    def of(cls, action: ScheduledAction) -> ScheduledOut:
        return cls(
            action_id=action.action_id,
            action_type=action.action_type,
            rule_id=action.rule_id,
            state=action.state,
            due_at=action.due_at,
        )


class ActionRunOut(_Wire):
    """One execution of an action."""

    idempotency_key: str
    action_type: str
    ok: bool
    note: str | None
    state: ScheduledActionState

    @classmethod
    def of(cls, run: ActionRun) -> ActionRunOut:
        return cls(
            idempotency_key=run.idempotency_key,
            action_type=run.action_type,
            ok=run.ok,
            note=run.note,
            state=run.state,
        )


class HandleOut(_Wire):
    """What handling one event did: the rules that matched, the actions run now and stored for
    later, idempotency keys already handled, the cascades and the problems."""

    event_id: str
    event_type: str
    matched_rules: list[str]
    executed: list[ActionRunOut]
    scheduled: list[ScheduledOut]
    duplicates: list[str]
    cascades: list[HandleOut]
    errors: list[str]

    @classmethod
    def of(cls, result: HandleResult) -> HandleOut:
        return cls(
            event_id=result.event.id,
            event_type=result.event.type,
            matched_rules=list(result.matched_rules),
            executed=[ActionRunOut.of(r) for r in result.executed],
            scheduled=[ScheduledOut.of(a) for a in result.scheduled],
            duplicates=list(result.duplicates),
            cascades=[cls.of(c) for c in result.cascades],
            errors=[str(e) for e in result.errors],
        )


class CompletionOut(_Wire):
    """The completed activity and what its ``activity.completed`` event set off (null when the
    delivery failed and will be retried)."""

    activity: Activity
    follow_up: HandleOut | None


class ChangeOut(_Wire):
    """The changed activity, the event the change set off (``activity.rescheduled``,
    ``activity.reassigned``, ``activity.updated``, ``activity.cancelled``) and what the rules did
    with it (null when the delivery failed and will be retried)."""

    activity: Activity
    event_type: str
    event_id: str
    follow_up: HandleOut | None

    @classmethod
    def of(cls, result: ChangeResult) -> ChangeOut:
        follow_up = HandleOut.of(result.follow_up) if result.follow_up is not None else None
        return cls(
            activity=result.activity,
            event_type=result.event.type,
            event_id=result.event.id,
            follow_up=follow_up,
        )


class RuleChangeOut(_Wire):
    """The rule after the change (null after a deletion) and the pending actions cancelled."""

    rule: FollowUpRule | None
    cancelled: list[ScheduledOut]

    @classmethod
    def of(cls, change: RuleChange) -> RuleChangeOut:
        return cls(rule=change.rule, cancelled=[ScheduledOut.of(a) for a in change.cancelled])


class PlannedOut(_Wire):
    action_index: int
    action_type: str
    due_at: datetime
    delayed: bool
    idempotency_key: str


class ConditionOut(_Wire):
    """How one condition fared: where in the rule, the condition, the payload value read."""

    location: str
    condition: str
    field: str
    actual: Any = Field(description="the value read (null when missing)")
    passed: bool


def _json_value(value: Any) -> Any:
    """``value`` if it is plain JSON, else its text (a missing field is null)."""
    if value is None or value is MISSING:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return str(value)
    return value


class RuleTestOut(_Wire):
    """A dry run: whether the rule matched the sample, why, and what it would plan. Nothing was
    written."""

    rule_id: str
    matched: bool
    reason: str
    planned: list[PlannedOut]
    conditions: list[ConditionOut]

    @classmethod
    def of(cls, result: RuleTestResult) -> RuleTestOut:
        explanations = result.evaluation.explanations or ()
        conditions = [c for e in explanations for c in e.conditions]
        return cls(
            rule_id=result.rule.rule_id,
            matched=result.matched,
            reason=result.reason,
            planned=[
                PlannedOut(
                    action_index=p.action_index,
                    action_type=p.action.action_type,
                    due_at=p.due_at,
                    delayed=p.delayed,
                    idempotency_key=p.idempotency_key,
                )
                for p in result.planned
            ],
            conditions=[
                ConditionOut(
                    location=c.location,
                    condition=c.condition,
                    field=c.field,
                    actual=_json_value(c.actual),
                    passed=c.passed,
                )
                for c in conditions
            ],
        )
