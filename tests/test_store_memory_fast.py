"""The fast in-memory stores' own structures (their shared contracts run in
tests/test_contracts_memory.py): the chunked sorted index against a sorted list, the slot rows
against a dict, both nearly invisible to the garbage collector, and a replaced activity read back
as the reference store reads it."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow import Activity
from leadflow.facts import LeadArrival, StatusChange
from leadflow.queries import ActivityFilter
from leadflow.stores.memory import (
    InMemoryActivityRepository,
)
from leadflow.stores.memory.fast import (
    FastActivityRepository,
    FastAnalyticsStore,
)
from leadflow.testing.contracts import at, make_activity

from .gc_support import tracked_after
from .suite import examples

# --------------------------------------------------------------------------- the chunked index

_KEYS = st.tuples(st.integers(0, 40), st.sampled_from(["a", "b", "c"]))
_BOUND = st.none() | st.tuples(st.integers(-1, 41)) | _KEYS


@settings(max_examples=examples(150), deadline=None)
@given(
    load=st.integers(2, 6),
    span=st.integers(2, 4),
    buffer=st.integers(1, 40),
    ops=st.lists(
        st.tuples(st.sampled_from(["add", "add", "add", "remove", "drop", "read"]), _KEYS),
        max_size=300,
    ),
    ranges=st.lists(
        st.tuples(_BOUND, _BOUND, st.booleans(), st.booleans(), st.booleans()), max_size=6
    ),
)
def test_the_chunked_index_behaves_like_a_sorted_list(
    load: int,
    span: int,
    buffer: int,
    ops: list[tuple[str, tuple[int, str]]],
    ranges: list[tuple[Any, Any, bool, bool, bool]],
) -> None:
    """Keys added wait in a buffer until a read or ``buffer`` of them (a removal takes an
    equal key out of the buffer, or out of the chunks with the buffer left waiting; ``drop``:
    a removal not followed by a read): reads between runs of adds see every key, in order,
    and the chunks and blocks stay in shape."""
    from sortedcontainers import SortedList

    from leadflow.stores.memory.fast.chunks import ChunkedIndex

    reference: SortedList[tuple[int, str]] = SortedList()
    index: ChunkedIndex[tuple[int, str]] = ChunkedIndex(load=load, span=span, buffer=buffer)
    for op, key in ops:
        if op == "add":
            reference.add(key)
            index.add(key)
            assert len(index) == len(reference)
            continue
        if op != "read" and reference and key[0] % 2:  # mostly a key the index holds
            key = reference[key[0] % len(reference)]
        if op == "drop":
            if key in reference:
                reference.remove(key)
                index.remove(key)
            else:
                with pytest.raises(ValueError):
                    index.remove(key)
            assert len(index) == len(reference)
            continue
        if op == "read":
            assert index.ceiling(key) == next(iter(reference.irange(key, None)), None)
        else:
            missing = key not in reference
            if missing:
                with pytest.raises(ValueError):
                    index.remove(key)
            else:
                reference.remove(key)
                index.remove(key)
        assert list(index) == list(reference) and len(index) == len(reference)
        assert index.first() == (reference[0] if reference else None)
    for low, high, low_in, high_in, reverse in ranges:
        expected = reference.irange(low, high, inclusive=(low_in, high_in), reverse=reverse)
        got = index.irange(low, high, inclusive=(low_in, high_in), reverse=reverse)
        assert list(got) == list(expected)
        if low is not None:
            above = list(reference.irange(low, None))
            assert index.ceiling(low) == (above[0] if above else None)
    blocks = index._blocks
    assert all(0 < len(chunk) <= 2 * load for block in blocks for chunk in block)
    assert all(0 < len(block) <= 2 * span for block in blocks)
    assert index._chunk_maxes == [tuple(chunk[-1] for chunk in block) for block in blocks]
    assert index._maxes == [block[-1][-1] for block in blocks]


@settings(max_examples=examples(150), deadline=None)
@given(
    load=st.integers(2, 6),
    span=st.integers(2, 4),
    buffer=st.integers(1, 40),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "add", "replace", "replace", "remove", "read"]),
            st.integers(0, 30),
            st.integers(0, 60),
        ),
        max_size=300,
    ),
)
def test_a_key_replaced_in_place_is_a_removal_and_an_insertion(
    load: int, span: int, buffer: int, ops: list[tuple[str, int, int]]
) -> None:
    """``replace`` puts a key where an equal one was (the stores' keys that change only in
    the row they end with: here (time, id, version)), waiting or in the chunks: the index is
    the sorted list with the old key removed and the new one added."""
    from sortedcontainers import SortedList

    from leadflow.stores.memory.fast.chunks import ChunkedIndex

    reference: SortedList[tuple[int, str, int]] = SortedList()
    index: ChunkedIndex[tuple[int, str, int]] = ChunkedIndex(load=load, span=span, buffer=buffer)
    held: dict[str, tuple[int, str, int]] = {}  # id -> its key (one key per id)
    serial = 0
    for op, a, b in ops:
        if op == "add" or not held:
            serial += 1
            key = (a, f"id-{serial:04d}", 0)
            held[key[1]] = key
            reference.add(key)
            index.add(key)
        else:
            old = held[sorted(held)[b % len(held)]]
            if op == "replace":
                new = (old[0], old[1], old[2] + 1)
                reference.remove(old)
                reference.add(new)
                index.replace(old, new)
                held[old[1]] = new
                with pytest.raises(ValueError):
                    index.replace(old, new)  # old is gone
            elif op == "remove":
                reference.remove(old)
                index.remove(old)
                del held[old[1]]
            else:
                assert list(index) == list(reference)
        assert len(index) == len(reference)
    assert list(index) == list(reference)
    blocks = index._blocks
    assert index._chunk_maxes == [tuple(chunk[-1] for chunk in block) for block in blocks]
    assert index._maxes == [block[-1][-1] for block in blocks]


def test_a_long_wait_of_keys_spread_everywhere_goes_in_in_shape() -> None:
    """One flush of keys that overfill many chunks and many blocks at once."""
    from leadflow.stores.memory.fast.chunks import ChunkedIndex

    index: ChunkedIndex[int] = ChunkedIndex(load=2, span=2, buffer=10_000)
    for n in range(0, 400, 2):
        index.add(n)
    assert index.first() == 0
    for n in range(1, 400, 2):
        index.add(n)
        index.add(n)
    assert list(index) == sorted([*range(400), *range(1, 400, 2)])
    blocks = index._blocks
    assert len(blocks) > 10
    assert all(0 < len(chunk) <= 4 for block in blocks for chunk in block)
    assert all(0 < len(block) <= 4 for block in blocks)
    assert index._maxes == [block[-1][-1] for block in blocks]


def test_a_big_index_adds_almost_nothing_for_the_collector_to_walk() -> None:

    from leadflow.stores.memory.fast.chunks import ChunkedIndex

    def build() -> object:
        index: ChunkedIndex[tuple[int, str]] = ChunkedIndex()
        for n in range(50_000):
            index.add(((n * 7919) % 50_000, f"id-{n}"))
        return index

    added = tracked_after(build)
    assert added < 50_000 / 100  # the chunks are untracked tuples; only the index's lists remain


def test_a_full_collection_reads_a_few_pointers_per_thousand_keys_of_an_index() -> None:
    """What a full collection walks of a big index: its three lists of blocks, one pointer per
    block of chunks (two per chunk of about a hundred keys before)."""
    from leadflow.stores.memory.fast.chunks import ChunkedIndex

    gc.freeze()
    try:
        index: ChunkedIndex[tuple[int, str]] = ChunkedIndex()
        for n in range(50_000):
            index.add(((n * 7919) % 50_000, f"id-{n}"))
        assert index.first() == (0, "id-0")  # the keys still waiting (at most 64) go in
        gc.collect()
        gc.collect()
        walked = sum(len(gc.get_referents(o)) for o in gc.get_objects())
    finally:
        gc.unfreeze()
    assert walked < 50_000 / 500, walked  # before the blocks: about 1,000
    assert [key[0] for key in index.irange((10,), (12,))] == [10, 11]


def test_one_young_collection_untracks_new_activities_and_the_chunks_holding_them() -> None:
    """A new activity's row, its index keys (which hold the row) and the chunks holding them
    are all untracked by the first young collection, so none reaches the oldest generation for
    every full collection to walk (each young collection untracked one level of them before)."""
    repo = FastActivityRepository()

    def add(n: int) -> None:
        repo.add(
            make_activity(
                f"a{n:05d}",
                opportunity_id=f"opp-{n % 97}",
                assigned_to=f"rep-{n % 7}",
                due_date=at(hours=n % 40),
                metadata={"automationRuleId": "rule-1"},
            )
        )

    for n in range(1500):
        add(n)
    for _ in range(4):
        gc.collect()  # the store and its first chunks settled in the oldest generation
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for n in range(1500, 1600):
            add(n)
        gc.collect(0)  # one young collection; its survivors are now in the middle generation
        tuples = [o for o in gc.get_objects(generation=1) if type(o) is tuple]
    finally:
        if was_enabled:
            gc.enable()
    assert len(tuples) < 10, len(tuples)  # before: about 750 (the keys and their chunks)
    assert len(repo.list(ActivityFilter(opportunity_id="opp-3")).items) == 17


@settings(max_examples=examples(100), deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["put", "put", "pop", "get"]),
            st.sampled_from(["", "a", "b", "ab", "b\x00", "z", *(f"k{n}" for n in range(150))]),
            st.integers(0, 9) | st.none(),
        ),
        max_size=400,
    )
)
def test_the_slot_rows_behave_like_a_dict_of_rows_by_their_first_value(
    ops: list[tuple[str, str, int | None]],
) -> None:
    """Enough keys for full chunks, replacements in them and repacking after removals."""
    from leadflow.stores.memory.fast.slots import SlotRows

    reference: dict[str, tuple[str, int | None]] = {}
    rows: SlotRows[tuple[str, int | None]] = SlotRows()
    for op, key, value in ops:
        if op == "put":
            reference[key] = (key, value)
            rows.put((key, value))  # a row of the same key, None or not, replaced
        elif op == "pop":
            if key in reference:
                assert rows.pop(key) == reference.pop(key)
            else:
                with pytest.raises(KeyError):
                    rows.pop(key)
        else:
            assert rows.get(key) == reference.get(key)
            assert (key in rows) == (key in reference)
            if key not in reference:
                with pytest.raises(KeyError):
                    rows[key]
            else:
                assert rows[key] == reference[key]
        assert len(rows) == len(reference)
    assert sorted(rows.items()) == sorted(reference.items())
    assert 1 not in rows


def test_slot_rows_pack_their_slots_once_most_are_free() -> None:
    from leadflow.stores.memory.fast.slots import SlotRows

    rows: SlotRows[tuple[str, int]] = SlotRows()
    for n in range(1000):
        rows.put((f"k{n}", n))
    for n in range(0, 1000, 4):
        rows.put((f"k{n}", -n))  # replaced in place, in full chunks and the filling one
    for n in range(900):
        del rows[f"k{n}"]
    assert rows._used < 300  # packed: not every slot ever handed out
    assert dict(rows.items()) == {
        f"k{n}": (f"k{n}", -n if n % 4 == 0 else n) for n in range(900, 1000)
    }


def test_a_big_slot_map_adds_almost_nothing_for_the_collector_to_walk() -> None:
    """Its dict holds strings and integers (never tracked), its chunks untracked tuples."""
    from enum import StrEnum

    from leadflow.stores.memory.fast.slots import SlotRows

    class Key(StrEnum):
        A = "enum-key"

    def build() -> object:
        rows: SlotRows[tuple[str, int]] = SlotRows()
        rows.put((Key.A, 0))  # a str subclass: kept as a plain str in the dict
        for n in range(20_000):
            rows.put((f"id-{n}", n))
        return rows

    assert tracked_after(build) < 20_000 / 100
    built = build()
    assert isinstance(built, SlotRows)
    assert not gc.is_tracked(built._slots)  # never walked, however many ids it holds
    rows = SlotRows[tuple[str, int]]()
    rows.put((Key.A, 1))
    assert rows["enum-key"] == (Key.A, 1) and "enum-key" in rows


def test_recorded_arrivals_and_changes_are_invisible_to_the_garbage_collector() -> None:
    """In the fast variant: a lead's arrival and a status change are rows, not models (two
    tracked objects each: the model and its set of fields set); read back equal."""
    arrivals = [
        LeadArrival(event_id=f"e{n}", opportunity_id=f"o{n}", arrived_at=at(minutes=n))
        for n in range(500)
    ]
    changes = [
        StatusChange(
            event_id=f"s{n}", opportunity_id=f"o{n}", changed_at=at(minutes=n), to_status="won"
        )
        for n in range(500)
    ]

    def build() -> object:
        store = FastAnalyticsStore()
        for arrival, change in zip(arrivals, changes, strict=True):
            store.record_arrival(arrival.model_copy())
            store.record_status_change(change.model_copy())
        return store

    assert tracked_after(build) < 100  # the indexes' own lists, not two objects per fact
    store = build()
    assert isinstance(store, FastAnalyticsStore)
    assert store.arrivals(at(), at(days=1)) == arrivals
    assert store.status_changes(at(), at(days=1)) == changes
    assert store.arrivals_of(["o3"]) == {"o3": arrivals[3]}


# --------------------------------------------------------------------------- replacing rows


@settings(max_examples=examples(100), deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "add", "update", "complete", "reopen", "delete", "read"]),
            st.integers(0, 20),  # which activity (an index into those stored)
            st.sampled_from(["opp-1", "opp-2", "opp-3"]),
            st.integers(-3, 6),  # days from BASE_TIME: a creation or completion time
            st.sampled_from([None, "u1", "u2"]),
        ),
        max_size=60,
    )
)
def test_a_replaced_activity_reads_as_in_the_reference_store(
    ops: list[tuple[str, int, str, int, str | None]],
) -> None:
    """The fast store swaps a changed activity's keys in place where only its row changes
    (``_replace``) and moves its opportunity's last activity time without reading the
    opportunity's rows where it can: every read the keys and those times serve answers as
    the reference store's does, after updates that move an activity to another
    opportunity, owner or creation time, completions, reopenings and deletions."""
    reference, fast = InMemoryActivityRepository(), FastActivityRepository()
    stored: list[str] = []
    serial = 0
    for op, which, opportunity, days, owner in ops:
        if op == "add" or not stored:
            serial += 1
            activity = make_activity(
                f"a{serial}",
                opportunity_id=opportunity,
                created_at=at(days=days),
                due_date=at(days=days + 1),
                assigned_to=owner,
            )
            reference.add(activity)
            fast.add(activity)
            stored.append(activity.activity_id)
            continue
        activity_id = stored[which % len(stored)]
        current = reference.get(activity_id)
        changed: Activity | None = None
        if op == "update":
            changed = current.model_copy(
                update={
                    "opportunity_id": opportunity,
                    "created_at": at(days=days),
                    "assigned_to": owner,
                }
            )
        elif op == "complete" and current.completed_date is None:
            when = max(current.created_at or at(), at(days=days))
            for store in (reference, fast):
                store.complete(activity_id, outcome=None, completed_by=owner, completed_at=when)
        elif op == "reopen" and current.completed_date is not None:
            changed = current.model_copy(
                update={"completed_date": None, "outcome": None, "completed_by": None}
            )
        elif op == "delete":
            reference.delete(activity_id)
            fast.delete(activity_id)
            stored.remove(activity_id)
        if changed is not None:
            reference.update(changed)
            fast.update(changed)
        assert fast.last_activity_times() == reference.last_activity_times()
        if op == "read":
            assert _reads(fast, opportunity, days, owner) == _reads(
                reference, opportunity, days, owner
            )
    assert [a.model_dump() for a in fast.list(None, limit=100).items] == [
        a.model_dump() for a in reference.list(None, limit=100).items
    ]


def _reads(store: Any, opportunity: str, days: int, owner: str | None) -> list[Any]:
    """What the reads served by the activity store's keys answer."""
    return [
        [a.activity_id for a in store.for_opportunity(opportunity)],
        [a.activity_id for a in store.list(None, limit=100).items],
        [a.activity_id for a in store.overdue(at(days=days + 2), limit=100)],
        store.stale_opportunities(at(days=days), limit=10),
        [
            a.activity_id
            for a in store.list(ActivityFilter(assigned_to=owner or "u1"), limit=100).items
        ],
    ]
