"""A resume (or an active version published over a paused one) against visits being held:
no visit stays held once its sequence runs again, and none runs twice.

A visit that comes due while its sequence is paused is held (its enrollment marked) and
stored again when the sequence is resumed. Three ways a visit used to stay held for good, its
step never run: an instance whose cached programs still said "paused" (for up to
``rules_refresh`` of wall time after another instance resumed the sequence) held the visits
it claimed after the resume, the resume's release long done; a resume that landed between a
holder's look at the status and its write of the hold released nothing (the hold was not
stored yet), and the holder held on; and a resume whose release met an enrollment that changed
meanwhile (a goal ending it) stopped with a stale-write error, the held visits after it in its
scan left held, the sequence active (a second resume refuses). Every backend: the reference
and fast memory stores, mongomock, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from leadflow import LeadFlow, ManualClock
from leadflow.adapters import RecordingMessenger
from leadflow.ports import EnrollmentStore, Storage
from leadflow.sequences import Enrollment, EnrollmentState, SequenceStatus

from . import test_sequence_old_versions as versions
from .test_sequence_old_versions import MONDAY_10, _event, _flow, _sent, _sequence

storage = versions.storage  # the fixture: every backend


class Interleaved:
    """An enrollment store that runs ``hook`` once, just before (or after) the first
    ``update`` that ``when`` picks: another instance's write landing in between."""

    def __init__(
        self,
        inner: EnrollmentStore,
        when: Callable[[Enrollment], bool],
        hook: Callable[[], object],
        *,
        after: bool = False,
    ) -> None:
        self._inner = inner
        self._when = when
        self._hook: Callable[[], object] | None = hook
        self._after = after
        self.fired = False

    def update(self, enrollment: Enrollment) -> Enrollment:
        hook = self._hook
        if hook is None or not self._when(enrollment):
            return self._inner.update(enrollment)
        self._hook = None
        self.fired = True
        if not self._after:
            hook()
        stored = self._inner.update(enrollment)
        if self._after:
            hook()
        return stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _sync(clock: ManualClock, *others: ManualClock) -> None:
    for other in others:
        other.set(clock.now())


def _run(flows: list[LeadFlow], clocks: list[ManualClock], hours: int) -> None:
    """Every instance runs its due visits every 15 minutes for ``hours``."""
    for _ in range(hours * 4):
        for clock in clocks:
            clock.advance(timedelta(minutes=15))
        for flow in flows:
            flow.run_due()


def _states(storage: Storage) -> list[tuple[str, EnrollmentState, bool]]:
    store = storage.enrollments
    assert store is not None
    return sorted((e.opportunity_id, e.state, e.held) for e in store.list())


def _two_instances(storage: Storage) -> tuple[LeadFlow, ManualClock, LeadFlow, ManualClock]:
    """Instances A and B on ``storage``; the sequence published and two leads entered on A,
    o1 at 10:00 and o2 at 12:00 (their e-mails due a day later)."""
    a, clock_a = _flow(storage)
    b, clock_b = _flow(storage)
    a.sequences.publish(_sequence())
    a.handle(_event("opportunity.created", "lead-1", clock_a.now(), "o1"))
    clock_a.advance(timedelta(hours=2))
    a.handle(_event("opportunity.created", "lead-2", clock_a.now(), "o2"))
    return a, clock_a, b, clock_b


def test_an_instance_that_has_not_seen_the_resume_holds_nothing(storage: Storage) -> None:
    """Instance B cached "paused" (it held o1's visit); A resumes; within B's cache lifetime
    o1's released visit and o2's come due on B: both run, once."""
    a, clock_a, b, clock_b = _two_instances(storage)
    a.sequences.pause("nurture")
    clock_a.set(MONDAY_10 + timedelta(hours=24, minutes=15))
    _sync(clock_a, clock_b)
    b.run_due()  # o1's wait ends on B, paused: held (B now caches "paused")
    assert _states(storage)[0] == ("o1", EnrollmentState.ACTIVE, True)
    a.sequences.resume("nurture")  # o1's visit stored again, due now
    clock_a.set(MONDAY_10 + timedelta(hours=26, minutes=15))
    _sync(clock_a, clock_b)
    b.run_due()  # o1's released visit and o2's end of wait: B's cache is seconds old
    _run([a, b], [clock_a, clock_b], 48)
    assert sorted(_sent(a) + _sent(b)) == ["follow-up", "follow-up"]
    assert _states(storage) == [
        ("o1", EnrollmentState.COMPLETED, False),
        ("o2", EnrollmentState.COMPLETED, False),
    ]


