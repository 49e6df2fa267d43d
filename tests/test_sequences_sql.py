"""The sequence runtime on SQL (issue 18), on a SQLite file and on PostgreSQL (when
``LEADFLOW_TEST_POSTGRES_URL`` is set; each test in a fresh schema):

- ``handle`` of an entry event enrolls and stores the first visit in the event's one commit,
  with its rules' actions; a crash inside the unit leaves nothing of the event; a store error
  inside it rolls the unit back and the event is handled again step by step; ``handle_many``
  with entries, goals and matching events in one chunk ends where handling them one by one
  does, in one commit per chunk.
- The two thread races of tests/test_sequences_races.py (a goal against a send, a wait's
  timeout against the reply) on real databases, several trials each, with the same
  invariants: the first e-mail is sent iff its "send begun" write precedes the goal's in the
  enrollment's write order (its ``revision``); one visit goes one way; nothing after a goal.
- A step whose send began before the goal was stored completes even when its worker died
  in between: the rerun (lease expiry) sends it, once.

The real-process crash test (workers SIGKILLed mid-handler) is tests/test_sequences_crash.py.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from leadflow import FlowSettings, FollowUpRule, HandleResult, LeadFlow, ManualClock
from leadflow.adapters import RecordingMessenger, RecordingNotifier
from leadflow.errors import StorageError
from leadflow.records import ActionKind, ScheduledActionState
from leadflow.sequences import Enrollment, EnrollmentState, SequenceDefinition
from leadflow.stores.sql import SqlStorage

from .latency import Crash, Slow, Tripwire
from .sequence_support import opportunities
from .sql_support import fresh_storage, on_postgres
from .test_sequences_races import Logged, race_sequence
from .test_sql_units import counted

START = datetime(2026, 1, 5, 10, tzinfo=UTC)
KINDS = [
    pytest.param("sqlite-file", id="sqlite-file"),
    pytest.param("postgres", id="postgres", marks=on_postgres),
]
#: per race and backend, one trial each (a fresh database): how long the event's thread waits
#: before handling it, so that the trials sweep the window where the two writers cross (with
#: none, the event's side nearly always wins on these databases)
HEAD_STARTS = (0.0, 0.004, 0.008, 0.015, 0.03, 0.06)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage(kind: str, tmp_path: Path) -> Iterator[SqlStorage]:
    with fresh_storage(kind, tmp_path) as found:
        yield found


# --------------------------------------------------------------------------- building blocks

TELL = FollowUpRule.model_validate(
    {
        "ruleId": "tell",
        "name": "tell",
        "trigger": {"eventType": "opportunity.created", "conditions": []},
        "actions": [
            {"actionType": "send_notification", "template": "new"},
            {"actionType": "send_email", "template": "later", "delay": 48},
        ],
    }
)


def sql_flow(
    storage: Any, *, clock: ManualClock | None = None, rules: bool = False, delay: float = 0.0
) -> tuple[LeadFlow, ManualClock, Logged]:
    """A flow on ``storage`` with the race sequence published (and the ``tell`` rule with
    ``rules``), opportunities o1..o6; its enrollment writes logged (and slowed by ``delay``)."""
    clock = clock or ManualClock(START)
    logged = Logged(storage.enrollments)
    enrollments: Any = Slow(logged, delay) if delay else logged
    wired = dataclasses.replace(storage, enrollments=enrollments)
    flow = LeadFlow.in_memory(
        clock=clock,
        storage=wired,
        event_types=["email.replied"],
        settings=FlowSettings(action_lease=timedelta(minutes=1)),
    )
    for n in range(1, 7):
        opportunities(flow).add(f"o{n}", owner="alice", email=f"o{n}@example.com")
    if not flow.sequences.list():
        flow.sequences.publish(race_sequence())
    if rules:
        flow.rules.create(TELL)
    return flow, clock, logged


def watcher_sequence() -> SequenceDefinition:
    """A sequence entered on a reply, whose goal is a new lead (of the same opportunity)."""
    return SequenceDefinition.model_validate(
        {"sequenceId": "watcher", "name": "watcher", "entry": {"eventType": "email.replied"},
         "steps": [{"id": "pause", "kind": "wait", "delay": 1}],
         "goals": [{"name": "relisted", "eventType": "opportunity.created"}]}
    )  # fmt: skip


def entry(clock: ManualClock, opp: str = "o1") -> dict[str, Any]:
    return {"type": "opportunity.created", "id": f"lead-{opp}", "time": clock.now(),
            "payload": {"opportunityId": opp}}  # fmt: skip


def won(clock: ManualClock, opp: str = "o1") -> dict[str, Any]:
    return {"type": "opportunity.status_changed", "id": f"won-{opp}", "time": clock.now(),
            "payload": {"opportunityId": opp, "newStatus": "won"}}  # fmt: skip


def reply(clock: ManualClock, opp: str = "o1") -> dict[str, Any]:
    return {"type": "email.replied", "id": f"reply-{opp}", "time": clock.now(),
            "payload": {"opportunityId": opp}}  # fmt: skip


def sent(flow: LeadFlow, opp: str | None = None) -> list[str]:
    messenger = flow.integrations.messenger
    assert isinstance(messenger, RecordingMessenger)
    return [m.template for m in messenger.sent if opp is None or m.to == f"{opp}@example.com"]


def steps(storage: SqlStorage) -> dict[str, tuple[str | None, str]]:
    """Every stored visit: its key -> (step, state)."""
    return {
        a.idempotency_key: (a.step_id, a.state.value)
        for a in storage.scheduled.list(limit=1000)
        if a.kind is ActionKind.STEP
    }


def live_steps(storage: SqlStorage) -> list[str]:
    return [k for k, (_, state) in steps(storage).items() if state not in ("done", "cancelled")]


def check_goal_order(flow: LeadFlow, log: list[Enrollment], opp: str = "o1") -> None:
    """tests/test_sequences_races.py's invariant on a real database, ordered by the record's
    ``revision`` (each successful compare-and-set makes the next one): the first e-mail went
    out iff its "send begun" write precedes the goal's; nothing at all after the goal."""
    [final] = flow.sequences.enrollments(opp)
    mine = sorted((e for e in log if e.enrollment_id == final.enrollment_id),
                  key=lambda e: e.revision)  # fmt: skip
    revisions = [e.revision for e in mine]
    assert revisions == sorted(set(revisions)), revisions  # one write per revision
    began = [e.revision for e in mine if e.sending and e.step_id == "first"]
    goal = [e.revision for e in mine if e.state is EnrollmentState.GOAL_REACHED]
    assert len(goal) == 1, mine
    assert final.state is EnrollmentState.GOAL_REACHED and final.revision == goal[0]
    if began and began[0] < goal[0]:
        assert sent(flow, opp) == ["first"], (sent(flow, opp), mine)
        # The goal's record keeps a send still in flight at its visit (at a later visit, the
        # send had finished and the enrollment moved on before the goal).
        assert final.sending == (final.visit == 1), mine
    else:
        assert sent(flow, opp) == [] and not began, (sent(flow, opp), mine)
        assert not final.sending


