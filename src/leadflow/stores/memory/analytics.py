"""The analytic facts in memory: :class:`InMemoryAnalyticsStore`, the reference
:class:`~leadflow.ports.AnalyticsStore`.

One lock guards three maps keyed as the port says (arrivals by opportunity, status changes by
event id, completions by activity id), each with a sorted index on its time, and two summaries
kept as facts arrive: each opportunity's earliest contact completion and its earliest change to
each status. A period query walks the index between its bounds: its cost follows the facts in
the period.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime, timedelta
from itertools import islice
from operator import itemgetter
from typing import Any, Final, cast

from sortedcontainers import SortedKeyList, SortedList

from ...errors import InvalidInputError
from ...facts import (
    CONTACT_TYPES,
    Completion,
    CompletionGroup,
    LateContact,
    LeadArrival,
    LeadSummary,
    LeadSums,
    StageSums,
    StatusChange,
    Touches,
    stage_sums_of_paths,
)
from ..analytics_checks import (
    MAX_FACTS,
    MAX_IDS,
    check_buckets,
    check_grouping,
    check_ids,
    check_parts,
    check_period,
    check_stages,
    check_values,
)
from ..analytics_leads import LeadQuery, LeadRow, check_lead_query, late_of, lead_sums_of
from ..analytics_summary import check_lead_summary, summary_of, taken
from ..checks import check_limit, check_model
from .analytics_days import Days
from .analytics_rows import Row, buckets_of_rows, row_key, row_of, touches_of_rows

__all__ = [
    "MAX_FACTS",
    "MAX_IDS",
    "InMemoryAnalyticsStore",
    "check_grouping",
    "check_ids",
    "check_period",
    "check_values",
]

_CONTACTS: Final = frozenset(CONTACT_TYPES)

ArrivalRow = tuple[datetime, str, str | None, str | None]
"""A lead's arrival time, opportunity id, source and owner."""
ChangeRow = tuple[str, str, datetime, str]
"""A status change's opportunity id, status changed to, time and event id."""
_CHANGE_ORDER: Final = itemgetter(2, 3)
_PATH: Final = itemgetter(0, 1, 2)
_OPPORTUNITY: Final = itemgetter(2)  # of a completion row


def _period(
    start: datetime, end: datetime
) -> tuple[tuple[datetime, str], tuple[datetime, str], tuple[bool, bool]]:
    """An index range over ``(time, id)`` keys for times in ``[start, end)`` ("" sorts before
    every id)."""
    return (start, ""), (end, ""), (True, False)


def _earlier(row: Row, than: Row | None) -> bool:
    """Whether completion ``row`` comes before ``than`` (None: no completion) in time order."""
    return than is None or row_key(row) < row_key(than)


