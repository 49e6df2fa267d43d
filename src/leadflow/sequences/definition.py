"""Sequence definitions: multi-step follow-ups as data (pydantic v2, like rules).

A :class:`SequenceDefinition` has an **entry** (an event type and conditions; a rule's
``enroll`` action enrolls too), ordered **steps** with ids and **goals**. Step kinds:

- ``action``: run a registered action handler (``send_email``, ``create_activity``...) with its
  settings, checked by the handler's params model when the sequence is loaded;
- ``wait``: a ``delay`` (hours, or business time on the working calendar) or ``until`` a local
  time of day ("the next business day at 09:00", in the recipient's time zone);
- ``wait_for_event``: an event type and conditions on that event, with a ``timeout``; two
  exits: matched (``then``, default the next step) and timed out (``on_timeout``);
- ``branch``: if / else-if / else on conditions over the enrollment's context
  (``entry.*``: the entry event's payload; ``event.*``: the latest matched event's;
  ``opportunity.*``: what the host's gateway says, e.g. ``opportunity.status``);
- ``split``: A/B/n by weights, deterministic per enrollment;
- ``goto``: jump to a step; ``exit``: end the enrollment.

After an ``action``, a ``wait`` or a matched ``wait_for_event`` the enrollment goes to the next
step in the list; past the last step it is completed. Every structural check (unknown step
references, duplicate ids, loops that never wait, a window that never opens) is made when the
model is built; operators and handler settings are checked against a vocabulary when the
sequence is loaded (:func:`leadflow.rules.check_sequence`).
"""

from __future__ import annotations

import re
from datetime import time
from enum import StrEnum
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_serializer,
    field_validator,
    model_validator,
)

from ..condition_tree import check_condition_tree
from ..fields import EventTypeName, Id, PositiveInt64, Text, UtcDatetime, _Model, new_id
from ..models import Action, ConditionNode, Delay

__all__ = [
    "WAITING_KINDS",
    "ActionStep",
    "BranchCase",
    "BranchStep",
    "Entry",
    "ExitStep",
    "Goal",
    "GotoStep",
    "Reenrollment",
    "SendWindow",
    "SequenceDefinition",
    "SequenceStatus",
    "SplitStep",
    "SplitVariant",
    "Step",
    "StepId",
    "TimeOfDay",
    "WaitForEventStep",
    "WaitStep",
]

StepId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
"""A step's id: 1-64 characters of lower-case letters, digits, ``_`` and ``-``."""

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])\Z")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS: tuple[DayName, ...] = ("mon", "tue", "wed", "thu", "fri")


def _time_of_day(value: Any, field: str) -> time:
    if isinstance(value, time):
        return value.replace(tzinfo=None, second=0, microsecond=0)
    if not isinstance(value, str) or not _HHMM.match(value.strip()):
        raise ValueError(f"{field} must be a local time of day as 'HH:MM' (00:00-23:59)")
    hours, minutes = value.strip().split(":")
    return time(int(hours), int(minutes))


def _conditions(data: Any, key: str = "conditions") -> Any:
    if isinstance(data, dict):
        check_condition_tree(data.get(key), key)
    return data


class SequenceStatus(StrEnum):
    """``draft``: stored, not running; ``active``: enrolls and runs; ``paused``: no new
    entries, due steps held until resumed (then they run, late, once); ``archived``: retired,
    in-flight enrollments ended."""

    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"


class Reenrollment(StrEnum):
    """What an entry does for an opportunity that was enrolled before: ``never`` enroll it
    again; enroll again ``after_end`` of the previous enrollment (never two at once: the
    default); ``every_entry`` ends an active enrollment (reason ``reentered``) and starts
    a new one."""

    NEVER = "never"
    AFTER_END = "after_end"
    EVERY_ENTRY = "every_entry"


