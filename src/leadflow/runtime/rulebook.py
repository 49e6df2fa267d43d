"""The active rule set as a compiled engine: loaded from the rule store, checked against this
flow's operators and handlers, recompiled outside any lock and swapped in atomically.

The compiled set is kept until the rule store's change stamp (:meth:`RuleRepository.stamp`)
moves. The stamp is read at most once per ``refresh`` of wall time (``time.monotonic``, never
the flow's clock: business time may jump by days in a replay or a simulation), and on the next
use after a change made through this instance. A reload reads the active rules again but
checks and compiles only those whose id, version or content changed; the others keep their
compiled form.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from ..errors import HandlerError, InvalidInputError, LeadflowError, RuleValidationError
from ..limits import DEFAULT_LIMITS, Limits
from ..models import Event, FollowUpRule
from ..ports import Clock, RuleRepository
from ..rules import EventTypes, OperatorRegistry
from ..rules.calendar import WorkingCalendar
from ..rules.engine import Evaluation, PlannedAction, RuleEngine, compile_rule, validate_rule
from ..rules.index import CompiledRule
from ..rules.vocabulary import Vocabulary
from .actions import HandlerRegistry

__all__ = ["RuleBook"]

log = logging.getLogger("leadflow")


@dataclass(frozen=True, slots=True)
class _Compiled:
    engine: RuleEngine
    stamp: object  # None: the store keeps no stamp, every check reloads
    setup: tuple[object, ...]  # what the pieces were compiled with
    generation: int
    check_at: float  # time.monotonic() from which the stamp is read again


class RuleBook:
    """Compiles the active rules for ``handle`` and checks rules before they are stored.

    The compiled set is reused until the rule store's change stamp moves (any instance or
    process changed a rule). The stamp is read at most every ``refresh`` of wall time, and on
    the next use after :meth:`invalidate` (a change through this instance). A reload compiles
    only the rules that changed (by id, version and content) and reuses the others' compiled
    form; a change to this instance's operators, event types, handlers, calendar or
    :attr:`limits` recompiles every rule. One thread reloads while the others keep using the
    previous engine: recompiling never blocks event handling (only the very first load waits).

    A store without a ``stamp`` method (an older custom backend) is reloaded at every check,
    i.e. every ``refresh`` of wall time. ``clock`` (the flow's) is accepted for compatibility;
    cache lifetimes never follow it. ``monotonic`` is the wall-time source (for tests).

    Counters, for tests and monitoring: :attr:`stamp_checks` (stamp reads), :attr:`reloads`
    (rule lists read and engines built) and :attr:`compiled_rules` (rules checked and compiled;
    reused ones do not count).
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
        limits: Limits | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self.operators = operators
        self.event_types = event_types
        self.handlers = handlers
        self.calendar = calendar
        self.limits = limits if limits is not None else DEFAULT_LIMITS
        self._refresh = refresh.total_seconds()
        self._monotonic = monotonic
        self._compiled: _Compiled | None = None
        self._generation = 0
        self._compiling = threading.Lock()
        self.stamp_checks = 0
        self.reloads = 0
        self.compiled_rules = 0

    @property
    def vocabulary(self) -> Vocabulary:
        """What this rule book's rules are written in, as one value: its operators, event
        types, handlers (the action types), calendar and limits. Lint, the JSON Schema and
        explanations take it (``flow.vocabulary``)."""
        return Vocabulary(
            self.operators, self.event_types, self.calendar, self.handlers, self.limits
        )

    def invalidate(self) -> None:
        """Reload on next use (a rule was changed through this instance); rules that did not
        change keep their compiled form."""
        self._generation += 1

    def _fresh(self, compiled: _Compiled | None) -> bool:
        return (
            compiled is not None
            and compiled.generation == self._generation
            and self._monotonic() < compiled.check_at
        )

    def engine(self) -> RuleEngine:
        """The compiled active rules. A stored rule that does not load here (an operator or a
        handler this instance lacks, a delay the calendar cannot plan) is logged and left out;
        the others still apply."""
        current = self._compiled
        if current is not None and self._fresh(current):
            return current.engine
        if current is not None and not self._compiling.acquire(blocking=False):
            return current.engine  # another thread is checking or compiling: keep going
        if current is None:
            self._compiling.acquire()
        try:
            current = self._compiled
            if current is not None and self._fresh(current):
                return current.engine
            generation = self._generation
            check_at = self._monotonic() + self._refresh
            stamp = self._stamp()  # before the rules: a change meanwhile shows at the next check
            setup = self._setup()
            if (
                current is not None
                and stamp is not None
                and stamp == current.stamp
                and generation == current.generation
                and setup == current.setup
            ):
                self._compiled = dataclasses.replace(current, check_at=check_at)
                return current.engine
            reuse = (
                current.engine.compiled if current is not None and setup == current.setup else {}
            )
            engine = self._load(reuse)
            self._compiled = _Compiled(engine, stamp, setup, generation, check_at)
            return engine
        finally:
            self._compiling.release()

    def _stamp(self) -> object:
        read: Callable[[], object] | None = getattr(self._store, "stamp", None)
        if read is None:
            return None
        self.stamp_checks += 1
        return read()

    def _setup(self) -> tuple[object, ...]:
        """What compiled rules depend on besides the rules: when it differs, nothing is
        reused. The registries' entries are compared as objects (a replaced operator or
        handler is a new one)."""
        operators = tuple((name, self.operators.get(name)) for name in self.operators.names())
        handlers = tuple((name, self.handlers.get(name)) for name in self.handlers)
        return (
            operators,
            tuple(self.event_types.names()),
            handlers,
            self.calendar,
            self.limits,
        )

    def _load(self, reuse: Mapping[str, CompiledRule]) -> RuleEngine:
        self.reloads += 1
        pieces: dict[str, CompiledRule] = {}
        for rule in self._store.list_active():
            piece = reuse.get(rule.rule_id)
            if piece is None or piece.rule.version != rule.version or piece.rule != rule:
                try:
                    piece = compile_rule(
                        rule, self.operators, self.event_types, self.calendar, self.limits
                    )
                    self.handlers.check(rule, unknown_types=True)
                except RuleValidationError as exc:
                    log.error("rule skipped: %s", exc, extra={"rule_id": rule.rule_id})
                    continue
                self.compiled_rules += 1
            pieces[rule.rule_id] = piece
        return self.compile([piece.rule for piece in pieces.values()], reuse=pieces)

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
                part = self.compile([rule], reuse=engine.compiled).evaluate(event)
            except (ArithmeticError, ValueError, LeadflowError) as exc:
                errors.append(HandlerError(f"rule {rule.rule_id!r} could not be planned: {exc}"))
                continue
            matched.extend(part.matched_rules)
            planned.extend(part.planned)
            if part.matched_rules and rule.stop_processing:
                break
        return Evaluation(event, tuple(matched), tuple(planned))

    def compile(
        self, rules: list[FollowUpRule], *, reuse: Mapping[str, CompiledRule] | None = None
    ) -> RuleEngine:
        """An engine on this flow's operators, event types, calendar and limits (``reuse``:
        see :class:`~leadflow.rules.engine.RuleEngine`)."""
        return RuleEngine(
            rules,
            operators=self.operators,
            event_types=self.event_types,
            calendar=self.calendar,
            limits=self.limits,
            reuse=reuse,
        )

    def check(self, rule: FollowUpRule) -> None:
        """Refuse (:class:`RuleValidationError`) a rule this flow could not carry out: unknown
        operators, values or event type, actions without a handler or with settings the
        handler's params model rejects, a delay the working calendar cannot plan."""
        validate_rule(
            rule,
            self.operators,
            event_types=self.event_types,
            calendar=self.calendar,
            limits=self.limits,
        )
        self.handlers.check(rule)
