"""What only the in-memory backend promises (the shared contracts run in
tests/test_contracts_memory.py): thread safety under mixed load, the open-key race, reads that
never visit other people's activities, and stored state the garbage collector need not scan."""

from __future__ import annotations

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
    FastScheduledActionStore,
)
from leadflow.stores.memory.fast.activity_rows import (
    activity_from_row,
    activity_from_row_validated,
    row_from_activity,
)
from leadflow.stores.memory.fast.finished import documents, freeze, freeze_done, thaw
from leadflow.testing.contracts import at, make_activity, make_scheduled_action

from .gc_support import tracked_after
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

    assert tracked_after(build) < 200  # the indexes' own lists, not one object per activity


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

    assert tracked_after(build) < 20
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
        assert tracked_after(build) < 100
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


@settings(max_examples=50, deadline=None)
@given(_finished_actions(), _TIMES, st.booleans())
def test_a_row_frozen_done_is_the_row_of_the_done_action(
    action: ScheduledAction, now: datetime, taken: bool
) -> None:
    """``freeze_done`` (the fast store's ``mark_done_ids``: no done action built) writes the
    row ``freeze`` writes for the action changed as ``mark_done`` changes it."""
    snapshot = documents(action) if taken else None
    done = action._evolve(
        state=ScheduledActionState.DONE, lease_expires_at=None, updated_at=now, finished_at=now
    )
    assert freeze_done(action, now, snapshot) == freeze(done, snapshot)


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
