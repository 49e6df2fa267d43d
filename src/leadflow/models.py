"""The domain model: activities, follow-up rules, events (pydantic v2).

This module holds the rule models (:class:`FollowUpRule`, its :class:`Trigger`, conditions,
:class:`Action` and :class:`Delay`) and :class:`Event`; the activity models (:class:`Activity`,
:class:`ActivityMetadata` and the enumerations) live in :mod:`leadflow.activity_models` and are
re-exported here, so ``leadflow.models`` offers every model. The rules below hold for all.

One spelling per concept: documents use the seed's camelCase names (``activityId``,
``dueDate``, ``eventType``, ``occurredAt``...) so existing MongoDB data loads as is; Python code
uses snake_case attributes. Input may use either (but not both for one field); ``to_document``
always writes camelCase.

What is accepted is bounded by :data:`leadflow.limits.DEFAULT_LIMITS`, the same for every
backend, and checked before pydantic recurses into the input, so bad input of any shape or
depth is a ``ValidationError`` naming the field (never a ``RecursionError``, ``OverflowError``
or ``TypeError``):

- Every datetime is timezone-aware, normalised to UTC and within ``[earliest, latest]``; naive
  ones are refused.
- Free-form documents (``Event.payload``, ``Activity.metadata``, ``Condition.value``,
  ``Action.params``) hold JSON-like values only; see :mod:`leadflow.documents` for the rules
  (value types, keys, 64-bit integers, finite floats, nesting, size). In a rule the condition
  values and action params together stay within ``document_bytes``.
- Condition groups nest at most ``condition_depth`` deep, a rule holds at most
  ``conditions_per_rule`` condition nodes and every list in a condition value at most
  ``operator_values`` items.
- Text is valid Unicode (no lone surrogates) without NUL characters (PostgreSQL stores none);
  integers fit in a signed 64-bit integer; floats are finite.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from . import limits as _limits
from .activity_models import (
    Activity,
    ActivityMetadata,
    ActivityPriority,
    ActivityState,
    ActivityType,
    Outcome,
)
from .condition_tree import check_condition_tree
from .documents import (
    as_document,
    check_document,
    json_size,
    plain_document,
)
from .fields import ID_RE as ID_RE  # re-exported: other modules import it from here
from .fields import (
    EventType,
    EventTypeName,
    FieldPath,
    Id,
    PositiveInt64,
    Text,
    UtcDatetime,
    _Model,
    _Record,
    canonical_event_type,
    new_id,
)

__all__ = [
    "Action",
    "Activity",
    "ActivityMetadata",
    "ActivityPriority",
    "ActivityState",
    "ActivityType",
    "Condition",
    "ConditionGroup",
    "ConditionNode",
    "Delay",
    "DelayUnit",
    "Event",
    "EventType",
    "FollowUpRule",
    "Outcome",
    "Trigger",
    "canonical_event_type",
    "new_id",
]


# --------------------------------------------------------------------------- rules

DelayUnit = Literal["minutes", "hours", "days", "business_hours", "business_days"]
_MAX_DELAY = timedelta(days=3660)
_UNIT_SECONDS = {"minutes": 60.0, "hours": 3600.0, "days": 86400.0}


class Delay(_Model):
    """How long after the event an action is due.

    A bare number means hours (as in the seed: ``"delay": 48``). ``business_hours`` and
    ``business_days`` count working time on the engine's :class:`~leadflow.WorkingCalendar`.
    """

    model_config = ConfigDict(frozen=True)

    amount: float = Field(default=0, ge=0)
    unit: DelayUnit = "hours"

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError("delay must be a number of hours or {amount, unit}")
        if isinstance(data, int | float):
            return {"amount": data, "unit": "hours"}
        return data

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if not math.isfinite(self.amount):
            raise ValueError("delay amount must be finite")
        if self.unit in ("business_hours", "business_days"):
            if self.unit == "business_days" and self.amount != int(self.amount):
                raise ValueError("business_days must be a whole number")
            limit = 3660 * 24 if self.unit == "business_hours" else 3660
            if self.amount > limit:
                raise ValueError("delay longer than ten years")
        elif self.amount * _UNIT_SECONDS[self.unit] > _MAX_DELAY.total_seconds():
            raise ValueError("delay longer than ten years")
        return self

    @model_serializer(mode="wrap")
    def _as_number_when_hours(self, handler: Any) -> Any:
        if self.unit == "hours":
            return int(self.amount) if self.amount == int(self.amount) else self.amount
        return handler(self)

    @property
    def is_business_time(self) -> bool:
        return self.unit in ("business_hours", "business_days")

    def as_timedelta(self) -> timedelta:
        """The fixed length of a calendar-time delay (not for business units)."""
        if self.is_business_time:
            raise ValueError("business-time delays depend on the calendar")
        return timedelta(seconds=self.amount * _UNIT_SECONDS[self.unit])


class Condition(_Model):
    """One test on the event: ``field`` (dotted path), ``operator`` (a registered name), ``value``.

    ``value`` is a free-form document (see the module docstring) in which every list holds at
    most ``operator_values`` items. Whether the operator exists and accepts ``value`` is checked
    when a :class:`~leadflow.RuleEngine` (with its operator registry) loads the rule.
    """

    field: FieldPath
    operator: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    value: Any = None
    ignore_case: bool = False

    @field_validator("value", mode="before")
    @classmethod
    def _json_like(cls, value: Any) -> Any:
        return plain_document(value, "value", max_list=_limits.DEFAULT_LIMITS.operator_values)


def _conditions_of(data: Any) -> Any:
    """The raw ``conditions`` of a trigger given as a mapping (either spelling) or a model."""
    if isinstance(data, dict):
        return data.get("conditions")
    return getattr(data, "conditions", None)


class ConditionGroup(_Model):
    """``{"all": [...]}``, ``{"any": [...]}`` or ``{"not": condition}``; groups nest, at most
    ``condition_depth`` deep (checked on the raw input, before pydantic recurses).

    Input may also be ``{"kind": "all", "conditions": [...]}`` (the attribute form); the
    document (``to_document``) is always the keyed form."""

    kind: Literal["all", "any", "not"]
    conditions: list[ConditionNode]

    @model_validator(mode="before")
    @classmethod
    def _from_keyed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            check_condition_tree([data], "conditions")
        if isinstance(data, dict) and "kind" not in data:
            keys = [k for k in ("all", "any", "not") if k in data]
            if len(keys) != 1 or len(data) != 1:
                raise ValueError("a condition group has exactly one key: 'all', 'any' or 'not'")
            kind = keys[0]
            body = data[kind]
            if kind == "not":
                if not isinstance(body, dict):
                    raise ValueError("'not' takes one condition (an object), not a list")
                body = [body]
            elif not isinstance(body, list):
                raise ValueError(f"'{kind}' takes a list of conditions")
            return {"kind": kind, "conditions": body}
        return data

    @model_validator(mode="after")
    def _arity(self) -> Self:
        if self.kind == "not" and len(self.conditions) != 1:
            raise ValueError("'not' takes exactly one condition")
        return self

    @model_serializer(mode="wrap")
    def _to_keyed(self, handler: Any) -> Any:
        data = handler(self)
        body = data["conditions"]
        return {self.kind: body[0] if self.kind == "not" else body}


def _node_kind(value: Any) -> str:
    if isinstance(value, ConditionGroup):
        return "group"
    if isinstance(value, Condition):
        return "condition"
    if isinstance(value, dict) and ({"all", "any", "not", "kind"} & value.keys()):
        return "group"
    return "condition"


ConditionNode = Annotated[
    Annotated[Condition, Tag("condition")] | Annotated[ConditionGroup, Tag("group")],
    Discriminator(_node_kind),
]


class Trigger(_Model):
    """When a rule applies: an event type and conditions (a flat list means all must hold).

    At most 100 top-level conditions and ``conditions_per_rule`` nodes in all."""

    event_type: EventTypeName
    conditions: list[ConditionNode] = Field(default_factory=list, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        check_condition_tree(_conditions_of(data), "conditions")
        return data


_ACTION_TYPE_RE = r"^[a-z][a-z0-9_]{0,63}$"
_SEED_SETTINGS = ("activity_type", "subject", "description", "assign_to", "template")


class Action(_Record):
    """One thing a rule does, now or after ``delay``.

    Built-in types: ``create_activity``, ``send_notification``, ``update_status``,
    ``assign_sales_rep``, ``send_email``, ``send_sms``; integrators may register more.
    The seed's fields (``activityType``, ``subject``, ``description``, ``assignTo``,
    ``template``) and the free-form ``params`` document are the action's settings; which of
    them an action type needs is declared by its handler's params model, which validates
    :meth:`settings` when a rule is loaded (this model checks only their shape).

    Immutable (change one with ``model_copy(update=...)``); ``params`` is a plain ``dict``
    that belongs to the action: stores copy it on the way in and out.
    """

    model_config = ConfigDict(frozen=True)

    action_type: Annotated[str, StringConstraints(pattern=_ACTION_TYPE_RE)]
    delay: Delay = Field(default_factory=Delay)
    activity_type: ActivityType | None = None
    subject: Text | None = Field(default=None, max_length=500)
    description: Text | None = Field(default=None, max_length=20_000)
    assign_to: Id | None = None
    template: Text | None = Field(default=None, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params", mode="before")
    @classmethod
    def _json_like(cls, params: Any) -> Any:
        return as_document(params, "params")

    def settings(self) -> dict[str, Any]:
        """The action's settings as one camelCase mapping, for a handler's params model.

        The seed's fields that are set (``activityType`` as its string value, ``subject``,
        ``description``, ``assignTo``, ``template``) merged with a copy of ``params``; a key
        in ``params`` wins over the seed field of the same name. ``actionType`` and ``delay``
        are not settings. The mapping is new on every call (changing it changes nothing).
        """
        out: dict[str, Any] = {}
        for name in _SEED_SETTINGS:
            value = getattr(self, name)
            if value is not None:
                out[to_camel(name)] = value.value if isinstance(value, ActivityType) else value
        out.update(self.params)
        return out


def _free_form_parts(rule: FollowUpRule) -> list[Any]:
    parts: list[Any] = [action.params for action in rule.actions]
    stack: list[Any] = list(rule.trigger.conditions)
    while stack:
        node = stack.pop()
        if isinstance(node, ConditionGroup):
            stack.extend(node.conditions)
        else:
            parts.append(node.value)
    return parts


class FollowUpRule(_Model):
    """A follow-up rule: when ``trigger`` matches an event, plan ``actions``.

    Rules apply in descending ``priority``; ties go to the smaller ``rule_id``. A matching rule
    with ``stop_processing`` keeps lower-ranked rules from applying to the same event.
    ``allow_duplicates`` lets the rule open another automated activity for an opportunity that
    still has an open one from this rule (off by default). The condition values and action
    params of one rule together take at most ``document_bytes`` as JSON.
    """

    rule_id: Id = Field(default_factory=new_id)
    name: Text = Field(min_length=1, max_length=200)
    description: Text = Field(default="", max_length=2000)
    trigger: Trigger
    actions: list[Action] = Field(min_length=1, max_length=20)
    is_active: bool = True
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    stop_processing: bool = False
    allow_duplicates: bool = False

    created_by: Id | None = None
    updated_by: Id | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    version: PositiveInt64 = 1

    @model_validator(mode="after")
    def _total_size(self) -> Self:
        limit = _limits.DEFAULT_LIMITS.document_bytes
        parts = _free_form_parts(self)
        if sum(check_document(part, "rule") for part in parts) <= limit:  # cheap upper bounds
            return self
        size = sum(json_size(part) for part in parts)
        if size > limit:
            raise ValueError(
                f"condition values and action params take {size} bytes as JSON; "
                f"at most {limit} per rule"
            )
        return self


# --------------------------------------------------------------------------- events


class Event(_Record):
    """Something that happened, fed to the rules.

    Its document is ``{"eventId", "eventType", "occurredAt", "payload", "actor"}`` (what
    ``to_document`` writes); input may also say ``id``, ``type`` and ``time``, the Python
    attribute names (one spelling per field: giving both is an error). ``payload`` holds the
    fields rules look at (the opportunity, activity or estimate), in camelCase or snake_case;
    it is a free-form document (see the module docstring). Give the id yourself when the event
    may be delivered twice: leadflow uses it to make handling idempotent.
    """

    model_config = ConfigDict(frozen=True)

    id: Id = Field(
        default_factory=new_id,
        validation_alias=AliasChoices("eventId", "id"),
        serialization_alias="eventId",
    )
    type: EventTypeName = Field(
        validation_alias=AliasChoices("eventType", "type"), serialization_alias="eventType"
    )
    time: UtcDatetime = Field(
        validation_alias=AliasChoices("occurredAt", "time"), serialization_alias="occurredAt"
    )
    payload: dict[str, Any] = Field(default_factory=dict)
    actor: Id | None = None

    @field_validator("payload", mode="before")
    @classmethod
    def _json_like(cls, payload: Any) -> Any:
        return as_document(payload, "payload")

    def get(self, *names: str) -> Any:
        """The first payload value present under any of ``names`` (e.g. camel and snake)."""
        for name in names:
            if name in self.payload:
                return self.payload[name]
        return None

    @property
    def opportunity_id(self) -> str | None:
        value = self.get("opportunityId", "opportunity_id")
        return value if isinstance(value, str) else None
