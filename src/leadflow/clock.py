"""Time sources and the one rule about datetimes: aware, and UTC inside."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from .fields import ensure_utc
from .ports import Clock

__all__ = ["Clock", "ManualClock", "SystemClock", "ensure_utc"]


class SystemClock:
    """The real clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to; for tests and simulations. Thread-safe."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start, "start")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (may go backwards, to model clock skew)."""
        value = ensure_utc(when, "when")
        with self._lock:
            self._now = value

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)``; return the new time."""
        step = delta if delta is not None else timedelta(**kwargs)
        with self._lock:
            self._now = self._now + step
            return self._now
