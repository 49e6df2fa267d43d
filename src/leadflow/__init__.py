"""leadflow: lead activity tracking and follow-up automation, embeddable in any Python service.

The public API is what this module exports; submodules are implementation details.
"""

from __future__ import annotations

from .calendars import WorkingCalendar
from .clock import Clock, ManualClock, SystemClock, ensure_utc
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
from .errors import (
    CascadeDepthError,
    ConflictError,
    DuplicateError,
    HandlerError,
    InvalidInputError,
    InvalidStateError,
    LeadflowError,
    NotFoundError,
    PermissionDeniedError,
    RuleValidationError,
    StaleWriteError,
    UnsafeQueryError,
)
from .models import (
    Action,
    Activity,
    ActivityMetadata,
    ActivityState,
    ActivityType,
    Condition,
    ConditionGroup,
    Delay,
    Event,
    EventType,
    FollowUpRule,
    Outcome,
    Trigger,
    canonical_event_type,
    new_id,
)

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "Action",
    "Activity",
    "ActivityMetadata",
    "ActivityState",
    "ActivityType",
    "CascadeDepthError",
    "Clock",
    "Condition",
    "ConditionGroup",
    "ConditionOutcome",
    "ConflictError",
    "Delay",
    "DuplicateError",
    "Evaluation",
    "Event",
    "EventType",
    "FollowUpRule",
    "HandlerError",
    "InvalidInputError",
    "InvalidStateError",
    "LeadflowError",
    "ManualClock",
    "NotFoundError",
    "Operator",
    "OperatorRegistry",
    "Outcome",
    "PermissionDeniedError",
    "PlannedAction",
    "RuleEngine",
    "RuleExplanation",
    "RuleValidationError",
    "StaleWriteError",
    "SystemClock",
    "Trigger",
    "UnsafeQueryError",
    "WorkingCalendar",
    "__version__",
    "canonical_event_type",
    "default_rules",
    "ensure_utc",
    "new_id",
    "validate_rule",
]
