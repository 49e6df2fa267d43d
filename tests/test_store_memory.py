"""What only the in-memory backend promises (the shared contracts run in
tests/test_contracts_memory.py): thread safety under mixed load, the open-key race, reads that
never visit other people's activities, and stored state the garbage collector need not scan."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow import Activity, InvalidInputError, OpenActivityExistsError, Outcome
from leadflow.adapters import InMemoryOpportunities
from leadflow.facts import LeadArrival, StatusChange
from leadflow.ports import Contact, Storage
from leadflow.queries import ActivityFilter
from leadflow.records import ScheduledAction, ScheduledActionState
from leadflow.stores import memory
from leadflow.stores.memory import (
    InMemoryActivityRepository,
    InMemoryScheduledActionStore,
    memory_storage,
)
from leadflow.stores.memory.fast import (
    FastActivityRepository,
    FastAnalyticsStore,
    FastScheduledActionStore,
)
from leadflow.stores.memory.fast.activity_rows import (
    activity_from_row,
    activity_from_row_validated,
    row_from_activity,
)
from leadflow.stores.memory.fast.finished import documents, freeze, thaw
from leadflow.testing.contracts import at, make_activity, make_scheduled_action

from .suite import examples


def _run_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(n)`` in ``count`` threads started together; the errors they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            barrier.wait()
            work(n)
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_memory_storage_builds_every_store() -> None:
    storage = memory_storage()
    assert isinstance(storage, Storage)
    assert isinstance(storage.activities, InMemoryActivityRepository)
    assert isinstance(storage.scheduled, InMemoryScheduledActionStore)
    assert memory_storage().activities is not storage.activities


# --------------------------------------------------------------------------- threads


def test_threads_writing_and_reading_at_once_leave_consistent_indexes() -> None:
    repo = InMemoryActivityRepository()

    def work(worker: int) -> None:
        if worker >= 4:  # readers
            for n in range(150):
                repo.overdue(at(minutes=n), limit=20)
                repo.list(ActivityFilter(opportunity_id=f"opp-{n % 5}"), limit=20)
                repo.for_opportunity(f"opp-{n % 5}", assigned_to="u1")
                repo.statistics(None, as_of=at(minutes=n))
                repo.stale_opportunities(at(minutes=n))
            return
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

    assert _run_threads(6, work) == []
    everything = repo.list(limit=1000).items
    assert len(everything) == len(repo) == 4 * 135
    by_opportunity = sorted(
        a.activity_id for o in range(5) for a in repo.for_opportunity(f"opp-{o}")
    )
    assert by_opportunity == sorted(a.activity_id for a in everything)
    open_ones = [a for a in everything if a.completed_date is None]
    overdue = repo.overdue(at(days=1), limit=1000)
    assert sorted(a.activity_id for a in overdue) == sorted(a.activity_id for a in open_ones)
    mine = repo.overdue(at(days=1), assigned_to="u2", limit=1000)
    assert {a.activity_id for a in mine} == {
        a.activity_id for a in open_ones if a.assigned_to == "u2"
    }
    stats = repo.statistics(None, as_of=at(days=1))
    assert stats.total == len(everything)
    assert stats.by_state["completed"] == len(everything) - len(open_ones)


def test_one_open_key_has_exactly_one_winner_among_many_threads() -> None:
    repo = InMemoryActivityRepository()
    won: list[str] = []
    refused: list[int] = []

    def work(n: int) -> None:
        for attempt in range(20):
            try:
                repo.add(make_activity(f"a{n}-{attempt}", open_key="opp-1|rule-1"))
                won.append(f"a{n}-{attempt}")
            except OpenActivityExistsError:
                refused.append(n)

    assert _run_threads(8, work) == []
    assert len(won) == 1
    assert len(refused) == 8 * 20 - 1
    assert [a.activity_id for a in repo.for_opportunity("opp-1")] == won


def test_an_open_key_is_freed_by_completion_and_kept_by_update() -> None:
    repo = InMemoryActivityRepository()
    first = repo.add(make_activity("a1", open_key="k"))
    changed = repo.update(first.model_copy(update={"subject": "new", "open_key": "other"}))
    assert changed.open_key == "k"  # update keeps the stored key
    with pytest.raises(OpenActivityExistsError):
        repo.add(make_activity("a2", open_key="k"))
    repo.complete("a1", outcome=None, completed_by=None, completed_at=at(hours=1))
    repo.add(make_activity("a2", open_key="k"))
    reopened = repo.get("a1").model_copy(
        update={"completed_date": None, "outcome": None, "completed_by": None}
    )
    with pytest.raises(OpenActivityExistsError):  # a2 holds the key now
        repo.update(reopened)
    assert repo.get("a1").completed_date == at(hours=1)


# --------------------------------------------------------------------------- scoped reads


class _CountingDict:
    """Wraps the store's rows by id and counts item reads: how many stored rows a query
    looked at."""

    reads = 0

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getitem__(self, key: str) -> Any:
        _CountingDict.reads += 1
        return self._inner[key]

    def get(self, key: str, default: Any = None) -> Any:
        _CountingDict.reads += 1
        return self._inner.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._inner

    def __len__(self) -> int:
        return len(self._inner)


def test_reads_scoped_to_an_assignee_never_visit_the_others_activities() -> None:
    """The fast variant's indexes (the reference store tests an opportunity's activities)."""
    repo = FastActivityRepository()
    repo.add(make_activity("mine", assigned_to="rep-1", due_date=at(hours=1)))
    for n in range(300):
        repo.add(make_activity(f"other-{n:03d}", assigned_to="rep-2", due_date=at(hours=1)))
    repo._rows = _CountingDict(repo._rows)
    _CountingDict.reads = 0
    for read in (repo.for_opportunity, repo.timeline):
        assert [a.activity_id for a in read("opp-1", assigned_to="rep-1")] == ["mine"]
    assert [a.activity_id for a in repo.overdue(at(days=1), assigned_to="rep-1")] == ["mine"]
    assert [a.activity_id for a in repo.pending(at(), assigned_to="rep-1")] == ["mine"]
    page = repo.list(ActivityFilter(opportunity_id="opp-1", assigned_to="rep-1"))
    assert [a.activity_id for a in page.items] == ["mine"]
    assert repo.statistics(ActivityFilter(assigned_to="rep-1"), as_of=at()).total == 1
    assert _CountingDict.reads <= 6  # one row per query, never the 300 others


# --------------------------------------------------------------------------- input


def test_a_model_changed_after_validation_is_refused_and_nothing_is_written() -> None:
    repo = InMemoryActivityRepository()
    activity = make_activity("a1")
    with pytest.raises(ValidationError):  # activities are immutable: no naive time sneaks in
        activity.created_at = datetime(2026, 1, 5, 9)
    assert activity.metadata.model_extra is not None
    activity.metadata.model_extra["bad"] = {1, 2}  # a document changed in place after the check
    with pytest.raises(InvalidInputError):
        repo.add(activity)
    assert len(repo) == 0
    with pytest.raises(InvalidInputError):
        repo.add({"activity_id": "a1"})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        repo.list({"opportunityId": "opp-1"})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        repo.statistics({"opportunityId": "opp-1"}, as_of=at())  # type: ignore[arg-type]
    assert len(repo) == 0


def test_the_store_writes_no_pydantic_internals() -> None:
    """The reference store builds models through pydantic's validating API only."""
    for path in Path(memory.__file__).parent.glob("*.py"):
        source = path.read_text()
        for banned in ("__setattr__", "__pydantic_", "model_construct", "__dict__"):
            assert banned not in source, (path.name, banned)


