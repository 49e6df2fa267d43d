"""The in-memory backend against the storage contract, plus what only it promises."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow import Activity, DuplicateError, InvalidInputError, Outcome
from leadflow.ports import ActivityRepository, RuleRepository, ScheduledActionStore
from leadflow.queries import ActivityFilter, ActivitySort
from leadflow.stores.memory import (
    InMemoryActivityRepository,
    InMemoryRuleRepository,
    InMemoryScheduledActionStore,
)
from leadflow.stores.memory.stores import _ACTIVITY_FIELDS, _SortedKeys
from leadflow.testing.contracts import (
    ActivityRepositoryContract,
    RuleRepositoryContract,
    ScheduledActionStoreContract,
    activity_state_machine,
    at,
    make_activity,
)


class TestInMemoryActivityRepository(ActivityRepositoryContract):
    def make_repository(self) -> ActivityRepository:
        return InMemoryActivityRepository()


class TestInMemoryRuleRepository(RuleRepositoryContract):
    def make_repository(self) -> RuleRepository:
        return InMemoryRuleRepository()


class TestInMemoryScheduledActionStore(ScheduledActionStoreContract):
    def make_store(self) -> ScheduledActionStore:
        return InMemoryScheduledActionStore()


TestInMemoryActivityStateMachine = activity_state_machine(InMemoryActivityRepository)


class _TinyKnobs(InMemoryActivityRepository):
    """Two-key buckets and no small-set shortcut: small data then takes the paths that big
    data takes (bucket splits, walking the ordered indexes with a filter)."""

    _scan_limit = 0
    _bucket_load = 2


class TestTinyKnobsActivityRepository(ActivityRepositoryContract):
    def make_repository(self) -> ActivityRepository:
        return _TinyKnobs()


TestTinyKnobsStateMachine = activity_state_machine(_TinyKnobs)


# --------------------------------------------------------------------------- the sorted index

_OPS = st.lists(
    st.tuples(st.sampled_from(["add", "discard", "update"]), st.integers(0, 40)), max_size=80
)


@settings(max_examples=150)
@given(
    ops=_OPS,
    start=st.integers(-1, 41),
    stop=st.integers(-1, 41),
    exclusive=st.booleans(),
    load=st.integers(1, 4),
)
def test_sorted_keys_behaves_like_a_sorted_set(
    ops: list[tuple[str, int]], start: int, stop: int, exclusive: bool, load: int
) -> None:
    """Keys carry a payload after the sort value, as the store's do; positions are prefixes."""
    keys = _SortedKeys(load)
    model: set[int] = set()
    for op, n in ops:
        if op == "add" and n not in model:
            keys.add((n, f"row {n}"))
            model.add(n)
        elif op == "discard":
            keys.discard((n, f"row {n}"))
            model.discard(n)
        elif op == "update":
            batch = [m for m in range(n, n + 70) if m not in model]
            keys.update((m, f"row {m}") for m in batch)
            model.update(batch)
    ordered = sorted(model)
    assert len(keys) == len(model)
    assert [k[0] for k in keys.ascending()] == ordered
    assert [k[0] for k in keys.descending()] == ordered[::-1]
    up = [n for n in ordered if (n > start if exclusive else n >= start)]
    down = [n for n in ordered[::-1] if (n < start if exclusive else n <= start)]
    assert [k[0] for k in keys.ascending((start,), exclusive=exclusive)] == up
    assert [k[0] for k in keys.descending((start,), exclusive=exclusive)] == down
    assert [k[0] for k in keys.between((start,), (stop,))] == [
        n for n in ordered if start <= n < stop
    ]
    assert [k[0] for k in keys.between(None, (stop,))] == [n for n in ordered if n < stop]
    assert [k[0] for k in keys.between((start,), None)] == [n for n in ordered if n >= start]


# --------------------------------------------------------------------------- memory-specific


def test_rows_mirror_every_activity_field() -> None:
    """A field added to Activity must be stored too, or the store would drop it silently."""
    assert set(_ACTIVITY_FIELDS) | {"metadata"} == set(Activity.model_fields)


def test_only_activities_are_stored() -> None:
    repo = InMemoryActivityRepository()
    for call in (repo.add, repo.update, lambda a: repo.add_many([a])):
        with pytest.raises(InvalidInputError):
            call({"activity_id": "a1"})  # type: ignore[arg-type]
    assert len(repo) == 0


