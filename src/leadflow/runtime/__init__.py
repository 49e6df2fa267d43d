"""What acts: the :class:`LeadFlow` facade, action handlers and assignment, the periodic jobs."""

from __future__ import annotations

from .actions import HandlerRegistry, HandlerSpec
from .context import ActionContext, ActionHandler
from .flow import LeadFlow
from .health import unhandled_action_types, unrun_rule_types
from .jobs import JobSchedule, JobSettings, LeadflowJobs
from .results import (
    ActionRun,
    CompletionResult,
    DueRunReport,
    HandleResult,
    RuleChange,
    RuleTestResult,
)
from .settings import FlowSettings, PendingPolicy, RetryPolicy

__all__ = [
    "ActionContext",
    "ActionHandler",
    "ActionRun",
    "CompletionResult",
    "DueRunReport",
    "FlowSettings",
    "HandleResult",
    "HandlerRegistry",
    "HandlerSpec",
    "JobSchedule",
    "JobSettings",
    "LeadFlow",
    "LeadflowJobs",
    "PendingPolicy",
    "RetryPolicy",
    "RuleChange",
    "RuleTestResult",
    "unhandled_action_types",
    "unrun_rule_types",
]