# --------------------------------------------------------------------------- one commit


def test_an_entry_enrolls_and_stores_its_first_visit_in_the_event_commit(
    storage: SqlStorage,
) -> None:
    flow, clock, _ = sql_flow(storage, rules=True)
    flow.engine()
    assert flow.sequencer is not None
    flow.sequencer.programs.refresh()  # the rules and sequences are read before counting
    with counted(storage.database.engine) as counts:
        result = flow.handle(entry(clock))
        assert counts.commits == 1
        counts.reset()
        again = flow.handle(entry(clock))
        assert counts.commits <= 1
    assert [o.what for o in result.sequences] == ["enrolled"]
    assert [run.ok for run in result.executed] == [True] and len(result.scheduled) == 1
    assert [o.what for o in again.sequences] == ["already_enrolled"]
    assert len(again.duplicates) == 2 and not again.executed
    [enrollment] = flow.sequences.enrollments("o1")
    assert (enrollment.visit, enrollment.step_id, enrollment.state) == (
        1, "first", EnrollmentState.ACTIVE,
    )  # fmt: skip
    key = f"seq:{enrollment.enrollment_id}:1"
    assert steps(storage) == {key: ("first", "pending")}
    notifier = flow.integrations.notifier
    assert isinstance(notifier, RecordingNotifier) and len(notifier.sent) == 1
    flow.run_due()
    assert sent(flow) == ["first"]


