"""Enrollments left on an older version of their sequence still hear their own goals and
waits; a draft stored on top of a running version leaves it running (entries, pause, resume,
manual enrollment, archive, the report); and an event no goal or wait of any version listens
to does not read the opportunity's enrollments.

A new version published with ``in_flight="keep"`` (the default), or a draft stored on top of
the running version, leaves enrollments on the version they started. The flow used to listen
only to the event types of each sequence's current version: once the new version's goals or
waits named other types, an older enrollment's goal was never reached and its steps went on
(a message sent after the goal event was stored), and its ``wait_for_event`` only timed out.
A draft on top also stopped the running version's entries and refused to pause it ("is
draft"): saving an edit took the live sequence down. Every backend: the reference and fast
memory stores, mongomock, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mongomock_ng
import pytest

from leadflow import LeadFlow, ManualClock
from leadflow.adapters import InMemoryOpportunities, RecordingMessenger
from leadflow.errors import InvalidStateError
from leadflow.ports import Storage
from leadflow.runtime.sequence_report import report_for
from leadflow.sequences import EnrollmentState, SequenceDefinition, SequenceStatus

from .sql_support import fresh_storage, on_postgres

MONDAY_10 = datetime(2026, 1, 5, 10, tzinfo=UTC)


@pytest.fixture(
    params=[
        "memory",
        "memory-fast",
        "mongomock",
        "sqlite-file",
        pytest.param("postgres", marks=on_postgres),
    ]
)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    kind = str(request.param)
    if kind == "memory":
        from leadflow.stores.memory import memory_storage

        yield memory_storage()
    elif kind == "memory-fast":
        from leadflow.stores.memory.fast import fast_memory_storage

        yield fast_memory_storage()
    elif kind == "mongomock":
        from leadflow.stores.mongo import mongo_storage

        yield mongo_storage(mongomock_ng.MongoClient(tz_aware=True)["old_versions"])
    else:
        with fresh_storage(kind, tmp_path) as sql:
            yield sql


def _flow(storage: Storage) -> tuple[LeadFlow, ManualClock]:
    clock = ManualClock(MONDAY_10)
    flow = LeadFlow.in_memory(clock=clock, storage=storage, event_types=["email.replied"])
    gateway = flow.integrations.opportunities
    assert isinstance(gateway, InMemoryOpportunities)
    for opportunity_id in ("o1", "o2", "o3", "o4"):
        gateway.add(opportunity_id, owner="alice", email="lead@example.com")
    return flow, clock


def _sequence(
    goal_type: str = "opportunity.status_changed", wait_type: str | None = None
) -> SequenceDefinition:
    """Enter on a new lead; wait a day (or for ``wait_type``, up to a day); send an e-mail;
    the goal: status ``won`` on a ``goal_type`` event."""
    first: dict[str, Any] = {"id": "pause", "kind": "wait", "delay": 24}
    if wait_type is not None:
        first = {"id": "pause", "kind": "wait_for_event", "eventType": wait_type,
                 "timeout": {"amount": 24, "unit": "hours"}, "then": "matched"}  # fmt: skip
    steps: list[dict[str, Any]] = [
        first,
        {"id": "send", "kind": "action",
         "action": {"actionType": "send_email", "template": "follow-up"}},
        {"id": "stop", "kind": "exit"},
        {"id": "matched", "kind": "action",
         "action": {"actionType": "send_email", "template": "thanks"}},
    ]  # fmt: skip
    won = [{"field": "status", "operator": "equals", "value": "won"}]
    return SequenceDefinition.model_validate(
        {
            "sequenceId": "nurture",
            "name": "Nurture",
            "entry": {"eventType": "opportunity.created"},
            "steps": steps,
            "goals": [{"name": "won", "eventType": goal_type, "conditions": won}],
        }
    )


def _event(
    kind: str, event_id: str, at: datetime, opportunity_id: str = "o1", **payload: Any
) -> dict[str, Any]:
    return {
        "type": kind,
        "id": event_id,
        "time": at,
        "payload": {"opportunityId": opportunity_id, **payload},
    }


def _sent(flow: LeadFlow) -> list[str]:
    messenger = flow.integrations.messenger
    assert isinstance(messenger, RecordingMessenger)
    return [message.template for message in messenger.sent]


def _drain_for(flow: LeadFlow, clock: ManualClock, hours: int) -> None:
    for _ in range(hours * 4):
        clock.advance(timedelta(minutes=15))
        flow.run_due()


def _enrollments(flow: LeadFlow) -> list[tuple[int, EnrollmentState]]:
    store = flow.storage.enrollments
    assert store is not None
    return [(e.sequence_version, e.state) for e in store.list(opportunity_id="o1")]


NEWER: dict[str, Callable[[LeadFlow], object]] = {
    # A new active version whose goal listens to another event type, enrollments kept.
    "published": lambda flow: flow.sequences.publish(_sequence("estimate.created")),
    # A draft on top of the running version (no entries until it is published).
    "draft": lambda flow: flow.sequences.publish(
        _sequence("estimate.created"), status=SequenceStatus.DRAFT
    ),
}


@pytest.mark.parametrize("newer", sorted(NEWER))
def test_an_enrollment_on_an_older_version_reaches_its_goal(storage: Storage, newer: str) -> None:
    flow, clock = _flow(storage)
    flow.sequences.publish(_sequence())
    flow.handle(_event("opportunity.created", "lead-1", clock.now()))
    NEWER[newer](flow)
    assert flow.sequences.get("nurture").version == 2
    won = flow.handle(_event("opportunity.status_changed", "won-1", clock.now(), status="won"))
    assert [(o.what, o.detail) for o in won.sequences] == [("goal_reached", "won")]
    assert _enrollments(flow) == [(1, EnrollmentState.GOAL_REACHED)]
    _drain_for(flow, clock, 30)
    assert _sent(flow) == []  # nothing after the goal


def test_an_enrollment_on_an_older_version_still_matches_its_wait(storage: Storage) -> None:
    flow, clock = _flow(storage)
    flow.sequences.publish(_sequence(wait_type="email.replied"))
    flow.handle(_event("opportunity.created", "lead-1", clock.now()))
    flow.sequences.publish(_sequence())  # version 2 waits for nothing
    clock.advance(timedelta(hours=1))
    replied = flow.handle(_event("email.replied", "reply-1", clock.now()))
    assert [o.what for o in replied.sequences] == ["matched"]
    _drain_for(flow, clock, 2)
    assert _sent(flow) == ["thanks"]  # the matched branch, not the timeout's


class _Reads:
    """Counts the enrollment store's ``active_for`` calls (the read of an opportunity's active
    enrollments, a round trip on SQL)."""

    def __init__(self, flow: LeadFlow) -> None:
        store = flow.storage.enrollments
        assert store is not None
        self.count = 0
        read = store.active_for

        def counted(opportunity_id: str) -> Any:
            self.count += 1
            return read(opportunity_id)

        sequencer = flow.sequencer
        assert sequencer is not None
        sequencer.enrollments = _Proxy(store, counted)


class _Proxy:
    def __init__(self, inner: Any, active_for: Callable[[str], Any]) -> None:
        self._inner = inner
        self.active_for = active_for

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_an_event_no_goal_or_wait_listens_to_reads_no_enrollment() -> None:
    flow, clock = _flow(_memory())
    flow.sequences.publish(_sequence())
    reads = _Reads(flow)
    entered = flow.handle(_event("opportunity.created", "lead-1", clock.now()))
    assert [o.what for o in entered.sequences] == ["enrolled"]
    assert reads.count == 0  # the entry's type: no goal or wait of any version reacts to it
    flow.handle(_event("opportunity.status_changed", "lost-1", clock.now(), status="lost"))
    assert reads.count == 1  # the goal's type: the opportunity's enrollments are read
    # Once a version's goal reacts to the entry's type, the entry reads them too (the
    # enrollment is on version 1, whose goal is not that one: it carries on).
    flow.sequences.publish(_sequence(goal_type="opportunity.created"))
    again = flow.handle(_event("opportunity.created", "lead-2", clock.now(), status="won"))
    assert reads.count == 2
    assert [o.what for o in again.sequences] == ["already_enrolled"]


def _memory() -> Storage:
    from leadflow.stores.memory import memory_storage

    return memory_storage()


def _entered(flow: LeadFlow, clock: ManualClock, opportunity_id: str) -> list[tuple[str, int]]:
    """The new lead ``opportunity_id`` handled: each outcome and its enrollment's version."""
    result = flow.handle(
        _event("opportunity.created", f"lead-{opportunity_id}", clock.now(), opportunity_id)
    )
    store = flow.storage.enrollments
    assert store is not None
    return [(o.what, store.get(o.enrollment_id).sequence_version) for o in result.sequences]


