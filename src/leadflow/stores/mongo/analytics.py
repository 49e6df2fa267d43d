"""The analytic facts on MongoDB: :class:`MongoAnalyticsStore`, three collections.

``leadArrivals`` (``_id``: the opportunity), ``statusChanges`` (``_id``: the event id) and
``activityCompletions`` (``_id``: the activity id) hold each fact as its camelCase document at
BSON precision (whole milliseconds). A write is one ``update_one({_id}, {$setOnInsert},
upsert=True)``: True when it inserted, and of two concurrent writes of one key exactly one
inserts (the ``_id`` is unique).

The period queries are one ``find`` each on a ``(time, key)`` index; :meth:`first_contacts`
and :meth:`reached` read the period's arrivals, then the contact completions / status changes
of those opportunities in chunks of 10,000 ids on an ``(opportunityId, ...)`` index, keeping
the earliest per opportunity: one index probe per arrival, the reduction in the client.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from pymongo import ASCENDING, IndexModel

from ...activity_models import ActivityType, Outcome
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
    stage_sums_of,
    trimmed,
)
from ..analytics_checks import (
    MAX_FACTS,
    check_buckets,
    check_ids,
    check_parts,
    check_period,
    check_stages,
    check_values,
)
from ..analytics_leads import LeadQuery, LeadRow, check_lead_query, late_of, lead_sums_of, rows_of
from ..analytics_summary import check_lead_summary, summary_of, taken
from ..analytics_sums import buckets_of, groups_in, won_touches_of
from ..checks import check_limit, check_model
from .common import Document, MongoTarget, bind, ms
from .driver import driver_errors, translated

__all__ = ["MongoAnalyticsStore"]

_CHUNK: Final = 10_000
_CONTACTS: Final = [str(kind) for kind in CONTACT_TYPES]


class MongoAnalyticsStore:
    """The facts in three collections of ``database``."""

    DEFAULT_ARRIVALS = "leadArrivals"
    DEFAULT_CHANGES = "statusChanges"
    DEFAULT_COMPLETIONS = "activityCompletions"

    def __init__(
        self,
        target: MongoTarget,
        *,
        arrivals: str = DEFAULT_ARRIVALS,
        changes: str = DEFAULT_CHANGES,
        completions: str = DEFAULT_COMPLETIONS,
    ) -> None:
        self._arrivals = bind(target, arrivals)
        self._changes = bind(target, changes)
        self._completions = bind(target, completions)

    def ensure_indexes(self) -> builtins.list[str]:
        """Create the indexes the queries rely on (idempotent); returns their names."""
        plans: tuple[tuple[Any, builtins.list[IndexModel]], ...] = (
            (
                self._arrivals,
                [
                    IndexModel([("arrivedAt", ASCENDING), ("_id", ASCENDING)], name="arrivedAt"),
                    IndexModel([("source", ASCENDING), ("arrivedAt", ASCENDING)], name="source"),
                    IndexModel([("owner", ASCENDING), ("arrivedAt", ASCENDING)], name="owner"),
                ],
            ),
            (
                self._changes,
                [
                    IndexModel([("changedAt", ASCENDING), ("_id", ASCENDING)], name="changedAt"),
                    IndexModel(
                        [("opportunityId", ASCENDING), ("toStatus", ASCENDING)],
                        name="opportunityId_toStatus",
                    ),
                ],
            ),
            (
                self._completions,
                [
                    IndexModel(
                        [("completedAt", ASCENDING), ("_id", ASCENDING)], name="completedAt"
                    ),
                    IndexModel(
                        [("assignedTo", ASCENDING), ("completedAt", ASCENDING)],
                        name="assignedTo_completedAt",
                    ),
                    IndexModel(
                        [("opportunityId", ASCENDING), ("activityType", ASCENDING)],
                        name="opportunityId_activityType",
                    ),
                ],
            ),
        )
        names: list[str] = []
        with driver_errors("indexes"):
            for collection, indexes in plans:
                names += collection.create_indexes(indexes)
        return names

    # ------------------------------------------------------------------ writes

    @staticmethod
    def _insert(collection: Any, key: str, document: Document) -> bool:
        document = {name: ms(v) if isinstance(v, datetime) else v for name, v in document.items()}
        result = collection.update_one({"_id": key}, {"$setOnInsert": document}, upsert=True)
        return result.upserted_id is not None

    @translated("arrival")
    def record_arrival(self, arrival: LeadArrival) -> bool:
        arrival = check_model(arrival, LeadArrival, "arrival")
        return self._insert(self._arrivals, arrival.opportunity_id, arrival.to_document())

    @translated("change")
    def record_status_change(self, change: StatusChange) -> bool:
        change = check_model(change, StatusChange, "change")
        return self._insert(self._changes, change.event_id, change.to_document())

    @translated("completion")
    def record_completion(self, completion: Completion) -> bool:
        completion = check_model(completion, Completion, "completion")
        document = completion.model_dump(mode="json", by_alias=True, exclude_none=True)
        document.update(
            {k: v for k, v in completion.to_document().items() if isinstance(v, datetime)}
        )
        return self._insert(self._completions, completion.activity_id, document)

    # ------------------------------------------------------------------ queries

    @translated("arrivals")
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
        query: Document = {"arrivedAt": {"$gte": start, "$lt": end}}
        if wanted_sources is not None:
            query["source"] = {"$in": sorted(wanted_sources)}
        if wanted_owners is not None:
            query["owner"] = {"$in": sorted(wanted_owners)}
        found = self._arrivals.find(
            query, sort=[("arrivedAt", ASCENDING), ("_id", ASCENDING)], limit=limit
        )
        return [_load(LeadArrival, document) for document in found]

    @translated("arrivals_of")
    def arrivals_of(self, opportunity_ids: Collection[str]) -> dict[str, LeadArrival]:
        wanted = check_ids(opportunity_ids)
        found: dict[str, LeadArrival] = {}
        for first in range(0, len(wanted), _CHUNK):
            query = {"_id": {"$in": wanted[first : first + _CHUNK]}}
            for document in self._arrivals.find(query):
                arrival = _load(LeadArrival, document)
                found[arrival.opportunity_id] = arrival
        return found

    @translated("status_changes")
    def status_changes(
        self, start: datetime, end: datetime, *, limit: int = MAX_FACTS
    ) -> builtins.list[StatusChange]:
        start, end = check_period(start, end)
        limit = check_limit(limit, MAX_FACTS)
        query = {"changedAt": {"$gte": start, "$lt": end}}
        found = self._changes.find(
            query, sort=[("changedAt", ASCENDING), ("_id", ASCENDING)], limit=limit
        )
        return [_load(StatusChange, document) for document in found]

    @translated("completions")
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
        query: Document = {"completedAt": {"$gte": start, "$lt": end}}
        if wanted is not None:
            query["assignedTo"] = {"$in": sorted(wanted)}
        found = self._completions.find(
            query, sort=[("completedAt", ASCENDING), ("_id", ASCENDING)], limit=limit
        )
        return [_load(Completion, document) for document in found]

    @translated("completion_groups")
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
        median, opportunities = check_parts(median, opportunities)
        groups = groups_in(self.completions(start, end), by, keys)
        return trimmed(groups, median=median, opportunities=opportunities)

    @translated("completion_buckets")
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
        found = self.completions(start, end)
        start = check_period(start, end)[0]
        return buckets_of(found, start, width, by, wanted)

    @translated("stage_sums")
    def stage_sums(
        self, start: datetime, end: datetime, stages: Sequence[str]
    ) -> builtins.list[StageSums]:
        wanted = check_stages(stages)
        return stage_sums_of(self.status_changes(start, end), wanted)

    @translated("won_touches")
    def won_touches(
        self,
        start: datetime,
        end: datetime,
        status: str,
        *,
        keys: Collection[str | None] | None = None,
    ) -> builtins.list[Touches]:
        return won_touches_of(self, start, end, status, keys)

    @translated("completions_of")
    def completions_of(
        self, opportunity_ids: Collection[str], start: datetime, end: datetime
    ) -> builtins.list[Completion]:
        wanted = check_ids(opportunity_ids)
        start, end = check_period(start, end)
        found: list[Completion] = []
        for first in range(0, len(wanted), _CHUNK):
            query = {
                "opportunityId": {"$in": wanted[first : first + _CHUNK]},
                "completedAt": {"$gte": start, "$lt": end},
            }
            found += (_load(Completion, document) for document in self._completions.find(query))
        found.sort(key=lambda completion: (completion.completed_at, completion.activity_id))
        return found

    def _arrived(self, start: datetime, end: datetime) -> Iterator[builtins.list[str]]:
        query = {"arrivedAt": {"$gte": start, "$lt": end}}
        ids = [document["_id"] for document in self._arrivals.find(query, {"_id": 1})]
        for first in range(0, len(ids), _CHUNK):
            yield ids[first : first + _CHUNK]

    @translated("first_contacts")
    def first_contacts(
        self, start: datetime, end: datetime, *, limit: int = MAX_FACTS
    ) -> builtins.list[Completion]:
        start, end = check_period(start, end)
        limit = check_limit(limit, MAX_FACTS)
        first: dict[str, Completion] = {}
        for chunk in self._arrived(start, end):
            query = {"opportunityId": {"$in": chunk}, "activityType": {"$in": _CONTACTS}}
            for document in self._completions.find(query):
                completion = _load(Completion, document)
                known = first.get(completion.opportunity_id)
                if known is None or (completion.completed_at, completion.activity_id) < (
                    known.completed_at,
                    known.activity_id,
                ):
                    first[completion.opportunity_id] = completion
        return [first[opportunity] for opportunity in sorted(first)[:limit]]

    @translated("reached")
    def reached(self, start: datetime, end: datetime, status: str) -> dict[str, datetime]:
        start, end = check_period(start, end)
        if not isinstance(status, str):
            raise InvalidInputError(f"expected a status, got {status!r}", field="status")
        reached: dict[str, datetime] = {}
        for chunk in self._arrived(start, end):
            query = {"opportunityId": {"$in": chunk}, "toStatus": status}
            for document in self._changes.find(query, {"opportunityId": 1, "changedAt": 1}):
                opportunity, at = document["opportunityId"], document["changedAt"]
                if opportunity not in reached or at < reached[opportunity]:
                    reached[opportunity] = at
        return reached

    # ------------------------------------------------------------------ the leads summed up
    # In the client for now (no $group pipeline yet), from the period's arrivals, their first
    # contacts and wins.

    def _lead_rows(self, query: LeadQuery) -> list[LeadRow]:
        start, end = query.start, query.end
        wins = self.reached(start, end, query.status) if query.status else {}
        return rows_of(self.arrivals(start, end), self.first_contacts(start, end), wins)

    @translated("lead_sums")
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

    @translated("late_contacts")
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

    @translated("lead_summary")
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
        return f"MongoAnalyticsStore({self._arrivals.full_name!r}, ...)"


def _load(kind: Any, document: Document) -> Any:
    values = {
        name: document[field.alias]
        for name, field in kind.model_fields.items()
        if field.alias in document
    }
    if kind is Completion:
        values["activity_type"] = ActivityType(values["activity_type"])
        if "outcome" in values:
            values["outcome"] = Outcome(values["outcome"])
    return kind.model_construct(**values)
