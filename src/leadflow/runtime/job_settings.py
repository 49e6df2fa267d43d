"""When leadflow's periodic jobs run and how far each goes: :class:`JobSchedule` and
:class:`JobSettings` (re-exported by :mod:`leadflow.runtime.jobs`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final, cast
from zoneinfo import ZoneInfo

from ..errors import InvalidInputError
from ..ports.periodic import _count, _cron, _duration, _zone

__all__ = ["JOB_NAMES", "JobSchedule", "JobSettings"]

JOB_NAMES: Final = (
    "due_actions",
    "overdue_check",
    "upcoming_reminders",
    "stale_opportunities",
    "cleanup",
    "daily_summary",
)
"""The seed's jobs, in the order they are registered."""

_MAX_THRESHOLDS: Final = 10
_MAX_THRESHOLD: Final = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class JobSchedule:
    """When one job runs: ``cron`` in the settings' time zone; ``grace``, how late a missed
    slot may still run; ``lease``, how long one run may hold its slot before another instance
    may take it over; ``enabled``, whether it is registered at all."""

    cron: str
    grace: timedelta = timedelta(minutes=10)
    lease: timedelta = timedelta(minutes=15)
    enabled: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "cron", _cron(self.cron))
        _duration(self.grace, "grace", zero=True)
        _duration(self.lease, "lease")


def _thresholds(value: object) -> tuple[timedelta, ...]:
    """``value`` as a sorted tuple of distinct escalation thresholds, or
    :class:`InvalidInputError` (field ``overdue_thresholds``)."""
    field = "overdue_thresholds"
    if isinstance(value, str | bytes | timedelta) or not hasattr(value, "__iter__"):
        raise InvalidInputError("expected a sequence of timedeltas", field=field)
    items = list(cast("list[object]", value))
    if len(items) > _MAX_THRESHOLDS:
        raise InvalidInputError(f"at most {_MAX_THRESHOLDS} thresholds", field=field)
    for item in items:
        if (
            not isinstance(item, timedelta)
            or not timedelta(0) < item <= _MAX_THRESHOLD
            or item.microseconds
        ):
            raise InvalidInputError(
                "each threshold must be a positive timedelta of whole seconds, at most 366 days",
                field=field,
            )
    return tuple(sorted(set(cast("list[timedelta]", items))))


@dataclass(frozen=True, slots=True)
class JobSettings:
    """Schedules and thresholds of leadflow's jobs; the defaults are the seed's.

    ``timezone`` is where the business is: "daily at 8 AM" means 8 AM there, across
    daylight-saving changes. Every instance sharing a job store must use the same settings.
    ``notify`` also sends each notification through the flow's :class:`~leadflow.Notifier`
    (it always goes to the event sink as ``notification.<name>``).

    ``overdue_thresholds``: how long past its due date an open activity is escalated, once per
    threshold, as an ``activity.overdue`` event fed into the rules (default one hour and one
    day; empty: no escalations). ``escalation_limit``: at most this many escalations per
    threshold and run (the rest the next run).
    """

    timezone: ZoneInfo | str = "UTC"
    due_actions: JobSchedule = JobSchedule(
        "* * * * *", grace=timedelta(minutes=10), lease=timedelta(minutes=10)
    )
    overdue_check: JobSchedule = JobSchedule("0 * * * *", grace=timedelta(minutes=30))
    upcoming_reminders: JobSchedule = JobSchedule("*/30 * * * *", grace=timedelta(minutes=10))
    stale_opportunities: JobSchedule = JobSchedule(
        "0 */6 * * *", grace=timedelta(hours=3), lease=timedelta(minutes=30)
    )
    cleanup: JobSchedule = JobSchedule(
        "0 2 * * *", grace=timedelta(hours=12), lease=timedelta(hours=1)
    )
    daily_summary: JobSchedule = JobSchedule("0 8 * * *", grace=timedelta(hours=2))
    due_actions_batch: int = 100
    due_actions_max_batches: int = 50
    overdue_limit: int = 5000
    items_per_notification: int = 50
    overdue_thresholds: tuple[timedelta, ...] = (timedelta(hours=1), timedelta(hours=24))
    escalation_limit: int = 1000
    reminder_lead: timedelta = timedelta(minutes=30)
    upcoming_limit: int = 1000
    stale_after: timedelta = timedelta(days=7)
    stale_limit: int = 10_000
    retention: timedelta = timedelta(days=365)
    notify: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "timezone", _zone(self.timezone))
        object.__setattr__(self, "overdue_thresholds", _thresholds(self.overdue_thresholds))
        for name in JOB_NAMES:
            if not isinstance(getattr(self, name), JobSchedule):
                raise InvalidInputError("expected a JobSchedule", field=name)
        for name in (
            "due_actions_batch",
            "due_actions_max_batches",
            "overdue_limit",
            "items_per_notification",
            "escalation_limit",
            "upcoming_limit",
            "stale_limit",
        ):
            _count(getattr(self, name), name)
        for name in ("reminder_lead", "stale_after", "retention"):
            _duration(getattr(self, name), name)

    @property
    def zone(self) -> ZoneInfo:
        return cast(ZoneInfo, self.timezone)
