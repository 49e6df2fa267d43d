"""What sequences cost on the runtime, against plain rule actions measured in the same run,
interleaved (issue 18's targets: entering a sequence and storing its first step costs at most
twice a plain rule action in ``handle``; ``run_due`` on sequence steps within 20% of plain
actions).

``handle``: events as a host holds them (plain mappings, validated in the timed region), one
per new opportunity, on in-memory stores. Plain: one rule plans a ``send_email`` an hour later.
Sequence: its entry matches, the opportunity is enrolled and its first visit (a one-hour wait)
stored. The floor: the rule engine alone on the same events.

``run_due``: N due ``send_email`` actions run and acknowledged. Plain: a rule's delayed
actions. Sequence: N enrollments at an ``action`` step (each run also moves the enrollment on:
the next visit stored, the enrollment updated by compare-and-set).

The floor under a step (``run_due``, same run, interleaved): the scheduled store alone, no
runtime and no handler, batches of 500 claimed and acknowledged in one unit of work, then the
same with one next visit per action stored in the acknowledgement's unit (the least a step
adds while each visit is a stored action of its own); a plain action plus that visit's cost,
over a plain action, is the lowest ratio such a step can reach. On SQL, the floor of another
design too (not leadflow's): the claimed row re-armed as the next visit by one ``UPDATE`` a
batch in place of its acknowledgement. And the floor the issue's design allows a step (every
visit a stored action of its own, the enrollment's state behind its own port): the stores
alone doing what ``Moves.advance_many`` and the send marks ask of them (:func:`design_drain`:
the send marks committed, then with the acknowledgement each next visit stored and each
enrollment moved with its step records), with the heads read before (untimed) or in the run.
The visits and moves of the floors are built and handed over as the runtime does (changed
from validated parts without validating them again, not checked again by the store).

Each timed run starts after a full collection of what its set-up allocated (untimed).
What was done is checked after each timed run (counts of stored actions, enrollments and
messages). Run: python benchmarks/bench_sequences.py [--quick]
[--backend memory|memory-fast|sqlite|postgres] [--clock wall|cpu] [--n N] [--reps R]
[--only run_due] [--history H]; ``memory`` is the reference in-memory stores
(``LeadFlow.in_memory``'s default), ``memory-fast``
:func:`~leadflow.stores.memory.fast.fast_memory_storage`; ``postgres`` needs
``LEADFLOW_TEST_POSTGRES_URL`` (each flow in a schema of its own, dropped at the end);
``--history H`` gives each enrollment H step records before its step runs (as a long-running
enrollment has). On SQL, one more drain of each kind, untimed, counts the statements and commits a
drained action makes, and 190 more events handled of each kind those an event makes
(SQLAlchemy's cursor and commit events; ``BEGIN`` left out, a write in autocommit counted as a
commit).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from leadflow import FollowUpRule, LeadFlow, ManualClock
from leadflow.adapters import InMemoryOpportunities, RecordingMessenger
from leadflow.ports import BatchAcknowledgement, BatchScheduling, Storage
from leadflow.ports.sequences import EnrollmentSendMarks, EnrollmentSteps
from leadflow.records import ActionKind, ScheduledAction, ScheduledActionState
from leadflow.runtime.executor import BATCH_SIZE
from leadflow.runtime.sequence_parts import send_begun
from leadflow.sequences import EnrollmentHead, SequenceDefinition, StepRecord
from leadflow.stores.checks import handed_over

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)

RULE = FollowUpRule.model_validate(
    {
        "ruleId": "plain",
        "name": "plain",
        "trigger": {"eventType": "opportunity.created"},
        "actions": [{"actionType": "send_email", "template": "hello", "delay": 1}],
    }
)


def sequence(first_wait: bool) -> SequenceDefinition:
    steps: list[dict[str, Any]] = [
        {
            "id": "send",
            "kind": "action",
            "action": {"actionType": "send_email", "template": "hello"},
        },
        {"id": "later", "kind": "wait", "delay": 24},
    ]
    if first_wait:
        steps.insert(0, {"id": "hour", "kind": "wait", "delay": 1})
    return SequenceDefinition.model_validate(
        {"sequenceId": "seq", "name": "seq", "entry": {"eventType": "opportunity.created"},
         "steps": steps}
    )  # fmt: skip


def events(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "opportunity.created",
            "id": f"{tag}-{i}",
            "time": (T0 + timedelta(seconds=i)).isoformat(),
            "payload": {"opportunityId": f"{tag}-o{i}", "customerId": "c"},
        }
        for i in range(n)
    ]


OPENED: list[Any] = []
"""The SQL storages made by this run (closed at the end; on PostgreSQL their schemas dropped)."""


def storage_for(backend: str, directory: Path, name: str) -> Storage:
    if backend == "memory":
        from leadflow.stores.memory import memory_storage

        return memory_storage()
    if backend == "memory-fast":
        from leadflow.stores.memory.fast import fast_memory_storage

        return fast_memory_storage()
    from leadflow.stores.sql import sql_storage

    if backend == "postgres":
        url = os.environ.get("LEADFLOW_TEST_POSTGRES_URL")
        if not url:
            raise SystemExit("set LEADFLOW_TEST_POSTGRES_URL for --backend postgres")
        schema = f"bench_seq_{name}_{uuid.uuid4().hex[:12]}".lower()
        storage = sql_storage(url, schema=schema, create=True)
    else:
        storage = sql_storage(f"sqlite:///{directory / name}.db", create=True)
    OPENED.append(storage)
    return storage


def close_all() -> None:
    from sqlalchemy import text

    for storage in OPENED:
        database = storage.database
        schema = database.tables.schema
        if schema is not None:
            with database.engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        storage.close()
    OPENED.clear()


def build(
    backend: str, directory: Path, name: str, *, plain: bool, first_wait: bool, docs: list[Any]
) -> LeadFlow:
    clock = ManualClock(T0)
    flow = LeadFlow.in_memory(clock=clock, storage=storage_for(backend, directory, name))
    gateway = flow.integrations.opportunities
    assert isinstance(gateway, InMemoryOpportunities)
    for doc in docs:
        gateway.add(doc["payload"]["opportunityId"], owner="alice", email="lead@example.com")
    if plain:
        flow.rules.create(RULE)
    else:
        flow.sequences.publish(sequence(first_wait))
    return flow


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def timed(run: Callable[[], None]) -> float:
    # What the set-up allocated is collected first, untimed: otherwise a full collection of
    # the set-up's objects (the handle part's flows, the due actions just stored) lands in
    # whichever timed run crosses the collector's threshold, up to ~250 us a step at 500
    # steps (seen on PostgreSQL: 140 -> 400 us, moving between trees with the allocation
    # counts). The collections the timed run's own objects cause stay in its time.
    gc.collect()
    start = clock()
    run()
    return clock() - start


def _each(call: Callable[[Any], object], docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        call(doc)


def bench_handle(backend: str, n: int, reps: int, directory: Path) -> dict[str, float]:
    plain_t: list[float] = []
    seq_t: list[float] = []
    engine_t: list[float] = []
    for rep in range(reps):
        docs = events(n, f"h{rep}")
        plain = build(backend, directory, f"hp{rep}", plain=True, first_wait=True, docs=docs)
        seq = build(backend, directory, f"hs{rep}", plain=False, first_wait=True, docs=docs)
        engine = plain.engine()
        engine_t.append(timed(partial(_each, engine.evaluate, docs)) / n)
        plain_t.append(timed(partial(_each, plain.handle, docs)) / n)
        seq_t.append(timed(partial(_each, seq.handle, docs)) / n)
        assert len(plain.storage.scheduled.list(limit=n + 1)) == n
        stored = seq.storage.scheduled.list(limit=n + 1)
        assert len(stored) == n and all(a.kind is ActionKind.STEP for a in stored)
        assert seq.storage.enrollments is not None
        assert len(seq.storage.enrollments.list(limit=n + 1)) == n
    p, s, e = (statistics.median(x) * 1e6 for x in (plain_t, seq_t, engine_t))
    return {"plain_us": p, "sequence_us": s, "engine_us": e, "ratio": s / p}


class Counts:
    """Statements and commits on an engine while listened to (as tests/test_sql_units.py)."""

    def __init__(self) -> None:
        self.statements = 0
        self.commits = 0

    def statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        text = statement.lstrip().upper()
        if text.startswith("BEGIN"):
            return
        self.statements += 1
        raw = getattr(cursor, "connection", None)
        if getattr(raw, "autocommit", False) is True and not text.startswith("SELECT"):
            self.commits += 1

    def commit(self, conn: Any) -> None:
        self.commits += 1


def drained(flow: LeadFlow) -> Callable[[], None]:
    def run() -> None:
        while flow.run_due(limit=500).claimed:
            pass

    return run


HISTORY = 0
"""``--history``: step records each enrollment holds before its step runs (0: what entering
wrote, two)."""


def _with_history(flow: LeadFlow, n: int) -> None:
    """Give each of the flow's ``n`` enrollments ``HISTORY`` step records (as a long-running
    enrollment has: every write of the enrollment carries them), untimed."""
    store = flow.storage.enrollments
    assert store is not None
    for enrollment in store.list(limit=n):
        history = [
            StepRecord(visit=0, step_id=f"earlier-{i % 7}", kind="wait", at=T0, outcome="done",
                       why=f"after done: an earlier step of the sequence ({i})")
            for i in range(HISTORY)
        ]  # fmt: skip
        store.update(enrollment.model_copy(update={"history": history}))


def due_flows(
    backend: str, directory: Path, n: int, tag: str, *, both_plain: bool = False
) -> tuple[LeadFlow, LeadFlow]:
    """Two flows with ``n`` due actions each: a plain rule's, then a sequence's steps (or a
    second plain rule's, ``both_plain``)."""
    docs = events(n, tag)
    plain = build(backend, directory, f"{tag}p", plain=True, first_wait=False, docs=docs)
    seq = build(backend, directory, f"{tag}s", plain=both_plain, first_wait=False, docs=docs)
    for flow in (plain, seq):
        flow.handle_many(docs)
        assert isinstance(flow.clock, ManualClock)
        flow.clock.set(T0 + timedelta(hours=2))
    if HISTORY and not both_plain:
        _with_history(seq, n)
    return plain, seq


def count_run_due(backend: str, n: int, directory: Path) -> dict[str, float]:
    """Statements and commits per drained action (plain, sequence step), untimed."""
    from sqlalchemy import event

    found: dict[str, float] = {}
    for name, flow in zip(("plain", "step"), due_flows(backend, directory, n, "c"), strict=True):
        engine = flow.storage.database.engine  # type: ignore[attr-defined]
        counts = Counts()
        event.listen(engine, "before_cursor_execute", counts.statement)
        event.listen(engine, "commit", counts.commit)
        try:
            drained(flow)()
        finally:
            event.remove(engine, "before_cursor_execute", counts.statement)
            event.remove(engine, "commit", counts.commit)
        messenger = flow.integrations.messenger
        assert isinstance(messenger, RecordingMessenger) and len(messenger.sent) == n
        found[f"{name}_statements"] = counts.statements / n
        found[f"{name}_commits"] = counts.commits / n
    return found


def count_handle(backend: str, n: int, directory: Path) -> dict[str, float]:
    """Statements and commits per handled event (plain rule, sequence entry), untimed; the
    first 10 events of each flow left out (their statements' first runs)."""
    from sqlalchemy import event

    docs = events(n, "ch")
    found: dict[str, float] = {}
    for name, plain in (("plain", True), ("entry", False)):
        flow = build(backend, directory, f"ch{name}", plain=plain, first_wait=True, docs=docs)
        _each(flow.handle, docs[:10])
        engine = flow.storage.database.engine  # type: ignore[attr-defined]
        counts = Counts()
        event.listen(engine, "before_cursor_execute", counts.statement)
        event.listen(engine, "commit", counts.commit)
        try:
            _each(flow.handle, docs[10:])
        finally:
            event.remove(engine, "before_cursor_execute", counts.statement)
            event.remove(engine, "commit", counts.commit)
        assert len(flow.storage.scheduled.list(limit=n + 1)) == n
        found[f"{name}_statements"] = counts.statements / (n - 10)
        found[f"{name}_commits"] = counts.commits / (n - 10)
    return found


def next_visit(action: ScheduledAction, now: datetime) -> ScheduledAction:
    """What a step that moves on must store at least: another pending action (the next
    visit), here a copy of the claimed one under a new id and key, due a day later, changed
    from it without validation as the runtime changes a visit from its template (every value
    made here; the fifth session's figures validated each copy, and the store checked it again:
    about 20 us a visit the runtime does not spend)."""
    return action._evolve(
        action_id=uuid.uuid4().hex,
        idempotency_key=action.idempotency_key + "#next",
        due_at=now + timedelta(days=1),
        state=ScheduledActionState.PENDING,
        attempts=0,
        lease_owner=None,
        lease_expires_at=None,
    )


def stored_visits(scheduled: Any, visits: list[ScheduledAction]) -> list[bool]:
    """``visits`` stored as the runtime stores a batch's next visits: handed over (built here,
    held by nobody else), in one ``schedule_many`` where the store has it."""
    if isinstance(scheduled, BatchScheduling):
        return handed_over(scheduled.schedule_many, visits, *visits)
    return [handed_over(scheduled.schedule, visit)[1] for visit in visits]


def store_drain(flow: LeadFlow, n: int, *, moves_on: bool) -> Callable[[], None]:
    """The floor under ``run_due``: the scheduled store alone, no runtime and no handler. Each
    batch of 500 claimed, then acknowledged in one unit of work; with ``moves_on`` the same
    unit also stores one next visit per action (:func:`next_visit`), the least a sequence
    step adds to a plain action's writes while each visit is a stored action of its own."""
    storage = flow.storage
    scheduled = storage.scheduled
    now = flow.now()

    def run() -> None:
        finished = 0
        while claimed := scheduled.claim_due(now, worker="floor", limit=500):
            ids = [action.action_id for action in claimed]
            with storage.unit_of_work():
                if isinstance(scheduled, BatchAcknowledgement):
                    done = len(scheduled.mark_done_ids(ids, worker="floor", now=now))
                else:
                    done = len(scheduled.mark_done_many(ids, worker="floor", now=now))
                if moves_on:
                    visits = [next_visit(action, now) for action in claimed]
                    assert all(stored_visits(scheduled, visits))
            assert done == len(ids)
            finished += done
        assert finished == n, (finished, n)

    return run


def step_records(head: EnrollmentHead, now: datetime) -> list[StepRecord]:
    """The records a step of the benchmark's sequence appends when it moves on: its action
    step done, its next visit (the wait) scheduled (what ``sequence_parts.moved`` builds)."""
    version = head.sequence_version
    return [
        StepRecord(visit=head.visit, step_id="send", kind="action", at=now, outcome="done",
                   why="after done: step send", version=version),
        StepRecord(visit=head.visit + 1, step_id="later", kind="wait", at=now,
                   outcome="scheduled", why="after done: due in 24 hours", version=version),
    ]  # fmt: skip


def design_drain(flow: LeadFlow, n: int, *, read: bool) -> Callable[[], None]:
    """The floor the issue's design allows a step (every visit a stored action of its own,
    the enrollment's state behind its own port): the stores alone, no runtime and no handler.
    Each batch of 500 claimed; in chunks of the executor's batch size (as the runtime hands
    them to the sequencer), the send marks written (one ``mark_sending``, committed in a unit
    of its own, as the goal-versus-send rule needs before a handler runs); then, in the
    acknowledgement's unit, the batch acknowledged, one next visit per action stored
    (``schedule_many``) and each enrollment moved there by its store's batch write with the
    step's records (``move_many``), or both in one call where the enrollment store can
    (``move_to_visits``): what ``Moves.advance_many`` asks of the stores. The heads
    are read before, untimed (``read``: read in the timed run too, one ``get_heads`` a chunk,
    as the sequencer reads them)."""
    storage = flow.storage
    scheduled = storage.scheduled
    store = storage.enrollments
    assert isinstance(store, EnrollmentSteps) and isinstance(store, EnrollmentSendMarks)
    now = flow.now()
    ids = [e.enrollment_id for e in store.list(limit=n)]
    known: dict[str, EnrollmentHead] = {}
    for start in range(0, 0 if read else len(ids), 500):
        known.update(store.get_heads(ids[start : start + 500]))

    def run() -> None:
        finished = moved = 0
        while claimed := scheduled.claim_due(now, worker="floor", limit=500):
            chunks = [claimed[i : i + BATCH_SIZE] for i in range(0, len(claimed), BATCH_SIZE)]
            marked: list[list[EnrollmentHead]] = []
            for chunk in chunks:
                wanted = [a.enrollment_id for a in chunk if a.enrollment_id is not None]
                heads = store.get_heads(wanted) if read else known
                read_heads = [heads[i] for i in wanted]
                with storage.unit_of_work():
                    ok = store.mark_sending([(h.enrollment_id, h.revision) for h in read_heads],
                                            at=now)  # fmt: skip
                assert all(ok)
                marked.append([send_begun(h, now) for h in read_heads])
            ids = [action.action_id for action in claimed]
            with storage.unit_of_work():
                if isinstance(scheduled, BatchAcknowledgement):
                    done = len(scheduled.mark_done_ids(ids, worker="floor", now=now))
                else:
                    done = len(scheduled.mark_done_many(ids, worker="floor", now=now))
                for chunk, heads in zip(chunks, marked, strict=True):
                    visits = [next_visit(action, now) for action in chunk]
                    moves = [
                        (h._evolve(visit=h.visit + 1, step_id="later", sending=False,
                                   updated_at=now), step_records(h, now))
                        for h in heads
                    ]  # fmt: skip
                    # Built here from the heads as read: handed over, as the runtime's moves;
                    # with their visits in one call where the store can, as the runtime does.
                    handed = [m for m, _ in moves]
                    # Looked up, not imported: the script runs on trees without it too.
                    visiting = getattr(store, "move_to_visits", None)
                    if visiting is not None:
                        triples = [(m, r, v) for (m, r), v in zip(moves, visits, strict=True)]
                        both = handed_over(visiting, triples, *handed, *visits)
                        assert all(went_in for _, went_in in both)
                        written = [head for head, _ in both]
                    else:
                        assert all(stored_visits(scheduled, visits))
                        written = handed_over(store.move_many, moves, *handed)
                    assert all(w is not None for w in written)
                    moved += len(written)
            assert done == len(ids)
            finished += done
        assert finished == n == moved, (finished, n, moved)

    return run


def rearm_drain(flow: LeadFlow, n: int) -> Callable[[], None]:
    """The floor of another design (SQL only, not leadflow's): a step that moves on re-arms
    its own row as the next visit (pending again, a new key, due a day later) in place of
    the acknowledgement, one ``UPDATE`` for the batch: no row inserted, none left done."""
    from sqlalchemy import bindparam, update

    storage = flow.storage
    database = storage.database  # type: ignore[attr-defined]
    table = database.tables.scheduled
    c = table.c
    now = flow.now()
    rearm = (
        update(table)
        .where(
            c.action_id.in_(bindparam("ids", expanding=True)),
            c.lease_owner == "floor",
            c.state == ScheduledActionState.CLAIMED.value,
        )
        .values(
            state=ScheduledActionState.PENDING.value,
            idempotency_key=c.idempotency_key + "#next",
            due_at=bindparam("due", type_=c.due_at.type),
            attempts=0,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=bindparam("now", type_=c.updated_at.type),
        )
    )

    def run() -> None:
        finished = 0
        while claimed := storage.scheduled.claim_due(now, worker="floor", limit=500):
            ids = [action.action_id for action in claimed]
            with database.write() as connection:
                done = connection.execute(
                    rearm, {"ids": ids, "due": now + timedelta(days=1), "now": now}
                ).rowcount
            assert done == len(ids), (done, len(ids))
            finished += done
        assert finished == n, (finished, n)

    return run


def _records(flow: LeadFlow) -> int:
    """How many step records an enrollment of ``flow`` holds (each the same)."""
    store = flow.storage.enrollments
    assert store is not None
    return len(store.list(limit=1)[0].history)


def _check_moved(flow: LeadFlow, n: int, before: int) -> None:
    """After a :func:`design_drain`: every enrollment one visit on, not sending, with its two
    new records (``before``: each one's records before); every claimed action done and one
    next visit pending for each."""
    store = flow.storage.enrollments
    assert store is not None
    enrollments = store.list(limit=n + 1)
    assert len(enrollments) == n
    for enrollment in enrollments:
        assert enrollment.visit == 2 and enrollment.step_id == "later", enrollment
        assert not enrollment.sending and len(enrollment.history) == before + 2
        assert [r.outcome for r in enrollment.history[-2:]] == ["done", "scheduled"]
    scheduled = flow.storage.scheduled
    pending = scheduled.list(state=ScheduledActionState.PENDING, limit=n + 1)
    assert len(pending) == n
    assert len(scheduled.list(state=ScheduledActionState.DONE, limit=n + 1)) == n


def bench_run_due(backend: str, n: int, reps: int, directory: Path) -> dict[str, float]:
    plain_t: list[float] = []
    seq_t: list[float] = []
    floor_t: list[float] = []
    moving_t: list[float] = []
    rearm_t: list[float] = []
    design_t: list[float] = []
    design_read_t: list[float] = []
    sql = backend in ("sqlite", "postgres")
    for rep in range(reps):
        plain, seq = due_flows(backend, directory, n, f"r{rep}")
        floor, moving = due_flows(backend, directory, n, f"f{rep}", both_plain=True)
        _, design = due_flows(backend, directory, n, f"d{rep}")
        _, design_read = due_flows(backend, directory, n, f"e{rep}")
        before = _records(design)
        plain_t.append(timed(drained(plain)) / n)
        seq_t.append(timed(drained(seq)) / n)
        floor_t.append(timed(store_drain(floor, n, moves_on=False)) / n)
        moving_t.append(timed(store_drain(moving, n, moves_on=True)) / n)
        design_t.append(timed(design_drain(design, n, read=False)) / n)
        design_read_t.append(timed(design_drain(design_read, n, read=True)) / n)
        for flow in (design, design_read):
            _check_moved(flow, n, before)
        if sql:
            rearmed, _ = due_flows(backend, directory, n, f"a{rep}", both_plain=True)
            rearm_t.append(timed(rearm_drain(rearmed, n)) / n)
        for flow in (plain, seq):
            messenger = flow.integrations.messenger
            assert isinstance(messenger, RecordingMessenger) and len(messenger.sent) == n
        assert len(moving.storage.scheduled.list(state=ScheduledActionState.PENDING,
                                                 limit=n + 1)) == n  # fmt: skip
    p, s, f, m = (statistics.median(x) * 1e6 for x in (plain_t, seq_t, floor_t, moving_t))
    found = {
        "plain_us": p,
        "sequence_us": s,
        "ratio": s / p,
        "store_us": f,
        "store_next_us": m,
        "floor_ratio": (p + m - f) / p,
    }
    d, r = (statistics.median(x) * 1e6 for x in (design_t, design_read_t))
    found.update(
        design_us=d, design_ratio=(p + d - f) / p, design_read_us=r,
        design_read_ratio=(p + r - f) / p,
    )  # fmt: skip
    if rearm_t:
        a = statistics.median(rearm_t) * 1e6
        found.update(rearm_us=a, rearm_ratio=(p + a - f) / p)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--backend", choices=["memory", "memory-fast", "sqlite", "postgres"], default="memory"
    )
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall",
        help="wall time, or the process's CPU time (steadier on a loaded machine; leaves out "
        "what SQLite waits for the disk)",
    )  # fmt: skip
    parser.add_argument("--n", type=int, default=None, help="events per run")
    parser.add_argument("--reps", type=int, default=None, help="interleaved runs")
    parser.add_argument("--only", choices=["handle", "run_due"], default=None)
    parser.add_argument(
        "--history", type=int, default=0,
        help="run_due: step records each enrollment holds before its step runs (at most 190)",
    )  # fmt: skip
    args = parser.parse_args()
    global clock, HISTORY
    clock = CLOCKS[args.clock]
    HISTORY = args.history
    n, reps = (500, 3) if args.quick else (3000, 7)
    n, reps = args.n or n, args.reps or reps
    handle = due = counts = handle_counts = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if args.only != "run_due":
                handle = bench_handle(args.backend, n, reps, Path(tmp))
                if args.backend in ("sqlite", "postgres"):
                    handle_counts = count_handle(args.backend, min(n, 200), Path(tmp))
            if args.only != "handle":
                due = bench_run_due(args.backend, n, reps, Path(tmp))
                if args.backend in ("sqlite", "postgres"):
                    counts = count_run_due(args.backend, n, Path(tmp))
        finally:
            close_all()
    print(
        f"backend {args.backend}, {n} events x {reps} interleaved runs (medians per event, "
        f"{args.clock} clock" + (f", {HISTORY} step records per enrollment)" if HISTORY else ")")
    )
    if handle is not None:
        print(
            f"handle:  plain rule {handle['plain_us']:.0f} us, sequence entry "
            f"{handle['sequence_us']:.0f} us, ratio {handle['ratio']:.2f} (target <= 2); "
            f"engine alone {handle['engine_us']:.1f} us"
        )
    if handle_counts is not None:
        print(
            f"per handled event: plain {handle_counts['plain_statements']:.2f} statements / "
            f"{handle_counts['plain_commits']:.2f} commits, entry "
            f"{handle_counts['entry_statements']:.2f} / {handle_counts['entry_commits']:.2f}"
        )
    if due is not None:
        print(
            f"run_due: plain action {due['plain_us']:.0f} us, sequence step "
            f"{due['sequence_us']:.0f} us, ratio {due['ratio']:.2f} (target <= 1.2)"
        )
        print(
            f"run_due floor, the scheduled store alone: claim + acknowledge "
            f"{due['store_us']:.0f} us, and storing a next visit in the acknowledgement's unit "
            f"{due['store_next_us']:.0f} us (+{due['store_next_us'] - due['store_us']:.0f}); "
            f"a plain action plus that visit: ratio {due['floor_ratio']:.2f}, the least a step "
            f"that stores its next visit as an action of its own can cost"
        )
        print(
            f"run_due floor the design allows (the stores alone: claim, send marks committed, "
            f"then with the acknowledgement each next visit stored and each enrollment moved "
            f"with its step records): {due['design_us']:.0f} us, a plain action plus the "
            f"difference: ratio {due['design_ratio']:.2f}; with the heads read too "
            f"{due['design_read_us']:.0f} us, ratio {due['design_read_ratio']:.2f}"
        )
        if "rearm_us" in due:
            print(
                f"another design's floor, the claimed row re-armed as the next visit in place of "
                f"its acknowledgement (one UPDATE a batch): {due['rearm_us']:.0f} us; a plain "
                f"action plus the difference: ratio {due['rearm_ratio']:.2f}"
            )
    if counts is not None:
        print(
            f"per drained action: plain {counts['plain_statements']:.2f} statements / "
            f"{counts['plain_commits']:.2f} commits, step {counts['step_statements']:.2f} / "
            f"{counts['step_commits']:.2f}"
        )


if __name__ == "__main__":
    main()