# --------------------------------------------------------------------------- memory


def _tracked_after(build: Callable[[], object]) -> int:
    """How many more objects the garbage collector tracks once ``build`` ran. Everything that
    existed before is frozen (out of the collections and of ``gc.get_objects()``), so the
    count is what ``build`` left and the collections cost what it made, not the whole heap
    of a long test run."""
    gc.freeze()
    try:
        kept = build()
        gc.collect()
        gc.collect()  # nested tuples (chunks of pairs) are untracked over two passes
        grown = len(gc.get_objects())
        del kept
    finally:
        gc.unfreeze()
    return grown


def test_stored_activities_are_invisible_to_the_garbage_collector() -> None:
    """In the fast variant (the reference store keeps models)."""

    def build() -> object:
        repo = FastActivityRepository()
        for n in range(1000):
            repo.add(
                make_activity(
                    f"a{n:04d}",
                    opportunity_id=f"opp-{n % 50}",
                    assigned_to=f"rep-{n % 7}",
                    due_date=at(hours=n % 40),
                    metadata={"automationRuleId": "rule-1"},
                )
            )
        return repo

    assert _tracked_after(build) < 200  # the indexes' own lists, not one object per activity


def test_the_in_memory_gateway_is_invisible_to_the_garbage_collector() -> None:
    """The opportunity table demos and benchmarks fill with tens of thousands of rows keeps
    them as plain tuples, changed ones included."""

    def build() -> object:
        gateway = InMemoryOpportunities()
        for n in range(1000):
            gateway.add(f"opp-{n}", owner="u1", email=f"c{n}@example.com", timezone="UTC")
        for n in range(0, 1000, 3):
            gateway.update_status(f"opp-{n}", "won", actor=None)
            gateway.assign_owner(f"opp-{n}", "u2", actor=None)
        return gateway

    assert _tracked_after(build) < 20
    gateway = build()
    assert isinstance(gateway, InMemoryOpportunities)
    assert (gateway.owner("opp-3"), gateway.status("opp-3")) == ("u2", "won")
    assert gateway.contact("opp-4") == Contact("c4@example.com", None, "UTC")
    assert gateway.fields("opp-4") == {"status": "new", "owner": "u1"}


