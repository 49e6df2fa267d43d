"""The filters and aggregation pipelines of the activity store, built from caller values that
have all passed the guards in :mod:`.common`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from ...errors import InvalidInputError
from ...models import ActivityState, ActivityType, Outcome
from ...queries import ActivityFilter, SortField
from .common import Document, enum_values, guard_literal, valid_id, when

__all__ = [
    "OPEN",
    "SORT_FIELDS",
    "activity_clauses",
    "counts",
    "keyset",
    "last_times_pipeline",
    "mean",
    "statistics_pipeline",
]

OPEN: Final = "isOpen"
"""The field beyond the model's: ``true`` until completed. A partial index cannot select
documents by a *missing* ``completedDate``, so the open-activity indexes are partial on it."""

SORT_FIELDS: Final[dict[SortField, str]] = {
    "created_at": "createdAt",
    "updated_at": "updatedAt",
    "due_date": "dueDate",
    "scheduled_date": "scheduledDate",
    "completed_date": "completedDate",
}


def keyset(field: str, value: datetime | None, activity_id: str, descending: bool) -> Document:
    """The rows after (``value``, ``activity_id``) in (field, activityId) order, where a
    missing ``field`` sorts before every date ascending and after every date descending."""
    if not descending:
        if value is None:
            return {
                "$or": [{field: None, "activityId": {"$gt": activity_id}}, {field: {"$ne": None}}]
            }
        return {
            field: {"$gte": value},
            "$or": [{field: {"$gt": value}}, {"activityId": {"$gt": activity_id}}],
        }
    if value is None:
        return {field: None, "activityId": {"$lt": activity_id}}
    return {
        "$or": [
            {field: {"$lt": value}},
            {field: value, "activityId": {"$lt": activity_id}},
            {field: None},
        ]
    }


def _date_range(
    field: str, start: datetime | None, end: datetime | None, name: str
) -> Document | None:
    bounds: Document = {}
    if start is not None:
        bounds["$gte"] = when(f"{name}_from", start)
    if end is not None:
        bounds["$lt"] = when(f"{name}_to", end)
    return {field: bounds} if bounds else None


def activity_clauses(f: ActivityFilter | None) -> list[Document]:
    """The filter's criteria as MongoDB clauses; every caller value is guarded."""
    if f is None:
        return []
    if not isinstance(f, ActivityFilter):
        raise InvalidInputError(
            f"expected an ActivityFilter, got {type(f).__name__}", field="filter"
        )
    clauses: list[Document] = []
    if f.opportunity_id is not None:
        clauses.append({"opportunityId": valid_id("opportunity_id", f.opportunity_id)})
    if f.customer_id is not None:
        clauses.append({"customerId": valid_id("customer_id", f.customer_id)})
    if f.assigned_to is not None:
        clauses.append({"assignedTo": valid_id("assigned_to", f.assigned_to)})
    if f.automation_rule_id is not None:
        rule_id = valid_id("automation_rule_id", f.automation_rule_id)
        clauses.append({"metadata.automationRuleId": rule_id})
    if f.activity_types is not None:
        types = enum_values(
            "activity_types", guard_literal("activity_types", f.activity_types), ActivityType
        )
        clauses.append({"activityType": {"$in": types}})
    if f.outcomes is not None:
        outcomes = enum_values("outcomes", guard_literal("outcomes", f.outcomes), Outcome)
        clauses.append({"outcome": {"$in": outcomes}})
    if f.state is not None:
        try:
            state = ActivityState(guard_literal("state", f.state))
        except ValueError as exc:
            raise InvalidInputError(f"unknown state {f.state!r}", field="state") from exc
        if state is ActivityState.COMPLETED:
            clauses.append({OPEN: False, "completedDate": {"$ne": None}})
        elif state is ActivityState.CANCELLED:
            clauses.append({OPEN: False, "cancelledAt": {"$ne": None}})
        else:
            as_of = when("as_of", f.as_of)
            clauses.append({OPEN: True})
            if state is ActivityState.OVERDUE:
                clauses.append({"dueDate": {"$lt": as_of}})
            else:
                clauses.append({"$or": [{"dueDate": None}, {"dueDate": {"$gte": as_of}}]})
    for field, start, end, name in (
        ("createdAt", f.created_from, f.created_to, "created"),
        ("dueDate", f.due_from, f.due_to, "due"),
        ("scheduledDate", f.scheduled_from, f.scheduled_to, "scheduled"),
        ("completedDate", f.completed_from, f.completed_to, "completed"),
    ):
        clause = _date_range(field, start, end, name)
        if clause is not None:
            clauses.append(clause)
    return clauses


def _state_expression(as_of: datetime) -> Document:
    """Aggregation expression for :meth:`Activity.state` at ``as_of``."""
    return {
        "$cond": [
            {"$eq": [f"${OPEN}", False]},
            ActivityState.COMPLETED.value,
            {
                "$cond": [
                    # A missing due date becomes as_of itself, which is not before as_of.
                    {"$lt": [{"$ifNull": ["$dueDate", as_of]}, as_of]},
                    ActivityState.OVERDUE.value,
                    ActivityState.PENDING.value,
                ]
            },
        ]
    }


def statistics_pipeline(match: Document, as_of: datetime) -> list[Document]:
    """One ``$match`` and one ``$facet``: a ``$group`` per breakdown and the two means."""
    dated = {"createdAt": {"$ne": None}}
    return [
        {"$match": match},
        {
            "$facet": {
                "byType": [{"$group": {"_id": "$activityType", "n": {"$sum": 1}}}],
                "byOutcome": [{"$group": {"_id": "$outcome", "n": {"$sum": 1}}}],
                "byState": [{"$group": {"_id": _state_expression(as_of), "n": {"$sum": 1}}}],
                "byAssignee": [{"$group": {"_id": "$assignedTo", "n": {"$sum": 1}}}],
                "toComplete": [
                    {"$match": {**dated, OPEN: False}},
                    {
                        "$group": {
                            "_id": None,
                            "ms": {"$avg": {"$subtract": ["$completedDate", "$createdAt"]}},
                        }
                    },
                ],
                "toFirstCompletion": [
                    {"$match": dated},
                    {
                        "$group": {
                            "_id": "$opportunityId",
                            "created": {"$min": "$createdAt"},
                            "completed": {"$min": "$completedDate"},
                        }
                    },
                    {"$match": {"completed": {"$ne": None}}},
                    {
                        "$group": {
                            "_id": None,
                            "ms": {"$avg": {"$subtract": ["$completed", "$created"]}},
                        }
                    },
                ],
            }
        },
    ]


def last_times_pipeline(match: Document) -> list[Document]:
    """Per opportunity, the latest created or completed date (absent when it has none)."""
    stages: list[Document] = [{"$match": match}] if match else []
    return [
        *stages,
        {
            "$group": {
                "_id": "$opportunityId",
                "created": {"$max": "$createdAt"},
                "completed": {"$max": "$completedDate"},
            }
        },
        {"$project": {"at": {"$max": ["$created", "$completed"]}}},
        {"$match": {"at": {"$ne": None}}},
    ]


def counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return {str(row["_id"]): int(row["n"]) for row in rows if row["_id"] is not None and row["n"]}


def mean(rows: Sequence[Mapping[str, Any]]) -> timedelta | None:
    if not rows or rows[0].get("ms") is None:
        return None
    return timedelta(milliseconds=float(rows[0]["ms"]))
