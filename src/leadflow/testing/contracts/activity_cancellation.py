"""The activity contract on cancelled activities: a cancelled activity (``cancelled_at`` set,
written with ``update``) is kept and read back as such, appears in the timeline and the
listings, never in the work lists (pending, overdue, upcoming) nor the statistics, frees its
open key, and cannot be completed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ...errors import InvalidStateError, OpenActivityExistsError
from ...models import Activity, ActivityState
from ...ports import ActivityRepository
from ...queries import ActivityFilter
from .data import at, ids, make_activity

__all__ = ["ActivityCancellationTests"]


def _cancel(store: ActivityRepository, activity_id: str, *, hours: float = 1) -> Activity:
    current = store.get(activity_id)
    return store.update(
        current.model_copy(
            update={
                "cancelled_at": at(hours=hours),
                "cancelled_by": "u1",
                "cancel_reason": "duplicate",
                "updated_at": at(hours=hours),
            }
        )
    )


class ActivityCancellationTests:
    """Mixed into :class:`~.activities.ActivityRepositoryContract`."""

    def test_a_cancelled_activity_is_kept_with_who_when_and_why(
        self, store: ActivityRepository
    ) -> None:
        store.add(make_activity("a1", due_date=at(hours=2)))
        cancelled = _cancel(store, "a1")
        assert cancelled.version == 2
        again = store.get("a1")
        assert again == cancelled
        assert (again.cancelled_at, again.cancelled_by, again.cancel_reason) == (
            at(hours=1),
            "u1",
            "duplicate",
        )
        assert again.state(at(hours=5)) is ActivityState.CANCELLED

    def test_cancelled_activities_leave_the_work_lists(self, store: ActivityRepository) -> None:
        for name, due in (("past", at(hours=-1)), ("soon", at(hours=1)), ("undated", None)):
            store.add(make_activity(f"keep-{name}", due_date=due, assigned_to="rep"))
            store.add(make_activity(f"drop-{name}", due_date=due, assigned_to="rep"))
            _cancel(store, f"drop-{name}", hours=-2)
        now = at()
        assert ids(store.overdue(now)) == ["keep-past"]
        assert ids(store.overdue(now, assigned_to="rep")) == ["keep-past"]
        assert ids(store.pending(now)) == ["keep-soon", "keep-undated"]
        assert ids(store.pending(now, assigned_to="rep")) == ["keep-soon", "keep-undated"]
        assert ids(store.upcoming(now, timedelta(days=1))) == ["keep-soon"]
        for state, expected in (
            (ActivityState.OVERDUE, ["keep-past"]),
            (ActivityState.PENDING, ["keep-soon", "keep-undated"]),
            (ActivityState.CANCELLED, ["drop-past", "drop-soon", "drop-undated"]),
            (ActivityState.COMPLETED, []),
        ):
            found = store.list(ActivityFilter(state=state, as_of=now), limit=100).items
            assert sorted(ids(found)) == expected, state

    def test_the_timeline_keeps_cancelled_activities(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1", due_date=at(hours=1)))
        store.add(make_activity("a2", due_date=at(hours=2)))
        _cancel(store, "a1")
        timeline = store.timeline("opp-1")
        assert ids(timeline) == ["a1", "a2"]
        assert timeline[0].state(at()) is ActivityState.CANCELLED
        assert ids(store.for_opportunity("opp-1")) == ["a1", "a2"]

    def test_statistics_leave_cancelled_activities_out(self, store: ActivityRepository) -> None:
        store.add(make_activity("open", due_date=at(hours=-1), assigned_to="rep"))
        store.add(make_activity("gone", due_date=at(hours=-1), assigned_to="rep"))
        store.add(make_activity("done", assigned_to="rep"))
        store.complete("done", outcome=None, completed_by="rep", completed_at=at(hours=1))
        _cancel(store, "gone", hours=-2)
        stats = store.statistics(None, as_of=at())
        assert stats.total == 2
        assert stats.by_state == {"overdue": 1, "completed": 1}
        assert stats.by_assignee == {"rep": 2}
        assert stats.completion_rate == 0.5
        scoped = store.statistics(ActivityFilter(assigned_to="rep"), as_of=at())
        assert scoped.total == 2

    def test_a_cancelled_activity_cannot_be_completed(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1"))
        _cancel(store, "a1")
        with pytest.raises(InvalidStateError):
            store.complete("a1", outcome=None, completed_by="u1", completed_at=at(hours=2))
        with pytest.raises(InvalidStateError):
            store.complete(
                "a1", outcome=None, completed_by="u1", completed_at=at(hours=2), expected_version=2
            )
        assert store.get("a1").completed_date is None
        assert store.get("a1").version == 2

    def test_cancelling_the_holder_frees_its_open_key(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1", open_key="k"))
        _cancel(store, "a1")
        assert store.get("a1").open_key == "k"
        store.add(make_activity("a2", open_key="k"))
        with pytest.raises(OpenActivityExistsError):
            store.add(make_activity("a3", open_key="k"))

    def test_a_cancelled_activity_added_holds_no_open_key(self, store: ActivityRepository) -> None:
        store.add(make_activity("gone", open_key="k", cancelled_at=at(hours=1)))
        store.add(make_activity("open", open_key="k"))
        assert store.get("gone").state(at()) is ActivityState.CANCELLED
