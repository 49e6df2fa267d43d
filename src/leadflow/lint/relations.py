"""Checks between rules: shadowed rules, duplicate rules, two rules opening one follow-up."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..models import FollowUpRule
from ..rules import OperatorRegistry
from .findings import Finding
from .logic import canonical_json, conjunction, contradiction, implies

__all__ = ["relation_findings"]


def _order(rule: FollowUpRule) -> tuple[int, str]:
    return (-rule.priority, rule.rule_id)


def _signature(rule: FollowUpRule) -> str:
    conditions = sorted(canonical_json(c.to_document()) for c in rule.trigger.conditions)
    actions = [canonical_json(a.to_document()) for a in rule.actions]
    return canonical_json([rule.trigger.event_type, conditions, actions])


def _follow_ups(rule: FollowUpRule) -> set[tuple[str, str]]:
    out = set()
    for action in rule.actions:
        if action.action_type == "create_activity":
            settings = action.settings()
            subject = settings.get("subject")
            if isinstance(subject, str):
                kind = str(settings.get("activityType", "follow_up"))
                out.add((kind, subject.strip().casefold()))
    return out


def relation_findings(
    rules: Sequence[FollowUpRule], operators: OperatorRegistry, scalar: dict[str, frozenset[str]]
) -> Iterator[Finding]:
    """Findings between the active rules of one rule set (``scalar``: per event type, the
    field keys known to hold no list)."""
    active = sorted((r for r in rules if r.is_active), key=_order)
    by_type: dict[str, list[FollowUpRule]] = {}
    for rule in active:
        by_type.setdefault(rule.trigger.event_type, []).append(rule)
    for event_type, group in by_type.items():
        fields = scalar.get(event_type, frozenset())
        seen: dict[str, FollowUpRule] = {}
        for index, rule in enumerate(group):
            signature = _signature(rule)
            twin = seen.get(signature)
            if twin is not None:
                yield Finding(
                    "error",
                    rule.rule_id,
                    "",
                    "duplicate-rule",
                    f"rule {rule.rule_id!r} repeats rule {twin.rule_id!r} (same trigger and "
                    "actions): every event would be handled twice",
                    f"delete one of them, or deactivate {rule.rule_id!r}",
                )
                continue
            seen[signature] = rule
            premises = conjunction(rule.trigger.conditions)
            for higher in group[:index]:
                if higher.stop_processing and all(
                    implies(premises, c, operators) for c in higher.trigger.conditions
                ):
                    yield Finding(
                        "error",
                        rule.rule_id,
                        "priority",
                        "shadowed",
                        f"rule {higher.rule_id!r} (priority {higher.priority}, stops "
                        f"processing) matches every event this rule matches: it never applies",
                        f"give {rule.rule_id!r} a priority above {higher.priority}, narrow "
                        f"{higher.rule_id!r}, or drop its stopProcessing",
                    )
                    break
            yield from _same_follow_up(group[:index], rule, operators, fields)


def _same_follow_up(
    higher_rules: Sequence[FollowUpRule],
    rule: FollowUpRule,
    operators: OperatorRegistry,
    fields: frozenset[str],
) -> Iterator[Finding]:
    mine = _follow_ups(rule)
    if not mine:
        return
    blocked = False
    for higher in higher_rules:
        common = mine & _follow_ups(higher)
        both = conjunction([*higher.trigger.conditions, *rule.trigger.conditions])
        if common and not blocked and contradiction(both, operators, scalar=fields) is None:
            kind, subject = sorted(common)[0]
            yield Finding(
                "warning",
                rule.rule_id,
                "actions",
                "same-follow-up",
                f"rule {rule.rule_id!r} and rule {higher.rule_id!r} can match one event and "
                f"both open a {kind} {subject!r}: the rep gets it twice",
                f"make their conditions exclusive, or set stopProcessing on {higher.rule_id!r}",
            )
            return
        if higher.stop_processing and not higher.trigger.conditions:
            blocked = True
