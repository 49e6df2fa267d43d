"""Backfill: the facts of the history a store held before it kept them, on every backend.

The same history runs twice: on a store that records its facts as events arrive (the live
one) and on a store whose flow kept none (its storage without the analytics port, as before
analytics existed). Backfilling the second from its completed activities and the host's event
history gives the same dashboard as the live one; a second backfill records nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock_ng
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow import (
    InvalidInputError,
    LeadFlow,
    ManualClock,
    Operations,
    PermissionDeniedError,
    Principal,
    Role,
    default_rules,
)
from leadflow.limits import DEFAULT_LIMITS
from leadflow.ports import Storage
from leadflow.rules.calendar import WorkingCalendar
from leadflow.runtime.analytics import Analytics
from leadflow.runtime.analytics_backfill import backfill
from leadflow.stores.memory import memory_storage
from leadflow.stores.mongo import mongo_storage

from .sql_support import fresh_storage, on_postgres

T0 = datetime(2026, 2, 2, 9, tzinfo=UTC)  # a Monday
WEEK = (T0, T0 + timedelta(days=7))


def history() -> list[dict[str, Any]]:
    def at(hours: float) -> str:
        return (T0 + timedelta(hours=hours)).isoformat()

    return [
        {"id": "h1", "type": "opportunity.created", "time": at(0),
         "payload": {"opportunityId": "opp-1", "leadSource": "website", "assignedTo": "alice",
                     "status": "new"}},
        {"id": "h2", "type": "opportunity.created", "time": at(1),
         "payload": {"opportunityId": "opp-2", "leadSource": "referral", "assignedTo": "bob"}},
        {"id": "h3", "type": "opportunity.status_changed", "time": at(30),
         "payload": {"opportunityId": "opp-1", "oldStatus": "new", "newStatus": "won"}},
    ]  # fmt: skip


def run(storage: Storage) -> ManualClock:
    """The history through a flow on ``storage``, with one call completed by alice."""
    clock = ManualClock(T0)
    flow = LeadFlow.in_memory(
        clock=clock, rules=default_rules(), reps=["alice", "bob"], storage=storage
    )
    flow.integrations.opportunities.add("opp-1", owner="alice")  # type: ignore[attr-defined]
    flow.integrations.opportunities.add("opp-2", owner="bob")  # type: ignore[attr-defined]
    first, second, won = history()
    flow.handle(first)
    clock.advance(timedelta(hours=1))
    flow.handle(second)
    clock.advance(timedelta(minutes=20))
    for activity in flow.storage.activities.for_opportunity("opp-1"):
        flow.activity_writes.complete(
            activity.activity_id, outcome="successful", completed_by="alice"
        )
    clock.set(T0 + timedelta(hours=30))
    flow.handle(won)
    return clock


Stores = Callable[[], Storage]


@contextmanager
def stores(kind: str, tmp_path: Path) -> Iterator[Stores]:
    with ExitStack() as stack:
        if kind == "memory":
            yield memory_storage
        elif kind == "mongo":
            client = mongomock_ng.MongoClient()
            names = iter(range(100))
            yield lambda: mongo_storage(client[f"db{next(names)}"])  # type: ignore[arg-type]
        else:
            sql = "sqlite-file" if kind == "sqlite" else "postgres"
            yield lambda: stack.enter_context(fresh_storage(sql, tmp_path))


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=on_postgres), "mongo"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    with stores(request.param, tmp_path) as made:
        yield made


def _dashboard(storage: Storage) -> dict[str, object]:
    assert storage.analytics is not None
    analytics = Analytics(storage.analytics, storage.activities, WorkingCalendar())
    return analytics.dashboard(*WEEK, as_of=WEEK[1]).to_document()


def test_a_backfill_gives_what_the_live_flow_recorded(make: Stores) -> None:
    live = make()
    run(live)
    before = make()
    assert before.analytics is not None
    run(replace(before, analytics=None))  # the flow of a store before analytics
    assert before.analytics.arrivals(*WEEK) == []
    result = backfill(before.analytics, before.activities, events=history())
    assert (result.events_read, result.arrivals, result.status_changes) == (3, 2, 2)
    assert result.activities_read == result.completions == 1
    assert _dashboard(before) == _dashboard(live)
    again = backfill(before.analytics, before.activities, events=history())
    assert (again.arrivals, again.status_changes, again.completions) == (0, 0, 0)
    assert again.activities_read == 1
    # Over the live store (the flow recorded them), nothing is new either.
    assert live.analytics is not None
    over_live = backfill(live.analytics, live.activities, events=history())
    assert (over_live.arrivals, over_live.status_changes, over_live.completions) == (0, 0, 0)


def test_a_backfill_over_a_period_of_completions(make: Stores) -> None:
    storage = make()
    assert storage.analytics is not None
    run(replace(storage, analytics=None))
    later = backfill(storage.analytics, storage.activities, completed_from=T0 + timedelta(days=1))
    assert (later.activities_read, later.completions) == (0, 0)
    found = backfill(storage.analytics, storage.activities, completed_to=T0 + timedelta(days=1))
    assert (found.activities_read, found.completions) == (1, 1)


@pytest.mark.parametrize(
    ("events", "field"),
    [
        ("h1", "events"),
        ({"id": "x"}, "events"),
        ([{"id": "x", "type": "opportunity.created", "payload": {}}], "events[0].time"),
        ([*history(), 7], "events[3]"),
        ([{"id": "", "type": "t", "time": T0.isoformat(), "payload": {}}], "events[0].id"),
    ],
)
def test_bad_history_is_refused_and_nothing_is_written(events: object, field: str) -> None:
    storage = memory_storage()
    assert storage.analytics is not None
    with pytest.raises(InvalidInputError) as caught:
        backfill(storage.analytics, storage.activities, events=events)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert storage.analytics.arrivals(*WEEK) == []


def test_only_admins_backfill_through_operations() -> None:
    storage = memory_storage()
    run(replace(storage, analytics=None))
    ops = Operations(LeadFlow.in_memory(clock=ManualClock(WEEK[1]), storage=storage))
    for role in (Role.SALES, Role.DISPATCHER):
        with pytest.raises(PermissionDeniedError):
            ops.analytics.backfill(Principal("someone", role), events=history())
    admin = Principal("root", Role.ADMIN)
    done = ops.analytics.backfill(admin, events=history(), from_activities=False)
    assert (done.arrivals, done.completions, done.activities_read) == (2, 0, 0)
    assert ops.analytics.backfill(admin).completions == 1
    with pytest.raises(InvalidInputError):
        ops.analytics.backfill(admin, from_activities="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        ops.analytics.backfill(admin, completed_from=datetime(2026, 1, 1))  # naive


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=_json | st.lists(_json, max_size=3))
def test_arbitrary_json_history_is_refused_or_recorded(events: object) -> None:
    storage = memory_storage()
    assert storage.analytics is not None
    try:
        backfill(storage.analytics, None, events=events)  # type: ignore[arg-type]
    except InvalidInputError as error:
        assert error.field is not None and error.field.startswith("events")
        assert storage.analytics.arrivals(DEFAULT_LIMITS.earliest, T0) == []