@pytest.mark.parametrize("read", [False, True], ids=["no-read", "read"])
def test_an_entry_carries_the_events_arrival_on_postgresql(
    storage: SqlStorage, kind: str, read: bool
) -> None:
    """On PostgreSQL the event's arrival fact waits in the unit (past the read of the
    opportunity's active enrollments, when some sequence's goal or wait listens to the entry's
    event type) and goes with the enrollment's insert, which carries the first visit too
    (``enroll_at_first``): an entry is one statement and a commit (the enrollment with its
    records, its first visit and the arrival), two with the read. The arrival and the visit
    are stored, once, and the entry handled again changes nothing."""
    flow, clock, _ = sql_flow(storage)
    if read:  # another sequence ends its enrollments on a new lead: the entry reads them
        flow.sequences.publish(watcher_sequence())
    flow.engine()
    assert flow.sequencer is not None
    flow.sequencer.programs.refresh()
    flow.handle(entry(clock, "o2"))  # the statements' first run, uncounted
    with counted(storage.database.engine) as counts:
        result = flow.handle(entry(clock))
        if kind == "postgres":
            assert (counts.statements, counts.commits) == (1 + read, 1)
        else:  # BEGIN IMMEDIATE, the arrival, [the read,] the row, its records, the visit
            assert (counts.statements, counts.commits) == (5 + read, 1)
    again = flow.handle(entry(clock))
    assert [o.what for o in result.sequences] == ["enrolled"]
    assert [o.what for o in again.sequences] == ["already_enrolled"]
    arrivals = storage.analytics.arrivals(START - timedelta(days=1), START + timedelta(days=1))
    assert sorted(a.opportunity_id for a in arrivals) == ["o1", "o2"]
    [enrollment] = flow.sequences.enrollments("o1")
    assert (enrollment.visit, enrollment.step_id, len(enrollment.history)) == (1, "first", 1)
    assert steps(storage)[f"seq:{enrollment.enrollment_id}:1"] == ("first", "pending")


