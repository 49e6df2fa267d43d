"""MongoDB backend (pymongo, the ``mongo`` extra): activities, rules and scheduled actions.

The host owns the connection: each store takes a pymongo ``Database`` (or a ``Collection``) and
never creates or closes a client. Documents use the seed's camelCase field names; datetimes are
BSON dates (millisecond precision, so stored copies are truncated to the millisecond) and always
come back timezone-aware in UTC, whatever codec options the host's client has.

Activities carry one field beyond the model's: ``isOpen`` (``true`` until completed), because a
partial index cannot select documents by a *missing* ``completedDate``. Every value a caller
supplies passes :func:`guard_literal` before it reaches a filter, so it can never act as a query
operator.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, TypeVar, cast

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ...clock import ensure_utc
from ...errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    StaleWriteError,
    UnsafeQueryError,
)
from ...models import (
    ID_RE,
    Activity,
    ActivityState,
    ActivityType,
    FollowUpRule,
    Outcome,
    _Model,
)
from ...queries import (
    ActivityFilter,
    ActivitySort,
    ActivityStatistics,
    Page,
    SortField,
    decode_cursor,
    encode_cursor,
)
from ...records import ScheduledAction, ScheduledActionState

__all__ = [
    "MongoActivityRepository",
    "MongoRuleRepository",
    "MongoScheduledActionStore",
    "guard_literal",
]

Document = dict[str, Any]
M = TypeVar("M", bound=_Model)
MongoTarget = Database[Any] | Collection[Any]

_OPEN: Final = "isOpen"
_SORT_FIELDS: Final[dict[SortField, str]] = {
    "created_at": "createdAt",
    "updated_at": "updatedAt",
    "due_date": "dueDate",
    "scheduled_date": "scheduledDate",
    "completed_date": "completedDate",
}
_MAX_LIMIT: Final = 1000
_WRITE_RETRIES: Final = 5


# --------------------------------------------------------------------------- guards


def guard_literal(field: str, value: Any) -> Any:
    """Return ``value`` if MongoDB can only read it as a literal; else :class:`UnsafeQueryError`.

    A mapping in a filter is an operator document (``{"$ne": None}`` matches everything), and a
    ``$``-prefixed string is a field path inside aggregation expressions. Sequences are checked
    item by item. Run every caller-supplied value through this before it enters a filter.
    """
    if isinstance(value, Mapping):
        raise UnsafeQueryError(
            "a mapping would act as a query operator; pass a plain value", field=field
        )
    if isinstance(value, str) and value.startswith("$"):
        raise UnsafeQueryError("a value starting with '$' is not allowed here", field=field)
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            guard_literal(field, item)
    return value


def _id(field: str, value: Any) -> str:
    guard_literal(field, value)
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidInputError(
            "expected an id: 1-128 letters, digits or '_ . : @ -', not starting with a symbol",
            field=field,
        )
    return value


def _text(field: str, value: Any) -> str:
    guard_literal(field, value)
    if not isinstance(value, str) or not value:
        raise InvalidInputError("expected a non-empty string", field=field)
    return value


def _when(field: str, value: Any) -> datetime:
    guard_literal(field, value)
    return _ms(ensure_utc(value, field))


def _limit(value: Any, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"must be a positive integer, got {value!r}", field="limit")
    if maximum is not None and value > maximum:
        raise InvalidInputError(f"must be at most {maximum}, got {value}", field="limit")
    return value


def _version(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError("must be a positive integer", field=field)
    return value


def _enum_values(
    field: str, values: Iterable[Any], kind: type[ActivityType | Outcome]
) -> list[str]:
    result = []
    for value in values:
        guard_literal(field, value)
        try:
            result.append(kind(value).value)
        except ValueError as exc:
            raise InvalidInputError(f"unknown value {value!r}", field=field) from exc
    return result


# --------------------------------------------------------------------------- documents


def _ms(value: datetime) -> datetime:
    """``value`` at BSON precision (whole milliseconds), as the database will return it."""
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def _bson_precision(value: Any) -> Any:
    if isinstance(value, datetime):
        return _ms(value)
    if isinstance(value, dict):
        return {k: _bson_precision(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bson_precision(v) for v in value]
    return value


def _bind(target: MongoTarget, name: str) -> Collection[Document]:
    """The collection, with codec options that decode BSON dates as aware UTC datetimes."""
    if not isinstance(name, str) or not name:
        raise InvalidInputError("collection name must be a non-empty string", field="collection")
    # A Database answers any attribute with a sub-collection, so ask the type, not the object.
    collection = target if hasattr(type(target), "find_one") else target[name]
    options = collection.codec_options.with_options(document_class=dict, tz_aware=True, tzinfo=UTC)
    return cast("Collection[Document]", collection.with_options(codec_options=options))


def _document(model: Any, kind: type[M], field: str, **changes: Any) -> Document:
    """``model``'s document with ``changes`` (camelCase), re-validated and at BSON precision.

    Models do not validate on assignment, so one may have been broken after it was built;
    validating here keeps documents that could not be loaded back out of the collection.
    """
    if not isinstance(model, kind):
        raise InvalidInputError(
            f"expected a {kind.__name__}, got {type(model).__name__}", field=field
        )
    document = model.to_document()
    document.update(changes)
    return cast(Document, _bson_precision(kind.from_document(document).to_document()))


def _activity_document(activity: Any, version: int) -> Document:
    document = _document(activity, Activity, "activity", version=version)
    document[_OPEN] = "completedDate" not in document
    return document


def _load_activity(document: Mapping[str, Any]) -> Activity:
    return Activity.from_document({k: v for k, v in document.items() if k != _OPEN})


def _conjoin(clauses: Sequence[Document]) -> Document:
    """One filter requiring every clause: merged into one document while no key repeats."""
    merged: Document = {}
    rest: list[Document] = []
    for clause in clauses:
        if any(key in merged or key == "$and" for key in clause):
            rest.append(clause)
        else:
            merged.update(clause)
    if rest:
        merged["$and"] = rest
    return merged


class _MongoStore:
    """What the three stores share: binding a collection and creating its indexes."""

    DEFAULT_COLLECTION: ClassVar[str]
    INDEXES: ClassVar[tuple[IndexModel, ...]]

    def __init__(self, target: MongoTarget, *, collection: str | None = None) -> None:
        self._collection = _bind(target, collection or self.DEFAULT_COLLECTION)

    @property
    def collection(self) -> Collection[Document]:
        """The bound collection (with UTC-aware codec options); for host-side maintenance."""
        return self._collection

    def ensure_indexes(self) -> builtins.list[str]:
        """Create the indexes every query of this store relies on; returns their names.

        Idempotent, so it can run at every start. An existing index with the same name but
        another definition makes the server raise ``OperationFailure``: drop it first.
        """
        return builtins.list(self._collection.create_indexes(builtins.list(self.INDEXES)))


# --------------------------------------------------------------------------- activities


def _keyset(field: str, value: datetime | None, activity_id: str, descending: bool) -> Document:
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
        bounds["$gte"] = _when(f"{name}_from", start)
    if end is not None:
        bounds["$lt"] = _when(f"{name}_to", end)
    return {field: bounds} if bounds else None


def _activity_clauses(f: ActivityFilter | None) -> list[Document]:
    """The filter's criteria as MongoDB clauses; every caller value is guarded."""
    if f is None:
        return []
    clauses: list[Document] = []
    if f.opportunity_id is not None:
        clauses.append({"opportunityId": _id("opportunity_id", f.opportunity_id)})
    if f.customer_id is not None:
        clauses.append({"customerId": _id("customer_id", f.customer_id)})
    if f.assigned_to is not None:
        clauses.append({"assignedTo": _id("assigned_to", f.assigned_to)})
    if f.automation_rule_id is not None:
        rule_id = _id("automation_rule_id", f.automation_rule_id)
        clauses.append({"metadata.automationRuleId": rule_id})
    if f.activity_types is not None:
        types = _enum_values(
            "activity_types", guard_literal("activity_types", f.activity_types), ActivityType
        )
        clauses.append({"activityType": {"$in": types}})
    if f.outcomes is not None:
        outcomes = _enum_values("outcomes", guard_literal("outcomes", f.outcomes), Outcome)
        clauses.append({"outcome": {"$in": outcomes}})
    if f.state is not None:
        try:
            state = ActivityState(guard_literal("state", f.state))
        except ValueError as exc:
            raise InvalidInputError(f"unknown state {f.state!r}", field="state") from exc
        if state is ActivityState.COMPLETED:
            clauses.append({_OPEN: False})
        else:
            as_of = _when("as_of", f.as_of)
            clauses.append({_OPEN: True})
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
            {"$eq": [f"${_OPEN}", False]},
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