class Entry(_Model):
    """Which events enroll their opportunity: an event type and conditions on its payload."""

    event_type: EventTypeName
    conditions: list[ConditionNode] = Field(default_factory=list, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        return _conditions(data)


class Goal(_Model):
    """An event that ends the enrollment as a success (or a decided loss) and cancels its
    pending steps: e.g. ``opportunity.status_changed`` with ``newStatus`` in won / lost."""

    name: Text = Field(min_length=1, max_length=200)
    event_type: EventTypeName
    conditions: list[ConditionNode] = Field(default_factory=list, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        return _conditions(data)


class TimeOfDay(_Model):
    """A local wall time to wait until: ``at`` ("HH:MM") on the first day that qualifies.

    ``next_day``: never the same day (the "next morning" of "email at 09:00 the next business
    morning"); ``business_days``: only working days of the calendar (weekends and holidays
    skipped). The time zone is the recipient's (the contact's, through the opportunity
    gateway), else the sequence's ``timezone``, else the calendar's."""

    at: time
    next_day: bool = False
    business_days: bool = True

    @field_validator("at", mode="before")
    @classmethod
    def _hhmm(cls, value: Any) -> time:
        return _time_of_day(value, "at")

    @field_serializer("at")
    def _as_text(self, value: time) -> str:
        return f"{value:%H:%M}"


class SendWindow(_Model):
    """When a sequence may act on the recipient: ``days`` and ``start``-``end`` local hours in
    the recipient's time zone; a step due outside the window waits for its next opening.
    ``holidays``: the working calendar's holidays are closed days too."""

    days: list[DayName] = Field(default_factory=lambda: list(_WEEKDAYS), min_length=1, max_length=7)
    start: time = time(9)
    end: time = time(17)
    holidays: bool = True

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: Any, info: Any) -> time:
        return _time_of_day(value, info.field_name)

    @field_serializer("start", "end")
    def _as_text(self, value: time) -> str:
        return f"{value:%H:%M}"

    @model_validator(mode="after")
    def _opens(self) -> Self:
        if len(set(self.days)) != len(self.days):
            raise ValueError("days: each day at most once")
        if self.start >= self.end:
            raise ValueError(
                f"the window never opens: start {self.start:%H:%M} is not before end "
                f"{self.end:%H:%M}"
            )
        return self

    @property
    def weekdays(self) -> frozenset[int]:
        """The days as ISO weekday numbers minus one (Monday = 0)."""
        return frozenset(_DAYS.index(day) for day in self.days)


class _Step(_Model):
    id: StepId
    name: Text | None = Field(default=None, max_length=200)


class ActionStep(_Step):
    """Run ``action`` (any registered handler; its ``delay`` must be 0: use a ``wait``)."""

    kind: Literal["action"] = "action"
    action: Action

    @model_validator(mode="after")
    def _no_delay(self) -> Self:
        if self.action.delay.amount:
            raise ValueError("a step's action has no delay: put a wait step before it")
        return self


class WaitStep(_Step):
    """Wait for ``delay`` or ``until`` a local time of day (exactly one of them)."""

    kind: Literal["wait"] = "wait"
    delay: Delay | None = None
    until: TimeOfDay | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.delay is None) == (self.until is None):
            raise ValueError("a wait step has exactly one of 'delay' and 'until'")
        return self


class WaitForEventStep(_Step):
    """Wait for an event of the opportunity (``event_type`` + ``conditions``) for at most
    ``timeout``; matched: go to ``then`` (default: the next step); timed out: go to
    ``on_timeout`` (default: the next step too)."""

    kind: Literal["wait_for_event"] = "wait_for_event"
    event_type: EventTypeName
    conditions: list[ConditionNode] = Field(default_factory=list, max_length=100)
    timeout: Delay
    then: StepId | None = None
    on_timeout: StepId | None = None

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        return _conditions(data)

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.timeout.amount <= 0:
            raise ValueError("timeout: a wait for an event needs a positive timeout")
        return self


class BranchCase(_Model):
    """``when`` all its conditions hold on the enrollment's context, go to ``goto``."""

    when: list[ConditionNode] = Field(min_length=1, max_length=100)
    goto: StepId

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        return _conditions(data, "when")


class BranchStep(_Step):
    """The first case whose conditions hold decides; none: ``otherwise`` (default: the next
    step)."""

    kind: Literal["branch"] = "branch"
    cases: list[BranchCase] = Field(min_length=1, max_length=20)
    otherwise: StepId | None = None


