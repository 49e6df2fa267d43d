"""Load-time checks of a sequence definition against a vocabulary.

The :class:`~leadflow.sequences.SequenceDefinition` model refuses what it can judge alone
(unknown step references, duplicate ids, loops that never wait, a bad time zone). What needs a
vocabulary is checked here, as :func:`~leadflow.rules.validate_rule` checks a rule:

- every event type (entry, goals, ``wait_for_event`` steps) known, the closest name suggested;
- every condition (entry, goals, ``wait_for_event`` steps, branch cases) made of known operators
  with values they accept, within the limits (depth, count per condition list);
- every branch field read from the enrollment's context: ``entry.*``, ``event.*`` or
  ``opportunity.*``;
- every action step's action type handled, its settings accepted by the handler's params model
  (only when the vocabulary knows its action types: :attr:`Vocabulary.actions
  <leadflow.rules.Vocabulary.actions>`; the pure engine's vocabulary does not);
- every business-time wait or timeout, and every ``until`` on business days, plannable on the
  vocabulary's working calendar.

:func:`sequence_problems` returns every problem (for lint and ``leadflow sequences
validate``); :func:`check_sequence` raises :class:`~leadflow.InvalidInputError` for the first
one (for loading). Locations name the step by index and id and the field within it:
``steps[2] (check-reply).conditions[0].operator``, ``goals[0].conditions[1].value``,
``steps[1] (email).action.template``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..errors import InvalidInputError
from ..models import Action, Condition, ConditionGroup, ConditionNode, Delay
from ..sequences.definition import (
    ActionStep,
    BranchStep,
    SequenceDefinition,
    WaitForEventStep,
    WaitStep,
)
from .calendar import WorkingCalendar
from .compiler import compile_condition
from .vocabulary import Vocabulary

__all__ = [
    "CONTEXT_ROOTS",
    "SequenceProblem",
    "check_sequence",
    "condition_nodes",
    "sequence_problems",
    "step_location",
]

CONTEXT_ROOTS: tuple[str, ...] = ("entry", "event", "opportunity")
"""What a branch condition's field may start with: the enrollment's context is
``{"entry": <entry event payload>, "event": <latest matched event payload>, "opportunity":
{"status": ..., "owner": ...}}``."""

# A moment every calendar is asked to plan from when a sequence loads (a Monday), as for rules.
_PROBE = datetime(2026, 1, 5, 9, tzinfo=UTC)

# The Action fields that are settings, as the rule checks spell their locations.
_SEED_SETTINGS = {
    "activityType": "activityType",
    "subject": "subject",
    "description": "description",
    "assignTo": "assignTo",
    "template": "template",
}


@dataclass(frozen=True, slots=True)
class SequenceProblem:
    """One reason a sequence cannot load: ``location`` inside the definition (``steps[1]
    (email).action.template``), a stable ``code`` (``unknown-event-type``,
    ``unknown-operator``, ``bad-value``, ``bad-condition``, ``bad-branch-field``,
    ``unknown-action``, ``bad-params``, ``bad-delay``), the ``problem`` and a ``hint``."""

    location: str
    code: str
    problem: str
    hint: str = ""


def step_location(index: int, step: Any) -> str:
    """``steps[2] (check-reply)``: how every check names a step."""
    return f"steps[{index}] ({step.id})"


def condition_nodes(
    nodes: Sequence[ConditionNode], prefix: str
) -> Iterator[tuple[str, ConditionNode]]:
    """Every node of a condition list with its location (``prefix[0].all[1]``), pre-order."""
    for i, node in enumerate(nodes):
        where = f"{prefix}[{i}]"
        yield where, node
        if isinstance(node, ConditionGroup):
            yield from condition_nodes(node.conditions, f"{where}.{node.kind}")


def _condition_problems(
    nodes: Sequence[ConditionNode], prefix: str, vocabulary: Vocabulary, *, branch: bool = False
) -> list[SequenceProblem]:
    operators = vocabulary.operators
    out: list[SequenceProblem] = []
    for where, node in condition_nodes(nodes, prefix):
        if not isinstance(node, Condition):
            continue
        if branch:
            root, dot, rest = node.field.partition(".")
            if root not in CONTEXT_ROOTS or not dot or not rest:
                out.append(
                    SequenceProblem(
                        f"{where}.field",
                        "bad-branch-field",
                        f"a branch reads the enrollment's context, so its field starts with "
                        f"'entry.', 'event.' or 'opportunity.', not {node.field!r}",
                        f"e.g. 'entry.{node.field}' for the entry event's payload, "
                        f"'event.{node.field}' for the latest matched event's",
                    )
                )
        if node.operator not in operators:
            out.append(
                SequenceProblem(
                    f"{where}.operator",
                    "unknown-operator",
                    f"unknown operator {node.operator!r}",
                    f"known: {', '.join(operators.names())}; or register it on the registry",
                )
            )
            continue
        try:
            compile_condition(node, operators, where, limits=vocabulary.limits)
        except ValueError as exc:
            problem = str(exc).partition(": ")[2] or str(exc)
            out.append(
                SequenceProblem(f"{where}.value", "bad-value", f"field {node.field!r}: {problem}")
            )
    if out:
        return out
    budget = [vocabulary.limits.conditions_per_rule]  # the limits over the whole list
    for i, node in enumerate(nodes):
        try:
            compile_condition(
                node, operators, f"{prefix}[{i}]", limits=vocabulary.limits, budget=budget
            )
        except ValueError as exc:
            location, _, problem = str(exc).partition(": ")
            return [SequenceProblem(location, "bad-condition", problem)]
    return out


def _event_type_problem(
    event_type: str, location: str, vocabulary: Vocabulary
) -> list[SequenceProblem]:
    problem = vocabulary.event_types.problem(event_type)
    if problem is None:
        return []
    closest = vocabulary.event_types.closest(event_type)
    hint = f"use {closest!r}" if closest else "register the type on the flow's EventTypes"
    return [SequenceProblem(location, "unknown-event-type", problem, hint)]


def settings_location(prefix: str, loc: tuple[int | str, ...]) -> str:
    """Where a setting the params model refused lives, spelled as the rule checks do:
    ``<prefix>.subject`` for the seed's fields, ``<prefix>.params.url`` for the others."""
    if not loc:
        return prefix + ".params"
    head, rest = loc[0], loc[1:]
    seed = _SEED_SETTINGS.get(head) if isinstance(head, str) else None
    where = prefix + (f".{seed}" if seed is not None else f".params.{head}")
    for part in rest:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


