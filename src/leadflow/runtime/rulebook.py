"""The active rule set as a compiled engine: loaded from the rule store, checked against this
flow's operators and handlers, recompiled outside any lock and swapped in atomically."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..errors import HandlerError, InvalidInputError, LeadflowError, RuleValidationError
from ..models import Event, FollowUpRule
from ..ports import Clock, RuleRepository
from ..rules import EventTypes, OperatorRegistry
from ..rules.calendar import WorkingCalendar
from ..rules.engine import Evaluation, PlannedAction, RuleEngine, validate_rule
from .actions import HandlerRegistry

__all__ = ["RuleBook"]

log = logging.getLogger("leadflow")


@dataclass(frozen=True, slots=True)
class _Compiled:
    engine: RuleEngine
    loaded_at: datetime
    generation: int


class RuleBook:
    """Compiles the active rules for ``handle`` and checks rules before they are stored.

    A reload happens when the compiled set is older than ``refresh`` or a change was made
    through this instance. One thread compiles while the others keep using the previous engine:
    recompiling a large rule set never blocks event handling (only the very first load waits).
    """

    def __init__(
        self,
        store: RuleRepository,
        *,
        clock: Clock,
        operators: OperatorRegistry,
        event_types: EventTypes,
        handlers: HandlerRegistry,
        calendar: WorkingCalendar,
        refresh: timedelta,
    ) -> None:
        self._store = store
        self._clock = clock
        self.operators = operators
        self.event_types = event_types
        self.handlers = handlers
        self.calendar = calendar
        self._refresh = refresh
        self._compiled: _Compiled | None = None
        self._generation = 0
        self._compiling = threading.Lock()

    def invalidate(self) -> None:
        """Reload on next use (a rule was changed through this instance)."""
        self._generation += 1

    def _fresh(self, compiled: _Compiled | None, now: datetime) -> bool:
        return (
            compiled is not None
            and compiled.generation == self._generation
            and abs(now - compiled.loaded_at) < self._refresh
        )

    def engine(self) -> RuleEngine:
        """The compiled active rules. A stored rule that does not load here (an operator or a
        handler this instance lacks, a delay the calendar cannot plan) is logged and left out;
        the others still apply."""
        now = self._clock.now()
        current = self._compiled
        if current is not None and self._fresh(current, now):
            return current.engine
        if current is not None and not self._compiling.acquire(blocking=False):
            return current.engine  # another thread is compiling: keep going with the old set
        if current is None:
            self._compiling.acquire()
        try:
            current = self._compiled
            if current is not None and self._fresh(current, now):
                return current.engine
            generation = self._generation
            usable = []
            for rule in self._store.list_active():
                try:
                    self.check(rule)
                except RuleValidationError as exc:
                    log.error("rule skipped: %s", exc, extra={"rule_id": rule.rule_id})
                    continue
                usable.append(rule)
            engine = self.compile(usable)
            self._compiled = _Compiled(engine, now, generation)
            return engine
        finally:
            self._compiling.release()

    def evaluate(self, event: Event, errors: list[LeadflowError]) -> Evaluation:
        """The compiled rules' plan for ``event``. If planning fails for one rule (a delay the
        calendar cannot plan from this event's time, say), the rules are planned one by one so
        the others still apply, and the failing ones are reported in ``errors``. An event the
        engine refuses as a whole (:class:`InvalidInputError`: beyond the fan-out limit, a time
        outside the limits) is raised."""
        engine = self.engine()
        try:
            return engine.evaluate(event)
        except InvalidInputError as exc:
            if exc.field in ("event", "time"):  # the event itself is refused
                raise
            log.error("evaluation failed, planning rule by rule: %s", exc)
        except (ArithmeticError, ValueError, LeadflowError) as exc:
            log.error("evaluation failed, planning rule by rule: %s", exc)
        matched: list[FollowUpRule] = []
        planned: list[PlannedAction] = []
        for rule in engine.rules_for(event.type):
            try:
                part = self.compile([rule]).evaluate(event)
            except (ArithmeticError, ValueError, LeadflowError) as exc:
                errors.append(HandlerError(f"rule {rule.rule_id!r} could not be planned: {exc}"))
                continue
            matched.extend(part.matched_rules)
            planned.extend(part.planned)
            if part.matched_rules and rule.stop_processing:
                break
        return Evaluation(event, tuple(matched), tuple(planned))

    def compile(self, rules: list[FollowUpRule]) -> RuleEngine:
        """An engine on this flow's operators, event types and calendar."""
        return RuleEngine(
            rules, operators=self.operators, event_types=self.event_types, calendar=self.calendar
        )

    def check(self, rule: FollowUpRule) -> None:
        """Refuse (:class:`RuleValidationError`) a rule this flow could not carry out: unknown
        operators, values or event type, actions without a handler or with settings the
        handler's params model rejects, a delay the working calendar cannot plan."""
        validate_rule(rule, self.operators, event_types=self.event_types, calendar=self.calendar)
        self.handlers.check(rule)
