"""Writes answered ahead in ``handle``'s unit of work (``DeferredUnits``, ``stores/sql/later.py``):
on PostgreSQL an event whose run-now actions only create activities is one statement in
autocommit; with a notification too, its activity and fact go with the acknowledgement. What
is stored and reported is what an ordinary unit stores and reports (the memory store is the
reference): duplicates, open keys held, collisions, a conflict found by a read, a refused
write. On SQLite a deferred unit is an ordinary one."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from leadflow import HandleResult, LeadFlow
from leadflow.models import Activity, Outcome
from leadflow.ports import DeferredUnits, DeferredWriteError
from leadflow.records import ScheduledAction
from leadflow.runtime.actions import HandlerRegistry
from leadflow.runtime.handlers import create_activity
from leadflow.runtime.planning import activity_id_for
from leadflow.stores.sql import SqlStorage
from leadflow.stores.sql.direct import DriverStatement

from .helpers import T0
from .service_support import build_flow, notifier_of, payloads, rule
from .sql_support import fresh_storage, kind_params
from .test_runtime_concurrency import together
from .test_sql_units import counted

CALL = rule(
    "call",
    "opportunity.created",
    [{"actionType": "create_activity", "subject": "Call", "assignTo": "lead_owner"}],
)
LATER = rule(
    "later", "opportunity.created", [{"actionType": "send_email", "template": "hi", "delay": 48}]
)
NOTE = rule(
    "note",
    "opportunity.created",
    [
        {"actionType": "create_activity", "subject": "Note", "assignTo": "bob"},
        {"actionType": "send_notification", "template": "new", "assignTo": "bob"},
    ],
    allowDuplicates=True,
)


@pytest.fixture(params=kind_params())
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    with fresh_storage(request.param, tmp_path) as built:
        yield built


def _event(event_id: str, opportunity: str, minutes: int = 0) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventType": "opportunity.created",
        "occurredAt": (T0 + timedelta(minutes=minutes)).isoformat(),
        "payload": {"opportunityId": opportunity},
    }


def _said(result: HandleResult) -> tuple[Any, ...]:
    return (
        result.matched_rules,
        [(r.idempotency_key, r.action_type, r.ok, r.note, r.state) for r in result.executed],
        sorted(result.duplicates),
        sorted(a.idempotency_key for a in result.scheduled),
        [str(e) for e in result.all_errors()],
    )


def _stored(flow: LeadFlow, opportunities: list[str]) -> tuple[Any, ...]:
    storage = flow.storage
    activities = sorted(
        (a.activity_id, a.subject, a.assigned_to, a.open_key)
        for opp in opportunities
        for a in storage.activities.for_opportunity(opp)
    )
    actions = sorted(
        (a.idempotency_key, a.state.value)
        for a in storage.scheduled.list(limit=10_000)
        if a.opportunity_id in opportunities
    )
    return activities, actions


def _ready(flow: LeadFlow) -> LeadFlow:
    flow.engine()  # the rules read and compiled before anything is counted
    assert flow.sequencer is not None
    flow.sequencer.programs.refresh()
    return flow


@pytest.mark.parametrize("later", [True, False], ids=["two actions", "one action"])
def test_an_event_that_only_creates_activities_is_one_statement(
    storage: SqlStorage, later: bool
) -> None:
    rules = [CALL, LATER] if later else [CALL]
    flow = _ready(build_flow(storage=storage, rules=rules))
    with counted(storage.database.engine) as counts:
        result = flow.handle(_event("e1", "opp-1"))
        assert counts.commits == 1
        # PostgreSQL: the actions, the activity and the fact in one statement, the activity's
        # action marked done before it was sent; SQLite: each its own (+ BEGIN IMMEDIATE).
        postgres = storage.database.dialect == "postgresql"
        # SQLite: BEGIN IMMEDIATE, the stored keys read, the activity, the arrival, and the
        # actions held until the commit (one executemany however many)
        assert counts.statements == (1 if postgres else 5), counts.statements
    reference = _ready(build_flow(rules=rules))
    assert _said(result) == _said(reference.handle(_event("e1", "opp-1")))
    assert _stored(flow, ["opp-1"]) == _stored(reference, ["opp-1"])
    assert [a.state.value for a in storage.scheduled.list(limit=10)].count("done") == 1


def test_an_added_activity_is_encoded_once(
    storage: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The activity's row becomes the driver's parameters once per ``add``: the waiting write
    of a deferred unit is built only where one keeps it (PostgreSQL's ``handle``), never to
    be thrown away (SQLite's units, an add outside a unit)."""
    activities: Any = storage.activities
    ours = {id(s) for s in (activities._add_direct, activities._add_counted) if s is not None}
    encoded: list[str] = []
    plain = DriverStatement.parameters

    def parameters(self: DriverStatement, values: Any) -> tuple[Any, ...]:
        if id(self) in ours:
            encoded.append(values["activity_id"])
        return plain(self, values)

    monkeypatch.setattr(DriverStatement, "parameters", parameters)
    flow = _ready(build_flow(storage=storage, rules=[CALL]))
    result = flow.handle(_event("e1", "opp-1"))
    assert result.executed and all(run.ok for run in result.executed)
    assert encoded == [activity_id_for("e1/call/0")]
    encoded.clear()
    storage.activities.add(Activity.model_validate(_ACTIVITY))
    assert encoded == ["a-by-hand"]
    with storage.unit_of_work():
        storage.activities.add(Activity.model_validate({**_ACTIVITY, "activityId": "a-2"}))
    assert encoded == ["a-by-hand", "a-2"]


