"""The event types rules may listen to: the seed's, plus those a host registers.

A rule for a misspelled event type would silently never fire, so a
:class:`~leadflow.RuleEngine` (and :func:`~leadflow.rules.validate_rule`) refuses a rule whose
trigger names a type its registry does not know, suggesting the closest known name. Like
:class:`~leadflow.OperatorRegistry`, every engine builds a fresh registry unless it is given one;
hosts share one by passing the same object. Events of unknown types are not refused: no rule
listens to them, so they plan nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..errors import InvalidInputError
from ..models import EventType, canonical_event_type

__all__ = ["SEED_EVENT_TYPES", "EventTypes"]

SEED_EVENT_TYPES: tuple[str, ...] = tuple(str(member) for member in EventType)
"""The types every registry starts with: the seed's five event types, ``activity.created``
(which leadflow itself emits when it opens an activity), ``activity.overdue`` (which the
``overdue_check`` job feeds into the rules when an open activity is past a threshold) and the
changes a person makes to an activity (``activity.rescheduled``, ``activity.reassigned``,
``activity.updated``, ``activity.cancelled``), which leadflow feeds into the rules."""

# The seed's second spellings, used only to suggest a canonical name for a near miss.
_ALIASES: tuple[str, ...] = (
    "opportunity_created",
    "status_changed",
    "opportunity_status_changed",
    "quote_sent",
    "estimate_created",
    "activity_created",
    "activity_completed",
    "stale_detected",
    "opportunity_stale_detected",
)


class EventTypes:
    """A set of known event types, in canonical (dotted) spelling.

    ``EventTypes()`` holds the seed's types (:data:`SEED_EVENT_TYPES`) plus ``extra``;
    :meth:`register` adds more. Names are canonicalised as rule documents are
    (``quote_sent`` is ``estimate.created``).
    """

    __slots__ = ("_names",)

    def __init__(self, extra: Iterable[str] = (), *, seed: bool = True) -> None:
        self._names: set[str] = set(SEED_EVENT_TYPES) if seed else set()
        for name in extra:
            self.register(name)

    def register(self, name: str) -> str:
        """Make ``name`` known; return its canonical spelling. Registering twice is harmless.

        Raises :class:`~leadflow.InvalidInputError` (field ``event_type``) for a malformed name.
        """
        try:
            canonical = canonical_event_type(name)
        except ValueError as exc:
            raise InvalidInputError(str(exc), field="event_type") from None
        self._names.add(canonical)
        return canonical

    def copy(self) -> EventTypes:
        """A new registry with the same names (registering on it leaves this one be)."""
        return EventTypes(self._names, seed=False)

    def names(self) -> list[str]:
        """Every known type, sorted."""
        return sorted(self._names)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            return canonical_event_type(name) in self._names
        except ValueError:
            return False

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"EventTypes({self.names()!r})"

    def problem(self, name: str) -> str | None:
        """None when ``name`` is known, else a message naming it and the closest known name."""
        if name in self:
            return None
        message = f"unknown event type {name!r}"
        suggestion = self.closest(name)
        if suggestion is not None:
            message += f" (did you mean {suggestion!r}?)"
        return message + "; register it with EventTypes.register() to use it"

    def closest(self, name: str) -> str | None:
        """The known type spelled most like ``name`` (difflib), or None when none is close."""
        candidates = {known: known for known in self._names}
        for alias in _ALIASES:
            canonical = canonical_event_type(alias)
            if canonical in self._names:
                candidates.setdefault(alias, canonical)
        found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
        return candidates[found[0]] if found else None
