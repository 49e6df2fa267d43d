"""The MongoDB index strategy, and that every query the stores issue is served by an index."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock_ng
import pytest

from leadflow import (
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    OpenActivityExistsError,
    StaleWriteError,
)
from leadflow.models import ActivityState, ActivityType, Outcome
from leadflow.ports import (
    Storage,
)
from leadflow.queries import ActivityFilter, ActivitySort
from leadflow.records import ScheduledActionState, SlotState
from leadflow.sequences import EnrollmentState, SequenceStatus
from leadflow.stores.mongo import (
    DEFAULT_COLLECTIONS,
    MongoActivityRepository,
    mongo_storage,
)
from leadflow.testing.contracts import (
    make_arrival,
    make_change,
    make_completion,
    make_enrollment,
    make_sequence,
)

from . import mongo_support
from .mongo_support import (
    T0,
    RecordingDatabase,
    activity,
    audit,
    rule,
    scheduled,
    served,
)

# The shared fixtures, used by name.
raw_database = mongo_support.raw_database
database = mongo_support.database
storage = mongo_support.storage
activities = mongo_support.activities
rules = mongo_support.rules
actions = mongo_support.actions

# --------------------------------------------------------------------------- indexes

EXPECTED_ACTIVITY_INDEXES = {
    "activityId_unique": [("activityId", 1)],
    "openKeyHeld_unique": [("openKeyHeld", 1)],
    "opportunityId_activityType": [("opportunityId", 1), ("activityType", 1)],
    "opportunityId_createdAt": [("opportunityId", 1), ("createdAt", 1), ("activityId", 1)],
    "opportunityId_assignedTo_createdAt": [
        ("opportunityId", 1),
        ("assignedTo", 1),
        ("createdAt", 1),
        ("activityId", 1),
    ],
    "customerId_createdAt": [("customerId", 1), ("createdAt", 1), ("activityId", 1)],
    "customerId_assignedTo_createdAt": [
        ("customerId", 1),
        ("assignedTo", 1),
        ("createdAt", 1),
        ("activityId", 1),
    ],
    "assignedTo_dueDate": [("assignedTo", 1), ("dueDate", 1), ("activityId", 1)],
    "open_dueDate": [("dueDate", 1), ("activityId", 1)],
    "dueDate": [("dueDate", -1), ("activityId", -1)],
    "scheduledDate": [("scheduledDate", 1), ("activityId", 1)],
    "createdAt": [("createdAt", 1), ("activityId", 1)],
    "updatedAt": [("updatedAt", 1), ("activityId", 1)],
    "completedDate": [("completedDate", 1), ("activityId", 1)],
}


def _keys(info: Mapping[str, Any]) -> dict[str, list[tuple[str, int]]]:
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
    assert info["openKeyHeld_unique"]["unique"] is True
    assert info["openKeyHeld_unique"]["sparse"] is True
    assert info["open_dueDate"]["partialFilterExpression"] == {"isOpen": True}
    assert activities.ensure_indexes() == list(EXPECTED_ACTIVITY_INDEXES)
    assert activities.collection.index_information() == info


def test_the_other_collections_indexes(storage: Storage, raw_database: Any) -> None:
    assert _keys(raw_database["followUpRules"].index_information()) == {
        "ruleId_unique": [("ruleId", 1)],
        "isActive_priority": [("isActive", 1), ("priority", -1), ("ruleId", 1)],
        "priority": [("priority", -1), ("ruleId", 1)],
    }
    assert _keys(raw_database["scheduledActions"].index_information()) == {
        "actionId_unique": [("actionId", 1)],
        "idempotencyKey_unique": [("idempotencyKey", 1)],
        "state_dueAt": [("state", 1), ("dueAt", 1), ("actionId", 1)],
        "partition_state_dueAt": [("partition", 1), ("state", 1), ("dueAt", 1), ("actionId", 1)],
        "dueAt": [("dueAt", 1), ("actionId", 1)],
        "opportunityId_state": [("opportunityId", 1), ("state", 1)],
        "ruleId_state_dueAt": [("ruleId", 1), ("state", 1), ("dueAt", 1), ("actionId", 1)],
        "state_finishedAt": [("state", 1), ("finishedAt", 1)],
    }
    assert _keys(raw_database["sequences"].index_information()) == {
        "sequenceId_version_unique": [("sequenceId", 1), ("version", 1)],
    }
    enrollment_indexes = raw_database["sequenceEnrollments"].index_information()
    assert _keys(enrollment_indexes) == {
        "enrollmentId_unique": [("enrollmentId", 1)],
        "sequenceId_opportunityId_active_unique": [("sequenceId", 1), ("opportunityId", 1)],
        "opportunityId_enrolledAt": [("opportunityId", 1), ("enrolledAt", 1), ("enrollmentId", 1)],
        "sequenceId_enrolledAt": [("sequenceId", 1), ("enrolledAt", 1), ("enrollmentId", 1)],
        "state_enrolledAt": [("state", 1), ("enrolledAt", 1), ("enrollmentId", 1)],
        "enrolledAt": [("enrolledAt", 1), ("enrollmentId", 1)],
    }
    one_active = enrollment_indexes["sequenceId_opportunityId_active_unique"]
    assert one_active["unique"] is True
    assert one_active["partialFilterExpression"] == {"state": "active"}
    assert _keys(raw_database["leadflowAudit"].index_information()) == {
        "subject_at": [("subject", 1), ("at", 1), ("_id", 1)],
        "subjectId_at": [("subjectId", 1), ("at", 1), ("_id", 1)],
        "at": [("at", 1), ("_id", 1)],
    }
    mongo_storage(raw_database)  # idempotent


def test_retention_adds_a_ttl_index_and_replaces_it_when_changed(
    database: RecordingDatabase,
) -> None:
    MongoActivityRepository(database).ensure_indexes()  # type: ignore[arg-type]
    ttl_name = MongoActivityRepository.TTL_INDEX
    assert ttl_name not in database.inner["leadActivities"].index_information()
    repo = mongo_storage(database, retention=timedelta(days=30)).activities  # type: ignore[arg-type]
    ttl = database.inner["leadActivities"].index_information()[ttl_name]
    assert ttl["key"] == [("completedDate", 1)]
    assert ttl["expireAfterSeconds"] == 30 * 86400
    MongoActivityRepository(database, retention=timedelta(days=7)).ensure_indexes()  # type: ignore[arg-type]
    info = database.inner["leadActivities"].index_information()
    assert info[ttl_name]["expireAfterSeconds"] == 7 * 86400
    # Without retention an existing TTL index stays: another process may rely on it.
    MongoActivityRepository(database).ensure_indexes()  # type: ignore[arg-type]
    assert ttl_name in database.inner["leadActivities"].index_information()
    with pytest.raises(InvalidInputError, match="retention"):
        MongoActivityRepository(database, retention=timedelta(0))  # type: ignore[arg-type]
    assert repo is not None


def test_ttl_expires_completed_activities_only() -> None:
    # The fake expires on the next read, judged by the wall clock (a server's TTL monitor
    # runs about once a minute), so the dates here are relative to now.
    repo = MongoActivityRepository(mongomock_ng.MongoClient()["ttl"], retention=timedelta(days=1))
    repo.ensure_indexes()
    now = datetime.now(UTC)
    old = now - timedelta(days=5)
    repo.add(activity("old", created_at=old, completed_date=now - timedelta(days=2)))
    repo.add(activity("recent", created_at=old, completed_date=now - timedelta(hours=1)))
    repo.add(activity("open", created_at=old, due_date=now - timedelta(days=4)))
    assert [a.activity_id for a in repo.for_opportunity("opp-1")] == ["open", "recent"]


# --------------------------------------------------------------------------- index coverage


@pytest.mark.parametrize(
    ("query", "sort", "expected"),
    [
        ({"activityId": "a"}, [], True),
        ({"subject": "x"}, [], False),
        ({"opportunityId": "o"}, [("createdAt", 1), ("activityId", 1)], True),
        ({"opportunityId": "o", "assignedTo": "u"}, [("createdAt", 1), ("activityId", 1)], True),
        ({"customerId": "c", "assignedTo": "u"}, [("createdAt", 1), ("activityId", 1)], True),
        # An ordered scan of the due-date index, filtering: a page stops at ``limit`` matches.
        ({"opportunityId": "o"}, [("dueDate", 1), ("activityId", 1)], True),
        ({"opportunityId": "o"}, [("subject", 1)], False),
        ({"isOpen": True, "dueDate": {"$lt": T0}}, [("dueDate", 1), ("activityId", 1)], True),
        ({"dueDate": {"$lt": T0}}, [], True),
        ({"isOpen": False, "dueDate": {"$lt": T0}}, [("dueDate", 1), ("activityId", 1)], True),
        ({}, [("dueDate", -1), ("activityId", 1)], False),
        ({}, [("subject", 1)], False),
        ({"openKey": "k"}, [], False),
        ({"$or": [{"subject": "a"}, {"activityId": "b"}]}, [], False),
    ],
)
def test_the_index_checker_itself(query: dict[str, Any], sort: Any, expected: bool) -> None:
    indexes: list[dict[str, Any]] = [{"key": keys} for keys in EXPECTED_ACTIVITY_INDEXES.values()]
    indexes[8]["partialFilterExpression"] = {"isOpen": True}
    assert served(query, sort, indexes) is expected


def _exercise_activities(activities: MongoActivityRepository) -> None:
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
                open_key=f"opp-{i % 3}|rule-{i}" if i % 2 else None,
            )
        )
    for duplicate in (activity("a00"), activity("new", open_key="opp-1|rule-1")):
        with pytest.raises((DuplicateError, OpenActivityExistsError)):
            activities.add(duplicate)
    activities.get("a00")
    current = activities.get("a01")
    activities.update(current.model_copy(update={"subject": "changed"}))
    with pytest.raises(StaleWriteError):
        activities.update(current)
    activities.complete("a02", outcome=Outcome.SUCCESSFUL, completed_by="rep-1", completed_at=T0)
    with pytest.raises(InvalidStateError):
        activities.complete("a02", outcome=None, completed_by=None, completed_at=T0)
    activities.complete("a03", outcome=None, completed_by=None, completed_at=T0, expected_version=1)
    as_of = T0 + timedelta(days=2)
    filters = [
        None,
        ActivityFilter(opportunity_id="opp-1"),
        ActivityFilter(
            customer_id="cust-1", activity_types=(ActivityType.CALL, ActivityType.EMAIL)
        ),
        ActivityFilter(assigned_to="rep-1", state=ActivityState.OVERDUE, as_of=as_of),
        ActivityFilter(state=ActivityState.PENDING, as_of=as_of),
        ActivityFilter(state=ActivityState.COMPLETED, completed_from=T0),
        ActivityFilter(outcomes=(Outcome.SUCCESSFUL,), created_from=T0, created_to=as_of),
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
    for assignee in (None, "rep-1"):
        activities.for_opportunity("opp-1", assigned_to=assignee)
        activities.for_customer("cust-1", assigned_to=assignee)
        activities.timeline("opp-1", assigned_to=assignee)
        activities.pending(as_of, assigned_to=assignee)
        activities.overdue(as_of, assigned_to=assignee)
    activities.upcoming(T0, timedelta(days=3))
    activities.last_activity_times(["opp-1", "opp-2"])
    activities.stale_opportunities(T0 + timedelta(days=9), after=(T0, "opp-1"))
    for f in filters[1:4]:
        activities.statistics(f, as_of=as_of)
    activities.purge_completed(T0 + timedelta(seconds=1))
    activities.delete("a00")


def _exercise_the_rest(storage: Storage) -> None:
    rules, actions = storage.rules, storage.scheduled
    rules.create(rule("r1", priority=5))
    rules.create(rule("r2", is_active=False))
    rules.update(rules.get("r1"))
    rules.list()
    rules.list_active()
    rules.delete("r2")
    rules.stamp()

    actions.schedule(scheduled("k1"))
    actions.schedule(scheduled("k1"))
    actions.schedule(scheduled("k2", opportunity_id="opp-2"))
    actions.schedule(scheduled("k3", T0 + timedelta(days=9)))
    actions.schedule(scheduled("k4", T0 + timedelta(days=9), rule_id="rule-2"))
    claimed = actions.claim_due(T0, worker="w1", lease=timedelta(minutes=1))
    actions.mark_done(claimed[0].action_id, worker="w1", now=T0)
    actions.mark_failed(claimed[1].action_id, worker="w1", now=T0, error="x", retry_at=T0)
    [again] = actions.claim_due(T0 + timedelta(minutes=5), worker="w2")
    actions.mark_failed(
        again.action_id, worker="w2", now=T0, error="x", retry_at=T0, permanent=True
    )
    actions.retry(again.action_id, now=T0)
    actions.get("act-k1")
    actions.cancel_for_opportunity("opp-1", now=T0)
    actions.cancel_for_rule("rule-2", now=T0)
    actions.purge_finished(T0 + timedelta(seconds=1))
    actions.list()
    actions.list(ScheduledActionState.PENDING)
    actions.next_due()
    actions.next_due(partition=2)

    storage.counters.next("n")
    storage.audit.append(audit("e1"))
    for subject, subject_id in ((None, None), ("rule", None), (None, "rule-1"), ("rule", "r")):
        storage.audit.list(subject, subject_id)
    jobs = storage.jobs
    claim = jobs.claim_slot(
        "daily", "s1", worker="w", now=T0, lease=timedelta(minutes=1), expires_at=T0 + timedelta(9)
    )
    jobs.finish_slot(
        "daily", "s1", token=claim.record.token, now=T0, state=SlotState.SUCCEEDED, counts={}
    )
    jobs.get_slot("daily", "s1")
    jobs.mark("m", now=T0, expires_at=T0 + timedelta(days=1))
    jobs.is_marked("m", now=T0)
    jobs.unmark("m")
    jobs.purge_expired(T0)
    jobs.set_value("v", "1", expected=None)
    jobs.set_value("v", "2", expected="1")
    jobs.get_value("v")

    sequences, enrollments = storage.sequences, storage.enrollments
    assert sequences is not None and enrollments is not None
    sequences.add(make_sequence("s1"))
    sequences.add(make_sequence("s1", version=2))
    sequences.get("s1")
    sequences.get("s1", 1)
    sequences.versions("s1")
    sequences.list()
    sequences.set_status("s1", 2, SequenceStatus.ACTIVE)
    sequences.stamp()
    first, _ = enrollments.enroll(make_enrollment("e1", sequence_id="s1"))
    enrollments.enroll(make_enrollment("e1"))  # the id is taken
    enrollments.enroll(make_enrollment("e2", sequence_id="s1"))  # the pair is taken
    enrollments.get("e1")
    ended = enrollments.update(first.model_copy(update={"state": EnrollmentState.ENDED}))
    with pytest.raises(StaleWriteError):
        enrollments.update(first)
    enrollments.update(ended)
    enrollments.active_for("opp-1")
    enrollments.list()
    enrollments.list(sequence_id="s1")
    enrollments.list(opportunity_id="opp-1")
    enrollments.list(state=EnrollmentState.ACTIVE)
    enrollments.list(sequence_id="s1", opportunity_id="opp-1", state=EnrollmentState.ENDED)

    analytics = storage.analytics
    assert analytics is not None
    analytics.record_arrival(make_arrival("opp-1", source="web", owner="alice"))
    analytics.record_status_change(make_change("e1", "opp-1", "won"))
    analytics.record_completion(make_completion("a1", "opp-1", assigned_to="alice"))
    start, end = T0 - timedelta(days=400), T0 + timedelta(days=400)
    analytics.arrivals(start, end)
    analytics.arrivals(start, end, sources=["web"], owners=["alice"])
    analytics.status_changes(start, end)
    analytics.completions(start, end)
    analytics.completions(start, end, assigned_to=["alice"])
    analytics.first_contacts(start, end)
    analytics.reached(start, end, "won")


def test_every_query_is_served_by_an_index(database: RecordingDatabase) -> None:
    storage = mongo_storage(database, job_ttl=False)  # type: ignore[arg-type]
    assert isinstance(storage.activities, MongoActivityRepository)
    _exercise_activities(storage.activities)
    _exercise_the_rest(storage)
    indexes = {
        name: list(database.inner[name].index_information().values())
        # + the rule and sequence stamps
        for name in [*DEFAULT_COLLECTIONS.values(), "followUpRulesStamp", "sequencesStamp"]
    }
    operations = {op for _, op, _, _ in database.recorder.queries}
    assert {"find", "find_one", "find_one_and_update", "replace_one", "aggregate"} <= operations
    assert {"update_many", "delete_many", "delete_one", "update_one"} <= operations
    assert {collection for collection, *_ in database.recorder.queries} == set(indexes)
    unserved = [
        (collection, op, query, sort)
        for collection, op, query, sort in database.recorder.queries
        if not served(query, sort, indexes[collection])
    ]
    assert unserved == []


def test_only_whole_collection_aggregates_read_everything(
    database: RecordingDatabase, activities: MongoActivityRepository
) -> None:
    activities.add(activity("a1", completed_date=T0))
    database.recorder.queries.clear()
    activities.statistics(None, as_of=T0)
    activities.last_activity_times()
    activities.stale_opportunities(T0)
    assert [(op, query) for _, op, query, _ in database.recorder.queries] == [
        ("aggregate", {"cancelledAt": None}),  # every activity but the cancelled ones
        ("aggregate", {}),
        ("aggregate", {}),
    ]
