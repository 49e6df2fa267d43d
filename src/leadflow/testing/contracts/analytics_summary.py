"""The contract of :meth:`~leadflow.ports.AnalyticsStore.lead_summary` (every grouping of a
period's leads from one read of them): a part of
:class:`~leadflow.testing.contracts.AnalyticsStoreContract`, on its dataset of leads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ...errors import InvalidInputError
from ...ports import AnalyticsStore
from .data import assert_utc, at

__all__ = ["LeadSummaryContract"]


class LeadSummaryContract:
    """The lead summary's tests (mixed into the analytics store's contract)."""

    def _leads(self, store: AnalyticsStore) -> None:
        """The contract's leads (its ``_leads``): o1 (alice, web) called after 3 minutes and
        won; o2 (no owner, phone) emailed by bob after 2 hours; o3 (no owner or source) not
        contacted; o4 before the period."""
        raise NotImplementedError

    def test_a_lead_summary_gives_every_grouping_at_once(self, store: AnalyticsStore) -> None:
        self._leads(store)
        summary = store.lead_summary(
            at(hours=0), at(hours=3), status="won", day=timedelta(hours=1),
            groupings=["bucket", None, "rep", "source"], origin=at(hours=-1),
            width=timedelta(hours=2), late=True,
        )  # fmt: skip
        [total] = summary.sums[None]
        assert (total.key, total.leads, total.contacted, total.won) == (None, 3, 2, 1)
        assert (total.within, total.buckets) == ((1, 1, 1), (1, 0, 1, 0, 0, 0))
        assert (total.p50_seconds, total.p90_seconds) == (180.0, 7200.0)
        assert total.median_seconds_to_win == 36000.0
        assert [(s.key, s.leads, s.contacted) for s in summary.sums["rep"]] == [
            (None, 1, 0),
            ("alice", 1, 1),
            ("bob", 1, 1),  # by his contact: o2 has no owner
        ]
        assert [(s.key, s.leads) for s in summary.sums["source"]] == [
            (None, 1),
            ("phone", 1),
            ("web", 1),
        ]
        assert [(s.bucket, s.leads) for s in summary.sums["bucket"]] == [(0, 1), (1, 2)]
        [late] = summary.late
        assert tuple(late) == ("bob", "phone", at(hours=1), at(hours=3))
        assert_utc(late.arrived_at)
        assert_utc(late.contacted_at)

    def test_a_lead_summary_takes_the_filters(self, store: AnalyticsStore) -> None:
        self._leads(store)
        day = timedelta(hours=1)
        bob = store.lead_summary(
            at(hours=0), at(hours=3), status="won", day=day, groupings=[None], reps=["bob"],
            late=True,
        )  # fmt: skip
        assert [(s.leads, s.contacted, s.won) for s in bob.sums[None]] == [(1, 1, 0)]
        assert [late.rep for late in bob.late] == ["bob"]
        ruled = store.lead_summary(
            at(hours=0), at(hours=3), status="won", day=day, groupings=["rep", None],
            automations=["r1"], late=True,
        )  # fmt: skip
        assert [(s.key, s.leads) for s in ruled.sums["rep"]] == [("alice", 1)]
        assert [(s.leads, s.won) for s in ruled.sums[None]] == [(1, 1)]
        assert ruled.late == []
        unasked = store.lead_summary(
            at(hours=0), at(hours=3), status="won", day=day, groupings=[None]
        )
        assert list(unasked.sums) == [None]
        assert unasked.late == []  # the late contacts only when asked for
        nobody = store.lead_summary(
            at(hours=0), at(hours=3), status="won", day=day, groupings=[None, "rep"], reps=["dave"]
        )
        assert nobody.sums == {None: [], "rep": []}

    @pytest.mark.parametrize("groupings", ["rep", [], ["owner"], [None, None]])
    def test_bad_groupings_are_refused(self, store: AnalyticsStore, groupings: object) -> None:
        with pytest.raises(InvalidInputError) as raised:
            store.lead_summary(
                at(hours=0), at(hours=3), status="won", day=timedelta(hours=1),
                groupings=groupings,  # type: ignore[arg-type]
            )  # fmt: skip
        assert raised.value.field == "groupings"