@pytest.mark.parametrize("compact", [True, False], ids=["fast", "reference"])
def test_finished_scheduled_actions_are_compact(compact: bool) -> None:
    """Finished actions come back exactly as stored (both variants); the fast variant keeps
    them where the garbage collector does not look."""
    make_store = FastScheduledActionStore if compact else InMemoryScheduledActionStore

    def build() -> object:
        store = make_store()
        for n in range(500):
            store.schedule(make_scheduled_action(f"k{n}", opportunity_id=f"opp-{n}"))
        for action in store.claim_due(at(), worker="w", limit=500):
            store.mark_done(action.action_id, worker="w", now=at(minutes=1))
        return store

    if compact:
        assert _tracked_after(build) < 100
    store = make_store()
    action = make_scheduled_action(
        "k1",
        event={
            "id": "e1",
            "type": "opportunity.created",
            "time": at(),
            "payload": {"when": at(hours=2)},
        },
    )
    store.schedule(action)
    (claimed,) = store.claim_due(at(), worker="w")
    done = store.mark_done(claimed.action_id, worker="w", now=at(minutes=1))
    assert store.get(action.action_id) == done
    assert store.get(action.action_id).event.payload == {"when": at(hours=2)}  # exact
    assert store.list(ScheduledActionState.DONE) == [done]
    assert store.purge_finished(at(minutes=2)) == 1
    assert len(store) == 0


_TIMES = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)
_TEXT = st.text(alphabet="abc xyz-_\u00e9\u4e2d", max_size=12)
_DOCUMENT = st.dictionaries(
    st.sampled_from(["opportunityId", "note", "when", "n", "tags"]),
    st.one_of(st.none(), st.integers(-(2**40), 2**40), _TEXT, _TIMES, st.lists(_TEXT, max_size=3)),
    max_size=4,
)


