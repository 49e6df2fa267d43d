"""Pure decision code: operators, compiled conditions, the rule engine, the working calendar and
the seed's default rules. No I/O, no clock, no globals; nothing here imports the runtime.

Modules: ``operators`` (OperatorRegistry and the built-ins), ``fields`` (field paths,
``MISSING``), ``compiler`` (conditions into predicates), ``index`` (rules by field value),
``events`` (the known event types), ``intake`` (reading event documents), ``engine``
(RuleEngine), ``explain`` (the one explanation format), ``calendar``
(WorkingCalendar), ``vocabulary`` (all of the above that rules are written in, as one value:
``Vocabulary``), ``sequence_checks`` (a sequence definition checked against a vocabulary:
:func:`check_sequence`), ``defaults`` (the seed's rules and the example sequence).
"""

from __future__ import annotations

from .calendar import WorkingCalendar
from .compiler import describe
from .defaults import default_rules
from .engine import (
    ConditionOutcome,
    Evaluation,
    PlannedAction,
    RuleEngine,
    RuleExplanation,
    explain,
    validate_rule,
)
from .events import SEED_EVENT_TYPES, EventTypes
from .explain import DueExplanation, EventExplanation, render_rule
from .fields import MISSING, field_getter
from .operators import Operator, OperatorRegistry
from .sequence_checks import SequenceProblem, check_sequence, sequence_problems
from .vocabulary import ActionCatalog, ActionDeclaration, Vocabulary

__all__ = [
    "MISSING",
    "SEED_EVENT_TYPES",
    "ActionCatalog",
    "ActionDeclaration",
    "ConditionOutcome",
    "DueExplanation",
    "Evaluation",
    "EventExplanation",
    "EventTypes",
    "Operator",
    "OperatorRegistry",
    "PlannedAction",
    "RuleEngine",
    "RuleExplanation",
    "SequenceProblem",
    "Vocabulary",
    "WorkingCalendar",
    "check_sequence",
    "default_rules",
    "describe",
    "explain",
    "field_getter",
    "render_rule",
    "sequence_problems",
    "validate_rule",
]
