"""Storage ports and backends. Backends with optional dependencies are imported on use."""

from __future__ import annotations

from .base import (
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

__all__ = [
    "ActivityFilter",
    "ActivityRepository",
    "ActivitySort",
    "ActivityStatistics",
    "Page",
    "RuleRepository",
    "ScheduledAction",
    "ScheduledActionState",
    "ScheduledActionStore",
]
