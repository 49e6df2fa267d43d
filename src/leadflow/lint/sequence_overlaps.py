"""Between sequences: two that enroll on one event and both message the contact at once
(``messages-at-once``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta

from ..rules import OperatorRegistry
from ..rules.sequence_checks import step_location
from ..sequences.definition import (
    ActionStep,
    SequenceDefinition,
    SequenceStatus,
    WaitForEventStep,
    WaitStep,
    successors,
)
from .findings import Finding
from .logic import conjunction, contradiction

__all__ = ["MESSAGE_ACTIONS", "overlap_findings"]

MESSAGE_ACTIONS = frozenset({"send_email", "send_sms", "send_notification"})
"""The action types that message someone (for the ``messages-at-once`` check)."""

_AT_ONCE = timedelta(minutes=30)
"""Waits shorter than this do not separate two messages (``messages-at-once``)."""


def _first_messages(definition: SequenceDefinition) -> list[tuple[int, ActionStep]]:
    """The message action steps reached from the first step with no wait in between."""
    steps = definition.steps
    index = {step.id: i for i, step in enumerate(steps)}
    out: list[tuple[int, ActionStep]] = []
    seen: set[str] = set()
    todo = [steps[0].id]
    while todo:
        step_id = todo.pop()
        if step_id in seen:
            continue
        seen.add(step_id)
        i = index[step_id]
        step = steps[i]
        if isinstance(step, WaitForEventStep):
            continue
        if isinstance(step, WaitStep):
            short = step.delay is not None and not step.delay.is_business_time
            if not (short and step.delay is not None and step.delay.as_timedelta() < _AT_ONCE):
                continue
        if isinstance(step, ActionStep) and step.action.action_type in MESSAGE_ACTIONS:
            out.append((i, step))
        todo.extend(n for n in successors(steps, i) if n is not None)
    return sorted(out, key=lambda pair: pair[0])


def overlap_findings(
    definitions: Sequence[SequenceDefinition], operators: OperatorRegistry
) -> Iterator[Finding]:
    """``messages-at-once`` warnings between ``definitions`` (archived ones left out)."""
    live = [
        d for d in definitions if d.entry is not None and d.status not in (SequenceStatus.ARCHIVED,)
    ]
    first = {d.sequence_id: _first_messages(d) for d in live}
    for b, later in enumerate(live):
        mine = first[later.sequence_id]
        if not mine:
            continue
        for earlier in live[:b]:
            theirs = first[earlier.sequence_id]
            assert later.entry is not None and earlier.entry is not None
            if not theirs or later.entry.event_type != earlier.entry.event_type:
                continue
            both = conjunction([*later.entry.conditions, *earlier.entry.conditions])
            if contradiction(both, operators) is not None:
                continue
            index, step = mine[0]
            other_index, other = theirs[0]
            yield Finding(
                "warning",
                later.sequence_id,
                f"{step_location(index, step)}.action",
                "messages-at-once",
                f"sequence {later.sequence_id!r} and sequence {earlier.sequence_id!r} can "
                f"enroll on the same {later.entry.event_type} event and both message the "
                f"contact at once ({step.action.action_type} here, "
                f"{other.action.action_type} at {step_location(other_index, other)} there)",
                "make their entry conditions exclusive, or put a wait before one message",
            )