class SplitVariant(_Model):
    """One arm of a split: its ``name`` (reported in A/B results), ``weight`` and target."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
    weight: int = Field(ge=1, le=10_000)
    goto: StepId


class SplitStep(_Step):
    """A/B/n: each enrollment takes one variant with probability ``weight / total``, decided
    by a hash of the enrollment id and the step id (stable across restarts, versions and
    workers)."""

    kind: Literal["split"] = "split"
    variants: list[SplitVariant] = Field(min_length=2, max_length=10)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variants: names must be distinct")
        return self


class GotoStep(_Step):
    """Continue at ``target``."""

    kind: Literal["goto"] = "goto"
    target: StepId


class ExitStep(_Step):
    """End the enrollment (state ``completed``, reason ``exit:<step id>``)."""

    kind: Literal["exit"] = "exit"


def _step_kind(value: Any) -> str:
    if isinstance(value, dict):
        kind = value.get("kind")
        return kind if isinstance(kind, str) else ""
    return str(getattr(value, "kind", ""))


Step = Annotated[
    Annotated[ActionStep, Tag("action")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[WaitForEventStep, Tag("wait_for_event")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[SplitStep, Tag("split")]
    | Annotated[GotoStep, Tag("goto")]
    | Annotated[ExitStep, Tag("exit")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message=(
            "unknown step kind: expected one of action, wait, wait_for_event, branch, split,"
            " goto, exit"
        ),
    ),
]

WAITING_KINDS = frozenset({"wait", "wait_for_event"})
"""Kinds where time passes. Every other kind takes no time (an ``action`` runs as soon as it
is reached), so a loop without one of these would never end (or send without end)."""


def targets(step: Any) -> list[tuple[str, str]]:
    """``(field, step id)`` for every step ``step`` may jump to explicitly."""
    if isinstance(step, GotoStep):
        return [("target", step.target)]
    if isinstance(step, BranchStep):
        out = [(f"cases[{i}].goto", case.goto) for i, case in enumerate(step.cases)]
        if step.otherwise is not None:
            out.append(("otherwise", step.otherwise))
        return out
    if isinstance(step, SplitStep):
        return [(f"variants[{i}].goto", v.goto) for i, v in enumerate(step.variants)]
    if isinstance(step, WaitForEventStep):
        return [
            (name, value)
            for name, value in (("then", step.then), ("on_timeout", step.on_timeout))
            if value is not None
        ]
    return []


def successors(steps: list[Any], index: int) -> list[str | None]:
    """Where step ``index`` may go next (None: past the end, the enrollment completes)."""
    step = steps[index]
    following = steps[index + 1].id if index + 1 < len(steps) else None
    if isinstance(step, ExitStep):
        return []
    if isinstance(step, GotoStep):
        return [step.target]
    if isinstance(step, SplitStep):
        return [v.goto for v in step.variants]
    if isinstance(step, BranchStep):
        return [c.goto for c in step.cases] + [step.otherwise or following]
    if isinstance(step, WaitForEventStep):
        return [step.then or following, step.on_timeout or following]
    return [following]


class SequenceDefinition(_Model):
    """A named, versioned sequence (see the module docstring).

    ``reenrollment`` says what a second entry of an opportunity does; ``window`` (optional)
    when steps may act; ``timezone`` is the sequence's own zone for recipients whose zone the
    gateway does not know (default: the working calendar's); ``daily_cap`` at most that many
    of this sequence's messages (``send_email``, ``send_sms`` steps) per contact and local day
    (one beyond it is deferred to the next day's send window, never dropped; the flow's
    ``FlowSettings.contact_daily_cap`` counts across all sequences). Publishing an edit
    stores a new ``version``.
    """

    sequence_id: Id = Field(default_factory=new_id)
    name: Text = Field(min_length=1, max_length=200)
    description: Text = Field(default="", max_length=2000)
    version: PositiveInt64 = 1
    status: SequenceStatus = SequenceStatus.DRAFT
    entry: Entry | None = None
    reenrollment: Reenrollment = Reenrollment.AFTER_END
    steps: list[Step] = Field(min_length=1, max_length=100)
    goals: list[Goal] = Field(default_factory=list, max_length=20)
    window: SendWindow | None = None
    timezone: str | None = None
    daily_cap: int | None = Field(default=None, ge=1, le=1000)
    created_by: Id | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _structure(self) -> Self:
        ids = [step.id for step in self.steps]
        seen: set[str] = set()
        for i, step_id in enumerate(ids):
            if step_id in seen:
                raise ValueError(f"steps[{i}].id: step id {step_id!r} is used twice")
            seen.add(step_id)
        for i, step in enumerate(self.steps):
            for field, target in targets(step):
                if target not in seen:
                    raise ValueError(f"steps[{i}] ({step.id}).{field}: no step has id {target!r}")
        loop = _loop_without_wait(self.steps)
        if loop is not None:
            raise ValueError("steps: a loop with no wait never ends: " + " -> ".join(loop))
        return self

    def step(self, step_id: str) -> Any:
        """The step with ``step_id`` (KeyError if none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def index(self, step_id: str) -> int:
        for i, step in enumerate(self.steps):
            if step.id == step_id:
                return i
        raise KeyError(step_id)


def _loop_without_wait(steps: list[Any]) -> list[str] | None:
    """A cycle through steps that take no time (every kind but the waits), or None."""
    index = {step.id: i for i, step in enumerate(steps)}
    instant = {step.id for step in steps if step.kind not in WAITING_KINDS}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(step_id: str) -> list[str] | None:
        state[step_id] = 1
        path.append(step_id)
        for nxt in successors(steps, index[step_id]):
            if nxt is None or nxt not in instant:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found is not None:
                    return found
        path.pop()
        state[step_id] = 2
        return None

    for step_id in instant:
        if step_id not in state:
            found = visit(step_id)
            if found is not None:
                return found
    return None
