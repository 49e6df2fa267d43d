"""The analytic facts in memory, kept where the garbage collector does not look.

:class:`FastAnalyticsStore` is the reference :class:`~leadflow.stores.memory.InMemoryAnalyticsStore`
with its lead arrivals, status changes and completions kept as rows (plain tuples of their
fields' values; a completion's type and outcome as their strings) instead of models. A model is
two objects the collector tracks (the model and its set of fields set), one arrival per lead and
one change per status event: after 10,000 events of the service benchmark they were every object
the process had added for the collector to walk (0.92 per event), so a long-running process's
full collections grew with the events it had handled. A tuple of atomic values is untracked once
a collection has seen it. The models are built again on the way out
(:func:`leadflow.facts.rebuilt`: the fields the store was given, checked then). At the issue's
scale (100,000 opportunities, 1,000,000 completions) the completions' models were two million of
the 4.6 million objects a full collection walked (3-4 s each on a shared 2-core machine).
"""

from __future__ import annotations

from typing import Any, Final

from ....activity_models import ActivityType, Outcome
from ....facts import Completion, LeadArrival, StatusChange, rebuilt
from ..analytics import InMemoryAnalyticsStore

__all__ = ["FastAnalyticsStore"]

_ARRIVAL: Final = tuple(LeadArrival.model_fields)
_CHANGE: Final = tuple(StatusChange.model_fields)
_COMPLETION: Final = tuple(Completion.model_fields)
_TYPE, _OUTCOME = _COMPLETION.index("activity_type"), _COMPLETION.index("outcome")
_TYPES: Final = {str(kind): kind for kind in ActivityType}
_OUTCOMES: Final[dict[str | None, Outcome | None]] = {None: None} | {
    str(outcome): outcome for outcome in Outcome
}


class FastAnalyticsStore(InMemoryAnalyticsStore):
    """:class:`~leadflow.stores.memory.InMemoryAnalyticsStore` with arrivals, status changes
    and completions kept as rows (see the module docstring); held to the same contract suite."""

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

    def _keep_completion(self, completion: Completion) -> Any:
        # The enums as their values: a tuple holding an enum member stays tracked.
        values = completion.__dict__
        kept = [values[name] for name in _COMPLETION]
        kept[_TYPE] = str(kept[_TYPE])
        kept[_OUTCOME] = None if kept[_OUTCOME] is None else str(kept[_OUTCOME])
        return tuple(kept)

    def _completion(self, kept: Any) -> Completion:
        values = dict(zip(_COMPLETION, kept, strict=True))
        values["activity_type"] = _TYPES[kept[_TYPE]]
        values["outcome"] = _OUTCOMES[kept[_OUTCOME]]
        return rebuilt(Completion, values)
