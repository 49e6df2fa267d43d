"""The cause graph: which events each rule's actions can cause, which rules each event can
trigger, and every cycle in it.

An edge ``rule A -> event type E`` exists when one of A's actions has a handler that declares
``causes=(E, ...)`` (``update_status`` causes ``opportunity.status_changed``,
``create_activity`` causes ``activity.created``; integrators declare theirs when they register
a handler). An edge ``E -> rule B`` exists when B is active, listens to E and its conditions do
not contradict what the action is known to put in E's payload (``update_status`` to ``won`` makes
``newStatus`` ``'won'``; ``create_activity`` sets ``activityType`` and ``ruleId``). An
``update_status`` with no delay in a rule that only fires when the status already is the one it
sets changes nothing and causes nothing. Cycles are reported once each, starting at their
smallest rule id, with their path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..models import Action, Condition, FollowUpRule
from ..rules import OperatorRegistry
from .findings import Finding
from .logic import conjunction, contradiction, field_key, implies

if TYPE_CHECKING:
    from ..runtime.actions import HandlerRegistry

__all__ = ["CauseEdge", "cause_graph", "cycle_findings", "find_cycles"]

MAX_CYCLES = 100
"""At most this many cycles are reported (a dense graph has exponentially many)."""


@dataclass(frozen=True, slots=True)
class CauseEdge:
    """``source`` rule's action ``action_index`` can cause ``event_type``, which can trigger
    ``target`` rule."""

    source: str
    action_index: int
    event_type: str
    target: str


def _known_fields(rule: FollowUpRule, action: Action, event_type: str) -> list[Condition]:
    """What the action is known to put in the payload of the event it causes."""
    settings = action.settings()
    if action.action_type == "update_status" and event_type == "opportunity.status_changed":
        status = settings.get("status")
        if isinstance(status, str):
            return [Condition(field="newStatus", operator="equals", value=status)]
    if action.action_type == "create_activity" and event_type == "activity.created":
        kind = settings.get("activityType", "follow_up")
        return [
            Condition(field="activityType", operator="equals", value=str(kind)),
            Condition(field="ruleId", operator="equals", value=rule.rule_id),
        ]
    return []


def _changes_nothing(rule: FollowUpRule, action: Action, operators: OperatorRegistry) -> bool:
    if action.action_type != "update_status" or action.delay.amount != 0:
        return False
    if rule.trigger.event_type != "opportunity.status_changed":
        return False
    status = action.settings().get("status")
    if not isinstance(status, str):
        return False
    pinned = Condition(field="newStatus", operator="equals", value=status)
    premises = conjunction(rule.trigger.conditions)
    return implies(premises, pinned, operators)


def cause_graph(
    rules: Sequence[FollowUpRule], handlers: HandlerRegistry, operators: OperatorRegistry
) -> list[CauseEdge]:
    """Every edge rule -> event -> rule of the active ``rules`` (see the module docstring)."""
    active = [r for r in rules if r.is_active]
    listeners: dict[str, list[FollowUpRule]] = {}
    for rule in active:
        listeners.setdefault(rule.trigger.event_type, []).append(rule)
    edges: list[CauseEdge] = []
    for rule in active:
        for index, action in enumerate(rule.actions):
            spec = handlers.get(action.action_type)
            if spec is None or _changes_nothing(rule, action, operators):
                continue
            for event_type in spec.causes:
                known = _known_fields(rule, action, event_type)
                keys = {field_key(c.field) for c in known}
                for target in listeners.get(event_type, ()):
                    premises = [
                        *known,
                        *(
                            c
                            for c in conjunction(target.trigger.conditions)
                            if field_key(c.field) in keys
                        ),
                    ]
                    if known and contradiction(premises, operators) is not None:
                        continue
                    edges.append(CauseEdge(rule.rule_id, index, event_type, target.rule_id))
    return edges


def find_cycles(edges: Sequence[CauseEdge], limit: int = MAX_CYCLES) -> list[list[CauseEdge]]:
    """The elementary cycles of the graph (each once, starting at its smallest rule id), at
    most ``limit`` of them, in a deterministic order."""
    out: dict[str, list[CauseEdge]] = {}
    nodes = sorted({e.source for e in edges})
    outgoing: dict[str, list[CauseEdge]] = {}
    for each in sorted(edges, key=lambda e: (e.source, e.action_index, e.event_type, e.target)):
        outgoing.setdefault(each.source, []).append(each)
    for start in nodes:
        # Only cycles whose smallest node is ``start``: each cycle is found from one start.
        stack: list[tuple[str, Iterator[CauseEdge]]] = [(start, iter(outgoing.get(start, ())))]
        path: list[CauseEdge] = []
        on_path = {start}
        while stack and len(out) < limit:
            node, pending = stack[-1]
            edge = next(pending, None)
            if edge is None:
                stack.pop()
                on_path.discard(node)
                if path:
                    path.pop()
                continue
            if edge.target == start:
                cycle = [*path, edge]
                key = "|".join(f"{e.source}/{e.action_index}/{e.event_type}" for e in cycle)
                out.setdefault(key, cycle)
            elif edge.target > start and edge.target not in on_path:
                path.append(edge)
                on_path.add(edge.target)
                stack.append((edge.target, iter(outgoing.get(edge.target, ()))))
    return list(out.values())


def describe_cycle(cycle: Sequence[CauseEdge]) -> str:
    """``rule 'a' -> opportunity.status_changed -> rule 'b' -> ... -> rule 'a'``."""
    parts = [f"rule {cycle[0].source!r}"]
    for edge in cycle:
        parts.append(edge.event_type)
        parts.append(f"rule {edge.target!r}")
    return " -> ".join(parts)


def cycle_findings(
    rules: Sequence[FollowUpRule], handlers: HandlerRegistry, operators: OperatorRegistry
) -> Iterator[Finding]:
    """One error per cycle, at the first rule's action that starts it."""
    cycles = find_cycles(cause_graph(rules, handlers, operators))
    for cycle in cycles:
        first = cycle[0]
        yield Finding(
            "error",
            first.source,
            f"actions[{first.action_index}]",
            "cycle",
            f"rules can trigger each other in a loop: {describe_cycle(cycle)}",
            "add a condition that the caused event cannot meet (e.g. on newStatus or ruleId), "
            "or remove the action that closes the loop",
        )
    if len(cycles) >= MAX_CYCLES:
        yield Finding(
            "warning",
            None,
            "",
            "too-many-cycles",
            f"more than {MAX_CYCLES} cycles; only the first {MAX_CYCLES} are reported",
            "",
        )
