"""Records the stores keep for the runtime: scheduled actions, audit entries, job slots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .documents import as_document
from .fields import Id, NonNegativeInt64, PositiveInt64, UtcDatetime, _Model, _Record
from .limits import DEFAULT_LIMITS
from .models import Action, Event, new_id

__all__ = [
    "FINISHED_STATES",
    "ActionKind",
    "AuditEntry",
    "DuplicatePolicy",
    "ScheduledAction",
    "ScheduledActionState",
    "SlotClaim",
    "SlotRecord",
    "SlotState",
]


class ScheduledActionState(StrEnum):
    """Life of a scheduled action: ``pending`` -> ``claimed`` -> ``done``; a failure goes back
    to ``pending`` (later) or, after the last attempt or a permanent error, to ``parked``;
    ``cancelled`` when its opportunity's or its rule's pending actions were cancelled."""

    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    PARKED = "parked"
    CANCELLED = "cancelled"


FINISHED_STATES = frozenset({ScheduledActionState.DONE, ScheduledActionState.CANCELLED})
"""States a retention purge may delete (parked actions wait for a person and are kept)."""


class ActionKind(StrEnum):
    """What a scheduled action does when it runs.

    ``rule``: one action a rule planned (``rule_id``, ``action_index`` and ``action`` say which).
    ``delivery``: an outbox entry that feeds ``event`` into the rules once the write it was
    stored before has happened (a completion: ``activity_id`` names the activity).
    ``step``: one visit of a sequence enrollment (``enrollment_id``, ``step_id``; ``rule_id``
    and ``rule_version`` name the sequence and its version, ``action_index`` is the visit);
    ``action`` is the step's action, or None for a timer (a wait's end, a wait's timeout).
    """

    RULE = "rule"
    DELIVERY = "delivery"
    STEP = "step"


class DuplicatePolicy(StrEnum):
    """What a ``create_activity`` action does while the opportunity still has an open activity
    from the same rule: ``skip`` it (the default) or ``allow`` another one."""

    SKIP = "skip"
    ALLOW = "allow"


class ScheduledAction(_Record):
    """A planned action stored until it is due, then carried out exactly once in effect.

    ``planned_at`` is when the rule planned it for (event time + delay); ``due_at`` is when it
    may next run (the same, or a retry time). ``depth`` is the cascade level of the event that
    planned it. ``rule_version`` is the version of the rule that planned it (None for a
    delivery, and for actions stored before versions were recorded). A ``delivery`` has no
    rule or action. ``partition`` says which partition
    (shard) of the scheduled actions it belongs to: workers may be pinned to one partition
    (:meth:`~leadflow.ports.ScheduledActionStore.claim_due`); the runtime derives it from the
    opportunity id (:func:`leadflow.runtime.planning.partition_for`), 0 with one partition.

    Immutable, like its ``event`` and ``action``: a stage of its life is a new value
    (``model_copy(update=...)``), so one that was validated once stays valid. The free-form
    documents inside (the event's ``payload``, the action's ``params``) are plain dicts: stores
    check and copy them on the way in and copy them on the way out.
    """

    model_config = ConfigDict(frozen=True)

    action_id: Id = Field(default_factory=new_id)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=400)]
    kind: ActionKind = ActionKind.RULE
    event: Event
    rule_id: Id | None = None
    rule_name: str | None = Field(default=None, max_length=200)
    rule_version: PositiveInt64 | None = None
    action_index: NonNegativeInt64 = 0
    action: Action | None = None
    opportunity_id: Id | None = None
    activity_id: Id | None = None
    enrollment_id: Id | None = None
    step_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    partition: int = Field(default=0, ge=0, lt=DEFAULT_LIMITS.partitions)
    planned_at: UtcDatetime
    depth: int = Field(default=0, ge=0, le=100)
    duplicates: DuplicatePolicy = DuplicatePolicy.SKIP
    explanation: str | None = Field(default=None, max_length=20_000)
    due_at: UtcDatetime
    state: ScheduledActionState = ScheduledActionState.PENDING
    attempts: NonNegativeInt64 = 0
    max_attempts: int = Field(default=5, ge=1, le=100)
    last_error: str | None = Field(default=None, max_length=2000)
    lease_owner: str | None = None
    lease_expires_at: UtcDatetime | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _planned_defaults_to_due(cls, data: Any) -> Any:
        if isinstance(data, dict) and "planned_at" not in data and "plannedAt" not in data:
            due = data.get("due_at", data.get("dueAt"))
            if due is not None:
                data = {**data, "planned_at": due}
        return data

    @model_validator(mode="after")
    def _kind_fields(self) -> Self:
        if self.kind is ActionKind.RULE and (self.rule_id is None or self.action is None):
            raise ValueError("a rule action needs ruleId and action")
        if self.kind is ActionKind.DELIVERY and self.action is not None:
            raise ValueError("a delivery carries an event, not an action")
        if self.kind is ActionKind.STEP and (
            self.enrollment_id is None or self.step_id is None or self.rule_id is None
        ):
            raise ValueError("a sequence step needs enrollmentId, stepId and ruleId (sequence)")
        return self

    @classmethod
    def _trusted(cls, **fields: Any) -> Self:
        """A scheduled action built from fields the runtime made and checked itself (see
        :func:`leadflow.runtime.planning.rule_action`), without validating them again: what
        pydantic's ``model_construct`` does for this model (no extra fields, no private
        attributes; unnamed fields take their static defaults), at a tenth of its cost."""
        unknown = fields.keys() - _DEFAULTS.keys()
        if unknown:
            raise TypeError(f"unknown fields: {sorted(unknown)}")
        state = _DEFAULTS | fields  # in field order: every name is one of _DEFAULTS'
        new = cls.__new__(cls)
        _set(new, "__dict__", state)
        _set(new, "__pydantic_extra__", None)
        _set(new, "__pydantic_fields_set__", set(fields))
        _set(new, "__pydantic_private__", None)
        return new

    @property
    def action_type(self) -> str:
        """The action's type, ``deliver_event`` for a delivery, ``sequence_timer`` for a
        sequence's timer (for logs and reports)."""
        if self.action is not None:
            return self.action.action_type
        return "sequence_timer" if self.kind is ActionKind.STEP else "deliver_event"


