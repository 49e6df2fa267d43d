"""The explanation kept on every automated activity, in the one explanation format of
:mod:`leadflow.rules.explain`: which rule matched which event, every condition node's truth
value with the values compared, and how each action's due time was computed. The explanation
itself comes from the engine that planned the actions (:meth:`RuleEngine.explain_match`); this
module only renders it."""

from __future__ import annotations

from ..models import Event
from ..rules import render_rule
from ..rules.explain import RuleExplanation

__all__ = ["render_why", "why"]

_MAX_CHARS = 20_000  # ScheduledAction.explanation's limit


def render_why(event: Event, explanation: RuleExplanation) -> str:
    """The text stored as ``automationExplanation``: ``event <type> <id> at <time>`` then
    :func:`~leadflow.rules.render_rule` of the explanation, at most 20,000 characters."""
    return why(event, render_rule(explanation))


def why(event: Event, rendered: str, at: str | None = None) -> str:
    """:func:`render_why` of an explanation already rendered (``rendered``, what
    :func:`~leadflow.rules.render_rule` made of it, e.g. :meth:`RuleEngine.render_match`);
    ``at``: ``event.time.isoformat()``, when the caller has it."""
    if at is None:
        at = event.time.isoformat()
    text = f"event {event.type} {event.id} at {at}\n{rendered}"
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 1] + "…"
