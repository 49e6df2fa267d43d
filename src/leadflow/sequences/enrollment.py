"""Enrollments: one opportunity's way through one sequence, as the stores keep it.

An enrollment stands at a **visit** (a counter of the steps it stopped at: 1 for the first) and
the step of that visit. Each visit is one scheduled action in the scheduled-action store, keyed
on the enrollment and the visit, so whatever decides the next visit first (a timer, a matched
event, a goal) decides it for everybody. The enrollment record is changed only by compare-and-
set on its ``revision``; that order is what settles races (see :mod:`leadflow.runtime.sequencer`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from ..documents import as_document
from ..fields import (
    EventTypeName,
    Id,
    NonNegativeInt64,
    PositiveInt64,
    Text,
    UtcDatetime,
    _Model,
    _Record,
)

__all__ = ["ENDED_STATES", "Enrollment", "EnrollmentHead", "EnrollmentState", "StepRecord"]

HISTORY_LIMIT = 200
"""Step records an enrollment keeps (the oldest are dropped past it; the scheduled-action
store and the audit trail keep the rest)."""


class EnrollmentState(StrEnum):
    """``active`` until it ends: ``completed`` (past its last step, or an exit step),
    ``goal_reached`` (a goal event), ``unenrolled`` (by a person), ``ended`` (by the system:
    re-entry, a new version that ends enrollments in flight, an archived sequence)."""

    ACTIVE = "active"
    COMPLETED = "completed"
    GOAL_REACHED = "goal_reached"
    UNENROLLED = "unenrolled"
    ENDED = "ended"


ENDED_STATES = frozenset(s for s in EnrollmentState if s is not EnrollmentState.ACTIVE)


class StepRecord(_Model):
    """What happened at one step of an enrollment, and why (the explanation format)."""

    model_config = ConfigDict(frozen=True)

    visit: NonNegativeInt64
    step_id: str = Field(max_length=64)
    kind: str = Field(max_length=32)
    at: UtcDatetime
    outcome: str = Field(max_length=64)
    why: Text = Field(default="", max_length=2000)
    version: PositiveInt64 = 1


class EnrollmentHead(_Record):
    """An enrollment without its step history: what the sequencer reads and moves on a step
    (:class:`~leadflow.ports.sequences.EnrollmentSteps`), so that a step costs the same
    whatever the history's length. Not an :class:`Enrollment` (``isinstance`` says so, and it
    has no ``history``): a head is never taken for an enrollment whose history is empty. Every
    :class:`Enrollment` is a head too (its fields are the head's and ``history``)."""

    model_config = ConfigDict(frozen=True)

    enrollment_id: Id
    sequence_id: Id
    sequence_version: PositiveInt64
    opportunity_id: Id
    state: EnrollmentState = EnrollmentState.ACTIVE
    visit: NonNegativeInt64 = 0
    step_id: str | None = Field(default=None, max_length=64)
    sending: bool = False
    held: bool = False
    waiting_for: EventTypeName | None = None
    variants: dict[str, str] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    entry_event_id: Id | None = None
    enrolled_by: Id | None = None
    goal: Text | None = Field(default=None, max_length=200)
    end_reason: Text | None = Field(default=None, max_length=500)
    revision: PositiveInt64 = 1
    enrolled_at: UtcDatetime
    updated_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None

    @field_validator("context", mode="before")
    @classmethod
    def _json_like(cls, context: Any) -> Any:
        return as_document(context, "context")

    @field_validator("variants")
    @classmethod
    def _few(cls, variants: dict[str, str]) -> dict[str, str]:
        if len(variants) > 100:
            raise ValueError("at most 100 split decisions")
        return variants

    @property
    def active(self) -> bool:
        return self.state is EnrollmentState.ACTIVE


HEAD_FIELDS = tuple(EnrollmentHead.model_fields)
"""The fields of :class:`EnrollmentHead`: every field of :class:`Enrollment` but ``history``."""


class Enrollment(EnrollmentHead):
    """One opportunity in one sequence (see the module docstring).

    ``step_id``/``visit``: where it stands (visit 0, no step: just enrolled); ``sending``: the
    action step of this visit has begun (a goal stored later does not stop it; one stored
    before does); ``held``: its visit came due while the sequence was paused (it runs when the
    sequence is resumed); ``waiting_for``: the event type a ``wait_for_event`` step waits for;
    ``variants``: the split variants taken (split step id -> variant name); ``context``: the
    entry event's payload (``entry``) and the latest matched event's (``event``), what branch
    conditions read; ``history``: the step records, oldest first (at most 200).
    """

    model_config = ConfigDict(frozen=True)

    history: list[StepRecord] = Field(default_factory=list, max_length=HISTORY_LIMIT)
