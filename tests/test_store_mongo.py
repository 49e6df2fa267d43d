"""The MongoDB backend beyond the shared contracts: wiring, documents and behaviour. On
mongomock-ng always, and on a real server when ``LEADFLOW_TEST_MONGODB_URI`` is set (each test
gets a fresh database, dropped afterwards). Indexes are in test_store_mongo_indexes.py, errors
and open keys in test_store_mongo_errors.py, the shared contracts in test_contracts_mongo.py."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock_ng
import pytest

from leadflow import (
    InvalidInputError,
)
from leadflow.models import Outcome
from leadflow.ports import (
    ActivityRepository,
    AuditLog,
    CounterStore,
    JobStore,
    RuleRepository,
    ScheduledActionStore,
)
from leadflow.queries import ActivitySort
from leadflow.records import ScheduledActionState
from leadflow.stores.mongo import (
    DEFAULT_COLLECTIONS,
    MongoActivityRepository,
    MongoRuleRepository,
    MongoScheduledActionStore,
    mongo_storage,
)

from . import mongo_support
from .mongo_support import (
    T0,
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

# --------------------------------------------------------------------------- wiring


def test_one_line_builds_every_store_with_its_indexes(raw_database: Any) -> None:
    storage = mongo_storage(raw_database)
    ports = {
        "activities": ActivityRepository,
        "rules": RuleRepository,
        "scheduled": ScheduledActionStore,
        "counters": CounterStore,
        "audit": AuditLog,
        "jobs": JobStore,
    }
    for name, port in ports.items():
        assert isinstance(getattr(storage, name), port), name
    indexed = {
        name: set(raw_database[name].index_information()) - {"_id_"}
        for name in DEFAULT_COLLECTIONS.values()
    }
    assert indexed["leadActivities"] >= {"activityId_unique", "openKeyHeld_unique"}
    assert indexed["leadflowJobMarks"] == {"expiresAt_ttl"}
    assert indexed["leadflowCounters"] == set()  # every query is by _id
    assert indexed["leadflowJobValues"] == set()
    storage.counters.next("x")
    assert raw_database.client.list_database_names() is not None  # the client stays open


def test_collection_names_take_a_prefix_or_an_explicit_name(raw_database: Any) -> None:
    storage = mongo_storage(
        raw_database, prefix="crm_", collections={"audit": "audit_trail"}, ensure_indexes=False
    )
    storage.activities.add(activity("a1"))
    storage.audit.append(audit("e1"))
    storage.jobs.mark("k", now=T0, expires_at=T0 + timedelta(days=1))
    assert sorted(raw_database.list_collection_names()) == [
        "audit_trail",
        "crm_leadActivities",
        "crm_leadflowJobMarks",
    ]
    # ensure_indexes=False: a migration step owns the indexes.
    assert list(raw_database["crm_leadActivities"].index_information()) == ["_id_"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"collections": {"activity": "x"}}, "collections"),
        ({"collections": {"rules": "leadActivities"}}, "collections"),
        ({"collections": {"rules": "$bad"}}, "collection"),
        ({"prefix": 3}, "prefix"),
    ],
)
def test_wiring_mistakes_are_invalid_input(arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        mongo_storage(mongomock_ng.MongoClient()["x"], **arguments)
    assert caught.value.field == field


def test_a_client_is_refused_the_database_is_wanted() -> None:
    with pytest.raises(InvalidInputError, match=r"client\['crm'\]"):
        mongo_storage(mongomock_ng.MongoClient())  # type: ignore[arg-type]


def test_importing_leadflow_does_not_import_the_driver() -> None:
    code = (
        "import sys, leadflow, leadflow.ports, leadflow.stores, leadflow.stores.memory; "
        "assert not any(m.split('.')[0] in ('pymongo', 'bson') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith(('pymongo', 'bson')))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- documents


def test_documents_use_camel_case_and_bson_dates(
    database: RecordingDatabase, activities: MongoActivityRepository
) -> None:
    activities.add(
        activity(
            "a1",
            due_date=T0 + timedelta(days=1),
            metadata={"automationRuleId": "rule-1"},
            open_key="opp-1|rule-1",
        )
    )
    activities.complete("a1", outcome=Outcome.SUCCESSFUL, completed_by="rep-1", completed_at=T0)
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
        "openKey": "opp-1|rule-1",
        "createdAt": stored["createdAt"],
        "updatedAt": stored["updatedAt"],
        "version": 2,
        "isOpen": False,
    }
    # BSON dates, not strings; the raw client here is not tz-aware, so they come back naive.
    assert stored["completedDate"] == T0.replace(tzinfo=None)
    assert stored["dueDate"] == (T0 + timedelta(days=1)).replace(tzinfo=None)


def test_scheduled_actions_are_stored_typed(
    database: RecordingDatabase, actions: MongoScheduledActionStore
) -> None:
    planned = T0 - timedelta(hours=1)
    actions.schedule(scheduled("k1", planned_at=planned, depth=2, rule_name="Call back"))
    delivery = scheduled("k2", kind="delivery", rule_id=None, action=None, activity_id="a1")
    actions.schedule(delivery)
    raw = {d["idempotencyKey"]: d for d in database.inner["scheduledActions"].find({}, {"_id": 0})}
    assert raw["k1"]["kind"] == "rule" and raw["k1"]["depth"] == 2
    assert raw["k1"]["plannedAt"] == planned.replace(tzinfo=None)
    assert raw["k1"]["duplicates"] == "skip" and raw["k1"]["ruleName"] == "Call back"
    assert "extra" not in raw["k1"]
    assert raw["k2"]["kind"] == "delivery" and raw["k2"]["activityId"] == "a1"
    assert "ruleId" not in raw["k2"] and "action" not in raw["k2"]
    assert actions.get("act-k2") == delivery
    assert actions.cancel_for_rule("rule-1", now=T0)[0].action_id == "act-k1"
    assert actions.get("act-k2").state is ScheduledActionState.PENDING


def test_datetimes_come_back_aware_utc_whatever_the_hosts_codec_options(
    raw_database: Any,
) -> None:
    from zoneinfo import ZoneInfo

    from bson.codec_options import CodecOptions

    naive = raw_database["activities"].with_options(codec_options=CodecOptions(tz_aware=False))
    repo = MongoActivityRepository(naive)
    paris = datetime(2026, 3, 2, 10, 30, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    repo.add(activity("a1", created_at=paris, due_date=paris + timedelta(hours=1)))
    loaded = repo.get("a1")
    assert loaded.created_at == paris
    assert loaded.created_at is not None and loaded.created_at.tzinfo is UTC
    raw = repo.collection.find_one({"activityId": "a1"})
    assert raw is not None and raw["dueDate"].utcoffset() == timedelta(0)


def test_stored_copies_are_truncated_to_bson_milliseconds(
    activities: MongoActivityRepository,
) -> None:
    added = activities.add(activity("a1", created_at=T0.replace(microsecond=123_456)))
    assert added.created_at == T0.replace(microsecond=123_000)
    assert activities.get("a1") == added


def test_a_collection_can_be_passed_instead_of_a_database(raw_database: Any) -> None:
    repo = MongoActivityRepository(raw_database["custom"])
    repo.add(activity("a1"))
    assert raw_database["custom"].count_documents({}) == 1
    MongoRuleRepository(raw_database, collection="rules2").create(rule("r1"))
    assert raw_database["rules2"].count_documents({}) == 1
    assert "followUpRules" not in raw_database.list_collection_names()


# --------------------------------------------------------------------------- behaviour


def test_keyset_pages_put_missing_dates_first_ascending_and_last_descending(
    activities: MongoActivityRepository,
) -> None:
    for i in range(7):
        activities.add(activity(f"a{i}", due_date=T0 + timedelta(days=i % 3) if i % 3 else None))
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
    at = T0 + timedelta(hours=3)
    activities.complete("a1", outcome=Outcome.CONVERTED, completed_by=None, completed_at=at)
    activities.add(activity("a4", due_date=T0 + timedelta(hours=1)))
    database.recorder.queries.clear()
    stats = activities.statistics(None, as_of=T0 + timedelta(hours=2))
    assert [op for _, op, _, _ in database.recorder.queries] == ["aggregate"]
    assert (stats.total, stats.by_type) == (4, {"call": 3, "email": 1})
    assert stats.by_state == {"completed": 1, "pending": 2, "overdue": 1}
    assert (stats.by_outcome, stats.by_assignee) == ({"converted": 1}, {"rep-1": 1})
    assert stats.completion_rate == 0.25
    assert stats.mean_time_to_complete == stats.mean_time_to_first_completion == timedelta(hours=3)


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


def test_cancelling_a_rule_while_workers_claim_never_reports_a_claimed_action(
    actions: MongoScheduledActionStore,
) -> None:
    for i in range(40):
        actions.schedule(scheduled(f"k{i:02}", T0 - timedelta(minutes=i)))
    barrier = threading.Barrier(2)
    claimed: list[str] = []
    cancelled: list[str] = []

    def claim() -> None:
        barrier.wait()
        while batch := actions.claim_due(T0, worker="w", limit=2):
            claimed.extend(a.action_id for a in batch)

    def cancel() -> None:
        barrier.wait()
        cancelled.extend(a.action_id for a in actions.cancel_for_rule("rule-1", now=T0))

    threads = [threading.Thread(target=claim), threading.Thread(target=cancel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed + cancelled) == sorted(f"act-k{i:02}" for i in range(40))
    assert all(actions.get(a).state is ScheduledActionState.CANCELLED for a in cancelled)
    assert all(actions.get(a).state is ScheduledActionState.CLAIMED for a in claimed)


def test_an_expired_lease_on_the_last_attempt_parks_the_action(
    actions: MongoScheduledActionStore,
) -> None:
    actions.schedule(scheduled("k1", max_attempts=1))
    [first] = actions.claim_due(T0, worker="w1", lease=timedelta(minutes=1))
    assert first.attempts == 1
    assert actions.claim_due(T0 + timedelta(minutes=2), worker="w2") == []
    parked = actions.get("act-k1")
    assert (parked.state, parked.lease_owner) == (ScheduledActionState.PARKED, None)
    retried = actions.retry("act-k1", now=T0 + timedelta(minutes=3))
    assert (retried.state, retried.attempts) == (ScheduledActionState.PENDING, 0)
