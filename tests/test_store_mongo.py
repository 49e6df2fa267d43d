"""The MongoDB stores: on mongomock-ng always, and on a real server when
``LEADFLOW_TEST_MONGODB_URI`` is set (each test gets a fresh database, dropped afterwards)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock_ng
import pytest
from bson.codec_options import CodecOptions
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from leadflow import (
    Action,
    Activity,
    ConflictError,
    DuplicateError,
    Event,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    StaleWriteError,
    UnsafeQueryError,
)
from leadflow.queries import ActivityFilter, ActivitySort
from leadflow.records import ScheduledAction, ScheduledActionState
from leadflow.stores.mongo import (
    MongoActivityRepository,
    MongoRuleRepository,
    MongoScheduledActionStore,
    guard_literal,
)
from leadflow.testing.contracts import (
    ActivityRepositoryContract,
    RuleRepositoryContract,
    ScheduledActionStoreContract,
    activity_state_machine,
)

from .helpers import rule

MONGODB_URI = os.environ.get("LEADFLOW_TEST_MONGODB_URI")
NEEDS_SERVER = "set LEADFLOW_TEST_MONGODB_URI to run against a real MongoDB server"
# A skip mark (rather than a skip at run time) folds into one summary line.
on_server = pytest.mark.mongodb_server if MONGODB_URI else pytest.mark.skip(reason=NEEDS_SERVER)
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


# --------------------------------------------------------------------------- databases


class Recorder:
    """Every query the stores issue: (collection, operation, filter, sort)."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, str, dict[str, Any], list[tuple[str, int]]]] = []


_FILTERED = (
    "find",
    "find_one",
    "find_one_and_update",
    "update_one",
    "update_many",
    "replace_one",
    "delete_one",
    "delete_many",
    "count_documents",
)
_PLAIN = (
    "insert_one",
    "insert_many",
    "create_index",
    "create_indexes",
    "drop_index",
    "index_information",
)


class RecordingCollection:
    """Forwards to a collection, recording each query and running each call under one lock.

    The lock models what a real server guarantees and mongomock-ng does not: a
    single-document operation such as ``find_one_and_update`` is atomic.
    """

    def __init__(self, inner: Any, recorder: Recorder, lock: threading.Lock) -> None:
        self._inner = inner
        self._recorder = recorder
        self._lock = lock

    @property
    def name(self) -> str:
        return str(self._inner.name)

    @property
    def codec_options(self) -> Any:
        return self._inner.codec_options

    def with_options(self, **options: Any) -> RecordingCollection:
        return RecordingCollection(self._inner.with_options(**options), self._recorder, self._lock)

    def aggregate(self, pipeline: list[dict[str, Any]], **kwargs: Any) -> list[Any]:
        first = pipeline[0] if pipeline else {}
        self._recorder.queries.append((self.name, "aggregate", first.get("$match", {}), []))
        with self._lock:
            return list(self._inner.aggregate(pipeline, **kwargs))


def _filtered(op: str) -> Callable[..., Any]:
    def method(self: RecordingCollection, filter: Any, *args: Any, **kwargs: Any) -> Any:
        sort = list(kwargs.get("sort") or [])
        self._recorder.queries.append((self.name, op, filter, sort))
        with self._lock:
            result = getattr(self._inner, op)(filter, *args, **kwargs)
            return list(result) if op == "find" else result

    return method


def _plain(op: str) -> Callable[..., Any]:
    def method(self: RecordingCollection, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return getattr(self._inner, op)(*args, **kwargs)

    return method


for _op in _FILTERED:
    setattr(RecordingCollection, _op, _filtered(_op))
for _op in _PLAIN:
    setattr(RecordingCollection, _op, _plain(_op))


class RecordingDatabase:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.recorder = Recorder()
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> RecordingCollection:
        return RecordingCollection(self.inner[name], self.recorder, self._lock)


@contextmanager
def server_database() -> Iterator[Any]:
    """A fresh, uniquely named database on the server under test, dropped afterwards."""
    if not MONGODB_URI:
        pytest.skip(NEEDS_SERVER)
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        MONGODB_URI, serverSelectionTimeoutMS=5000
    )
    name = f"leadflow_test_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture(params=["fake", pytest.param("server", marks=on_server)])