def test_a_draft_on_top_leaves_the_running_version_running(storage: Storage) -> None:
    flow, clock = _flow(storage)
    admin = flow.sequences
    admin.publish(_sequence())
    assert _entered(flow, clock, "o1") == [("enrolled", 1)]
    draft = admin.publish(_sequence("estimate.created"), status=SequenceStatus.DRAFT)
    assert (draft.version, admin.get("nurture").status) == (2, SequenceStatus.DRAFT)
    assert (admin.running("nurture").version, admin.running("nurture").status) == (
        1,
        SequenceStatus.ACTIVE,
    )
    assert _entered(flow, clock, "o2") == [("enrolled", 1)]  # entries go on, on version 1
    assert [(d.version, d.status) for d in admin.list()] == [(2, SequenceStatus.DRAFT)]
    assert [(d.version, d.status) for d in admin.list(running=True)] == [(1, SequenceStatus.ACTIVE)]
    paused = admin.pause("nurture")
    assert (paused.version, paused.status) == (1, SequenceStatus.PAUSED)
    assert _entered(flow, clock, "o3") == []  # paused: nobody enters
    assert admin.resume("nurture").version == 1
    report = admin.enroll("nurture", ["o3"], actor="admin")
    assert report.outcomes["o3"].what == "enrolled"
    sequences, enrollments = flow.storage.sequences, flow.storage.enrollments
    assert sequences is not None and enrollments is not None
    assert report_for(sequences, enrollments, "nurture").version == 1  # the running version's
    # Publishing the draft's content makes version 3 the running one.
    live = admin.publish(admin.get("nurture"))
    assert (live.version, admin.running("nurture").version) == (3, 3)
    assert _entered(flow, clock, "o4") == [("enrolled", 3)]
    assert admin.archive("nurture").version == 3
    store = flow.storage.enrollments
    assert store is not None
    assert {e.state for e in store.list(sequence_id="nurture")} == {EnrollmentState.ENDED}


