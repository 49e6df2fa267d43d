"""The lead figures summed up in the store (``lead_sums`` / ``late_contacts``) give exactly what
the one-by-one path gives (the period's arrivals, first contacts and wins reduced in Python by
the figures' definitions), on random small datasets, under random filters, on every backend:
memory, SQLite, PostgreSQL (when configured) and MongoDB (mongomock). The facts are recorded
in a shuffled order (a contact before its lead's arrival, a later contact before an earlier
one), one by one or in batches where the store takes them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock_ng
import pytest

from leadflow import InvalidInputError, WorkingCalendar
from leadflow.activity_models import ActivityType, Outcome
from leadflow.facts import Completion, LeadArrival, StatusChange
from leadflow.ports import BatchFacts, Storage
from leadflow.runtime.analytics import Analytics
from leadflow.runtime.analytics_deadlines import Deadlines
from leadflow.runtime.analytics_reads import Reads
from leadflow.stores.analytics_leads import check_lead_query, late_of, lead_sums_of, rows_of
from leadflow.stores.analytics_sums import buckets_of, groups_in
from leadflow.stores.memory import memory_storage
from leadflow.stores.mongo import mongo_storage

from .sql_support import fresh_storage, on_postgres

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)  # a Monday, weeks before the US clocks change
START, END = T0 + timedelta(days=3), T0 + timedelta(days=24)
AS_OF = END
REPS = ["alice", "bob", "carol"]
SOURCES = ["web", "phone", "(none)"]  # a source named "(none)": the figures' fallback
RULES = ["r1", "r2"]
KINDS = [ActivityType.CALL, ActivityType.EMAIL, ActivityType.MEETING, ActivityType.NOTE]
CALENDARS = [
    WorkingCalendar(),
    WorkingCalendar(
        "America/New_York",
        start=datetime(2000, 1, 1, 8, 30).time(),
        end=datetime(2000, 1, 1, 12, 0).time(),
        holidays=[date(2026, 3, 9), date(2026, 3, 10)],
    ),
]


def _moment(rng: random.Random, days: float) -> datetime:
    return T0 + timedelta(seconds=rng.randrange(int(days * 86400)))


def dataset(seed: int, *, named_none: bool) -> tuple[list[Any], list[Any], list[Any]]:
    rng = random.Random(seed)
    arrivals, changes, completions = [], [], []
    for n in range(30):
        opportunity = f"o{n}"
        arrived = _moment(rng, 28)
        sources = SOURCES if named_none else SOURCES[:2]
        arrivals.append(
            LeadArrival(
                event_id=f"a{n}",
                opportunity_id=opportunity,
                arrived_at=arrived,
                source=rng.choice([*sources, None]),
                owner=rng.choice([*REPS, None, None]),
            )
        )
        for k in range(rng.randrange(4)):
            changes.append(
                StatusChange(
                    event_id=f"s{n}-{k}",
                    opportunity_id=opportunity,
                    changed_at=arrived + timedelta(seconds=rng.randrange(-86400, 9 * 86400)),
                    to_status=rng.choice(["new", "won", "lost"]),
                )
            )
        done = arrived + timedelta(seconds=rng.choice([-600, 0, 60, 299, 300, 3600, 28800]))
        for k in range(rng.randrange(5)):
            if rng.random() < 0.5:  # the same time as another: ties go by activity id
                done += timedelta(seconds=rng.randrange(6 * 86400))
            created = done - timedelta(seconds=rng.randrange(1, 3 * 86400))
            completions.append(
                Completion(
                    activity_id=f"c{n}-{rng.randrange(1000)}-{k}",
                    opportunity_id=opportunity,
                    activity_type=rng.choice(KINDS),
                    completed_at=done,
                    assigned_to=rng.choice([*REPS, None]),
                    rule_id=rng.choice([*RULES, None]),
                    created_at=rng.choice([created, None]),
                    due_at=rng.choice([created + timedelta(hours=rng.randrange(48)), None]),
                    outcome=rng.choice([*Outcome, None]),
                )
            )
    return arrivals, changes, completions


def record(storage: Storage, data: tuple[list[Any], ...], seed: int) -> None:
    store = storage.analytics
    assert store is not None
    facts: list[Any] = [fact for kind in data for fact in kind]
    random.Random(seed).shuffle(facts)
    if isinstance(store, BatchFacts) and seed % 2:
        for first in range(0, len(facts), 17):
            chunk = facts[first : first + 17]
            store.record_many(
                [f for f in chunk if isinstance(f, LeadArrival)],
                [f for f in chunk if isinstance(f, StatusChange)],
                [f for f in chunk if isinstance(f, Completion)],
            )
    else:
        for fact in facts:
            if isinstance(fact, LeadArrival):
                store.record_arrival(fact)
            elif isinstance(fact, StatusChange):
                store.record_status_change(fact)
            else:
                store.record_completion(fact)
    # Recorded again, earlier: a stored key changes nothing (the first contacts neither).
    for completion in data[2][:5]:
        earlier = T0 - timedelta(days=9)
        assert not store.record_completion(completion.model_copy(update={"completed_at": earlier}))


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=on_postgres), "mongo"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "memory":
        yield memory_storage()
    elif request.param == "mongo":
        yield mongo_storage(mongomock_ng.MongoClient()["leads"])  # type: ignore[arg-type]
    else:
        kind = "sqlite-file" if request.param == "sqlite" else "postgres"
        with fresh_storage(kind, tmp_path) as made:
            yield made


def _filters(rng: random.Random) -> dict[str, list[str] | None]:
    def some(names: list[str]) -> list[str] | None:
        return None if rng.random() < 0.5 else rng.sample(names, rng.randrange(1, len(names)))

    return {
        "reps": some([*REPS, "(none)"]),
        "sources": some([*SOURCES, "zzz"]),
        "automations": some([*RULES, "(manual)"]),
    }


def _one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Reads, "pushed", property(lambda self: None))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_lead_figures_summed_in_the_store_are_those_read_one_by_one(
    storage: Storage, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = dataset(seed, named_none=seed == 4)
    record(storage, data, seed)
    assert storage.analytics is not None
    calendar = CALENDARS[seed % 2]
    analytics = Analytics(storage.analytics, storage.activities, calendar)
    rng = random.Random(seed)
    cases = [{}, *(_filters(rng) for _ in range(4))]
    summed = [
        (
            analytics.speed_to_lead(START, END, **f),
            analytics.sources(START, END, **f),
            analytics.leaderboard(START, END, as_of=AS_OF, rank_by="wins", **f),
            analytics.trend(START, END, **f),
        )
        for f in cases
    ]
    assert summed[0][0].overall.leads > 0
    _one_by_one(monkeypatch)
    for f, found in zip(cases, summed, strict=True):
        assert found == (
            analytics.speed_to_lead(START, END, **f),
            analytics.sources(START, END, **f),
            analytics.leaderboard(START, END, as_of=AS_OF, rank_by="wins", **f),
            analytics.trend(START, END, **f),
        ), f


@pytest.mark.parametrize("seed", [5, 6])
def test_lead_sums_are_the_reference_sums(storage: Storage, seed: int) -> None:
    """Each grouping and filter of the store's sums against the Python reference over the
    store's own one-by-one reads."""
    data = dataset(seed, named_none=True)
    record(storage, data, seed)
    store = storage.analytics
    assert store is not None
    rows = rows_of(
        store.arrivals(START, END),
        store.first_contacts(START, END),
        store.reached(START, END, "won"),
    )
    day = timedelta(hours=8)
    rng = random.Random(seed)
    for by in (None, "rep", "source", "bucket"):
        for _ in range(3):
            wanted = {
                name: None if rng.random() < 0.4 else set(rng.sample(values, 2))
                for name, values in (
                    ("reps", [*REPS, None]),
                    ("sources", [*SOURCES, None]),
                    ("automations", [*RULES, None]),
                )
            }
            weeks: dict[str, Any] = {}
            if by == "bucket":
                weeks = {"origin": START - timedelta(days=2), "width": timedelta(days=7)}
            query = check_lead_query(START, END, day=day, status="won", by=by, **weeks, **wanted)
            found = store.lead_sums(START, END, status="won", day=day, by=by, **weeks, **wanted)
            assert found == lead_sums_of(rows, query), (by, wanted)
            if by is None:
                late = store.late_contacts(START, END, day=day, **wanted)
                expected = late_of(rows, query)
                assert sorted(late, key=str) == sorted(expected, key=str)


