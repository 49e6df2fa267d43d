"""The activity contract: writes (add, update, complete, delete), the open-key uniqueness the
automation relies on, copies, UTC and argument checks; listing, reports and cancelled
activities are mixed in."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from ...errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    OpenActivityExistsError,
    StaleWriteError,
)
from ...models import Activity, ActivityState, ActivityType, Outcome
from ...ports import ActivityRepository
from ...queries import ActivityFilter
from .activity_cancellation import ActivityCancellationTests
from .activity_listing import ActivityListingTests
from .activity_reports import ActivityReportTests
from .data import (
    BASE_TIME,
    assert_activity_utc,
    assert_utc,
    at,
    ids,
    make_activity,
    race,
    with_version,
)

__all__ = ["ActivityRepositoryContract"]


def _adder(store: ActivityRepository, prefix: str, open_key: str) -> Callable[[int], Activity]:
    """A call that adds activity ``<prefix><n>`` holding ``open_key``."""
    return lambda n: store.add(make_activity(f"{prefix}{n}", open_key=open_key))


class ActivityRepositoryContract(
    ActivityListingTests, ActivityReportTests, ActivityCancellationTests, abc.ABC
):
    """Every test an :class:`~leadflow.ports.ActivityRepository` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_store`; the listing and reporting
    tests come from :class:`ActivityListingTests` and :class:`ActivityReportTests`.
    """

    @abc.abstractmethod
    def make_store(self) -> ActivityRepository:
        """A new, empty repository."""

    @pytest.fixture
    def store(self) -> ActivityRepository:
        return self.make_store()

    # ------------------------------------------------------------------ add / get

    def test_is_an_activity_repository(self, store: ActivityRepository) -> None:
        assert isinstance(store, ActivityRepository)

    def test_add_then_get_returns_every_field(self, store: ActivityRepository) -> None:
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
        added = store.add(activity)
        assert added == activity
        assert store.get("a-full") == activity

    def test_add_stores_version_1(self, store: ActivityRepository) -> None:
        added = store.add(make_activity("a1", version=7))
        assert added.version == 1
        assert store.get("a1").version == 1

    def test_add_duplicate_id_is_refused_and_keeps_the_first(
        self, store: ActivityRepository
    ) -> None:
        store.add(make_activity("a1", subject="first"))
        with pytest.raises(DuplicateError):
            store.add(make_activity("a1", subject="second"))
        assert store.get("a1").subject == "first"
        assert ids(store.for_opportunity("opp-1")) == ["a1"]

    def test_get_unknown_raises_not_found(self, store: ActivityRepository) -> None:
        with pytest.raises(NotFoundError):
            store.get("nope")
        with pytest.raises(LookupError):
            store.get("nope")

    def test_returned_datetimes_are_utc(self, store: ActivityRepository) -> None:
        plus2 = timezone(timedelta(hours=2))
        local = datetime(2026, 1, 5, 11, tzinfo=plus2)  # = BASE_TIME
        store.add(
            make_activity(
                "a1",
                scheduled_date=local,
                due_date=local + timedelta(hours=1),
                created_at=local,
                updated_at=local,
            )
        )
        store.add(make_activity("a2", due_date=at(hours=-1), completed_date=local))
        got = store.get("a1")
        assert got.scheduled_date == BASE_TIME
        for a in [
            got,
            *store.list().items,
            *store.for_opportunity("opp-1"),
            *store.timeline("opp-1"),
            *store.pending(at(days=1)),
            *store.upcoming(BASE_TIME, timedelta(days=1)),
            store.complete("a1", outcome=None, completed_by=None, completed_at=local),
        ]:
            assert_activity_utc(a)
        for value in store.last_activity_times().values():
            assert_utc(value)
        assert_utc(store.statistics(None, as_of=local).as_of)

    def test_returned_objects_are_copies(self, store: ActivityRepository) -> None:
        original = make_activity("a1", due_date=at(hours=1), metadata={"tags": ["x"]})
        store.add(original)
        for got in [
            store.get("a1"),
            store.list().items[0],
            store.for_opportunity("opp-1")[0],
            store.timeline("opp-1")[0],
            store.overdue(at(days=1))[0],
            store.upcoming(BASE_TIME, timedelta(days=1))[0],
        ]:
            for target, name, value in (
                (got, "subject", "changed"),
                (got, "due_date", at(days=9)),
                (got.metadata, "quote_value", 5),
            ):
                with pytest.raises(ValidationError):  # activities are immutable values
                    setattr(target, name, value)
            assert got.metadata.model_extra is not None
            got.metadata.model_extra["tags"].append("changed")
        assert store.get("a1") == original
        assert ids(store.overdue(at(days=1))) == ["a1"]

    def test_changing_the_added_object_does_not_change_the_store(
        self, store: ActivityRepository
    ) -> None:
        activity = make_activity("a1", metadata={"tags": ["x"]})
        store.add(activity)
        with pytest.raises(ValidationError):
            activity.subject = "changed"
        assert activity.metadata.model_extra is not None
        activity.metadata.model_extra["tags"].append("y")
        stored = store.get("a1")
        assert stored.subject == "subject of a1"
        assert stored.metadata.model_extra == {"tags": ["x"]}

    # ------------------------------------------------------------------ update

    def test_update_replaces_and_increments_the_version(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1"))
        changed = store.get("a1").model_copy(update={"subject": "new", "assigned_to": "u2"})
        updated = store.update(changed)
        assert updated.version == 2
        assert updated == with_version(changed, 2)
        assert store.get("a1") == updated
        again = store.update(updated.model_copy(update={"subject": "newer"}))
        assert again.version == 3

    def test_update_with_a_stale_version_is_refused(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1"))
        first = store.get("a1")
        store.update(first.model_copy(update={"subject": "winner"}))
        with pytest.raises(StaleWriteError):
            store.update(first.model_copy(update={"subject": "loser"}))
        with pytest.raises(ConflictError):
            store.update(first.model_copy(update={"subject": "loser", "version": 5}))
        stored = store.get("a1")
        assert (stored.subject, stored.version) == ("winner", 2)

    def test_update_unknown_raises_not_found(self, store: ActivityRepository) -> None:
        with pytest.raises(NotFoundError):
            store.update(make_activity("ghost"))

    def test_update_moves_the_activity_between_queries(self, store: ActivityRepository) -> None:
        store.add(
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
        store.update(moved)
        assert store.for_opportunity("opp-1") == []
        assert ids(store.for_opportunity("opp-2")) == ["a1"]
        assert store.for_customer("c1") == []
        assert ids(store.for_customer("c2")) == ["a1"]
        assert store.overdue(at(days=1)) == []
        assert ids(store.overdue(at(days=4), assigned_to="u9")) == ["a1"]
        assert ids(store.list(ActivityFilter(automation_rule_id="rule-2")).items) == ["a1"]
        assert set(store.last_activity_times()) == {"opp-2"}

    def test_concurrent_updates_of_one_version_have_one_winner(
        self, store: ActivityRepository
    ) -> None:
        store.add(make_activity("a1"))
        base = store.get("a1")
        results = race(
            8, lambda n: store.update(base.model_copy(update={"subject": f"writer {n}"}))
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(r, StaleWriteError) for r in results if r not in winners), results
        assert store.get("a1") == winners[0]
        assert store.get("a1").version == 2

    # ------------------------------------------------------------------ complete

    def test_complete_records_the_completion(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1", due_date=at(hours=1), updated_by="creator"))
        done = store.complete(
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
        assert store.get("a1") == done
        assert store.overdue(at(days=1)) == []

    def test_complete_without_a_user_keeps_updated_by(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1", updated_by="creator"))
        done = store.complete("a1", outcome=None, completed_by=None, completed_at=at(hours=1))
        assert (done.completed_by, done.updated_by, done.outcome) == (None, "creator", None)

    def test_complete_twice_is_refused(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1"))
        first = store.complete(
            "a1", outcome=Outcome.SUCCESSFUL, completed_by="u1", completed_at=at(hours=1)
        )
        with pytest.raises(InvalidStateError):
            store.complete(
                "a1", outcome=Outcome.NO_ANSWER, completed_by="u2", completed_at=at(hours=2)
            )
        # Already done is reported even when the version is stale too.
        with pytest.raises(InvalidStateError):
            store.complete(
                "a1", outcome=None, completed_by=None, completed_at=at(hours=2), expected_version=1
            )
        assert store.get("a1") == first

    def test_complete_checks_the_expected_version(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1"))
        store.update(store.get("a1").model_copy(update={"subject": "edited"}))
        with pytest.raises(StaleWriteError):
            store.complete(
                "a1", outcome=None, completed_by=None, completed_at=at(hours=1), expected_version=1
            )
        assert store.get("a1").completed_date is None
        done = store.complete(
            "a1", outcome=None, completed_by=None, completed_at=at(hours=1), expected_version=2
        )
        assert done.version == 3

    def test_complete_unknown_or_deleted_raises_not_found(self, store: ActivityRepository) -> None:
        with pytest.raises(NotFoundError):
            store.complete("ghost", outcome=None, completed_by=None, completed_at=BASE_TIME)
        store.add(make_activity("a1"))
        store.delete("a1")
        with pytest.raises(NotFoundError):
            store.complete("a1", outcome=None, completed_by=None, completed_at=BASE_TIME)

    # ------------------------------------------------------------------ delete

    def test_delete_removes_from_every_query(self, store: ActivityRepository) -> None:
        store.add(
            make_activity(
                "a1",
                customer_id="c1",
                assigned_to="u1",
                due_date=at(hours=1),
                metadata={"automationRuleId": "rule-1"},
            )
        )
        store.add(make_activity("a2", created_at=at(hours=1)))
        store.delete("a1")
        with pytest.raises(NotFoundError):
            store.get("a1")
        assert ids(store.list().items) == ["a2"]
        assert ids(store.for_opportunity("opp-1")) == ["a2"]
        assert store.for_customer("c1") == []
        assert store.overdue(at(days=1)) == []
        assert store.list(ActivityFilter(assigned_to="u1")).items == []
        assert store.list(ActivityFilter(automation_rule_id="rule-1")).items == []
        assert store.statistics(None, as_of=at(days=1)).total == 1

    def test_delete_unknown_raises_not_found(self, store: ActivityRepository) -> None:
        with pytest.raises(NotFoundError):
            store.delete("ghost")
        store.add(make_activity("a1"))
        store.delete("a1")
        with pytest.raises(NotFoundError):
            store.delete("a1")

    # ------------------------------------------------------------------ argument checks

    def test_naive_datetimes_are_refused(self, store: ActivityRepository) -> None:
        naive = datetime(2026, 1, 5, 9)
        store.add(make_activity("a1"))
        calls: list[Callable[[], object]] = [
            lambda: store.complete("a1", outcome=None, completed_by=None, completed_at=naive),
            lambda: store.pending(naive),
            lambda: store.overdue(naive),
            lambda: store.upcoming(naive, timedelta(hours=1)),
            lambda: store.statistics(None, as_of=naive),
            lambda: store.stale_opportunities(naive),
            lambda: store.stale_opportunities(BASE_TIME, after=(naive, "A")),
            lambda: store.purge_completed(naive),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError):
                call()
        assert store.get("a1").completed_date is None

    def test_limits_below_one_are_refused(self, store: ActivityRepository) -> None:
        calls: list[Callable[[], object]] = [
            lambda: store.list(limit=0),
            lambda: store.list(limit=1001),
            lambda: store.pending(BASE_TIME, limit=0),
            lambda: store.overdue(BASE_TIME, limit=0),
            lambda: store.upcoming(BASE_TIME, timedelta(hours=1), limit=0),
            lambda: store.stale_opportunities(BASE_TIME, limit=0),
            # beyond the 64-bit range: refused alike everywhere (SQLite's driver overflowed)
            lambda: store.pending(BASE_TIME, limit=2**63),
            lambda: store.overdue(BASE_TIME, limit=2**63),
            lambda: store.upcoming(BASE_TIME, timedelta(hours=1), limit=2**63),
            lambda: store.stale_opportunities(BASE_TIME, limit=2**63),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError):
                call()
        assert store.list(limit=1000).items == []
        assert store.overdue(BASE_TIME, limit=2**63 - 1) == []

    def test_an_expected_version_outside_the_64_bit_range_is_refused(
        self, store: ActivityRepository
    ) -> None:
        stored = store.add(make_activity("a1"))
        for version in (0, -1, 2**63, 2**70, True, "1", 1.0):
            with pytest.raises(InvalidInputError) as refused:
                store.complete(
                    "a1",
                    outcome=None,
                    completed_by=None,
                    completed_at=at(hours=1),
                    expected_version=version,  # type: ignore[arg-type]
                )
            assert refused.value.field == "expected_version"
        assert store.get("a1") == stored
        with pytest.raises(StaleWriteError):
            store.complete(
                "a1", outcome=None, completed_by=None, completed_at=at(hours=1),
                expected_version=2**63 - 1,
            )  # fmt: skip

    def test_a_stale_cursor_must_be_a_time_and_an_id(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1", created_at=BASE_TIME))
        bad: list[Any] = [BASE_TIME, (BASE_TIME,), ("A", BASE_TIME), (BASE_TIME, 1), "A"]
        for value in bad:
            with pytest.raises(InvalidInputError):
                store.stale_opportunities(at(days=1), after=value)

    # ------------------------------------------------------------------ open keys

    def test_a_second_open_activity_with_one_open_key_is_refused(
        self, store: ActivityRepository
    ) -> None:
        first = store.add(make_activity("a1", open_key="opp-1|rule-1", assigned_to="u1"))
        with pytest.raises(OpenActivityExistsError) as refused:
            store.add(make_activity("a2", open_key="opp-1|rule-1", assigned_to="u2"))
        assert isinstance(refused.value, ConflictError)
        assert store.get("a1") == first
        assert first.open_key == "opp-1|rule-1"
        with pytest.raises(NotFoundError):
            store.get("a2")
        assert ids(store.for_opportunity("opp-1")) == ["a1"]
        assert ids(store.list(ActivityFilter(assigned_to="u2")).items) == []
        # Nothing of the refused add was kept: its id is free.
        store.add(make_activity("a2"))
        # Other keys, and activities without a key, are not limited.
        store.add(make_activity("a3", open_key="opp-1|rule-2"))
        store.add(make_activity("a4", open_key="opp-2|rule-1", opportunity_id="opp-2"))
        store.add(make_activity("a5"))
        store.add(make_activity("a6"))
        assert sorted(ids(store.list().items)) == ["a1", "a2", "a3", "a4", "a5", "a6"]

    def test_completing_the_holder_frees_its_open_key(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1", open_key="k"))
        done = store.complete("a1", outcome=None, completed_by="u1", completed_at=at(hours=1))
        assert done.open_key == "k"  # complete changes only what it documents
        second = store.add(make_activity("a2", open_key="k"))
        assert second.open_key == "k"
        with pytest.raises(OpenActivityExistsError):
            store.add(make_activity("a3", open_key="k"))
        store.complete("a2", outcome=None, completed_by=None, completed_at=at(hours=2))
        store.add(make_activity("a3", open_key="k"))
        assert sorted(ids(store.list().items)) == ["a1", "a2", "a3"]

    def test_a_completed_activity_does_not_hold_its_open_key(
        self, store: ActivityRepository
    ) -> None:
        store.add(make_activity("done", open_key="k", completed_date=at(hours=1)))
        store.add(make_activity("open", open_key="k"))
        with pytest.raises(OpenActivityExistsError):
            store.add(make_activity("again", open_key="k"))
        assert store.get("done").open_key == store.get("open").open_key == "k"

    def test_deleting_the_holder_frees_its_open_key(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1", open_key="k"))
        store.delete("a1")
        store.add(make_activity("a2", open_key="k"))
        with pytest.raises(OpenActivityExistsError):
            store.add(make_activity("a1", open_key="k"))
        assert ids(store.list().items) == ["a2"]

    def test_a_duplicate_id_is_reported_before_the_open_key(
        self, store: ActivityRepository
    ) -> None:
        first = store.add(make_activity("a1", open_key="k"))
        store.add(make_activity("a2", open_key="k2"))
        for key in ("k", "k2", "free"):
            with pytest.raises(DuplicateError) as refused:
                store.add(make_activity("a1", open_key=key, subject="second"))
            assert not isinstance(refused.value, OpenActivityExistsError)
        assert store.get("a1") == first
        # The refused add reserved nothing: "free" is still free.
        store.add(make_activity("a3", open_key="free"))
        assert sorted(ids(store.list().items)) == ["a1", "a2", "a3"]

    def test_update_keeps_the_open_key(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1", open_key="k"))
        current = store.get("a1")
        updated = store.update(current.model_copy(update={"subject": "edited"}))
        assert (updated.open_key, updated.subject, updated.version) == ("k", "edited", 2)
        assert store.get("a1") == updated
        with pytest.raises(OpenActivityExistsError):
            store.add(make_activity("a2", open_key="k"))
        # The key cannot be changed: an update that tries is refused or leaves the key as it is.
        for attempt in ("other", None):
            with contextlib.suppress(InvalidInputError, ConflictError):
                store.update(store.get("a1").model_copy(update={"open_key": attempt}))
            assert store.get("a1").open_key == "k"
            with pytest.raises(OpenActivityExistsError):
                store.add(make_activity("a2", open_key="k"))
        store.add(make_activity("a3", open_key="other"))

    def test_concurrent_adds_with_one_open_key_have_one_winner(
        self, store: ActivityRepository
    ) -> None:
        for round_ in range(4):
            key = f"opp-1|rule-{round_}"
            results = race(8, _adder(store, f"r{round_}-", key))
            winners = [r for r in results if not isinstance(r, BaseException)]
            assert len(winners) == 1, results
            losers = [r for r in results if isinstance(r, BaseException)]
            assert all(isinstance(r, OpenActivityExistsError) for r in losers), losers
            held = [a for a in store.for_opportunity("opp-1") if a.open_key == key]
            assert held == winners
