"""Pure decision code: operators, compiled conditions, the rule engine, the working calendar and
the seed's default rules. No I/O, no clock, no globals; nothing here imports the runtime."""

from __future__ import annotations

from .calendar import WorkingCalendar
from .conditions import MISSING, Operator, OperatorRegistry
from .defaults import default_rules
from .engine import (
    ConditionOutcome,
    Evaluation,
    PlannedAction,
    RuleEngine,
    RuleExplanation,
    validate_rule,
)

__all__ = [
    "MISSING",
    "ConditionOutcome",
    "Evaluation",
    "Operator",
    "OperatorRegistry",
    "PlannedAction",
    "RuleEngine",
    "RuleExplanation",
    "WorkingCalendar",
    "default_rules",
    "validate_rule",
]
