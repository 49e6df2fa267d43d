"""The visits one ``run_due`` call claims run as a batch (issue 18's cost target): the "send
begun" marks of its action steps are committed together before the first handler runs, the
batch's moves on (next visits, enrollments) together after the last handler, all before the
batch is acknowledged; a unit that fails is written again one visit at a time, so a visit that
cannot be written fails alone; a move whose compare-and-set fails in the batch is read again and
decided as a single move is. In memory, on MongoDB (mongomock-ng), on a SQLite file and on
PostgreSQL (when ``LEADFLOW_TEST_POSTGRES_URL`` is set). And the entry's share of the cost: a
new enrollment is written once, at its first stop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")

from leadflow import LeadFlow, ManualClock, ScheduledActionState
from leadflow.adapters import RecordingMessenger
from leadflow.errors import StorageError
from leadflow.ports import EnrollmentStore, Message
from leadflow.ports.sequences import EnrollmentBatches, EnrollmentSendMarks
from leadflow.records import ActionKind
from leadflow.runtime.context import ActionContext
from leadflow.runtime.executor import BATCH_SIZE
from leadflow.sequences import EnrollmentState
from leadflow.stores.memory import memory_storage
from leadflow.stores.sql import SqlStorage

from .latency import Crash, Tripwire
from .sequence_support import opportunities
from .sql_support import fresh_storage, on_postgres
from .test_sequences_sql import entry, sent, sql_flow, won
from .test_sql_units import counted

OPPORTUNITIES = [f"o{n}" for n in range(1, 7)]


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("mongomock", id="mongomock"),
        pytest.param("sqlite-file", id="sqlite-file"),
        pytest.param("postgres", id="postgres", marks=on_postgres),
    ]
)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield memory_storage()
        return
    if request.param == "mongomock":
        import mongomock_ng

        from leadflow.stores.mongo import mongo_storage

        from .mongo_support import RecordingDatabase

        yield mongo_storage(RecordingDatabase(mongomock_ng.MongoClient()["leadflow"]))  # type: ignore[arg-type]
        return
    with fresh_storage(str(request.param), tmp_path) as found:
        yield found


def _entered(storage: Any) -> tuple[LeadFlow, RecordingMessenger]:
    """Six opportunities entered in the race sequence: six "first" e-mails due at once."""
    flow, clock, _ = sql_flow(storage)
    for opp in OPPORTUNITIES:
        flow.handle(entry(clock, opp))
    messenger = flow.integrations.messenger
    assert isinstance(messenger, RecordingMessenger)
    return flow, messenger


def _later(flow: LeadFlow) -> None:
    """Past the retry backoff."""
    assert isinstance(flow.clock, ManualClock)
    flow.clock.advance(timedelta(minutes=30))


def _where(flow: LeadFlow, opp: str) -> tuple[int, str | None, bool, EnrollmentState]:
    [enrollment] = flow.sequences.enrollments(opp)
    return enrollment.visit, enrollment.step_id, enrollment.sending, enrollment.state


def test_every_send_of_a_batch_begins_before_its_first_handler_runs(storage: Any) -> None:
    flow, messenger = _entered(storage)
    seen: list[list[bool]] = []
    original = messenger.send

    def send(message: Message) -> None:
        if not seen:  # the first handler of the batch: every mark is already stored
            seen.append([_where(flow, opp)[2] for opp in OPPORTUNITIES])
        original(message)

    messenger.send = send  # type: ignore[method-assign]
    report = flow.run_due()
    assert (report.claimed, report.succeeded) == (6, 6)
    assert seen == [[True] * 6]
    assert sorted(m.to for m in messenger.sent) == [f"{o}@example.com" for o in OPPORTUNITIES]
    for opp in OPPORTUNITIES:  # moved on to the wait for a reply, the send mark cleared
        assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)
    assert flow.run_due().claimed == 0


def test_a_batch_of_steps_shares_its_commits(storage: Any) -> None:
    if not isinstance(storage, SqlStorage):
        pytest.skip("commits are counted on SQL")
    flow, messenger = _entered(storage)
    with counted(storage.database.engine) as counts:
        report = flow.run_due()
    assert (report.claimed, report.succeeded) == (6, 6) and len(messenger.sent) == 6
    # The claim, the six marks together, the six moves on with the acknowledgement: three
    # commits (the moves in a unit of their own before the acknowledgement, four; one step
    # at a time made two per step of its own, fourteen in all; a move per step after its
    # handler, nine).
    assert counts.commits <= 3, counts.commits


def _acknowledging(storage: Any, hook: Any) -> tuple[LeadFlow, RecordingMessenger]:
    """:func:`_entered` on ``storage`` whose scheduled-action store runs ``hook`` before
    every acknowledgement."""
    if not isinstance(storage, SqlStorage):
        pytest.skip("a batch's moves share its acknowledgement's unit of work on SQL")
    scheduled = Tripwire(storage.scheduled, before={"mark_done_many": hook})
    return _entered(dataclasses.replace(storage, scheduled=scheduled))


def test_a_failed_acknowledgement_takes_the_moves_back_and_they_are_written_alone(
    storage: Any,
) -> None:
    """The acknowledgement fails once inside the unit it shares with the batch's moves: the
    unit rolls back (the moves too), the moves are written again one visit at a time, then
    the batch is acknowledged. Every step moved on once, its next visit stored once."""
    failures = [StorageError("connection reset")]

    def fail_once(*_: Any) -> None:
        if failures:
            raise failures.pop()

    flow, messenger = _acknowledging(storage, fail_once)
    report = flow.run_due()
    assert not failures and (report.claimed, report.succeeded) == (6, 6)
    assert all(run.state is ScheduledActionState.DONE for run in report.runs)
    for opp in OPPORTUNITIES:
        assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)
    [enrollment] = flow.sequences.enrollments("o1")
    # One record of the move (the rolled-back unit's is not there).
    assert [(h.visit, h.step_id) for h in enrollment.history] == [(1, "first"), (2, "reply")]
    pending = [a for a in flow.storage.scheduled.list(limit=100) if a.step_id == "reply"]
    assert sorted(a.opportunity_id or "" for a in pending) == OPPORTUNITIES
    assert flow.run_due().claimed == 0 and len(messenger.sent) == 6


def test_a_crash_at_the_acknowledgement_leaves_no_move_and_the_batch_runs_again(
    storage: Any,
) -> None:
    """The process dies as the batch is acknowledged: its moves were in the same unit, so
    none is stored, and no step is acknowledged without its move. Once the leases expire the
    six steps run again: sent again under their keys (once in effect), moved on once."""
    dying = [True]

    def die(*_: Any) -> None:
        if dying:
            raise Crash

    flow, messenger = _acknowledging(storage, die)
    with pytest.raises(Crash):
        flow.run_due()
    for opp in OPPORTUNITIES:  # sent, not moved on: the send marks alone were committed
        assert _where(flow, opp) == (1, "first", True, EnrollmentState.ACTIVE)
    assert not [a for a in flow.storage.scheduled.list(limit=100) if a.step_id == "reply"]
    dying.clear()
    assert isinstance(flow.clock, ManualClock)
    flow.clock.advance(flow.settings.action_lease * 2)
    report = flow.run_due()
    assert (report.claimed, report.succeeded) == (6, 6)
    for opp in OPPORTUNITIES:
        assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)
    keys = [m.key for m in messenger.sent]
    assert len(keys) == 12 and len(set(keys)) == 6
    pending = [a for a in flow.storage.scheduled.list(limit=100) if a.step_id == "reply"]
    assert sorted(a.opportunity_id or "" for a in pending) == OPPORTUNITIES


def test_the_moves_are_written_early_once_half_the_lease_has_passed(storage: Any) -> None:
    """As plain actions' acknowledgements: the batch's moves wait for its last handler, unless
    half the lease (a minute here) has passed: then those of the handlers run so far are
    written at once, and each later one right after its handler. The third handler takes 40
    seconds: the first three steps have moved on when the fourth runs, the fourth when the
    fifth runs, and so on."""
    flow, messenger = _entered(storage)
    assert isinstance(flow.clock, ManualClock)
    clock = flow.clock
    order: list[str] = []
    seen: list[list[int]] = []
    original = messenger.send

    def send(message: Message) -> None:
        opp = message.to.split("@")[0]
        order.append(opp)
        seen.append([_where(flow, o)[0] for o in order])
        original(message)
        if len(order) == 3:
            clock.advance(timedelta(seconds=40))

    messenger.send = send  # type: ignore[method-assign]
    report = flow.run_due()
    assert (report.claimed, report.succeeded) == (6, 6)
    assert seen[2] == [1, 1, 1]  # nothing written while the lease was young
    assert seen[3] == [2, 2, 2, 1] and seen[5] == [2, 2, 2, 2, 2, 1]
    for opp in OPPORTUNITIES:
        assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)


def test_a_failing_handler_fails_its_visit_alone(storage: Any) -> None:
    flow, messenger = _entered(storage)
    original = messenger.send
    failing = {"o3@example.com"}

    def send(message: Message) -> None:
        if message.to in failing:
            raise ConnectionError("provider down")
        original(message)

    messenger.send = send  # type: ignore[method-assign]
    report = flow.run_due()
    assert (report.succeeded, report.failed) == (5, 1)
    [failed] = [run for run in report.runs if not run.ok]
    assert failed.state is ScheduledActionState.PENDING and "provider down" in str(failed.note)
    assert _where(flow, "o3") == (1, "first", True, EnrollmentState.ACTIVE)  # its send began
    for opp in OPPORTUNITIES:
        if opp != "o3":
            assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)
    failing.clear()
    _later(flow)
    again = flow.run_due()
    assert (again.claimed, again.succeeded) == (1, 1)
    assert _where(flow, "o3") == (2, "reply", False, EnrollmentState.ACTIVE)
    assert sorted(sent(flow)) == ["first"] * 6
    assert len({m.key for m in messenger.sent}) == 6


def test_a_move_that_cannot_be_written_fails_alone(storage: Any) -> None:
    """The store refuses o3's move on (a storage error): on SQL the batch's unit rolls back and
    its moves are written one at a time; o3's attempt fails (its send began, so the retry
    sends again under the same key and moves on), the five others moved on once."""
    flow, messenger = _entered(storage)
    assert flow.sequencer is not None
    broken = {"o3"}

    def refuse(name: str, args: tuple[Any, ...], __: dict[str, Any]) -> None:
        # the moves together (move_many, or move_to_visits with their visits), or one at a
        # time (update)
        [given] = args
        for enrollment in [move[0] for move in given] if name != "update" else [given]:
            if enrollment.opportunity_id in broken and enrollment.visit == 2:
                raise StorageError("disk full")

    real = flow.sequencer.enrollments
    flow.sequencer.enrollments = Tripwire(
        real, before={"update": refuse, "move_many": refuse, "move_to_visits": refuse}
    )
    report = flow.run_due()
    assert (report.succeeded, report.failed) == (5, 1)
    assert _where(flow, "o3") == (1, "first", True, EnrollmentState.ACTIVE)
    for opp in OPPORTUNITIES:
        if opp != "o3":
            assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)
    broken.clear()
    _later(flow)
    again = flow.run_due()
    assert (again.claimed, again.succeeded) == (1, 1)
    assert _where(flow, "o3") == (2, "reply", False, EnrollmentState.ACTIVE)
    # o3's e-mail went out twice under one key (exactly once in effect); one each otherwise.
    keys = [m.key for m in messenger.sent]
    assert len(keys) == 7 and len(set(keys)) == 6
    # Each enrollment's next visit stored once: the rolled-back unit left nothing behind.
    pending = [a for a in flow.storage.scheduled.list(limit=100) if a.step_id == "reply"]
    assert sorted(a.opportunity_id or "" for a in pending) == OPPORTUNITIES
    assert all(a.state is ScheduledActionState.PENDING for a in pending)


def _moves(wired: Tripwire) -> int:
    """The store calls that moved the batch on: ``move_to_visits`` (the visits with them)
    where the store has it (SQL), else ``move_many``, never both."""
    calls = (wired.calls.get("move_many", 0), wired.calls.get("move_to_visits", 0))
    assert 0 in calls, calls
    return sum(calls)


def test_a_batch_is_read_and_marked_in_one_call_each_and_a_goal_in_between_wins(
    storage: Any,
) -> None:
    """The batch's enrollments are read together and its send marks written together (one
    store call each, the moves on one more); o3's goal is stored after that read, before the
    marks: o3's compare-and-set in the batch fails, o3 is read again and found ended, and its
    e-mail is not sent; the five others are."""
    flow, messenger = _entered(storage)
    assert flow.sequencer is not None and isinstance(flow.clock, ManualClock)
    clock = flow.clock

    def goal(_: str, args: tuple[Any, ...], __: dict[str, Any]) -> None:
        if not flow.storage.enrollments.list(state=EnrollmentState.GOAL_REACHED):  # type: ignore[union-attr]
            flow.handle(won(clock, "o3"))

    wired = Tripwire(flow.sequencer.enrollments, after={"get_heads": goal})
    flow.sequencer.enrollments = wired
    report = flow.run_due()
    assert (report.claimed, report.succeeded) == (6, 6)
    # One read; one write of the marks (the flag alone), one of the five moves on.
    assert (wired.calls["get_heads"], wired.calls["mark_sending"]) == (1, 1)
    assert _moves(wired) == 1
    assert wired.calls["get"] == 1  # o3 read again alone, after its mark failed
    [o3] = [run for run in report.runs if run.idempotency_key.startswith("seq:") and
            "ended before the send began" in str(run.note)]  # fmt: skip
    assert o3.ok
    assert sorted(m.to for m in messenger.sent) == [
        f"{o}@example.com" for o in OPPORTUNITIES if o != "o3"
    ]
    [ended] = flow.storage.enrollments.list(opportunity_id="o3")  # type: ignore[union-attr]
    assert ended.state is EnrollmentState.GOAL_REACHED and not ended.sending
    assert sent(flow, "o3") == []
    for opp in OPPORTUNITIES:
        if opp != "o3":
            assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)


def test_a_move_whose_compare_and_set_fails_in_the_batch_is_read_again_and_decided(
    storage: Any,
) -> None:
    """While the batch's handlers run, o2's enrollment is written (its revision moves on, it
    stays at its visit) and o3 reaches its goal (its send had begun). The batch's moves are one
    ``move_many``; o2's and o3's compare-and-sets fail there, each is read again: o2 still
    stands at the visit and moves on, o3 ended and does not; the four others moved in the
    batch's write (``move_to_visits`` where the store has it). o3's e-mail went out (its send
    began before the goal), nothing after."""
    flow, messenger = _entered(storage)
    assert flow.sequencer is not None and isinstance(flow.clock, ManualClock)
    clock = flow.clock
    wired = Tripwire(flow.sequencer.enrollments)
    flow.sequencer.enrollments = wired
    original = messenger.send

    def send(message: Message) -> None:
        original(message)
        opp = message.to.split("@")[0]
        if opp == "o2":  # another writer touches o2, leaving it where it is
            [o2] = flow.sequences.enrollments("o2")
            flow.storage.enrollments.update(o2._evolve(updated_at=clock.now()))
        elif opp == "o3":
            assert [o.what for o in flow.handle(won(clock, "o3")).sequences] == ["goal_reached"]

    messenger.send = send  # type: ignore[method-assign]
    report = flow.run_due()
    assert (report.claimed, report.succeeded) == (6, 6)
    # One read and one write for the marks, one write for the moves; o2 and o3 read again.
    assert (wired.calls["get_heads"], wired.calls["mark_sending"]) == (1, 1)
    assert _moves(wired) == 1
    assert wired.calls["get"] == 2  # o2 and o3
    assert wired.calls["update"] == 2  # o3's goal, o2 moved alone
    for opp in OPPORTUNITIES:
        if opp != "o3":
            assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)
    [o3] = flow.sequences.enrollments("o3")
    assert (o3.state, o3.visit, o3.sending) == (EnrollmentState.GOAL_REACHED, 1, True)
    assert [h.kind for h in o3.history][-1] == "end"
    assert sorted(sent(flow)) == ["first"] * 6
    clock.advance(timedelta(days=30))  # o3's next visit, stored before its move failed
    flow.run_due()
    assert sent(flow, "o3") == ["first"] and _where(flow, "o3")[3] is EnrollmentState.GOAL_REACHED


class _PortOnly:
    """An enrollment store with the port's methods only (no batch methods), counting calls."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: dict[str, int] = {}

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.calls[name] = self.calls.get(name, 0) + 1
        return getattr(self._inner, name)(*args, **kwargs)

    def enroll(self, enrollment: Any) -> Any:
        return self._call("enroll", enrollment)

    def get(self, enrollment_id: str) -> Any:
        return self._call("get", enrollment_id)

    def update(self, enrollment: Any) -> Any:
        return self._call("update", enrollment)

    def active_for(self, opportunity_id: str) -> Any:
        return self._call("active_for", opportunity_id)

    def list(self, **filters: Any) -> Any:
        return self._call("list", **filters)


