"""Ready implementations of the integration ports: recording ones for tests and demos, an
in-memory opportunity table, a fixed team, and a sink that forwards to any callback (blinker's
``send``, pyee's ``emit``...)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from .errors import NotFoundError
from .ports import Contact, Message, Notification

__all__ = [
    "CallbackEventSink",
    "InMemoryOpportunities",
    "RecordingEventSink",
    "RecordingMessenger",
    "RecordingNotifier",
    "StaticTeamDirectory",
]


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


_Row = tuple[str | None, str, str | None, str | None, str | None]
"""An opportunity: (owner, status, email, phone, time zone). A plain tuple of texts, which the
garbage collector stops tracking: a table of 50,000 opportunities kept as objects (a record
and its contact each) added about 100,000 objects for every full collection to walk."""

_OWNER: Final = 0
_STATUS: Final = 1


class InMemoryOpportunities:
    """A tiny opportunity table implementing :class:`OpportunityGateway` (tests, demos)."""

    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()

    def add(
        self,
        opportunity_id: str,
        *,
        owner: str | None = None,
        status: str = "new",
        email: str | None = None,
        phone: str | None = None,
        timezone: str | None = None,
    ) -> None:
        with self._lock:
            self._rows[opportunity_id] = (owner, status, email, phone, timezone)

    def _row(self, opportunity_id: str) -> _Row:
        row = self._rows.get(opportunity_id)
        if row is None:
            raise NotFoundError(f"opportunity {opportunity_id!r} not found")
        return row

    def owner(self, opportunity_id: str) -> str | None:
        with self._lock:
            return self._row(opportunity_id)[_OWNER]

    def contact(self, opportunity_id: str) -> Contact:
        with self._lock:
            _, _, email, phone, timezone = self._row(opportunity_id)
        return Contact(email, phone, timezone)

    def status(self, opportunity_id: str) -> str:
        with self._lock:
            return self._row(opportunity_id)[_STATUS]

    def fields(self, opportunity_id: str) -> dict[str, Any]:
        """What sequences' branches read as ``opportunity.*``: status and owner."""
        with self._lock:
            owner, status, *_ = self._row(opportunity_id)
        return {"status": status, "owner": owner}

    def update_status(self, opportunity_id: str, status: str, *, actor: str | None) -> str | None:
        with self._lock:
            owner, previous, email, phone, timezone = self._row(opportunity_id)
            self._rows[opportunity_id] = (owner, status, email, phone, timezone)
            return previous

    def assign_owner(self, opportunity_id: str, user_id: str, *, actor: str | None) -> None:
        with self._lock:
            _, status, email, phone, timezone = self._row(opportunity_id)
            self._rows[opportunity_id] = (user_id, status, email, phone, timezone)


class StaticTeamDirectory:
    """A fixed list of sales reps, and optionally who is in which team (rep id -> team name,
    for the analytics' ``teams`` filter)."""

    def __init__(self, reps: Sequence[str], *, teams: Mapping[str, str] | None = None) -> None:
        self._reps = tuple(reps)
        self._teams = dict(teams or {})

    def sales_reps(self) -> Sequence[str]:
        return self._reps

    def teams(self) -> Mapping[str, str]:
        """Rep id -> team name (a copy)."""
        return dict(self._teams)
