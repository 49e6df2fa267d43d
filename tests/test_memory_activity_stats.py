"""The memory stores' activity statistics against their definition, written out plainly
here, on random activities under random filters: the reference store's shortcut for overdue
now (the open activities due before ``as_of``, taken from its due-date index without testing
each) and its statistics that walk only completed activities for the times must answer as
testing every stored activity and walking all of them does; the fast store must agree."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from leadflow.models import Activity, ActivityState, ActivityType, Outcome
from leadflow.ports import ActivityRepository
from leadflow.queries import ActivityFilter, ActivityStatistics
from leadflow.stores.memory import InMemoryActivityRepository
from leadflow.stores.memory.activity_stats import matches
from leadflow.stores.memory.fast import fast_memory_storage
from leadflow.testing.contracts import BASE_TIME, make_activity

HOUR = timedelta(hours=1)


def expected(activities: list[Activity], f: ActivityFilter, as_of: datetime) -> ActivityStatistics:
    """Every activity tested against ``f``, then each statistic by its definition."""
    counted = [a for a in activities if matches(a, f) and a.cancelled_at is None]
    done = [a for a in counted if a.completed_date is not None]
    overdue = sum(1 for a in counted if a.state(as_of) is ActivityState.OVERDUE)
    spent, timed = timedelta(), 0
    first_created: dict[str, datetime] = {}
    first_done: dict[str, datetime] = {}
    for a in counted:
        if a.created_at is None:
            continue
        o = a.opportunity_id
        first_created[o] = min(first_created.get(o, a.created_at), a.created_at)
        if a.completed_date is not None:
            spent += a.completed_date - a.created_at
            timed += 1
            first_done[o] = min(first_done.get(o, a.completed_date), a.completed_date)
    waited = sum((t - first_created[o] for o, t in first_done.items()), timedelta())
    by_state = {
        ActivityState.PENDING.value: len(counted) - len(done) - overdue,
        ActivityState.OVERDUE.value: overdue,
        ActivityState.COMPLETED.value: len(done),
    }
    return ActivityStatistics(
        as_of=as_of,
        total=len(counted),
        by_type=dict(Counter(a.activity_type.value for a in counted)),
        by_outcome=dict(Counter(a.outcome.value for a in counted if a.outcome is not None)),
        by_state={state: n for state, n in by_state.items() if n},
        by_assignee=dict(Counter(a.assigned_to for a in counted if a.assigned_to)),
        completion_rate=len(done) / len(counted) if counted else 0.0,
        mean_time_to_complete=spent / timed if timed else None,
        mean_time_to_first_completion=waited / len(first_done) if first_done else None,
    )


def random_activity(rng: random.Random, n: int) -> Activity:
    fields: dict[str, Any] = {
        "opportunity_id": f"opp-{rng.randrange(5)}",
        "activity_type": rng.choice(list(ActivityType)),
        "assigned_to": rng.choice((None, "rep-1", "rep-2", "rep-3")),
        "created_at": rng.choice((None, BASE_TIME + HOUR * rng.randrange(48))),
        "due_date": rng.choice((None, BASE_TIME + HOUR * rng.randrange(96))),
        "metadata": {"automationRuleId": rng.choice((None, "rule-1", "rule-2"))},
    }
    ending = rng.randrange(3)
    if ending == 1:
        fields["completed_date"] = BASE_TIME + HOUR * (48 + rng.randrange(48))
        fields["outcome"] = rng.choice((None, *Outcome))
    elif ending == 2:
        fields["cancelled_at"] = BASE_TIME + HOUR * rng.randrange(96)
    return make_activity(f"act-{n}", **fields)


def random_filter(rng: random.Random, as_of: datetime) -> ActivityFilter:
    state = rng.choice((None, ActivityState.OVERDUE, ActivityState.OVERDUE, *ActivityState))
    fields: dict[str, Any] = {"state": state, "as_of": as_of}
    if rng.random() < 0.3:
        fields["assigned_to"] = rng.choice(("rep-1", "rep-2"))
    if rng.random() < 0.3:
        fields["automation_rule_id"] = rng.choice(("rule-1", "rule-2", "rule-9"))
    if rng.random() < 0.2:
        fields["opportunity_id"] = f"opp-{rng.randrange(5)}"
    if rng.random() < 0.2:
        fields["due_from"] = BASE_TIME + HOUR * rng.randrange(96)
    if rng.random() < 0.2:
        fields["activity_types"] = (rng.choice(list(ActivityType)),)
    return ActivityFilter(**fields)


@pytest.mark.parametrize("store", ["reference", "fast"])
@pytest.mark.parametrize("seed", range(6))
def test_statistics_as_their_definition(store: str, seed: int) -> None:
    rng = random.Random(seed)
    repo: ActivityRepository = (
        InMemoryActivityRepository() if store == "reference" else fast_memory_storage().activities
    )
    activities = [random_activity(rng, n) for n in range(rng.randrange(1, 80))]
    for activity in activities:
        repo.add(activity)
    stored = [repo.get(a.activity_id) for a in activities]
    for _ in range(25):
        as_of = BASE_TIME + HOUR * rng.randrange(-5, 110)
        f = random_filter(rng, as_of)
        assert repo.statistics(f, as_of=as_of) == expected(stored, f, as_of), f
    as_of = BASE_TIME + HOUR * 200  # every dated open activity overdue
    overdue = ActivityFilter(state=ActivityState.OVERDUE, as_of=as_of)
    found = repo.statistics(overdue, as_of=as_of)
    assert found == expected(stored, overdue, as_of)
    assert found.total == sum(1 for a in stored if a.is_open and a.due_date is not None)
