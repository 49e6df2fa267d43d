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
from .compare import EXAMPLES, Comparison, RuleDifference, differences
from .driver import SimulationSettings, Simulator
from .history import read_history
from .html import render_html, workload_svg
from .report import SimulationReport
from .world import HistoryOpportunities, RecordedCall, RecordingHandler

if TYPE_CHECKING:
    from ..runtime.actions import HandlerRegistry

__all__ = [
    "Comparison",
    "HistoryOpportunities",
    "RecordedCall",
    "RecordingHandler",
    "RuleDifference",
    "SimulationReport",
    "SimulationSettings",
    "Simulator",
    "compare",
    "read_history",
    "render_html",
    "simulate",
    "workload_svg",
]

Rules = Iterable[FollowUpRule | Mapping[str, Any]]
Progress = Callable[[int], object]
PROGRESS_EVERY = 10_000


def _simulator(
    rules: Rules,
    settings: SimulationSettings | None,
    handlers: HandlerRegistry | None,
    operators: OperatorRegistry | None,
    event_types: EventTypes | None,
    calendar: WorkingCalendar | None,
) -> Simulator:
    return Simulator(
        rules,
        settings=settings,
        handlers=handlers,
        operators=operators,
        event_types=event_types,
        calendar=calendar,
    )


def simulate(
    rules: Rules,
    history: Any,
    *,
    settings: SimulationSettings | None = None,
    handlers: HandlerRegistry | None = None,
    operators: OperatorRegistry | None = None,
    event_types: EventTypes | None = None,
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
    """
    simulator = _simulator(rules, settings, handlers, operators, event_types, calendar)
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
    settings: SimulationSettings | None = None,
    handlers: HandlerRegistry | None = None,
    operators: OperatorRegistry | None = None,
    event_types: EventTypes | None = None,
    calendar: WorkingCalendar | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Replay ``history`` through ``rules`` (before) and ``other_rules`` (after) in lockstep
    and show the difference rule by rule, each with up to three example events that it matched
    a different number of times (cascades included). Same arguments as :func:`simulate`."""
    options = (settings, handlers, operators, event_types, calendar)
    before, after = _simulator(rules, *options), _simulator(other_rules, *options)
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