_ACTIVITY: dict[str, Any] = {
    "activityId": "a-by-hand",
    "opportunityId": "opp-2",
    "activityType": "call",
    "subject": "Call",
    "createdAt": T0.isoformat(),
}


def test_repeats_and_held_keys_are_answered_as_in_an_ordinary_unit(storage: SqlStorage) -> None:
    """A repeated event (its actions stored already) and a second lead event while the first
    call is open (its open key held) are refused in the deferred unit, rolled back and
    handled again in an ordinary one: the same answers as the memory store's."""
    flow = _ready(build_flow(storage=storage, rules=[CALL, LATER, NOTE]))
    reference = _ready(build_flow(rules=[CALL, LATER, NOTE]))
    stream = [("e1", "opp-1"), ("e1", "opp-1"), ("e2", "opp-1"), ("e3", "opp-2"), ("e2", "opp-1")]
    for n, (event_id, opp) in enumerate(stream):
        got = flow.handle(_event(event_id, opp, n))
        expected = reference.handle(_event(event_id, opp, n))
        assert _said(got) == _said(expected), (event_id, opp)
    assert _stored(flow, ["opp-1", "opp-2"]) == _stored(reference, ["opp-1", "opp-2"])
    assert notifier_of(flow).sent == notifier_of(reference).sent
    created = [p["activityId"] for p in payloads(flow, "activity.created")]
    assert created == [p["activityId"] for p in payloads(reference, "activity.created")]
    assert len(created) == 5  # e1's two, e2's note (its call skipped), e3's two: once each


