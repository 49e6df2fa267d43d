"""Many activities in one step (``add_many``, the optional
:class:`~leadflow.ports.BatchActivities` of the SQL activity store) and the runtime's use of it:
``handle_many`` and ``run_due`` store the activities of a batch's built-in ``create_activity``
actions with one multi-row ``INSERT``, with what ``add`` one by one would have given (the same
activities, notes and refusals: an id stored or earlier in the batch, an open key held). SQLite
in memory and in a file, PostgreSQL when a server is set; the runtime's batch runner also on
the memory stores, which add one by one."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")
from sqlalchemy import event

from leadflow import (
    ActionContext,
    DuplicateError,
    HandleResult,
    HandlerRegistry,
    InvalidInputError,
    OpenActivityExistsError,
)
from leadflow.errors import StorageError
from leadflow.ports import BatchActivities
from leadflow.stores.sql import SqlStorage
from leadflow.testing.contracts import at, make_activity

from .helpers import T0
from .latency import Tripwire
from .service_support import build_flow, new_storage, payloads, rule
from .sql_support import fresh_storage, kind_params


@pytest.fixture(params=kind_params())
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    with fresh_storage(request.param, tmp_path) as built:
        yield built


def _outcome(value: Any) -> Any:
    """An answer slot as comparable data: the stored document, or the refusal's type."""
    return value.to_document() if hasattr(value, "to_document") else type(value)


def test_add_many_answers_as_add_one_by_one(storage: SqlStorage, tmp_path: Path) -> None:
    """The same batch through ``add_many`` on one store and ``add`` one by one on another:
    the same answers and the same stored activities."""
    assert isinstance(storage.activities, BatchActivities)
    setup = [
        make_activity("stored", open_key="k-held"),
        make_activity("done", open_key="k-done", completed_date=at(), outcome="successful"),
    ]
    batch = [
        make_activity("a1", open_key="k1", version=7),
        make_activity("stored"),  # the id exists
        make_activity("a2", open_key="k-held"),  # an open activity holds the key
        make_activity("a3", open_key="k-done"),  # a completed one does not
        make_activity("a4", open_key="k1"),  # a1, earlier in the batch, holds it
        make_activity("a1", opportunity_id="opp-2"),  # the id came earlier in the batch
        make_activity("a5", open_key="k1", completed_date=at(), outcome="successful"),
        make_activity("a6"),
    ]
    with fresh_storage("sqlite-memory", tmp_path) as other:
        for store in (storage.activities, other.activities):
            for activity in setup:
                store.add(activity)
        many = storage.activities.add_many(batch)
        one_by_one: list[Any] = []
        for activity in batch:
            try:
                one_by_one.append(other.activities.add(activity))
            except (DuplicateError, OpenActivityExistsError) as refusal:
                one_by_one.append(refusal)
        assert [_outcome(v) for v in many] == [_outcome(v) for v in one_by_one]
        assert [type(v).__name__ for v in many] == [
            "Activity",
            "DuplicateError",
            "OpenActivityExistsError",
            "Activity",
            "OpenActivityExistsError",
            "DuplicateError",
            "OpenActivityExistsError",
            "Activity",
        ]
        stored = [a.to_document() for a in storage.activities.for_opportunity("opp-1")]
        assert stored == [a.to_document() for a in other.activities.for_opportunity("opp-1")]
        assert storage.activities.get("a1").version == 1
        assert storage.activities.for_opportunity("opp-2") == []


def test_add_many_is_one_insert(storage: SqlStorage) -> None:
    inserts: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append(statement)

    engine = storage.database.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        answers = storage.activities.add_many([make_activity(f"b{n}") for n in range(40)])
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert all(not isinstance(a, Exception) for a in answers)
    assert len(inserts) == 1
    assert len(storage.activities.for_opportunity("opp-1")) == 40


def test_add_many_refuses_bad_input_and_writes_nothing(storage: SqlStorage) -> None:
    good = make_activity("g1")
    with pytest.raises(InvalidInputError) as raised:
        storage.activities.add_many([good, "not an activity"])  # type: ignore[list-item]
    assert raised.value.field == "activities"
    with pytest.raises(InvalidInputError):
        storage.activities.add_many(good)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        storage.activities.add_many([good] * 1001)
    assert storage.activities.for_opportunity("opp-1") == []
    assert storage.activities.add_many([]) == []


# --------------------------------------------------------------------------- the runtime

RULES = [
    rule(
        "call",
        "opportunity.created",
        [
            {"actionType": "create_activity", "subject": "Call", "assignTo": "lead_owner"},
            {"actionType": "send_notification", "template": "new"},
            {"actionType": "peek"},
        ],
    ),
]


def _created(event_id: str, opportunity: str) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventType": "opportunity.created",
        "occurredAt": T0.isoformat(),
        "payload": {"opportunityId": opportunity},
    }