def test_a_store_without_the_batch_methods_is_used_one_enrollment_at_a_time(
    storage: Any,
) -> None:
    flow, messenger = _entered(storage)
    assert flow.sequencer is not None
    port_only = _PortOnly(flow.sequencer.enrollments)
    assert isinstance(port_only, EnrollmentStore)
    assert not isinstance(port_only, EnrollmentBatches)
    flow.sequencer.enrollments = port_only  # type: ignore[assignment]
    report = flow.run_due()
    assert (report.claimed, report.succeeded) == (6, 6)
    assert sorted(m.to for m in messenger.sent) == [f"{o}@example.com" for o in OPPORTUNITIES]
    assert port_only.calls == {"get": 6, "update": 12}  # a read, a mark and a move each
    for opp in OPPORTUNITIES:
        assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)


class _BatchesOnly(_PortOnly):
    """The port's methods and the batch methods, no narrow send mark."""

    def get_many(self, enrollment_ids: Sequence[str]) -> Any:
        return self._call("get_many", enrollment_ids)

    def update_many(self, enrollments: Sequence[Any]) -> Any:
        return self._call("update_many", enrollments)


def test_a_store_without_the_narrow_mark_marks_with_update_many(storage: Any) -> None:
    flow, messenger = _entered(storage)
    assert flow.sequencer is not None
    batches = _BatchesOnly(flow.sequencer.enrollments)
    assert isinstance(batches, EnrollmentBatches)
    assert not isinstance(batches, EnrollmentSendMarks)
    assert isinstance(flow.sequencer.enrollments, EnrollmentSendMarks)
    flow.sequencer.enrollments = batches  # type: ignore[assignment]
    report = flow.run_due()
    assert (report.claimed, report.succeeded) == (6, 6)
    assert sorted(m.to for m in messenger.sent) == [f"{o}@example.com" for o in OPPORTUNITIES]
    assert batches.calls == {"get_many": 1, "update_many": 2}  # the read, the marks, the moves
    for opp in OPPORTUNITIES:
        assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)


