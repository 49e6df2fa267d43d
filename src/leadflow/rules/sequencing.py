"""The sequence interpreter: pure. Given a sequence, where an enrollment stands and what just
happened, it says where the enrollment stops next, when, and why.

A :class:`SequenceProgram` is a definition compiled against a :class:`Vocabulary` (its
operators and working calendar). :meth:`SequenceProgram.start` walks from the first step,
:meth:`SequenceProgram.after` from a step that finished (an action ran, a wait ended, a wait
for an event matched or timed out). The walk passes through the steps decided at once
(``branch``, ``split``, ``goto``), each a :class:`Hop` with its reason, and stops at the next
step where time passes (a :class:`Stop`): an ``action`` (due at once, or at the send window's
next opening in the recipient's zone), a ``wait`` (due when it ends), a ``wait_for_event``
(due when it times out), or the end (``exit`` or past the last step). No I/O, no clock: the
caller gives ``now``, the recipient's zone and the context branches read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from ..errors import InvalidInputError
from ..models import ConditionNode, Delay, Event
from ..sequences.definition import (
    ActionStep,
    BranchStep,
    ExitStep,
    GotoStep,
    SequenceDefinition,
    SplitStep,
    WaitForEventStep,
    WaitStep,
)
from .calendar import WorkingCalendar
from .compiler import CompiledCondition, combine, compile_condition, describe
from .vocabulary import Vocabulary

__all__ = [
    "Hop",
    "SequenceProgram",
    "Stop",
    "Zone",
    "reacting_event_types",
    "resolved",
    "split_choice",
]

Zone = ZoneInfo | Callable[[], ZoneInfo]
"""The recipient's time zone, or how to find it (asked only by a step that needs it: a send
window, a wait until a local time, a deferral)."""


def resolved(zone: Zone) -> ZoneInfo:
    return zone if isinstance(zone, ZoneInfo) else zone()


_MAX_HOPS: Final = 1000
_SCAN_DAYS: Final = 3660


@dataclass(frozen=True, slots=True)
class Hop:
    """A step passed through at once (``branch``, ``split``, ``goto``) and why it went where
    it went."""

    step_id: str
    kind: str
    outcome: str
    why: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Where the enrollment stops next: ``step_id`` of ``kind`` (``action``, ``wait``,
    ``wait_for_event``), due at ``due_at`` (the action's send time, the wait's end, the
    timeout); or ``kind == "end"`` with ``end_reason`` (``completed`` or ``exit:<step>``).
    ``hops`` are the steps passed through on the way, ``variants`` the split decisions taken,
    ``why`` says why the stop is due when it is."""

    kind: str
    step_id: str | None
    due_at: datetime | None
    waiting_for: str | None = None
    end_reason: str | None = None
    hops: tuple[Hop, ...] = ()
    variants: Mapping[str, str] = field(default_factory=dict)
    why: str = ""

    @property
    def ended(self) -> bool:
        return self.kind == "end"


def split_choice(enrollment_id: str, step: SplitStep) -> str:
    """The variant an enrollment takes at ``step``: a SHA-256 of the enrollment and step ids
    read as a number in ``[0, total weight)``; the same on every worker, restart and version
    that keeps the step's variants."""
    digest = hashlib.sha256(f"{enrollment_id}\x00{step.id}".encode()).digest()
    total = sum(v.weight for v in step.variants)
    point = int.from_bytes(digest[:8], "big") % total
    for variant in step.variants:
        if point < variant.weight:
            return variant.name
        point -= variant.weight
    raise AssertionError("unreachable")  # pragma: no cover


def reacting_event_types(definition: SequenceDefinition) -> frozenset[str]:
    """The event types that can change an enrollment already on ``definition``: its goals'
    and its ``wait_for_event`` steps' (its entry's only enrolls)."""
    types = {goal.event_type for goal in definition.goals}
    types.update(s.event_type for s in definition.steps if isinstance(s, WaitForEventStep))
    return frozenset(types)


def _all(nodes: list[ConditionNode], vocabulary: Vocabulary, location: str) -> CompiledCondition:
    budget = [vocabulary.limits.conditions_per_rule]
    parts = [
        compile_condition(
            node, vocabulary.operators, f"{location}[{i}]", limits=vocabulary.limits,
            budget=budget,
        )
        for i, node in enumerate(nodes)
    ]  # fmt: skip
    return combine("all", parts)


