"""leadflow's own events (``activity.created``, ``action.parked``...) on their way to the host's
:class:`~leadflow.ports.EventSink`: the work they report is already done, so a failing sink is
logged, never raised into it."""

from __future__ import annotations

import logging
from typing import Any

from ..ports import EventSink

__all__ = ["Emitter"]

log = logging.getLogger("leadflow")


class Emitter:
    """Calls ``sink.emit(name, payload)``; an exception from the sink is logged and swallowed."""

    __slots__ = ("_sink",)

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def __call__(self, name: str, payload: dict[str, Any]) -> None:
        try:
            self._sink.emit(name, payload)
        except Exception:
            log.exception("event sink failed", extra={"leadflow_event": name})
