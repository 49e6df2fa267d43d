"""The one explanation format: why each rule did or did not apply to an event, and when what it
planned is due.

:class:`RuleExplanation` is produced by :meth:`RuleEngine.evaluate` with ``explain=True``
(and :meth:`RuleEngine.explain`), returned by the rule test operation, and rendered with
:func:`render_rule` into the explanation stored on every automated activity. It holds:

* the truth value of every node of the condition tree, groups included, with the actual value
  each leaf compared (``tree``, pre-order; ``conditions`` holds the leaves alone);
* ``stopped_by``: the higher-priority stop-processing rule that kept a rule whose conditions
  held from applying;
* ``due``: for every action planned, how its due time was computed (:class:`DueExplanation`:
  the delay, the calendar, the days skipped as non-working or holidays, a daylight-saving shift).

:class:`EventExplanation` gathers the explanations of one event; ``to_text()`` and
``to_dict()`` are its text and JSON forms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from ..limits import Limits
from ..models import Action, Condition, ConditionGroup, ConditionNode, FollowUpRule
from .calendar import WorkingCalendar
from .compiler import compile_condition, describe
from .fields import MISSING, field_getter
from .operators import OperatorRegistry

__all__ = [
    "ConditionOutcome",
    "DueExplanation",
    "EventExplanation",
    "RuleExplainer",
    "RuleExplanation",
    "explain_due",
    "render_rule",
    "show",
]

_MAX_LISTED_DAYS = 14
_NO_SHIFT = timedelta(0)


class ConditionOutcome(NamedTuple):
    """How one node of a condition tree fared. ``kind`` is ``condition`` for a leaf (then
    ``field``, ``expected`` the rule's value and ``actual`` the value compared, or
    :data:`MISSING`), else ``all`` / ``any`` / ``not`` (``field`` empty, ``actual`` MISSING)."""

    location: str
    condition: str
    field: str
    actual: Any
    passed: bool
    kind: str = "condition"
    expected: Any = None


class DueExplanation(NamedTuple):
    """How one planned action's due time was computed: ``start`` (the event's time) plus
    ``delay`` (e.g. ``48 hours``, ``2 business_days``) on ``calendar`` (its description, for
    business delays) gives ``due_at``. ``skipped``: non-working local dates passed over
    (weekends and holidays, at most 14 listed); ``holidays``: those of them that are holidays;
    ``dst_shift``: how much the calendar zone's UTC offset changed between start and due."""

    action_index: int
    action_type: str
    delay: str
    start: datetime
    due_at: datetime
    business: bool
    calendar: str
    skipped: tuple[date, ...]
    holidays: tuple[date, ...]
    dst_shift: timedelta

    def text(self, start: str | None = None) -> str:
        """``actions[0] create_activity due 2026-01-07T09:00:00+00:00 = event time + 48
        hours``, with the calendar, skipped days and DST shift when they matter. ``start``:
        ``self.start.isoformat()``, when the caller has it already."""
        if start is None:
            start = self.start.isoformat()
        when = self.due_at.isoformat()
        if self.delay == "none":
            out = f"actions[{self.action_index}] {self.action_type} due {when} (no delay)"
        else:
            out = (
                f"actions[{self.action_index}] {self.action_type} due {when} = "
                f"{start} + {self.delay}"
            )
        if self.business:
            out += f" on {self.calendar}"
        if self.skipped:
            out += "; skipped " + ", ".join(
                d.strftime("%a %Y-%m-%d") + (" (holiday)" if d in self.holidays else "")
                for d in self.skipped
            )
        if self.dst_shift:
            hours = self.dst_shift.total_seconds() / 3600
            out += f"; DST shift {hours:+g}h in {self.calendar.split(' ')[0]}"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "actionIndex": self.action_index,
            "actionType": self.action_type,
            "delay": self.delay,
            "start": self.start.isoformat(),
            "dueAt": self.due_at.isoformat(),
            "business": self.business,
            "calendar": self.calendar,
            "skipped": [d.isoformat() for d in self.skipped],
            "holidays": [d.isoformat() for d in self.holidays],
            "dstShiftMinutes": int(self.dst_shift.total_seconds() // 60),
        }


class RuleExplanation(NamedTuple):
    """Why a rule did or did not apply to an event (see the module docstring)."""

    rule_id: str
    rule_name: str
    priority: int
    matched: bool
    reason: str
    conditions: tuple[ConditionOutcome, ...]
    tree: tuple[ConditionOutcome, ...] = ()
    stopped_by: str | None = None
    due: tuple[DueExplanation, ...] = ()
    stops_processing: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "ruleId": self.rule_id,
            "ruleName": self.rule_name,
            "priority": self.priority,
            "matched": self.matched,
            "reason": self.reason,
            "stoppedBy": self.stopped_by,
            "stopsProcessing": self.stops_processing,
            "tree": [
                {
                    "location": n.location,
                    "kind": n.kind,
                    "condition": n.condition,
                    "field": n.field or None,
                    "expected": _jsonable(n.expected),
                    "actual": None if n.actual is MISSING else _jsonable(n.actual),
                    "missing": n.actual is MISSING and n.kind == "condition",
                    "passed": n.passed,
                }
                for n in (self.tree or self.conditions)
            ],
            "due": [d.to_dict() for d in self.due],
        }


