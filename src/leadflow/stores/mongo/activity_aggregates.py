"""The activity store's aggregates in MongoDB, run as pipelines in the database: the
statistics, each opportunity's last activity time and the stale opportunities. Inherited by
:class:`~leadflow.stores.mongo.activities.MongoActivityRepository`; the pipelines themselves are
built in :mod:`.queries` from checked values only.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo import ASCENDING
from pymongo.collection import Collection

from ...errors import InvalidInputError
from ...models import ActivityState
from ...queries import ActivityFilter, ActivityStatistics
from ..checks import checked_after
from .common import Document, conjoin, guard_literal, valid_id, valid_limit, when
from .driver import translated
from .queries import activity_clauses, counts, last_times_pipeline, mean, statistics_pipeline

__all__ = ["ActivityAggregates"]


class ActivityAggregates:
    """The aggregates of :class:`~leadflow.stores.mongo.activities.MongoActivityRepository`
    (which sets ``_collection``)."""

    _collection: Collection[Document]

    @translated("filter")
    def statistics(self, filter: ActivityFilter | None, *, as_of: datetime) -> ActivityStatistics:
        as_of = when("as_of", as_of)
        # Cancelled activities are left out: they are no work, done or to do.
        clauses = [*activity_clauses(filter), {"cancelledAt": None}]
        pipeline = statistics_pipeline(conjoin(clauses), as_of)
        facets = next(iter(self._collection.aggregate(pipeline)))
        by_state = counts(facets["byState"])
        by_type = counts(facets["byType"])
        total = sum(by_type.values())
        completed = by_state.get(ActivityState.COMPLETED.value, 0)
        return ActivityStatistics(
            as_of=as_of,
            total=total,
            by_type=by_type,
            by_outcome=counts(facets["byOutcome"]),
            by_state=by_state,
            by_assignee=counts(facets["byAssignee"]),
            completion_rate=completed / total if total else 0.0,
            mean_time_to_complete=mean(facets["toComplete"]),
            mean_time_to_first_completion=mean(facets["toFirstCompletion"]),
        )

    @translated("opportunity_ids")
    def last_activity_times(
        self, opportunity_ids: Sequence[str] | None = None
    ) -> dict[str, datetime]:
        match: Document = {}
        if opportunity_ids is not None:
            if isinstance(opportunity_ids, str) or not isinstance(opportunity_ids, Sequence):
                raise InvalidInputError("expected a sequence of ids", field="opportunity_ids")
            ids = sorted(
                {
                    valid_id("opportunity_ids", i)
                    for i in guard_literal("opportunity_ids", opportunity_ids)
                }
            )
            if not ids:
                return {}
            match = {"opportunityId": {"$in": ids}}
        rows = self._collection.aggregate(last_times_pipeline(match))
        return {str(row["_id"]): row["at"].astimezone(UTC) for row in rows}

    @translated("since")
    def stale_opportunities(
        self,
        since: datetime,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 1000,
    ) -> builtins.list[tuple[datetime, str]]:
        """Grouped per opportunity; with ``after``, only the opportunities with an activity
        created or completed from ``after``'s time up to ``since`` (found by the two date
        indexes) are grouped: an opportunity whose last time lies there has such an
        activity."""
        until = when("since", since)
        cursor = checked_after(after)
        limit = valid_limit(limit)
        match: Document = {}
        stale: Document = {"at": {"$lt": until}}
        if cursor is not None:
            start, opportunity = when("after", cursor[0]), cursor[1]
            window = {"$gte": start, "$lt": until}
            candidates = self._collection.aggregate(
                [
                    {"$match": {"$or": [{"createdAt": window}, {"completedDate": window}]}},
                    {"$group": {"_id": "$opportunityId"}},
                ]
            )
            ids = sorted(str(row["_id"]) for row in candidates)
            if not ids:
                return []
            match = {"opportunityId": {"$in": ids}}
            stale = {
                "$and": [
                    stale,
                    {"$or": [{"at": {"$gt": start}}, {"at": start, "_id": {"$gt": opportunity}}]},
                ]
            }
        pipeline = [
            *last_times_pipeline(match),
            {"$match": stale},
            {"$sort": {"at": ASCENDING, "_id": ASCENDING}},
            {"$limit": limit},
        ]
        return [
            (row["at"].astimezone(UTC), str(row["_id"]))
            for row in self._collection.aggregate(pipeline)
        ]
