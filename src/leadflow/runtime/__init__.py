"""What acts: the :class:`LeadFlow` facade, action handlers and assignment, the periodic jobs."""

from __future__ import annotations

from .actions import ActionContext, ActionHandler, HandlerRegistry
from .flow import LeadFlow
from .jobs import JobSchedule, JobSettings, LeadflowJobs

__all__ = [
    "ActionContext",
    "ActionHandler",
    "HandlerRegistry",
    "JobSchedule",
    "JobSettings",
    "LeadFlow",
    "LeadflowJobs",
]
