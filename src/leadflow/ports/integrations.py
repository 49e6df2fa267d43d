"""The integration ports: the host's world (notifications, e-mail / SMS, opportunities, the team,
its event bus) and the scheduler the periodic jobs are registered with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .periodic import Job

__all__ = [
    "Contact",
    "EventSink",
    "Message",
    "Messenger",
    "Notification",
    "Notifier",
    "OpportunityGateway",
    "Scheduler",
    "TeamDirectory",
]


@dataclass(frozen=True, slots=True)
class Notification:
    """An in-app notification. ``recipients`` may be empty: the host decides (e.g. the team)."""

    key: str
    template: str
    recipients: tuple[str, ...]
    opportunity_id: str | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """An e-mail or SMS to send through the host's provider."""

    key: str
    channel: str  # "email" or "sms"
    to: str
    template: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Contact:
    """How to reach an opportunity's customer."""

    email: str | None = None
    phone: str | None = None


@runtime_checkable
class Notifier(Protocol):
    """Delivers in-app notifications."""

    def notify(self, notification: Notification) -> None: ...


@runtime_checkable
class Messenger(Protocol):
    """Sends e-mail and SMS (SendGrid, SES, Twilio... in the host)."""

    def send(self, message: Message) -> None: ...


@runtime_checkable
class OpportunityGateway(Protocol):
    """The host's opportunities: leadflow reads owners and contacts and changes status/owner."""

    def owner(self, opportunity_id: str) -> str | None:
        """The opportunity's owner (sales rep), or None. :class:`NotFoundError` if unknown."""
        ...

    def contact(self, opportunity_id: str) -> Contact:
        """The customer's e-mail and phone. :class:`NotFoundError` if unknown."""
        ...

    def update_status(self, opportunity_id: str, status: str, *, actor: str | None) -> str | None:
        """Set the status; return the previous one. Setting the current status is a no-op."""
        ...

    def assign_owner(self, opportunity_id: str, user_id: str, *, actor: str | None) -> None:
        """Make ``user_id`` the owner."""
        ...


@runtime_checkable
class TeamDirectory(Protocol):
    """Who can be assigned work."""

    def sales_reps(self) -> Sequence[str]:
        """The reps eligible for round-robin / least-loaded assignment, in a stable order."""
        ...


@runtime_checkable
class EventSink(Protocol):
    """Receives leadflow's own events (``activity.created``, ``notification.urgent_lead``...)."""

    def emit(self, name: str, payload: dict[str, Any]) -> None: ...


@runtime_checkable
class Scheduler(Protocol):
    """Where leadflow's jobs are registered so that something runs them at their times.

    An implementation calls, at each of the job's cron times (in ``job.timezone``), the
    slot-leased run (:meth:`JobRunner.run_job`), which makes every slot run once across all
    instances sharing a job store, whatever the scheduler does in each process.
    """

    def add_job(self, job: Job) -> None:
        """Run ``job`` at its scheduled times from now on. :class:`DuplicateError` if a job
        with its name is registered already."""
        ...