def test_an_activity_id_collision_is_reported_as_in_an_ordinary_unit(storage: SqlStorage) -> None:
    """The activity a new action creates is there already (its action purged, the event
    handled again): the unit's statement finds it, the unit is run again in an ordinary one,
    which reports it (``already created``) like the reference; the notification of the
    rolled-back unit was sent, and is sent again with the same key (the at-least-once of
    every foreign call in a rolled-back unit)."""
    flow = _ready(build_flow(storage=storage, rules=[NOTE]))
    reference = _ready(build_flow(rules=[NOTE]))
    for target in (flow, reference):
        target.storage.activities.add(
            Activity(
                activity_id=activity_id_for("e1/note/0"),
                opportunity_id="opp-1",
                activity_type="call",
                subject="there already",
                scheduled_date=T0,
                due_date=T0,
                assigned_to="bob",
                created_by="system",
                updated_by="system",
                created_at=T0,
                updated_at=T0,
            )
        )
    got, expected = flow.handle(_event("e1", "opp-1")), reference.handle(_event("e1", "opp-1"))
    assert _said(got) == _said(expected)
    assert "already created" in got.executed[0].note
    assert _stored(flow, ["opp-1"]) == _stored(reference, ["opp-1"])
    keys = {n.key for n in notifier_of(flow).sent}
    assert keys == {n.key for n in notifier_of(reference).sent} == {"e1/note/1"}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stream=st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 2), st.booleans()), min_size=1, max_size=10
    ),
    run=st.integers(),
)
def test_any_stream_is_answered_as_the_memory_store_answers_it(
    storage: SqlStorage, stream: list[tuple[int, int, bool]], run: int
) -> None:
    """Random streams of lead events (repeats, several per opportunity, some completing the
    open call before the next event) give the memory store's answers and stored state."""
    if storage.database.dialect != "postgresql":
        pytest.skip("a deferred unit is an ordinary one on SQLite")
    tag = f"r{next(_RUNS)}"
    flow, reference = _pair(storage)
    opportunities = [f"opp-{n}" for n in range(1, 4)]
    for n, (event, opp, complete) in enumerate(stream):
        payload = _event(f"{tag}-e{event}", opportunities[opp], n)
        got, expected = flow.handle(payload), reference.handle(payload)
        assert _said(got) == _said(expected)
        if complete:
            for target in (flow, reference):
                for activity in target.storage.activities.for_opportunity(opportunities[opp]):
                    if activity.is_open:
                        target.storage.activities.complete(
                            activity.activity_id,
                            outcome=Outcome.SUCCESSFUL,
                            completed_by="alice",
                            completed_at=T0,
                        )
    assert _stored(flow, opportunities) == _stored(reference, opportunities)


_RUNS = itertools.count()


def _pair(storage: SqlStorage) -> tuple[LeadFlow, LeadFlow]:
    """One flow on ``storage`` and its memory reference for every example of a test (each
    example goes on from the state the ones before it left, in both)."""
    pair: tuple[LeadFlow, LeadFlow] | None = getattr(storage.database, "_deferred_pair", None)
    if pair is None:
        pair = (
            _ready(build_flow(storage=storage, rules=[CALL, LATER, NOTE])),
            _ready(build_flow(rules=[CALL, LATER, NOTE])),
        )
        storage.database._deferred_pair = pair  # type: ignore[attr-defined]
    return pair


def _actions(*keys: str) -> list[ScheduledAction]:
    """A pending action (the ``later`` rule's) for an event of each of ``keys``."""
    flow = build_flow(rules=[LATER])
    return [flow.handle(_event(key, "opp-3")).scheduled[0] for key in keys]


def _action(key: str) -> ScheduledAction:
    return _actions(key)[0]


def _deferred(storage: SqlStorage) -> Any:
    units = storage.unit_of_work
    assert isinstance(units, DeferredUnits)
    return units.deferred(ahead=True)


@pytest.mark.parametrize("found_by", ["the unit's end", "a read", "a read, caught"])
def test_a_write_answered_ahead_that_did_not_go_in_fails_the_unit(
    storage: SqlStorage, found_by: str
) -> None:
    """An action stored already, stored again ahead in a deferred unit: answered as new, then
    refused when the writes are sent (at the unit's end, or by a read that sends them first,
    even if its caller swallows the error): nothing of the unit is written."""
    if storage.database.dialect != "postgresql":
        pytest.skip("a deferred unit is an ordinary one on SQLite")
    scheduled = storage.scheduled
    old, new = _actions("old", "new")
    assert scheduled.schedule(old)[1]
    with pytest.raises(DeferredWriteError), _deferred(storage):
        assert scheduled.schedule_many([old, new]) == [True, True]  # answered ahead
        if found_by != "the unit's end":
            try:
                scheduled.get(new.action_id)
            except DeferredWriteError:
                if found_by == "a read":
                    raise
    assert [a.idempotency_key for a in scheduled.list(limit=10)] == [old.idempotency_key]