@st.composite
def _finished_actions(draw: st.DrawFn) -> ScheduledAction:
    """Any finished action: rule actions (every delay unit, activity type, params), deliveries
    and timer steps, every optional field present or absent."""
    kind = draw(st.sampled_from(["rule", "delivery", "step"]))
    maybe = lambda value: draw(st.one_of(st.none(), st.just(value)))  # noqa: E731
    fields: dict[str, Any] = {
        "kind": kind,
        "event": {
            "id": "e-1",
            "type": draw(st.sampled_from(["opportunity.created", "call.answered"])),
            "time": draw(_TIMES),
            "payload": draw(_DOCUMENT),
            "actor": maybe("u-1"),
        },
        "due_at": draw(_TIMES),
        "planned_at": draw(_TIMES),
        "created_at": draw(_TIMES),
        "updated_at": maybe(draw(_TIMES)),
        "finished_at": maybe(draw(_TIMES)),
        "state": draw(st.sampled_from(["done", "cancelled"])),
        "attempts": draw(st.integers(0, 2**62)),
        "max_attempts": draw(st.integers(1, 100)),
        "last_error": maybe(draw(_TEXT)),
        "lease_owner": maybe("w-1"),
        "partition": draw(st.integers(0, 3)),
        "depth": draw(st.integers(0, 100)),
        "duplicates": draw(st.sampled_from(["skip", "allow"])),
        "explanation": maybe(draw(_TEXT)),
        "opportunity_id": maybe("opp-1"),
        "rule_id": None,
        "action": None,
    }
    if kind == "rule" or (kind == "step" and draw(st.booleans())):
        fields["action"] = {
            "action_type": draw(st.sampled_from(["create_activity", "send_email"])),
            "delay": draw(
                st.one_of(
                    st.builds(
                        dict,
                        amount=st.floats(0, 1000),
                        unit=st.sampled_from(["minutes", "hours", "days"]),
                    ),
                    st.builds(dict, amount=st.integers(0, 30), unit=st.just("business_days")),
                )
            ),
            "activity_type": maybe(draw(st.sampled_from(["call", "email", "note"]))),
            "subject": maybe(draw(_TEXT.filter(str.strip))),
            "assign_to": maybe("u-2"),
            "params": draw(_DOCUMENT),
        }
    if kind != "delivery":
        fields.update(rule_id="rule-1", rule_name=maybe("Rule"), rule_version=maybe(3))
    if kind == "delivery":
        fields["activity_id"] = "act-1"
    if kind == "step":
        fields.update(enrollment_id="en-1", step_id="call-1")
    return make_scheduled_action(draw(st.sampled_from(["k", "k.2"])), **fields)


@settings(max_examples=50, deadline=None)
@given(_finished_actions())
def test_a_finished_action_round_trips_through_its_row(action: ScheduledAction) -> None:
    """The fast store keeps a finished action as a row of its own values: every field of the
    action, its event and its rule action comes back (a field added to a model must reach the
    row), and the row holds nothing the garbage collector keeps walking."""
    row = freeze(action)
    again = thaw(row)
    assert again == action
    assert again.event.payload == action.event.payload
    assert again.action == action.action
    assert _atoms(row), row
    assert freeze(action, documents(action)) == row  # its documents taken ahead: the same row


def _atoms(row: tuple[object, ...]) -> bool:
    """Whether ``row`` holds only atoms (nothing the collector must track)."""
    return all(type(value) in (str, int, float, bool, bytes, datetime, type(None)) for value in row)


def test_an_activity_round_trips_through_its_row() -> None:
    """Every Activity field is kept: a field added to the model must reach the row."""
    full: dict[str, Any] = {
        "activity_id": "a1",
        "opportunity_id": "o1",
        "customer_id": "c1",
        "activity_type": "quote_sent",
        "subject": "s",
        "description": "d",
        "scheduled_date": at(),
        "due_date": at(hours=1),
        "completed_date": at(hours=2),
        "assigned_to": "u1",
        "completed_by": "u2",
        "outcome": "converted",
        "metadata": {"automationRuleId": "r1", "quoteValue": 3.5, "extra": {"deep": [1]}},
        "open_key": "k",
        "created_by": "u3",
        "updated_by": "u4",
        "created_at": at(minutes=-5),
        "updated_at": at(hours=2),
        "version": 1,
        "cancelled_at": at(hours=3),
        "cancelled_by": "u5",
        "cancel_reason": "r",
    }
    assert set(full) == set(Activity.model_fields)
    completion = {"completed_date", "completed_by", "outcome"}
    cancellation = {"cancelled_at", "cancelled_by", "cancel_reason"}
    for left_out in (cancellation, completion):  # an activity is one or the other
        activity = Activity.model_validate({k: v for k, v in full.items() if k not in left_out})
        for repo in (InMemoryActivityRepository(), FastActivityRepository()):
            assert repo.add(activity) == activity
            assert repo.get("a1") == activity


