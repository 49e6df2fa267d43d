"""leadflow's own events (``activity.created``, ``action.parked``...) on their way to the host's
:class:`~leadflow.ports.EventSink`: the work they report is already done, so a failing sink is
logged, never raised into it. Inside :meth:`Emitter.held` (the planner's unit of work) they
wait for the block to end: sent after its commit, dropped when it is rolled back, so the host
never hears of an activity that was not stored."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..ports import EventSink

__all__ = ["Emitter"]

log = logging.getLogger("leadflow")


class Emitter:
    """Calls ``sink.emit(name, payload)``; an exception from the sink is logged and swallowed."""

    __slots__ = ("_held", "_sink")

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        # One variable per emitter (its name is only a label).
        self._held: ContextVar[list[tuple[str, dict[str, Any]]] | None] = ContextVar(
            "leadflow_emitted", default=None
        )

    def __call__(self, name: str, payload: dict[str, Any]) -> None:
        held = self._held.get()
        if held is not None:
            held.append((name, payload))
            return
        self._send(name, payload)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold what the calling context emits in the block: sent in order when the block ends
        without an exception, dropped when it raises. A block inside another joins it."""
        if self._held.get() is not None:
            yield
            return
        held: list[tuple[str, dict[str, Any]]] = []
        token = self._held.set(held)
        try:
            yield
        finally:
            self._held.reset(token)
        for name, payload in held:
            self._send(name, payload)

    def _send(self, name: str, payload: dict[str, Any]) -> None:
        try:
            self._sink.emit(name, payload)
        except Exception:
            log.exception("event sink failed", extra={"leadflow_event": name})
