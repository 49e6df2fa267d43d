"""Every analytics figure (:mod:`leadflow.runtime.analytics`) against a dataset computed by
hand, on every backend: memory, SQLite, PostgreSQL (when configured) and MongoDB (mongomock).

The dataset (T0 = Monday 2026-01-05 09:00 UTC; the calendar is 09:00-17:00 UTC, Monday to
Friday; the period is the week [T0, T0 + 7 days)):

===== ========== ====== ===== =========================================== ==================
lead  arrived    source owner first contact                               won
===== ========== ====== ===== =========================================== ==================
o1    T0         web    alice call c1 at T0+3min (180 s)                  T0+2d (172,800 s)
o2    T0+1h      web    bob   email c2 at T0+1h30 (1,800 s); a note first  lost
o3    T0+2h      phone  alice meeting c3 at Tue 10:00 (82,800 s)          T0+3d (252,000 s)
o4    Fri 16:00  phone  -     call c4 (carol) Mon 12th 12:00 (244,800 s)   -
o5    T0+3h      -      bob   none                                         -
o6    T0-1d      (before the period: left out of the lead figures)
===== ========== ====== ===== =========================================== ==================

o4's contact is after the period and still counts (the cohort's first contact, whenever);
within one business day: Fri 16:00 + 8 working hours is Mon 16:00, so yes; o3: Mon 11:00 +
8 h is Tue 11:00, so yes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mongomock_ng
import pytest

from leadflow import InvalidInputError, WorkingCalendar
from leadflow.activity_models import ActivityType, Outcome
from leadflow.ports import Storage
from leadflow.runtime.analytics import Analytics, funnel_of, percentile
from leadflow.stores.memory import memory_storage
from leadflow.stores.mongo import mongo_storage
from leadflow.testing.contracts import make_activity, make_arrival, make_change, make_completion

from .sql_support import fresh_storage, on_postgres

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
START, END = T0, T0 + timedelta(days=7)
AS_OF = END
TEAMS = {"alice": "east", "carol": "east", "bob": "west"}  # dave: in no team


def t(*, days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours, minutes=minutes)


def _hours(moment: datetime) -> float:
    return (moment - T0).total_seconds() / 3600


def load(storage: Storage) -> None:
    facts = storage.analytics
    assert facts is not None
    for opportunity, at, source, owner in (
        ("o1", t(), "web", "alice"),
        ("o2", t(hours=1), "web", "bob"),
        ("o3", t(hours=2), "phone", "alice"),
        ("o4", t(days=4, hours=7), "phone", None),
        ("o5", t(hours=3), None, "bob"),
        ("o6", t(days=-1), "web", "dave"),
    ):
        facts.record_arrival(
            make_arrival(opportunity, hours=_hours(at), source=source, owner=owner)
        )
    for event, opportunity, status, at in (
        ("s1", "o1", "new", t()),
        ("s2", "o1", "contacted", t(hours=1)),
        ("s3", "o1", "won", t(days=2)),
        ("s4", "o2", "new", t(hours=1)),
        ("s5", "o2", "contacted", t(hours=2)),
        ("s6", "o2", "lost", t(days=5)),
        ("s7", "o3", "new", t(hours=2)),
        ("s8", "o3", "qualified", t(days=1)),
        ("s9", "o3", "won", t(days=3)),
        ("s10", "o6", "won", t(hours=-1)),
    ):
        facts.record_status_change(make_change(event, opportunity, status, hours=_hours(at)))
    call, email, meeting = ActivityType.CALL, ActivityType.EMAIL, ActivityType.MEETING
    for activity, opportunity, kind, rep, created, due, done, outcome, rule in (
        ("c1", "o1", call, "alice", t(), t(hours=1), t(minutes=3), Outcome.SUCCESSFUL, "r-web"),
        ("n2", "o2", ActivityType.NOTE, "bob", t(hours=1), None, t(hours=1, minutes=1), None, None),
        (
            "c2", "o2", email, "bob", t(hours=1), t(hours=1, minutes=15),
            t(hours=1, minutes=30), Outcome.NO_ANSWER, "r-web",
        ),
        (
            "c3", "o3", meeting, "alice", t(hours=2), t(days=1, hours=2), t(days=1, hours=1),
            Outcome.SUCCESSFUL, "r-seq",
        ),
        ("c4", "o4", call, "carol", t(days=4, hours=7), None, t(days=7, hours=3), None, "r-web"),
        (
            "c6", "o6", call, "dave", t(days=-1), t(days=-1, hours=1), t(minutes=1), None,
            "r-web",
        ),
        (
            "f1", "o1", ActivityType.FOLLOW_UP, "alice", t(days=1), t(days=1, hours=4),
            t(days=1, hours=1), Outcome.CONVERTED, None,
        ),
    ):  # fmt: skip
        facts.record_completion(
            make_completion(
                activity,
                opportunity,
                hours=_hours(done),
                activity_type=kind,
                assigned_to=rep,
                created_at=created,
                due_at=due,
                outcome=outcome,
                rule_id=rule,
            )
        )
    # Open activities: bob's is overdue at AS_OF, alice's is not.
    storage.activities.add(make_activity("open-1", assigned_to="bob", due_date=t(days=2)))
    storage.activities.add(make_activity("open-2", assigned_to="alice", due_date=t(days=10)))


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=on_postgres), "mongo"])
def analytics(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Analytics]:
    def made(storage: Storage) -> Analytics:
        load(storage)
        assert storage.analytics is not None
        return Analytics(storage.analytics, storage.activities, WorkingCalendar(), teams=TEAMS)

    if request.param == "memory":
        yield made(memory_storage())
    elif request.param == "mongo":
        yield made(mongo_storage(mongomock_ng.MongoClient()["analytics"]))  # type: ignore[arg-type]
    else:
        kind = "sqlite-file" if request.param == "sqlite" else "postgres"
        with fresh_storage(kind, tmp_path) as storage:
            yield made(storage)


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([4, 1, 3, 2], 50) == 2  # the lower middle
    assert percentile([4, 1, 3, 2], 90) == 4
    assert percentile([7], 90) == 7


def test_speed_to_lead(analytics: Analytics) -> None:
    report = analytics.speed_to_lead(START, END)
    overall = report.overall
    assert (overall.leads, overall.contacted) == (5, 4)
    assert (overall.p50_seconds, overall.p90_seconds) == (1800, 244800)
    assert overall.within_5_minutes == pytest.approx(0.2)
    assert overall.within_1_hour == pytest.approx(0.4)
    assert overall.within_1_business_day == pytest.approx(0.8)
    assert overall.buckets == {"<5m": 1, "5m-1h": 1, "1h-4h": 0, "4h-24h": 1, "1d-7d": 1, ">=7d": 0}
    by_rep = {rep: (s.leads, s.contacted, s.p50_seconds) for rep, s in report.by_rep.items()}
    assert by_rep == {"alice": (2, 2, 180), "bob": (2, 1, 1800), "carol": (1, 1, 244800)}
    assert report.by_rep["alice"].p90_seconds == 82800
    by_source = {key: (s.leads, s.contacted, s.p50_seconds) for key, s in report.by_source.items()}
    assert by_source == {"(none)": (1, 0, None), "phone": (2, 2, 82800), "web": (2, 2, 180)}


def test_speed_to_lead_filtered_by_rep_and_source(analytics: Analytics) -> None:
    bob = analytics.speed_to_lead(START, END, reps=["bob"]).overall
    assert (bob.leads, bob.contacted, bob.p50_seconds) == (2, 1, 1800)
    carol = analytics.speed_to_lead(START, END, reps=["carol"]).overall  # via her contact
    assert (carol.leads, carol.p50_seconds) == (1, 244800)
    web = analytics.speed_to_lead(START, END, sources=["web"]).overall
    assert (web.leads, web.p50_seconds, web.within_5_minutes) == (2, 180, 0.5)


def test_lead_source_performance(analytics: Analytics) -> None:
    rows = [
        (r.source, r.leads, r.contacted, r.won, r.conversion_rate, r.median_time_to_win_seconds)
        for r in analytics.sources(START, END)
    ]
    assert rows == [
        ("(none)", 1, 0, 0, 0.0, None),
        ("phone", 2, 2, 1, 0.5, 252000),
        ("web", 2, 2, 1, 0.5, 172800),
    ]


def test_rep_leaderboard(analytics: Analytics) -> None:
    rows = analytics.leaderboard(START, END, as_of=AS_OF)
    table = [
        (
            r.rep,
            r.completed,
            r.on_time_rate,
            r.median_time_to_complete_seconds,
            r.overdue_now,
            r.speed_to_lead_p50_seconds,
            r.wins,
        )
        for r in rows
    ]
    assert table == [
        ("alice", 3, 1.0, 3600, 0, 180, 2),
        ("bob", 2, 0.0, 60, 1, 1800, 0),
        ("dave", 1, 0.0, 86460, 0, None, 0),
        ("carol", 0, None, None, 0, 244800, 0),
    ]
    by_speed = analytics.leaderboard(START, END, as_of=AS_OF, rank_by="speed_to_lead_p50")
    assert [r.rep for r in by_speed] == ["alice", "bob", "carol", "dave"]
    by_overdue = analytics.leaderboard(START, END, as_of=AS_OF, rank_by="overdue_now")
    assert [r.rep for r in by_overdue] == ["alice", "carol", "dave", "bob"]
    only_bob = analytics.leaderboard(START, END, as_of=AS_OF, reps=["bob"])
    assert [(r.rep, r.completed, r.overdue_now) for r in only_bob] == [("bob", 2, 1)]


def test_funnel(analytics: Analytics) -> None:
    funnel = analytics.funnel(START, END, stages=("new", "contacted", "qualified", "won"))
    assert funnel.reached == [3, 2, 1, 2]
    steps = [(s.from_stage, s.advanced, s.conversion, s.drop_off) for s in funnel.steps]
    assert steps == [
        ("new", 2, pytest.approx(2 / 3), 1),
        ("contacted", 0, 0.0, 2),
        ("qualified", 1, 1.0, 0),
    ]
    # Stays (ended in the period): new o1 1 h, o2 1 h, o3 22 h; contacted o1 47 h, o2 118 h;
    # qualified o3 48 h; won: none ended. Still in at the end: o1 and o3 won, o2 lost.
    assert funnel.median_time_in_stage_seconds == [3600, 169200, 172800, None]
    assert funnel.still_in == [0, 0, 0, 2]


def test_automation_effectiveness_with_last_touch_wins(analytics: Analytics) -> None:
    rows = [
        (r.automation_id, r.completed, r.outcomes, r.touched, r.wins, r.win_rate)
        for r in analytics.automation(START, END)
    ]
    assert rows == [
        ("(manual)", 2, {"converted": 1}, 2, 1, 0.5),  # o1's last touch before its win: f1
        ("r-seq", 1, {"successful": 1}, 1, 1, 1.0),
        ("r-web", 3, {"no_answer": 1, "successful": 1}, 3, 0, 0.0),  # c6 has no outcome
    ]


def test_figures_are_json_documents(analytics: Analytics) -> None:
    document = analytics.speed_to_lead(START, END).to_document()
    assert document["overall"]["p50Seconds"] == 1800  # type: ignore[index]
    assert analytics.funnel(START, END).to_document()["stages"] == [
        "new",
        "contacted",
        "qualified",
        "proposal",
        "won",
    ]


def test_time_in_stage_takes_ended_stays_in_time_order() -> None:
    changes = [
        make_change("b", "x", "contacted", hours=5),
        make_change("a", "x", "new", hours=1),
        make_change("c", "x", "contacted", hours=6),  # the same status again: the stay goes on
        make_change("d", "x", "new", hours=9),  # back to new: contacted lasted 4 h
        make_change("e", "y", "new", hours=0),
        make_change("f", "y", "lost", hours=2),  # a stage left for a status not in the funnel
    ]
    funnel = funnel_of(changes, ("new", "contacted"))
    assert funnel.median_time_in_stage_seconds == [7200, 14400]  # new: 4 h (x), 2 h (y)
    assert funnel.still_in == [1, 0]  # x is new again; y is lost (not a stage)
    assert funnel.reached == [2, 1]


@pytest.mark.parametrize("stages", [(), "won", ("won", "won"), ("new", 3)])
def test_the_funnel_refuses_bad_stages(stages: object) -> None:
    with pytest.raises(InvalidInputError):
        funnel_of([], stages)  # type: ignore[arg-type]


def test_a_business_day_is_the_calendar_day_length() -> None:
    assert WorkingCalendar().day_length == timedelta(hours=8)