@pytest.mark.parametrize("seed", [7, 8])
def test_completion_sums_are_the_reference_sums(storage: Storage, seed: int) -> None:
    """The completions summed up per rep, automation and week (the memory store from its
    plain rows, SQL in the database) against the reference over the one-by-one reads."""
    data = dataset(seed, named_none=False)
    record(storage, data, seed)
    store = storage.analytics
    assert store is not None
    found = store.completions(START, END)
    assert len(found) > 20
    for by, keys in (
        ("assigned_to", None),
        ("assigned_to", {"alice", None}),
        ("rule_id", None),
        ("rule_id", {"r1"}),
    ):
        assert store.completion_groups(START, END, by=by, keys=keys) == groups_in(
            found, by, keys
        ), (by, keys)
        week = timedelta(days=7)
        assert store.completion_buckets(START, END, width=week, by=by, keys=keys) == (
            buckets_of(found, START, week, by, keys)
        )
    assert store.completion_buckets(START, END, width=timedelta(days=1)) == buckets_of(
        found, START, timedelta(days=1), None, None
    )


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"day": timedelta(0)}, "day"),
        ({"day": 8}, "day"),
        ({"status": 3}, "status"),
        ({"by": "owner"}, "by"),
        ({"by": "bucket", "width": timedelta(0), "origin": START}, "width"),
        ({"by": "bucket", "width": timedelta(days=7)}, "origin"),
        ({"by": "bucket", "width": timedelta(days=7), "origin": END}, "origin"),
        ({"width": timedelta(days=7)}, "by"),
        ({"reps": "alice"}, "reps"),
        ({"sources": [1]}, "sources"),
        ({"automations": ["x"] * 1001}, "automations"),
    ],
)
def test_bad_lead_queries_are_refused_naming_the_field(
    storage: Storage, arguments: dict[str, Any], field: str
) -> None:
    store = storage.analytics
    assert store is not None
    given: dict[str, Any] = {"status": "won", "day": timedelta(hours=8)} | arguments
    with pytest.raises(InvalidInputError) as raised:
        store.lead_sums(START, END, **given)
    assert raised.value.field == field
    if field in ("reps", "sources", "automations", "day"):
        with pytest.raises(InvalidInputError) as late:
            store.late_contacts(
                START, END, day=given["day"], **{k: v for k, v in arguments.items() if k != "day"}
            )
        assert late.value.field == field


