"""The ports a host implements, and in-memory versions of each for tests and demos.

leadflow never talks to the outside world directly: in-app notifications, e-mail / SMS, the host's
opportunities, its sales team and its event bus all sit behind these protocols. Every outgoing
call carries an idempotency ``key`` so a host can drop the rare duplicate a crash-and-retry
produces (leadflow's own writes are exactly-once; a send to a foreign system is at-least-once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .errors import NotFoundError

__all__ = [
    "CallbackEventSink",
    "Contact",
    "EventSink",
    "InMemoryOpportunities",
    "Message",
    "Messenger",
    "Notification",
    "Notifier",
    "OpportunityGateway",
    "RecordingEventSink",
    "RecordingMessenger",
    "RecordingNotifier",
    "StaticTeamDirectory",
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


# --------------------------------------------------------------------------- in-memory versions


class RecordingNotifier:
    """Keeps every notification in ``sent``."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self._lock = threading.Lock()

    def notify(self, notification: Notification) -> None:
        with self._lock:
            self.sent.append(notification)


class RecordingMessenger:
    """Keeps every message in ``sent``."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        with self._lock:
            self.sent.append(message)


class RecordingEventSink:
    """Keeps every emitted event as ``(name, payload)`` in ``events``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((name, payload))

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.events]


class CallbackEventSink:
    """Adapts any ``callback(name, payload)`` (blinker's ``send``, pyee's ``emit``...) to a sink."""

    def __init__(self, callback: Callable[[str, dict[str, Any]], object]) -> None:
        self._callback = callback

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        self._callback(name, payload)


@dataclass
class _Opportunity:
    owner: str | None = None
    status: str = "new"
    contact: Contact = field(default_factory=Contact)


class InMemoryOpportunities:
    """A tiny opportunity table implementing :class:`OpportunityGateway` (tests, demos)."""

    def __init__(self) -> None:
        self._rows: dict[str, _Opportunity] = {}
        self._lock = threading.Lock()

    def add(
        self,
        opportunity_id: str,
        *,
        owner: str | None = None,
        status: str = "new",
        email: str | None = None,
        phone: str | None = None,
    ) -> None:
        with self._lock:
            self._rows[opportunity_id] = _Opportunity(owner, status, Contact(email, phone))

    def _row(self, opportunity_id: str) -> _Opportunity:
        row = self._rows.get(opportunity_id)
        if row is None:
            raise NotFoundError(f"opportunity {opportunity_id!r} not found")
        return row

    def owner(self, opportunity_id: str) -> str | None:
        with self._lock:
            return self._row(opportunity_id).owner

    def contact(self, opportunity_id: str) -> Contact:
        with self._lock:
            return self._row(opportunity_id).contact

    def status(self, opportunity_id: str) -> str:
        with self._lock:
            return self._row(opportunity_id).status

    def update_status(self, opportunity_id: str, status: str, *, actor: str | None) -> str | None:
        with self._lock:
            row = self._row(opportunity_id)
            previous, row.status = row.status, status
            return previous

    def assign_owner(self, opportunity_id: str, user_id: str, *, actor: str | None) -> None:
        with self._lock:
            self._row(opportunity_id).owner = user_id


class StaticTeamDirectory:
    """A fixed list of sales reps."""

    def __init__(self, reps: Sequence[str]) -> None:
        self._reps = tuple(reps)

    def sales_reps(self) -> Sequence[str]:
        return self._reps