class InMemoryAnalyticsStore:
    """The facts in process memory (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrivals: dict[str, Any] = {}  # as _keep_arrival keeps them
        # The arrivals as (arrived_at, opportunity_id, source, owner), in that order (an
        # opportunity arrives once: no two compare past the id).
        self._arrival_index: SortedList[tuple[Any, ...]] = SortedList()
        self._changes: dict[str, Any] = {}  # as _keep_change keeps them
        # The changes as (opportunity_id, to_status, changed_at, event_id), in time order.
        self._change_rows: SortedKeyList[ChangeRow, tuple[datetime, str]] = SortedKeyList(
            key=_CHANGE_ORDER
        )
        self._reached: dict[tuple[str, str], datetime] = {}
        self._completions: dict[str, Any] = {}  # as _keep_completion keeps them
        # The completions also as rows (analytics_rows), in (completed_at, activity_id) order:
        # a period's rows are one slice.
        self._completion_rows: SortedKeyList[Row, tuple[datetime, str]] = SortedKeyList(key=row_key)
        # And summed per day and key (analytics_days): a period's sums add up its whole days.
        self._days = Days(self._rows_between)
        self._first_contacts: dict[str, Row] = {}  # each opportunity's first contact
        self._completions_on: dict[str, list[Row]] = {}  # each opportunity's rows

    # How a fact is kept (the fast variant keeps the facts as rows): the reference store
    # keeps the validated models themselves.

    def _keep_completion(self, completion: Completion) -> Any:
        return completion

    def _completion(self, kept: Any) -> Completion:
        return cast(Completion, kept)

    def _keep_arrival(self, arrival: LeadArrival) -> Any:
        return arrival

    def _arrival(self, kept: Any) -> LeadArrival:
        return cast(LeadArrival, kept)

    def _keep_change(self, change: StatusChange) -> Any:
        return change

    def _change(self, kept: Any) -> StatusChange:
        return cast(StatusChange, kept)

    # ------------------------------------------------------------------ writes

    def record_arrival(self, arrival: LeadArrival) -> bool:
        arrival = check_model(arrival, LeadArrival, "arrival")
        with self._lock:
            if arrival.opportunity_id in self._arrivals:
                return False
            self._arrivals[arrival.opportunity_id] = self._keep_arrival(arrival)
            self._arrival_index.add(
                (arrival.arrived_at, arrival.opportunity_id, arrival.source, arrival.owner)
            )
            return True

    def record_status_change(self, change: StatusChange) -> bool:
        change = check_model(change, StatusChange, "change")
        with self._lock:
            if change.event_id in self._changes:
                return False
            self._changes[change.event_id] = self._keep_change(change)
            self._change_rows.add(
                (change.opportunity_id, change.to_status, change.changed_at, change.event_id)
            )
            key = (change.opportunity_id, change.to_status)
            known = self._reached.get(key)
            if known is None or change.changed_at < known:
                self._reached[key] = change.changed_at
            return True

    def record_completion(self, completion: Completion) -> bool:
        completion = check_model(completion, Completion, "completion")
        with self._lock:
            if completion.activity_id in self._completions:
                return False
            self._completions[completion.activity_id] = self._keep_completion(completion)
            row = row_of(completion)
            self._completion_rows.add(row)
            self._days.add(row)
            self._completions_on.setdefault(completion.opportunity_id, []).append(row)
            if completion.activity_type in _CONTACTS:
                opportunity = completion.opportunity_id
                if _earlier(row, self._first_contacts.get(opportunity)):
                    self._first_contacts[opportunity] = row
            return True

    # ------------------------------------------------------------------ queries

    def arrivals(
        self,
        start: datetime,
        end: datetime,
        *,
        sources: Collection[str] | None = None,
        owners: Collection[str] | None = None,
        limit: int = MAX_FACTS,
    ) -> builtins.list[LeadArrival]:
        start, end = check_period(start, end)
        wanted_sources = check_values(sources, "sources")
        wanted_owners = check_values(owners, "owners")
        limit = check_limit(limit, MAX_FACTS)
        found: list[LeadArrival] = []
        with self._lock:
            for _, opportunity, source, owner in self._arrivals_in(start, end):
                if wanted_sources is not None and source not in wanted_sources:
                    continue
                if wanted_owners is not None and owner not in wanted_owners:
                    continue
                found.append(self._arrival(self._arrivals[opportunity]))
                if len(found) == limit:
                    break
        return found

    def arrivals_of(self, opportunity_ids: Collection[str]) -> dict[str, LeadArrival]:
        wanted = check_ids(opportunity_ids)
        with self._lock:
            return {
                opportunity: self._arrival(kept)
                for opportunity in wanted
                if (kept := self._arrivals.get(opportunity)) is not None
            }

    def status_changes(
        self, start: datetime, end: datetime, *, limit: int = MAX_FACTS
    ) -> builtins.list[StatusChange]:
        start, end = check_period(start, end)
        limit = check_limit(limit, MAX_FACTS)
        with self._lock:
            rows = islice(self._changes_in(start, end), limit)
            return [self._change(self._changes[row[3]]) for row in rows]

    def _arrivals_in(self, start: datetime, end: datetime) -> Iterator[ArrivalRow]:
        """The arrival rows of ``[start, end)`` in time order (the caller holds the lock)."""
        return cast(Iterator[ArrivalRow], self._arrival_index.irange(*_period(start, end)))

    def _changes_in(self, start: datetime, end: datetime) -> Iterator[ChangeRow]:
        """The change rows of ``[start, end)`` in time order (the caller holds the lock)."""
        return self._change_rows.irange_key(*_period(start, end))

    def completions(
        self,
        start: datetime,
        end: datetime,
        *,
        assigned_to: Collection[str] | None = None,
        limit: int = MAX_FACTS,
    ) -> builtins.list[Completion]:
        start, end = check_period(start, end)
        wanted = check_values(assigned_to, "assigned_to")
        limit = check_limit(limit, MAX_FACTS)
        found: list[Completion] = []
        with self._lock:
            for row in self._completion_rows.irange_key(*_period(start, end)):
                if wanted is None or row[0] in wanted:
                    found.append(self._completion(self._completions[row[8]]))
                    if len(found) == limit:
                        break
        return found

    def _rows_between(self, start: datetime, end: datetime) -> list[Row]:
        """The completion rows of ``[start, end)``, in order (the caller holds the lock)."""
        rows = self._completion_rows
        return rows[rows.bisect_key_left((start, "")) : rows.bisect_key_left((end, ""))]

    def completion_groups(
        self,
        start: datetime,
        end: datetime,
        *,
        by: str,
        keys: Collection[str | None] | None = None,
        median: bool = True,
        opportunities: bool = True,
    ) -> builtins.list[CompletionGroup]:
        start, end = check_period(start, end)
        wanted = check_grouping(by, keys)
        median, opportunities = check_parts(median, opportunities)
        with self._lock:
            return self._days.groups(
                start, end, by, wanted, median=median, opportunities=opportunities
            )

    def completion_buckets(
        self,
        start: datetime,
        end: datetime,
        *,
        width: timedelta,
        by: str | None = None,
        keys: Collection[str | None] | None = None,
    ) -> dict[int, CompletionGroup]:
        width, by, wanted = check_buckets(width, by, keys)
        start, end = check_period(start, end)
        with self._lock:
            found = self._days.buckets(start, end, width, by, wanted)
            if found is None:  # buckets narrower than a day
                found = buckets_of_rows(self._rows_between(start, end), start, width, by, wanted)
            return found

    def stage_sums(
        self, start: datetime, end: datetime, stages: Sequence[str]
    ) -> builtins.list[StageSums]:
        wanted = check_stages(stages)
        start, end = check_period(start, end)
        with self._lock:
            rows = list(self._changes_in(start, end))
        # A stable sort by opportunity keeps each one's changes in (changed_at, event_id) order.
        rows.sort(key=itemgetter(0))
        return stage_sums_of_paths(map(_PATH, rows), wanted, timedelta.total_seconds)

    def won_touches(
        self,
        start: datetime,
        end: datetime,
        status: str,
        *,
        keys: Collection[str | None] | None = None,
    ) -> builtins.list[Touches]:
        start, end = check_period(start, end)
        if not isinstance(status, str):
            raise InvalidInputError(f"expected a status, got {status!r}", field="status")
        wanted = check_grouping("rule_id", keys)
        with self._lock:
            won_at: dict[str, datetime] = {}  # each opportunity's first change to status
            for opportunity, to, at, _ in self._changes_in(start, end):
                if to == status and opportunity not in won_at:
                    won_at[opportunity] = at
            return touches_of_rows(won_at, self._completions_on, start, end, wanted)

    def completions_of(
        self, opportunity_ids: Collection[str], start: datetime, end: datetime
    ) -> builtins.list[Completion]:
        wanted = check_ids(opportunity_ids)
        start, end = check_period(start, end)
        with self._lock:
            rows = [
                row
                for opportunity in wanted
                for row in self._completions_on.get(opportunity, ())
                if start <= row[7] < end
            ]
            rows.sort(key=row_key)
            return [self._completion(self._completions[row[8]]) for row in rows]

    def first_contacts(
        self, start: datetime, end: datetime, *, limit: int = MAX_FACTS
    ) -> builtins.list[Completion]:
        start, end = check_period(start, end)
        limit = check_limit(limit, MAX_FACTS)
        with self._lock:
            rows = [
                contact
                for _, opportunity, *_ in self._arrivals_in(start, end)
                if (contact := self._first_contacts.get(opportunity)) is not None
            ]
            rows.sort(key=_OPPORTUNITY)
            return [self._completion(self._completions[row[8]]) for row in rows[:limit]]

    def reached(self, start: datetime, end: datetime, status: str) -> dict[str, datetime]:
        start, end = check_period(start, end)
        if not isinstance(status, str):
            raise InvalidInputError(f"expected a status, got {status!r}", field="status")
        with self._lock:
            return {
                opportunity: at
                for _, opportunity, *_ in self._arrivals_in(start, end)
                if (at := self._reached.get((opportunity, status))) is not None
            }

    # ------------------------------------------------------------------ the leads summed up

    def _lead_rows(self, query: LeadQuery) -> list[LeadRow]:
        """One row per lead of the period, from the summaries (first contacts, first time
        each status was reached) kept as the facts arrived."""
        status = query.status
        rows: list[LeadRow] = []
        with self._lock:
            contacts, reached = self._first_contacts, self._reached
            for arrived_at, opportunity, source, owner in self._arrivals_in(query.start, query.end):
                contact = contacts.get(opportunity)
                won = reached.get((opportunity, status))
                if contact is None:
                    rows.append((arrived_at, source, owner, None, None, won))
                    continue
                rep = owner if owner is not None else contact[0]
                rows.append(
                    (
                        arrived_at,
                        source,
                        rep,
                        contact[1],
                        contact[7],
                        won,
                    )
                )
        return rows

    def lead_sums(
        self,
        start: datetime,
        end: datetime,
        *,
        status: str,
        day: timedelta,
        by: str | None = None,
        origin: datetime | None = None,
        width: timedelta | None = None,
        reps: Collection[str | None] | None = None,
        sources: Collection[str | None] | None = None,
        automations: Collection[str | None] | None = None,
    ) -> builtins.list[LeadSums]:
        query = check_lead_query(
            start, end, day=day, status=status, by=by, origin=origin, width=width,
            reps=reps, sources=sources, automations=automations,
        )  # fmt: skip
        return lead_sums_of(self._lead_rows(query), query)

    def late_contacts(
        self,
        start: datetime,
        end: datetime,
        *,
        day: timedelta,
        reps: Collection[str | None] | None = None,
        sources: Collection[str | None] | None = None,
        automations: Collection[str | None] | None = None,
    ) -> builtins.list[LateContact]:
        query = check_lead_query(
            start, end, day=day, reps=reps, sources=sources, automations=automations
        )
        return late_of(self._lead_rows(query), query)

    def lead_summary(
        self,
        start: datetime,
        end: datetime,
        *,
        status: str,
        day: timedelta,
        groupings: Collection[str | None],
        origin: datetime | None = None,
        width: timedelta | None = None,
        reps: Collection[str | None] | None = None,
        sources: Collection[str | None] | None = None,
        automations: Collection[str | None] | None = None,
        late: bool = False,
    ) -> LeadSummary:
        wanted, query = check_lead_summary(
            start, end, day=day, status=status, groupings=groupings, origin=origin,
            width=width, reps=reps, sources=sources, automations=automations, late=late,
        )  # fmt: skip
        return summary_of(taken(self._lead_rows(query), query), query, wanted, late=late)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(arrivals={len(self._arrivals)}, "
            f"changes={len(self._changes)}, completions={len(self._completions)})"
        )