@pytest.mark.parametrize("bulk", [False, True])
def test_repeated_strings_are_stored_once(bulk: bool) -> None:
    repo = InMemoryActivityRepository()
    activities = [
        make_activity(
            f"a{n}",
            opportunity_id="opp-shared",
            customer_id="cust-shared",
            assigned_to="rep-shared",
            created_by="admin-shared",
            metadata={"automationRuleId": "rule-shared"},
        )
        for n in range(3)
    ]
    if bulk:
        repo.add_many(activities)
    else:
        for activity in activities:
            repo.add(activity)
    rows = [repo._rows[f"a{n}"] for n in range(3)]
    for field in ("opportunity_id", "customer_id", "assigned_to", "created_by", "rule_id"):
        assert len({id(getattr(row, field)) for row in rows}) == 1, field


def test_add_many_matches_adding_one_by_one() -> None:
    activities = [
        make_activity(
            f"a{n:03d}",
            opportunity_id=f"opp-{n % 7}",
            assigned_to=f"u{n % 3}",
            created_at=at(minutes=n * 7 % 300),
            due_date=at(hours=n % 50) if n % 4 else None,
            completed_date=at(hours=n % 30) if n % 5 == 0 else None,
        )
        for n in range(300)
    ]
    one_by_one = InMemoryActivityRepository()
    for activity in activities:
        one_by_one.add(activity)
    bulk = InMemoryActivityRepository()
    assert bulk.add_many(activities[:100]) == 100
    assert bulk.add_many(activities[100:]) == 200
    for repo in (one_by_one, bulk):
        assert len(repo) == 300
    assert bulk.overdue(at(hours=40), limit=500) == one_by_one.overdue(at(hours=40), limit=500)
    assert bulk.pending(at(hours=20), limit=500) == one_by_one.pending(at(hours=20), limit=500)
    assert bulk.last_activity_times() == one_by_one.last_activity_times()
    assert bulk.stale_opportunities(at(days=9)) == one_by_one.stale_opportunities(at(days=9))
    for sort in (ActivitySort(), ActivitySort(field="completed_date", descending=True)):
        assert bulk.list(sort=sort, limit=1000) == one_by_one.list(sort=sort, limit=1000)


def test_add_many_is_all_or_nothing() -> None:
    repo = InMemoryActivityRepository()
    repo.add(make_activity("taken"))
    with pytest.raises(DuplicateError):
        repo.add_many([make_activity("new-1"), make_activity("taken")])
    with pytest.raises(DuplicateError):
        repo.add_many([make_activity("new-1"), make_activity("new-1")])
    assert len(repo) == 1
    assert [a.activity_id for a in repo.for_opportunity("opp-1")] == ["taken"]


def test_threads_writing_and_reading_at_once_leave_consistent_indexes() -> None:
    repo = InMemoryActivityRepository()
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def writer(worker: int) -> None:
        try:
            barrier.wait()
            for n in range(150):
                activity_id = f"w{worker}-{n:03d}"
                repo.add(
                    make_activity(
                        activity_id,
                        opportunity_id=f"opp-{n % 5}",
                        assigned_to=f"u{worker}",
                        created_at=at(minutes=n),
                        due_date=at(minutes=n + 30),
                    )
                )
                if n % 3 == 0:
                    repo.complete(
                        activity_id,
                        outcome=Outcome.SUCCESSFUL,
                        completed_by=f"u{worker}",
                        completed_at=at(minutes=n + 1),
                    )
                elif n % 3 == 1:
                    current = repo.get(activity_id)
                    repo.update(current.model_copy(update={"due_date": at(minutes=n + 90)}))
                if n % 10 == 9:
                    repo.delete(activity_id)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    def reader() -> None:
        try:
            barrier.wait()
            for n in range(150):
                repo.overdue(at(minutes=n), limit=20)
                repo.list(ActivityFilter(opportunity_id=f"opp-{n % 5}"), limit=20)
                repo.statistics(None, as_of=at(minutes=n))
                repo.stale_opportunities(at(minutes=n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    everything = repo.list(limit=1000).items
    assert len(everything) == len(repo) == 4 * 135
    by_opportunity = sorted(
        a.activity_id for o in range(5) for a in repo.for_opportunity(f"opp-{o}")
    )
    assert by_opportunity == sorted(a.activity_id for a in everything)
    open_ones = [a for a in everything if a.completed_date is None]
    overdue = repo.overdue(at(days=1), limit=1000)
    assert sorted(a.activity_id for a in overdue) == sorted(a.activity_id for a in open_ones)
    stats = repo.statistics(None, as_of=at(days=1))
    assert stats.total == len(everything)
    assert stats.by_state["completed"] == len(everything) - len(open_ones)
