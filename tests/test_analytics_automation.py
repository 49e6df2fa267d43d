"""Automation effectiveness per rule, per sequence and per A/B branch, with the "no effect"
flag, on the hand-computed dataset of :mod:`tests.test_analytics_figures` plus, on every
backend:

- rule ``r-web`` (stored) created 10 activities in the period, 5 of them completed: 10 is
  enough to judge, and a half is done: it has an effect;
- rule ``r-idle`` created 12 in the period (and one before it), 2 completed: 2/12 < 0.2, so
  "no effect"; it completed nothing in the period's completion facts;
- sequence ``r-seq`` (stored) enrolled o1 (variant b, still active), o2 and o3 (variant a,
  both reached the goal: o2 after 1 day, o3 after 3 days less 2 hours) in the period, and o6
  the day before it (left out).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import mongomock_ng
import pytest

from leadflow import WorkingCalendar
from leadflow.ports import Storage
from leadflow.runtime.analytics import (
    NO_EFFECT_MAX_COMPLETION,
    NO_EFFECT_MIN_ACTIVITIES,
    Analytics,
)
from leadflow.sequences import EnrollmentState
from leadflow.stores.memory import memory_storage
from leadflow.stores.mongo import mongo_storage
from leadflow.testing.contracts import make_activity, make_enrollment, make_rule, make_sequence

from .sql_support import fresh_storage, on_postgres
from .test_analytics_figures import END, START, TEAMS, load, t


def load_automation(storage: Storage) -> None:
    load(storage)
    assert storage.sequences is not None and storage.enrollments is not None
    storage.rules.create(make_rule("r-web"))
    storage.rules.create(make_rule("r-idle"))
    storage.sequences.add(make_sequence("r-seq"))
    for rule, made, done in (("r-web", 10, 5), ("r-idle", 12, 2)):
        for n in range(made):
            created = t(hours=n + 1)
            storage.activities.add(
                make_activity(
                    f"{rule}-{n}",
                    opportunity_id="o9",
                    assigned_to="bob" if n % 2 else "alice",
                    created_at=created,
                    completed_date=created + timedelta(minutes=5) if n < done else None,
                    metadata={"automationRuleId": rule},
                )
            )
    storage.activities.add(
        make_activity("early", created_at=t(days=-2), metadata={"automationRuleId": "r-idle"})
    )
    goal = EnrollmentState.GOAL_REACHED
    for enrollment, opportunity, variant, enrolled, state, ended in (
        ("e0", "o6", "a", t(days=-1), goal, t(hours=-2)),
        ("e1", "o1", "b", t(), EnrollmentState.ACTIVE, None),
        ("e2", "o2", "a", t(hours=1), goal, t(days=1, hours=1)),
        ("e3", "o3", "a", t(hours=2), goal, t(days=3)),
    ):
        stored, _ = storage.enrollments.enroll(
            make_enrollment(
                enrollment,
                sequence_id="r-seq",
                opportunity_id=opportunity,
                variants={"split": variant},
                enrolled_at=enrolled,
            )
        )
        if ended is not None:
            storage.enrollments.update(
                stored.model_copy(update={"state": state, "ended_at": ended})
            )


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=on_postgres), "mongo"])
def analytics(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Analytics]:
    def made(storage: Storage) -> Analytics:
        load_automation(storage)
        assert storage.analytics is not None
        return Analytics(
            storage.analytics,
            storage.activities,
            WorkingCalendar(),
            teams=TEAMS,
            rules=storage.rules,
            sequences=storage.sequences,
            enrollments=storage.enrollments,
        )

    if request.param == "memory":
        yield made(memory_storage())
    elif request.param == "mongo":
        yield made(mongo_storage(mongomock_ng.MongoClient()["analytics"]))  # type: ignore[arg-type]
    else:
        kind = "sqlite-file" if request.param == "sqlite" else "postgres"
        with fresh_storage(kind, tmp_path) as storage:
            yield made(storage)


def test_the_thresholds_are_the_documented_ones() -> None:
    assert (NO_EFFECT_MIN_ACTIVITIES, NO_EFFECT_MAX_COMPLETION) == (10, 0.2)


def test_per_rule_and_sequence_with_the_no_effect_flag(analytics: Analytics) -> None:
    rows = {r.automation_id: r for r in analytics.automation(START, END)}
    assert sorted(rows) == ["(manual)", "r-idle", "r-seq", "r-web"]
    table = {
        key: (r.kind, r.created, r.created_completed, r.no_effect, r.completed, r.converted)
        for key, r in rows.items()
    }
    assert table == {
        "(manual)": ("manual", 0, 0, False, 2, 1),  # f1 on o1 (won), n2 on o2 (lost)
        "r-idle": ("rule", 12, 2, True, 0, 0),
        "r-seq": ("sequence", 0, 0, False, 1, 1),  # c3 on o3, won
        "r-web": ("rule", 10, 5, False, 3, 1),  # o1 won in the period; o6's win came before
    }
    assert rows["r-idle"].completion_share == pytest.approx(2 / 12)
    assert rows["r-web"].completion_share == 0.5
    seq = rows["r-seq"]
    assert (seq.enrolled, seq.goal_reached, seq.median_time_to_goal_seconds) == (3, 2, 86400)
    branches = [
        (b.step_id, b.variant, b.enrolled, b.goal_reached, b.conversion_rate,
         b.median_time_to_goal_seconds, b.completed, b.won)
        for b in seq.branches
    ]  # fmt: skip
    assert branches == [
        ("split", "a", 2, 2, 1.0, 86400, 1, 1),  # o2 (1 day), o3 (259,200 - 7,200 s); o3 won
        ("split", "b", 1, 0, 0.0, None, 0, 1),  # o1: no r-seq completion, won
    ]
    assert rows["r-web"].branches == []


def test_the_filters_narrow_created_and_enrolled(analytics: Analytics) -> None:
    bob = {r.automation_id: r for r in analytics.automation(START, END, reps=["bob"])}
    assert (bob["r-idle"].created, bob["r-idle"].created_completed) == (6, 1)  # odd ones
    assert (bob["r-web"].created, bob["r-web"].created_completed) == (5, 2)
    assert bob["r-idle"].no_effect is False  # 6 is too few to judge
    # Enrollments go by the opportunity's owner: bob owns o2.
    assert bob["r-seq"].enrolled == 1
    only = analytics.automation(START, END, automations=["r-idle"])
    assert [(r.automation_id, r.no_effect) for r in only] == [("r-idle", True)]
    phone = {
        r.automation_id: r.enrolled for r in analytics.automation(START, END, sources=["phone"])
    }
    assert phone["r-seq"] == 1  # o3


def test_a_sequences_enrollments_are_read_page_by_page(
    analytics: Analytics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One enrollment a page: every enrollment of the period still counted (the listing used
    to be one page of at most 10,000)."""
    from leadflow.runtime import enrollment_pages

    monkeypatch.setattr(enrollment_pages, "PAGE", 1)
    seq = {r.automation_id: r for r in analytics.automation(START, END)}["r-seq"]
    assert (seq.enrolled, seq.goal_reached, seq.median_time_to_goal_seconds) == (3, 2, 86400)
    assert [(b.variant, b.enrolled) for b in seq.branches] == [("a", 2), ("b", 1)]
