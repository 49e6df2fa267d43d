"""The contract of :class:`~leadflow.ports.AnalyticsStore`: idempotent facts, half-open period
queries in their order, the filters, an arrival's first contact and the first time it reached
a status."""

from __future__ import annotations

import abc
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ...activity_models import ActivityType, Outcome
from ...errors import InvalidInputError
from ...facts import Completion, LeadArrival, StatusChange
from ...ports import AnalyticsStore
from .analytics_days import DaySumsContract
from .analytics_summary import LeadSummaryContract
from .data import assert_utc, at, race

__all__ = ["AnalyticsStoreContract", "make_arrival", "make_change", "make_completion"]


def make_arrival(opportunity: str, *, hours: float = 0, **fields: Any) -> LeadArrival:
    """An arrival of ``opportunity`` at ``at(hours=hours)`` (event ``arr-<opportunity>``)."""
    values: dict[str, Any] = {
        "event_id": f"arr-{opportunity}",
        "opportunity_id": opportunity,
        "arrived_at": at(hours=hours),
    }
    return LeadArrival(**(values | fields))


def make_change(
    event: str, opportunity: str, to: str, *, hours: float = 0, **fields: Any
) -> StatusChange:
    """A change of ``opportunity`` to ``to`` at ``at(hours=hours)``."""
    values: dict[str, Any] = {
        "event_id": event,
        "opportunity_id": opportunity,
        "to_status": to,
        "changed_at": at(hours=hours),
    }
    return StatusChange(**(values | fields))


def make_completion(
    activity: str, opportunity: str, *, hours: float = 0, **fields: Any
) -> Completion:
    """A completed call of ``opportunity`` at ``at(hours=hours)``."""
    values: dict[str, Any] = {
        "activity_id": activity,
        "opportunity_id": opportunity,
        "activity_type": ActivityType.CALL,
        "completed_at": at(hours=hours),
    }
    return Completion(**(values | fields))


_START, _END = at(hours=-1000), at(hours=1000)


def _opportunities(found: list[LeadArrival]) -> list[str]:
    return [arrival.opportunity_id for arrival in found]


def _activities(found: list[Completion]) -> list[str]:
    return [completion.activity_id for completion in found]


