"""Checks of one rule on its own: event type, fields and their kinds, operators and values,
action params, conditions that can never hold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import RuleValidationError
from ..models import Condition, ConditionGroup, ConditionNode, FollowUpRule
from ..rules import EventTypes, OperatorRegistry, WorkingCalendar, validate_rule
from ..rules.compiler import compile_condition, describe
from .findings import Finding, Severity
from .logic import conjunction, contradiction, field_key, never_holds
from .schemas import FieldSpec, PayloadSchema

if TYPE_CHECKING:
    from ..runtime.actions import HandlerRegistry

__all__ = ["check_rule", "leaves_with_locations", "scalar_fields"]

_STRING_OPS = {"starts_with", "ends_with"}
_ORDERING = {"greater_than", "greater_or_equal", "less_than", "less_or_equal", "between"}
_TIMED = {"older_than", "newer_than"}
_SCALAR_KINDS = {"string", "number", "integer", "boolean", "datetime"}


def leaves_with_locations(
    nodes: list[ConditionNode], prefix: str = "trigger.conditions"
) -> Iterator[tuple[str, ConditionNode]]:
    """Every node of a condition tree with its location, pre-order (groups included)."""
    for i, node in enumerate(nodes):
        where = f"{prefix}[{i}]"
        yield where, node
        if isinstance(node, ConditionGroup):
            yield from leaves_with_locations(node.conditions, f"{where}.{node.kind}")


def scalar_fields(schema: PayloadSchema | None) -> frozenset[str]:
    """The field keys a schema declares with a scalar kind (never a list)."""
    if schema is None:
        return frozenset()
    return frozenset(field_key(n) for n, s in schema.fields.items() if s.kind in _SCALAR_KINDS)


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else "any"


def _fits(kind: str, value: Any) -> bool:
    """Whether a rule value of this shape can equal a field of ``kind``."""
    have = _value_kind(value)
    if kind in ("any", "object") or value is None:
        return True
    if kind == "datetime":
        return have == "string"
    if kind == "integer":
        return have == "number"
    return have == kind


def _type_findings(
    rule_id: str, where: str, leaf: Condition, spec: FieldSpec, name: str
) -> Iterator[Finding]:
    kind, op, value = spec.kind, leaf.operator, leaf.value
    if kind == "any":
        return
    problem: str | None = None
    hint = f"{name} is declared as {kind}"
    if op in _STRING_OPS and kind not in ("string", "list"):
        problem = f"{op} compares text, but {name} is a {kind}"
    elif op in _TIMED and kind != "datetime":
        problem = f"{op} needs a datetime, but {name} is a {kind}"
    elif op in _ORDERING:
        bounds = value if op == "between" and isinstance(value, list) else [value]
        wanted = {"number": "number", "integer": "number", "datetime": "string", "string": "string"}
        expected = wanted.get(kind)
        if expected is None:
            problem = f"{op} orders values, but {name} is a {kind}"
        elif any(_value_kind(b) != expected for b in bounds):
            problem = f"{op} {value!r} compares a {_value_kind(bounds[0])} with the {kind} {name}"
    elif op in ("equals", "not_equals") and kind != "list" and not _fits(kind, value):
        problem = f"{name} is a {kind}, so it never equals the {_value_kind(value)} {value!r}"
    elif op in ("in", "not_in") and isinstance(value, list) and kind != "list":
        bad = [v for v in value if not _fits(kind, v)]
        if bad:
            problem = f"{name} is a {kind}; {bad[0]!r} in the list can never match"
    if problem is not None:
        severity: Severity = "error" if op not in ("not_equals", "not_in") else "warning"
        yield Finding(severity, rule_id, f"{where}.value", "type-mismatch", problem, hint)
        return
    if spec.values and op in ("equals", "in") and not leaf.ignore_case:
        wanted_values = [value] if op == "equals" else value if isinstance(value, list) else []
        unknown = [v for v in wanted_values if isinstance(v, str) and v not in spec.values]
        if unknown:
            yield Finding(
                "warning",
                rule_id,
                f"{where}.value",
                "unknown-value",
                f"{name} is never {unknown[0]!r}",
                f"known values: {', '.join(spec.values)}",
            )


def _operator_hint(name: str, operators: OperatorRegistry) -> str:
    """What the operator does, inline (a pip install has no docs folder to point at)."""
    operator = operators.get(name)
    if operator is not None and operator.description:
        return f"operator {name!r}: {operator.description}"
    return f"give operator {name!r} a value of the kind it compares with"


def _condition_findings(
    rule: FollowUpRule, operators: OperatorRegistry, schema: PayloadSchema | None
) -> Iterator[Finding]:
    rid = rule.rule_id
    for where, node in leaves_with_locations(rule.trigger.conditions):
        if not isinstance(node, Condition):
            continue
        if node.operator not in operators:
            yield Finding(
                "error",
                rid,
                f"{where}.operator",
                "unknown-operator",
                f"unknown operator {node.operator!r}",
                f"known: {', '.join(operators.names())}; or register it on the registry",
            )
            continue
        try:
            compile_condition(node, operators, where)
        except ValueError as exc:
            problem = str(exc).partition(": ")[2] or str(exc)
            yield Finding(
                "error",
                rid,
                f"{where}.value",
                "bad-value",
                problem,
                _operator_hint(node.operator, operators),
            )
            continue
        reason = never_holds(node, operators)
        if reason is not None and (".any[" in where or ".not[" in where):
            # at the top (or under ``all``) the rule as a whole never matches: reported once
            yield Finding(
                "warning", rid, where, "never-holds", reason, "remove it or give it values"
            )
        if schema is None:
            continue
        found = schema.lookup(node.field)
        if found is None:
            suggestion = schema.closest(node.field)
            hint = f"did you mean {suggestion!r}?" if suggestion else "check the spelling"
            hint += f" (or declare the field in the payload schema of {schema.event_type})"
            severity: Severity = "error" if schema.strict else "warning"
            yield Finding(
                severity,
                rid,
                f"{where}.field",
                "unknown-field",
                f"{schema.event_type} payloads have no field {node.field!r}",
                hint,
            )
            continue
        yield from _type_findings(rid, where, node, found[1], found[0])


def _never_matches(
    rule: FollowUpRule, operators: OperatorRegistry, scalar: frozenset[str]
) -> Iterator[Finding]:
    def dead(node: ConditionNode) -> str | None:
        if isinstance(node, Condition):
            return never_holds(node, operators) if node.operator in operators else None
        if node.kind == "all":
            for child in node.conditions:
                reason = dead(child)
                if reason is not None:
                    return reason
            return contradiction(conjunction(node.conditions), operators, scalar=scalar)
        if node.kind == "any":
            reasons = [dead(c) for c in node.conditions]
            if reasons and all(r is not None for r in reasons):
                return f"no alternative of ({describe(node)}) can hold"
        return None

    if not all(c.operator in operators for c in conjunction(rule.trigger.conditions)):
        return
    top = ConditionGroup(kind="all", conditions=list(rule.trigger.conditions))
    reason = dead(top)
    if reason is not None:
        yield Finding(
            "error",
            rule.rule_id,
            "trigger.conditions",
            "never-matches",
            f"the rule can never match: {reason}",
            "fix the conditions, or delete the rule",
        )


def _action_findings(rule: FollowUpRule, handlers: HandlerRegistry) -> Iterator[Finding]:
    for i, action in enumerate(rule.actions):
        spec = handlers.get(action.action_type)
        if spec is None:
            yield Finding(
                "error",
                rule.rule_id,
                f"actions[{i}].actionType",
                "unknown-action",
                f"no handler is registered for {action.action_type!r}",
                f"known: {', '.join(handlers)}",
            )
            continue
        try:
            spec.parse(action)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(part) for part in error["loc"]) or "params"
                yield Finding(
                    "error",
                    rule.rule_id,
                    f"actions[{i}].{where}",
                    "bad-params",
                    error["msg"],
                    f"{action.action_type} takes the settings of "
                    f"{spec.params.__name__ if spec.params else 'no params model'}",
                )


def check_rule(
    rule: FollowUpRule,
    *,
    operators: OperatorRegistry,
    event_types: EventTypes,
    handlers: HandlerRegistry,
    schema: PayloadSchema | None,
    calendar: WorkingCalendar | None,
) -> list[Finding]:
    """Every finding about ``rule`` on its own (see the module docstring)."""
    rid = rule.rule_id
    out: list[Finding] = []
    problem = event_types.problem(rule.trigger.event_type)
    if problem is not None:
        suggestion = event_types.closest(rule.trigger.event_type)
        out.append(
            Finding(
                "error",
                rid,
                "trigger.eventType",
                "unknown-event-type",
                problem,
                f"use {suggestion!r}" if suggestion else "register the type on EventTypes",
            )
        )
    out.extend(_condition_findings(rule, operators, schema))
    out.extend(_never_matches(rule, operators, scalar_fields(schema)))
    out.extend(_action_findings(rule, handlers))
    if not any(f.severity == "error" for f in out):
        try:  # limits, business delays the calendar cannot plan: what the engine refuses
            validate_rule(rule, operators, event_types=event_types, calendar=calendar)
        except RuleValidationError as exc:
            out.append(Finding("error", rid, exc.location, "invalid-rule", exc.problem, ""))
    return out