def _counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return {str(row["_id"]): int(row["n"]) for row in rows if row["_id"] is not None and row["n"]}


def _mean(rows: Sequence[Mapping[str, Any]]) -> timedelta | None:
    if not rows or rows[0].get("ms") is None:
        return None
    return timedelta(milliseconds=float(rows[0]["ms"]))


class MongoActivityRepository(_MongoStore):
    """:class:`~leadflow.stores.base.ActivityRepository` on a MongoDB collection.

    ``retention`` (off by default) adds a TTL index so the server deletes completed activities
    that long after their ``completedDate``; open activities never expire.
    """

    DEFAULT_COLLECTION = "leadActivities"
    TTL_INDEX: ClassVar[str] = "completedDate_ttl"
    INDEXES = (
        IndexModel([("activityId", ASCENDING)], name="activityId_unique", unique=True),
        # The seed's compound index: statistics of one opportunity's activities by type.
        IndexModel(
            [("opportunityId", ASCENDING), ("activityType", ASCENDING)],
            name="opportunityId_activityType",
        ),
        # for_opportunity, timeline, last_activity_times, list(opportunity_id=...).
        IndexModel(
            [("opportunityId", ASCENDING), ("createdAt", ASCENDING), ("activityId", ASCENDING)],
            name="opportunityId_createdAt",
        ),
        IndexModel(
            [("customerId", ASCENDING), ("createdAt", ASCENDING), ("activityId", ASCENDING)],
            name="customerId_createdAt",
        ),
        # pending / overdue of one assignee, list(assigned_to=..., sort=due_date).
        IndexModel(
            [("assignedTo", ASCENDING), ("dueDate", ASCENDING), ("activityId", ASCENDING)],
            name="assignedTo_dueDate",
        ),
        # The seed's partial index: only open activities, for pending / overdue / upcoming.
        IndexModel(
            [("dueDate", ASCENDING), ("activityId", ASCENDING)],
            name="open_dueDate",
            partialFilterExpression={_OPEN: True},
        ),
        # Every activity by due date (lists sorted by due date). Keyed descending because many
        # server versions refuse two indexes on one key pattern that differ only in their
        # partial filter; an index serves its order both ways.
        IndexModel([("dueDate", DESCENDING), ("activityId", DESCENDING)], name="dueDate"),
        IndexModel([("scheduledDate", ASCENDING), ("activityId", ASCENDING)], name="scheduledDate"),
        IndexModel([("createdAt", ASCENDING), ("activityId", ASCENDING)], name="createdAt"),
        IndexModel([("updatedAt", ASCENDING), ("activityId", ASCENDING)], name="updatedAt"),
        # list sorted by completion date, completed-date ranges, purge_completed.
        IndexModel([("completedDate", ASCENDING), ("activityId", ASCENDING)], name="completedDate"),
    )

    def __init__(
        self,
        target: MongoTarget,
        *,
        collection: str = DEFAULT_COLLECTION,
        retention: timedelta | None = None,
    ) -> None:
        super().__init__(target, collection=collection)
        if retention is not None and (
            not isinstance(retention, timedelta) or retention < timedelta(seconds=1)
        ):
            raise InvalidInputError("must be a timedelta of at least one second", field="retention")
        self._retention = retention

    def ensure_indexes(self) -> builtins.list[str]:
        """Create the indexes (see :attr:`INDEXES`) and, with ``retention``, the TTL index.

        A TTL index whose expiry differs from ``retention`` is replaced. Without ``retention``
        an existing TTL index is left alone (another process may have configured it): drop
        ``completedDate_ttl`` yourself to stop expiring activities.
        """
        names = super().ensure_indexes()
        if self._retention is None:
            return names
        seconds = int(self._retention.total_seconds())
        existing = self._collection.index_information().get(self.TTL_INDEX)
        if existing is not None and existing.get("expireAfterSeconds") != seconds:
            self._collection.drop_index(self.TTL_INDEX)
        names.append(
            self._collection.create_index(
                [("completedDate", ASCENDING)], name=self.TTL_INDEX, expireAfterSeconds=seconds
            )
        )
        return names

    # -- writes

    def add(self, activity: Activity) -> Activity:
        document = _activity_document(activity, version=1)
        try:
            self._collection.insert_one(document)
        except DuplicateKeyError as exc:
            raise DuplicateError(f"activity {activity.activity_id!r} already exists") from exc
        return _load_activity(document)

    def update(self, activity: Activity) -> Activity:
        version = _version("version", getattr(activity, "version", None))
        document = _activity_document(activity, version=version + 1)
        activity_id = _id("activity_id", document["activityId"])
        try:
            result = self._collection.replace_one(
                {"activityId": activity_id, "version": version}, document
            )
        except DuplicateKeyError as exc:  # only if a host added its own unique index
            raise DuplicateError(f"activity {activity_id!r} collides: {exc}") from exc
        if result.matched_count == 0:
            self._require(activity_id)
            raise StaleWriteError(
                f"activity {activity_id!r} changed since version {version}; re-read and retry"
            )
        return _load_activity(document)

    def complete(
        self,
        activity_id: str,
        *,
        outcome: Outcome | None,
        completed_by: str | None,
        completed_at: datetime,
        expected_version: int | None = None,
    ) -> Activity:
        activity_id = _id("activity_id", activity_id)
        at = _when("completed_at", completed_at)
        changes: Document = {"completedDate": at, "updatedAt": at, _OPEN: False}
        if outcome is not None:
            changes["outcome"] = _enum_values("outcome", [outcome], Outcome)[0]
        if completed_by is not None:
            changes["completedBy"] = changes["updatedBy"] = _id("completed_by", completed_by)
        query: Document = {"activityId": activity_id, _OPEN: True}
        if expected_version is not None:
            query["version"] = _version("expected_version", expected_version)
        for _ in range(_WRITE_RETRIES):
            document = self._collection.find_one_and_update(
                query,
                {"$set": changes, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if document is not None:
                return _load_activity(document)
            current = self._require(activity_id)
            if not current.get(_OPEN, "completedDate" not in current):
                raise InvalidStateError(f"activity {activity_id!r} is already completed")
            if expected_version is not None and current.get("version") != expected_version:
                raise StaleWriteError(
                    f"activity {activity_id!r} is at version {current.get('version')}, "
                    f"not {expected_version}; re-read and retry"
                )
        raise StaleWriteError(f"activity {activity_id!r} kept changing; re-read and retry")

    def delete(self, activity_id: str) -> None:
        activity_id = _id("activity_id", activity_id)
        if self._collection.delete_one({"activityId": activity_id}).deleted_count == 0:
            raise NotFoundError(f"no activity {activity_id!r}")

    def purge_completed(self, before: datetime) -> int:
        cutoff = _when("before", before)
        return int(self._collection.delete_many({"completedDate": {"$lt": cutoff}}).deleted_count)

    # -- reads

    def get(self, activity_id: str) -> Activity:
        return _load_activity(self._require(_id("activity_id", activity_id)))

    def _require(self, activity_id: str) -> Document:
        document = self._collection.find_one({"activityId": activity_id})
        if document is None:
            raise NotFoundError(f"no activity {activity_id!r}")
        return document

    def _find(
        self, query: Document, sort: Sequence[tuple[str, int]], limit: int = 0
    ) -> builtins.list[Activity]:
        cursor = self._collection.find(query, sort=builtins.list(sort), limit=limit)
        return [_load_activity(document) for document in cursor]

    def list(
        self,
        filter: ActivityFilter | None = None,
        *,
        sort: ActivitySort | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Activity]:
        sort = sort or ActivitySort()
        limit = _limit(limit, _MAX_LIMIT)
        field = _SORT_FIELDS[sort.field]
        clauses = _activity_clauses(filter)
        if cursor is not None:
            value, after = decode_cursor(_text("cursor", cursor), sort)
            after = _id("cursor", after)
            clauses.append(_keyset(field, _ms(value) if value else None, after, sort.descending))
        direction = DESCENDING if sort.descending else ASCENDING
        rows = self._find(
            _conjoin(clauses), [(field, direction), ("activityId", direction)], limit + 1
        )
        items = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(sort, getattr(last, sort.field), last.activity_id)
        return Page[Activity](items=items, next_cursor=next_cursor)

    def for_opportunity(self, opportunity_id: str) -> builtins.list[Activity]:
        query = {"opportunityId": _id("opportunity_id", opportunity_id)}
        return self._find(query, [("createdAt", ASCENDING), ("activityId", ASCENDING)])

    def for_customer(self, customer_id: str) -> builtins.list[Activity]:
        query = {"customerId": _id("customer_id", customer_id)}
        return self._find(query, [("createdAt", ASCENDING), ("activityId", ASCENDING)])

    def pending(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        as_of = _when("as_of", as_of)
        limit = _limit(limit)
        base: Document = {_OPEN: True}
        if assigned_to is not None:
            base["assignedTo"] = _id("assigned_to", assigned_to)
        scheduled = {"$or": [{"scheduledDate": None}, {"scheduledDate": {"$lte": as_of}}]}
        # Those without a due date come last, which is not MongoDB's order: two queries.
        due = self._find(
            {**base, "dueDate": {"$gte": as_of}, **scheduled},
            [("dueDate", ASCENDING), ("activityId", ASCENDING)],
            limit,
        )
        if len(due) == limit:
            return due
        undated = self._find(
            {**base, "dueDate": None, **scheduled}, [("activityId", ASCENDING)], limit - len(due)
        )
        return due + undated

    def overdue(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        query: Document = {_OPEN: True, "dueDate": {"$lt": _when("as_of", as_of)}}
        if assigned_to is not None:
            query["assignedTo"] = _id("assigned_to", assigned_to)
        return self._find(query, [("dueDate", ASCENDING), ("activityId", ASCENDING)], _limit(limit))

    def upcoming(
        self, as_of: datetime, within: timedelta, *, limit: int = 1000
    ) -> builtins.list[Activity]:
        start = _when("as_of", as_of)
        if not isinstance(within, timedelta) or within < timedelta(0):
            raise InvalidInputError("must be a non-negative timedelta", field="within")
        query = {_OPEN: True, "dueDate": {"$gte": start, "$lt": start + within}}
        return self._find(query, [("dueDate", ASCENDING), ("activityId", ASCENDING)], _limit(limit))

    def timeline(self, opportunity_id: str) -> builtins.list[Activity]:
        # One opportunity's activities are few; the "first date it has" key is sorted here.
        def key(activity: Activity) -> tuple[bool, datetime, str]:
            at = (
                activity.completed_date
                or activity.scheduled_date
                or activity.due_date
                or activity.created_at
            )
            return (at is not None, at or datetime.min.replace(tzinfo=UTC), activity.activity_id)

        return sorted(self.for_opportunity(opportunity_id), key=key)

    # -- aggregates (pipelines run in the database)

    def statistics(self, filter: ActivityFilter | None, *, as_of: datetime) -> ActivityStatistics:
        as_of = _when("as_of", as_of)
        dated = {"createdAt": {"$ne": None}}
        pipeline: builtins.list[Document] = [
            {"$match": _conjoin(_activity_clauses(filter))},
            {
                "$facet": {
                    "byType": [{"$group": {"_id": "$activityType", "n": {"$sum": 1}}}],
                    "byOutcome": [{"$group": {"_id": "$outcome", "n": {"$sum": 1}}}],
                    "byState": [{"$group": {"_id": _state_expression(as_of), "n": {"$sum": 1}}}],
                    "byAssignee": [{"$group": {"_id": "$assignedTo", "n": {"$sum": 1}}}],
                    "toComplete": [
                        {"$match": {**dated, _OPEN: False}},
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
        facets = next(iter(self._collection.aggregate(pipeline)))
        by_state = _counts(facets["byState"])
        by_type = _counts(facets["byType"])
        total = sum(by_type.values())
        completed = by_state.get(ActivityState.COMPLETED.value, 0)
        return ActivityStatistics(
            as_of=as_of,
            total=total,
            by_type=by_type,
            by_outcome=_counts(facets["byOutcome"]),
            by_state=by_state,
            by_assignee=_counts(facets["byAssignee"]),
            completion_rate=completed / total if total else 0.0,
            mean_time_to_complete=_mean(facets["toComplete"]),
            mean_time_to_first_completion=_mean(facets["toFirstCompletion"]),
        )

    @staticmethod
    def _last_times(match: Document) -> builtins.list[Document]:
        stages: builtins.list[Document] = [{"$match": match}] if match else []
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

    def last_activity_times(
        self, opportunity_ids: Sequence[str] | None = None
    ) -> dict[str, datetime]:
        match: Document = {}
        if opportunity_ids is not None:
            if isinstance(opportunity_ids, str):
                raise InvalidInputError("expected a sequence of ids", field="opportunity_ids")
            ids = sorted(
                {
                    _id("opportunity_ids", i)
                    for i in guard_literal("opportunity_ids", opportunity_ids)
                }
            )
            if not ids:
                return {}
            match = {"opportunityId": {"$in": ids}}
        rows = self._collection.aggregate(self._last_times(match))
        return {str(row["_id"]): row["at"].astimezone(UTC) for row in rows}

    def stale_opportunities(self, since: datetime, *, limit: int = 1000) -> builtins.list[str]:
        pipeline = [
            *self._last_times({}),
            {"$match": {"at": {"$lt": _when("since", since)}}},
            {"$sort": {"at": ASCENDING, "_id": ASCENDING}},
            {"$limit": _limit(limit)},
        ]
        return [str(row["_id"]) for row in self._collection.aggregate(pipeline)]


# --------------------------------------------------------------------------- rules


class MongoRuleRepository(_MongoStore):
    """:class:`~leadflow.stores.base.RuleRepository` on a MongoDB collection."""

    DEFAULT_COLLECTION = "followUpRules"
    INDEXES = (
        IndexModel([("ruleId", ASCENDING)], name="ruleId_unique", unique=True),
        # list_active: the seed's isActive + priority, in application order.
        IndexModel(
            [("isActive", ASCENDING), ("priority", DESCENDING), ("ruleId", ASCENDING)],
            name="isActive_priority",
        ),
        # list: every rule in application order.
        IndexModel([("priority", DESCENDING), ("ruleId", ASCENDING)], name="priority"),
    )
    _ORDER: ClassVar[list[tuple[str, int]]] = [("priority", DESCENDING), ("ruleId", ASCENDING)]

    def __init__(self, target: MongoTarget, *, collection: str = DEFAULT_COLLECTION) -> None:
        super().__init__(target, collection=collection)

    def create(self, rule: FollowUpRule) -> FollowUpRule:
        document = _document(rule, FollowUpRule, "rule", version=1)
        try:
            self._collection.insert_one(document)
        except DuplicateKeyError as exc:
            raise DuplicateError(f"rule {rule.rule_id!r} already exists") from exc
        return FollowUpRule.from_document(document)

    def get(self, rule_id: str) -> FollowUpRule:
        rule_id = _id("rule_id", rule_id)
        document = self._collection.find_one({"ruleId": rule_id})
        if document is None:
            raise NotFoundError(f"no rule {rule_id!r}")
        return FollowUpRule.from_document(document)

    def list(self) -> builtins.list[FollowUpRule]:
        return [FollowUpRule.from_document(d) for d in self._collection.find({}, sort=self._ORDER)]

    def list_active(self) -> builtins.list[FollowUpRule]:
        cursor = self._collection.find({"isActive": True}, sort=self._ORDER)
        return [FollowUpRule.from_document(d) for d in cursor]

    def update(self, rule: FollowUpRule) -> FollowUpRule:
        version = _version("version", getattr(rule, "version", None))
        document = _document(rule, FollowUpRule, "rule", version=version + 1)
        rule_id = _id("rule_id", document["ruleId"])
        result = self._collection.replace_one({"ruleId": rule_id, "version": version}, document)
        if result.matched_count == 0:
            self.get(rule_id)
            raise StaleWriteError(
                f"rule {rule_id!r} changed since version {version}; re-read and retry"
            )
        return FollowUpRule.from_document(document)

    def delete(self, rule_id: str) -> None:
        rule_id = _id("rule_id", rule_id)
        if self._collection.delete_one({"ruleId": rule_id}).deleted_count == 0:
            raise NotFoundError(f"no rule {rule_id!r}")


# --------------------------------------------------------------------------- scheduled actions

_PENDING: Final = ScheduledActionState.PENDING.value
_CLAIMED: Final = ScheduledActionState.CLAIMED.value
_PARKED: Final = ScheduledActionState.PARKED.value
_EXHAUSTED: Final = {"$expr": {"$gte": ["$attempts", "$maxAttempts"]}}
_ATTEMPTS_LEFT: Final = {"$expr": {"$lt": ["$attempts", "$maxAttempts"]}}


class MongoScheduledActionStore(_MongoStore):
    """:class:`~leadflow.stores.base.ScheduledActionStore` on a MongoDB collection.

    Claims are single-document ``find_one_and_update`` calls whose filter re-checks that the
    action is still claimable, so two workers (processes or hosts) never claim the same one.
    """

    DEFAULT_COLLECTION = "scheduledActions"
    INDEXES = (
        IndexModel([("actionId", ASCENDING)], name="actionId_unique", unique=True),
        IndexModel([("idempotencyKey", ASCENDING)], name="idempotencyKey_unique", unique=True),
        # claim_due and list(state): due actions in a state, oldest due first.
        IndexModel(
            [("state", ASCENDING), ("dueAt", ASCENDING), ("actionId", ASCENDING)],
            name="state_dueAt",
        ),
        IndexModel([("dueAt", ASCENDING), ("actionId", ASCENDING)], name="dueAt"),
        IndexModel(
            [("opportunityId", ASCENDING), ("state", ASCENDING)], name="opportunityId_state"
        ),
    )
    _ORDER: ClassVar[list[tuple[str, int]]] = [("dueAt", ASCENDING), ("actionId", ASCENDING)]

    def __init__(self, target: MongoTarget, *, collection: str = DEFAULT_COLLECTION) -> None:
        super().__init__(target, collection=collection)

    def schedule(self, action: ScheduledAction) -> tuple[ScheduledAction, bool]:
        document = _document(action, ScheduledAction, "action")
        try:
            self._collection.insert_one(document)
        except DuplicateKeyError as exc:
            key = guard_literal("idempotency_key", document["idempotencyKey"])
            existing = self._collection.find_one({"idempotencyKey": key})
            if existing is not None:
                return ScheduledAction.from_document(existing), False
            raise DuplicateError(
                f"action id {action.action_id!r} is taken by an action with another key"
            ) from exc
        return ScheduledAction.from_document(document), True

    def get(self, action_id: str) -> ScheduledAction:
        return ScheduledAction.from_document(self._require(_id("action_id", action_id)))

    def _require(self, action_id: str) -> Document:
        document = self._collection.find_one({"actionId": action_id})
        if document is None:
            raise NotFoundError(f"no scheduled action {action_id!r}")
        return document

    def claim_due(
        self,
        now: datetime,
        *,
        worker: str,
        limit: int = 100,
        lease: timedelta = timedelta(minutes=5),
    ) -> builtins.list[ScheduledAction]:
        now = _when("now", now)
        worker = _text("worker", worker)
        limit = _limit(limit)
        if not isinstance(lease, timedelta) or lease <= timedelta(0):
            raise InvalidInputError("must be a positive timedelta", field="lease")
        expired = {"state": _CLAIMED, "leaseExpiresAt": {"$lte": now}}
        # An action whose worker died on its last attempt is parked, not handed out again.
        self._collection.update_many(
            {**expired, **_EXHAUSTED},
            {
                "$set": {"state": _PARKED, "updatedAt": now},
                "$unset": {"leaseOwner": "", "leaseExpiresAt": ""},
            },
        )
        claimable = {
            "$or": [{"state": _PENDING, "dueAt": {"$lte": now}}, {**expired, **_ATTEMPTS_LEFT}]
        }
        claim = {
            "$set": {
                "state": _CLAIMED,
                "leaseOwner": worker,
                "leaseExpiresAt": _ms(now + lease),
                "updatedAt": now,
            },
            "$inc": {"attempts": 1},
        }
        claimed: builtins.list[ScheduledAction] = []
        while len(claimed) < limit:
            document = self._collection.find_one_and_update(
                claimable, claim, sort=self._ORDER, return_document=ReturnDocument.AFTER
            )
            if document is None:
                break
            claimed.append(ScheduledAction.from_document(document))
        return claimed

    def _held(self, action_id: str, worker: str) -> Document:
        """The action's document if ``worker`` holds it; :class:`ConflictError` otherwise."""
        document = self._require(action_id)
        if document.get("state") != _CLAIMED or document.get("leaseOwner") != worker:
            raise ConflictError(
                f"worker {worker!r} does not hold action {action_id!r} "
                f"(state {document.get('state')!r}, lease owner {document.get('leaseOwner')!r})"
            )
        return document

    def _finish(
        self, query: Document, update: Document, action_id: str, worker: str
    ) -> ScheduledAction:
        document = self._collection.find_one_and_update(
            query, update, return_document=ReturnDocument.AFTER
        )
        if document is None:
            self._held(action_id, worker)
            raise ConflictError(f"action {action_id!r} changed while being finished")
        return ScheduledAction.from_document(document)

    def mark_done(self, action_id: str, *, worker: str, now: datetime) -> ScheduledAction:
        action_id = _id("action_id", action_id)
        worker = _text("worker", worker)
        now = _when("now", now)
        return self._finish(
            {"actionId": action_id, "state": _CLAIMED, "leaseOwner": worker},
            {
                "$set": {
                    "state": ScheduledActionState.DONE.value,
                    "finishedAt": now,
                    "updatedAt": now,
                },
                "$unset": {"leaseOwner": "", "leaseExpiresAt": ""},
            },
            action_id,
            worker,
        )

    def mark_failed(
        self, action_id: str, *, worker: str, now: datetime, error: str, retry_at: datetime
    ) -> ScheduledAction:
        action_id = _id("action_id", action_id)
        worker = _text("worker", worker)
        now = _when("now", now)
        retry_at = _when("retry_at", retry_at)
        if not isinstance(error, str):
            raise InvalidInputError("expected a string", field="error")
        current = self._held(action_id, worker)
        attempts = int(current.get("attempts", 0))
        changes: Document = {"lastError": error, "updatedAt": now}
        if attempts >= int(current.get("maxAttempts", 1)):
            changes["state"] = _PARKED
        else:
            changes.update(state=_PENDING, dueAt=retry_at)
        # Matching the attempts read above makes the decision and the write one atomic step.
        return self._finish(
            {"actionId": action_id, "state": _CLAIMED, "leaseOwner": worker, "attempts": attempts},
            {"$set": changes, "$unset": {"leaseOwner": "", "leaseExpiresAt": ""}},
            action_id,
            worker,
        )

    def retry(self, action_id: str, *, now: datetime) -> ScheduledAction:
        action_id = _id("action_id", action_id)
        now = _when("now", now)
        document = self._collection.find_one_and_update(
            {"actionId": action_id, "state": _PARKED},
            {"$set": {"state": _PENDING, "dueAt": now, "attempts": 0, "updatedAt": now}},
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            state = self._require(action_id).get("state")
            raise InvalidStateError(f"action {action_id!r} is {state}, not parked")
        return ScheduledAction.from_document(document)

    def cancel_for_opportunity(self, opportunity_id: str, *, now: datetime) -> int:
        opportunity_id = _id("opportunity_id", opportunity_id)
        now = _when("now", now)
        result = self._collection.update_many(
            {"opportunityId": opportunity_id, "state": _PENDING},
            {
                "$set": {
                    "state": ScheduledActionState.CANCELLED.value,
                    "finishedAt": now,
                    "updatedAt": now,
                }
            },
        )
        return int(result.modified_count)

    def list(
        self, state: ScheduledActionState | None = None, *, limit: int = 100
    ) -> builtins.list[ScheduledAction]:
        query: Document = {}
        if state is not None:
            guard_literal("state", state)
            try:
                query["state"] = ScheduledActionState(state).value
            except ValueError as exc:
                raise InvalidInputError(f"unknown state {state!r}", field="state") from exc
        cursor = self._collection.find(query, sort=self._ORDER, limit=_limit(limit))
        return [ScheduledAction.from_document(d) for d in cursor]
