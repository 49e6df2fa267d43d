"""The reporting part of the activity contract: per-opportunity and per-customer reads,
the timeline, follow-up queries, statistics, staleness and purging.

Mixed into :class:`~leadflow.testing.contracts.ActivityRepositoryContract`; the ``store``
fixture comes from there.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from ...errors import NotFoundError
from ...models import Activity, ActivityState, ActivityType, Outcome
from ...ports import ActivityRepository
from ...queries import ActivityFilter, ActivityStatistics
from .data import BASE_TIME, at, ids, make_activity
from .reference import (
    reference_overdue,
    reference_pending,
    reference_scoped,
    reference_statistics,
    reference_timeline,
)

__all__ = ["ActivityReportTests"]


class ActivityReportTests:
    """The reads behind a rep's work list, an opportunity's history and the dashboards."""

    # ------------------------------------------------------------------ follow-up queries

    @pytest.fixture
    def follow_ups(self, store: ActivityRepository) -> list[Activity]:
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
            store.add(a)
        return data

    def test_overdue(self, store: ActivityRepository, follow_ups: list[Activity]) -> None:
        day = at(days=1)
        assert ids(store.overdue(day)) == ["o1", "o2", "o8"]
        assert ids(store.overdue(day, assigned_to="u1")) == ["o1", "o8"]
        assert ids(store.overdue(day, assigned_to="nobody")) == []
        assert ids(store.overdue(day, limit=2)) == ["o1", "o2"]
        assert ids(store.overdue(at(days=1, minutes=1))) == ["o1", "o2", "o8", "o3"]
        assert store.overdue(BASE_TIME) == []
        for as_of in (BASE_TIME, day, at(days=5)):
            for user in (None, "u1", "u2"):
                assert ids(store.overdue(as_of, assigned_to=user)) == reference_overdue(
                    follow_ups, as_of, user, 50
                )

    def test_pending(self, store: ActivityRepository, follow_ups: list[Activity]) -> None:
        day = at(days=1)
        # Due now is not overdue yet; future-scheduled and done ones are left out; undated last.
        assert ids(store.pending(day)) == ["o3", "o4", "o0", "o6"]
        assert ids(store.pending(day, assigned_to="u1")) == ["o3", "o6"]
        assert ids(store.pending(day, limit=3)) == ["o3", "o4", "o0"]
        assert ids(store.pending(at(hours=1))) == ["o2", "o8", "o3", "o6"]
        for as_of in (BASE_TIME, day, at(days=2), at(days=5)):
            for user in (None, "u1", "u2"):
                assert ids(store.pending(as_of, assigned_to=user)) == reference_pending(
                    follow_ups, as_of, user, 50
                )

    def test_upcoming(self, store: ActivityRepository, follow_ups: list[Activity]) -> None:
        assert ids(store.upcoming(at(hours=12), timedelta(hours=12))) == ["o2", "o8"]
        assert ids(store.upcoming(at(hours=12), timedelta(hours=12, minutes=1))) == [
            "o2",
            "o8",
            "o3",
        ]
        assert ids(store.upcoming(BASE_TIME, timedelta(days=7))) == [
            "o1",
            "o2",
            "o8",
            "o3",
            "o4",
            "o5",
        ]
        assert ids(store.upcoming(BASE_TIME, timedelta(days=7), limit=2)) == ["o1", "o2"]
        assert store.upcoming(at(days=4), timedelta(days=7)) == []

    def test_timeline(self, store: ActivityRepository) -> None:
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
            store.add(a)
        assert ids(store.timeline("opp-1")) == ["t6", "t2", "t5", "t3", "t1", "t4"]
        assert ids(store.timeline("opp-2")) == ["t7"]
        assert store.timeline("opp-404") == []

    def test_for_opportunity_and_customer(self, store: ActivityRepository) -> None:
        for a in [
            make_activity("b", customer_id="c1", created_at=at(hours=1)),
            make_activity("a", customer_id="c1", created_at=at(hours=1)),
            make_activity("c", customer_id="c2", created_at=at()),
            make_activity("d", opportunity_id="opp-2", customer_id="c1", created_at=at()),
            make_activity("e", created_at=None),
        ]:
            store.add(a)
        assert ids(store.for_opportunity("opp-1")) == ["e", "c", "a", "b"]
        assert ids(store.for_opportunity("opp-2")) == ["d"]
        assert store.for_opportunity("opp-404") == []
        assert ids(store.for_customer("c1")) == ["d", "a", "b"]
        assert store.for_customer("c404") == []

    # ------------------------------------------------------------------ scoped to an assignee

    @pytest.fixture
    def shared(self, store: ActivityRepository) -> list[Activity]:
        """Two opportunities and two customers whose activities belong to u1, u2 or nobody,
        with ties in every date the orders use."""
        data = [
            make_activity("s1", assigned_to="u1", customer_id="c1", created_at=at(hours=2)),
            make_activity("s2", assigned_to="u2", customer_id="c1", created_at=at(hours=1)),
            make_activity("s3", assigned_to="u1", customer_id="c2", created_at=at(hours=1)),
            make_activity("s4", customer_id="c1", created_at=at(hours=1), due_date=at(hours=5)),
            make_activity("s5", assigned_to="u2", created_at=None),
            make_activity(
                "s6",
                assigned_to="u1",
                customer_id="c1",
                created_at=at(),
                scheduled_date=at(hours=3),
                due_date=at(hours=4),
            ),
            make_activity(
                "s7",
                assigned_to="u2",
                customer_id="c1",
                created_at=at(),
                due_date=at(hours=1),
                completed_date=at(hours=3),
            ),
            make_activity("s0", assigned_to="u1", created_at=None),
            make_activity(
                "x1", opportunity_id="opp-2", assigned_to="u1", customer_id="c1", created_at=at()
            ),
            make_activity(
                "x2", opportunity_id="opp-2", assigned_to="u2", customer_id="c2", created_at=at()
            ),
        ]
        for a in data:
            store.add(a)
        return data

    @pytest.mark.parametrize("user", ["u1", "u2", "nobody", None])
    def test_reads_scoped_to_an_assignee(
        self, store: ActivityRepository, shared: list[Activity], user: str | None
    ) -> None:
        # The full answers first, so that "the same order" below means the documented one.
        everything = {
            "opp-1": ["s0", "s5", "s6", "s7", "s2", "s3", "s4", "s1"],
            "c1": ["s6", "s7", "x1", "s2", "s4", "s1"],
            "timeline": ["s0", "s5", "s2", "s3", "s1", "s6", "s7", "s4"],
        }
        assert ids(store.for_opportunity("opp-1")) == everything["opp-1"]
        assert ids(store.for_customer("c1")) == everything["c1"]
        assert ids(store.timeline("opp-1")) == everything["timeline"]
        assert (
            ids(reference_timeline(a for a in shared if a.opportunity_id == "opp-1"))
            == (everything["timeline"])
        )
        by_id = {a.activity_id: a for a in shared}

        def mine(expected: list[str]) -> list[str]:
            return ids(reference_scoped((by_id[i] for i in expected), user))

        reads = [
            (store.for_opportunity("opp-1", assigned_to=user), everything["opp-1"]),
            (store.for_customer("c1", assigned_to=user), everything["c1"]),
            (store.timeline("opp-1", assigned_to=user), everything["timeline"]),
            (store.for_opportunity("opp-404", assigned_to=user), []),
            (store.for_customer("c404", assigned_to=user), []),
            (store.timeline("opp-404", assigned_to=user), []),
        ]
        for got, full in reads:
            assert ids(got) == mine(full)
            for a in got:
                assert a == by_id[a.activity_id]
        if user is not None:
            assert all(a.assigned_to == user for got, _ in reads for a in got)

    def test_scoped_reads_follow_reassignment_and_deletion(
        self, store: ActivityRepository, shared: list[Activity]
    ) -> None:
        moved = store.get("s2").model_copy(update={"assigned_to": "u1"})
        store.update(moved)
        store.delete("s1")
        assert ids(store.for_opportunity("opp-1", assigned_to="u1")) == ["s0", "s6", "s2", "s3"]
        assert ids(store.for_opportunity("opp-1", assigned_to="u2")) == ["s5", "s7"]
        assert ids(store.for_customer("c1", assigned_to="u1")) == ["s6", "x1", "s2"]
        assert ids(store.timeline("opp-1", assigned_to="u1")) == ["s0", "s2", "s3", "s6"]
        store.complete("s6", outcome=None, completed_by="u1", completed_at=at(hours=6))
        assert ids(store.timeline("opp-1", assigned_to="u1")) == ["s0", "s2", "s3", "s6"]
        assert ids(store.timeline("opp-1", assigned_to="u1")) == ids(
            reference_timeline(a for a in store.for_opportunity("opp-1") if a.assigned_to == "u1")
        )

    # ------------------------------------------------------------------ statistics

    @pytest.fixture
    def measured(self, store: ActivityRepository) -> list[Activity]:
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
            store.add(a)
        return data

    def test_statistics_on_a_known_data_set(
        self, store: ActivityRepository, measured: list[Activity]
    ) -> None:
        stats = store.statistics(None, as_of=at(days=10))
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
        self, store: ActivityRepository, measured: list[Activity]
    ) -> None:
        stats = store.statistics(ActivityFilter(assigned_to="u1"), as_of=at(days=10))
        assert stats.total == 3
        assert stats.by_state == {"completed": 2, "overdue": 1}
        assert stats.completion_rate == pytest.approx(2 / 3)
        assert stats.mean_time_to_complete == timedelta(hours=3, minutes=30)
        assert stats.mean_time_to_first_completion == timedelta(hours=2)
        at_start = store.statistics(ActivityFilter(created_to=at(days=1)), as_of=at(hours=12))
        assert at_start.by_state == {"completed": 2, "pending": 1}
        for f in (
            ActivityFilter(opportunity_id="B"),
            ActivityFilter(created_from=at(hours=1), created_to=at(days=3)),
            ActivityFilter(state=ActivityState.OVERDUE, as_of=at(days=5)),
            ActivityFilter(activity_types=(ActivityType.CALL,)),
        ):
            assert store.statistics(f, as_of=at(days=5)) == reference_statistics(
                measured, f, at(days=5)
            )

    def test_statistics_of_nothing(self, store: ActivityRepository) -> None:
        stats = store.statistics(ActivityFilter(assigned_to="nobody"), as_of=BASE_TIME)
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

    def test_last_activity_times(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1", opportunity_id="A", created_at=at()))
        store.add(make_activity("a2", opportunity_id="A", created_at=at(hours=2)))
        store.add(
            make_activity(
                "b1", opportunity_id="B", created_at=at(hours=1), completed_date=at(hours=5)
            )
        )
        store.add(make_activity("c1", opportunity_id="C", created_at=None))
        assert store.last_activity_times() == {"A": at(hours=2), "B": at(hours=5)}
        assert store.last_activity_times(["A", "C", "Z"]) == {"A": at(hours=2)}
        assert store.last_activity_times([]) == {}
        store.complete("a1", outcome=None, completed_by=None, completed_at=at(hours=7))
        assert store.last_activity_times(["A"]) == {"A": at(hours=7)}
        store.delete("a1")
        assert store.last_activity_times(["A"]) == {"A": at(hours=2)}
        store.delete("a2")
        assert store.last_activity_times() == {"B": at(hours=5)}

    def test_stale_opportunities(self, store: ActivityRepository) -> None:
        store.add(make_activity("a1", opportunity_id="A", created_at=at(days=1)))
        store.add(make_activity("b1", opportunity_id="B", created_at=at()))
        store.add(make_activity("c1", opportunity_id="C", created_at=at(days=1)))
        store.add(make_activity("d1", opportunity_id="D", created_at=at(days=5)))
        store.add(
            make_activity("e1", opportunity_id="E", created_at=at(), completed_date=at(days=3))
        )
        a, b, c, e = (at(days=1), "A"), (at(), "B"), (at(days=1), "C"), (at(days=3), "E")
        assert store.stale_opportunities(at(days=2)) == [b, a, c]
        assert store.stale_opportunities(at(days=1)) == [b]
        assert store.stale_opportunities(at(days=4), limit=2) == [b, a]
        assert store.stale_opportunities(BASE_TIME) == []
        store.add(make_activity("b2", opportunity_id="B", created_at=at(days=6)))
        assert store.stale_opportunities(at(days=4)) == [a, c, e]

    def test_stale_opportunities_after_a_key(self, store: ActivityRepository) -> None:
        """Walking from a key: only later keys, pages that join up, and an opportunity with a
        new activity comes back at its new key."""
        for n, opportunity in enumerate("ABCD"):
            store.add(make_activity(f"{opportunity}1", opportunity_id=opportunity, created_at=at()))
            store.add(
                make_activity(f"{opportunity}2", opportunity_id=opportunity, created_at=at(hours=n))
            )
        # Completed inside the window after being created long before it.
        store.add(
            make_activity(
                "E1", opportunity_id="E", created_at=at(days=-9), completed_date=at(hours=2)
            )
        )
        keys = [(at(), "A"), (at(hours=1), "B"), (at(hours=2), "C"), (at(hours=2), "E")]
        keys.append((at(hours=3), "D"))
        since = at(days=1)
        assert store.stale_opportunities(since) == keys
        for n, key in enumerate(keys):
            assert store.stale_opportunities(since, after=key) == keys[n + 1 :]
        first = store.stale_opportunities(since, limit=2)
        assert first + store.stale_opportunities(since, after=first[-1], limit=9) == keys
        # Between two keys of one time, and before every key.
        assert store.stale_opportunities(since, after=(at(hours=2), "D")) == keys[3:]
        assert store.stale_opportunities(since, after=(at(days=-30), "")) == keys
        assert store.stale_opportunities(at(hours=2), after=keys[0]) == keys[1:2]
        # A's new activity moves it past the others; C's completion moves it too.
        store.add(make_activity("A3", opportunity_id="A", created_at=at(hours=5)))
        store.complete("C2", outcome=None, completed_by=None, completed_at=at(hours=4))
        assert store.stale_opportunities(since, after=keys[-1]) == [
            (at(hours=4), "C"),
            (at(hours=5), "A"),
        ]
        assert store.stale_opportunities(at(hours=5), after=keys[-1]) == [(at(hours=4), "C")]

    def test_purge_completed(self, store: ActivityRepository) -> None:
        store.add(make_activity("old-done", created_at=at(), completed_date=at(days=1)))
        store.add(make_activity("edge-done", created_at=at(), completed_date=at(days=2)))
        store.add(make_activity("new-done", created_at=at(), completed_date=at(days=3)))
        store.add(make_activity("old-open", created_at=at(days=-30), due_date=at(days=-29)))
        store.add(make_activity("other", opportunity_id="B", completed_date=at(hours=1)))
        assert store.purge_completed(at(days=2)) == 2
        assert sorted(ids(store.list().items)) == ["edge-done", "new-done", "old-open"]
        with pytest.raises(NotFoundError):
            store.get("old-done")
        assert ids(store.overdue(BASE_TIME)) == ["old-open"]
        assert store.last_activity_times() == {"opp-1": at(days=3)}
        assert store.purge_completed(at(days=2)) == 0
        assert store.purge_completed(at(days=99)) == 2
        assert ids(store.list().items) == ["old-open"]