def test_a_sequence_with_only_drafts_does_not_run(storage: Storage) -> None:
    flow, clock = _flow(storage)
    flow.sequences.publish(_sequence(), status=SequenceStatus.DRAFT)
    assert flow.sequences.running("nurture").status is SequenceStatus.DRAFT
    assert [d.version for d in flow.sequences.list(running=True)] == [1]  # the latest draft
    assert _entered(flow, clock, "o1") == []
    with pytest.raises(InvalidStateError, match="draft"):
        flow.sequences.pause("nurture")
    with pytest.raises(InvalidStateError, match="draft"):
        flow.sequences.enroll("nurture", ["o1"])


@pytest.mark.parametrize("in_flight", ["keep", "move"])
def test_a_version_published_over_a_paused_one_releases_what_the_pause_held(
    storage: Storage, in_flight: str
) -> None:
    """The pause held the e-mail due a day after the entry; a new active version (the paused
    one can no longer be resumed: resume acts on the running version, now active) runs it,
    once. Before, it stayed held for good."""
    flow, clock = _flow(storage)
    flow.sequences.publish(_sequence())
    flow.handle(_event("opportunity.created", "lead-1", clock.now()))
    flow.sequences.pause("nurture")
    _drain_for(flow, clock, 30)  # the wait ends, the e-mail comes due: held
    store = flow.storage.enrollments
    assert store is not None
    [held] = store.list(opportunity_id="o1")
    assert held.held and _sent(flow) == []
    flow.sequences.publish(_sequence(), in_flight=in_flight)
    with pytest.raises(InvalidStateError):
        flow.sequences.resume("nurture")
    _drain_for(flow, clock, 1)
    _drain_for(flow, clock, 30)
    assert _sent(flow) == ["follow-up"]
    [done] = store.list(opportunity_id="o1")
    assert (done.state, done.held) == (EnrollmentState.COMPLETED, False)
    assert done.sequence_version == (2 if in_flight == "move" else 1)


