"""Goals against sends, and timers against matching events: the races sequences must decide
deterministically (issue 18). The rule: a step's send happens if and only if its "send begun"
compare-and-set on the enrollment came before the goal's; one visit goes one way however many
writers race for it. Proven here in memory with threads and an injected store latency, and
with hooks that land the goal at the worst moments; tests/test_sequences_sql.py repeats the
thread races on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow import LeadFlow, ManualClock
from leadflow.adapters import RecordingMessenger
from leadflow.records import ActionKind, ScheduledActionState
from leadflow.sequences import Enrollment, EnrollmentState, SequenceDefinition
from leadflow.stores.memory import memory_storage

from . import suite
from .latency import Slow, Tripwire
from .sequence_support import opportunities

START = datetime(2026, 1, 5, 10, tzinfo=UTC)


def race_sequence() -> SequenceDefinition:
    """Enter, send an e-mail at once, wait a day for a reply, send a second; goal: won."""
    return SequenceDefinition.model_validate(
        {
            "sequenceId": "race",
            "name": "race",
            "entry": {"eventType": "opportunity.created"},
            "steps": [
                {"id": "first", "kind": "action",
                 "action": {"actionType": "send_email", "template": "first"}},
                {"id": "reply", "kind": "wait_for_event", "eventType": "email.replied",
                 "timeout": 24, "then": "thanks", "onTimeout": "second"},
                {"id": "second", "kind": "action",
                 "action": {"actionType": "send_email", "template": "second"}},
                {"id": "end", "kind": "exit"},
                {"id": "thanks", "kind": "action",
                 "action": {"actionType": "send_email", "template": "thanks"}},
            ],
            "goals": [
                {"name": "won", "eventType": "opportunity.status_changed",
                 "conditions": [{"field": "newStatus", "operator": "equals", "value": "won"}]}
            ],
        }
    )  # fmt: skip


class Logged:
    """Delegates to an enrollment store and logs every successful update, in order."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.log: list[Enrollment] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def update(self, enrollment: Enrollment) -> Enrollment:
        stored: Enrollment = self._inner.update(enrollment)
        with self._lock:
            self.log.append(stored)
        return stored


def _flow(delay: float = 0.0) -> tuple[LeadFlow, ManualClock, Logged]:
    clock = ManualClock(START)
    storage = memory_storage()
    logged = Logged(storage.enrollments)
    enrollments: Any = Slow(logged, delay) if delay else logged
    storage = dataclasses.replace(storage, enrollments=enrollments)
    flow = LeadFlow.in_memory(clock=clock, storage=storage, event_types=["email.replied"])
    opportunities(flow).add("o1", owner="alice", email="lead@example.com")
    flow.sequences.publish(race_sequence())
    return flow, clock, logged


def _lead(clock: ManualClock) -> dict[str, Any]:
    return {"type": "opportunity.created", "id": "lead-o1", "time": clock.now(),
            "payload": {"opportunityId": "o1"}}  # fmt: skip


def _won(clock: ManualClock) -> dict[str, Any]:
    return {"type": "opportunity.status_changed", "id": "won-o1", "time": clock.now(),
            "payload": {"opportunityId": "o1", "newStatus": "won"}}  # fmt: skip


def _reply(clock: ManualClock) -> dict[str, Any]:
    return {"type": "email.replied", "id": "reply-o1", "time": clock.now(),
            "payload": {"opportunityId": "o1"}}  # fmt: skip


def _sent(flow: LeadFlow) -> list[str]:
    messenger = flow.integrations.messenger
    assert isinstance(messenger, RecordingMessenger)
    return [m.template for m in messenger.sent]


def _check_goal_order(flow: LeadFlow, logged: Logged) -> None:
    """The invariant: the first e-mail was sent iff its "send begun" write precedes the
    goal's in the enrollment's write order; nothing at all after the goal."""
    began = [i for i, e in enumerate(logged.log) if e.sending and e.step_id == "first"]
    goal = [i for i, e in enumerate(logged.log) if e.state is EnrollmentState.GOAL_REACHED]
    assert len(goal) == 1, logged.log
    sent = _sent(flow)
    if began and began[0] < goal[0]:
        assert sent == ["first"], (sent, logged.log)
    else:
        assert sent == [] and not began, (sent, logged.log)