class SequenceProgram:
    """One sequence version compiled for a vocabulary (see the module docstring).

    Raises :class:`~leadflow.InvalidInputError` naming the step and field when a condition
    does not compile (an unknown operator, a value it refuses)."""

    def __init__(self, definition: SequenceDefinition, vocabulary: Vocabulary) -> None:
        self.definition = definition
        self.vocabulary = vocabulary
        self._calendar = vocabulary.calendar
        self._index = {step.id: i for i, step in enumerate(definition.steps)}
        self._zones: dict[str, WorkingCalendar] = {}
        try:
            entry = definition.entry
            self._entry = (
                None if entry is None else _all(entry.conditions, vocabulary, "entry.conditions")
            )
            self._goals = [
                (goal, _all(goal.conditions, vocabulary, f"goals[{i}].conditions"))
                for i, goal in enumerate(definition.goals)
            ]
            self._waits: dict[str, CompiledCondition] = {}
            self._cases: dict[str, list[CompiledCondition]] = {}
            for i, step in enumerate(definition.steps):
                where = f"steps[{i}] ({step.id})"
                if isinstance(step, WaitForEventStep):
                    self._waits[step.id] = _all(step.conditions, vocabulary, f"{where}.conditions")
                elif isinstance(step, BranchStep):
                    self._cases[step.id] = [
                        _all(case.when, vocabulary, f"{where}.cases[{j}].when")
                        for j, case in enumerate(step.cases)
                    ]
        except ValueError as exc:
            location, _, problem = str(exc).partition(": ")
            raise InvalidInputError(
                f"sequence {definition.sequence_id!r}: {problem or exc}", field=location
            ) from None

    # ------------------------------------------------------------------ events

    def enters(self, event: Event) -> bool:
        """Whether ``event`` enrolls its opportunity (its type and the entry conditions)."""
        entry = self.definition.entry
        if entry is None or self._entry is None or event.type != entry.event_type:
            return False
        return self._entry(event.payload, event.time)

    def goal_reached(self, event: Event) -> str | None:
        """The name of the first goal ``event`` meets, or None."""
        for goal, test in self._goals:
            if event.type == goal.event_type and test(event.payload, event.time):
                return goal.name
        return None

    def wait_matches(self, step_id: str, event: Event) -> bool:
        """Whether ``event`` is what the ``wait_for_event`` step ``step_id`` waits for."""
        step = self.definition.step(step_id)
        if not isinstance(step, WaitForEventStep) or event.type != step.event_type:
            return False
        return self._waits[step_id](event.payload, event.time)

    def event_types(self) -> frozenset[str]:
        """Every event type this sequence listens to (entry, goals, waits)."""
        entry = self.definition.entry
        reacting = reacting_event_types(self.definition)
        return reacting if entry is None else reacting | {entry.event_type}

    # ------------------------------------------------------------------ walking

    def start(
        self, *, enrollment_id: str, now: datetime, context: Mapping[str, Any], zone: Zone
    ) -> Stop:
        """Where a new enrollment stops first."""
        return self._walk(0, enrollment_id, now, context, zone, "enrolled")

    def after(
        self,
        step_id: str,
        outcome: str,
        *,
        enrollment_id: str,
        now: datetime,
        context: Mapping[str, Any],
        zone: Zone,
    ) -> Stop:
        """Where the enrollment stops after step ``step_id`` finished with ``outcome``
        (``done`` for an action or a wait; ``matched`` or ``timed_out`` for a wait for an
        event). KeyError for an unknown step."""
        index = self._index[step_id]
        step = self.definition.steps[index]
        target: str | None
        if isinstance(step, WaitForEventStep):
            target = step.then if outcome == "matched" else step.on_timeout
            if target is not None:
                return self._walk(self._index[target], enrollment_id, now, context, zone, outcome)
        return self._walk(index + 1, enrollment_id, now, context, zone, outcome)

    def _walk(
        self,
        index: int,
        enrollment_id: str,
        now: datetime,
        context: Mapping[str, Any],
        zone: Zone,
        came: str,
    ) -> Stop:
        steps = self.definition.steps
        hops: list[Hop] = []
        variants: dict[str, str] = {}
        for _ in range(_MAX_HOPS):
            if index >= len(steps):
                return Stop("end", None, None, end_reason="completed", hops=tuple(hops),
                            variants=variants, why="past the last step")  # fmt: skip
            step = steps[index]
            if isinstance(step, ActionStep):
                due, why = self.send_time(now, zone)
                return Stop("action", step.id, due, hops=tuple(hops), variants=variants, why=why)
            if isinstance(step, WaitStep):
                due, why = self._wait_end(step, now, zone)
                return Stop("wait", step.id, due, hops=tuple(hops), variants=variants, why=why)
            if isinstance(step, WaitForEventStep):
                due = self._after_delay(step.timeout, now)
                return Stop(
                    "wait_for_event", step.id, due, waiting_for=step.event_type,
                    hops=tuple(hops), variants=variants,
                    why=f"waits for {step.event_type} until {due.isoformat()} (timeout)",
                )  # fmt: skip
            if isinstance(step, ExitStep):
                hops.append(Hop(step.id, "exit", "exit", "exit step"))
                return Stop("end", None, None, end_reason=f"exit:{step.id}", hops=tuple(hops),
                            variants=variants, why=f"exit step {step.id}")  # fmt: skip
            target: str | None
            if isinstance(step, GotoStep):
                target, outcome, why = step.target, step.target, f"go to {step.target}"
            elif isinstance(step, SplitStep):
                name = split_choice(enrollment_id, step)
                variants[step.id] = name
                target = next(v.goto for v in step.variants if v.name == name)
                total = sum(v.weight for v in step.variants)
                weight = next(v.weight for v in step.variants if v.name == name)
                outcome, why = f"variant {name}", f"variant {name} (weight {weight}/{total})"
            else:
                assert isinstance(step, BranchStep)
                target, outcome, why = self._branch(step, context, now)
            hops.append(Hop(step.id, step.kind, outcome, why))
            index = self._index[target] if target is not None else index + 1
        raise InvalidInputError(  # the model refuses loops without waits; a guard all the same
            f"sequence {self.definition.sequence_id!r} passed {_MAX_HOPS} steps without a wait",
            field="steps",
        )

    def _branch(
        self, step: BranchStep, context: Mapping[str, Any], now: datetime
    ) -> tuple[str | None, str, str]:
        for j, (case, test) in enumerate(zip(step.cases, self._cases[step.id], strict=True)):
            if test(context, now):
                held = " and ".join(describe(node) for node in case.when)
                return case.goto, f"case {j}", f"case {j} held ({held}): go to {case.goto}"
        where = step.otherwise or "the next step"
        return step.otherwise, "otherwise", f"no case held: {where}"

    # ------------------------------------------------------------------ time

    def _after_delay(self, delay: Delay, now: datetime) -> datetime:
        if delay.unit == "business_days":
            return self._calendar.add_business_days(now, int(delay.amount))
        if delay.unit == "business_hours":
            return self._calendar.add_business_hours(now, delay.amount)
        return now + delay.as_timedelta()

    def _working_day(self, day: date) -> bool:
        calendar = self._calendar
        return day.weekday() in calendar.workdays and day not in calendar.holidays

    def _wait_end(self, step: WaitStep, now: datetime, lazy: Zone) -> tuple[datetime, str]:
        if step.delay is not None:
            end = self._after_delay(step.delay, now)
            return end, f"waits {_delay_text(step.delay)} until {end.isoformat()}"
        until = step.until
        assert until is not None
        zone = resolved(lazy)
        day = now.astimezone(zone).date() + timedelta(days=1 if until.next_day else 0)
        for _ in range(_SCAN_DAYS):
            if not until.business_days or self._working_day(day):
                wall = datetime.combine(day, until.at, tzinfo=zone).astimezone(UTC)
                if wall > now:
                    kind = "business day" if until.business_days else "day"
                    return wall, (
                        f"waits until {until.at:%H:%M} {zone.key} on the next {kind}"
                        f"{' after today' if until.next_day else ''} ({wall.isoformat()})"
                    )
            day += timedelta(days=1)
        raise InvalidInputError("no such day within ten years", field="until")

    def deferred(self, step_id: str, now: datetime, lazy: Zone, why: str) -> Stop:
        """The same action step again, due at the send window's first opening on the next
        local day in ``zone`` (a daily cap was reached)."""
        zone = resolved(lazy)
        tomorrow = now.astimezone(zone).date() + timedelta(days=1)
        midnight = datetime.combine(tomorrow, datetime.min.time(), tzinfo=zone).astimezone(UTC)
        due, when = self.send_time(midnight, zone)
        return Stop("action", step_id, due, why=f"{why}: deferred to the next day ({when})")

    def send_time(self, now: datetime, lazy: Zone) -> tuple[datetime, str]:
        """When an action step due ``now`` may act: ``now`` inside the send window (or
        without one), else the window's next opening in ``zone``."""
        window = self.definition.window
        if window is None:
            return now, "due at once (no send window)"
        zone = resolved(lazy)
        calendar = self._zones.get(zone.key)
        if calendar is None:
            calendar = WorkingCalendar(
                zone.key,
                workdays=window.weekdays,
                start=window.start,
                end=window.end,
                holidays=self._calendar.holidays if window.holidays else (),
            )
            self._zones[zone.key] = calendar
        opens = calendar.next_working_time(now)
        if opens == now:
            return now, f"due at once (inside the send window, {zone.key})"
        return (
            opens,
            f"outside the send window: waits for its opening at {opens.isoformat()} ({zone.key})",
        )


def _delay_text(delay: Delay) -> str:
    amount = int(delay.amount) if delay.amount == int(delay.amount) else delay.amount
    return f"{amount} {delay.unit.replace('_', ' ')}"
