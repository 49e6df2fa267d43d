"""The rule engine: an event in, the planned follow-up actions (and why) out.

Evaluation is a pure function of the compiled rules and the event: no I/O, no clock (due times
derive from the event's time), no shared mutable state, so one engine serves many threads.

Order: the rules for an event type apply in descending ``priority``; equal priorities go by
ascending ``rule_id``. When a matching rule has ``stop_processing``, the rules after it in that
order do not apply. Actions of a rule are planned in the order the rule lists them.

Each engine owns its :class:`~leadflow.OperatorRegistry` and :class:`~leadflow.rules.EventTypes`
(fresh ones unless given), so configuring one engine never changes another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from ..errors import InvalidInputError, RuleValidationError
from ..limits import DEFAULT_LIMITS, Limits
from ..models import Action, Event, FollowUpRule
from .calendar import WorkingCalendar
from .compiler import compile_condition
from .evaluation import Evaluation, PlannedAction
from .events import EventTypes
from .explain import (
    ConditionOutcome,
    DueExplanation,
    EventExplanation,
    RuleExplainer,
    RuleExplanation,
    explain_due,
)
from .index import Bucket, CompiledRule, Plan
from .intake import EventFields, read_event
from .operators import OperatorRegistry
from .vocabulary import Vocabulary

__all__ = [
    "ConditionOutcome",
    "Evaluation",
    "EventExplanation",
    "PlannedAction",
    "RuleEngine",
    "RuleExplanation",
    "compile_rule",
    "explain",
    "validate_rule",
]


def _sort_key(rule: FollowUpRule) -> tuple[int, str]:
    return (-rule.priority, rule.rule_id)


_new_planned: Callable[[type[PlannedAction], tuple[Any, ...]], PlannedAction] = tuple.__new__
"""``PlannedAction(*fields)`` without the Python-level ``__new__`` of the named tuple."""


# A moment every calendar is asked to plan from when a rule loads (a Monday).
_PROBE = datetime(2026, 1, 5, 9, tzinfo=UTC)


def _compile_rule(
    rule: FollowUpRule,
    operators: OperatorRegistry,
    event_types: EventTypes,
    limits: Limits,
    calendar: WorkingCalendar | None,
) -> CompiledRule:
    problem = event_types.problem(rule.trigger.event_type)
    if problem is not None:
        raise RuleValidationError(rule.rule_id, "trigger.eventType", problem)
    parts = []
    budget = [limits.conditions_per_rule]
    for i, node in enumerate(rule.trigger.conditions):
        try:
            compiled = compile_condition(
                node, operators, f"trigger.conditions[{i}]", limits=limits, budget=budget
            )
        except ValueError as exc:
            location, _, problem = str(exc).partition(": ")
            raise RuleValidationError(rule.rule_id, location, problem) from None
        parts.append(compiled)
    plans: list[Plan] = []
    for i, action in enumerate(rule.actions):
        if action.delay.is_business_time:
            if calendar is not None:
                try:
                    _business_due(calendar, _PROBE, action)
                except InvalidInputError as exc:
                    where = f"actions[{i}].delay"
                    raise RuleValidationError(rule.rule_id, where, str(exc)) from None
            plans.append((i, action, None, True))
        else:
            fixed = action.delay.as_timedelta()
            plans.append((i, action, fixed, bool(fixed)))
    if len(plans) > limits.planned_per_event:
        raise RuleValidationError(
            rule.rule_id, "actions", f"more than {limits.planned_per_event} actions"
        )
    return CompiledRule(rule, tuple(parts), tuple(plans), rule.stop_processing)


def compile_rule(
    rule: FollowUpRule,
    operators: OperatorRegistry,
    event_types: EventTypes,
    calendar: WorkingCalendar,
    limits: Limits = DEFAULT_LIMITS,
) -> CompiledRule:
    """``rule`` checked (as :func:`validate_rule` does) and compiled for an engine built with
    the same arguments, which takes it through ``RuleEngine(..., reuse=...)`` instead of
    compiling the rule again. :class:`~leadflow.RuleValidationError` if it cannot load."""
    return _compile_rule(rule, operators, event_types, limits, calendar)


def _business_due(calendar: WorkingCalendar, now: datetime, action: Action) -> datetime:
    delay = action.delay
    if delay.unit == "business_days":
        return calendar.add_business_days(now, int(delay.amount))
    return calendar.add_business_hours(now, delay.amount)


def validate_rule(
    rule: FollowUpRule,
    operators: OperatorRegistry | None = None,
    *,
    event_types: EventTypes | None = None,
    calendar: WorkingCalendar | None = None,
    limits: Limits | None = None,
    vocabulary: Vocabulary | None = None,
) -> None:
    """Check that ``rule`` would load into an engine built with the same arguments.

    Every operator known and every value acceptable (``operators`` defaults to the built-ins),
    the trigger's event type known (``event_types`` defaults to the seed's), the limits kept,
    and, when ``calendar`` is given, every business-time delay plannable on it. A
    ``vocabulary`` gives the four at once (an explicit argument still wins). Raises
    :class:`~leadflow.RuleValidationError` naming the rule, where in it, and the problem.
    """
    if vocabulary is not None:
        operators = operators if operators is not None else vocabulary.operators
        event_types = event_types if event_types is not None else vocabulary.event_types
        calendar = calendar if calendar is not None else vocabulary.calendar
        limits = limits if limits is not None else vocabulary.limits
    _compile_rule(
        rule,
        operators if operators is not None else OperatorRegistry.default(),
        event_types if event_types is not None else EventTypes(),
        limits if limits is not None else DEFAULT_LIMITS,
        calendar,
    )


class RuleEngine:
    """Compiles a rule set once; evaluates events against it.

    ``operators`` defaults to a fresh registry of the built-ins and ``event_types`` to a fresh
    registry of the seed's event types (both reachable as attributes; pass the same objects to
    several engines to share them). ``calendar`` (for business-time delays) defaults to
    Monday-Friday 9:00-17:00 UTC; ``limits`` to :data:`~leadflow.limits.DEFAULT_LIMITS`.
    Inactive rules are validated but never apply.

    Raises :class:`~leadflow.RuleValidationError` for a rule that cannot load (unknown operator
    or event type, a bad value, a limit exceeded, a business delay the calendar cannot plan)
    and for duplicate ids; pydantic's ``ValidationError`` for a malformed rule document.

    ``vocabulary`` (:class:`~leadflow.rules.vocabulary.Vocabulary`) gives the operators, event
    types, calendar and limits as one value; an explicit argument still wins.

    ``reuse`` maps rule ids to rules compiled before (:func:`compile_rule`, or
    :attr:`compiled` of an earlier engine) with the same operators, event types, calendar and
    limits: a rule given as the very object such a piece was compiled from is taken as it is,
    not compiled again (how a runtime recompiles only the rules that changed).
    """

    def __init__(
        self,
        rules: Iterable[FollowUpRule | Mapping[str, Any]] = (),
        *,
        operators: OperatorRegistry | None = None,
        event_types: EventTypes | None = None,
        calendar: WorkingCalendar | None = None,
        limits: Limits | None = None,
        reuse: Mapping[str, CompiledRule] | None = None,
        vocabulary: Vocabulary | None = None,
    ) -> None:
        if vocabulary is not None:  # one value for the four; an explicit part still wins
            operators = operators if operators is not None else vocabulary.operators
            event_types = event_types if event_types is not None else vocabulary.event_types
            calendar = calendar if calendar is not None else vocabulary.calendar
            limits = limits if limits is not None else vocabulary.limits
        self.operators = operators if operators is not None else OperatorRegistry.default()
        self.event_types = event_types if event_types is not None else EventTypes()
        self.calendar = calendar if calendar is not None else WorkingCalendar()
        self.limits = limits if limits is not None else DEFAULT_LIMITS
        loaded: dict[str, FollowUpRule] = {}
        for item in rules:
            rule = item if isinstance(item, FollowUpRule) else FollowUpRule.model_validate(item)
            if rule.rule_id in loaded:
                raise RuleValidationError(rule.rule_id, "ruleId", "two rules share this id")
            loaded[rule.rule_id] = rule
        ordered = sorted(loaded.values(), key=_sort_key)
        buckets: dict[str, list[CompiledRule]] = {}
        pieces: dict[str, CompiledRule] = {}
        for rule in ordered:
            compiled = reuse.get(rule.rule_id) if reuse else None
            if compiled is None or compiled.rule is not rule:
                compiled = _compile_rule(
                    rule, self.operators, self.event_types, self.limits, self.calendar
                )
            pieces[rule.rule_id] = compiled
            if rule.is_active:
                buckets.setdefault(rule.trigger.event_type, []).append(compiled)
        self._rules = tuple(ordered)
        self._pieces = pieces
        self._by_type = {k: Bucket(v, self.operators) for k, v in buckets.items()}
        self._earliest = self.limits.earliest
        self._latest = self.limits.latest
        self._max_planned = self.limits.planned_per_event
        self._explainers: dict[str, RuleExplainer] = {}
        self._others: dict[str, tuple[RuleExplanation, ...]] = {}

    @property
    def rules(self) -> tuple[FollowUpRule, ...]:
        """Every loaded rule (active or not), in application order."""
        return self._rules

    @property
    def compiled(self) -> Mapping[str, CompiledRule]:
        """Every loaded rule compiled, by rule id (to pass as ``reuse`` to a later engine)."""
        return MappingProxyType(self._pieces)

    def rules_for(self, event_type: str) -> tuple[FollowUpRule, ...]:
        """The active rules listening to ``event_type``, in application order."""
        bucket = self._by_type.get(event_type)
        return () if bucket is None else tuple(entry[1] for entry in bucket.entries)

    def _read(self, event: Event | Mapping[str, Any]) -> EventFields:
        fields = read_event(event)
        if not self._earliest <= fields.time <= self._latest:
            raise InvalidInputError(
                f"event time {fields.time.isoformat()} is outside "
                f"{self._earliest.date()}..{self._latest.date()}",
                field="time",
            )
        return fields

    def match(self, event: Event | Mapping[str, Any]) -> list[FollowUpRule]:
        """The rules that apply to ``event``, in order (``stop_processing`` honoured).

        ``event`` is an :class:`~leadflow.Event` or its document (validated as the model does:
        pydantic's ``ValidationError`` for a bad one).
        """
        if type(event) is Event:  # the model was validated when built: read it as it is
            payload, now, kind = event.payload, event.time, event.type
        else:
            _, kind, now, payload, _, _, _ = read_event(event)
        if not self._earliest <= now <= self._latest:
            self._read(event)  # raises
        matched: list[FollowUpRule] = []
        bucket = self._by_type.get(kind)
        if bucket is None:
            return matched
        for tests, rule, stop, _ in bucket.select(payload) if bucket.indexed else bucket.entries:
            for test in tests:
                if not test(payload, now):
                    break
            else:
                matched.append(rule)
                if stop:
                    break
        return matched

    def evaluate(self, event: Event | Mapping[str, Any], *, explain: bool = False) -> Evaluation:
        """Match ``event`` and plan the actions of every rule that applies.

        ``event`` is an :class:`~leadflow.Event` or its document, e.g. the dict a host received
        (validated exactly as ``Event.model_validate`` would: pydantic's ``ValidationError`` for
        a bad one). Each planned action is due at the event's time plus its delay. With
        ``explain=True`` the result also says, for every active rule, why it matched or which
        condition failed with what actual value.

        Raises :class:`~leadflow.InvalidInputError` naming the event when it would plan more
        than ``limits.planned_per_event`` actions (nothing is planned for it), or when its time
        lies outside ``limits.earliest`` .. ``limits.latest``; naming ``delay`` when an action
        would be due after ``limits.latest`` (nothing is planned: :meth:`LeadFlow.handle
        <leadflow.LeadFlow.handle>` reports that rule in its errors and plans the others, and a
        dry run raises the same error).
        """
        source: Event | EventFields
        if type(event) is Event:  # the model was validated when built: read it as it is
            source = event
            event_id, kind, now, payload = event.id, event.type, event.time, event.payload
        else:
            source = read_event(event)
            event_id, kind, now, payload, _, _, _ = source
        if not self._earliest <= now <= self._latest:
            self._read(event)  # raises
        matched: list[FollowUpRule] = []
        planned: list[PlannedAction] = []
        bucket = self._by_type.get(kind)
        if bucket is not None:
            plan, new, latest = planned.append, _new_planned, self._latest
            for tests, rule, stop, plans in (
                bucket.select(payload) if bucket.indexed else bucket.entries
            ):
                for test in tests:
                    if not test(payload, now):
                        break
                else:
                    matched.append(rule)
                    for index, action, fixed, delayed in plans:
                        if fixed is None:
                            due = _business_due(self.calendar, now, action)
                            delayed = due > now
                        else:
                            due = now + fixed if delayed else now
                        if due > latest:
                            raise InvalidInputError(
                                f"rule {rule.rule_id!r} action {index} would be due at "
                                f"{due.isoformat()}, after limits.latest "
                                f"({latest.isoformat()}); nothing was planned",
                                field="delay",
                            )
                        plan(new(PlannedAction, (rule, index, action, due, event_id, delayed)))
                    if stop:
                        break
            if len(planned) > self._max_planned:
                raise InvalidInputError(
                    f"event {event_id!r} would plan {len(planned)} actions, more than the limit "
                    f"of {self._max_planned} (limits.planned_per_event); nothing was planned",
                    field="event",
                )
        if explain:
            read = source if isinstance(source, EventFields) else read_event(source)
            explanations = self._explain(read, matched, planned)
            return Evaluation(source, tuple(matched), tuple(planned), explanations)
        return Evaluation(source, tuple(matched), tuple(planned))

    # ----------------------------------------------------------------- explanations

    def explain(self, event: Event | Mapping[str, Any]) -> EventExplanation:
        """``evaluate(event, explain=True)`` in the one explanation format (see
        :mod:`leadflow.rules.explain`): every rule, why it applied or not, every condition
        node's truth value with the values compared, and how each due time was computed."""
        evaluation = self.evaluate(event, explain=True)
        fields = read_event(evaluation.event)
        return EventExplanation(fields.id, fields.type, fields.time, evaluation.explanations or ())

    @property
    def vocabulary(self) -> Vocabulary:
        """The operators, event types, calendar and limits this engine was built with."""
        return Vocabulary(self.operators, self.event_types, self.calendar, None, self.limits)

    def explain_match(self, evaluation: Evaluation, rule: FollowUpRule) -> RuleExplanation:
        """Why ``rule`` (one of ``evaluation.matched_rules``) applied to the evaluation's event:
        every condition node's truth value with the values compared, and how each of its
        planned actions' due time was computed, from the evaluation's own plan (the due times
        are the engine's, not computed a second time). Only the conditions are evaluated again,
        with this engine's operators; an operator that fails gives the conditions without
        values."""
        event = evaluation.event  # an Event or its EventFields: both name time and payload
        dues = tuple(
            explain_due(p.action_index, p.action, event.time, p.due_at, self.calendar)
            for p in evaluation.planned
            if p.rule.rule_id == rule.rule_id
        )
        try:
            _, leaves, tree = self._explainer(rule).run(event.payload, event.time)
        except ValueError:
            leaves = tree = ()
        reason = "matched" if rule.trigger.conditions else "matched (no conditions)"
        return RuleExplanation(
            rule.rule_id,
            rule.name,
            rule.priority,
            True,
            reason,
            leaves,
            tree,
            None,
            dues,
            rule.stop_processing,
        )

    def render_match(
        self, evaluation: Evaluation, rule: FollowUpRule, *, start: str | None = None
    ) -> str:
        """``render_rule(self.explain_match(evaluation, rule))``, the same text, written in one
        pass (:meth:`RuleExplainer.render_matched`): the runtime keeps it on every activity
        it creates. ``start``: the event's time in ISO form, when the caller has it."""
        event = evaluation.event
        dues = tuple(
            explain_due(p.action_index, p.action, event.time, p.due_at, self.calendar)
            for p in evaluation.planned
            if p.rule.rule_id == rule.rule_id
        )
        if start is None and dues:
            start = event.time.isoformat()
        return self._explainer(rule).render_matched(event.payload, event.time, dues, start)

    def _explainer(self, rule: FollowUpRule) -> RuleExplainer:
        explainer = self._explainers.get(rule.rule_id)
        if explainer is None or explainer.rule is not rule:
            explainer = RuleExplainer(rule, self.operators, self.limits)
            self._explainers[rule.rule_id] = explainer
        return explainer

    def _explain(
        self, event: EventFields, matched: list[FollowUpRule], planned: list[PlannedAction]
    ) -> tuple[RuleExplanation, ...]:
        matched_ids = {r.rule_id for r in matched}
        dues: dict[str, list[DueExplanation]] = {}
        for p in planned:
            dues.setdefault(p.rule.rule_id, []).append(
                explain_due(p.action_index, p.action, event.time, p.due_at, self.calendar)
            )
        bucket = self._by_type.get(event.type)
        stopper: FollowUpRule | None = None
        out: list[RuleExplanation] = []
        payload, now = event.payload, event.time
        for _, rule, stop, _ in () if bucket is None else bucket.entries:
            failed, leaves, tree = self._explainer(rule).run(payload, now)
            stopped_by: str | None = None
            is_match = rule.rule_id in matched_ids
            if is_match:
                reason = "matched" if tree else "matched (no conditions)"
            elif failed is None:
                assert stopper is not None
                stopped_by = stopper.rule_id
                reason = f"conditions hold, but rule {stopper.rule_id!r} stopped processing"
            else:
                reason = failed
            out.append(
                RuleExplanation(
                    rule.rule_id,
                    rule.name,
                    rule.priority,
                    is_match,
                    reason,
                    leaves,
                    tree,
                    stopped_by,
                    tuple(dues.get(rule.rule_id, ())),
                    stop,
                )
            )
            if stopper is None and stop and is_match:
                stopper = rule
        return (*out, *self._not_listening(event.type))

    def _not_listening(self, event_type: str) -> tuple[RuleExplanation, ...]:
        """The explanations of the rules that never see ``event_type`` (the same for every
        event of the type: built once)."""
        cached = self._others.get(event_type)
        if cached is None:
            rows = []
            for rule in self._rules:
                if rule.trigger.event_type != event_type or not rule.is_active:
                    why = (
                        "inactive"
                        if not rule.is_active
                        else f"listens to {rule.trigger.event_type!r}, not {event_type!r}"
                    )
                    rows.append(
                        RuleExplanation(rule.rule_id, rule.name, rule.priority, False, why, ())
                    )
            cached = self._others[event_type] = tuple(rows)
        return cached


def explain(
    rules: Iterable[FollowUpRule | Mapping[str, Any]] | RuleEngine,
    event: Event | Mapping[str, Any],
    **engine_options: Any,
) -> EventExplanation:
    """Explain ``event`` against ``rules`` (an engine, or rules loaded into a new engine with
    ``engine_options``): see :meth:`RuleEngine.explain`."""
    engine = rules if isinstance(rules, RuleEngine) else RuleEngine(rules, **engine_options)
    return engine.explain(event)