_set = object.__setattr__
_DEFAULTS: dict[str, Any] = {
    name: None if field.is_required() or field.default_factory else field.default
    for name, field in ScheduledAction.model_fields.items()
}
"""Each field's static default, in field order (None for the fields the runtime always names)."""


class AuditEntry(_Model):
    """One change made through leadflow: who (``actor``), when (``at``), to what (``subject``
    and ``subject_id``), the kind of ``change``, and the document before and after.

    Subjects: ``rule`` (created / updated / deleted), ``activity`` (created / completed /
    deleted, when done by a person), ``action`` (retried / cancelled scheduled actions),
    ``sequence`` (created / published / paused / resumed / archived) and ``enrollment``
    (enrolled / unenrolled / moved / ended, by a person's change).
    """

    entry_id: Id = Field(default_factory=new_id)
    subject: Literal["rule", "activity", "action", "sequence", "enrollment"]
    subject_id: Id
    change: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,39}$")]
    actor: Id
    at: UtcDatetime
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    note: str | None = Field(default=None, max_length=2000)

    @field_validator("before", "after", mode="before")
    @classmethod
    def _documents(cls, value: Any, info: ValidationInfo) -> Any:
        return None if value is None else as_document(value, str(info.field_name))


class SlotState(StrEnum):
    """``running`` while a worker holds the slot; then ``succeeded`` or ``failed`` for good."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SlotRecord:
    """What the store knows about one slot. ``token`` identifies one claim: a worker that
    re-claims its own expired slot gets a new token, so a stale finish cannot land."""

    job: str
    slot: str
    state: SlotState
    owner: str
    token: str
    claimed_at: datetime
    lease_until: datetime
    expires_at: datetime
    attempts: int = 1
    finished_at: datetime | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """The answer to a claim: ``acquired`` when the caller now holds the slot; ``record`` is the
    slot as stored after the attempt (the caller's claim, or whoever has it)."""

    acquired: bool
    record: SlotRecord
