"""Records the stores keep for the runtime: scheduled actions, audit entries, job slots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field

from .models import Action, Event, Id, UtcDatetime, _Model, new_id

__all__ = [
    "RuleAuditEntry",
    "ScheduledAction",
    "ScheduledActionState",
    "SlotClaim",
    "SlotRecord",
    "SlotState",
]


class ScheduledActionState(StrEnum):
    """Life of a scheduled action: ``pending`` -> ``claimed`` -> ``done``; a failure goes back
    to ``pending`` (later) or, after the last attempt, to ``parked``; ``cancelled`` if its
    opportunity's pending actions were cancelled."""

    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    PARKED = "parked"
    CANCELLED = "cancelled"


class ScheduledAction(_Model):
    """A planned action stored until it is due, then carried out exactly once in effect."""

    action_id: Id = Field(default_factory=new_id)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=400)]
    event: Event
    rule_id: Id
    action_index: int = Field(ge=0)
    action: Action
    opportunity_id: Id | None = None
    due_at: UtcDatetime
    state: ScheduledActionState = ScheduledActionState.PENDING
    attempts: int = Field(default=0, ge=0)
    max_attempts: int = Field(default=5, ge=1, le=100)
    last_error: str | None = None
    lease_owner: str | None = None
    lease_expires_at: UtcDatetime | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class RuleAuditEntry(_Model):
    """One change to a rule: who, when, what it was before and after (documents)."""

    entry_id: Id = Field(default_factory=new_id)
    rule_id: Id
    change: Literal["created", "updated", "deleted"]
    actor: Id
    at: UtcDatetime
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


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
