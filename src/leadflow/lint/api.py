"""``lint(rules)``: every finding about a rule set, before it goes live."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import InvalidInputError, RuleValidationError
from ..models import FollowUpRule
from ..rules import EventTypes, OperatorRegistry, Vocabulary, WorkingCalendar
from ..runtime.actions import HandlerRegistry
from .checks import check_rule, scalar_fields
from .cycles import cycle_findings
from .findings import Finding, sort_findings
from .relations import relation_findings
from .schemas import PayloadSchemas

if TYPE_CHECKING:
    from ..runtime.flow import LeadFlow

__all__ = ["check_activation", "first_error", "lint", "load_rule_documents", "raise_on_errors"]


_FORMAT_HINT = (
    "the rule format's JSON Schema says what goes where: 'leadflow rules schema' prints it, "
    "leadflow.runtime.schema.rule_schema(flow) returns it"
)


def _located(error: Mapping[str, Any]) -> str:
    text = ""
    for part in error["loc"]:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def lint(
    rules: Iterable[FollowUpRule | Mapping[str, Any]],
    *,
    flow: LeadFlow | None = None,
    operators: OperatorRegistry | None = None,
    handlers: HandlerRegistry | None = None,
    event_types: EventTypes | None = None,
    payload_schemas: PayloadSchemas | None = None,
    calendar: WorkingCalendar | None = None,
    vocabulary: Vocabulary | None = None,
) -> list[Finding]:
    """Every finding about ``rules`` (models or rule documents), errors first.

    The registries come from the arguments, else from ``vocabulary`` (its operators, action
    types when they are a :class:`~leadflow.HandlerRegistry`, event types and calendar), else
    from ``flow`` (``flow.vocabulary``), else the built-ins; ``payload_schemas`` defaults to
    the seed's (:data:`~leadflow.lint.schemas.SEED_PAYLOAD_SCHEMAS`). A document that is not a
    valid rule gives ``invalid-rule`` errors (one per problem) and is left out of the checks
    between rules. Pure: reads the arguments, changes nothing. See docs/lint.md for the codes.
    """
    if vocabulary is None and flow is not None:
        vocabulary = flow.vocabulary
    if vocabulary is not None:
        operators = operators or vocabulary.operators
        if handlers is None and isinstance(vocabulary.actions, HandlerRegistry):
            handlers = vocabulary.actions
        event_types = event_types or vocabulary.event_types
        calendar = calendar or vocabulary.calendar
    if handlers is None:
        handlers = HandlerRegistry.default()
    operators = operators if operators is not None else OperatorRegistry.default()
    event_types = event_types if event_types is not None else EventTypes()
    schemas = payload_schemas if payload_schemas is not None else PayloadSchemas()
    findings: list[Finding] = []
    loaded: list[FollowUpRule] = []
    seen: set[str] = set()
    for index, item in enumerate(rules):
        if isinstance(item, FollowUpRule):
            rule = item
        else:
            try:
                rule = FollowUpRule.model_validate(item)
            except ValidationError as exc:
                rid = item.get("ruleId") if isinstance(item, Mapping) else None
                name = rid if isinstance(rid, str) else f"#{index + 1}"
                for error in exc.errors():
                    findings.append(
                        Finding(
                            "error",
                            name,
                            _located(error),
                            "invalid-rule",
                            error["msg"],
                            _FORMAT_HINT,
                        )
                    )
                continue
        if rule.rule_id in seen:
            findings.append(
                Finding(
                    "error",
                    rule.rule_id,
                    "ruleId",
                    "duplicate-id",
                    "two rules share this id",
                    "give each rule its own ruleId",
                )
            )
            continue
        seen.add(rule.rule_id)
        loaded.append(rule)
        findings.extend(
            check_rule(
                rule,
                operators=operators,
                event_types=event_types,
                handlers=handlers,
                schema=schemas.get(rule.trigger.event_type),
                calendar=calendar,
            )
        )
    scalar = {
        rule.trigger.event_type: scalar_fields(schemas.get(rule.trigger.event_type))
        for rule in loaded
    }
    broken = {f.rule_id for f in findings if f.severity == "error"}
    sound = [r for r in loaded if r.rule_id not in broken]  # no noise about broken rules
    findings.extend(relation_findings(sound, operators, scalar))
    findings.extend(cycle_findings(loaded, handlers, operators))
    return sort_findings(findings)


def first_error(findings: Iterable[Finding]) -> Finding | None:
    """The first ``error`` finding, or None."""
    return next((f for f in findings if f.severity == "error"), None)


def raise_on_errors(findings: Iterable[Finding]) -> None:
    """Raise :class:`~leadflow.RuleValidationError` for the first error finding (its rule,
    location, message and hint); return quietly when there is none."""
    error = first_error(findings)
    if error is not None:
        problem = f"{error.message} [{error.code}]" + (f"; {error.hint}" if error.hint else "")
        raise RuleValidationError(error.rule_id or "<rule set>", error.location or "rule", problem)


def load_rule_documents(path: str | Path) -> list[Any]:
    """The rule documents in a JSON file (one object, a list, or ``{"rules": [...]}``).
    :class:`~leadflow.InvalidInputError` (field ``file``) for an unreadable file or bad JSON."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"{path}: {exc.strerror or exc}", field="file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: not JSON: {exc}", field="file") from None
    if isinstance(data, Mapping) and isinstance(data.get("rules"), list):
        return list(data["rules"])
    if isinstance(data, Mapping):
        return [data]
    if isinstance(data, list):
        return data
    raise InvalidInputError(f"{path}: expected a rule or a list of rules", field="file")


def _concerns(finding: Finding, rule_id: str) -> bool:
    return finding.rule_id == rule_id or f"rule {rule_id!r}" in finding.message


def check_activation(
    rule: FollowUpRule,
    stored: Iterable[FollowUpRule],
    *,
    flow: LeadFlow | None = None,
    operators: OperatorRegistry | None = None,
    handlers: HandlerRegistry | None = None,
    event_types: EventTypes | None = None,
    calendar: WorkingCalendar | None = None,
    vocabulary: Vocabulary | None = None,
) -> list[Finding]:
    """Lint the rule set that would be active once ``rule`` is stored (``stored`` with
    ``rule`` added or replacing the rule of the same id) and return the errors that concern
    ``rule`` (its own, and those naming it: shadowing, duplicates, cycles through it). An
    inactive ``rule`` activates nothing: no findings. The registries as in :func:`lint`."""
    if not rule.is_active:
        return []
    others = [r for r in stored if r.rule_id != rule.rule_id and r.is_active]
    findings = lint(
        [*others, rule],
        flow=flow,
        operators=operators,
        handlers=handlers,
        event_types=event_types,
        calendar=calendar,
        vocabulary=vocabulary,
    )
    return [f for f in findings if f.severity == "error" and _concerns(f, rule.rule_id)]
