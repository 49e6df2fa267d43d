"""The analytic facts in memory, kept where the garbage collector does not look.

:class:`FastAnalyticsStore` is the reference :class:`~leadflow.stores.memory.InMemoryAnalyticsStore`
with its lead arrivals and status changes kept as rows (plain tuples of their fields' values)
instead of models. A model is two objects the collector tracks (the model and its set of fields
set), one arrival per lead and one change per status event: after 10,000 events of the service
benchmark they were every object the process had added for the collector to walk (0.92 per
event), so a long-running process's full collections grew with the events it had handled. A
tuple of atomic values is untracked once a collection has seen it. The models are built again on
the way out (:func:`leadflow.facts.rebuilt`: the fields the store was given, checked then).
"""

from __future__ import annotations

from typing import Any, Final

from ....facts import LeadArrival, StatusChange, rebuilt
from ..analytics import InMemoryAnalyticsStore

__all__ = ["FastAnalyticsStore"]

_ARRIVAL: Final = tuple(LeadArrival.model_fields)
_CHANGE: Final = tuple(StatusChange.model_fields)


class FastAnalyticsStore(InMemoryAnalyticsStore):
    """:class:`~leadflow.stores.memory.InMemoryAnalyticsStore` with arrivals and status
    changes kept as rows (see the module docstring); held to the same contract suite."""

    def _keep_arrival(self, arrival: LeadArrival) -> Any:
        values = arrival.__dict__
        return tuple(values[name] for name in _ARRIVAL)

    def _arrival(self, kept: Any) -> LeadArrival:
        return rebuilt(LeadArrival, dict(zip(_ARRIVAL, kept, strict=True)))

    def _keep_change(self, change: StatusChange) -> Any:
        values = change.__dict__
        return tuple(values[name] for name in _CHANGE)

    def _change(self, kept: Any) -> StatusChange:
        return rebuilt(StatusChange, dict(zip(_CHANGE, kept, strict=True)))