def test_a_crash_inside_the_unit_leaves_nothing_of_the_event(storage: SqlStorage) -> None:
    """The process dies once the enrollment and its first visit are written (one statement on
    PostgreSQL, ``enroll_at_first``): the enrollment, its visit, the rule's actions and the
    notification's done mark were in the same uncommitted unit, so none of them is there;
    the event handed in again does it all, once."""

    def die(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        raise Crash

    wired = Tripwire(storage.enrollments, after={"enroll_at_first": die})
    flow, clock, _ = sql_flow(dataclasses.replace(storage, enrollments=wired), rules=True)
    with pytest.raises(Crash):
        flow.handle(entry(clock))
    assert storage.enrollments.list(limit=10) == []
    assert storage.scheduled.list(limit=10) == []
    wired.after.clear()
    result = flow.handle(entry(clock))
    assert [o.what for o in result.sequences] == ["enrolled"]
    [enrollment] = flow.sequences.enrollments("o1")
    assert enrollment.visit == 1
    assert steps(storage) == {f"seq:{enrollment.enrollment_id}:1": ("first", "pending")}
    assert len(storage.scheduled.list(limit=10)) == 3  # two rule actions, one visit


def test_a_store_error_inside_the_unit_rolls_it_back_and_the_event_goes_step_by_step(
    storage: SqlStorage,
) -> None:
    failures = [1]

    def fail_once(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if args[0].kind is ActionKind.STEP and failures:
            failures.pop()
            raise StorageError("the database failed: injected")

    wired = Tripwire(storage.scheduled, before={"schedule": fail_once})
    flow, clock, _ = sql_flow(dataclasses.replace(storage, scheduled=wired), rules=True)
    result = flow.handle(entry(clock))
    assert not result.all_errors(), result.all_errors()
    assert [o.what for o in result.sequences] == ["enrolled"]
    [enrollment] = flow.sequences.enrollments("o1")
    assert enrollment.visit == 1 and enrollment.revision == 1  # enrolled once, at its first visit
    assert steps(storage) == {f"seq:{enrollment.enrollment_id}:1": ("first", "pending")}
    states = sorted(a.state.value for a in storage.scheduled.list(limit=10))
    assert states == ["done", "pending", "pending"]
    notifier = flow.integrations.notifier
    assert isinstance(notifier, RecordingNotifier)
    assert len({n.key for n in notifier.sent}) == 1  # called again with the same key only


class _EnrollmentsAlone(Tripwire):
    """The SQL enrollment store without ``enroll_at_first``: its first visits stored by the
    scheduled-action store after it (as with a store that cannot store both)."""

    def __getattr__(self, name: str) -> Any:
        if name == "enroll_at_first":
            raise AttributeError(name)
        return super().__getattr__(name)


def test_a_visit_that_cannot_be_stored_is_stored_by_the_event_handled_again(
    storage: SqlStorage,
) -> None:
    """Step by step (after the unit's rollback), each store call commits on its own: when the
    visit still cannot be stored (an enrollment store that stores its visits apart), the error
    is reported and the enrollment waits at visit 0; the event handed in again stores the
    visit, and enrolls nobody twice."""

    def fail(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if args[0].kind is ActionKind.STEP:
            raise StorageError("the database failed: injected")

    wired = Tripwire(storage.scheduled, before={"schedule": fail})
    alone = _EnrollmentsAlone(storage.enrollments)
    flow, clock, _ = sql_flow(
        dataclasses.replace(storage, scheduled=wired, enrollments=alone), rules=True
    )
    result = flow.handle(entry(clock))
    assert [type(e) for e in result.errors] == [StorageError]
    assert steps(storage) == {}
    wired.before.clear()
    again = flow.handle(entry(clock))
    assert [o.what for o in again.sequences] == ["already_enrolled"]
    [enrollment] = flow.sequences.enrollments("o1")
    assert enrollment.visit == 1
    assert steps(storage) == {f"seq:{enrollment.enrollment_id}:1": ("first", "pending")}
    flow.run_due()
    assert sent(flow) == ["first"]


def test_an_entry_whose_write_fails_is_entered_by_the_event_handled_again(
    storage: SqlStorage,
) -> None:
    """The enrollment and its first visit are one write (``enroll_at_first``): when it fails
    step by step too, neither is stored and the error is reported; the event handed in again
    enrolls once and stores the visit once."""

    def fail(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        raise StorageError("the database failed: injected")

    wired = Tripwire(storage.enrollments, before={"enroll_at_first": fail})
    flow, clock, _ = sql_flow(dataclasses.replace(storage, enrollments=wired), rules=True)
    result = flow.handle(entry(clock))
    assert [type(e) for e in result.errors] == [StorageError]
    assert steps(storage) == {} and storage.enrollments.list(limit=10) == []
    wired.before.clear()
    again = flow.handle(entry(clock))
    assert [o.what for o in again.sequences] == ["enrolled"]
    [enrollment] = flow.sequences.enrollments("o1")
    assert enrollment.visit == 1
    assert steps(storage) == {f"seq:{enrollment.enrollment_id}:1": ("first", "pending")}
    flow.run_due()
    assert sent(flow) == ["first"]


def _batches(clock: ManualClock) -> list[list[dict[str, Any]]]:
    """Entries, goals and matching events, some for the same opportunity in one chunk."""
    return [
        [entry(clock, "o1"), entry(clock, "o2"), won(clock, "o2"), entry(clock, "o3"),
         entry(clock, "o4"), entry(clock, "o1")],
        [reply(clock, "o1"), won(clock, "o3"), entry(clock, "o5"), reply(clock, "o4"),
         won(clock, "o4"), reply(clock, "o5"), entry(clock, "o6"), won(clock, "o6")],
    ]  # fmt: skip


def _outcomes(results: list[Any]) -> list[list[tuple[str, str]]]:
    out = []
    for result in results:
        assert isinstance(result, HandleResult), result
        assert not result.all_errors(), result.all_errors()
        out.append([(o.what, o.enrollment_id) for o in result.sequences])
    return out


def _state(flow: LeadFlow, storage: SqlStorage) -> tuple[Any, ...]:
    enrollments = sorted(
        (e.enrollment_id, e.opportunity_id, e.state.value, e.visit, e.step_id, e.goal, e.sending,
         e.revision)
        for e in storage.enrollments.list(limit=100)
    )  # fmt: skip
    messenger = flow.integrations.messenger
    assert isinstance(messenger, RecordingMessenger)
    messages = sorted((m.key, m.to, m.template) for m in messenger.sent)
    return enrollments, sorted(steps(storage).items()), messages


def test_handle_many_with_entries_goals_and_waits_in_one_chunk_is_one_by_one(
    kind: str, tmp_path: Path
) -> None:
    with fresh_storage(kind, tmp_path) as batched, fresh_storage(kind, tmp_path) as single:
        flows = []
        for storage in (batched, single):
            flow, clock, _ = sql_flow(storage)
            flow.engine()
            assert flow.sequencer is not None
            flow.sequencer.programs.refresh()
            flows.append((flow, clock, storage))
        (bflow, bclock, bstore), (sflow, sclock, sstore) = flows
        for n, (bdocs, sdocs) in enumerate(zip(_batches(bclock), _batches(sclock), strict=True)):
            with counted(bstore.database.engine) as counts:
                together = bflow.handle_many(bdocs)
                assert counts.commits == 1
            apart = [sflow.handle(doc) for doc in sdocs]
            assert _outcomes(together) == _outcomes(apart)
            if n == 0:
                assert [what for what, _ in _outcomes(together)[2]] == ["goal_reached"]
            for flow, clock in ((bflow, bclock), (sflow, sclock)):
                flow.run_due()  # the first e-mails: the enrollments wait for a reply
                clock.advance(timedelta(minutes=1))
            assert _state(bflow, bstore) == _state(sflow, sstore)
        matched = [what for what, _ in _outcomes(together)[0]]
        assert matched == ["matched"]  # o1's reply moved its wait on
        for flow, clock in ((bflow, bclock), (sflow, sclock)):
            clock.advance(timedelta(days=2))
            flow.run_due()
            flow.run_due()
        assert _state(bflow, bstore) == _state(sflow, sstore)
        final = {e.opportunity_id: e.state for e in bstore.enrollments.list(limit=100)}
        assert final == {
            "o1": EnrollmentState.COMPLETED, "o2": EnrollmentState.GOAL_REACHED,
            "o3": EnrollmentState.GOAL_REACHED, "o4": EnrollmentState.GOAL_REACHED,
            "o5": EnrollmentState.COMPLETED, "o6": EnrollmentState.GOAL_REACHED,
        }  # fmt: skip
        # o2 and o6 reached their goal before their first e-mail; o4 after its reply, before
        # the thanks; o3 while waiting for a reply.
        assert sorted(sent(bflow)) == sorted(["first"] * 4 + ["thanks", "second"]), sent(bflow)
        assert live_steps(bstore) == []


# --------------------------------------------------------------------------- thread races


def _race(*jobs: Any) -> None:
    """Run ``jobs`` in threads released together; re-raise what any of them raised."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job: Any) -> None:
        try:
            barrier.wait()
            job()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def _after(seconds: float, job: Any) -> Any:
    def late() -> None:
        time.sleep(seconds)
        job()

    return late


@pytest.mark.parametrize("late", HEAD_STARTS)
def test_a_goal_racing_a_send_from_threads(kind: str, tmp_path: Path, late: float) -> None:
    with fresh_storage(kind, tmp_path) as storage:
        flow, clock, logged = sql_flow(storage, delay=0.001)
        flow.handle(entry(clock))
        _race(flow.run_due, _after(late, lambda: flow.handle(won(clock))))
        check_goal_order(flow, logged.log)
        clock.advance(timedelta(days=3))  # whatever happened, nothing more is ever sent
        flow.run_due()
        flow.run_due()
        assert sent(flow) in ([], ["first"])
        check_goal_order(flow, logged.log)
        assert live_steps(storage) == []
        parked = storage.scheduled.list(ScheduledActionState.PARKED, limit=10)
        assert parked == []


@pytest.mark.parametrize("late", HEAD_STARTS)
def test_a_timeout_racing_a_reply_goes_one_way(kind: str, tmp_path: Path, late: float) -> None:
    with fresh_storage(kind, tmp_path) as storage:
        flow, clock, logged = sql_flow(storage, delay=0.001)
        flow.handle(entry(clock))
        flow.run_due()  # the first e-mail
        clock.advance(timedelta(hours=24))
        _race(flow.run_due, _after(late, lambda: flow.handle(reply(clock))))
        for _ in range(3):
            clock.advance(timedelta(minutes=1))
            flow.run_due()
        assert sent(flow) in (["first", "thanks"], ["first", "second"]), sent(flow)
        [enrollment] = flow.sequences.enrollments("o1")
        assert enrollment.state is EnrollmentState.COMPLETED
        # One visit went one way: the reply's visit 3 is the one stored, and the record
        # moved to it once (one write per revision).
        revisions = [e.revision for e in logged.log]
        assert revisions == sorted(set(revisions)), revisions
        third = [step for key, (step, _) in steps(storage).items() if key.endswith(":3")]
        assert third in (["thanks"], ["second"]) and sent(flow)[1] == third[0]
        assert live_steps(storage) == []


# --------------------------------------------------------------------------- a begun send


@pytest.fixture(
    params=[*KINDS, pytest.param("memory", id="memory")],
)
def any_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        from leadflow.stores.memory import memory_storage

        yield memory_storage()
        return
    with fresh_storage(request.param, tmp_path) as found:
        yield found


def test_a_send_begun_before_the_goal_completes_after_its_worker_died(any_storage: Any) -> None:
    """The worker marks the send begun, then dies before the message goes out; the goal is
    stored after the send began. The rerun (its lease expired) finds the enrollment ended by
    the goal, with the send begun at this very visit: the send completes, once, and nothing
    follows. (Before the fix the rerun skipped it: a begun send lost to a crash.)"""
    flow, clock, logged = sql_flow(any_storage)
    flow.handle(entry(clock))
    messenger = flow.integrations.messenger
    assert isinstance(messenger, RecordingMessenger)
    original = messenger.send

    def die(message: Any) -> None:
        raise Crash

    messenger.send = die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        flow.run_due()
    messenger.send = original  # type: ignore[method-assign]
    [enrollment] = flow.sequences.enrollments("o1")
    assert enrollment.sending and enrollment.active
    assert [o.what for o in flow.handle(won(clock)).sequences] == ["goal_reached"]
    assert sent(flow) == []
    clock.advance(timedelta(minutes=2))  # the dead worker's lease expires
    report = flow.run_due()
    assert [run.ok for run in report.runs] == [True]
    assert sent(flow) == ["first"]
    check_goal_order(flow, logged.log)
    clock.advance(timedelta(days=3))
    flow.run_due()
    assert sent(flow) == ["first"]
    [final] = flow.sequences.enrollments("o1")
    assert final.state is EnrollmentState.GOAL_REACHED and final.visit == 1


def test_a_send_begun_after_the_goal_never_happens_after_a_crash(any_storage: Any) -> None:
    """The other order: the goal is stored first; the worker that claimed the step dies
    before it could begin the send; the rerun sends nothing."""
    flow, clock, logged = sql_flow(any_storage)
    flow.handle(entry(clock))
    assert flow.sequencer is not None
    wire = Tripwire(flow.sequencer.enrollments, before={"get": lambda *_: _raise_crash()})
    real = flow.sequencer.enrollments
    flow.sequencer.enrollments = wire
    with pytest.raises(Crash):
        flow.run_due()  # claimed, died before reading the enrollment
    flow.sequencer.enrollments = real
    assert [o.what for o in flow.handle(won(clock)).sequences] == ["goal_reached"]
    clock.advance(timedelta(minutes=2))
    report = flow.run_due()
    [run] = report.runs
    assert run.ok and run.note is not None and run.note.startswith("skipped")
    assert sent(flow) == []
    check_goal_order(flow, logged.log)


def _raise_crash() -> None:
    raise Crash


def test_a_visit_claimed_before_the_record_moved_to_it_still_runs(any_storage: Any) -> None:
    """Moving on stores the next visit first, then moves the record to it. A second worker
    that claims the new visit in between (it is due at once: a wait's timeout leads to an
    action) finds the record one visit behind: the visit is not to be skipped (the record is
    about to reach it), it runs once the record is there. (Before the fix it was skipped as
    "moved on" and marked done; the record then moved to a visit that never ran, and the
    enrollment stayed active for ever.)"""
    flow, clock, _ = sql_flow(any_storage)
    other, _, _ = sql_flow(any_storage, clock=clock)
    flow.handle(entry(clock))
    flow.run_due()  # the first e-mail; the enrollment waits for a reply (timeout: a day)
    assert flow.sequencer is not None
    wire = Tripwire(flow.sequencer.enrollments)
    crossed: list[Any] = []

    def second_worker_first(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if args[0].visit == 3 and not crossed:
            crossed.append(other.run_due())  # the new visit, stored and due, not reached yet

    wire.before["update"] = second_worker_first
    flow.sequencer.enrollments = wire
    clock.advance(timedelta(hours=24, minutes=1))
    flow.run_due()  # the timeout: stores visit 3 ("second"), then moves the record to it
    assert crossed and crossed[0].claimed == 1
    for _ in range(3):
        clock.advance(timedelta(minutes=5))  # past any retry of the early claim
        flow.run_due()
        other.run_due()
    assert sorted(sent(flow) + sent(other)) == ["first", "second"]
    [enrollment] = flow.sequences.enrollments("o1")
    assert enrollment.state is EnrollmentState.COMPLETED
    assert all(a.state is ScheduledActionState.DONE for a in any_storage.scheduled.list(limit=50))