_WORDS = st.text(alphabet="abcXYZ _-é", min_size=1, max_size=4)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.just("") | _WORDS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_WORDS, inner, max_size=3),
    max_leaves=6,
)
_METADATA = st.fixed_dictionaries(
    {},
    optional={
        "automationRuleId": st.sampled_from(["r1", "rule-2"]),
        "phoneDuration": st.integers(0, 900) | st.floats(0, 900),
        "emailOpened": st.booleans(),
        "quoteValue": st.none() | st.floats(0, 1e6),
        "priority": st.sampled_from(["low", "high", "urgent"]),
        "custom": _JSON,
        "nothing": st.none(),
    },
)


@settings(max_examples=examples(200), deadline=None)
@given(
    metadata=_METADATA,
    outcome=st.none() | st.sampled_from(["successful", "converted", "no_answer"]),
    kind=st.sampled_from(["call", "email", "quote_sent", "note"]),
    customer=st.none() | st.just("c1"),
    due=st.none() | st.integers(-48, 48),
    cancelled=st.booleans(),
    version=st.integers(1, 5),
)
def test_a_row_is_read_back_as_pydantic_would_build_it(
    metadata: dict[str, Any],
    outcome: str | None,
    kind: str,
    customer: str | None,
    due: int | None,
    cancelled: bool,
    version: int,
) -> None:
    """The fast store reads rows back without validating them (they were validated on the way
    in): the activity it builds is the one ``Activity.model_validate`` builds from the row, to
    the fields set and the order of the fields, and shares nothing with the row."""
    data: dict[str, Any] = {
        "activity_id": "a1",
        "opportunity_id": "o1",
        "customer_id": customer,
        "activity_type": kind,
        "subject": "s",
        "due_date": None if due is None else at(hours=due),
        "metadata": metadata,
        "created_at": at(),
        "version": version,
    }
    if cancelled:
        data |= {"cancelled_at": at(hours=1), "cancel_reason": "dropped"}
    elif outcome is not None:
        data |= {"outcome": outcome, "completed_date": at(hours=2), "completed_by": "u1"}
    row = row_from_activity(Activity.model_validate(data), version=version, open_key=None)
    trusted, validated = activity_from_row(row), activity_from_row_validated(row)
    for built, expected in ((trusted, validated), (trusted.metadata, validated.metadata)):
        assert list(built.__dict__.items()) == list(expected.__dict__.items())
        assert built.__pydantic_extra__ == expected.__pydantic_extra__
        assert built.model_fields_set == expected.model_fields_set
    assert trusted == validated
    assert repr(trusted) == repr(validated)
    assert trusted.model_dump(mode="json", by_alias=True) == validated.model_dump(
        mode="json", by_alias=True
    )
    assert trusted.model_dump(exclude_unset=True) == validated.model_dump(exclude_unset=True)
    assert trusted.to_document() == validated.to_document()
    extra = trusted.metadata.model_extra
    if extra and isinstance(extra.get("custom"), dict | list):
        before = activity_from_row(row).metadata.model_extra
        extra["custom"].clear()  # the caller's own object: the row does not change
        assert activity_from_row(row).metadata.model_extra == before


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

    added = _tracked_after(build)
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

    assert _tracked_after(build) < 20_000 / 100
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

    assert _tracked_after(build) < 100  # the indexes' own lists, not two objects per fact
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
