"""The storage contract, shipped as pytest test classes so every backend is held to it.

A backend's test module subclasses each contract and says how to make a fresh, empty store;
every test of the contract then runs on that backend::



    class TestMyActivities(ActivityRepositoryContract):
        def make_repository(self) -> ActivityRepository:
            return MyActivityRepository(...)

    class TestMyRules(RuleRepositoryContract):
        def make_repository(self) -> RuleRepository:
            return MyRuleRepository(...)

    class TestMyScheduledActions(ScheduledActionStoreContract):
        def make_store(self) -> ScheduledActionStore:
            return MyScheduledActionStore(...)

    # Random operations checked against a plain dict; the factory makes an empty repository.
    TestMyActivityMachine = activity_state_machine(MyActivityRepository)

Override the ``repo`` / ``rules`` / ``store`` fixture instead when the store needs tearing
down. Test data uses whole-second UTC times from :data:`BASE_TIME` (never the wall clock), so
backends that keep milliseconds pass too. Needs the ``testing`` extra (pytest, hypothesis).
"""

from __future__ import annotations

import abc
import threading
import unittest
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from ..errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    StaleWriteError,
)
from ..models import (
    Action,
    Activity,
    ActivityState,
    ActivityType,
    Condition,
    Event,
    FollowUpRule,
    Outcome,
)
from ..ports import ActivityRepository, RuleRepository, ScheduledActionStore
from ..queries import ActivityFilter, ActivitySort, ActivityStatistics, SortField, encode_cursor
from ..records import ScheduledAction, ScheduledActionState

__all__ = [
    "BASE_TIME",
    "ActivityRepositoryContract",
    "RuleRepositoryContract",
    "ScheduledActionStoreContract",
    "activity_state_machine",
    "at",
    "make_activity",
    "make_rule",
    "make_scheduled_action",
    "reference_statistics",
]

BASE_TIME = datetime(2026, 1, 5, 9, tzinfo=UTC)
"""A Monday morning, UTC: the origin of every time in the contract tests."""

SORT_FIELDS: tuple[SortField, ...] = (
    "created_at",
    "updated_at",
    "due_date",
    "scheduled_date",
    "completed_date",
)