def test_a_read_in_a_deferred_unit_sees_its_waiting_writes(storage: SqlStorage) -> None:
    action = _action("seen")
    with _deferred(storage):
        assert storage.scheduled.schedule_many([action]) == [True]
        assert storage.scheduled.get(action.action_id).idempotency_key == "seen/later/0"
    assert storage.scheduled.get(action.action_id).state.value == "pending"


def test_only_the_built_in_create_activity_is_contained() -> None:
    registry = HandlerRegistry.default()
    assert registry.contained("create_activity")
    assert not registry.contained("send_notification") and not registry.contained("nope")

    def wrapped(ctx: Any) -> str | None:
        return create_activity(ctx)

    registry.register("create_activity", wrapped, replace=True)
    assert not registry.contained("create_activity")


# ------------------------------------------------------------------ threads


@contextmanager
def _slowed(storage: SqlStorage) -> Iterator[None]:
    """Every statement waits 2 ms before it is sent: the race windows widened (the engine
    may be shared with other tests: the listener goes at the end)."""

    def wait(*_: Any) -> None:
        time.sleep(0.002)

    engine = storage.database.engine
    sa_event.listen(engine, "before_cursor_execute", wait)
    try:
        yield
    finally:
        sa_event.remove(engine, "before_cursor_execute", wait)


NOTIFY = rule(
    "notify",
    "opportunity.created",
    [{"actionType": "send_notification", "template": "new_lead", "assignTo": "bob"}],
    allowDuplicates=True,
)


@pytest.mark.parametrize("rules", [[CALL], [CALL, NOTIFY]], ids=["ahead", "notify"])
def test_one_event_handled_by_many_threads_at_once_acts_once(
    storage: SqlStorage, rules: list[Any]
) -> None:
    flow = _ready(build_flow(storage=storage, rules=rules))
    with _slowed(storage):
        results = together(6, lambda n: flow.handle(_event("same", "opp-1")))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(len(r.executed) for r in results) == len(rules)
    assert sum(len(r.duplicates) for r in results) == len(rules) * 5
    assert len(storage.activities.for_opportunity("opp-1")) == 1
    assert len(payloads(flow, "activity.created")) == 1
    assert len(notifier_of(flow).sent) == len(rules) - 1


def test_lead_events_for_one_opportunity_at_once_open_one_call(storage: SqlStorage) -> None:
    flow = _ready(build_flow(storage=storage, rules=[CALL]))
    with _slowed(storage):
        results = together(6, lambda n: flow.handle(_event(f"lead-{n}", "opp-2")))
    assert not [r for r in results if isinstance(r, Exception)], results
    notes = [run.note or "" for r in results for run in r.executed]
    assert sum(note.startswith("created") for note in notes) == 1
    assert sum(note.startswith("skipped") for note in notes) == 5
    assert len(storage.activities.for_opportunity("opp-2")) == 1
    assert len(payloads(flow, "activity.created")) == 1


def test_many_waiting_writes_go_in_statements_of_at_most_32(storage: SqlStorage) -> None:
    """A deferred unit that answers many writes ahead sends them 32 at a time (a statement's
    parameters stay bounded): all stored, in ceil(n / 32) statements on PostgreSQL."""
    actions = _actions(*(f"many{n}" for n in range(70)))
    with counted(storage.database.engine) as counts, _deferred(storage):
        for action in actions:
            assert storage.scheduled.schedule(action)[1]
    postgres = storage.database.dialect == "postgresql"
    assert counts.statements == (3 if postgres else 71), counts.statements
    assert len(storage.scheduled.list(limit=100)) == 70