@pytest.mark.parametrize("calendar", CALENDARS, ids=["utc", "new-york"])
def test_deadlines_are_the_calendars(calendar: WorkingCalendar) -> None:
    rng = random.Random(11)
    deadlines = Deadlines(calendar)
    hours = calendar.day_length.total_seconds() / 3600
    for _ in range(400):
        moment = T0 + timedelta(seconds=rng.randrange(40 * 86400))  # across the DST change
        assert deadlines.of(moment) == calendar.add_business_hours(moment, hours)


@pytest.mark.parametrize("calendar", CALENDARS, ids=["utc", "new-york"])
def test_within_a_business_day_is_the_walks_answer(calendar: WorkingCalendar) -> None:
    # Arrivals in no order (earlier ones rebuild the index), across the DST change and the
    # holidays, over more than the index's first reach; contacts at, just before and just
    # after the walked deadline, and anywhere.
    rng = random.Random(12)
    deadlines = Deadlines(calendar)
    walked = Deadlines(calendar)
    tick = timedelta(microseconds=1)
    for _ in range(600):
        arrived = T0 + timedelta(seconds=rng.randrange(-20 * 86400, 200 * 86400))
        arrived += tick * rng.randrange(1_000_000)
        deadline = walked.of(arrived)
        for contacted in (
            deadline,
            deadline - tick,
            deadline + tick,
            deadline + timedelta(hours=rng.randrange(1, 80)),
            arrived + timedelta(minutes=rng.randrange(0, 5 * 24 * 60)),
        ):
            assert deadlines.within(arrived, contacted) == (contacted <= deadline)


def test_a_team_of_more_reps_than_a_store_filter_takes_is_read_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = memory_storage()
    record(storage, dataset(9, named_none=False), 9)
    assert storage.analytics is not None
    teams = {f"rep{n}": "big" for n in range(1500)} | {"alice": "big", "bob": "big"}
    analytics = Analytics(storage.analytics, storage.activities, CALENDARS[0], teams=teams)
    found = analytics.speed_to_lead(START, END, teams=["big"])
    assert found.overall.leads > 0
    _one_by_one(monkeypatch)
    assert found == analytics.speed_to_lead(START, END, teams=["big"])
    assert found == analytics.speed_to_lead(START, END, reps=["alice", "bob"])
