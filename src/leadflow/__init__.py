"""leadflow: lead activity tracking and follow-up automation, embeddable in any Python service.

The public API is what this module exports; submodules are implementation details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .actions import ActionContext, ActionHandler, HandlerRegistry
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
from .ports import (
    CallbackEventSink,
    Contact,
    EventSink,
    InMemoryOpportunities,
    Message,
    Messenger,
    Notification,
    Notifier,
    OpportunityGateway,
    RecordingEventSink,
    RecordingMessenger,
    RecordingNotifier,
    StaticTeamDirectory,
    TeamDirectory,
)
from .scheduling import (
    APSchedulerAdapter,
    Job,
    JobContext,
    JobRun,
    JobRunner,
    JobSchedule,
    JobSettings,
    JobStatus,
    LeadflowJobs,
    Scheduler,
)
from .service import (
    ActionRun,
    CompletionResult,
    DueRunReport,
    HandleResult,
    LeadFlow,
    Principal,
    RetryPolicy,
    Role,
    RuleTestResult,
)
from .stores.base import (
    ActivityFilter,
    ActivityRepository,
    ActivitySort,
    ActivityStatistics,
    Page,
    RuleRepository,
    ScheduledAction,
    ScheduledActionState,
    ScheduledActionStore,
)
from .stores.jobs import (
    InMemoryJobStore,
    JobStore,
    MongoJobStore,
    SlotClaim,
    SlotRecord,
    SlotState,
)
from .stores.memory import (
    InMemoryActivityRepository,
    InMemoryRuleRepository,
    InMemoryScheduledActionStore,
)
from .stores.support import (
    AuditLog,
    CounterStore,
    InMemoryAuditLog,
    InMemoryCounterStore,
    MongoAuditLog,
    MongoCounterStore,
    RuleAuditEntry,
)

if TYPE_CHECKING:
    from .stores.mongo import (
        MongoActivityRepository,
        MongoRuleRepository,
        MongoScheduledActionStore,
    )

__version__ = "0.1.0"

_MONGO = {"MongoActivityRepository", "MongoRuleRepository", "MongoScheduledActionStore"}


def __getattr__(name: str) -> Any:
    # The MongoDB backend needs pymongo (the ``mongo`` extra): import it only when asked for.
    if name in _MONGO:
        from .stores import mongo

        return getattr(mongo, name)
    raise AttributeError(f"module 'leadflow' has no attribute {name!r}")


__all__ = [
    "MISSING",
    "APSchedulerAdapter",
    "Action",
    "ActionContext",
    "ActionHandler",
    "ActionRun",
    "Activity",
    "ActivityFilter",
    "ActivityMetadata",
    "ActivityRepository",
    "ActivitySort",
    "ActivityState",
    "ActivityStatistics",
    "ActivityType",
    "AuditLog",
    "CallbackEventSink",
    "CascadeDepthError",
    "Clock",
    "CompletionResult",
    "Condition",
    "ConditionGroup",
    "ConditionOutcome",
    "ConflictError",
    "Contact",
    "CounterStore",
    "Delay",
    "DueRunReport",
    "DuplicateError",
    "Evaluation",
    "Event",
    "EventSink",
    "EventType",
    "FollowUpRule",
    "HandleResult",
    "HandlerError",
    "HandlerRegistry",
    "InMemoryActivityRepository",
    "InMemoryAuditLog",
    "InMemoryCounterStore",
    "InMemoryJobStore",
    "InMemoryOpportunities",
    "InMemoryRuleRepository",
    "InMemoryScheduledActionStore",
    "InvalidInputError",
    "InvalidStateError",
    "Job",
    "JobContext",
    "JobRun",
    "JobRunner",
    "JobSchedule",
    "JobSettings",
    "JobStatus",
    "JobStore",
    "LeadFlow",
    "LeadflowError",
    "LeadflowJobs",
    "ManualClock",
    "Message",
    "Messenger",
    "MongoActivityRepository",
    "MongoAuditLog",
    "MongoCounterStore",
    "MongoJobStore",
    "MongoRuleRepository",
    "MongoScheduledActionStore",
    "NotFoundError",
    "Notification",
    "Notifier",
    "Operator",
    "OperatorRegistry",
    "OpportunityGateway",
    "Outcome",
    "Page",
    "PermissionDeniedError",
    "PlannedAction",
    "Principal",
    "RecordingEventSink",
    "RecordingMessenger",
    "RecordingNotifier",
    "RetryPolicy",
    "Role",
    "RuleAuditEntry",
    "RuleEngine",
    "RuleExplanation",
    "RuleRepository",
    "RuleTestResult",
    "RuleValidationError",
    "ScheduledAction",
    "ScheduledActionState",
    "ScheduledActionStore",
    "Scheduler",
    "SlotClaim",
    "SlotRecord",
    "SlotState",
    "StaleWriteError",
    "StaticTeamDirectory",
    "SystemClock",
    "TeamDirectory",
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