def at(*, days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    """:data:`BASE_TIME` shifted by the given amount."""
    return BASE_TIME + timedelta(days=days, hours=hours, minutes=minutes)


def make_activity(activity_id: str, **fields: Any) -> Activity:
    """A valid activity: opportunity ``opp-1``, a call, created at :data:`BASE_TIME`, unless
    ``fields`` (snake_case) say otherwise."""
    data: dict[str, Any] = {
        "activity_id": activity_id,
        "opportunity_id": "opp-1",
        "activity_type": ActivityType.CALL,
        "subject": f"subject of {activity_id}",
        "created_at": BASE_TIME,
    }
    data.update(fields)
    return Activity.model_validate(data)


def make_rule(rule_id: str, **fields: Any) -> FollowUpRule:
    """A valid rule on ``opportunity.created`` with one notification action."""
    data: dict[str, Any] = {
        "rule_id": rule_id,
        "name": f"rule {rule_id}",
        "trigger": {"event_type": "opportunity.created", "conditions": []},
        "actions": [{"action_type": "send_notification", "template": "welcome"}],
    }
    data.update(fields)
    return FollowUpRule.model_validate(data)


def make_scheduled_action(key: str, **fields: Any) -> ScheduledAction:
    """A valid pending action with idempotency key ``key`` and id ``sa-<key>``, due at
    :data:`BASE_TIME`, for opportunity ``opp-1``."""
    opportunity_id = fields.get("opportunity_id", "opp-1")
    data: dict[str, Any] = {
        "action_id": f"sa-{key}",
        "idempotency_key": key,
        "event": Event(
            id=f"evt-{key}",
            type="opportunity.created",
            time=BASE_TIME,
            payload={"opportunityId": opportunity_id, "tags": ["web"]},
        ),
        "rule_id": "rule-1",
        "action_index": 0,
        "action": Action(action_type="send_notification", template="welcome"),
        "opportunity_id": opportunity_id,
        "due_at": BASE_TIME,
        "created_at": BASE_TIME,
    }
    data.update(fields)
    return ScheduledAction.model_validate(data)


# --------------------------------------------------------------------------- reference semantics
# Plain-Python statements of the contract, used to check backends on generated data.


def _matches(a: Activity, f: ActivityFilter) -> bool:
    checks = (
        f.opportunity_id is None or a.opportunity_id == f.opportunity_id,
        f.customer_id is None or a.customer_id == f.customer_id,
        f.assigned_to is None or a.assigned_to == f.assigned_to,
        f.activity_types is None or a.activity_type in f.activity_types,
        f.outcomes is None or a.outcome in f.outcomes,
        f.automation_rule_id is None or a.metadata.automation_rule_id == f.automation_rule_id,
        f.state is None or a.state(f.as_of or BASE_TIME) is f.state,
        _in(a.created_at, f.created_from, f.created_to),
        _in(a.due_date, f.due_from, f.due_to),
        _in(a.scheduled_date, f.scheduled_from, f.scheduled_to),
        _in(a.completed_date, f.completed_from, f.completed_to),
    )
    return all(checks)


def _in(value: datetime | None, low: datetime | None, high: datetime | None) -> bool:
    if low is None and high is None:
        return True
    return value is not None and (low is None or value >= low) and (high is None or value < high)


def _sorted(activities: Iterable[Activity], sort: ActivitySort) -> list[Activity]:
    def key(a: Activity) -> tuple[bool, datetime, str]:
        value = getattr(a, sort.field)
        return (value is not None, value or BASE_TIME, a.activity_id)

    return sorted(activities, key=key, reverse=sort.descending)


def _is_overdue(a: Activity, as_of: datetime) -> bool:
    return a.completed_date is None and a.due_date is not None and a.due_date < as_of


def _reference_overdue(
    activities: Iterable[Activity], as_of: datetime, assigned_to: str | None, limit: int
) -> list[str]:
    found = [
        a
        for a in activities
        if _is_overdue(a, as_of) and (assigned_to is None or a.assigned_to == assigned_to)
    ]
    found.sort(key=lambda a: (a.due_date, a.activity_id))
    return [a.activity_id for a in found[:limit]]


def _reference_pending(
    activities: Iterable[Activity], as_of: datetime, assigned_to: str | None, limit: int
) -> list[str]:
    found = [
        a
        for a in activities
        if a.completed_date is None
        and not _is_overdue(a, as_of)
        and (a.scheduled_date is None or a.scheduled_date <= as_of)
        and (assigned_to is None or a.assigned_to == assigned_to)
    ]
    found.sort(key=lambda a: (a.due_date is None, a.due_date or BASE_TIME, a.activity_id))
    return [a.activity_id for a in found[:limit]]


def _reference_last_times(activities: Iterable[Activity]) -> dict[str, datetime]:
    last: dict[str, datetime] = {}
    for a in activities:
        for value in (a.created_at, a.completed_date):
            if value is not None and (
                a.opportunity_id not in last or value > last[a.opportunity_id]
            ):
                last[a.opportunity_id] = value
    return last


def reference_statistics(
    activities: Iterable[Activity], f: ActivityFilter | None, as_of: datetime
) -> ActivityStatistics:
    """What :meth:`ActivityRepository.statistics` must return, computed the obvious way."""
    rows = [a for a in activities if f is None or _matches(a, f)]
    done = [a for a in rows if a.completed_date is not None]

    def count(values: Iterable[str | None]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for value in values:
            if value is not None:
                counts[value] = counts.get(value, 0) + 1
        return counts

    first_created: dict[str, datetime] = {}
    first_done: dict[str, datetime] = {}
    for a in rows:
        if a.created_at is None:
            continue
        o = a.opportunity_id
        first_created[o] = min(first_created.get(o, a.created_at), a.created_at)
        if a.completed_date is not None:
            first_done[o] = min(first_done.get(o, a.completed_date), a.completed_date)
    spans = [a.completed_date - a.created_at for a in done if a.completed_date and a.created_at]
    mean_complete = sum(spans, timedelta()) / len(spans) if spans else None
    mean_first = (
        sum((t - first_created[o] for o, t in first_done.items()), timedelta()) / len(first_done)
        if first_done
        else None
    )
    return ActivityStatistics(
        as_of=as_of,
        total=len(rows),
        by_type=count(a.activity_type.value for a in rows),
        by_outcome=count(a.outcome.value if a.outcome else None for a in rows),
        by_state=count(a.state(as_of).value for a in rows),
        by_assignee=count(a.assigned_to for a in rows),
        completion_rate=len(done) / len(rows) if rows else 0.0,
        mean_time_to_complete=mean_complete,
        mean_time_to_first_completion=mean_first,
    )


def _ids(activities: Iterable[Activity]) -> list[str]:
    return [a.activity_id for a in activities]


def _all_pages(
    repo: ActivityRepository,
    f: ActivityFilter | None = None,
    sort: ActivitySort | None = None,
    limit: int = 2,
) -> list[Activity]:
    found: list[Activity] = []
    cursor: str | None = None
    for _ in range(10_000):
        page = repo.list(f, sort=sort, limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        assert page.items, "a page with a next cursor must not be empty"
        cursor = page.next_cursor
    raise AssertionError("pagination did not end")


def _assert_utc(value: datetime | None) -> None:
    if value is not None:
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value


def _assert_activity_utc(a: Activity) -> None:
    for name in ("scheduled_date", "due_date", "completed_date", "created_at", "updated_at"):
        _assert_utc(getattr(a, name))


def _with_version(a: Activity, version: int) -> Activity:
    return a.model_copy(update={"version": version})


# --------------------------------------------------------------------------- activities


class ActivityRepositoryContract(abc.ABC):
    """Every test an :class:`~leadflow.stores.ActivityRepository` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_repository`.
    """

    @abc.abstractmethod
    def make_repository(self) -> ActivityRepository:
        """A new, empty repository."""

    @pytest.fixture
    def repo(self) -> ActivityRepository:
        return self.make_repository()

    # ------------------------------------------------------------------ add / get

    def test_is_an_activity_repository(self, repo: ActivityRepository) -> None:
        assert isinstance(repo, ActivityRepository)

    def test_add_then_get_returns_every_field(self, repo: ActivityRepository) -> None:
        activity = make_activity(
            "a-full",
            opportunity_id="opp-9",
            customer_id="cust-9",
            activity_type=ActivityType.QUOTE_SENT,
            subject="Send the quote",
            description="Two rooms, one piano",
            scheduled_date=at(hours=1),
            due_date=at(hours=2),
            completed_date=at(hours=3),
            assigned_to="rep@example.com",
            completed_by="rep@example.com",
            outcome=Outcome.CONVERTED,
            metadata={
                "phoneDuration": 90,
                "emailOpened": True,
                "quoteValue": 1250.5,
                "automationRuleId": "rule-7",
                "source": "web",
                "tags": ["a", "b"],
            },
            created_by="admin",
            updated_by="admin",
            created_at=BASE_TIME,
            updated_at=at(hours=3),
        )
        added = repo.add(activity)
        assert added == activity
        assert repo.get("a-full") == activity

    def test_add_stores_version_1(self, repo: ActivityRepository) -> None:
        added = repo.add(make_activity("a1", version=7))
        assert added.version == 1
        assert repo.get("a1").version == 1

    def test_add_duplicate_id_is_refused_and_keeps_the_first(
        self, repo: ActivityRepository
    ) -> None:
        repo.add(make_activity("a1", subject="first"))
        with pytest.raises(DuplicateError):
            repo.add(make_activity("a1", subject="second"))
        assert repo.get("a1").subject == "first"
        assert _ids(repo.for_opportunity("opp-1")) == ["a1"]

    def test_get_unknown_raises_not_found(self, repo: ActivityRepository) -> None:
        with pytest.raises(NotFoundError):
            repo.get("nope")
        with pytest.raises(LookupError):
            repo.get("nope")

    def test_returned_datetimes_are_utc(self, repo: ActivityRepository) -> None:
        plus2 = timezone(timedelta(hours=2))
        local = datetime(2026, 1, 5, 11, tzinfo=plus2)  # = BASE_TIME
        repo.add(
            make_activity(
                "a1",
                scheduled_date=local,
                due_date=local + timedelta(hours=1),
                created_at=local,
                updated_at=local,
            )
        )
        repo.add(make_activity("a2", due_date=at(hours=-1), completed_date=local))
        got = repo.get("a1")
        assert got.scheduled_date == BASE_TIME
        for a in [
            got,
            *repo.list().items,
            *repo.for_opportunity("opp-1"),
            *repo.timeline("opp-1"),
            *repo.pending(at(days=1)),
            *repo.upcoming(BASE_TIME, timedelta(days=1)),
            repo.complete("a1", outcome=None, completed_by=None, completed_at=local),
        ]:
            _assert_activity_utc(a)
        for value in repo.last_activity_times().values():
            _assert_utc(value)
        _assert_utc(repo.statistics(None, as_of=local).as_of)

    def test_returned_objects_are_copies(self, repo: ActivityRepository) -> None:
        original = make_activity("a1", due_date=at(hours=1), metadata={"tags": ["x"]})
        repo.add(original)
        for got in [
            repo.get("a1"),
            repo.list().items[0],
            repo.for_opportunity("opp-1")[0],
            repo.timeline("opp-1")[0],
            repo.overdue(at(days=1))[0],
            repo.upcoming(BASE_TIME, timedelta(days=1))[0],
        ]:
            got.subject = "changed"
            got.due_date = at(days=9)
            assert got.metadata.model_extra is not None
            got.metadata.model_extra["tags"].append("changed")
            got.metadata.quote_value = 5
        assert repo.get("a1") == original
        assert _ids(repo.overdue(at(days=1))) == ["a1"]

    def test_changing_the_added_object_does_not_change_the_store(
        self, repo: ActivityRepository
    ) -> None:
        activity = make_activity("a1", metadata={"tags": ["x"]})
        repo.add(activity)
        activity.subject = "changed"
        assert activity.metadata.model_extra is not None
        activity.metadata.model_extra["tags"].append("y")
        stored = repo.get("a1")
        assert stored.subject == "subject of a1"
        assert stored.metadata.model_extra == {"tags": ["x"]}

    # ------------------------------------------------------------------ update

    def test_update_replaces_and_increments_the_version(self, repo: ActivityRepository) -> None:
        repo.add(make_activity("a1"))
        changed = repo.get("a1").model_copy(update={"subject": "new", "assigned_to": "u2"})
        updated = repo.update(changed)
        assert updated.version == 2
        assert updated == _with_version(changed, 2)
        assert repo.get("a1") == updated
        again = repo.update(updated.model_copy(update={"subject": "newer"}))
        assert again.version == 3

    def test_update_with_a_stale_version_is_refused(self, repo: ActivityRepository) -> None:
        repo.add(make_activity("a1"))
        first = repo.get("a1")
        repo.update(first.model_copy(update={"subject": "winner"}))
        with pytest.raises(StaleWriteError):
            repo.update(first.model_copy(update={"subject": "loser"}))
        with pytest.raises(ConflictError):
            repo.update(first.model_copy(update={"subject": "loser", "version": 5}))
        stored = repo.get("a1")
        assert (stored.subject, stored.version) == ("winner", 2)

    def test_update_unknown_raises_not_found(self, repo: ActivityRepository) -> None:
        with pytest.raises(NotFoundError):
            repo.update(make_activity("ghost"))

    def test_update_moves_the_activity_between_queries(self, repo: ActivityRepository) -> None:
        repo.add(
            make_activity("a1", opportunity_id="opp-1", customer_id="c1", due_date=at(hours=1))
        )
        moved = make_activity(
            "a1",
            opportunity_id="opp-2",
            customer_id="c2",
            assigned_to="u9",
            due_date=at(days=3),
            metadata={"automationRuleId": "rule-2"},
        )
        repo.update(moved)
        assert repo.for_opportunity("opp-1") == []
        assert _ids(repo.for_opportunity("opp-2")) == ["a1"]
        assert repo.for_customer("c1") == []
        assert _ids(repo.for_customer("c2")) == ["a1"]
        assert repo.overdue(at(days=1)) == []
        assert _ids(repo.overdue(at(days=4), assigned_to="u9")) == ["a1"]
        assert _ids(repo.list(ActivityFilter(automation_rule_id="rule-2")).items) == ["a1"]
        assert set(repo.last_activity_times()) == {"opp-2"}

    def test_concurrent_updates_of_one_version_have_one_winner(
        self, repo: ActivityRepository
    ) -> None:
        repo.add(make_activity("a1"))
        base = repo.get("a1")
        outcomes: list[str] = []
        barrier = threading.Barrier(8)

        def write(n: int) -> None:
            barrier.wait()
            try:
                repo.update(base.model_copy(update={"subject": f"writer {n}"}))
                outcomes.append("won")
            except StaleWriteError:
                outcomes.append("stale")

        threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["stale"] * 7 + ["won"]
        assert repo.get("a1").version == 2

    # ------------------------------------------------------------------ complete

    def test_complete_records_the_completion(self, repo: ActivityRepository) -> None:
        repo.add(make_activity("a1", due_date=at(hours=1), updated_by="creator"))
        done = repo.complete(
            "a1",
            outcome=Outcome.CALLBACK_REQUESTED,
            completed_by="rep-1",
            completed_at=at(hours=2),
        )
        assert done.completed_date == at(hours=2)
        assert done.outcome is Outcome.CALLBACK_REQUESTED
        assert done.completed_by == "rep-1"
        assert done.updated_at == at(hours=2)
        assert done.updated_by == "rep-1"
        assert done.version == 2
        assert done.state(at(days=9)) is ActivityState.COMPLETED
        assert repo.get("a1") == done
        assert repo.overdue(at(days=1)) == []

    def test_complete_without_a_user_keeps_updated_by(self, repo: ActivityRepository) -> None:
        repo.add(make_activity("a1", updated_by="creator"))
        done = repo.complete("a1", outcome=None, completed_by=None, completed_at=at(hours=1))
        assert (done.completed_by, done.updated_by, done.outcome) == (None, "creator", None)

    def test_complete_twice_is_refused(self, repo: ActivityRepository) -> None:
        repo.add(make_activity("a1"))
        first = repo.complete(
            "a1", outcome=Outcome.SUCCESSFUL, completed_by="u1", completed_at=at(hours=1)
        )
        with pytest.raises(InvalidStateError):
            repo.complete(
                "a1", outcome=Outcome.NO_ANSWER, completed_by="u2", completed_at=at(hours=2)
            )
        # Already done is reported even when the version is stale too.
        with pytest.raises(InvalidStateError):
            repo.complete(
                "a1", outcome=None, completed_by=None, completed_at=at(hours=2), expected_version=1
            )
        assert repo.get("a1") == first

    def test_complete_checks_the_expected_version(self, repo: ActivityRepository) -> None:
        repo.add(make_activity("a1"))
        repo.update(repo.get("a1").model_copy(update={"subject": "edited"}))
        with pytest.raises(StaleWriteError):
            repo.complete(
                "a1", outcome=None, completed_by=None, completed_at=at(hours=1), expected_version=1
            )
        assert repo.get("a1").completed_date is None
        done = repo.complete(
            "a1", outcome=None, completed_by=None, completed_at=at(hours=1), expected_version=2
        )
        assert done.version == 3

    def test_complete_unknown_or_deleted_raises_not_found(self, repo: ActivityRepository) -> None:
        with pytest.raises(NotFoundError):
            repo.complete("ghost", outcome=None, completed_by=None, completed_at=BASE_TIME)
        repo.add(make_activity("a1"))
        repo.delete("a1")
        with pytest.raises(NotFoundError):
            repo.complete("a1", outcome=None, completed_by=None, completed_at=BASE_TIME)

    # ------------------------------------------------------------------ delete

    def test_delete_removes_from_every_query(self, repo: ActivityRepository) -> None:
        repo.add(
            make_activity(
                "a1",
                customer_id="c1",
                assigned_to="u1",
                due_date=at(hours=1),
                metadata={"automationRuleId": "rule-1"},
            )
        )
        repo.add(make_activity("a2", created_at=at(hours=1)))
        repo.delete("a1")
        with pytest.raises(NotFoundError):
            repo.get("a1")
        assert _ids(repo.list().items) == ["a2"]
        assert _ids(repo.for_opportunity("opp-1")) == ["a2"]
        assert repo.for_customer("c1") == []
        assert repo.overdue(at(days=1)) == []
        assert repo.list(ActivityFilter(assigned_to="u1")).items == []
        assert repo.list(ActivityFilter(automation_rule_id="rule-1")).items == []
        assert repo.statistics(None, as_of=at(days=1)).total == 1

    def test_delete_unknown_raises_not_found(self, repo: ActivityRepository) -> None:
        with pytest.raises(NotFoundError):
            repo.delete("ghost")
        repo.add(make_activity("a1"))
        repo.delete("a1")
        with pytest.raises(NotFoundError):
            repo.delete("a1")

    # ------------------------------------------------------------------ argument checks

    def test_naive_datetimes_are_refused(self, repo: ActivityRepository) -> None:
        naive = datetime(2026, 1, 5, 9)
        repo.add(make_activity("a1"))
        calls: list[Callable[[], object]] = [
            lambda: repo.complete("a1", outcome=None, completed_by=None, completed_at=naive),
            lambda: repo.pending(naive),
            lambda: repo.overdue(naive),
            lambda: repo.upcoming(naive, timedelta(hours=1)),
            lambda: repo.statistics(None, as_of=naive),
            lambda: repo.stale_opportunities(naive),
            lambda: repo.purge_completed(naive),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError):
                call()
        assert repo.get("a1").completed_date is None

    def test_limits_below_one_are_refused(self, repo: ActivityRepository) -> None:
        calls: list[Callable[[], object]] = [
            lambda: repo.list(limit=0),
            lambda: repo.list(limit=1001),
            lambda: repo.pending(BASE_TIME, limit=0),
            lambda: repo.overdue(BASE_TIME, limit=0),
            lambda: repo.upcoming(BASE_TIME, timedelta(hours=1), limit=0),
            lambda: repo.stale_opportunities(BASE_TIME, limit=0),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError):
                call()
        assert repo.list(limit=1000).items == []

    # ------------------------------------------------------------------ list: filters

    @pytest.fixture
    def filtered(self, repo: ActivityRepository) -> list[Activity]:
        """Activities that differ in every filterable field."""
        data = [
            make_activity(
                "f1",
                opportunity_id="opp-1",
                customer_id="c1",
                assigned_to="u1",
                activity_type=ActivityType.CALL,
                created_at=at(hours=0),
                scheduled_date=at(hours=1),
                due_date=at(hours=2),
                metadata={"automationRuleId": "rule-1"},
            ),
            make_activity(
                "f2",
                opportunity_id="opp-1",
                customer_id="c1",
                assigned_to="u2",
                activity_type=ActivityType.EMAIL,
                created_at=at(hours=1),
                due_date=at(days=2),
                completed_date=at(hours=5),
                outcome=Outcome.SUCCESSFUL,
            ),
            make_activity(
                "f3",
                opportunity_id="opp-2",
                customer_id="c2",
                assigned_to="u1",
                activity_type=ActivityType.MEETING,
                created_at=at(hours=2),
                scheduled_date=at(days=1),
                due_date=at(days=1, hours=1),
                metadata={"automationRuleId": "rule-2"},
            ),
            make_activity(
                "f4",
                opportunity_id="opp-2",
                activity_type=ActivityType.NOTE,
                created_at=at(hours=3),
                completed_date=at(hours=3),
                outcome=Outcome.NO_ANSWER,
                metadata={"automationRuleId": "rule-1"},
            ),
            make_activity(
                "f5",
                opportunity_id="opp-3",
                customer_id="c2",
                assigned_to="u2",
                activity_type=ActivityType.CALL,
                created_at=at(hours=4),
                scheduled_date=at(hours=3),
                completed_date=at(hours=6),
            ),
            make_activity(
                "f6", opportunity_id="opp-3", activity_type=ActivityType.CALL, created_at=None
            ),
        ]
        for a in data:
            repo.add(a)
        return data

    @pytest.mark.parametrize(
        ("criteria", "expected"),
        [
            ({}, ["f6", "f1", "f2", "f3", "f4", "f5"]),
            ({"opportunity_id": "opp-2"}, ["f3", "f4"]),
            ({"opportunity_id": "opp-404"}, []),
            ({"customer_id": "c2"}, ["f3", "f5"]),
            ({"assigned_to": "u1"}, ["f1", "f3"]),
            ({"activity_types": ("call",)}, ["f6", "f1", "f5"]),
            ({"activity_types": ("email", "note")}, ["f2", "f4"]),
            ({"outcomes": ("successful", "no_answer")}, ["f2", "f4"]),
            ({"outcomes": ("converted",)}, []),
            ({"automation_rule_id": "rule-1"}, ["f1", "f4"]),
            ({"state": "completed"}, ["f2", "f4", "f5"]),
            ({"state": "overdue", "as_of": at(days=1)}, ["f1"]),
            ({"state": "pending", "as_of": at(days=1)}, ["f6", "f3"]),
            ({"state": "overdue", "as_of": at(days=1, hours=1)}, ["f1"]),
            ({"state": "overdue", "as_of": at(days=1, hours=1, minutes=1)}, ["f1", "f3"]),
            ({"created_from": at(hours=1)}, ["f2", "f3", "f4", "f5"]),
            ({"created_to": at(hours=1)}, ["f1"]),
            ({"created_from": at(hours=1), "created_to": at(hours=3)}, ["f2", "f3"]),
            ({"due_from": at(hours=2), "due_to": at(days=2)}, ["f1", "f3"]),
            ({"due_to": at(days=3)}, ["f1", "f2", "f3"]),
            ({"scheduled_from": at(hours=1), "scheduled_to": at(hours=3)}, ["f1"]),
            ({"scheduled_from": at(hours=3)}, ["f3", "f5"]),
            ({"completed_from": at(hours=5)}, ["f2", "f5"]),
            ({"completed_to": at(hours=5)}, ["f4"]),
            ({"opportunity_id": "opp-1", "assigned_to": "u2"}, ["f2"]),
            ({"customer_id": "c2", "state": "completed"}, ["f5"]),
            ({"assigned_to": "u1", "activity_types": ("meeting",), "due_from": at()}, ["f3"]),
            ({"automation_rule_id": "rule-1", "state": "completed"}, ["f4"]),
            ({"assigned_to": "u1", "created_from": at(hours=1)}, ["f3"]),
            ({"assigned_to": "u2", "created_to": at(hours=4)}, ["f2"]),
            ({"automation_rule_id": "rule-1", "created_to": at(hours=3)}, ["f1"]),
            ({"customer_id": "c1", "created_from": at(hours=1)}, ["f2"]),
        ],
    )
    def test_filter(
        self,
        repo: ActivityRepository,
        filtered: list[Activity],
        criteria: dict[str, Any],
        expected: list[str],
    ) -> None:
        f = ActivityFilter.model_validate(criteria)
        matching = [a for a in filtered if _matches(a, f)]
        assert expected == _ids(_sorted(matching, ActivitySort()))
        assert _ids(repo.list(f).items) == expected
        assert _ids(_all_pages(repo, f)) == expected
        by_due = ActivitySort(field="due_date", descending=True)
        assert _ids(repo.list(f, sort=by_due).items) == _ids(_sorted(matching, by_due))
        as_of = at(days=1)
        assert repo.statistics(f, as_of=as_of) == reference_statistics(filtered, f, as_of)

    # ------------------------------------------------------------------ list: sorting

    @pytest.fixture
    def sortable(self, repo: ActivityRepository) -> list[Activity]:
        """Activities with ties and gaps in every sortable field."""
        data = [
            make_activity(
                "s1",
                created_at=at(hours=2),
                updated_at=at(hours=5),
                due_date=at(hours=3),
                scheduled_date=at(hours=1),
            ),
            make_activity(
                "s2",
                created_at=at(hours=1),
                updated_at=None,
                due_date=at(hours=3),
                completed_date=at(hours=4),
            ),
            make_activity("s3", created_at=None, updated_at=at(hours=1), due_date=None),
            make_activity(
                "s4",
                created_at=at(hours=1),
                updated_at=at(hours=5),
                due_date=at(hours=1),
                scheduled_date=at(hours=1),
                completed_date=at(hours=2),
            ),
            make_activity("s5", created_at=at(hours=3), updated_at=None, scheduled_date=at()),
            make_activity("s0", created_at=None, completed_date=at(hours=4)),
        ]
        for a in data:
            repo.add(a)
        return data

    @pytest.mark.parametrize("descending", [False, True])
    @pytest.mark.parametrize("field", SORT_FIELDS)
    def test_sort(
        self,
        repo: ActivityRepository,
        sortable: list[Activity],
        field: SortField,
        descending: bool,
    ) -> None:
        sort = ActivitySort(field=field, descending=descending)
        expected = _ids(_sorted(sortable, sort))
        assert _ids(repo.list(sort=sort).items) == expected
        for limit in (1, 2, 4, 6, 7):
            assert _ids(_all_pages(repo, sort=sort, limit=limit)) == expected

    def test_missing_values_sort_first_ascending_and_last_descending(
        self, repo: ActivityRepository, sortable: list[Activity]
    ) -> None:
        up = repo.list(sort=ActivitySort(field="due_date")).items
        down = repo.list(sort=ActivitySort(field="due_date", descending=True)).items
        assert _ids(up) == ["s0", "s3", "s5", "s4", "s1", "s2"]
        assert _ids(down) == ["s2", "s1", "s4", "s5", "s3", "s0"]

    # ------------------------------------------------------------------ list: pagination

    def test_pages_end_with_no_cursor(self, repo: ActivityRepository) -> None:
        for n in range(4):
            repo.add(make_activity(f"p{n}", created_at=at(hours=n)))
        first = repo.list(limit=2)
        assert _ids(first.items) == ["p0", "p1"]
        assert first.next_cursor is not None
        second = repo.list(limit=2, cursor=first.next_cursor)
        assert _ids(second.items) == ["p2", "p3"]
        assert second.next_cursor is None
        whole = repo.list(limit=4)
        assert whole.next_cursor is None

    @pytest.mark.parametrize("descending", [False, True])
    def test_rows_added_between_pages_do_not_disturb_pagination(
        self, repo: ActivityRepository, descending: bool
    ) -> None:
        originals = [f"p{n:02d}" for n in range(10)]
        for n, activity_id in enumerate(originals):
            repo.add(make_activity(activity_id, created_at=at(hours=n)))
        sort = ActivitySort(descending=descending)
        seen: list[str] = []
        cursor: str | None = None
        added = 0
        while True:
            page = repo.list(sort=sort, limit=3, cursor=cursor)
            seen.extend(_ids(page.items))
            # New rows before, between and after the existing ones, same times included.
            for hours in (-1, 4, 4, 20):
                repo.add(make_activity(f"new{added:02d}", created_at=at(hours=hours)))
                added += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        old = [i for i in seen if i in originals]
        assert old == (originals[::-1] if descending else originals)
        assert len(seen) == len(set(seen))

    def test_cursor_for_another_sort_is_refused(self, repo: ActivityRepository) -> None:
        for n in range(3):
            repo.add(make_activity(f"p{n}", created_at=at(hours=n)))
        page = repo.list(limit=1)
        assert page.next_cursor is not None
        with pytest.raises(InvalidInputError):
            repo.list(sort=ActivitySort(descending=True), cursor=page.next_cursor)
        with pytest.raises(InvalidInputError):
            repo.list(sort=ActivitySort(field="due_date"), cursor=page.next_cursor)
        with pytest.raises(InvalidInputError):
            repo.list(cursor="not a cursor")

    def test_a_cursor_is_a_position_not_a_row(self, repo: ActivityRepository) -> None:
        for n in range(4):
            repo.add(make_activity(f"p{n}", created_at=at(hours=n)))
        page = repo.list(limit=2)
        repo.delete("p1")  # the row the cursor points after
        assert _ids(repo.list(limit=2, cursor=page.next_cursor).items) == ["p2", "p3"]
        cursor = encode_cursor(ActivitySort(), at(hours=1, minutes=30), "zzz")
        assert _ids(repo.list(cursor=cursor).items) == ["p2", "p3"]

    # ------------------------------------------------------------------ follow-up queries

    @pytest.fixture
    def follow_ups(self, repo: ActivityRepository) -> list[Activity]:
        """Open and done activities around ``at(days=1)``."""
        data = [
            make_activity("o1", due_date=at(), assigned_to="u1"),
            make_activity("o2", due_date=at(hours=12), assigned_to="u2"),
            make_activity("o8", due_date=at(hours=12), assigned_to="u1"),
            make_activity("o3", due_date=at(days=1), assigned_to="u1"),
            make_activity("o4", scheduled_date=at(hours=23), due_date=at(days=2), assigned_to="u2"),
            make_activity("o5", scheduled_date=at(days=2), due_date=at(days=3), assigned_to="u1"),
            make_activity("o6", assigned_to="u1"),
            make_activity("o0", scheduled_date=at(hours=2)),
            make_activity("o7", due_date=at(), completed_date=at(hours=1)),
            make_activity("o9", due_date=at(days=1, hours=1), completed_date=at(hours=1)),
        ]
        for a in data:
            repo.add(a)
        return data

    def test_overdue(self, repo: ActivityRepository, follow_ups: list[Activity]) -> None:
        day = at(days=1)
        assert _ids(repo.overdue(day)) == ["o1", "o2", "o8"]
        assert _ids(repo.overdue(day, assigned_to="u1")) == ["o1", "o8"]
        assert _ids(repo.overdue(day, assigned_to="nobody")) == []
        assert _ids(repo.overdue(day, limit=2)) == ["o1", "o2"]
        assert _ids(repo.overdue(at(days=1, minutes=1))) == ["o1", "o2", "o8", "o3"]
        assert repo.overdue(BASE_TIME) == []
        for as_of in (BASE_TIME, day, at(days=5)):
            for user in (None, "u1", "u2"):
                assert _ids(repo.overdue(as_of, assigned_to=user)) == _reference_overdue(
                    follow_ups, as_of, user, 50
                )

    def test_pending(self, repo: ActivityRepository, follow_ups: list[Activity]) -> None:
        day = at(days=1)
        # Due now is not overdue yet; future-scheduled and done ones are left out; undated last.
        assert _ids(repo.pending(day)) == ["o3", "o4", "o0", "o6"]
        assert _ids(repo.pending(day, assigned_to="u1")) == ["o3", "o6"]
        assert _ids(repo.pending(day, limit=3)) == ["o3", "o4", "o0"]
        assert _ids(repo.pending(at(hours=1))) == ["o2", "o8", "o3", "o6"]
        for as_of in (BASE_TIME, day, at(days=2), at(days=5)):
            for user in (None, "u1", "u2"):
                assert _ids(repo.pending(as_of, assigned_to=user)) == _reference_pending(
                    follow_ups, as_of, user, 50
                )

    def test_upcoming(self, repo: ActivityRepository, follow_ups: list[Activity]) -> None:
        assert _ids(repo.upcoming(at(hours=12), timedelta(hours=12))) == ["o2", "o8"]
        assert _ids(repo.upcoming(at(hours=12), timedelta(hours=12, minutes=1))) == [
            "o2",
            "o8",
            "o3",
        ]
        assert _ids(repo.upcoming(BASE_TIME, timedelta(days=7))) == [
            "o1",
            "o2",
            "o8",
            "o3",
            "o4",
            "o5",
        ]
        assert _ids(repo.upcoming(BASE_TIME, timedelta(days=7), limit=2)) == ["o1", "o2"]
        assert repo.upcoming(at(days=4), timedelta(days=7)) == []

    def test_timeline(self, repo: ActivityRepository) -> None:
        for a in [
            make_activity("t1", created_at=at(hours=5)),
            make_activity("t2", created_at=at(), scheduled_date=at(hours=3), due_date=at(days=1)),
            make_activity("t3", created_at=at(), due_date=at(hours=4)),
            make_activity(
                "t4", created_at=at(), scheduled_date=at(hours=1), completed_date=at(hours=6)
            ),
            make_activity("t5", created_at=at(hours=3)),
            make_activity("t6", created_at=None),
            make_activity("t7", opportunity_id="opp-2", created_at=at(hours=1)),
        ]:
            repo.add(a)
        assert _ids(repo.timeline("opp-1")) == ["t6", "t2", "t5", "t3", "t1", "t4"]
        assert _ids(repo.timeline("opp-2")) == ["t7"]
        assert repo.timeline("opp-404") == []

    def test_for_opportunity_and_customer(self, repo: ActivityRepository) -> None:
        for a in [
            make_activity("b", customer_id="c1", created_at=at(hours=1)),
            make_activity("a", customer_id="c1", created_at=at(hours=1)),
            make_activity("c", customer_id="c2", created_at=at()),
            make_activity("d", opportunity_id="opp-2", customer_id="c1", created_at=at()),
            make_activity("e", created_at=None),
        ]:
            repo.add(a)
        assert _ids(repo.for_opportunity("opp-1")) == ["e", "c", "a", "b"]
        assert _ids(repo.for_opportunity("opp-2")) == ["d"]
        assert repo.for_opportunity("opp-404") == []
        assert _ids(repo.for_customer("c1")) == ["d", "a", "b"]
        assert repo.for_customer("c404") == []

    # ------------------------------------------------------------------ statistics

    @pytest.fixture
    def measured(self, repo: ActivityRepository) -> list[Activity]:
        """A data set with known statistics at ``at(days=10)`` (see the test)."""
        data = [
            make_activity(
                "a1",
                opportunity_id="A",
                assigned_to="u1",
                created_at=at(),
                completed_date=at(hours=2),
                outcome=Outcome.SUCCESSFUL,
            ),
            make_activity(
                "a2",
                opportunity_id="A",
                assigned_to="u1",
                activity_type=ActivityType.EMAIL,
                created_at=at(hours=1),
                due_date=at(days=1),
            ),
            make_activity(
                "a3",
                opportunity_id="A",
                assigned_to="u1",
                created_at=at(hours=3),
                completed_date=at(hours=8),
                outcome=Outcome.CONVERTED,
            ),
            make_activity(
                "b1",
                opportunity_id="B",
                assigned_to="u2",
                activity_type=ActivityType.MEETING,
                created_at=at(days=1),
                completed_date=at(days=1, hours=6),
                outcome=Outcome.NO_ANSWER,
            ),
            make_activity(
                "b2",
                opportunity_id="B",
                activity_type=ActivityType.NOTE,
                created_at=at(days=2),
                due_date=at(days=20),
            ),
            make_activity("c1", opportunity_id="C", assigned_to="u2", created_at=at(days=3)),
            make_activity(
                "c2",
                opportunity_id="C",
                assigned_to="u3",
                created_at=None,
                completed_date=at(days=3),
            ),
            make_activity(
                "d1",
                opportunity_id="D",
                assigned_to="u3",
                activity_type=ActivityType.STATUS_CHANGE,
                created_at=at(days=4),
                due_date=at(days=9),
            ),
        ]
        for a in data:
            repo.add(a)
        return data

    def test_statistics_on_a_known_data_set(
        self, repo: ActivityRepository, measured: list[Activity]
    ) -> None:
        stats = repo.statistics(None, as_of=at(days=10))
        assert stats == ActivityStatistics(
            as_of=at(days=10),
            total=8,
            by_type={"call": 4, "email": 1, "meeting": 1, "note": 1, "status_change": 1},
            by_outcome={"successful": 1, "converted": 1, "no_answer": 1},
            by_state={"completed": 4, "overdue": 2, "pending": 2},
            by_assignee={"u1": 3, "u2": 2, "u3": 2},
            completion_rate=0.5,
            # (2h + 5h + 6h) / 3; c2 has no created_at
            mean_time_to_complete=timedelta(hours=4, minutes=20),
            # A: 2h, B: 6h; C's only completion has no created_at
            mean_time_to_first_completion=timedelta(hours=4),
        )
        assert stats == reference_statistics(measured, None, at(days=10))

    def test_statistics_of_a_filtered_selection(
        self, repo: ActivityRepository, measured: list[Activity]
    ) -> None:
        stats = repo.statistics(ActivityFilter(assigned_to="u1"), as_of=at(days=10))
        assert stats.total == 3
        assert stats.by_state == {"completed": 2, "overdue": 1}
        assert stats.completion_rate == pytest.approx(2 / 3)
        assert stats.mean_time_to_complete == timedelta(hours=3, minutes=30)
        assert stats.mean_time_to_first_completion == timedelta(hours=2)
        at_start = repo.statistics(ActivityFilter(created_to=at(days=1)), as_of=at(hours=12))
        assert at_start.by_state == {"completed": 2, "pending": 1}
        for f in (
            ActivityFilter(opportunity_id="B"),
            ActivityFilter(created_from=at(hours=1), created_to=at(days=3)),
            ActivityFilter(state=ActivityState.OVERDUE, as_of=at(days=5)),
            ActivityFilter(activity_types=(ActivityType.CALL,)),
        ):
            assert repo.statistics(f, as_of=at(days=5)) == reference_statistics(
                measured, f, at(days=5)
            )

    def test_statistics_of_nothing(self, repo: ActivityRepository) -> None:
        stats = repo.statistics(ActivityFilter(assigned_to="nobody"), as_of=BASE_TIME)
        assert stats == ActivityStatistics(
            as_of=BASE_TIME,
            total=0,
            by_type={},
            by_outcome={},
            by_state={},
            by_assignee={},
            completion_rate=0.0,
            mean_time_to_complete=None,
            mean_time_to_first_completion=None,
        )

    # ------------------------------------------------------------------ staleness and purge

    def test_last_activity_times(self, repo: ActivityRepository) -> None:
        repo.add(make_activity("a1", opportunity_id="A", created_at=at()))
        repo.add(make_activity("a2", opportunity_id="A", created_at=at(hours=2)))
        repo.add(
            make_activity(
                "b1", opportunity_id="B", created_at=at(hours=1), completed_date=at(hours=5)
            )
        )
        repo.add(make_activity("c1", opportunity_id="C", created_at=None))
        assert repo.last_activity_times() == {"A": at(hours=2), "B": at(hours=5)}
        assert repo.last_activity_times(["A", "C", "Z"]) == {"A": at(hours=2)}
        assert repo.last_activity_times([]) == {}
        repo.complete("a1", outcome=None, completed_by=None, completed_at=at(hours=7))
        assert repo.last_activity_times(["A"]) == {"A": at(hours=7)}
        repo.delete("a1")
        assert repo.last_activity_times(["A"]) == {"A": at(hours=2)}
        repo.delete("a2")
        assert repo.last_activity_times() == {"B": at(hours=5)}

    def test_stale_opportunities(self, repo: ActivityRepository) -> None:
        repo.add(make_activity("a1", opportunity_id="A", created_at=at(days=1)))
        repo.add(make_activity("b1", opportunity_id="B", created_at=at()))
        repo.add(make_activity("c1", opportunity_id="C", created_at=at(days=1)))
        repo.add(make_activity("d1", opportunity_id="D", created_at=at(days=5)))
        repo.add(
            make_activity("e1", opportunity_id="E", created_at=at(), completed_date=at(days=3))
        )
        assert repo.stale_opportunities(at(days=2)) == ["B", "A", "C"]
        assert repo.stale_opportunities(at(days=1)) == ["B"]
        assert repo.stale_opportunities(at(days=4), limit=2) == ["B", "A"]
        assert repo.stale_opportunities(BASE_TIME) == []
        repo.add(make_activity("b2", opportunity_id="B", created_at=at(days=6)))
        assert repo.stale_opportunities(at(days=4)) == ["A", "C", "E"]

    def test_purge_completed(self, repo: ActivityRepository) -> None:
        repo.add(make_activity("old-done", created_at=at(), completed_date=at(days=1)))
        repo.add(make_activity("edge-done", created_at=at(), completed_date=at(days=2)))
        repo.add(make_activity("new-done", created_at=at(), completed_date=at(days=3)))
        repo.add(make_activity("old-open", created_at=at(days=-30), due_date=at(days=-29)))
        repo.add(make_activity("other", opportunity_id="B", completed_date=at(hours=1)))
        assert repo.purge_completed(at(days=2)) == 2
        assert sorted(_ids(repo.list().items)) == ["edge-done", "new-done", "old-open"]
        with pytest.raises(NotFoundError):
            repo.get("old-done")
        assert _ids(repo.overdue(BASE_TIME)) == ["old-open"]
        assert repo.last_activity_times() == {"opp-1": at(days=3)}
        assert repo.purge_completed(at(days=2)) == 0
        assert repo.purge_completed(at(days=99)) == 2
        assert _ids(repo.list().items) == ["old-open"]


# --------------------------------------------------------------------------- hypothesis model


# A narrow range of hours, so that equal times (boundaries, ties) come up often.
_TIMES = st.integers(min_value=0, max_value=12).map(lambda h: at(hours=h))
_MAYBE_TIME = st.none() | _TIMES
_OPPORTUNITIES = st.sampled_from(["opp-1", "opp-2", "opp-3"])
_USERS = st.none() | st.sampled_from(["u1", "u2"])


@st.composite
def _activity_fields(draw: st.DrawFn) -> dict[str, Any]:
    scheduled = draw(_MAYBE_TIME)
    due = draw(_MAYBE_TIME)
    if scheduled is not None and due is not None and due < scheduled:
        scheduled, due = due, scheduled
    completed = draw(st.none() | _TIMES)
    fields: dict[str, Any] = {
        "opportunity_id": draw(_OPPORTUNITIES),
        "customer_id": draw(st.none() | st.sampled_from(["c1", "c2"])),
        "assigned_to": draw(_USERS),
        "activity_type": draw(st.sampled_from(list(ActivityType))),
        "scheduled_date": scheduled,
        "due_date": due,
        "completed_date": completed,
        "outcome": draw(st.sampled_from(list(Outcome))) if completed is not None else None,
        "created_at": draw(st.none() | _TIMES),
        "updated_at": draw(_MAYBE_TIME),
        "metadata": draw(st.sampled_from([{}, {"automationRuleId": "rule-1"}])),
    }
    return fields


@st.composite
def _filters(draw: st.DrawFn) -> ActivityFilter:
    data: dict[str, Any] = {}
    if draw(st.booleans()):
        data["opportunity_id"] = draw(_OPPORTUNITIES)
    if draw(st.booleans()):
        data["assigned_to"] = draw(st.sampled_from(["u1", "u2"]))
    if draw(st.booleans()):
        data["customer_id"] = draw(st.sampled_from(["c1", "c2"]))
    if draw(st.booleans()):
        data["state"] = draw(st.sampled_from(list(ActivityState)))
        data["as_of"] = draw(_TIMES)
    if draw(st.booleans()):
        data["activity_types"] = tuple(
            draw(st.lists(st.sampled_from(list(ActivityType)), min_size=1, max_size=3))
        )
    if draw(st.booleans()):
        data["automation_rule_id"] = "rule-1"
    for name in ("created", "due", "completed"):
        if draw(st.booleans()):
            data[f"{name}_from"] = draw(_TIMES)
        if draw(st.booleans()):
            data[f"{name}_to"] = draw(_TIMES)
    return ActivityFilter.model_validate(data)


_SORTS = st.builds(ActivitySort, field=st.sampled_from(SORT_FIELDS), descending=st.booleans())


def activity_state_machine(
    factory: Callable[[], ActivityRepository],
    *,
    max_examples: int = 100,
    steps: int = 40,
) -> type[unittest.TestCase]:
    """A hypothesis state machine that drives a repository made by ``factory`` (fresh and empty
    on each call) with random writes and queries, checking each answer against a plain dict.

    Assign the result to a ``Test...`` name in a test module to run it.
    """

    class ActivityRepositoryMachine(RuleBasedStateMachine):
        ids = Bundle("ids")

        def __init__(self) -> None:
            super().__init__()
            self.repo = factory()
            self.model: dict[str, Activity] = {}
            self.serial = 0

        @rule(target=ids, fields=_activity_fields())
        def add(self, fields: dict[str, Any]) -> str:
            self.serial += 1
            activity = make_activity(f"h{self.serial:03d}", **fields)
            assert self.repo.add(activity) == activity
            self.model[activity.activity_id] = activity
            return activity.activity_id

        @rule(activity_id=ids)
        def add_again(self, activity_id: str) -> None:
            if activity_id in self.model:
                with pytest.raises(DuplicateError):
                    self.repo.add(self.model[activity_id])
            else:
                activity = make_activity(activity_id)
                self.repo.add(activity)
                self.model[activity_id] = activity

        @rule(activity_id=ids, fields=_activity_fields(), stale=st.booleans())
        def update(self, activity_id: str, fields: dict[str, Any], stale: bool) -> None:
            current = self.model.get(activity_id)
            version = current.version if current is not None else 1
            if stale:
                version += 1
            changed = make_activity(activity_id, version=version, **fields)
            if current is None:
                with pytest.raises(NotFoundError):
                    self.repo.update(changed)
            elif stale:
                with pytest.raises(StaleWriteError):
                    self.repo.update(changed)
            else:
                expected = _with_version(changed, version + 1)
                assert self.repo.update(changed) == expected
                self.model[activity_id] = expected

        @rule(
            activity_id=ids,
            outcome=st.none() | st.sampled_from(list(Outcome)),
            when=_TIMES,
            version=st.none() | st.integers(min_value=1, max_value=3),
        )
        def complete(
            self, activity_id: str, outcome: Outcome | None, when: datetime, version: int | None
        ) -> None:
            current = self.model.get(activity_id)

            def call() -> Activity:
                return self.repo.complete(
                    activity_id,
                    outcome=outcome,
                    completed_by="u1",
                    completed_at=when,
                    expected_version=version,
                )

            if current is None:
                with pytest.raises(NotFoundError):
                    call()
            elif current.completed_date is not None:
                with pytest.raises(InvalidStateError):
                    call()
            elif version is not None and version != current.version:
                with pytest.raises(StaleWriteError):
                    call()
            else:
                expected = current.model_copy(
                    update={
                        "completed_date": when,
                        "outcome": outcome,
                        "completed_by": "u1",
                        "updated_at": when,
                        "updated_by": "u1",
                        "version": current.version + 1,
                    }
                )
                assert call() == expected
                self.model[activity_id] = expected

        @rule(activity_id=ids)
        def delete(self, activity_id: str) -> None:
            if activity_id in self.model:
                self.repo.delete(activity_id)
                del self.model[activity_id]
            else:
                with pytest.raises(NotFoundError):
                    self.repo.delete(activity_id)

        @rule(before=_TIMES)
        def purge(self, before: datetime) -> None:
            doomed = [
                i
                for i, a in self.model.items()
                if a.completed_date is not None and a.completed_date < before
            ]
            assert self.repo.purge_completed(before) == len(doomed)
            for i in doomed:
                del self.model[i]

        @rule(activity_id=ids)
        def get(self, activity_id: str) -> None:
            if activity_id in self.model:
                assert self.repo.get(activity_id) == self.model[activity_id]
            else:
                with pytest.raises(NotFoundError):
                    self.repo.get(activity_id)

        @rule(f=st.none() | _filters(), sort=_SORTS, limit=st.integers(1, 4))
        def list_pages(self, f: ActivityFilter | None, sort: ActivitySort, limit: int) -> None:
            expected = _sorted(
                (a for a in self.model.values() if f is None or _matches(a, f)), sort
            )
            assert _all_pages(self.repo, f, sort, limit) == expected

        @rule(f=st.none() | _filters(), as_of=_TIMES)
        def statistics(self, f: ActivityFilter | None, as_of: datetime) -> None:
            expected = reference_statistics(self.model.values(), f, as_of)
            assert self.repo.statistics(f, as_of=as_of) == expected

        @rule(as_of=_TIMES, user=_USERS, limit=st.integers(1, 5))
        def follow_ups(self, as_of: datetime, user: str | None, limit: int) -> None:
            activities = self.model.values()
            assert _ids(self.repo.overdue(as_of, assigned_to=user, limit=limit)) == (
                _reference_overdue(activities, as_of, user, limit)
            )
            assert _ids(self.repo.pending(as_of, assigned_to=user, limit=limit)) == (
                _reference_pending(activities, as_of, user, limit)
            )

        @rule(opportunity_id=_OPPORTUNITIES)
        def per_opportunity(self, opportunity_id: str) -> None:
            mine = [a for a in self.model.values() if a.opportunity_id == opportunity_id]
            assert self.repo.for_opportunity(opportunity_id) == _sorted(mine, ActivitySort())

        @rule(since=_TIMES)
        def staleness(self, since: datetime) -> None:
            last = _reference_last_times(self.model.values())
            stale = sorted((t, o) for o, t in last.items() if t < since)
            assert self.repo.stale_opportunities(since) == [o for _, o in stale]

        @invariant()
        def last_times_agree(self) -> None:
            expected = _reference_last_times(self.model.values())
            assert self.repo.last_activity_times() == expected

    # Each read of ``.TestCase`` makes a new class: configure the one returned.
    case = ActivityRepositoryMachine.TestCase
    case.settings = settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    return case


# --------------------------------------------------------------------------- rules


class RuleRepositoryContract(abc.ABC):
    """Every test a :class:`~leadflow.stores.RuleRepository` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_repository`.
    """

    @abc.abstractmethod
    def make_repository(self) -> RuleRepository:
        """A new, empty repository."""

    @pytest.fixture
    def rules(self) -> RuleRepository:
        return self.make_repository()

    def test_is_a_rule_repository(self, rules: RuleRepository) -> None:
        assert isinstance(rules, RuleRepository)

    def test_create_then_get(self, rules: RuleRepository) -> None:
        rule = make_rule(
            "r1",
            description="greets new leads",
            trigger={
                "event_type": "opportunity.created",
                "conditions": [
                    {"field": "leadSource", "operator": "equals", "value": "website"},
                    {"any": [{"field": "priority", "operator": "in", "value": ["high", "urgent"]}]},
                ],
            },
            actions=[
                {"action_type": "create_activity", "subject": "Call", "delay": 1},
                {
                    "action_type": "update_status",
                    "params": {"status": "contacted"},
                    "delay": {"amount": 2, "unit": "business_days"},
                },
            ],
            priority=10,
            created_at=BASE_TIME,
        )
        created = rules.create(rule)
        assert created == rule
        assert rules.get("r1") == rule

    def test_create_stores_version_1(self, rules: RuleRepository) -> None:
        assert rules.create(make_rule("r1", version=4)).version == 1
        assert rules.get("r1").version == 1

    def test_create_duplicate_is_refused(self, rules: RuleRepository) -> None:
        rules.create(make_rule("r1", name="first"))
        with pytest.raises(DuplicateError):
            rules.create(make_rule("r1", name="second"))
        assert rules.get("r1").name == "first"

    def test_get_unknown_raises_not_found(self, rules: RuleRepository) -> None:
        with pytest.raises(NotFoundError):
            rules.get("nope")

    def test_list_in_application_order(self, rules: RuleRepository) -> None:
        for rule_id, priority, active in [
            ("b", 5, True),
            ("a", 5, False),
            ("c", 10, True),
            ("d", -1, True),
            ("e", 0, False),
        ]:
            rules.create(make_rule(rule_id, priority=priority, is_active=active))
        assert [r.rule_id for r in rules.list()] == ["c", "a", "b", "e", "d"]
        assert [r.rule_id for r in rules.list_active()] == ["c", "b", "d"]

    def test_empty_lists(self, rules: RuleRepository) -> None:
        assert rules.list() == []
        assert rules.list_active() == []

    def test_update(self, rules: RuleRepository) -> None:
        rules.create(make_rule("r1"))
        first = rules.get("r1")
        updated = rules.update(first.model_copy(update={"is_active": False, "priority": 3}))
        assert (updated.version, updated.is_active, updated.priority) == (2, False, 3)
        assert rules.get("r1") == updated
        assert rules.list_active() == []
        with pytest.raises(StaleWriteError):
            rules.update(first.model_copy(update={"name": "late"}))
        assert rules.get("r1") == updated

    def test_update_unknown_raises_not_found(self, rules: RuleRepository) -> None:
        with pytest.raises(NotFoundError):
            rules.update(make_rule("ghost"))

    def test_delete(self, rules: RuleRepository) -> None:
        rules.create(make_rule("r1"))
        rules.create(make_rule("r2"))
        rules.delete("r1")
        with pytest.raises(NotFoundError):
            rules.get("r1")
        assert [r.rule_id for r in rules.list()] == ["r2"]
        with pytest.raises(NotFoundError):
            rules.delete("r1")

    def test_returned_rules_are_copies(self, rules: RuleRepository) -> None:
        original = make_rule(
            "r1",
            trigger={
                "event_type": "opportunity.created",
                "conditions": [{"field": "source", "operator": "in", "value": ["web"]}],
            },
        )
        rules.create(original)
        for got in [rules.get("r1"), rules.list()[0], rules.list_active()[0]]:
            got.name = "changed"
            got.actions[0].params["x"] = 1
            got.actions.clear()
            condition = got.trigger.conditions[0]
            assert isinstance(condition, Condition)
            condition.value.append("phone")
        assert rules.get("r1") == original
        original.name = "changed after create"
        assert rules.get("r1").name == "rule r1"


# --------------------------------------------------------------------------- scheduled actions


class ScheduledActionStoreContract(abc.ABC):
    """Every test a :class:`~leadflow.stores.ScheduledActionStore` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_store`.
    """

    @abc.abstractmethod
    def make_store(self) -> ScheduledActionStore:
        """A new, empty store."""

    @pytest.fixture
    def store(self) -> ScheduledActionStore:
        return self.make_store()

    def test_is_a_scheduled_action_store(self, store: ScheduledActionStore) -> None:
        assert isinstance(store, ScheduledActionStore)

    def test_schedule_then_get(self, store: ScheduledActionStore) -> None:
        action = make_scheduled_action("k1", extra={"note": ["x"]})
        stored, created = store.schedule(action)
        assert created is True
        assert stored == action
        assert store.get("sa-k1") == action

    def test_schedule_is_idempotent_by_key(self, store: ScheduledActionStore) -> None:
        first, _ = store.schedule(make_scheduled_action("k1"))
        again, created = store.schedule(
            make_scheduled_action("k1", action_id="sa-other", due_at=at(days=9))
        )
        assert created is False
        assert again == first
        assert [a.action_id for a in store.list()] == ["sa-k1"]
        with pytest.raises(NotFoundError):
            store.get("sa-other")

    def test_schedule_with_a_taken_id_is_refused(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        with pytest.raises(DuplicateError):
            store.schedule(make_scheduled_action("k2", action_id="sa-k1"))
        assert [a.idempotency_key for a in store.list()] == ["k1"]

    def test_get_unknown_raises_not_found(self, store: ScheduledActionStore) -> None:
        with pytest.raises(NotFoundError):
            store.get("nope")

    def test_claim_due_claims_due_pending_actions_oldest_first(
        self, store: ScheduledActionStore
    ) -> None:
        store.schedule(make_scheduled_action("late", due_at=at(hours=2)))
        store.schedule(make_scheduled_action("b", due_at=at(hours=1)))
        store.schedule(make_scheduled_action("a", due_at=at(hours=1)))
        store.schedule(make_scheduled_action("first", due_at=at()))
        store.schedule(make_scheduled_action("future", due_at=at(hours=3)))
        claimed = store.claim_due(at(hours=2), worker="w1", limit=3, lease=timedelta(minutes=10))
        assert [a.action_id for a in claimed] == ["sa-first", "sa-a", "sa-b"]
        for action in claimed:
            assert action.state is ScheduledActionState.CLAIMED
            assert action.lease_owner == "w1"
            assert action.lease_expires_at == at(hours=2, minutes=10)
            assert action.attempts == 1
            assert store.get(action.action_id) == action
        # ``due_at <= now``: "late" is due exactly now.
        assert [a.action_id for a in store.claim_due(at(hours=2), worker="w1")] == ["sa-late"]
        assert store.claim_due(at(hours=2), worker="w1") == []

    def test_a_claimed_action_is_not_claimed_again_while_leased(
        self, store: ScheduledActionStore
    ) -> None:
        store.schedule(make_scheduled_action("k1"))
        assert len(store.claim_due(at(), worker="w1", lease=timedelta(minutes=5))) == 1
        assert store.claim_due(at(minutes=4), worker="w2") == []
        assert store.claim_due(at(minutes=4), worker="w1") == []

    def test_an_expired_lease_is_reclaimed(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        store.claim_due(at(), worker="w1", lease=timedelta(minutes=5))
        reclaimed = store.claim_due(at(minutes=5), worker="w2", lease=timedelta(minutes=5))
        assert [(a.lease_owner, a.attempts) for a in reclaimed] == [("w2", 2)]
        assert reclaimed[0].lease_expires_at == at(minutes=10)
        with pytest.raises(ConflictError):
            store.mark_done("sa-k1", worker="w1", now=at(minutes=6))
        done = store.mark_done("sa-k1", worker="w2", now=at(minutes=7))
        assert done.state is ScheduledActionState.DONE

    def test_a_late_finish_counts_while_nobody_reclaimed(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        store.claim_due(at(), worker="w1", lease=timedelta(minutes=5))
        done = store.mark_done("sa-k1", worker="w1", now=at(minutes=30))
        assert done.state is ScheduledActionState.DONE
        assert store.claim_due(at(hours=1), worker="w2") == []

    def test_concurrent_claims_never_share_an_action(self, store: ScheduledActionStore) -> None:
        total = 120
        for n in range(total):
            store.schedule(make_scheduled_action(f"k{n:03d}", due_at=at(minutes=n % 7)))
        claims: dict[str, list[str]] = {}
        barrier = threading.Barrier(6)

        def work(worker: str) -> None:
            mine = claims.setdefault(worker, [])
            barrier.wait()
            while batch := store.claim_due(at(hours=1), worker=worker, limit=7):
                mine.extend(a.action_id for a in batch)

        threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        everything = [i for ids in claims.values() for i in ids]
        assert len(everything) == total
        assert len(set(everything)) == total
        for worker, ids in claims.items():
            for action_id in ids:
                assert store.get(action_id).lease_owner == worker

    def test_two_workers_claim_disjoint_sets(self, store: ScheduledActionStore) -> None:
        for n in range(5):
            store.schedule(make_scheduled_action(f"k{n}"))
        first = store.claim_due(at(), worker="w1", limit=3)
        second = store.claim_due(at(), worker="w2", limit=3)
        assert [a.action_id for a in first] == ["sa-k0", "sa-k1", "sa-k2"]
        assert [a.action_id for a in second] == ["sa-k3", "sa-k4"]

    def test_mark_done(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        with pytest.raises(ConflictError):
            store.mark_done("sa-k1", worker="w1", now=at())  # not claimed
        store.claim_due(at(), worker="w1")
        with pytest.raises(ConflictError):
            store.mark_done("sa-k1", worker="w2", now=at())
        done = store.mark_done("sa-k1", worker="w1", now=at(minutes=1))
        assert (done.state, done.finished_at, done.attempts) == (
            ScheduledActionState.DONE,
            at(minutes=1),
            1,
        )
        assert store.get("sa-k1") == done
        with pytest.raises(ConflictError):
            store.mark_done("sa-k1", worker="w1", now=at(minutes=2))
        with pytest.raises(NotFoundError):
            store.mark_done("ghost", worker="w1", now=at())

    def test_failures_retry_then_park(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1", max_attempts=3))
        now = at()
        for attempt in (1, 2):
            (claimed,) = store.claim_due(now, worker="w1")
            assert claimed.attempts == attempt
            failed = store.mark_failed(
                "sa-k1",
                worker="w1",
                now=now,
                error=f"boom {attempt}",
                retry_at=now + timedelta(minutes=10),
            )
            assert failed.state is ScheduledActionState.PENDING
            assert failed.due_at == now + timedelta(minutes=10)
            assert failed.last_error == f"boom {attempt}"
            assert store.claim_due(now + timedelta(minutes=9), worker="w1") == []
            now += timedelta(minutes=10)
        (claimed,) = store.claim_due(now, worker="w1")
        assert claimed.attempts == 3
        parked = store.mark_failed(
            "sa-k1", worker="w1", now=now, error="boom 3", retry_at=now + timedelta(hours=1)
        )
        assert parked.state is ScheduledActionState.PARKED
        assert parked.last_error == "boom 3"
        assert store.claim_due(at(days=30), worker="w1") == []
        assert [a.action_id for a in store.list(ScheduledActionState.PARKED)] == ["sa-k1"]

    def test_mark_failed_needs_the_lease(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        store.claim_due(at(), worker="w1", lease=timedelta(minutes=1))
        store.claim_due(at(minutes=2), worker="w2")
        with pytest.raises(ConflictError):
            store.mark_failed("sa-k1", worker="w1", now=at(minutes=3), error="x", retry_at=at())
        assert store.get("sa-k1").lease_owner == "w2"
        with pytest.raises(NotFoundError):
            store.mark_failed("ghost", worker="w1", now=at(), error="x", retry_at=at())

    def test_retry_a_parked_action(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1", max_attempts=1))
        store.claim_due(at(), worker="w1")
        store.mark_failed("sa-k1", worker="w1", now=at(), error="boom", retry_at=at(hours=1))
        retried = store.retry("sa-k1", now=at(days=1))
        assert retried.state is ScheduledActionState.PENDING
        assert (retried.due_at, retried.attempts) == (at(days=1), 0)
        (claimed,) = store.claim_due(at(days=1), worker="w2")
        assert claimed.attempts == 1
        with pytest.raises(InvalidStateError):
            store.retry("sa-k1", now=at(days=1))  # claimed, not parked
        with pytest.raises(NotFoundError):
            store.retry("ghost", now=at())

    def test_an_action_that_kills_its_worker_is_parked(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1", max_attempts=2))
        store.claim_due(at(), worker="w1", lease=timedelta(minutes=1))
        store.claim_due(at(minutes=1), worker="w2", lease=timedelta(minutes=1))
        assert store.claim_due(at(minutes=2), worker="w3") == []
        parked = store.get("sa-k1")
        assert parked.state is ScheduledActionState.PARKED
        assert parked.attempts == 2

    def test_cancel_for_opportunity(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("p1"))
        store.schedule(make_scheduled_action("p2", due_at=at(days=2)))
        store.schedule(make_scheduled_action("claimed", due_at=at(minutes=-1)))
        store.schedule(make_scheduled_action("other", opportunity_id="opp-2"))
        store.claim_due(at(minutes=-1), worker="w1")
        assert store.cancel_for_opportunity("opp-1", now=at(hours=1)) == 2
        for action_id in ("sa-p1", "sa-p2"):
            assert store.get(action_id).state is ScheduledActionState.CANCELLED
        assert store.get("sa-claimed").state is ScheduledActionState.CLAIMED
        assert store.get("sa-other").state is ScheduledActionState.PENDING
        assert store.cancel_for_opportunity("opp-1", now=at(hours=1)) == 0
        assert store.cancel_for_opportunity("opp-404", now=at(hours=1)) == 0
        later = store.claim_due(at(days=3), worker="w2")
        assert [a.action_id for a in later] == ["sa-claimed", "sa-other"]  # lease expired

    def test_list_by_state(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("c", due_at=at(hours=2)))
        store.schedule(make_scheduled_action("a", due_at=at(hours=1)))
        store.schedule(make_scheduled_action("b", due_at=at(hours=1)))
        store.schedule(make_scheduled_action("d", due_at=at(minutes=1)))
        store.claim_due(at(minutes=1), worker="w1", limit=1)
        assert [a.action_id for a in store.list()] == ["sa-d", "sa-a", "sa-b", "sa-c"]
        assert [a.action_id for a in store.list(limit=2)] == ["sa-d", "sa-a"]
        pending = store.list(ScheduledActionState.PENDING)
        assert [a.action_id for a in pending] == ["sa-a", "sa-b", "sa-c"]
        assert [a.action_id for a in store.list(ScheduledActionState.CLAIMED)] == ["sa-d"]
        assert store.list(ScheduledActionState.DONE) == []

    def test_arguments_are_checked(self, store: ScheduledActionStore) -> None:
        store.schedule(make_scheduled_action("k1"))
        naive = datetime(2026, 1, 5, 9)
        calls: list[Callable[[], object]] = [
            lambda: store.claim_due(naive, worker="w1"),
            lambda: store.claim_due(BASE_TIME, worker="w1", limit=0),
            lambda: store.list(limit=0),
            lambda: store.cancel_for_opportunity("opp-1", now=naive),
            lambda: store.retry("sa-k1", now=naive),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError):
                call()
        assert store.get("sa-k1").state is ScheduledActionState.PENDING

    def test_returned_actions_are_copies(self, store: ScheduledActionStore) -> None:
        original = make_scheduled_action("k1", extra={"note": ["x"]})
        stored, _ = store.schedule(original)
        got = store.get("sa-k1")
        for action in (stored, got, store.list()[0]):
            action.extra["note"].append("changed")
            action.event.payload["tags"].append("changed")
            action.attempts = 99
        assert store.get("sa-k1") == original
        (claimed,) = store.claim_due(at(), worker="w1")
        claimed.lease_owner = "w2"
        with pytest.raises(ConflictError):
            store.mark_done("sa-k1", worker="w2", now=at())
        original.extra["note"].append("after")
        assert store.get("sa-k1").extra == {"note": ["x"]}

    def test_returned_datetimes_are_utc(self, store: ScheduledActionStore) -> None:
        plus2 = timezone(timedelta(hours=2))
        store.schedule(make_scheduled_action("k1", due_at=datetime(2026, 1, 5, 11, tzinfo=plus2)))
        (claimed,) = store.claim_due(datetime(2026, 1, 5, 11, tzinfo=plus2), worker="w1")
        assert claimed.due_at == BASE_TIME
        done = store.mark_done("sa-k1", worker="w1", now=datetime(2026, 1, 5, 12, tzinfo=plus2))
        for value in (
            claimed.due_at,
            claimed.lease_expires_at,
            claimed.created_at,
            done.finished_at,
            store.get("sa-k1").finished_at,
        ):
            _assert_utc(value)
        assert done.finished_at == at(hours=1)
