"""The integration ports: the host's world (notifications, e-mail / SMS, opportunities, the team,
its event bus) and the scheduler the periodic jobs are registered with.

What holds for all of them (``docs/integrations.md`` has the details and an adapter for each):

* **Threads.** leadflow calls them from whichever thread handles an event or runs due actions
  and jobs, several at once: an adapter must be safe to share between threads.
* **Errors.** In an action, :class:`~leadflow.NotFoundError` (and
  :class:`~leadflow.InvalidInputError`, :class:`~leadflow.PermanentError`) parks the action at
  once; any other exception is retried with backoff, then parked after the last attempt.
* **At least once.** A crash between a send and leadflow recording it sends again, with the
  same ``key``: drop a notification or message whose key was delivered already.
* **Time.** Datetimes leadflow passes are aware and in UTC.

Each port has a contract suite in :mod:`leadflow.testing.contracts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    """An in-app notification. ``recipients`` may be empty: the host decides (e.g. the team).

    ``key`` is the idempotency key (the action's, or ``<template>:<slot>:<user>`` from a job);
    ``data`` holds JSON-like values and aware datetimes (``asOf``), and is the same dict the
    event sink gets next: read it, do not change it."""

    key: str
    template: str
    recipients: tuple[str, ...]
    opportunity_id: str | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """An e-mail or SMS to send through the host's provider: ``to`` is the opportunity's
    contact for ``channel``; ``key`` is the action's idempotency key."""

    key: str
    channel: str  # "email" or "sms"
    to: str
    template: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Contact:
    """How to reach an opportunity's customer; ``timezone`` (an IANA name such as
    ``Europe/Paris``) is where the customer is, for sequences' send windows and "09:00 local"
    waits (None: the sequence's or the business's zone)."""

    email: str | None = None
    phone: str | None = None
    timezone: str | None = None


@runtime_checkable
class Notifier(Protocol):
    """Delivers in-app notifications (from ``send_notification`` actions and the periodic jobs).

    Drop a notification whose ``key`` was delivered already (deduplicate on the key, never on
    the content). Raising from an action retries it; from a job, the failure is logged and
    counted and the job goes on with the next recipient."""

    def notify(self, notification: Notification) -> None: ...


@runtime_checkable
class Messenger(Protocol):
    """Sends e-mail and SMS (SendGrid, SES, Twilio... in the host) for ``send_email`` and
    ``send_sms`` actions.

    Pass ``key`` to the provider as its idempotency key (or drop a message whose key was sent
    already). Raising retries the action; raise :class:`~leadflow.PermanentError` when
    retrying cannot help (an address the provider refuses)."""

    def send(self, message: Message) -> None: ...


@runtime_checkable
class OpportunityGateway(Protocol):
    """The host's opportunities: leadflow reads owners and contacts and changes status/owner.

    Every method raises :class:`~leadflow.NotFoundError` (not ``KeyError``) for an unknown
    opportunity: the action is then parked at once, and ``Operations`` treats the opportunity
    as not the caller's. Any other exception is a transient failure (the action is retried).
    ``actor`` is who makes the change (``FlowSettings.system_user`` for rule actions), for the
    host's own history."""

    def owner(self, opportunity_id: str) -> str | None:
        """The opportunity's owner (sales rep), or None. :class:`NotFoundError` if unknown."""
        ...

    def contact(self, opportunity_id: str) -> Contact:
        """The customer's e-mail and phone (either may be None or empty: sending to a channel
        without an address parks the action). :class:`NotFoundError` if unknown."""
        ...

    def update_status(self, opportunity_id: str, status: str, *, actor: str | None) -> str | None:
        """Set the status; return the previous one, read and written atomically. Setting the
        current status is a no-op that returns it (leadflow then feeds no
        ``opportunity.status_changed`` into the rules). :class:`NotFoundError` if unknown."""
        ...

    def assign_owner(self, opportunity_id: str, user_id: str, *, actor: str | None) -> None:
        """Make ``user_id`` the owner (:meth:`owner` returns it from now on).
        :class:`NotFoundError` if unknown."""
        ...


@runtime_checkable
class OpportunityFields(Protocol):
    """What an :class:`OpportunityGateway` may add for sequences: the opportunity's fields
    that branch conditions read as ``opportunity.<field>`` (e.g. ``status``, ``owner``,
    ``amount``), as a JSON-like mapping. Optional: without it branches see ``owner`` only.
    :class:`NotFoundError` if the opportunity is unknown."""

    def fields(self, opportunity_id: str) -> Mapping[str, Any]: ...


@runtime_checkable
class TeamDirectory(Protocol):
    """Who can be assigned work."""

    def sales_reps(self) -> Sequence[str]:
        """The reps eligible for round-robin / least-loaded assignment, in a stable order
        (round robin takes them in turn; least-loaded breaks ties in this order).
        Empty: nobody to assign to, and an action that needs a rep is parked."""
        ...


@runtime_checkable
class EventSink(Protocol):
    """Receives leadflow's own events (``activity.created``, ``notification.urgent_lead``...).

    Called synchronously, in the thread that did the work, after the work is done: keep it
    quick (hand off to a queue for slow listeners) and leave the payload unchanged. An
    exception is logged on the ``leadflow`` logger and swallowed. Payloads hold JSON-like
    values and aware datetimes."""

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
        with its name is registered already (the registered one stays)."""
        ...