# --------------------------------------------------------------------------- entering


def test_an_entry_is_stored_at_its_first_stop_and_a_lost_first_visit_is_stored_again() -> None:
    """A new enrollment is written once, already at its first stop, then that visit's action
    is stored. The process dies between the two (in memory, where they are no unit of work):
    handling the entry event again stores the visit, which then runs once."""
    storage = memory_storage()
    dying: list[bool] = [True]

    def die_once(_: str, args: tuple[Any, ...], __: dict[str, Any]) -> None:
        if args[0].kind is ActionKind.STEP and dying:
            dying.clear()
            raise Crash

    wired = dataclasses.replace(storage, scheduled=Tripwire(storage.scheduled,
                                before={"schedule": die_once}))  # fmt: skip
    flow, clock, logged = sql_flow(wired)
    with pytest.raises(Crash):
        flow.handle(entry(clock))
    [enrollment] = flow.sequences.enrollments("o1")
    assert (enrollment.visit, enrollment.step_id, enrollment.revision) == (1, "first", 1)
    assert [h.outcome for h in enrollment.history] == ["scheduled"]
    assert logged.log == []  # written once, by the entry: no update
    assert flow.run_due().claimed == 0  # its first visit was never stored
    again = flow.handle(entry(clock))
    assert [o.what for o in again.sequences] == ["already_enrolled"]
    assert flow.run_due().succeeded == 1
    assert sent(flow) == ["first"]
    flow.handle(entry(clock))  # the visit is there (done): handled again, nothing new
    assert flow.run_due().claimed == 0 and sent(flow) == ["first"]
    assert _where(flow, "o1") == (2, "reply", False, EnrollmentState.ACTIVE)