def _flow(storage: Any, seen: list[int]) -> Any:
    """A flow whose host handler ``peek`` records how many activities the opportunity has
    when it runs (it must see its event's activity, as one by one)."""

    def peek(ctx: ActionContext[None]) -> str:
        opportunity = ctx.opportunity_id()
        seen.append(len(ctx.storage.activities.for_opportunity(opportunity)))
        return "peeked"

    handlers = HandlerRegistry.default()
    handlers.register("peek", peek)
    return build_flow(storage=storage, rules=RULES, handlers=handlers)


def _summary(results: list[Any]) -> list[Any]:
    out = []
    for r in results:
        assert isinstance(r, HandleResult)
        out.append(([(run.ok, run.note) for run in r.executed], sorted(r.duplicates)))
    return out


@pytest.mark.parametrize("kind", ["memory", *kind_params()])
def test_handle_many_gives_what_handle_gives(kind: Any, tmp_path: Path) -> None:
    """``handle_many`` (activities batched) against ``handle`` one by one on a second store:
    the same notes (the second event of an opportunity skipped while its activity is open),
    the same activities, ``activity.created`` once per activity; the host handler saw its
    event's activity stored."""
    events = [_created(f"e{n}", f"opp-{n % 3 + 1}") for n in range(5)]
    answers = []
    stored = []
    peeks: list[list[int]] = []
    for batched in (True, False):
        seen: list[int] = []
        with _storage(kind, tmp_path / str(batched)) as storage:
            flow = _flow(storage, seen)
            results = flow.handle_many(events) if batched else [flow.handle(e) for e in events]
            answers.append(_summary(results))
            stored.append(
                sorted(
                    (a.activity_id, a.assigned_to, a.subject)
                    for opp in ("opp-1", "opp-2", "opp-3")
                    for a in storage.activities.for_opportunity(opp)
                )
            )
            assert len(payloads(flow, "activity.created")) == 3
        peeks.append(seen)
    assert answers[0] == answers[1]
    assert stored[0] == stored[1] and len(stored[0]) == 3
    assert peeks[0] == peeks[1] == [1, 1, 1, 1, 1]
    notes = [runs[0][1] for runs, _ in answers[0]]
    assert notes[3].startswith("skipped") and notes[4].startswith("skipped")


def test_run_due_stores_a_batch_of_activities_with_one_insert(storage: SqlStorage) -> None:
    """A worker that runs ``create_activity`` drains what a flow holding the type stored."""
    calls = [
        rule(
            "call",
            "opportunity.created",
            [{"actionType": "create_activity", "subject": "Call"}],
            allowDuplicates=True,
        )
    ]
    holding = HandlerRegistry.default()
    holding.hold("create_activity")
    planner = build_flow(storage=storage, rules=calls, handlers=holding)
    planner.handle_many([_created(f"e{n}", f"opp-{n % 4 + 1}") for n in range(12)])
    flow = build_flow(storage=storage, rules=[])
    inserts: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "INSERT" in statement.upper() and "activities" in statement:
            inserts.append(statement)

    engine = storage.database.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        report = flow.run_due(now=T0 + timedelta(hours=2))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert report.claimed == report.succeeded == 12
    assert len(inserts) == 1
    total = sum(len(storage.activities.for_opportunity(f"opp-{n}")) for n in range(1, 5))
    assert total == 12 == len(payloads(flow, "activity.created"))


def _storage(kind: Any, path: Path) -> Any:
    if kind == "memory":
        return nullcontext(new_storage("memory"))
    path.mkdir(parents=True, exist_ok=True)
    return fresh_storage(kind, path)


def test_a_failing_add_many_fails_its_actions_as_a_failing_add_would(
    storage: SqlStorage,
) -> None:
    """The store failing a batch's ``add_many`` fails those actions as a failing ``add`` fails
    one (retried later; on PostgreSQL, whose transaction the failure aborts, the chunk is
    rolled back and handled one by one): nothing half-written, and once the retries ran every
    activity is stored once and announced once."""
    failures = [1]

    def fail_once(*_: Any) -> None:
        if failures:
            failures.pop()
            raise StorageError("the database failed: injected")

    wired = Tripwire(storage.activities, before={"add_many": fail_once})
    calls = [rule("call", "opportunity.created", [RULES[0].actions[0].to_document()])]
    flow = build_flow(storage=dataclasses.replace(storage, activities=wired), rules=calls)
    results = flow.handle_many([_created(f"e{n}", f"opp-{n + 1}") for n in range(3)])
    assert not failures
    for r in results:
        assert isinstance(r, HandleResult)
        (run,) = r.executed
        assert run.ok or "injected" in (run.note or "")
    flow.run_due(now=T0 + timedelta(hours=1))
    total = sum(len(storage.activities.for_opportunity(f"opp-{n}")) for n in range(1, 4))
    assert total == 3 == len(payloads(flow, "activity.created"))
    assert {a.state.value for a in storage.scheduled.list(limit=10)} == {"done"}
