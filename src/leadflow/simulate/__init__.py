"""Backtest a rule set against a recorded event history: ``leadflow.simulate.simulate(rules,
history)`` replays it through the real :class:`~leadflow.LeadFlow` (memory storage, a manual clock
that follows the history, recording integrations) and reports what happened; :func:`compare`
runs two rule sets side by side. See docs/simulate.md and :mod:`leadflow.simulate.driver`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..models import FollowUpRule
from ..rules import EventTypes, OperatorRegistry, WorkingCalendar
from .compare import EXAMPLES, Comparison, RuleDifference, SequenceDifference, differences
from .driver import SequenceInput, SimulationSettings, Simulator, load_sequences
from .history import read_history
from .html import render_html, workload_svg
from .report import SequenceFigures, SimulationReport, StepFigures
from .world import HistoryOpportunities, RecordedCall, RecordingHandler

if TYPE_CHECKING:
    from ..runtime.actions import HandlerRegistry

__all__ = [
    "Comparison",
    "HistoryOpportunities",
    "RecordedCall",
    "RecordingHandler",
    "RuleDifference",
    "SequenceDifference",
    "SequenceFigures",
    "SimulationReport",
    "SimulationSettings",
    "Simulator",
    "StepFigures",
    "compare",
    "load_sequences",
    "read_history",
    "render_html",
    "simulate",
    "workload_svg",
]

Rules = Iterable[FollowUpRule | Mapping[str, Any]]
Sequences = Iterable[SequenceInput]
Progress = Callable[[int], object]
PROGRESS_EVERY = 10_000


def _simulator(
    rules: Rules,
    settings: SimulationSettings | None,
    handlers: HandlerRegistry | None,
    operators: OperatorRegistry | None,
    event_types: EventTypes | Iterable[str] | None,
    calendar: WorkingCalendar | None,
    sequences: Sequences = (),
) -> Simulator:
    return Simulator(
        rules,
        settings=settings,
        handlers=handlers,
        operators=operators,
        event_types=event_types,
        calendar=calendar,
        sequences=sequences,
    )


def simulate(
    rules: Rules,
    history: Any,
    *,
    sequences: Sequences = (),
    settings: SimulationSettings | None = None,
    handlers: HandlerRegistry | None = None,
    operators: OperatorRegistry | None = None,
    event_types: EventTypes | Iterable[str] | None = None,
    calendar: WorkingCalendar | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> SimulationReport:
    """Replay ``history`` (a JSON Lines path, an open file, or an iterable of lines or event
    documents, in time order) through ``rules`` and report what would have happened.

    The real runtime does the work: a :class:`~leadflow.LeadFlow` on fresh memory storage,
    with ``handlers`` (default: the built-ins; a host passes its own registry, with
    :class:`RecordingHandler` standing in for handlers with side effects). ``until`` runs the
    actions due up to that time after the last event (default: the last event's time; later
    ones are reported as pending). ``progress(events_done)`` is called every
    10,000 events. Deterministic. Raises :class:`~leadflow.RuleValidationError` for a rule
    that does not load and :class:`~leadflow.InvalidInputError` for a history line that is
    not JSON; an event that is not valid (or out of time order) is counted as refused.

    ``sequences`` (definitions or documents, one version per ``sequenceId``) are published
    into the flow before the first event; the report's ``sequences`` say what they did
    (entries, sends, goals, time to goal, per split variant). Their event types beyond the
    seed's (``email.replied``) go in ``event_types``; a sequence that does not load raises
    :class:`~leadflow.InvalidInputError` naming the step and field.
    """
    simulator = _simulator(rules, settings, handlers, operators, event_types, calendar, sequences)
    feed = simulator.feed
    for count, document in enumerate(read_history(history), 1):
        feed(document)
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(count)
    return simulator.finish(until)


def compare(
    rules: Rules,
    other_rules: Rules,
    history: Any,
    *,
    sequences: Sequences = (),
    other_sequences: Sequences | None = None,
    settings: SimulationSettings | None = None,
    handlers: HandlerRegistry | None = None,
    operators: OperatorRegistry | None = None,
    event_types: EventTypes | Iterable[str] | None = None,
    calendar: WorkingCalendar | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Replay ``history`` through ``rules`` (before) and ``other_rules`` (after) in lockstep
    and show the difference rule by rule, each with up to three example events that it matched
    a different number of times (cascades included), and sequence by sequence
    (``sequences`` before, ``other_sequences`` after: default, the same ones). To compare two
    versions of a sequence alone, pass the same rules twice (``[]``, say). Same arguments as
    :func:`simulate`."""
    options = (settings, handlers, operators, event_types, calendar)
    sequences = list(sequences)
    others = sequences if other_sequences is None else list(other_sequences)
    before = _simulator(rules, *options, sequences)
    after = _simulator(other_rules, *options, others)
    examples: dict[str, list[tuple[str, int, int]]] = {}
    for count, document in enumerate(read_history(history), 1):
        before.feed(document)
        after.feed(document)
        left, right = before.matched_now, after.matched_now
        if left != right:
            ident = document.get("eventId", document.get("id", f"event-{count}"))
            for rule_id in left.keys() | right.keys():
                a, b = left.get(rule_id, 0), right.get(rule_id, 0)
                kept = examples.setdefault(rule_id, [])
                if a != b and len(kept) < EXAMPLES:
                    kept.append((str(ident), a, b))
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(count)
    first, second = before.finish(until), after.finish(until)
    return Comparison(first, second, differences(first, second, examples))