@pytest.mark.parametrize("trial", range(suite.examples(25)))
def test_a_goal_racing_a_send_from_threads(trial: int) -> None:
    flow, clock, logged = _flow(delay=0.001)
    flow.handle(_lead(clock))
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            flow.run_due()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def goal() -> None:
        try:
            barrier.wait()
            flow.handle(_won(clock))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker), threading.Thread(target=goal)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    _check_goal_order(flow, logged)
    # Whatever happened, nothing more is ever sent.
    clock.advance(timedelta(days=3))
    flow.run_due()
    flow.run_due()
    assert _sent(flow) in ([], ["first"])
    [enrollment] = flow.sequences.enrollments("o1")
    assert enrollment.state is EnrollmentState.GOAL_REACHED


def test_a_goal_landing_after_the_claim_but_before_the_send_stops_it() -> None:
    """The step was claimed by a worker; the goal is stored before its send began: nothing is
    sent, and the step finishes as skipped (never retried)."""
    flow, clock, logged = _flow()
    flow.handle(_lead(clock))
    assert flow.storage.enrollments is not None
    wire = Tripwire(flow.storage.enrollments)
    landed: list[bool] = []

    def goal_now(*_: Any) -> None:
        if not landed:
            landed.append(True)
            flow.handle(_won(clock))

    wire.before["get"] = goal_now
    assert flow.sequencer is not None
    flow.sequencer.enrollments = wire
    report = flow.run_due()
    assert landed and _sent(flow) == []
    [run] = report.runs
    assert run.ok and run.note is not None and run.note.startswith("skipped")
    _check_goal_order(flow, logged)


def test_a_goal_landing_after_the_send_began_lets_it_finish_and_nothing_follows() -> None:
    flow, clock, logged = _flow()
    flow.handle(_lead(clock))
    messenger = flow.integrations.messenger
    assert isinstance(messenger, RecordingMessenger)
    original = messenger.send

    def send_then_win(message: Any) -> None:
        original(message)
        flow.handle(_won(clock))

    messenger.send = send_then_win  # type: ignore[method-assign]
    flow.run_due()
    messenger.send = original  # type: ignore[method-assign]
    assert _sent(flow) == ["first"]
    _check_goal_order(flow, logged)
    clock.advance(timedelta(days=2))
    flow.run_due()
    assert _sent(flow) == ["first"]  # the timeout never sends the second


@pytest.mark.parametrize("trial", range(suite.examples(25)))
def test_a_timeout_racing_a_reply_goes_one_way(trial: int) -> None:
    """The wait's timeout comes due while the reply arrives: exactly one of "thanks" (the
    reply won the visit) and "second" (the timeout won) is ever sent, once."""
    flow, clock, _ = _flow(delay=0.001)
    flow.handle(_lead(clock))
    flow.run_due()  # the first e-mail
    clock.advance(timedelta(hours=24))
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            flow.run_due()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    def reply() -> None:
        try:
            barrier.wait()
            flow.handle(_reply(clock))
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker), threading.Thread(target=reply)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    # A visit claimed in the same batch as the timer that stores it may run first, while the
    # enrollment is still behind it: it is tried again after the retry backoff, not skipped.
    for _ in range(3):
        clock.advance(timedelta(minutes=1))
        flow.run_due()
    sent = _sent(flow)
    assert sent in (["first", "thanks"], ["first", "second"]), sent
    [enrollment] = flow.sequences.enrollments("o1")
    assert enrollment.state is EnrollmentState.COMPLETED
    steps = [
        a
        for a in flow.storage.scheduled.list(limit=100)
        if a.kind is ActionKind.STEP
        and a.state not in (ScheduledActionState.DONE, ScheduledActionState.CANCELLED)
    ]
    assert steps == []
