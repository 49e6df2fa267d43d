"""MongoDB test infrastructure: a recording wrapper (every query, one lock for per-document
atomicity the fake lacks), fresh databases on mongomock-ng or a real server, databases whose
every call fails (to inject driver errors), and the index-coverage checker."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import mongomock_ng
import pytest

from leadflow.models import Activity, FollowUpRule
from leadflow.ports import Storage
from leadflow.records import AuditEntry, ScheduledAction
from leadflow.stores.mongo import (
    MongoActivityRepository,
    MongoRuleRepository,
    MongoScheduledActionStore,
    mongo_storage,
)

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


# --------------------------------------------------------------------------- failures


class FailingCollection:
    """A collection whose every data call raises ``error``, as the driver would on a lost
    connection or a refused write; binding it (codec options) works as usual."""

    def __init__(self, inner: Any, error: BaseException) -> None:
        self._inner = inner
        self._error = error

    @property
    def codec_options(self) -> Any:
        return self._inner.codec_options

    def with_options(self, **options: Any) -> FailingCollection:
        return FailingCollection(self._inner.with_options(**options), self._error)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        getattr(self._inner, name)  # only what a collection has

        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self._error

        return fail


class FailingDatabase:
    """A database whose collections all fail with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self._inner: Any = mongomock_ng.MongoClient()["failing"]
        self.error = error

    def __getitem__(self, name: str) -> FailingCollection:
        return FailingCollection(self._inner[name], self.error)


# --------------------------------------------------------------------------- index coverage

_RANGE = {"$gt", "$gte", "$lt", "$lte"}


def criteria(
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


def served_by(query: dict[str, Any], sort: list[tuple[str, int]], index: dict[str, Any]) -> bool:
    """Can ``index`` bound this query's scan and, with a sort, deliver that order?

    Equality fields may form the index's leading keys; the sort's other fields must follow in
    order (all directions equal or all reversed); with no sort, the scan must be bounded by an
    equality or range on the first key after them. A partial index counts only when the query
    repeats its filter.
    """
    keys = [(field, int(direction)) for field, direction in index["key"]]
    equal, many, ranges, _ = criteria(query)
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


def served(
    query: dict[str, Any], sort: list[tuple[str, int]], indexes: list[dict[str, Any]]
) -> bool:
    """Whether one of ``indexes`` (``index_information()`` values) serves the query."""
    equal, many, ranges, ors = criteria(query)
    if ors and not (equal or many or ranges) and len(ors) == 1 and len(query) == 1:
        # A bare $or runs as one index scan per branch; every branch needs its index.
        return all(served(branch, sort, indexes) for branch in ors[0])
    return any(served_by(query, sort, index) for index in indexes)


# --------------------------------------------------------------------------- fixtures and data
# Test modules bind these fixtures to module names of their own.


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
def storage(database: RecordingDatabase) -> Storage:
    return mongo_storage(database)  # type: ignore[arg-type]


@pytest.fixture
def activities(storage: Storage) -> MongoActivityRepository:
    assert isinstance(storage.activities, MongoActivityRepository)
    return storage.activities


@pytest.fixture
def rules(storage: Storage) -> MongoRuleRepository:
    assert isinstance(storage.rules, MongoRuleRepository)
    return storage.rules


@pytest.fixture
def actions(storage: Storage) -> MongoScheduledActionStore:
    assert isinstance(storage.scheduled, MongoScheduledActionStore)
    return storage.scheduled


# --------------------------------------------------------------------------- builders


def activity(activity_id: str, **fields: Any) -> Activity:
    data: dict[str, Any] = {
        "activity_id": activity_id,
        "opportunity_id": "opp-1",
        "activity_type": "call",
        "subject": f"call {activity_id}",
        "created_at": T0,
    }
    return Activity.model_validate({**data, **fields})


def rule(rule_id: str, **fields: Any) -> FollowUpRule:
    data: dict[str, Any] = {
        "rule_id": rule_id,
        "name": f"rule {rule_id}",
        "trigger": {"event_type": "opportunity.created", "conditions": []},
        "actions": [{"action_type": "send_notification", "template": "welcome"}],
    }
    return FollowUpRule.model_validate({**data, **fields})


def scheduled(key: str, due_at: datetime = T0, **fields: Any) -> ScheduledAction:
    data: dict[str, Any] = {
        "action_id": f"act-{key}",
        "idempotency_key": key,
        "event": {"id": "ev-1", "type": "opportunity.created", "time": T0},
        "rule_id": "rule-1",
        "action": {"action_type": "create_activity", "subject": "Call back"},
        "opportunity_id": "opp-1",
        "due_at": due_at,
        "created_at": T0,
    }
    return ScheduledAction.model_validate({**data, **fields})


def audit(entry_id: str, **fields: Any) -> AuditEntry:
    data: dict[str, Any] = {
        "entry_id": entry_id,
        "subject": "rule",
        "subject_id": "rule-1",
        "change": "updated",
        "actor": "admin",
        "at": T0,
    }
    return AuditEntry.model_validate({**data, **fields})
