"""Activities in MongoDB: :class:`~leadflow.ports.ActivityRepository` on one collection.

Documents carry two fields beyond the model's: ``isOpen`` (``true`` until completed or
cancelled), because a partial index cannot select documents by a *missing* ``completedDate``;
and ``openKeyHeld``, the ``openKey`` of an open activity (absent once completed or cancelled). A
unique sparse index on ``openKeyHeld`` makes the server itself refuse a second open activity
with the same key, so two concurrent adds can never both succeed; completing or cancelling an
activity unsets it, freeing the key.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, cast

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from ...errors import (
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    OpenActivityExistsError,
    StaleWriteError,
)
from ...models import Activity, Outcome
from ...queries import (
    ActivityFilter,
    ActivitySort,
    Page,
    decode_cursor,
    encode_cursor,
)
from ..checks import (
    check_version,
    is_handed_over,
)
from .activity_aggregates import ActivityAggregates
from .common import (
    Document,
    MongoStore,
    MongoTarget,
    _bson_precision,
    checked_document,
    conjoin,
    enum_values,
    ms,
    valid_id,
    valid_limit,
    valid_text,
    when,
)
from .driver import driver_errors, duplicate_fields, translated
from .queries import (
    OPEN,
    SORT_FIELDS,
    activity_clauses,
    keyset,
)

__all__ = ["MongoActivityRepository"]

_MAX_LIMIT: Final = 1000
_WRITE_RETRIES: Final = 5
_OPEN_KEY: Final = "openKey"
_HELD: Final = "openKeyHeld"
"""The open key while the activity is open (absent otherwise): what the unique index covers."""
_DERIVED: Final = frozenset({OPEN, _HELD})
_CHRONOLOGICAL: Final = [("createdAt", ASCENDING), ("activityId", ASCENDING)]
_BY_DUE: Final = [("dueDate", ASCENDING), ("activityId", ASCENDING)]


def _activity_document(activity: Any, version: int) -> Document:
    if is_handed_over(activity):  # built and checked by the runtime: its document as is
        document = cast(Document, _bson_precision({**activity.to_document(), "version": version}))
    else:
        document = checked_document(activity, Activity, "activity", version=version)
    document[OPEN] = "completedDate" not in document and "cancelledAt" not in document
    if document[OPEN] and _OPEN_KEY in document:
        document[_HELD] = document[_OPEN_KEY]
    return document


def _load(document: Mapping[str, Any]) -> Activity:
    return Activity.from_document({k: v for k, v in document.items() if k not in _DERIVED})


class MongoActivityRepository(ActivityAggregates, MongoStore):
    """:class:`~leadflow.ports.ActivityRepository` on a MongoDB collection.

    ``retention`` (off by default) adds a TTL index so the server deletes completed activities
    that long after their ``completedDate``; open activities never expire.
    """

    DEFAULT_COLLECTION = "leadActivities"
    TTL_INDEX: ClassVar[str] = "completedDate_ttl"
    OPEN_KEY_INDEX: ClassVar[str] = "openKeyHeld_unique"
    INDEXES = (
        IndexModel([("activityId", ASCENDING)], name="activityId_unique", unique=True),
        # At most one open activity per open key: the atomic duplicate protection of `add`.
        # Sparse on a field only open activities carry rather than partial on isOpen: the same
        # on a server and on mongomock-ng (which checks a partial filter against the stored
        # documents only, never the new one, and evaluates it on every document per insert).
        IndexModel([(_HELD, ASCENDING)], name=OPEN_KEY_INDEX, unique=True, sparse=True),
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
        # for_opportunity / timeline scoped to one assignee.
        IndexModel(
            [
                ("opportunityId", ASCENDING),
                ("assignedTo", ASCENDING),
                ("createdAt", ASCENDING),
                ("activityId", ASCENDING),
            ],
            name="opportunityId_assignedTo_createdAt",
        ),
        IndexModel(
            [("customerId", ASCENDING), ("createdAt", ASCENDING), ("activityId", ASCENDING)],
            name="customerId_createdAt",
        ),
        IndexModel(
            [
                ("customerId", ASCENDING),
                ("assignedTo", ASCENDING),
                ("createdAt", ASCENDING),
                ("activityId", ASCENDING),
            ],
            name="customerId_assignedTo_createdAt",
        ),
        # pending / overdue of one assignee, list(assigned_to=..., sort=due_date).
        IndexModel(
            [("assignedTo", ASCENDING), ("dueDate", ASCENDING), ("activityId", ASCENDING)],
            name="assignedTo_dueDate",
        ),
        # pending / overdue / upcoming: the seed's partial index on open activities.
        IndexModel(
            [("dueDate", ASCENDING), ("activityId", ASCENDING)],
            name="open_dueDate",
            partialFilterExpression={OPEN: True},
        ),
        # Lists sorted by a date. The full dueDate index is keyed descending: many servers
        # refuse two indexes on one key pattern that differ only in their partial filter.
        IndexModel([("dueDate", DESCENDING), ("activityId", DESCENDING)], name="dueDate"),
        IndexModel([("scheduledDate", ASCENDING), ("activityId", ASCENDING)], name="scheduledDate"),
        IndexModel([("createdAt", ASCENDING), ("activityId", ASCENDING)], name="createdAt"),
        IndexModel([("updatedAt", ASCENDING), ("activityId", ASCENDING)], name="updatedAt"),
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
        with driver_errors("indexes"):
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

    @translated("activity")
    def add(self, activity: Activity) -> Activity:
        document = _activity_document(activity, version=1)
        key = document.get(_OPEN_KEY)
        if key is not None and not document[OPEN]:
            # A completed activity holds no key but may not take one an open activity holds.
            # Checking first is safe: it orders this add before any open one racing with it.
            self._refuse_if_held(document["activityId"], key)
        try:
            self._collection.insert_one(document)
        except DuplicateKeyError as exc:
            raise self._collision(document, exc) from exc
        return _load(document)

    def _refuse_if_held(self, activity_id: str, key: str) -> None:
        if self._collection.find_one({_HELD: key}, {"_id": 1}) is None:
            return
        if self._collection.find_one({"activityId": activity_id}, {"_id": 1}) is not None:
            raise DuplicateError(f"activity {activity_id!r} already exists")
        raise OpenActivityExistsError(f"another open activity holds the open key {key!r}")

    def _collision(self, document: Document, error: DuplicateKeyError) -> Exception:
        """The leadflow error for a write the unique indexes refused: the id comes first."""
        activity_id = document["activityId"]
        on_key = _HELD in duplicate_fields(error)
        if on_key and self._collection.find_one({"activityId": activity_id}, {"_id": 1}) is None:
            return OpenActivityExistsError(
                f"another open activity holds the open key {document[_OPEN_KEY]!r}"
            )
        return DuplicateError(f"activity {activity_id!r} already exists")

    @translated("activity")
    def update(self, activity: Activity) -> Activity:
        version = check_version(getattr(activity, "version", None), "version")
        document = _activity_document(activity, version=version + 1)
        activity_id = valid_id("activity_id", document["activityId"])
        # The stored open key stays whatever the caller sends; the filter repeats it, so the
        # replacement lands only on the document it was read from.
        key = self._require(activity_id).get(_OPEN_KEY)
        document.pop(_OPEN_KEY, None)
        document.pop(_HELD, None)
        if key is not None:
            document[_OPEN_KEY] = key
            if document[OPEN]:
                document[_HELD] = key
        try:
            result = self._collection.replace_one(
                {"activityId": activity_id, "version": version, _OPEN_KEY: key}, document
            )
        except DuplicateKeyError as exc:
            if _HELD not in duplicate_fields(exc):  # a unique index the host added
                raise DuplicateError(f"activity {activity_id!r} collides: {exc}") from exc
            raise OpenActivityExistsError(  # reopened while another open one holds its key
                f"activity {activity_id!r} cannot be reopened: another open activity holds its "
                "open key"
            ) from exc
        if result.matched_count == 0:
            self._require(activity_id)
            raise StaleWriteError(
                f"activity {activity_id!r} changed since version {version}; re-read and retry"
            )
        return _load(document)

    @translated("activity")
    def complete(
        self,
        activity_id: str,
        *,
        outcome: Outcome | None,
        completed_by: str | None,
        completed_at: datetime,
        expected_version: int | None = None,
    ) -> Activity:
        activity_id = valid_id("activity_id", activity_id)
        at = when("completed_at", completed_at)
        changes: Document = {"completedDate": at, "updatedAt": at, OPEN: False}
        if outcome is not None:
            changes["outcome"] = enum_values("outcome", [outcome], Outcome)[0]
        if completed_by is not None:
            changes["completedBy"] = changes["updatedBy"] = valid_id("completed_by", completed_by)
        query: Document = {"activityId": activity_id, OPEN: True}
        if expected_version is not None:
            query["version"] = check_version(expected_version, "expected_version")
        for _ in range(_WRITE_RETRIES):
            document = self._collection.find_one_and_update(
                query,
                {"$set": changes, "$inc": {"version": 1}, "$unset": {_HELD: ""}},
                return_document=ReturnDocument.AFTER,
            )
            if document is not None:
                return _load(document)
            current = self._require(activity_id)
            if current.get("cancelledAt") is not None:
                raise InvalidStateError(f"activity {activity_id!r} is cancelled")
            if not current.get(OPEN, "completedDate" not in current):
                raise InvalidStateError(f"activity {activity_id!r} is already completed")
            if expected_version is not None and current.get("version") != expected_version:
                raise StaleWriteError(
                    f"activity {activity_id!r} is at version {current.get('version')}, "
                    f"not {expected_version}; re-read and retry"
                )
        raise StaleWriteError(f"activity {activity_id!r} kept changing; re-read and retry")

    @translated("activity_id")
    def delete(self, activity_id: str) -> None:
        activity_id = valid_id("activity_id", activity_id)
        if self._collection.delete_one({"activityId": activity_id}).deleted_count == 0:
            raise NotFoundError(f"no activity {activity_id!r}")

    @translated("before")
    def purge_completed(self, before: datetime) -> int:
        cutoff = when("before", before)
        return int(self._collection.delete_many({"completedDate": {"$lt": cutoff}}).deleted_count)

    # -- reads

    @translated("activity_id")
    def get(self, activity_id: str) -> Activity:
        return _load(self._require(valid_id("activity_id", activity_id)))

    def _require(self, activity_id: str) -> Document:
        document = self._collection.find_one({"activityId": activity_id})
        if document is None:
            raise NotFoundError(f"no activity {activity_id!r}")
        return document

    def _find(
        self, query: Document, sort: Sequence[tuple[str, int]], limit: int = 0
    ) -> builtins.list[Activity]:
        cursor = self._collection.find(query, sort=builtins.list(sort), limit=limit)
        return [_load(document) for document in cursor]

    @translated("filter")
    def list(
        self,
        filter: ActivityFilter | None = None,
        *,
        sort: ActivitySort | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Activity]:
        sort = sort or ActivitySort()
        if not isinstance(sort, ActivitySort):
            raise InvalidInputError(
                f"expected an ActivitySort, got {type(sort).__name__}", field="sort"
            )
        limit = valid_limit(limit, _MAX_LIMIT)
        field = SORT_FIELDS[sort.field]
        clauses = activity_clauses(filter)
        if cursor is not None:
            value, after = decode_cursor(valid_text("cursor", cursor), sort)
            after = valid_id("cursor", after)
            clauses.append(keyset(field, ms(value) if value else None, after, sort.descending))
        direction = DESCENDING if sort.descending else ASCENDING
        rows = self._find(
            conjoin(clauses), [(field, direction), ("activityId", direction)], limit + 1
        )
        items = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(sort, getattr(last, sort.field), last.activity_id)
        return Page[Activity](items=items, next_cursor=next_cursor)

    @staticmethod
    def _scoped(field: str, name: str, value: Any, assigned_to: str | None) -> Document:
        """``field`` equal to the id ``value`` (argument ``name``), and the assignee if given."""
        query: Document = {field: valid_id(name, value)}
        if assigned_to is not None:
            query["assignedTo"] = valid_id("assigned_to", assigned_to)
        return query

    @translated("opportunity_id")
    def for_opportunity(
        self, opportunity_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        return self._find(
            self._scoped("opportunityId", "opportunity_id", opportunity_id, assigned_to),
            _CHRONOLOGICAL,
        )

    @translated("customer_id")
    def for_customer(
        self, customer_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        return self._find(
            self._scoped("customerId", "customer_id", customer_id, assigned_to), _CHRONOLOGICAL
        )

    @translated("as_of")
    def pending(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        as_of = when("as_of", as_of)
        limit = valid_limit(limit)
        base: Document = {OPEN: True}
        if assigned_to is not None:
            base["assignedTo"] = valid_id("assigned_to", assigned_to)
        scheduled = {"$or": [{"scheduledDate": None}, {"scheduledDate": {"$lte": as_of}}]}
        # Those without a due date come last, which is not MongoDB's order: two queries.
        due = self._find({**base, "dueDate": {"$gte": as_of}, **scheduled}, _BY_DUE, limit)
        if len(due) == limit:
            return due
        undated = self._find(
            {**base, "dueDate": None, **scheduled}, [("activityId", ASCENDING)], limit - len(due)
        )
        return due + undated

    @translated("as_of")
    def overdue(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        query: Document = {OPEN: True, "dueDate": {"$lt": when("as_of", as_of)}}
        if assigned_to is not None:
            query["assignedTo"] = valid_id("assigned_to", assigned_to)
        return self._find(query, _BY_DUE, valid_limit(limit))

    @translated("within")
    def upcoming(
        self, as_of: datetime, within: timedelta, *, limit: int = 1000
    ) -> builtins.list[Activity]:
        start = when("as_of", as_of)
        if not isinstance(within, timedelta) or within < timedelta(0):
            raise InvalidInputError("must be a non-negative timedelta", field="within")
        try:
            end = start + within
        except OverflowError as exc:
            raise InvalidInputError("ends after the year 9999", field="within") from exc
        query = {OPEN: True, "dueDate": {"$gte": start, "$lt": end}}
        return self._find(query, _BY_DUE, valid_limit(limit))

    @translated("opportunity_id")
    def timeline(
        self, opportunity_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        # One opportunity's activities are few; the "first date it has" key is sorted here.
        def key(activity: Activity) -> tuple[bool, datetime, str]:
            at = (
                activity.completed_date
                or activity.scheduled_date
                or activity.due_date
                or activity.created_at
            )
            return (at is not None, at or datetime.min.replace(tzinfo=UTC), activity.activity_id)

        query = self._scoped("opportunityId", "opportunity_id", opportunity_id, assigned_to)
        return sorted(self._find(query, _CHRONOLOGICAL), key=key)