def test_a_draft_over_a_paused_version_leaves_it_paused(storage: Storage) -> None:
    flow, clock = _flow(storage)
    flow.sequences.publish(_sequence())
    flow.handle(_event("opportunity.created", "lead-1", clock.now()))
    flow.sequences.pause("nurture")
    _drain_for(flow, clock, 30)
    flow.sequences.publish(_sequence(), status=SequenceStatus.DRAFT)
    _drain_for(flow, clock, 2)
    assert _sent(flow) == []  # still paused
    assert flow.sequences.resume("nurture").version == 1
    _drain_for(flow, clock, 1)
    assert _sent(flow) == ["follow-up"]


def _windowed(template: str) -> SequenceDefinition:
    """E-mail at once on entry, within 09:00-17:00 on weekdays."""
    return SequenceDefinition.model_validate(
        {
            "sequenceId": "nurture",
            "name": "Nurture",
            "entry": {"eventType": "opportunity.created"},
            "window": {"start": "09:00", "end": "17:00"},
            "steps": [
                {"id": "send", "kind": "action",
                 "action": {"actionType": "send_email", "template": template}},
            ],
        }
    )  # fmt: skip


def test_a_visit_moved_to_a_new_version_runs_the_new_versions_step(storage: Storage) -> None:
    """A lead at 20:00 waits for the next morning's window; meanwhile the admin fixes the
    e-mail's template and publishes with ``in_flight="move"``: the morning's e-mail is the new
    version's. The visit stored under version 1 ran version 1's action (the enrollment said
    version 2)."""
    flow, clock = _flow(storage)
    flow.sequences.publish(_windowed("follow-up-typo"))
    clock.set(MONDAY_10 + timedelta(hours=10))  # 20:00, the window closed
    flow.handle(_event("opportunity.created", "lead-1", clock.now(), "o1"))
    flow.sequences.publish(_windowed("follow-up"), in_flight="move")
    _drain_for(flow, clock, 14)  # to Tuesday 10:00
    assert _sent(flow) == ["follow-up"]
    store = storage.enrollments
    assert store is not None
    [done] = store.list(opportunity_id="o1")
    assert (done.state, done.sequence_version) == (EnrollmentState.COMPLETED, 2)


def test_a_wait_moved_to_a_new_version_waits_for_the_new_versions_event(
    storage: Storage,
) -> None:
    """Version 2 waits for an estimate instead of a reply; an enrollment moved to it at the
    wait (``in_flight="move"``) is matched by the estimate. It kept waiting for a reply (its
    ``waiting_for`` was version 1's), which version 2 no longer matches: only the timeout."""
    flow, clock = _flow(storage)
    flow.sequences.publish(_sequence(wait_type="email.replied"))
    flow.handle(_event("opportunity.created", "lead-1", clock.now()))
    flow.sequences.publish(_sequence(wait_type="estimate.created"), in_flight="move")
    store = storage.enrollments
    assert store is not None
    [moved] = store.list(opportunity_id="o1")
    assert (moved.sequence_version, moved.waiting_for) == (2, "estimate.created")
    clock.advance(timedelta(hours=2))
    flow.handle(_event("estimate.created", "estimate-1", clock.now()))
    _drain_for(flow, clock, 30)
    assert _sent(flow) == ["thanks"]