class EventExplanation(NamedTuple):
    """Every rule's explanation for one event, in application order (rules of other event
    types and inactive ones last)."""

    event_id: str
    event_type: str
    time: datetime
    rules: tuple[RuleExplanation, ...]

    def to_text(self) -> str:
        head = f"event {self.event_type} {self.event_id} at {self.time.isoformat()}"
        return "\n".join([head, *(render_rule(r) for r in self.rules)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "time": self.time.isoformat(),
            "rules": [r.to_dict() for r in self.rules],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is MISSING:
        return None
    return value


def show(value: Any) -> str:
    """A value as explanations print it (``missing`` for :data:`MISSING`)."""
    return "missing" if value is MISSING else repr(value)


def render_rule(explanation: RuleExplanation, *, indent: str = "  ") -> str:
    """The text form of one rule's explanation: a verdict line, one line per condition node
    (indented by depth, ``[yes]``/``[no ]``), the due times, and whether it stops processing."""
    verdict = "applied" if explanation.matched else "not applied"
    lines = [
        f"rule {explanation.rule_id!r} ({explanation.rule_name}, priority "
        f"{explanation.priority}): {verdict}: {explanation.reason}"
    ]
    for node in explanation.tree or explanation.conditions:
        depth = node.location.count(".")  # trigger.conditions[0] is 1 deep
        mark = "yes" if node.passed else "no "
        if node.kind == "condition":
            text = f"{node.condition} (actual: {show(node.actual)})"
        else:
            text = f"{node.kind} group"
        lines.append(f"{indent * depth}[{mark}] {node.location}: {text}")
    for due in explanation.due:
        lines.append(f"{indent}due: {due.text()}")
    if explanation.matched and explanation.stops_processing:
        lines.append(f"{indent}stops processing: lower-priority rules do not apply")
    return "\n".join(lines)


# --------------------------------------------------------------------------- condition trees

# A compiled node: (location, kind, text, field, expected, getter, test, children)
_Node = tuple[
    str,
    str,
    str,
    str,
    Any,
    Callable[[Mapping[str, Any]], Any] | None,
    Callable[[Mapping[str, Any], datetime], bool] | None,
    tuple[Any, ...],
]


class RuleExplainer:
    """One rule's condition tree compiled for explaining: every node evaluated (no
    short-circuit), each leaf with the value it compared. Built once per rule and engine."""

    __slots__ = ("_head", "_lines", "_nodes", "_tail", "rule")

    def __init__(self, rule: FollowUpRule, operators: OperatorRegistry, limits: Limits) -> None:
        self.rule = rule
        self._nodes = tuple(
            _compile_node(node, operators, limits, f"trigger.conditions[{i}]")
            for i, node in enumerate(rule.trigger.conditions)
        )
        # What render_rule writes for this rule when it applied, whatever the event: the verdict
        # line, each node's line but its mark and value, the stop line.
        reason = "matched" if rule.trigger.conditions else "matched (no conditions)"
        self._head = (
            f"rule {rule.rule_id!r} ({rule.name}, priority {rule.priority}): applied: {reason}"
        )
        self._lines = tuple(_line_parts(node) for node in self._nodes)
        self._tail = (
            f"{_INDENT}stops processing: lower-priority rules do not apply"
            if rule.stop_processing
            else None
        )

    def render_matched(
        self,
        payload: Mapping[str, Any],
        now: datetime,
        due: tuple[DueExplanation, ...],
        start: str | None = None,
    ) -> str:
        """``render_rule`` of this rule's explanation as :meth:`RuleEngine.explain_match`
        makes it (applied; the tree as :meth:`run` gives it, none when an operator fails;
        ``due``), written in one pass: no outcome or explanation built to be rendered.
        ``start``: the dues' start (the event's time) in ISO form, when the caller has it."""
        lines = [self._head]
        try:
            for node, parts in zip(self._nodes, self._lines, strict=True):
                _render(node, parts, payload, now, lines)
        except ValueError:
            del lines[1:]  # as explain_match: the conditions without values
        for item in due:
            lines.append(f"{_INDENT}due: {item.text(start)}")
        if self._tail is not None:
            lines.append(self._tail)
        return "\n".join(lines)

    def run(
        self, payload: Mapping[str, Any], now: datetime
    ) -> tuple[str | None, tuple[ConditionOutcome, ...], tuple[ConditionOutcome, ...]]:
        """(None when every top-level condition held, else why the first one failed; the
        leaves; the whole tree, pre-order)."""
        tree: list[ConditionOutcome] = []
        leaves: list[ConditionOutcome] = []
        failed: str | None = None
        for node in self._nodes:
            slot = len(tree)
            if not _run(node, payload, now, tree, leaves) and failed is None:
                top = tree[slot]
                failed = f"{top.location} failed: {top.condition}"
                if top.kind == "condition":
                    failed += f" (actual: {show(top.actual)})"
        return failed, tuple(leaves), tuple(tree)


def _compile_node(
    node: ConditionNode, operators: OperatorRegistry, limits: Limits, location: str
) -> _Node:
    if isinstance(node, Condition):
        test = compile_condition(node, operators, location, limits=limits)
        return (location, "condition", describe(node), node.field, node.value,
                field_getter(node.field), test, ())  # fmt: skip
    assert isinstance(node, ConditionGroup)
    children = tuple(
        _compile_node(child, operators, limits, f"{location}.{node.kind}[{i}]")
        for i, child in enumerate(node.conditions)
    )
    return (location, node.kind, describe(node), "", None, None, None, children)


def _run(
    node: _Node,
    payload: Mapping[str, Any],
    now: datetime,
    tree: list[ConditionOutcome],
    leaves: list[ConditionOutcome],
) -> bool:
    location, kind, text, field, expected, getter, test, children = node
    if test is not None:
        assert getter is not None
        passed = test(payload, now)
        outcome = ConditionOutcome(
            location, text, field, getter(payload), passed, "condition", expected
        )
        tree.append(outcome)
        leaves.append(outcome)
        return passed
    slot = len(tree)
    tree.append(None)  # type: ignore[arg-type]  # filled once the children are known
    results = [_run(child, payload, now, tree, leaves) for child in children]
    passed = not results[0] if kind == "not" else any(results) if kind == "any" else all(results)
    tree[slot] = ConditionOutcome(location, text, "", MISSING, passed, kind, None)
    return passed


_INDENT = "  "
# A node's line in render_rule's default form, split around what the event decides:
# (the line's start when it held, when it did not; for a leaf the text before its value,
# else None; the children's parts).
_LineParts = tuple[str, str, str | None, tuple[Any, ...]]


def _line_parts(node: _Node) -> _LineParts:
    location, kind, text, _, _, _, test, children = node
    pad = _INDENT * location.count(".")
    if test is not None:
        return f"{pad}[yes] {location}: ", f"{pad}[no ] {location}: ", f"{text} (actual: ", ()
    return (
        f"{pad}[yes] {location}: {kind} group",
        f"{pad}[no ] {location}: {kind} group",
        None,
        tuple(_line_parts(child) for child in children),
    )


def _render(
    node: _Node, parts: _LineParts, payload: Mapping[str, Any], now: datetime, lines: list[str]
) -> bool:
    """:func:`_run` writing ``node``'s lines (pre-order) instead of its outcomes."""
    _, kind, _, _, _, getter, test, children = node
    yes, no, text, child_parts = parts
    if test is not None:
        assert getter is not None and text is not None
        passed = test(payload, now)
        lines.append(f"{yes if passed else no}{text}{show(getter(payload))})")
        return passed
    slot = len(lines)
    lines.append("")  # filled once the children are known
    results = [
        _render(child, part, payload, now, lines)
        for child, part in zip(children, child_parts, strict=True)
    ]
    passed = not results[0] if kind == "not" else any(results) if kind == "any" else all(results)
    lines[slot] = yes if passed else no
    return passed


# --------------------------------------------------------------------------- due times


def _delay_text(action: Action) -> str:
    delay = action.delay
    if delay.amount == 0:
        return "none"
    amount = int(delay.amount) if delay.amount == int(delay.amount) else delay.amount
    return f"{amount} {delay.unit}"


def explain_due(
    action_index: int,
    action: Action,
    start: datetime,
    due_at: datetime,
    calendar: WorkingCalendar,
) -> DueExplanation:
    """How ``due_at`` follows from ``start`` and the action's delay on ``calendar``."""
    business = action.delay.is_business_time
    zone = calendar.zone
    if calendar.timezone == "UTC" or due_at == start:
        shift = _NO_SHIFT
    else:
        shift = due_at.astimezone(zone).utcoffset() - start.astimezone(zone).utcoffset()  # type: ignore[operator]
    skipped: list[date] = []
    holidays: list[date] = []
    if business and due_at > start:
        day = start.astimezone(zone).date()
        last = due_at.astimezone(zone).date()
        while day < last and len(skipped) < _MAX_LISTED_DAYS:
            if not calendar.is_working_day(day):
                skipped.append(day)
                if day in calendar.holidays:
                    holidays.append(day)
            day += timedelta(days=1)
    return DueExplanation(
        action_index,
        action.action_type,
        _delay_text(action),
        start,
        due_at,
        business,
        calendar.describe(),
        tuple(skipped),
        tuple(holidays),
        shift,
    )
