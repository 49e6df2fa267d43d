"""The weekly trend (figures per ISO week) on the hand-computed dataset of
:mod:`tests.test_analytics_figures`, on every backend; the ISO weeks of a period.

Over [Sun 2026-01-04 09:00, Mon 2026-01-12 09:00) UTC the period touches three ISO weeks:
2026-W01 (its last 15 hours: o6 arrived, first contacted on Monday, and was won an hour before
T0), 2026-W02 (o1..o5 arrived; c1, n2, c2, c3, c6, f1 completed) and 2026-W03 (its first nine
hours: nothing; c4 came at 12:00).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leadflow.runtime.analytics import Analytics, weeks_of

from .test_analytics_figures import END, T0, analytics, t

__all__ = ["analytics"]


def test_iso_weeks_are_utc_mondays_clipped_to_the_period() -> None:
    weeks = weeks_of(datetime(2026, 12, 30, 12, tzinfo=UTC), datetime(2027, 1, 5, tzinfo=UTC))
    assert weeks == [
        ("2026-W53", datetime(2026, 12, 30, 12, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC)),
        ("2027-W01", datetime(2027, 1, 4, tzinfo=UTC), datetime(2027, 1, 5, tzinfo=UTC)),
    ]
    monday = datetime(2026, 1, 5, tzinfo=UTC)
    assert [w[0] for w in weeks_of(monday, monday + timedelta(days=7))] == ["2026-W02"]
    assert len(weeks_of(monday, monday + timedelta(days=91))) == 13


def test_the_trend_per_week(analytics: Analytics) -> None:
    rows = analytics.trend(t(days=-1), END)
    table = [
        (r.week, r.start, r.leads, r.contacted, r.won, r.speed_to_lead_p50_seconds, r.completed)
        for r in rows
    ]
    assert table == [
        ("2026-W01", t(days=-1), 1, 1, 1, 86460, 0),  # o6: contacted by c6 at T0 + 1 min
        ("2026-W02", T0.replace(hour=0), 5, 4, 2, 1800, 6),
        ("2026-W03", END.replace(hour=0), 0, 0, 0, None, 0),
    ]
    w02 = rows[1]
    assert w02.conversion_rate == pytest.approx(0.4)
    # Due dates among W02's completions: c1, c2, c3, c6, f1 -> on time c1, c3, f1.
    assert w02.on_time_rate == pytest.approx(3 / 5)
    assert rows[2].end == END


def test_the_trend_takes_the_filters(analytics: Analytics) -> None:
    bob = analytics.trend(t(days=-1), END, reps=["bob"])
    assert [(r.leads, r.completed) for r in bob] == [(0, 0), (2, 2), (0, 0)]
    web = analytics.trend(t(days=-1), END, sources=["web"], automations=["r-web"])
    # o6 (W01), o1 and o2 (W02); r-web's c1, c2 and c6 (on o6, at T0 + 1 min) completed in W02
    assert [(r.leads, r.completed) for r in web] == [(1, 0), (2, 3), (0, 0)]