def test_a_pause_through_another_instance_holds_the_next_visits_at_once(
    storage: Storage,
) -> None:
    """Instance B ran o1's e-mail (it caches "active"); A pauses; o2's e-mail comes due on B
    a moment later, well within B's cache lifetime: held, sent after the resume."""
    a, clock_a, b, clock_b = _two_instances(storage)
    clock_a.set(MONDAY_10 + timedelta(hours=24, minutes=15))
    _sync(clock_a, clock_b)
    while b.run_due().claimed:
        pass
    assert _sent(b) == ["follow-up"]  # o1's
    a.sequences.pause("nurture")
    clock_a.set(MONDAY_10 + timedelta(hours=26, minutes=15))
    _sync(clock_a, clock_b)
    while b.run_due().claimed:
        pass
    assert _sent(b) == ["follow-up"] and _states(storage)[1] == ("o2", EnrollmentState.ACTIVE, True)
    a.sequences.resume("nurture")
    _run([b], [clock_a, clock_b], 1)
    assert _sent(a) + _sent(b) == ["follow-up", "follow-up"]


@pytest.mark.parametrize("after", [False, True], ids=["before-the-hold", "after-the-hold"])
def test_a_resume_landing_while_a_visit_is_held(storage: Storage, after: bool) -> None:
    """The resume lands just before the hold's write (it finds no hold to release: the holder
    must see the resume and release its own) or just after it (both release: the visit is
    stored once, by its key). Either way the e-mail goes out once."""
    admin, clock = _flow(storage)
    worker, worker_clock = _flow(storage)
    admin.sequences.publish(_sequence())
    admin.handle(_event("opportunity.created", "lead-1", clock.now(), "o1"))
    admin.sequences.pause("nurture")
    sequencer = worker.sequencer
    assert sequencer is not None
    interleaved = Interleaved(
        sequencer.enrollments,
        lambda e: e.held,
        lambda: admin.sequences.resume("nurture"),
        after=after,
    )
    sequencer.enrollments = interleaved  # type: ignore[assignment]
    clock.set(MONDAY_10 + timedelta(hours=24, minutes=15))
    _sync(clock, worker_clock)
    worker.run_due()  # the wait ends: the worker holds it, the resume lands around the hold
    assert interleaved.fired
    _run([admin, worker], [clock, worker_clock], 48)
    assert sorted(_sent(admin) + _sent(worker)) == ["follow-up"]
    assert _states(storage) == [("o1", EnrollmentState.COMPLETED, False)]


def test_a_resume_releases_every_hold_when_one_enrollment_changes_meanwhile(
    storage: Storage,
) -> None:
    """While the resume releases o1's hold, o1 ends (a goal on another instance): the resume
    goes on and releases o2's and o3's holds; o1 gets nothing, o2 and o3 their e-mail."""
    admin, clock = _flow(storage)
    other, other_clock = _flow(storage)
    other.sequences.publish(_sequence())
    for n, opportunity_id in enumerate(("o1", "o2", "o3")):
        other.handle(_event("opportunity.created", f"lead-{n}", clock.now(), opportunity_id))
    other.sequences.pause("nurture")
    clock.set(MONDAY_10 + timedelta(hours=24, minutes=15))
    _sync(clock, other_clock)
    other.run_due()  # all three held
    assert [held for _, _, held in _states(storage)] == [True, True, True]
    won = _event("opportunity.status_changed", "won-1", clock.now(), "o1", status="won")
    sequencer = admin.sequencer
    assert sequencer is not None
    interleaved = Interleaved(
        sequencer.enrollments,
        lambda e: e.opportunity_id == "o1" and not e.held,  # the resume clearing o1's hold
        lambda: other.handle(won),
    )
    sequencer.enrollments = interleaved  # type: ignore[assignment]
    admin.sequences.resume("nurture")  # the admin's first use: it takes the store above
    assert interleaved.fired
    _run([admin, other], [clock, other_clock], 48)
    assert sorted(_sent(admin) + _sent(other)) == ["follow-up", "follow-up"]
    assert [(o, state) for o, state, _ in _states(storage)] == [
        ("o1", EnrollmentState.GOAL_REACHED),
        ("o2", EnrollmentState.COMPLETED),
        ("o3", EnrollmentState.COMPLETED),
    ]
    assert [held for o, _, held in _states(storage) if o != "o1"] == [False, False]