class AnalyticsStoreContract(LeadSummaryContract, DaySumsContract, abc.ABC):
    """Every test an :class:`~leadflow.ports.AnalyticsStore` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_store`.
    """

    @abc.abstractmethod
    def make_store(self) -> AnalyticsStore:
        """A new, empty store."""

    @pytest.fixture
    def store(self) -> AnalyticsStore:
        return self.make_store()

    def test_is_an_analytics_store(self, store: AnalyticsStore) -> None:
        assert isinstance(store, AnalyticsStore)

    def test_an_empty_store_answers_nothing(self, store: AnalyticsStore) -> None:
        assert store.arrivals(_START, _END) == []
        assert store.status_changes(_START, _END) == []
        assert store.completions(_START, _END) == []
        assert store.first_contacts(_START, _END) == []
        assert store.reached(_START, _END, "won") == {}

    def test_an_opportunity_arrives_once(self, store: AnalyticsStore) -> None:
        first = make_arrival("o1", source="website", owner="alice")
        assert store.record_arrival(first) is True
        assert store.record_arrival(first) is False
        again = make_arrival("o1", hours=5, event_id="other", source="phone")
        assert store.record_arrival(again) is False
        [stored] = store.arrivals(_START, _END)
        assert stored == first
        assert_utc(stored.arrived_at)

    def test_arrivals_in_the_period_in_order(self, store: AnalyticsStore) -> None:
        for opportunity, hours in (("o3", 2), ("o1", 1), ("o2", 1), ("o0", 0), ("o4", 3)):
            store.record_arrival(make_arrival(opportunity, hours=hours))
        found = store.arrivals(at(hours=1), at(hours=3))
        assert [a.opportunity_id for a in found] == ["o1", "o2", "o3"]  # start in, end out
        assert [a.opportunity_id for a in store.arrivals(_START, _END, limit=2)] == ["o0", "o1"]

    def test_arrivals_by_source_and_owner(self, store: AnalyticsStore) -> None:
        store.record_arrival(make_arrival("o1", source="website", owner="alice"))
        store.record_arrival(make_arrival("o2", hours=1, source="phone", owner="bob"))
        store.record_arrival(make_arrival("o3", hours=2, source="website", owner="bob"))
        store.record_arrival(make_arrival("o4", hours=3))  # neither
        assert _opportunities(store.arrivals(_START, _END, sources=["website"])) == ["o1", "o3"]
        assert _opportunities(store.arrivals(_START, _END, owners={"bob"})) == ["o2", "o3"]
        both = store.arrivals(_START, _END, sources=("website",), owners=["bob"])
        assert _opportunities(both) == ["o3"]
        assert store.arrivals(_START, _END, sources=[]) == []
        assert _opportunities(store.arrivals(_START, _END)) == ["o1", "o2", "o3", "o4"]

    def test_arrivals_of_given_opportunities_whenever_they_came(
        self, store: AnalyticsStore
    ) -> None:
        first = make_arrival("o1", source="website", owner="alice")
        store.record_arrival(first)
        store.record_arrival(make_arrival("o2", hours=24 * 400))  # long after any period
        store.record_arrival(make_arrival("o3", hours=2))
        found = store.arrivals_of(["o2", "o1", "o1", "nobody"])
        assert sorted(found) == ["o1", "o2"]
        assert found["o1"] == first
        assert_utc(found["o2"].arrived_at)
        assert store.arrivals_of([]) == {}
        many = [f"x{n}" for n in range(2_000)] + ["o3"]  # more than one chunk of ids
        assert list(store.arrivals_of(many)) == ["o3"]
        for bad in ("o1", [1], ["o"] * 100_001):
            with pytest.raises(InvalidInputError):
                store.arrivals_of(bad)  # type: ignore[arg-type]

    def test_status_changes_are_kept_by_event_in_order(self, store: AnalyticsStore) -> None:
        change = make_change("e2", "o1", "contacted", hours=1, from_status="new")
        assert store.record_status_change(change) is True
        assert store.record_status_change(change) is False
        store.record_status_change(make_change("e1", "o1", "new", hours=1))
        store.record_status_change(make_change("e0", "o2", "won", hours=5))
        found = store.status_changes(at(hours=1), at(hours=5))
        assert [c.event_id for c in found] == ["e1", "e2"]
        assert found[1] == change
        assert store.status_changes(_START, _END, limit=1)[0].event_id == "e1"

    def test_completions_round_trip_every_field(self, store: AnalyticsStore) -> None:
        full = make_completion(
            "a1",
            "o1",
            hours=2,
            activity_type=ActivityType.MEETING,
            assigned_to="alice",
            created_at=at(hours=0),
            due_at=at(hours=1),
            outcome=Outcome.CALLBACK_REQUESTED,
            rule_id="rule-1",
        )
        assert store.record_completion(full) is True
        assert store.record_completion(full) is False
        assert store.record_completion(make_completion("a1", "o9", hours=9)) is False
        bare = make_completion("a0", "o2", hours=2)
        store.record_completion(bare)
        found = store.completions(_START, _END)
        assert found == [bare, full]  # same time: by activity id
        assert found[1].activity_type is ActivityType.MEETING
        assert found[1].outcome is Outcome.CALLBACK_REQUESTED
        for value in (found[1].completed_at, found[1].created_at, found[1].due_at):
            assert_utc(value)

    def test_completions_by_assignee_and_period(self, store: AnalyticsStore) -> None:
        store.record_completion(make_completion("a1", "o1", hours=1, assigned_to="alice"))
        store.record_completion(make_completion("a2", "o1", hours=2, assigned_to="bob"))
        store.record_completion(make_completion("a3", "o2", hours=3))
        assert _activities(store.completions(_START, _END, assigned_to=["bob"])) == ["a2"]
        assert _activities(store.completions(at(hours=1), at(hours=3))) == ["a1", "a2"]
        assert _activities(store.completions(_START, _END, limit=1)) == ["a1"]

    def test_first_contacts_of_the_period_arrivals(self, store: AnalyticsStore) -> None:
        store.record_arrival(make_arrival("o1"))
        store.record_arrival(make_arrival("o2", hours=1))
        store.record_arrival(make_arrival("o3", hours=50))  # outside the period below
        store.record_arrival(make_arrival("o4", hours=2))  # no contact
        note = {"activity_type": ActivityType.NOTE}
        store.record_completion(make_completion("n1", "o1", hours=0.5, **note))  # not contact
        store.record_completion(make_completion("c9", "o1", hours=3))
        store.record_completion(make_completion("c2", "o1", hours=3))  # tie: lower id
        store.record_completion(make_completion("c3", "o1", hours=4))
        email = {"activity_type": ActivityType.EMAIL}
        store.record_completion(make_completion("c4", "o2", hours=100, **email))  # after end
        store.record_completion(make_completion("c5", "o3", hours=51))
        store.record_completion(make_completion("c6", "o4", hours=1, **note))
        found = store.first_contacts(at(hours=0), at(hours=10))
        assert [(c.opportunity_id, c.activity_id) for c in found] == [("o1", "c2"), ("o2", "c4")]
        assert found[1].activity_type is ActivityType.EMAIL
        assert [c.activity_id for c in store.first_contacts(_START, _END)] == ["c2", "c4", "c5"]

    def test_reached_is_the_first_change_to_a_status(self, store: AnalyticsStore) -> None:
        store.record_arrival(make_arrival("o1"))
        store.record_arrival(make_arrival("o2", hours=1))
        store.record_arrival(make_arrival("o3", hours=50))
        store.record_status_change(make_change("e1", "o1", "won", hours=30))
        store.record_status_change(make_change("e2", "o1", "won", hours=20))
        store.record_status_change(make_change("e3", "o2", "lost", hours=5))
        store.record_status_change(make_change("e4", "o3", "won", hours=60))
        store.record_status_change(make_change("e5", "o9", "won", hours=6))  # never arrived
        assert store.reached(at(hours=0), at(hours=10), "won") == {"o1": at(hours=20)}
        assert store.reached(at(hours=0), at(hours=10), "lost") == {"o2": at(hours=5)}
        assert store.reached(_START, _END, "won") == {"o1": at(hours=20), "o3": at(hours=60)}

    def test_completion_groups_are_summed_up_per_key(self, store: AnalyticsStore) -> None:
        # alice: 4 in the period (created 1, 2, 3 and 4 h before; one of them without a
        # creation date); 2 with a due date, 1 of them on time. bob: 1. nobody: 1. One of
        # alice's is after the period.
        for activity, hours, rep, ago, due, rule in (
            ("a1", 10, "alice", 1, 11, "r1"),  # on time
            ("a2", 11, "alice", 2, 10, "r1"),  # late
            ("a3", 12, "alice", 4, None, None),
            ("a4", 13, "alice", None, None, "r2"),
            ("a5", 50, "alice", 1, None, None),  # after the period
            ("b1", 14, "bob", 3, None, "r1"),
            ("n1", 15, None, None, 16, None),
        ):
            store.record_completion(
                make_completion(
                    activity,
                    "o1",
                    hours=hours,
                    assigned_to=rep,
                    created_at=None if ago is None else at(hours=hours - ago),
                    due_at=None if due is None else at(hours=due),
                    rule_id=rule,
                )
            )
        period = (at(hours=0), at(hours=20))
        rows = [
            (g.key, g.completed, g.with_due, g.on_time, g.median_seconds_to_complete)
            for g in store.completion_groups(*period, by="assigned_to")
        ]
        assert rows == [
            (None, 1, 1, 1, None),
            ("alice", 4, 2, 1, 7200.0),  # 1 h, 2 h, 4 h: the middle one
            ("bob", 1, 0, 0, 10800.0),
        ]
        by_rule = store.completion_groups(*period, by="rule_id", keys=["r1", None])
        assert [(g.key, g.completed) for g in by_rule] == [(None, 2), ("r1", 3)]
        [r1] = store.completion_groups(*period, by="rule_id", keys=["r1"])
        assert r1.median_seconds_to_complete == 7200.0  # 1 h, 2 h, 3 h
        even = store.completion_groups(*period, by="assigned_to", keys=["alice", "bob"])
        assert [g.key for g in even] == ["alice", "bob"]
        assert store.completion_groups(*period, by="assigned_to", keys=[]) == []
        with pytest.raises(InvalidInputError):
            store.completion_groups(*period, by="outcome")
        with pytest.raises(InvalidInputError):
            store.completion_groups(*period, by="rule_id", keys="r1")

    def test_completion_groups_count_opportunities_and_outcomes(
        self, store: AnalyticsStore
    ) -> None:
        for activity, opportunity, hours, rule, outcome in (
            ("a1", "o1", 1, "r1", Outcome.SUCCESSFUL),
            ("a2", "o1", 2, "r1", Outcome.NO_ANSWER),
            ("a3", "o2", 3, "r1", Outcome.SUCCESSFUL),
            ("a4", "o2", 4, "r1", None),
            ("a5", "o3", 5, None, Outcome.NO_ANSWER),
            ("a6", "o4", 30, "r1", Outcome.SUCCESSFUL),  # after the period
        ):
            store.record_completion(
                make_completion(activity, opportunity, hours=hours, rule_id=rule, outcome=outcome)
            )
        rows = [
            (g.key, g.completed, g.opportunities, g.outcomes)
            for g in store.completion_groups(at(hours=0), at(hours=20), by="rule_id")
        ]
        assert rows == [
            (None, 1, 1, {"no_answer": 1}),
            ("r1", 4, 2, {"no_answer": 1, "successful": 2}),
        ]

    def test_completion_groups_leave_out_the_parts_not_asked_for(
        self, store: AnalyticsStore
    ) -> None:
        for activity, opportunity, hours in (("a1", "o1", 1), ("a2", "o2", 2), ("a3", "o2", 3)):
            store.record_completion(
                make_completion(
                    activity,
                    opportunity,
                    hours=hours,
                    assigned_to="alice",
                    created_at=at(),
                    outcome=Outcome.SUCCESSFUL,
                )
            )
        period = (at(hours=0), at(hours=20))
        [whole] = store.completion_groups(*period, by="assigned_to")
        assert (whole.median_seconds_to_complete, whole.opportunities) == (7200.0, 2)
        [counts] = store.completion_groups(*period, by="assigned_to", median=False)
        assert counts == replace(whole, median_seconds_to_complete=None)
        [timed] = store.completion_groups(*period, by="assigned_to", opportunities=False)
        assert timed == replace(whole, opportunities=0)
        assert timed.outcomes == {"successful": 3}
        for field in ("median", "opportunities"):
            with pytest.raises(InvalidInputError) as refused:
                store.completion_groups(*period, by="assigned_to", **{field: "no"})  # type: ignore[arg-type]
            assert refused.value.field == field

    def test_completion_buckets_count_per_width(self, store: AnalyticsStore) -> None:
        # From hour 2, 5-hour buckets: [2, 7) a1 a2 a3, [7, 12) none, [12, 17) a4, a5 at the
        # end (out), a0 before the start (out).
        for activity, hours, due, rep in (
            ("a0", 1, None, "alice"),
            ("a1", 2, 3, "alice"),  # on time
            ("a2", 6.5, 5, "bob"),  # late
            ("a3", 4, None, None),
            ("a4", 16.9, 17, "alice"),  # on time
            ("a5", 17, 20, "alice"),
        ):
            store.record_completion(
                make_completion(
                    activity,
                    "o1",
                    hours=hours,
                    assigned_to=rep,
                    due_at=None if due is None else at(hours=due),
                )
            )
        width = timedelta(hours=5)
        found = store.completion_buckets(at(hours=2), at(hours=17), width=width)
        assert {n: (g.key, g.completed, g.with_due, g.on_time) for n, g in found.items()} == {
            0: (None, 3, 2, 1),
            2: (None, 1, 1, 1),
        }
        mine = store.completion_buckets(
            at(hours=2), at(hours=17), width=width, by="assigned_to", keys=["bob", None]
        )
        assert {n: g.completed for n, g in mine.items()} == {0: 2}
        for bad in (
            {"width": timedelta(0)},
            {"width": 3600},
            {"width": width, "keys": ["bob"]},
            {"width": width, "by": "outcome"},
        ):
            with pytest.raises(InvalidInputError):
                store.completion_buckets(at(hours=2), at(hours=17), **bad)

    def test_won_touches_credit_the_last_touch_before_the_first_win(
        self, store: AnalyticsStore
    ) -> None:
        for event, opportunity, to, hours in (
            ("w1", "o1", "won", 10),
            ("w2", "o2", "won", 6),
            ("w3", "o3", "won", 3),
            ("w4", "o3", "won", 9),  # not the first win
            ("w5", "o4", "lost", 4),
            ("w6", "o5", "won", 30),  # after the period
        ):
            store.record_status_change(make_change(event, opportunity, to, hours=hours))
        for activity, opportunity, hours, rule in (
            ("a0", "o1", -5, "r3"),  # before the period
            ("a1", "o1", 5, "r1"),
            ("a2", "o1", 8, "r2"),  # o1's last touch
            ("a3", "o1", 12, "r1"),  # after its win
            ("a4", "o2", 7, "r1"),  # after its win: converted, no win
            ("a5", "o3", 2, None),  # o3's last touch (manual)
            ("a6", "o3", 2, "r2"),  # same time, a5 < a6: a6 is the last
            ("a7", "o4", 1, "r1"),  # not won
        ):
            store.record_completion(
                make_completion(activity, opportunity, hours=hours, rule_id=rule)
            )
        period = (at(hours=0), at(hours=20))
        rows = [(t.key, t.converted, t.wins) for t in store.won_touches(*period, "won")]
        assert rows == [(None, 1, 0), ("r1", 2, 0), ("r2", 2, 2)]
        only = store.won_touches(*period, "won", keys=[None, "r1"])
        assert [(t.key, t.converted, t.wins) for t in only] == [(None, 1, 1), ("r1", 2, 1)]
        assert store.won_touches(*period, "qualified") == []
        with pytest.raises(InvalidInputError):
            store.won_touches(*period, 3)  # type: ignore[arg-type]

    def test_stage_sums_follow_each_opportunitys_stays(self, store: AnalyticsStore) -> None:
        for event, opportunity, to, hours in (
            ("e1", "o1", "new", 1),
            ("e2", "o1", "new", 2),  # a repeat: the stay goes on
            ("e3", "o1", "won", 5),  # new: 4 h
            ("e4", "o1", "new", 6),  # won: 1 h; o1 is still in new
            ("e5", "o2", "new", 2),
            ("e7", "o2", "lost", 4),  # same time as e6, after it
            ("e6", "o2", "won", 4),  # new: 2 h; won: 0 h
            ("e8", "o3", "won", 3),  # skips new
            ("e9", "o4", "new", 30),  # after the period
        ):
            store.record_status_change(make_change(event, opportunity, to, hours=hours))
        found = store.stage_sums(at(hours=0), at(hours=20), ["new", "won", "qualified"])
        assert [
            (s.stage, s.reached, s.advanced, s.still_in, s.median_stay_seconds) for s in found
        ] == [
            ("new", 2, 2, 1, 7200.0),  # stays of 4 h and 2 h: the lower middle
            ("won", 3, 0, 1, 0.0),  # stays of 1 h and 0 h
            ("qualified", 0, 0, 0, None),
        ]
        with pytest.raises(InvalidInputError):
            store.stage_sums(at(hours=0), at(hours=20), ["new", "new"])
        with pytest.raises(InvalidInputError):
            store.stage_sums(at(hours=0), at(hours=20), "new")

    def test_completions_of_opportunities_in_a_period(self, store: AnalyticsStore) -> None:
        for activity, opportunity, hours in (
            ("a1", "o1", 3),
            ("a2", "o2", 1),
            ("a3", "o1", 1),
            ("a4", "o1", 20),  # at the period's end: out
            ("a5", "o3", 2),  # not asked for
            ("a0", "o2", 1),  # ties by activity id
        ):
            store.record_completion(make_completion(activity, opportunity, hours=hours))
        found = store.completions_of(["o1", "o2", "o9"], at(hours=0), at(hours=20))
        assert _activities(found) == ["a0", "a2", "a3", "a1"]
        assert_utc(found[0].completed_at)
        assert store.completions_of([], at(hours=0), at(hours=20)) == []
        with pytest.raises(InvalidInputError):
            store.completions_of("o1", at(hours=0), at(hours=20))
        with pytest.raises(InvalidInputError):
            store.completions_of(["o1"], at(hours=20), at(hours=0))

    def test_times_in_other_zones_are_the_same_instants(self, store: AnalyticsStore) -> None:
        zone = timezone(timedelta(hours=-5))
        store.record_arrival(make_arrival("o1", arrived_at=at(hours=1).astimezone(zone)))
        [found] = store.arrivals(at(hours=1).astimezone(zone), at(hours=2))
        assert found.arrived_at == at(hours=1)
        assert_utc(found.arrived_at)

    @pytest.mark.parametrize(
        "call",
        [
            lambda s: s.arrivals(datetime(2026, 1, 1), _END),
            lambda s: s.arrivals(_END, _START),
            lambda s: s.arrivals(_START, _START),
            lambda s: s.arrivals(_START, _END, sources="website"),
            lambda s: s.arrivals(_START, _END, owners=[1]),
            lambda s: s.arrivals(_START, _END, limit=0),
            lambda s: s.status_changes("2026-01-01", _END),
            lambda s: s.completions(_START, _END, assigned_to="alice"),
            lambda s: s.first_contacts(_START, _END, limit=-1),
            lambda s: s.reached(_START, _END, 3),
            lambda s: s.record_arrival({"opportunityId": "o1"}),
        ],
    )
    def test_bad_arguments_are_refused(self, store: AnalyticsStore, call: Any) -> None:
        with pytest.raises(InvalidInputError):
            call(store)

    def test_one_of_concurrent_records_of_a_fact_stores_it(self, store: AnalyticsStore) -> None:
        results = race(6, lambda n: store.record_arrival(make_arrival("o1", event_id=f"e{n}")))
        assert sorted(results, key=str) == [False] * 5 + [True]
        assert len(store.arrivals(_START, _END)) == 1
        results = race(6, lambda n: store.record_completion(make_completion("a1", "o1")))
        assert sorted(results, key=str) == [False] * 5 + [True]

    # ------------------------------------------------------------------ the leads summed up

    def _leads(self, store: AnalyticsStore) -> None:
        """o1 (alice, web) called after 3 minutes and won; o2 (no owner, phone) emailed by
        bob after 2 hours, his earlier note not a contact, the call recorded before the lead
        arrived; o3 (no owner or source) not contacted; o4 before the period."""
        store.record_completion(make_completion("c2", "o2", hours=3, assigned_to="bob"))
        store.record_arrival(make_arrival("o1", source="web", owner="alice"))
        store.record_arrival(make_arrival("o2", hours=1, source="phone"))
        store.record_arrival(make_arrival("o3", hours=2))
        store.record_arrival(make_arrival("o4", hours=-5, owner="alice"))
        note = ActivityType.NOTE
        store.record_completion(make_completion("n2", "o2", hours=1.5, activity_type=note))
        store.record_completion(make_completion("c9", "o1", hours=0.2, rule_id="r1"))
        store.record_completion(make_completion("c1", "o1", hours=0.05, rule_id="r1"))
        store.record_status_change(make_change("s1", "o1", "won", hours=10))
        store.record_status_change(make_change("s2", "o1", "won", hours=12))

    def test_lead_sums_of_a_period(self, store: AnalyticsStore) -> None:
        self._leads(store)
        day = timedelta(hours=1)
        [total] = store.lead_sums(at(hours=0), at(hours=3), status="won", day=day)
        assert (total.key, total.leads, total.contacted, total.won) == (None, 3, 2, 1)
        assert total.within == (1, 1, 1)
        assert total.buckets == (1, 0, 1, 0, 0, 0)
        assert (total.p50_seconds, total.p90_seconds) == (180.0, 7200.0)
        assert total.median_seconds_to_win == 36000.0
        by_rep = store.lead_sums(at(hours=0), at(hours=3), status="won", day=day, by="rep")
        assert [(s.key, s.leads, s.contacted) for s in by_rep] == [
            (None, 1, 0),
            ("alice", 1, 1),
            ("bob", 1, 1),  # by his contact: o2 has no owner
        ]
        by_source = store.lead_sums(
            at(hours=0), at(hours=3), status="won", day=day, by="source", sources=["web", None]
        )
        assert [(s.key, s.leads) for s in by_source] == [(None, 1), ("web", 1)]
        weeks = store.lead_sums(
            at(hours=0), at(hours=3), status="won", day=day, by="bucket",
            origin=at(hours=-1), width=timedelta(hours=2),
        )  # fmt: skip
        assert [(s.bucket, s.leads) for s in weeks] == [(0, 1), (1, 2)]
        ruled = store.lead_sums(at(hours=0), at(hours=3), status="won", day=day, automations=["r1"])
        assert [(s.leads, s.contacted) for s in ruled] == [(1, 1)]
        nobody = store.lead_sums(at(hours=0), at(hours=3), status="won", day=day, reps=["dave"])
        assert nobody == []

    def test_late_contacts_are_those_after_a_day(self, store: AnalyticsStore) -> None:
        self._leads(store)
        [late] = store.late_contacts(at(hours=0), at(hours=3), day=timedelta(hours=1))
        assert tuple(late) == ("bob", "phone", at(hours=1), at(hours=3))
        assert_utc(late.arrived_at)
        assert store.late_contacts(at(hours=0), at(hours=3), day=timedelta(hours=2)) == []
        with pytest.raises(InvalidInputError):
            store.late_contacts(at(hours=0), at(hours=3), day=timedelta(0))