def _action_problems(action: Action, prefix: str, vocabulary: Vocabulary) -> list[SequenceProblem]:
    if vocabulary.actions is None:  # the action types are not known here: the runtime checks
        return []
    catalog = vocabulary.actions
    spec = catalog.get(action.action_type)
    if spec is None:
        return [
            SequenceProblem(
                f"{prefix}.actionType",
                "unknown-action",
                f"no handler is registered for {action.action_type!r}",
                f"known: {', '.join(catalog)}",
            )
        ]
    model = spec.params
    if model is None:
        return []
    try:
        model.model_validate(action.settings())
    except ValidationError as exc:
        return [
            SequenceProblem(
                settings_location(prefix, tuple(error["loc"])),
                "bad-params",
                error["msg"],
                f"{action.action_type} takes the settings of {model.__name__}",
            )
            for error in exc.errors()
        ]
    return []


def _delay_problem(
    delay: Delay, location: str, calendar: WorkingCalendar | None
) -> list[SequenceProblem]:
    if not delay.is_business_time:
        return []
    if calendar is None:
        return [SequenceProblem(location, "bad-delay", "business time needs a working calendar")]
    try:
        if delay.unit == "business_days":
            calendar.add_business_days(_PROBE, int(delay.amount))
        else:
            calendar.add_business_hours(_PROBE, delay.amount)
    except InvalidInputError as exc:
        return [SequenceProblem(location, "bad-delay", str(exc))]
    return []


def _step_problems(index: int, step: Any, vocabulary: Vocabulary) -> list[SequenceProblem]:
    where = step_location(index, step)
    calendar: WorkingCalendar | None = vocabulary.calendar
    out: list[SequenceProblem] = []
    if isinstance(step, ActionStep):
        out.extend(_action_problems(step.action, f"{where}.action", vocabulary))
    elif isinstance(step, WaitStep):
        if step.delay is not None:
            out.extend(_delay_problem(step.delay, f"{where}.delay", calendar))
        if step.until is not None and step.until.business_days:
            days = Delay(amount=1, unit="business_days")
            out.extend(_delay_problem(days, f"{where}.until.businessDays", calendar))
    elif isinstance(step, WaitForEventStep):
        out.extend(_event_type_problem(step.event_type, f"{where}.eventType", vocabulary))
        out.extend(_condition_problems(step.conditions, f"{where}.conditions", vocabulary))
        out.extend(_delay_problem(step.timeout, f"{where}.timeout", calendar))
    elif isinstance(step, BranchStep):
        for i, case in enumerate(step.cases):
            prefix = f"{where}.cases[{i}].when"
            out.extend(_condition_problems(case.when, prefix, vocabulary, branch=True))
    return out


def sequence_problems(
    definition: SequenceDefinition, vocabulary: Vocabulary | None = None
) -> list[SequenceProblem]:
    """Every reason ``definition`` cannot load on ``vocabulary`` (default: the built-ins'
    :meth:`Vocabulary.default <leadflow.rules.Vocabulary.default>`, which knows no action
    types), in document order: entry, steps, goals. Empty when it loads."""
    vocabulary = vocabulary if vocabulary is not None else Vocabulary.default()
    out: list[SequenceProblem] = []
    if definition.entry is not None:
        entry = definition.entry
        out.extend(_event_type_problem(entry.event_type, "entry.eventType", vocabulary))
        out.extend(_condition_problems(entry.conditions, "entry.conditions", vocabulary))
    for index, step in enumerate(definition.steps):
        out.extend(_step_problems(index, step, vocabulary))
    for i, goal in enumerate(definition.goals):
        out.extend(_event_type_problem(goal.event_type, f"goals[{i}].eventType", vocabulary))
        out.extend(_condition_problems(goal.conditions, f"goals[{i}].conditions", vocabulary))
    return out


def check_sequence(definition: SequenceDefinition, vocabulary: Vocabulary | None = None) -> None:
    """Refuse a sequence that ``vocabulary`` cannot carry out (see the module docstring):
    :class:`~leadflow.InvalidInputError` for the first problem, its ``field`` the location
    (``steps[1] (email).action.template``) and its message naming the sequence, the location
    and the problem. :func:`sequence_problems` gives every problem at once."""
    problems = sequence_problems(definition, vocabulary)
    if problems:
        first = problems[0]
        hinted = first.code in ("unknown-operator", "unknown-action")
        text = first.problem + (f" ({first.hint})" if hinted else "")
        error = InvalidInputError(f"sequence {definition.sequence_id!r}, {first.location}: {text}")
        error.field = first.location
        raise error
