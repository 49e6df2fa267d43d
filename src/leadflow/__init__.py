"""leadflow: lead activity tracking and follow-up automation, embeddable in any Python service.

The public API is what this module exports (pinned by a test); the rest lives in submodules a
host imports when it needs them: the ports to implement (:mod:`leadflow.ports`), the backends
(:mod:`leadflow.stores.memory`, :mod:`leadflow.stores.mongo`), ready adapters
(:mod:`leadflow.adapters`), the contracts and fakes for tests (:mod:`leadflow.testing`), the
generic scheduler (:mod:`leadflow.scheduling`). ``import leadflow`` loads no driver.
"""

from __future__ import annotations

from .access import Operations, Policy, Principal, Role
from .clock import ManualClock, SystemClock
from .errors import (
    CascadeDepthError,
    ConflictError,
    DuplicateError,
    HandlerError,
    InvalidInputError,
    InvalidStateError,
    LeadflowError,
    NotFoundError,
    OpenActivityExistsError,
    PermanentError,
    PermissionDeniedError,
    RuleValidationError,
    StaleWriteError,
    StorageError,
    UnavailableError,
    UnsafeQueryError,
)
from .models import (
    Action,
    Activity,
    ActivityMetadata,
    ActivityPriority,
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
)
from .ports import Integrations, Storage
from .queries import ActivityFilter, ActivitySort, ActivityStatistics, Page
from .records import ScheduledAction, ScheduledActionState
from .rules import EventTypes, OperatorRegistry, RuleEngine, WorkingCalendar, default_rules
from .runtime import (
    ActionContext,
    FlowSettings,
    HandleResult,
    HandlerRegistry,
    JobSettings,
    LeadFlow,
    LeadflowJobs,
    RetryPolicy,
)
from .scheduling import JobRunner, Scheduler

__version__ = "0.2.0"

__all__ = [
    "Action",
    "ActionContext",
    "Activity",
    "ActivityFilter",
    "ActivityMetadata",
    "ActivityPriority",
    "ActivitySort",
    "ActivityState",
    "ActivityStatistics",
    "ActivityType",
    "CascadeDepthError",
    "Condition",
    "ConditionGroup",
    "ConflictError",
    "Delay",
    "DuplicateError",
    "Event",
    "EventType",
    "EventTypes",
    "FlowSettings",
    "FollowUpRule",
    "HandleResult",
    "HandlerError",
    "HandlerRegistry",
    "Integrations",
    "InvalidInputError",
    "InvalidStateError",
    "JobRunner",
    "JobSettings",
    "LeadFlow",
    "LeadflowError",
    "LeadflowJobs",
    "ManualClock",
    "NotFoundError",
    "OpenActivityExistsError",
    "Operations",
    "OperatorRegistry",
    "Outcome",
    "Page",
    "PermanentError",
    "PermissionDeniedError",
    "Policy",
    "Principal",
    "RetryPolicy",
    "Role",
    "RuleEngine",
    "RuleValidationError",
    "ScheduledAction",
    "ScheduledActionState",
    "Scheduler",
    "StaleWriteError",
    "Storage",
    "StorageError",
    "SystemClock",
    "Trigger",
    "UnavailableError",
    "UnsafeQueryError",
    "WorkingCalendar",
    "__version__",
    "default_rules",
]
