"""What the rule engine answers for one event: the actions the matching rules plan
(:class:`PlannedAction`) and the whole answer (:class:`Evaluation`). Kept apart from
:mod:`.engine`, which builds them, so the runtime's planning reads the answer without the engine."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from ..models import Action, Event, FollowUpRule
from .explain import RuleExplanation
from .intake import EventFields, read_event

__all__ = ["Evaluation", "PlannedAction"]


class PlannedAction(NamedTuple):
    """One action a rule plans for an event, due at ``due_at``."""

    rule: FollowUpRule
    action_index: int
    action: Action
    due_at: datetime
    event_id: str
    delayed: bool

    @property
    def rule_id(self) -> str:
        return self.rule.rule_id

    @property
    def idempotency_key(self) -> str:
        """Identifies this action of this rule for this event: carrying it out twice is a no-op.

        ``"<event id>/<rule id>/<action index>"``. Ids never contain ``/`` (they match
        ``^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$``), so two different triples never share a key:
        event ``E:x`` with rule ``vip`` and event ``E`` with rule ``x:vip`` get different keys.
        """
        return f"{self.event_id}/{self.rule.rule_id}/{self.action_index}"


class Evaluation:
    """The engine's answer for one event: the rules that applied and the actions they plan.

    Read-only by contract. ``event`` is the :class:`~leadflow.Event` evaluated; when the engine
    was given a document it is built on first access (equal to ``Event.model_validate`` of it).
    """

    __slots__ = ("_event", "_fields", "explanations", "matched_rules", "planned")

    def __init__(
        self,
        event: Event | EventFields,
        matched_rules: tuple[FollowUpRule, ...],
        planned: tuple[PlannedAction, ...],
        explanations: tuple[RuleExplanation, ...] | None = None,
    ) -> None:
        if type(event) is EventFields:
            self._event: Event | None = event.model
            self._fields: EventFields | None = event
        else:
            self._event = event  # type: ignore[assignment]
            self._fields = None
        self.matched_rules = matched_rules
        self.planned = planned
        self.explanations = explanations

    @property
    def event(self) -> Event:
        if self._event is None:
            assert self._fields is not None
            self._event = self._fields.event()
        return self._event

    @property
    def event_id(self) -> str:
        """The event's id (without building the event)."""
        return self._event.id if self._event is not None else self.__fields().id

    def __fields(self) -> EventFields:
        if self._fields is None:
            self._fields = read_event(self.event)
        return self._fields

    @property
    def immediate(self) -> tuple[PlannedAction, ...]:
        """The planned actions due at the event's time."""
        return tuple(p for p in self.planned if not p.delayed)

    @property
    def delayed(self) -> tuple[PlannedAction, ...]:
        """The planned actions due later."""
        return tuple(p for p in self.planned if p.delayed)

    def _key(self) -> tuple[Any, ...]:
        fields = self.__fields()
        return (
            fields.id,
            fields.type,
            fields.time,
            fields.payload,
            fields.actor,
            self.matched_rules,
            self.planned,
            self.explanations,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Evaluation):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Evaluation(event_id={self.event_id!r}, matched_rules="
            f"{[r.rule_id for r in self.matched_rules]!r}, planned={len(self.planned)})"
        )
