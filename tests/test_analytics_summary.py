"""Every grouping of the leads from one read (``lead_summary``) gives exactly what each
grouping's own query gives (``lead_sums``, ``late_contacts``), on random small datasets, under
random filters, on every backend; and a dashboard reads the period's leads once."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from leadflow import InvalidInputError
from leadflow.facts import LeadSummary
from leadflow.ports import AnalyticsStore, Storage
from leadflow.runtime.analytics import Analytics
from leadflow.stores.analytics_leads import check_lead_query, lead_sums_of, rows_of
from leadflow.stores.analytics_summary import summary_of, taken
from leadflow.stores.sql.types import micros
from leadflow.testing.contracts import make_activity

from .test_analytics_leads import (
    AS_OF,
    CALENDARS,
    END,
    REPS,
    RULES,
    SOURCES,
    START,
    dataset,
    record,
    storage,
)

__all__ = ["storage"]  # the backends' fixture, shared

GROUPINGS: list[str | None] = [None, "rep", "source", "bucket"]
WEEKS: dict[str, Any] = {"origin": START - timedelta(days=2), "width": timedelta(days=7)}


def _wanted(rng: random.Random) -> dict[str, set[str | None] | None]:
    return {
        name: None if rng.random() < 0.4 else set(rng.sample(values, 2))
        for name, values in (
            ("reps", [*REPS, None]),
            ("sources", [*SOURCES, None]),
            ("automations", [*RULES, None]),
        )
    }


@pytest.mark.parametrize("seed", [21, 22])
def test_a_summary_is_each_grouping_read_alone(storage: Storage, seed: int) -> None:
    record(storage, dataset(seed, named_none=seed % 2 == 0), seed)
    store = storage.analytics
    assert store is not None
    day = timedelta(hours=8)
    rng = random.Random(seed)
    for n in range(6):
        wanted = _wanted(rng)
        groupings = rng.sample(GROUPINGS, rng.randrange(1, 5))
        weeks = WEEKS if "bucket" in groupings else {}
        late = n % 2 == 0
        summary = store.lead_summary(
            START, END, status="won", day=day, groupings=groupings, late=late, **weeks, **wanted
        )
        assert isinstance(summary, LeadSummary)
        assert sorted(summary.sums, key=str) == sorted(groupings, key=str)
        for by in groupings:
            alone = WEEKS if by == "bucket" else {}
            expected = store.lead_sums(START, END, status="won", day=day, by=by, **alone, **wanted)
            assert summary.sums[by] == expected, (by, wanted)
        expected_late = store.late_contacts(START, END, day=day, **wanted) if late else []
        assert sorted(summary.late, key=str) == sorted(expected_late, key=str)
    assert store.lead_summary(START, END, status="won", day=day, groupings=[None]).sums[None]


def test_the_pass_in_microseconds_is_the_pass_in_datetimes(storage: Storage) -> None:
    """The rows as SQLite keeps them (integers) sum up as the datetimes do, and as the
    reference :func:`lead_sums_of` does."""
    record(storage, dataset(23, named_none=False), 23)
    store = storage.analytics
    assert store is not None
    rows = rows_of(
        store.arrivals(START, END),
        store.first_contacts(START, END),
        store.reached(START, END, "won"),
    )
    query = check_lead_query(START, END, day=timedelta(hours=1), status="won", by="bucket", **WEEKS)
    as_datetimes = summary_of(taken(rows, query), query, tuple(GROUPINGS), late=True)
    as_integers = summary_of(
        [
            (micros(a), s, r, None if c is None else micros(c), None if w is None else micros(w))
            for a, s, r, c, w in taken(rows, query)
        ],
        query,
        tuple(GROUPINGS),
        late=True,
        micros=True,
    )
    # The late contacts kept in microseconds (made datetimes only when read as such) are
    # those in datetimes, either way round.
    assert (
        as_integers.late_micros
        == as_datetimes.late_micros
        == [
            (rep, source, micros(arrived), micros(contacted))
            for rep, source, arrived, contacted in as_datetimes.late
        ]
    )
    assert as_integers == as_datetimes
    assert as_datetimes.sums["bucket"] == lead_sums_of(rows, query)
    assert as_datetimes.late


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"groupings": "rep"}, "groupings"),
        ({"groupings": []}, "groupings"),
        ({"groupings": ["owner"]}, "groupings"),
        ({"groupings": ["rep", "rep"]}, "groupings"),
        ({"groupings": ["rep"], "width": timedelta(days=7)}, "by"),
        ({"groupings": ["bucket"], "width": timedelta(days=7)}, "origin"),
        ({"groupings": [None], "late": "yes"}, "late"),
        ({"groupings": [None], "day": timedelta(0)}, "day"),
        ({"groupings": [None], "reps": "alice"}, "reps"),
    ],
)
def test_bad_summaries_are_refused_naming_the_field(
    storage: Storage, arguments: dict[str, Any], field: str
) -> None:
    store = storage.analytics
    assert store is not None
    given: dict[str, Any] = {"status": "won", "day": timedelta(hours=8)} | arguments
    with pytest.raises(InvalidInputError) as raised:
        store.lead_summary(START, END, **given)
    assert raised.value.field == field


class _Counted:
    """The store, counting the lead reads asked of it."""

    def __init__(self, store: AnalyticsStore) -> None:
        self.store = store
        self.asked: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name in ("lead_sums", "late_contacts", "lead_summary", "arrivals", "first_contacts"):
            self.asked.append(name)
        return getattr(self.store, name)


@pytest.mark.parametrize("seed", [24, 25])
def test_a_dashboard_reads_the_leads_once(storage: Storage, seed: int) -> None:
    record(storage, dataset(seed, named_none=False), seed)
    assert storage.analytics is not None
    for n in range(3):
        storage.activities.add(
            make_activity(f"open-{n}", assigned_to=REPS[n], due_date=START + timedelta(days=n))
        )
    counted = _Counted(storage.analytics)
    calendar = CALENDARS[seed % 2]
    analytics = Analytics(counted, storage.activities, calendar)  # type: ignore[arg-type]
    plain = Analytics(storage.analytics, storage.activities, calendar)
    rng = random.Random(seed)
    for f in [{}, {"reps": ["alice", "(none)"]}, {"automations": [rng.choice(RULES)]}]:
        counted.asked.clear()
        board = analytics.dashboard(START, END, as_of=AS_OF, **f)
        assert counted.asked == ["lead_summary"], f
        assert board.speed_to_lead == plain.speed_to_lead(START, END, **f)
        assert board.sources == plain.sources(START, END, **f)
        assert board.leaderboard == plain.leaderboard(START, END, as_of=AS_OF, **f)
        assert board.trend == plain.trend(START, END, **f)
    counted.asked.clear()
    assert analytics.speed_to_lead(START, END).overall.leads > 0
    assert counted.asked == ["lead_summary"]
