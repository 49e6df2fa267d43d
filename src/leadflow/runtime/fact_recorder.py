"""Recording the analytic facts of each event (:mod:`leadflow.facts`) as it is handled.

The :class:`~.planner.Planner` asks :meth:`FactRecorder.wants` whether an event yields facts
and calls :meth:`FactRecorder.record` where it stores the event's actions: in the event's unit
of work when the storage's is atomic (SQL: the facts commit with the actions, or neither does),
else as separate steps. Every fact is keyed (:class:`~leadflow.ports.AnalyticsStore`), so an
event handled twice records nothing twice. A flow whose storage has no analytics store has no
recorder and records nothing.
"""

from __future__ import annotations

import logging

from ..errors import LeadflowError, UnavailableError
from ..facts import Completion, LeadArrival, StatusChange, facts_of
from ..models import Event
from ..ports import AnalyticsStore, BatchFacts
from ..stores.checks import handed_over

__all__ = ["FactRecorder"]

log = logging.getLogger("leadflow.analytics")

_TYPES = frozenset({"opportunity.created", "opportunity.status_changed", "activity.completed"})


class FactRecorder:
    """Records the facts of the events it is handed into ``store``."""

    __slots__ = ("_batch", "_store")

    def __init__(self, store: AnalyticsStore) -> None:
        self._store = store
        self._batch = store if isinstance(store, BatchFacts) else None

    def wants(self, event: Event) -> bool:
        """Whether ``event`` is of a type that yields facts."""
        return event.type in _TYPES

    def record(self, event: Event, errors: list[LeadflowError], *, batched: bool) -> None:
        """Record ``event``'s facts. In a unit of work (``batched``) a store failure is raised
        (the unit rolls back and the event is handled again step by step); step by step it is
        logged and appended to ``errors``, and the event's actions stand."""
        arrival, change, completion = facts_of(event)
        try:
            # Facts this module built from a validated event (see facts_of), held by nobody
            # else: handed over, so the store does not check them again.
            if batched and self._batch is not None:
                # In a unit of work: as one step (a SQL store on PostgreSQL sends an arrival
                # with the unit's acknowledgement, one round trip fewer).
                facts = [f for f in (arrival, change, completion) if f is not None]
                store = self._batch
                handed_over(
                    lambda _: store.record_many(
                        [arrival] if arrival is not None else [],
                        [change] if change is not None else [],
                        [completion] if completion is not None else [],
                    ),
                    None,
                    *facts,
                )
                return
            if arrival is not None:
                handed_over(self._store.record_arrival, arrival)
            if change is not None:
                handed_over(self._store.record_status_change, change)
            if completion is not None:
                handed_over(self._store.record_completion, completion)
        except UnavailableError:
            raise
        except LeadflowError as error:
            if batched:
                raise
            log.error("the facts of event %s could not be recorded: %s", event.id, error)
            errors.append(error)

    def record_all(self, events: list[Event]) -> None:
        """Record the facts of ``events`` in a unit of work (``handle_many``'s chunk): with one
        ``record_many`` where the store has it (:class:`~leadflow.ports.BatchFacts`), else one
        by one. A store failure is raised: the unit rolls back and its events are handled
        again step by step."""
        arrivals: list[LeadArrival] = []
        changes: list[StatusChange] = []
        completions: list[Completion] = []
        for event in events:
            arrival, change, completion = facts_of(event)
            if arrival is not None:
                arrivals.append(arrival)
            if change is not None:
                changes.append(change)
            if completion is not None:
                completions.append(completion)
        store = self._store
        if not isinstance(store, BatchFacts):
            for arrival in arrivals:
                handed_over(store.record_arrival, arrival)
            for change in changes:
                handed_over(store.record_status_change, change)
            for completion in completions:
                handed_over(store.record_completion, completion)
            return
        # Facts this module built from validated events, held by nobody else: handed over.
        handed_over(
            lambda _: store.record_many(arrivals, changes, completions),
            None,
            *arrivals,
            *changes,
            *completions,
        )