def raw_database(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh, empty database: mongomock-ng, or one on the server under test."""
    if request.param == "fake":
        yield mongomock_ng.MongoClient()["leadflow"]
    else:
        with server_database() as database:
            yield database


@pytest.fixture
def database(raw_database: Any) -> RecordingDatabase:
    return RecordingDatabase(raw_database)


@pytest.fixture
def activities(database: RecordingDatabase) -> MongoActivityRepository:
    repo = MongoActivityRepository(database)  # type: ignore[arg-type]
    repo.ensure_indexes()
    return repo


@pytest.fixture
def rules(database: RecordingDatabase) -> MongoRuleRepository:
    repo = MongoRuleRepository(database)  # type: ignore[arg-type]
    repo.ensure_indexes()
    return repo


@pytest.fixture
def actions(database: RecordingDatabase) -> MongoScheduledActionStore:
    store = MongoScheduledActionStore(database)  # type: ignore[arg-type]
    store.ensure_indexes()
    return store


def activity(activity_id: str, **fields: Any) -> Activity:
    data: dict[str, Any] = {
        "activity_id": activity_id,
        "opportunity_id": "opp-1",
        "activity_type": "call",
        "subject": f"call {activity_id}",
        "created_at": T0,
    }
    data.update(fields)
    return Activity(**data)


def scheduled(key: str, due_at: datetime = T0, **fields: Any) -> ScheduledAction:
    data: dict[str, Any] = {
        "action_id": f"act-{key}",
        "idempotency_key": key,
        "event": Event(id="ev-1", type="opportunity.created", time=T0),
        "rule_id": "rule-1",
        "action_index": 0,
        "action": Action(action_type="create_activity", subject="Call back"),
        "opportunity_id": "opp-1",
        "due_at": due_at,
        "created_at": T0,
    }
    data.update(fields)
    return ScheduledAction(**data)


# --------------------------------------------------------------------------- indexes

EXPECTED_ACTIVITY_INDEXES = {
    "activityId_unique": [("activityId", 1)],
    "opportunityId_activityType": [("opportunityId", 1), ("activityType", 1)],
    "opportunityId_createdAt": [("opportunityId", 1), ("createdAt", 1), ("activityId", 1)],
    "customerId_createdAt": [("customerId", 1), ("createdAt", 1), ("activityId", 1)],
    "assignedTo_dueDate": [("assignedTo", 1), ("dueDate", 1), ("activityId", 1)],
    "open_dueDate": [("dueDate", 1), ("activityId", 1)],
    "dueDate": [("dueDate", -1), ("activityId", -1)],
    "scheduledDate": [("scheduledDate", 1), ("activityId", 1)],
    "createdAt": [("createdAt", 1), ("activityId", 1)],
    "updatedAt": [("updatedAt", 1), ("activityId", 1)],
    "completedDate": [("completedDate", 1), ("activityId", 1)],
}


def _keys(info: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
    return {
        name: [(field, int(direction)) for field, direction in spec["key"]]
        for name, spec in info.items()
        if name != "_id_"
    }


def test_ensure_indexes_creates_the_index_strategy_and_is_idempotent(
    activities: MongoActivityRepository,
) -> None:
    info = activities.collection.index_information()
    assert _keys(info) == EXPECTED_ACTIVITY_INDEXES
    assert info["activityId_unique"]["unique"] is True
    assert info["open_dueDate"]["partialFilterExpression"] == {"isOpen": True}
    assert activities.ensure_indexes() == list(EXPECTED_ACTIVITY_INDEXES)
    assert activities.collection.index_information() == info


def test_rule_and_action_indexes(rules: MongoRuleRepository, actions: MongoScheduledActionStore):
    assert _keys(rules.collection.index_information()) == {
        "ruleId_unique": [("ruleId", 1)],
        "isActive_priority": [("isActive", 1), ("priority", -1), ("ruleId", 1)],
        "priority": [("priority", -1), ("ruleId", 1)],
    }
    assert _keys(actions.collection.index_information()) == {
        "actionId_unique": [("actionId", 1)],
        "idempotencyKey_unique": [("idempotencyKey", 1)],
        "state_dueAt": [("state", 1), ("dueAt", 1), ("actionId", 1)],
        "dueAt": [("dueAt", 1), ("actionId", 1)],
        "opportunityId_state": [("opportunityId", 1), ("state", 1)],
    }
    rules.ensure_indexes()
    actions.ensure_indexes()


def test_retention_adds_a_ttl_index_and_replaces_it_when_changed(database: RecordingDatabase):
    MongoActivityRepository(database).ensure_indexes()  # type: ignore[arg-type]
    assert (
        MongoActivityRepository.TTL_INDEX
        not in database.inner["leadActivities"].index_information()
    )
    repo = MongoActivityRepository(database, retention=timedelta(days=30))  # type: ignore[arg-type]
    repo.ensure_indexes()
    ttl = repo.collection.index_information()[repo.TTL_INDEX]
    assert ttl["key"] == [("completedDate", 1)]
    assert ttl["expireAfterSeconds"] == 30 * 86400
    MongoActivityRepository(database, retention=timedelta(days=7)).ensure_indexes()  # type: ignore[arg-type]
    assert repo.collection.index_information()[repo.TTL_INDEX]["expireAfterSeconds"] == 7 * 86400
    # Without retention an existing TTL index stays: another process may rely on it.
    MongoActivityRepository(database).ensure_indexes()  # type: ignore[arg-type]
    assert repo.TTL_INDEX in repo.collection.index_information()
    with pytest.raises(InvalidInputError, match="retention"):
        MongoActivityRepository(database, retention=timedelta(0))  # type: ignore[arg-type]


def test_ttl_expires_completed_activities_only() -> None:
    # The fake expires on the next read, judged by the wall clock (a server's TTL monitor
    # runs about once a minute), so the dates here are relative to now.
    repo = MongoActivityRepository(mongomock_ng.MongoClient()["ttl"], retention=timedelta(days=1))
    repo.ensure_indexes()
    now = datetime.now(UTC)
    repo.add(
        activity("old", created_at=now - timedelta(days=5), completed_date=now - timedelta(days=2))
    )
    repo.add(
        activity(
            "recent", created_at=now - timedelta(days=5), completed_date=now - timedelta(hours=1)
        )
    )
    repo.add(activity("open", created_at=now - timedelta(days=5), due_date=now - timedelta(days=4)))
    assert [a.activity_id for a in repo.for_opportunity("opp-1")] == ["open", "recent"]


# --------------------------------------------------------------------------- index coverage

_RANGE = {"$gt", "$gte", "$lt", "$lte"}


def _criteria(
    query: dict[str, Any],
) -> tuple[dict[str, Any], set[str], set[str], list[list[dict[str, Any]]]]:
    """(equalities, $in fields, range fields, $or branch lists) of a filter, $and flattened.
    Other operators ($ne, $exists, $expr) only filter what an index scan fetched."""
    equal: dict[str, Any] = {}
    many: set[str] = set()
    ranges: set[str] = set()
    ors: list[list[dict[str, Any]]] = []

    def visit(clause: dict[str, Any]) -> None:
        for key, value in clause.items():
            if key == "$and":
                for part in value:
                    visit(part)
            elif key == "$or":
                ors.append(value)
            elif key == "$expr":
                continue
            elif isinstance(value, dict) and any(op.startswith("$") for op in value):
                if _RANGE & value.keys():
                    ranges.add(key)
                if "$in" in value:
                    many.add(key)
            else:
                equal[key] = value

    visit(query)
    return equal, many, ranges, ors


def _served_by(query: dict[str, Any], sort: list[tuple[str, int]], index: dict[str, Any]) -> bool:
    """Can ``index`` bound this query's scan and, with a sort, deliver that order?

    Equality fields may form the index's leading keys; the sort's other fields must follow in
    order (all directions equal or all reversed); with no sort, the scan must be bounded by an
    equality or range on the first key after them. A partial index counts only when the query
    repeats its filter.
    """
    keys = [(field, int(direction)) for field, direction in index["key"]]
    equal, many, ranges, _ = _criteria(query)
    partial = index.get("partialFilterExpression", {})
    if any(field not in equal or equal[field] != value for field, value in partial.items()):
        return False
    # A multi-valued $in pins a key only when no order has to come out of the index.
    pinned = set(equal) | (set() if sort else many)
    used = 0
    while used < len(keys) and keys[used][0] in pinned:
        used += 1
    rest = [(field, direction) for field, direction in sort if field not in pinned | set(partial)]
    if rest:
        tail = keys[used : used + len(rest)]
        if [field for field, _ in tail] != [field for field, _ in rest]:
            return False
        signs = {
            index_dir * sort_dir for (_, index_dir), (_, sort_dir) in zip(tail, rest, strict=True)
        }
        return len(signs) == 1
    return used > 0 or (used < len(keys) and keys[used][0] in ranges)


def _served(
    query: dict[str, Any], sort: list[tuple[str, int]], indexes: list[dict[str, Any]]
) -> bool:
    equal, many, ranges, ors = _criteria(query)
    if ors and not (equal or many or ranges) and len(ors) == 1 and len(query) == 1:
        # A bare $or runs as one index scan per branch; every branch needs its index.
        return all(_served(branch, sort, indexes) for branch in ors[0])
    return any(_served_by(query, sort, index) for index in indexes)


@pytest.mark.parametrize(
    ("query", "sort", "expected"),
    [
        ({"activityId": "a"}, [], True),
        ({"subject": "x"}, [], False),
        ({"opportunityId": "o"}, [("createdAt", 1), ("activityId", 1)], True),
        # An ordered scan of the due-date index, filtering: a page stops at ``limit`` matches.
        ({"opportunityId": "o"}, [("dueDate", 1), ("activityId", 1)], True),
        ({"opportunityId": "o"}, [("subject", 1)], False),
        ({"isOpen": True, "dueDate": {"$lt": T0}}, [("dueDate", 1), ("activityId", 1)], True),
        ({"dueDate": {"$lt": T0}}, [], True),
        ({"isOpen": False, "dueDate": {"$lt": T0}}, [("dueDate", 1), ("activityId", 1)], True),
        ({}, [("dueDate", -1), ("activityId", 1)], False),
        ({}, [("subject", 1)], False),
        ({"$or": [{"subject": "a"}, {"activityId": "b"}]}, [], False),
    ],
)
def test_the_index_checker_itself(query: dict[str, Any], sort: Any, expected: bool) -> None:
    indexes = [{"key": keys} for keys in EXPECTED_ACTIVITY_INDEXES.values()]
    indexes[5]["partialFilterExpression"] = {"isOpen": True}
    assert _served(query, sort, indexes) is expected


def _exercise_everything(
    activities: MongoActivityRepository,
    rules: MongoRuleRepository,
    actions: MongoScheduledActionStore,
) -> None:
    for i in range(12):
        activities.add(
            activity(
                f"a{i:02}",
                opportunity_id=f"opp-{i % 3}",
                customer_id=f"cust-{i % 2}",
                assigned_to=f"rep-{i % 2}" if i % 4 else None,
                created_at=T0 + timedelta(hours=i),
                scheduled_date=T0 + timedelta(hours=i) if i % 3 else None,
                due_date=T0 + timedelta(days=i % 5, hours=i) if i % 2 else None,
                metadata={"automationRuleId": "rule-1"} if i % 2 else {},
            )
        )
    activities.get("a00")
    current = activities.get("a01")
    activities.update(current.model_copy(update={"subject": "changed"}))
    with pytest.raises(StaleWriteError):
        activities.update(current)
    activities.complete("a02", outcome="successful", completed_by="rep-1", completed_at=T0)
    with pytest.raises(InvalidStateError):
        activities.complete("a02", outcome=None, completed_by=None, completed_at=T0)
    activities.complete("a03", outcome=None, completed_by=None, completed_at=T0, expected_version=1)
    as_of = T0 + timedelta(days=2)
    filters = [
        None,
        ActivityFilter(opportunity_id="opp-1"),
        ActivityFilter(customer_id="cust-1", activity_types=("call", "email")),
        ActivityFilter(assigned_to="rep-1", state="overdue", as_of=as_of),
        ActivityFilter(state="pending", as_of=as_of),
        ActivityFilter(state="completed", completed_from=T0),
        ActivityFilter(outcomes=("successful",), created_from=T0, created_to=as_of),
        ActivityFilter(automation_rule_id="rule-1", opportunity_id="opp-2"),
        ActivityFilter(due_from=T0, due_to=as_of, scheduled_from=T0),
    ]
    for f in filters:
        for field in ("created_at", "updated_at", "due_date", "scheduled_date", "completed_date"):
            for descending in (False, True):
                sort = ActivitySort(field=field, descending=descending)
                page = activities.list(f, sort=sort, limit=2)
                while page.next_cursor:
                    page = activities.list(f, sort=sort, limit=2, cursor=page.next_cursor)
    activities.for_opportunity("opp-1")
    activities.for_customer("cust-1")
    activities.timeline("opp-1")
    for assignee in (None, "rep-1"):
        activities.pending(as_of, assigned_to=assignee)
        activities.overdue(as_of, assigned_to=assignee)
    activities.upcoming(T0, timedelta(days=3))
    activities.last_activity_times(["opp-1", "opp-2"])
    for f in filters[1:4]:
        activities.statistics(f, as_of=as_of)
    activities.purge_completed(T0 + timedelta(seconds=1))
    activities.delete("a00")

    rules.create(rule("r1", priority=5))
    rules.create(rule("r2", active=False))
    rules.update(rules.get("r1"))
    rules.list()
    rules.list_active()
    rules.delete("r2")

    actions.schedule(scheduled("k1"))
    actions.schedule(scheduled("k1"))
    actions.schedule(scheduled("k2", opportunity_id="opp-2"))
    actions.schedule(scheduled("k3", T0 + timedelta(days=9)))
    claimed = actions.claim_due(T0, worker="w1", lease=timedelta(minutes=1))
    actions.mark_done(claimed[0].action_id, worker="w1", now=T0)
    actions.mark_failed(claimed[1].action_id, worker="w1", now=T0, error="x", retry_at=T0)
    actions.claim_due(T0 + timedelta(minutes=5), worker="w2")
    actions.get("act-k1")
    actions.cancel_for_opportunity("opp-1", now=T0)
    actions.list()
    actions.list(ScheduledActionState.PENDING)


def test_every_query_is_served_by_an_index(
    database: RecordingDatabase,
    activities: MongoActivityRepository,
    rules: MongoRuleRepository,
    actions: MongoScheduledActionStore,
) -> None:
    _exercise_everything(activities, rules, actions)
    indexes = {
        name: list(database.inner[name].index_information().values())
        for name in ("leadActivities", "followUpRules", "scheduledActions")
    }
    operations = {op for _, op, _, _ in database.recorder.queries}
    assert {"find", "find_one", "find_one_and_update", "replace_one", "aggregate"} <= operations
    unserved = [
        (collection, op, query, sort)
        for collection, op, query, sort in database.recorder.queries
        if not _served(query, sort, indexes[collection])
    ]
    assert unserved == []


def test_only_whole_collection_aggregates_read_everything(
    database: RecordingDatabase, activities: MongoActivityRepository
) -> None:
    activities.add(activity("a1", completed_date=T0))
    activities.statistics(None, as_of=T0)
    activities.last_activity_times()
    activities.stale_opportunities(T0)
    assert [(op, query) for _, op, query, _ in database.recorder.queries] == [
        ("aggregate", {}),
        ("aggregate", {}),
        ("aggregate", {}),
    ]


# --------------------------------------------------------------------------- documents


def test_documents_use_camel_case_and_bson_dates(
    database: RecordingDatabase, activities: MongoActivityRepository
) -> None:
    activities.add(
        activity("a1", due_date=T0 + timedelta(days=1), metadata={"automationRuleId": "rule-1"})
    )
    activities.complete("a1", outcome="successful", completed_by="rep-1", completed_at=T0)
    stored = database.inner["leadActivities"].find_one({"activityId": "a1"}, {"_id": 0})
    assert stored == {
        "activityId": "a1",
        "opportunityId": "opp-1",
        "activityType": "call",
        "subject": "call a1",
        "description": "",
        "dueDate": stored["dueDate"],
        "completedDate": stored["completedDate"],
        "completedBy": "rep-1",
        "updatedBy": "rep-1",
        "outcome": "successful",
        "metadata": {"automationRuleId": "rule-1"},
        "createdAt": stored["createdAt"],
        "updatedAt": stored["updatedAt"],
        "version": 2,
        "isOpen": False,
    }
    # BSON dates, not strings; the raw client here is not tz-aware, so they come back naive.
    assert stored["completedDate"] == T0.replace(tzinfo=None)
    assert stored["dueDate"] == (T0 + timedelta(days=1)).replace(tzinfo=None)


def test_datetimes_come_back_aware_utc_whatever_the_hosts_codec_options(
    raw_database: Any,
) -> None:
    naive = raw_database["activities"].with_options(codec_options=CodecOptions(tz_aware=False))
    repo = MongoActivityRepository(naive)
    paris = datetime(2026, 3, 2, 10, 30, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Paris")
    )
    repo.add(activity("a1", created_at=paris, due_date=paris + timedelta(hours=1)))
    loaded = repo.get("a1")
    assert loaded.created_at == paris
    assert loaded.created_at is not None and loaded.created_at.tzinfo is UTC
    raw = repo.collection.find_one({"activityId": "a1"})
    assert raw is not None and raw["dueDate"].utcoffset() == timedelta(0)


def test_stored_copies_are_truncated_to_bson_milliseconds(
    activities: MongoActivityRepository,
) -> None:
    precise = T0.replace(microsecond=123_456)
    added = activities.add(activity("a1", created_at=precise))
    assert added.created_at == T0.replace(microsecond=123_000)
    assert activities.get("a1") == added


def test_a_collection_can_be_passed_instead_of_a_database(raw_database: Any) -> None:
    repo = MongoActivityRepository(raw_database["custom"])
    repo.add(activity("a1"))
    assert raw_database["custom"].count_documents({}) == 1
    rules = MongoRuleRepository(raw_database, collection="rules2")
    rules.create(rule("r1"))
    assert raw_database["rules2"].count_documents({}) == 1
    assert "followUpRules" not in raw_database.list_collection_names()


# --------------------------------------------------------------------------- errors


def test_duplicate_keys_become_duplicate_errors(
    activities: MongoActivityRepository,
    rules: MongoRuleRepository,
    actions: MongoScheduledActionStore,
) -> None:
    activities.add(activity("a1"))
    with pytest.raises(DuplicateError) as caught:
        activities.add(activity("a1", subject="again"))
    assert isinstance(caught.value.__cause__, DuplicateKeyError)
    assert activities.get("a1").subject == "call a1"
    rules.create(rule("r1"))
    with pytest.raises(DuplicateError) as caught_rule:
        rules.create(rule("r1"))
    assert isinstance(caught_rule.value.__cause__, DuplicateKeyError)
    actions.schedule(scheduled("k1"))
    assert actions.schedule(scheduled("k1").model_copy(update={"action_id": "other"}))[1] is False
    with pytest.raises(DuplicateError):
        actions.schedule(scheduled("k2").model_copy(update={"action_id": "act-k1"}))


def test_optimistic_concurrency_uses_the_version_in_the_filter(
    database: RecordingDatabase, activities: MongoActivityRepository
) -> None:
    first = activities.add(activity("a1"))
    second = activities.update(first.model_copy(update={"subject": "one"}))
    assert second.version == 2
    with pytest.raises(StaleWriteError):
        activities.update(first.model_copy(update={"subject": "lost"}))
    activities.delete("a1")
    with pytest.raises(NotFoundError):
        activities.update(second)
    replaces = [q for _, op, q, _ in database.recorder.queries if op == "replace_one"]
    assert replaces[0] == {"activityId": "a1", "version": 1}


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.for_opportunity({"$ne": None}),
        lambda r: r.for_customer({"$gt": ""}),
        lambda r: r.get({"$regex": ".*"}),
        lambda r: r.delete("$where"),
        lambda r: r.pending(T0, assigned_to={"$exists": True}),
        lambda r: r.overdue({"$gt": T0}),
        lambda r: r.last_activity_times([{"$ne": None}]),
        lambda r: r.list(ActivityFilter.model_construct(opportunity_id={"$ne": None})),
        lambda r: r.list(ActivityFilter.model_construct(activity_types=({"$ne": "x"},))),
        lambda r: r.statistics(ActivityFilter.model_construct(assigned_to={"$ne": 1}), as_of=T0),
        lambda r: r.complete("a1", outcome={"$ne": None}, completed_by=None, completed_at=T0),
    ],
)
def test_caller_values_never_reach_a_query_as_operators(
    database: RecordingDatabase, activities: MongoActivityRepository, call: Any
) -> None:
    activities.add(activity("a1"))
    database.recorder.queries.clear()
    with pytest.raises(UnsafeQueryError) as caught:
        call(activities)
    assert caught.value.field
    assert isinstance(caught.value, InvalidInputError)
    assert database.recorder.queries == []


def test_the_guard_and_the_models_refuse_operator_values(
    rules: MongoRuleRepository, actions: MongoScheduledActionStore
) -> None:
    with pytest.raises(UnsafeQueryError, match="opportunity_id"):
        guard_literal("opportunity_id", {"$ne": None})
    with pytest.raises(UnsafeQueryError, match="ids"):
        guard_literal("ids", ["ok", ("nested", {"$gt": 1})])
    assert guard_literal("ids", ["a", "b"]) == ["a", "b"]
    with pytest.raises(ValidationError):
        ActivityFilter(opportunity_id={"$ne": None})  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ActivityFilter(customer_id="$where")
    with pytest.raises(UnsafeQueryError):
        rules.get({"$ne": None})  # type: ignore[arg-type]
    with pytest.raises(UnsafeQueryError):
        actions.claim_due(T0, worker={"$ne": None})  # type: ignore[arg-type]
    with pytest.raises(UnsafeQueryError):
        actions.cancel_for_opportunity({"$ne": None}, now=T0)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_models_broken_after_validation_are_not_stored(
    activities: MongoActivityRepository, rules: MongoRuleRepository
) -> None:
    broken = activity("a1")
    broken.opportunity_id = {"$ne": None}  # type: ignore[assignment]
    with pytest.raises(ValidationError):
        activities.add(broken)
    with pytest.raises(InvalidInputError, match="activity"):
        activities.add({"activityId": "a1"})  # type: ignore[arg-type]
    assert activities.collection.count_documents({}) == 0
    stored = rules.create(rule("r1"))
    stored.priority = "high"  # type: ignore[assignment]
    with pytest.raises(ValidationError):
        rules.update(stored)
    assert rules.get("r1").priority == 0


def test_bad_arguments_are_invalid_input(activities: MongoActivityRepository) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        activities.list(limit=1001)
    with pytest.raises(InvalidInputError, match="limit"):
        activities.overdue(T0, limit=0)
    with pytest.raises(InvalidInputError, match="as_of"):
        activities.overdue(datetime(2026, 1, 1))
    with pytest.raises(InvalidInputError, match="cursor"):
        activities.list(cursor="not a cursor")


# --------------------------------------------------------------------------- behaviour


def test_keyset_pages_put_missing_dates_first_ascending_and_last_descending(
    activities: MongoActivityRepository,
) -> None:
    for i in range(7):
        due = T0 + timedelta(days=i % 3) if i % 3 else None
        activities.add(activity(f"a{i}", due_date=due))
    for descending in (False, True):
        sort = ActivitySort(field="due_date", descending=descending)
        seen: list[str] = []
        page = activities.list(sort=sort, limit=2)
        while True:
            seen += [a.activity_id for a in page.items]
            if page.next_cursor is None:
                break
            page = activities.list(sort=sort, limit=2, cursor=page.next_cursor)
        ascending = ["a0", "a3", "a6", "a1", "a4", "a2", "a5"]
        assert seen == (ascending[::-1] if descending else ascending)


def test_statistics_run_as_one_pipeline(
    database: RecordingDatabase, activities: MongoActivityRepository
) -> None:
    activities.add(activity("a1", assigned_to="rep-1", due_date=T0 + timedelta(hours=1)))
    activities.add(activity("a2", opportunity_id="opp-2", created_at=T0 + timedelta(hours=1)))
    activities.add(activity("a3", activity_type="email", created_at=None))
    activities.complete(
        "a1", outcome="converted", completed_by=None, completed_at=T0 + timedelta(hours=3)
    )
    activities.add(activity("a4", due_date=T0 + timedelta(hours=1)))
    database.recorder.queries.clear()
    stats = activities.statistics(None, as_of=T0 + timedelta(hours=2))
    assert [op for _, op, _, _ in database.recorder.queries] == ["aggregate"]
    assert stats.total == 4
    assert stats.by_type == {"call": 3, "email": 1}
    assert stats.by_state == {"completed": 1, "pending": 2, "overdue": 1}
    assert stats.by_outcome == {"converted": 1}
    assert stats.by_assignee == {"rep-1": 1}
    assert stats.completion_rate == 0.25
    assert stats.mean_time_to_complete == timedelta(hours=3)
    assert stats.mean_time_to_first_completion == timedelta(hours=3)
    empty = activities.statistics(ActivityFilter(opportunity_id="none"), as_of=T0)
    assert (empty.total, empty.by_state, empty.completion_rate) == (0, {}, 0.0)
    assert empty.mean_time_to_complete is None


def test_two_workers_never_claim_the_same_action(actions: MongoScheduledActionStore) -> None:
    for i in range(60):
        actions.schedule(scheduled(f"k{i:02}", T0 - timedelta(minutes=i)))
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def work(worker: str) -> None:
        barrier.wait()
        mine: list[str] = []
        while batch := actions.claim_due(T0, worker=worker, limit=3):
            mine += [a.action_id for a in batch]
        claimed[worker] = mine

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [action_id for ids in claimed.values() for action_id in ids]
    assert sorted(every) == sorted(f"act-k{i:02}" for i in range(60))
    for ids in claimed.values():  # each worker got its actions oldest due first
        assert ids == sorted(ids, reverse=True)


def test_an_expired_lease_on_the_last_attempt_parks_the_action(
    actions: MongoScheduledActionStore,
) -> None:
    actions.schedule(scheduled("k1", max_attempts=1))
    [first] = actions.claim_due(T0, worker="w1", lease=timedelta(minutes=1))
    assert first.attempts == 1
    assert actions.claim_due(T0 + timedelta(minutes=2), worker="w2") == []
    parked = actions.get("act-k1")
    assert parked.state is ScheduledActionState.PARKED
    assert parked.lease_owner is None
    with pytest.raises(ConflictError):
        actions.mark_done("act-k1", worker="w1", now=T0)
    retried = actions.retry("act-k1", now=T0 + timedelta(minutes=3))
    assert (retried.state, retried.attempts) == (ScheduledActionState.PENDING, 0)


# --------------------------------------------------------------------------- the shared contract


class _OnFake:
    @pytest.fixture(autouse=True)
    def _fresh_database(self) -> None:
        self.database = RecordingDatabase(mongomock_ng.MongoClient()["leadflow"])


@on_server
class _OnServer:
    @pytest.fixture(autouse=True)
    def _fresh_database(self) -> Iterator[None]:
        with server_database() as database:
            self.database = RecordingDatabase(database)
            yield


class _Activities:
    database: RecordingDatabase

    def make_repository(self) -> MongoActivityRepository:
        repo = MongoActivityRepository(self.database)  # type: ignore[arg-type]
        repo.ensure_indexes()
        return repo


class _Rules:
    database: RecordingDatabase

    def make_repository(self) -> MongoRuleRepository:
        repo = MongoRuleRepository(self.database)  # type: ignore[arg-type]
        repo.ensure_indexes()
        return repo


class _Actions:
    database: RecordingDatabase

    def make_store(self) -> MongoScheduledActionStore:
        store = MongoScheduledActionStore(self.database)  # type: ignore[arg-type]
        store.ensure_indexes()
        return store


class TestActivityContractOnFake(_OnFake, _Activities, ActivityRepositoryContract):
    pass


class TestRuleContractOnFake(_OnFake, _Rules, RuleRepositoryContract):
    pass


class TestScheduledActionContractOnFake(_OnFake, _Actions, ScheduledActionStoreContract):
    pass


class TestActivityContractOnServer(_OnServer, _Activities, ActivityRepositoryContract):
    pass


class TestRuleContractOnServer(_OnServer, _Rules, RuleRepositoryContract):
    pass


class TestScheduledActionContractOnServer(_OnServer, _Actions, ScheduledActionStoreContract):
    pass


def _machine_repository() -> MongoActivityRepository:
    repo = MongoActivityRepository(mongomock_ng.MongoClient()["machine"])
    repo.ensure_indexes()
    return repo


TestActivityMachineOnFake = activity_state_machine(_machine_repository)