def test_a_visit_of_an_archived_sequence_ends_its_enrollment(storage: Storage) -> None:
    """Archiving writes the status, then ends the active enrollments; one it has not ended
    (archiving interrupted there, or a visit due in between) sends nothing: its visit ends
    it. Before, the visit ran its step (the archived sequence is no longer among the running
    programs, so it was taken for "not paused")."""
    flow, clock = _flow(storage)
    definition = flow.sequences.publish(_sequence())
    flow.handle(_event("opportunity.created", "lead-1", clock.now(), "o1"))
    sequences = storage.sequences
    assert sequences is not None
    sequences.set_status("nurture", definition.version, SequenceStatus.ARCHIVED)  # no more
    _run([flow], [clock], 30)
    assert _sent(flow) == []
    store = storage.enrollments
    assert store is not None
    [ended] = store.list(opportunity_id="o1")
    assert (ended.state, ended.end_reason) == (EnrollmentState.ENDED, "sequence archived")


def test_a_release_cut_short_leaves_no_hold_behind_the_visit(storage: Storage) -> None:
    """A resume stores the held visit again, then clears ``held``; cut between the two (a
    crash), the flag stayed set as the released visit ran and the enrollment moved on, and the
    next pause-and-resume "released" the next visit too: stored twice (its own action and the
    release's), the e-mail sent twice. Moving on to another visit now clears the flag."""
    flow, clock = _flow(storage)
    flow.sequences.publish(_sequence())
    flow.handle(_event("opportunity.created", "lead-1", clock.now(), "o1"))
    flow.sequences.pause("nurture")
    clock.set(MONDAY_10 + timedelta(hours=24, minutes=15))
    while flow.run_due().claimed:
        pass
    assert _states(storage) == [("o1", EnrollmentState.ACTIVE, True)]
    sequencer = flow.sequencer
    assert sequencer is not None

    def crash() -> None:
        raise RuntimeError("the resume's process died here")

    admin = flow.sequences
    interleaved = Interleaved(admin._enrollments, lambda e: not e.held, crash)
    admin._enrollments = interleaved  # type: ignore[assignment]
    with pytest.raises(RuntimeError):
        admin.resume("nurture")  # the visit stored again; the flag not cleared
    admin._enrollments = interleaved._inner  # type: ignore[assignment]
    assert flow.run_due(limit=1).claimed == 1  # the released wait's end: on to the e-mail
    flow.sequences.pause("nurture")
    flow.sequences.resume("nurture")
    _run([flow], [clock], 2)
    assert _sent(flow) == ["follow-up"]
    assert _states(storage) == [("o1", EnrollmentState.COMPLETED, False)]


def test_a_wait_matched_while_its_timeout_is_held_runs_the_next_step_once(
    storage: Storage,
) -> None:
    """The wait's timeout came due while paused (held); the reply arrives (the wait matched:
    on to the "thanks" e-mail, due at once); the sequence is resumed before that visit runs.
    The flag of the timeout's hold used to stay set, and the resume stored the "thanks" visit
    a second time: sent twice."""
    flow, clock = _flow(storage)
    flow.sequences.publish(_sequence(wait_type="email.replied"))
    flow.handle(_event("opportunity.created", "lead-1", clock.now(), "o1"))
    flow.sequences.pause("nurture")
    clock.set(MONDAY_10 + timedelta(hours=24, minutes=15))
    while flow.run_due().claimed:
        pass
    assert _states(storage) == [("o1", EnrollmentState.ACTIVE, True)]
    flow.handle(_event("email.replied", "reply-1", clock.now(), "o1"))
    flow.sequences.resume("nurture")
    _run([flow], [clock], 2)
    assert _sent(flow) == ["thanks"]


def test_a_released_visit_sends_with_the_data_of_the_event_it_came_from(
    storage: Storage,
) -> None:
    """A visit carries the payload of the event it came from (a message's data reads it as
    ``event``); a visit stored again by a resume carried only the opportunity's id, so the
    e-mail went out without the lead's fields."""
    flow, clock = _flow(storage)
    flow.sequences.publish(_sequence())
    flow.handle(_event("opportunity.created", "lead-1", clock.now(), "o1", firstName="Ada"))
    flow.sequences.pause("nurture")
    _run([flow], [clock], 25)  # the wait ends while paused: held
    flow.sequences.resume("nurture")
    _run([flow], [clock], 1)
    messenger = flow.integrations.messenger
    assert isinstance(messenger, RecordingMessenger)
    [message] = messenger.sent
    assert message.data["event"]["firstName"] == "Ada"