def test_a_claimed_batch_reaches_the_runner_at_most_batch_size_at_a_time() -> None:
    flow, clock, _ = sql_flow(memory_storage())
    count = BATCH_SIZE + 10
    for n in range(count):
        opportunities(flow).add(f"m{n}", owner="alice", email=f"m{n}@example.com")
        flow.handle(entry(clock, f"m{n}"))
    assert flow.sequencer is not None
    sizes: list[int] = []
    run_steps = flow.sequencer.run_steps

    def spy(contexts: Sequence[ActionContext[Any]]) -> list[str | Exception | None]:
        sizes.append(len(contexts))
        return run_steps(contexts)

    flow.executor.register_kind(ActionKind.STEP, flow.sequencer.run_step, batch=spy)
    report = flow.run_due(limit=count)
    assert (report.claimed, report.succeeded) == (count, count)
    assert sizes == [BATCH_SIZE, 10]
    assert len(sent(flow)) == count


def test_marks_of_a_failed_unit_are_written_again_before_their_sends(storage: Any) -> None:
    """The unit of the batch's send marks fails at its fourth mark (a storage error, before
    the store wrote any: in memory too): it rolls back on SQL, and each send is marked again
    on its own; no handler runs before its own
    mark is stored (one the rolled-back unit wrote does not count)."""
    flow, messenger = _entered(storage)
    assert flow.sequencer is not None
    marks: list[str] = []

    def fail_fourth(name: str, args: tuple[Any, ...], __: dict[str, Any]) -> None:
        # The marks together (mark_sending, one call), or one at a time (update).
        [given] = args
        if name == "mark_sending":
            found = [enrollment_id for enrollment_id, _ in given]
        else:
            found = [e.enrollment_id for e in [given] if e.sending and e.visit == 1]
        for enrollment_id in found:
            marks.append(enrollment_id)
            if len(marks) == 4:
                raise StorageError("the database failed: injected")

    flow.sequencer.enrollments = Tripwire(
        flow.sequencer.enrollments, before={"update": fail_fourth, "mark_sending": fail_fourth}
    )
    unmarked: list[str] = []
    original = messenger.send

    def send(message: Message) -> None:
        opp = message.to.split("@")[0]
        if not _where(flow, opp)[2]:
            unmarked.append(opp)
        original(message)

    messenger.send = send  # type: ignore[method-assign]
    report = flow.run_due()
    assert (report.claimed, report.succeeded) == (6, 6)
    assert len(marks) == 4 + 6  # four together, then each again on its own
    assert unmarked == []
    for opp in OPPORTUNITIES:
        assert _where(flow, opp) == (2, "reply", False, EnrollmentState.ACTIVE)
