"""MongoDB errors in leadflow's tree: duplicate and open-key collisions, driver failures and
server limits (injected: no fake enforces them), operator injection and bad arguments."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from bson.errors import InvalidBSON, InvalidDocument
from pydantic import ValidationError
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteError,
)

from leadflow import (
    DuplicateError,
    InvalidInputError,
    LeadflowError,
    OpenActivityExistsError,
    StaleWriteError,
    StorageError,
    UnavailableError,
    UnsafeQueryError,
)
from leadflow.ports import (
    ActivityRepository,
    AuditLog,
    CounterStore,
    EnrollmentStore,
    JobStore,
    RuleRepository,
    ScheduledActionStore,
    SequenceRepository,
    Storage,
)
from leadflow.queries import ActivityFilter
from leadflow.records import SlotState
from leadflow.sequences import SequenceStatus
from leadflow.stores.mongo import (
    MongoActivityRepository,
    MongoAuditLog,
    MongoCounterStore,
    MongoEnrollmentStore,
    MongoJobStore,
    MongoRuleRepository,
    MongoScheduledActionStore,
    MongoSequenceRepository,
    driver_errors,
    guard_literal,
    mongo_storage,
)
from leadflow.testing.contracts import make_enrollment, make_sequence

from . import mongo_support
from .mongo_support import (
    T0,
    FailingDatabase,
    RecordingDatabase,
    activity,
    audit,
    rule,
    scheduled,
)

# The shared fixtures, used by name.
raw_database = mongo_support.raw_database
database = mongo_support.database
storage = mongo_support.storage
activities = mongo_support.activities
rules = mongo_support.rules
actions = mongo_support.actions

# --------------------------------------------------------------------------- open keys


def test_the_open_key_collision_is_told_apart_from_the_id_collision(
    activities: MongoActivityRepository,
) -> None:
    activities.add(activity("a1", open_key="k"))
    with pytest.raises(OpenActivityExistsError) as on_key:
        activities.add(activity("a2", open_key="k"))
    assert isinstance(on_key.value.__cause__, DuplicateKeyError)
    with pytest.raises(DuplicateError) as on_id:  # both collide: the id is reported
        activities.add(activity("a1", open_key="k"))
    assert isinstance(on_id.value.__cause__, DuplicateKeyError)
    # Reopening the completed holder while another open activity holds its key is refused.
    activities.complete("a1", outcome=None, completed_by=None, completed_at=T0)
    activities.add(activity("a2", open_key="k"))
    reopened = activities.get("a1").model_copy(update={"completed_date": None, "outcome": None})
    with pytest.raises(OpenActivityExistsError):
        activities.update(reopened)
    assert activities.get("a1").completed_date == T0


def test_only_open_activities_hold_their_key(activities: MongoActivityRepository) -> None:
    activities.add(activity("done", open_key="k", completed_date=T0))
    activities.add(activity("open", open_key="k"))
    held = {d["activityId"]: d.get("openKeyHeld") for d in activities.collection.find({})}
    assert held == {"open": "k", "done": None}
    # A completed activity may not take a key an open one holds (the id is reported first).
    with pytest.raises(OpenActivityExistsError):
        activities.add(activity("late", open_key="k", completed_date=T0))
    with pytest.raises(DuplicateError):
        activities.add(activity("done", open_key="k", completed_date=T0))
    activities.complete("open", outcome=None, completed_by=None, completed_at=T0)
    assert activities.collection.count_documents({"openKeyHeld": "k"}) == 0
    assert activities.get("open").open_key == "k"
    activities.add(activity("late", open_key="k", completed_date=T0))


def test_concurrent_adds_with_one_open_key_have_one_winner(
    activities: MongoActivityRepository,
) -> None:
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def add(n: int) -> None:
        barrier.wait()
        try:
            activities.add(activity(f"a{n}", open_key="opp-1|rule-1"))
            outcomes.append("added")
        except OpenActivityExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=add, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["added"] + ["refused"] * 5
    assert activities.collection.count_documents({"openKey": "opp-1|rule-1"}) == 1


# --------------------------------------------------------------------------- errors

_STORE_CALLS: dict[str, Callable[[Storage], Any]] = {
    "activities.add": lambda s: s.activities.add(activity("a1")),
    "activities.update": lambda s: s.activities.update(activity("a1")),
    "activities.complete": lambda s: s.activities.complete(
        "a1", outcome=None, completed_by=None, completed_at=T0
    ),
    "activities.delete": lambda s: s.activities.delete("a1"),
    "activities.get": lambda s: s.activities.get("a1"),
    "activities.list": lambda s: s.activities.list(),
    "activities.for_opportunity": lambda s: s.activities.for_opportunity("o", assigned_to="u"),
    "activities.for_customer": lambda s: s.activities.for_customer("c"),
    "activities.pending": lambda s: s.activities.pending(T0),
    "activities.overdue": lambda s: s.activities.overdue(T0),
    "activities.upcoming": lambda s: s.activities.upcoming(T0, timedelta(days=1)),
    "activities.timeline": lambda s: s.activities.timeline("o"),
    "activities.statistics": lambda s: s.activities.statistics(None, as_of=T0),
    "activities.last_activity_times": lambda s: s.activities.last_activity_times(),
    "activities.stale_opportunities": lambda s: s.activities.stale_opportunities(
        T0, after=(T0, "o")
    ),
    "activities.purge_completed": lambda s: s.activities.purge_completed(T0),
    "rules.create": lambda s: s.rules.create(rule("r1")),
    "rules.get": lambda s: s.rules.get("r1"),
    "rules.list": lambda s: s.rules.list(),
    "rules.list_active": lambda s: s.rules.list_active(),
    "rules.update": lambda s: s.rules.update(rule("r1")),
    "rules.delete": lambda s: s.rules.delete("r1"),
    "rules.stamp": lambda s: s.rules.stamp(),
    "scheduled.schedule": lambda s: s.scheduled.schedule(scheduled("k")),
    "scheduled.get": lambda s: s.scheduled.get("a"),
    "scheduled.claim_due": lambda s: s.scheduled.claim_due(T0, worker="w"),
    "scheduled.mark_done": lambda s: s.scheduled.mark_done("a", worker="w", now=T0),
    "scheduled.mark_done_many": lambda s: s.scheduled.mark_done_many(["a"], worker="w", now=T0),
    "scheduled.mark_failed": lambda s: s.scheduled.mark_failed(
        "a", worker="w", now=T0, error="e", retry_at=T0
    ),
    "scheduled.retry": lambda s: s.scheduled.retry("a", now=T0),
    "scheduled.cancel_for_opportunity": lambda s: s.scheduled.cancel_for_opportunity("o", now=T0),
    "scheduled.cancel_for_rule": lambda s: s.scheduled.cancel_for_rule("r", now=T0),
    "scheduled.purge_finished": lambda s: s.scheduled.purge_finished(T0),
    "scheduled.list": lambda s: s.scheduled.list(),
    "scheduled.next_due": lambda s: s.scheduled.next_due(),
    "counters.next": lambda s: s.counters.next("n"),
    "audit.append": lambda s: s.audit.append(audit("e1")),
    "audit.list": lambda s: s.audit.list("rule"),
    "jobs.claim_slot": lambda s: s.jobs.claim_slot(
        "j", "s", worker="w", now=T0, lease=timedelta(minutes=1), expires_at=T0
    ),
    "jobs.finish_slot": lambda s: s.jobs.finish_slot(
        "j", "s", token="t", now=T0, state=SlotState.SUCCEEDED, counts={}
    ),
    "jobs.get_slot": lambda s: s.jobs.get_slot("j", "s"),
    "jobs.mark": lambda s: s.jobs.mark("k", now=T0, expires_at=T0),
    "jobs.is_marked": lambda s: s.jobs.is_marked("k", now=T0),
    "jobs.unmark": lambda s: s.jobs.unmark("k"),
    "jobs.get_value": lambda s: s.jobs.get_value("k"),
    "jobs.set_value": lambda s: s.jobs.set_value("k", "v", expected=None),
    "jobs.purge_expired": lambda s: s.jobs.purge_expired(T0),
    "sequences.add": lambda s: s.sequences.add(make_sequence("s1")),
    "sequences.get": lambda s: s.sequences.get("s1"),
    "sequences.versions": lambda s: s.sequences.versions("s1"),
    "sequences.list": lambda s: s.sequences.list(),
    "sequences.set_status": lambda s: s.sequences.set_status("s1", 1, SequenceStatus.ACTIVE),
    "sequences.stamp": lambda s: s.sequences.stamp(),
    "enrollments.enroll": lambda s: s.enrollments.enroll(make_enrollment("e1")),
    "enrollments.get": lambda s: s.enrollments.get("e1"),
    "enrollments.update": lambda s: s.enrollments.update(make_enrollment("e1")),
    "enrollments.active_for": lambda s: s.enrollments.active_for("o"),
    "enrollments.list": lambda s: s.enrollments.list(sequence_id="s1"),
}

_TRANSLATIONS: list[tuple[BaseException, type[LeadflowError]]] = [
    (AutoReconnect("connection reset"), UnavailableError),
    (NetworkTimeout("timed out"), UnavailableError),
    (ServerSelectionTimeoutError("no primary"), UnavailableError),
    (ConnectionFailure("refused"), UnavailableError),
    (ExecutionTimeout("maxTimeMS", code=50), UnavailableError),
    (OperationFailure("not primary", code=10107), UnavailableError),
    (OperationFailure("unauthorized", code=13), StorageError),
    (OperationFailure("nested too deep", code=15), InvalidInputError),
    (WriteError("BSONObjectTooLarge", code=10334), InvalidInputError),
    (WriteError("update result too large", code=17419), InvalidInputError),
    (DocumentTooLarge("BSON document too large"), InvalidInputError),
    (InvalidDocument("cannot encode"), InvalidInputError),
    (OverflowError("MongoDB can only handle up to 8-byte ints"), InvalidInputError),
    (InvalidBSON("bad document from the server"), StorageError),
]


def test_every_store_method_is_translated() -> None:
    ports = {
        MongoActivityRepository: ActivityRepository,
        MongoRuleRepository: RuleRepository,
        MongoScheduledActionStore: ScheduledActionStore,
        MongoCounterStore: CounterStore,
        MongoAuditLog: AuditLog,
        MongoJobStore: JobStore,
        MongoSequenceRepository: SequenceRepository,
        MongoEnrollmentStore: EnrollmentStore,
    }
    for store, port in ports.items():
        methods = [name for name in dir(port) if not name.startswith("_")]
        untranslated = [
            name for name in methods if not hasattr(getattr(store, name), "__wrapped__")
        ]
        assert untranslated == [], store.__name__
    assert sorted(_STORE_CALLS) == sorted(
        f"{bundle}.{name}"
        for bundle, port in (
            ("activities", ActivityRepository),
            ("rules", RuleRepository),
            ("scheduled", ScheduledActionStore),
            ("counters", CounterStore),
            ("audit", AuditLog),
            ("jobs", JobStore),
            ("sequences", SequenceRepository),
            ("enrollments", EnrollmentStore),
        )
        for name in dir(port)
        if not name.startswith("_")
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    _TRANSLATIONS,
    ids=[f"{type(e).__name__}-{getattr(e, 'code', None)}" for e, _ in _TRANSLATIONS],
)
def test_driver_errors_become_leadflow_errors(
    error: BaseException, expected: type[LeadflowError]
) -> None:
    failing = FailingDatabase(error)
    storage = mongo_storage(failing, ensure_indexes=False)  # type: ignore[arg-type]
    for name, call in _STORE_CALLS.items():
        with pytest.raises(LeadflowError) as caught:
            call(storage)
        assert type(caught.value) is expected, (name, caught.value)
        assert caught.value.__cause__ is error, name
        if expected is InvalidInputError:
            assert isinstance(caught.value, InvalidInputError) and caught.value.field, name
    with pytest.raises(expected) as at_start:
        mongo_storage(failing)  # type: ignore[arg-type]
    assert at_start.value.__cause__ is error


def test_a_duplicate_key_no_store_expects_is_a_duplicate_error() -> None:
    # e.g. a unique index the host added: what no store method handles itself.
    error = DuplicateKeyError("E11000 duplicate key", code=11000)
    with pytest.raises(DuplicateError) as caught, driver_errors("activity"):
        raise error
    assert caught.value.__cause__ is error
    storage = mongo_storage(FailingDatabase(error), ensure_indexes=False)  # type: ignore[arg-type]
    with pytest.raises(DuplicateError):
        storage.rules.update(rule("r1"))
    with pytest.raises(DuplicateError):
        storage.activities.update(activity("a1"))
    assert storage.jobs.mark("k", now=T0, expires_at=T0) is False  # the mark is taken


def test_a_value_the_driver_cannot_encode_is_invalid_input(storage: Storage) -> None:
    # The model refuses these; a copy changed after validation is validated again before the
    # write (pydantic's ValidationError, naming the field), so nothing reaches the driver.
    for before in ({"n": 2**63}, {"a\x00b": 1}):
        with pytest.raises(ValidationError) as caught:
            storage.audit.append(audit("e1").model_copy(update={"before": before}))
        assert caught.value.errors()[0]["loc"][0] == "before"
    assert storage.audit.list() == []


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
    replaces = [q for _, op, q, _ in database.recorder.queries if op == "replace_one"]
    assert replaces[0] == {"activityId": "a1", "version": 1, "openKey": None}


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.for_opportunity({"$ne": None}),
        lambda r: r.for_opportunity("opp-1", assigned_to={"$ne": None}),
        lambda r: r.for_customer({"$gt": ""}),
        lambda r: r.timeline("opp-1", assigned_to="$where"),
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
    assert database.recorder.queries == []


def test_the_guard_and_the_models_refuse_operator_values(storage: Storage) -> None:
    with pytest.raises(UnsafeQueryError, match="opportunity_id"):
        guard_literal("opportunity_id", {"$ne": None})
    with pytest.raises(UnsafeQueryError, match="ids"):
        guard_literal("ids", ["ok", ("nested", {"$gt": 1})])
    assert guard_literal("ids", ["a", "b"]) == ["a", "b"]
    with pytest.raises(ValidationError):
        ActivityFilter(opportunity_id={"$ne": None})  # type: ignore[arg-type]
    for call in (
        lambda: storage.rules.get({"$ne": None}),  # type: ignore[arg-type]
        lambda: storage.scheduled.claim_due(T0, worker={"$ne": None}),  # type: ignore[arg-type]
        lambda: storage.scheduled.cancel_for_rule({"$ne": None}, now=T0),  # type: ignore[arg-type]
    ):
        with pytest.raises(UnsafeQueryError):
            call()
    for bad in ({"$ne": None}, "nonsense"):
        with pytest.raises(InvalidInputError, match="subject"):
            storage.audit.list(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="filter"):
        storage.activities.list({"opportunityId": "x"})  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_models_broken_after_validation_are_not_stored(storage: Storage) -> None:
    with pytest.raises(ValidationError):  # records are immutable: no assignment after the check
        activity("a1").opportunity_id = {"$ne": None}  # type: ignore[assignment]
    with pytest.raises(ValidationError):  # a changed copy is validated like a new record
        activity("a1").model_copy(update={"opportunity_id": {"$ne": None}})
    # Only an unchecked copy (leadflow's own shortcut) carries it: the store still refuses it.
    broken = activity("a1")._evolve(opportunity_id={"$ne": None})
    with pytest.raises((ValidationError, InvalidInputError)):
        storage.activities.add(broken)
    with pytest.raises(InvalidInputError, match="activity"):
        storage.activities.add({"activityId": "a1"})  # type: ignore[arg-type]
    assert storage.activities.list().items == []
    stored = storage.rules.create(rule("r1"))
    stored.priority = "high"  # type: ignore[assignment]
    with pytest.raises(ValidationError):
        storage.rules.update(stored)
    assert storage.rules.get("r1").priority == 0


def test_bad_arguments_are_invalid_input(storage: Storage) -> None:
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: storage.activities.list(limit=1001), "limit"),
        (lambda: storage.activities.overdue(T0, limit=0), "limit"),
        (lambda: storage.activities.overdue(datetime(2026, 1, 1)), "as_of"),
        (lambda: storage.activities.list(cursor="not a cursor"), "cursor"),
        (lambda: storage.scheduled.purge_finished(T0, limit=0), "limit"),
        (lambda: storage.scheduled.claim_due(T0, worker="w", lease=timedelta(0)), "lease"),
        (lambda: storage.counters.next(""), "name"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidInputError) as caught:
            call()
        assert caught.value.field == field


def test_dollar_strings_in_counter_audit_and_job_stores_are_data(storage: Storage) -> None:
    """The counter, audit and job stores take strings only and use them as ``_id`` or equality
    values, where MongoDB reads a ``$`` string as data: it names its own record and matches
    nothing else (docs/mongodb.md, "Injection")."""
    assert storage.counters.next("plain") == 1
    assert storage.counters.next("$where") == 1
    assert storage.counters.next("$where") == 2
    assert storage.counters.next("plain") == 2
    assert storage.audit.list("activity", "$ne") == []
    assert storage.jobs.set_value("$gt", "a", expected=None)
    assert storage.jobs.get_value("$gt") == "a" and storage.jobs.get_value("x") is None
    for mapping in ({"$ne": None}, {"$gt": ""}):
        with pytest.raises(InvalidInputError):
            storage.counters.next(mapping)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            storage.jobs.is_marked(mapping, now=T0)  # type: ignore[arg-type]
