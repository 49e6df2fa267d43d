"""Sequences end to end with a controlled clock, on every backend: the reference design's
website-lead sequence step by step (waits, a call, its outcome, a branch, 09:00 local time the
next business morning, an e-mail, a reply or its timeout, a second call), goals, re-enrollment,
pause and resume, versions, manual enrollment."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import mongomock_ng
import pytest

from leadflow import LeadFlow, ManualClock
from leadflow.adapters import RecordingMessenger
from leadflow.errors import InvalidInputError, InvalidStateError, NotFoundError
from leadflow.ports import Storage
from leadflow.records import ActionKind, ScheduledActionState
from leadflow.sequences import EnrollmentState, Reenrollment, SequenceStatus
from leadflow.stores.memory import memory_storage
from leadflow.stores.memory.fast import fast_memory_storage
from leadflow.stores.mongo import mongo_storage

from .sequence_support import (
    MONDAY_10,
    lead,
    opportunities,
    sequence_flow,
    website_lead_sequence,
)
from .sql_support import fresh_storage, on_postgres

_sequence_flow = sequence_flow


@pytest.fixture(
    autouse=True,
    params=[
        "memory",
        "memory-fast",
        "mongomock",
        "sqlite-file",
        pytest.param("postgres", marks=on_postgres),
    ],
)
def _backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every test here on every backend: the module's ``sequence_flow`` builds its flow on
    fresh storage of the parameter's kind (the reference design's scenarios end to end)."""
    kind = str(request.param)
    with ExitStack() as stack:
        if kind == "memory":
            storage: Storage = memory_storage()
        elif kind == "memory-fast":
            storage = fast_memory_storage()
        elif kind == "mongomock":
            storage = mongo_storage(mongomock_ng.MongoClient(tz_aware=True)["sequences"])
        else:
            storage = stack.enter_context(fresh_storage(kind, tmp_path))
        monkeypatch.setattr(
            sys.modules[__name__], "sequence_flow", partial(_sequence_flow, storage=storage)
        )
        yield


def _setup(
    timezone: str | None = "America/New_York", **changes: object
) -> tuple[LeadFlow, ManualClock]:
    flow, clock = sequence_flow()
    opportunities(flow).add("o1", owner="alice", email="lead@example.com", timezone=timezone)
    flow.sequences.publish(website_lead_sequence(**changes))
    return flow, clock


def _enrollment(flow: LeadFlow, opportunity_id: str = "o1"):  # type: ignore[no-untyped-def]
    [enrollment] = flow.sequences.enrollments(opportunity_id)
    return enrollment


def _calls(flow: LeadFlow, opportunity_id: str = "o1") -> list[str]:
    return [a.subject for a in flow.storage.activities.for_opportunity(opportunity_id)]


def _sent(flow: LeadFlow) -> list[str]:
    messenger = flow.integrations.messenger
    assert isinstance(messenger, RecordingMessenger)
    return [m.template for m in messenger.sent]


def _run_until(flow: LeadFlow, clock: ManualClock, when: datetime) -> None:
    """Advance minute by minute to ``when`` with a worker draining what is due each minute.
    The minutes with nothing due are skipped (the store's ``next_due``): the same runs at the
    same minutes as a worker polling every minute, without a claim per idle minute."""
    minute = timedelta(minutes=1)
    while clock.now() < when:
        due = flow.storage.scheduled.next_due()
        ticks = 1 if due is None else max(1, -((clock.now() - due) // minute))
        if due is None or clock.now() + ticks * minute >= when:
            ticks = max(1, -((clock.now() - when) // minute))
        clock.advance(ticks * minute)
        flow.run_due()


def test_the_website_lead_sequence_step_by_step() -> None:
    flow, clock = _setup()
    result = flow.handle(lead("o1", clock.now()))
    assert [o.what for o in result.sequences] == ["enrolled"]
    enrollment = _enrollment(flow)
    assert (enrollment.visit, enrollment.step_id) == (1, "wait-1h")
    # Nothing before the hour; the call at 11:00.
    _run_until(flow, clock, MONDAY_10 + timedelta(minutes=59))
    assert _calls(flow) == []
    _run_until(flow, clock, MONDAY_10 + timedelta(hours=1, minutes=1))
    assert _calls(flow) == ["Call the new website lead"]
    enrollment = _enrollment(flow)
    assert (enrollment.step_id, enrollment.waiting_for) == ("call-outcome", "activity.completed")
    # The call was not answered: the branch goes on to the 09:00 wait (New York time).
    [call] = flow.storage.activities.for_opportunity("o1")
    completed = flow.complete_activity(call.activity_id, outcome="no_answer", completed_by="alice")
    assert completed.follow_up is not None
    assert [o.what for o in completed.follow_up.sequences] == ["matched"]
    enrollment = _enrollment(flow)
    assert enrollment.step_id == "morning"
    branch = [h for h in enrollment.history if h.step_id == "answered"]
    assert branch and branch[0].outcome == "otherwise"
    [pending] = [
        a
        for a in flow.storage.scheduled.list(ScheduledActionState.PENDING)
        if a.kind is ActionKind.STEP and a.step_id == "morning"
    ]
    # Monday 11:00 UTC is 06:00 in New York; "09:00 the next business morning" is Tuesday
    # 09:00 New York = 14:00 UTC.
    assert pending.due_at == datetime(2026, 1, 6, 14, tzinfo=UTC)
    _run_until(flow, clock, datetime(2026, 1, 6, 14, 2, tzinfo=UTC))
    assert _sent(flow) == ["website_follow_up"]
    assert _enrollment(flow).waiting_for == "email.replied"
    # No reply for two business days (Paris calendar): the second call.
    _run_until(flow, clock, datetime(2026, 1, 8, 14, 3, tzinfo=UTC))
    assert _calls(flow) == ["Call the new website lead", "Second call: no reply to the e-mail"]
    enrollment = _enrollment(flow)
    assert enrollment.state is EnrollmentState.COMPLETED
    assert enrollment.end_reason == "exit:done"
    kinds = [h.step_id for h in enrollment.history]
    assert kinds.index("call-outcome") < kinds.index("answered") < kinds.index("email")


def test_a_reply_ends_the_sequence_at_its_exit() -> None:
    flow, clock = _setup()
    flow.handle(lead("o1", clock.now()))
    _run_until(flow, clock, MONDAY_10 + timedelta(hours=1, minutes=1))
    [call] = flow.storage.activities.for_opportunity("o1")
    flow.complete_activity(call.activity_id, outcome="voicemail", completed_by="alice")
    _run_until(flow, clock, datetime(2026, 1, 6, 14, 2, tzinfo=UTC))
    reply = {
        "type": "email.replied",
        "id": "reply-1",
        "time": clock.now(),
        "payload": {"opportunityId": "o1"},
    }
    assert [o.what for o in flow.handle(reply).sequences] == ["matched"]
    enrollment = _enrollment(flow)
    assert enrollment.state is EnrollmentState.COMPLETED
    _run_until(flow, clock, datetime(2026, 1, 9, tzinfo=UTC))
    assert len(_calls(flow)) == 1  # no second call after the reply


def test_an_answered_call_takes_the_branch_to_the_exit() -> None:
    flow, clock = _setup()
    flow.handle(lead("o1", clock.now()))
    _run_until(flow, clock, MONDAY_10 + timedelta(hours=1, minutes=1))
    [call] = flow.storage.activities.for_opportunity("o1")
    flow.complete_activity(call.activity_id, outcome="successful", completed_by="alice")
    enrollment = _enrollment(flow)
    assert enrollment.state is EnrollmentState.COMPLETED
    [branch] = [h for h in enrollment.history if h.step_id == "answered"]
    assert branch.outcome == "case 0" and "event.outcome equals 'successful'" in branch.why


def test_a_goal_ends_the_enrollment_and_nothing_is_sent_after_it() -> None:
    flow, clock = _setup()
    flow.handle(lead("o1", clock.now()))
    _run_until(flow, clock, MONDAY_10 + timedelta(hours=1, minutes=1))
    [call] = flow.storage.activities.for_opportunity("o1")
    flow.complete_activity(call.activity_id, outcome="no_answer", completed_by="alice")
    won = {
        "type": "opportunity.status_changed",
        "id": "won-1",
        "time": clock.now(),
        "payload": {"opportunityId": "o1", "newStatus": "won"},
    }
    assert [o.what for o in flow.handle(won).sequences] == ["goal_reached"]
    enrollment = _enrollment(flow)
    assert enrollment.state is EnrollmentState.GOAL_REACHED and enrollment.goal == "won or lost"
    _run_until(flow, clock, datetime(2026, 1, 9, tzinfo=UTC))
    assert _sent(flow) == [] and len(_calls(flow)) == 1
    [skipped] = [
        a
        for a in flow.storage.scheduled.list()
        if a.kind is ActionKind.STEP and a.step_id == "morning"
    ]
    assert skipped.state is ScheduledActionState.CANCELLED  # the goal cancelled it


def test_an_entry_that_does_not_match_enrolls_nobody() -> None:
    flow, clock = _setup()
    assert flow.handle(lead("o1", clock.now(), source="referral")).sequences == []
    assert flow.sequences.enrollments("o1") == []


def test_handling_the_entry_event_again_enrolls_once() -> None:
    flow, clock = _setup()
    first = flow.handle(lead("o1", clock.now()))
    again = flow.handle(lead("o1", clock.now()))
    assert [o.what for o in first.sequences] == ["enrolled"]
    assert [o.what for o in again.sequences] == ["already_enrolled"]
    assert len(flow.sequences.enrollments("o1")) == 1


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (Reenrollment.AFTER_END, ["already_enrolled", "enrolled"]),
        (Reenrollment.NEVER, ["already_enrolled", "not_reenrolled"]),
        (Reenrollment.EVERY_ENTRY, ["reentered", "enrolled"]),
    ],
)
def test_reenrollment_policies(policy: Reenrollment, expected: list[str]) -> None:
    flow, clock = _setup(reenrollment=policy.value)
    flow.handle(lead("o1", clock.now()))
    second = {**lead("o1", clock.now()), "id": "created-again"}
    outcomes = [o.what for o in flow.handle(second).sequences]
    # End whatever is active, then enter a third time.
    for enrollment in flow.storage.enrollments.active_for("o1"):  # type: ignore[union-attr]
        flow.sequences.unenroll(enrollment.enrollment_id, actor="admin")
    third = {**lead("o1", clock.now()), "id": "created-third"}
    outcomes += [o.what for o in flow.handle(third).sequences]
    assert outcomes == expected
    active = flow.storage.enrollments.active_for("o1")  # type: ignore[union-attr]
    assert len(active) <= 1


def test_pause_holds_due_steps_and_resume_runs_them_once() -> None:
    flow, clock = _setup()
    flow.handle(lead("o1", clock.now()))
    flow.sequences.pause("website-lead")
    assert flow.handle(lead("o2", clock.now())).sequences == []  # no new entries
    _run_until(flow, clock, MONDAY_10 + timedelta(hours=3))
    assert _calls(flow) == []
    assert _enrollment(flow).held
    flow.sequences.resume("website-lead")
    with pytest.raises(InvalidStateError):
        flow.sequences.resume("website-lead")
    _run_until(flow, clock, MONDAY_10 + timedelta(hours=3, minutes=3))
    assert _calls(flow) == ["Call the new website lead"]
    assert not _enrollment(flow).held


def test_a_new_version_keeps_enrollments_in_flight_on_theirs_by_default() -> None:
    flow, clock = _setup()
    flow.handle(lead("o1", clock.now()))
    changed = website_lead_sequence(name="New website lead v2")
    v2 = flow.sequences.publish(changed)
    assert v2.version == 2
    assert _enrollment(flow).sequence_version == 1
    flow.handle(lead("o2", clock.now()))
    assert _enrollment(flow, "o2").sequence_version == 2
    v3 = flow.sequences.publish(website_lead_sequence(), in_flight="move")
    assert {e.sequence_version for e in flow.storage.enrollments.list()} == {v3.version}  # type: ignore[union-attr]
    flow.sequences.publish(website_lead_sequence(), in_flight="end")
    ended = flow.storage.enrollments.list(state=EnrollmentState.ENDED)  # type: ignore[union-attr]
    assert len(ended) == 2


def test_manual_and_bulk_enrollment_with_a_dry_run() -> None:
    flow, clock = _setup()
    for opportunity_id in ("o2", "o3"):
        opportunities(flow).add(opportunity_id, owner="bob")
    flow.handle(lead("o1", clock.now()))
    dry = flow.sequences.enroll("website-lead", ["o1", "o2", "o3"], actor="admin", dry_run=True)
    assert dry.entering == 2
    assert dry.outcomes["o1"].what == "already_enrolled"
    assert flow.sequences.enrollments("o2") == []  # a dry run writes nothing
    done = flow.sequences.enroll("website-lead", ["o1", "o2", "o3"], actor="admin")
    assert done.entering == 2
    assert _enrollment(flow, "o2").enrolled_by == "admin"


def test_a_refused_definition_names_the_step_and_field() -> None:
    flow, _ = _setup()
    bad = website_lead_sequence(sequenceId="bad").model_dump(by_alias=True)
    bad["steps"][1]["action"]["actionType"] = "send_fax"
    with pytest.raises(InvalidInputError) as caught:
        flow.sequences.publish(bad)
    assert caught.value.field == "steps[1] (first-call).action.actionType"
    bad = website_lead_sequence(sequenceId="bad").model_dump(by_alias=True)
    bad["steps"][2]["conditions"][0]["operator"] = "resembles"
    with pytest.raises(InvalidInputError) as caught:
        flow.sequences.publish(bad)
    assert caught.value.field is not None and "steps[2] (call-outcome)" in caught.value.field
    with pytest.raises(NotFoundError):  # a refused definition stores nothing
        flow.sequences.get("bad")


def test_archive_ends_enrollments_and_stops_entries() -> None:
    flow, clock = _setup()
    flow.handle(lead("o1", clock.now()))
    archived = flow.sequences.archive("website-lead")
    assert archived.status is SequenceStatus.ARCHIVED
    assert _enrollment(flow).state is EnrollmentState.ENDED
    assert flow.handle(lead("o2", clock.now())).sequences == []
    _run_until(flow, clock, MONDAY_10 + timedelta(hours=2))
    assert _calls(flow) == []


def _mailer(sequence_id: str, **extra: object) -> dict[str, object]:
    return {
        "sequenceId": sequence_id,
        "name": sequence_id,
        "entry": {"eventType": "opportunity.created"},
        "steps": [
            {"id": "one", "kind": "action",
             "action": {"actionType": "send_email", "template": f"{sequence_id}-one"}},
            {"id": "two", "kind": "action",
             "action": {"actionType": "send_email", "template": f"{sequence_id}-two"}},
        ],
        **extra,
    }  # fmt: skip


def test_a_sequence_daily_cap_defers_the_next_message_to_the_next_day() -> None:
    flow, clock = sequence_flow()
    opportunities(flow).add("o1", owner="alice", email="lead@example.com", timezone="Asia/Tokyo")
    flow.sequences.publish(_mailer("capped", dailyCap=1, window={"start": "09:00", "end": "18:00"}))
    flow.handle(lead("o1", clock.now()))
    _run_until(flow, clock, MONDAY_10 + timedelta(minutes=5))
    # Monday 10:00 UTC is 19:00 in Tokyo: outside the window, so the first e-mail waits for
    # Tuesday 09:00 Tokyo (00:00 UTC); the second is over the cap that day: Wednesday 09:00.
    assert _sent(flow) == []
    _run_until(flow, clock, datetime(2026, 1, 6, 0, 5, tzinfo=UTC))
    assert _sent(flow) == ["capped-one"]
    enrollment = _enrollment(flow)
    assert enrollment.step_id == "two" and "daily cap of 1" in enrollment.history[-1].why
    _run_until(flow, clock, datetime(2026, 1, 6, 23, 55, tzinfo=UTC))
    assert _sent(flow) == ["capped-one"]  # deferred, not dropped ...
    _run_until(flow, clock, datetime(2026, 1, 7, 0, 5, tzinfo=UTC))
    assert _sent(flow) == ["capped-one", "capped-two"]  # ... and sent the next day, once
    assert _enrollment(flow).state is EnrollmentState.COMPLETED


def test_the_contact_cap_counts_across_sequences() -> None:
    from leadflow import FlowSettings

    flow, clock = sequence_flow(settings=FlowSettings(contact_daily_cap=2))
    opportunities(flow).add("o1", owner="alice", email="lead@example.com")
    flow.sequences.publish(_mailer("first"))
    flow.sequences.publish(_mailer("second"))
    flow.handle(lead("o1", clock.now()))
    _run_until(flow, clock, MONDAY_10 + timedelta(minutes=10))
    assert len(_sent(flow)) == 2  # two of the four today
    _run_until(flow, clock, datetime(2026, 1, 6, 0, 10, tzinfo=UTC))
    assert sorted(_sent(flow)) == ["first-one", "first-two", "second-one", "second-two"]
    assert all(e.state is EnrollmentState.COMPLETED for e in flow.sequences.enrollments("o1"))


def test_a_rule_enrolls_through_the_enroll_action() -> None:
    from leadflow import FollowUpRule

    flow, clock = sequence_flow()
    opportunities(flow).add("o1", owner="alice", email="lead@example.com")
    flow.sequences.publish(website_lead_sequence(entry=None))  # enrolled by rules only
    flow.rules.create(
        FollowUpRule.model_validate(
            {
                "ruleId": "quote-nurture",
                "name": "Quotes enter the website sequence",
                "trigger": {"eventType": "estimate.created"},
                "actions": [{"actionType": "enroll", "params": {"sequenceId": "website-lead"}}],
            }
        )
    )
    quote = {"type": "estimate.created", "id": "q1", "time": clock.now(),
             "payload": {"opportunityId": "o1"}}  # fmt: skip
    result = flow.handle(quote)
    assert [run.note for run in result.executed] == [
        f"enrolled: {_enrollment(flow).enrollment_id} in website-lead"
    ]
    assert flow.handle(quote).duplicates  # handled again: nobody enrolled twice
    assert len(flow.sequences.enrollments("o1")) == 1
    # A rule may name a sequence published later, so it is stored; while the sequence is not
    # active, its action is parked with the reason.
    flow.rules.create(
        FollowUpRule.model_validate(
            {
                "ruleId": "nowhere",
                "name": "unknown sequence",
                "trigger": {"eventType": "estimate.created"},
                "actions": [{"actionType": "enroll", "params": {"sequenceId": "missing"}}],
            }
        )
    )
    second = {**quote, "id": "q2"}
    [failed] = [run for run in flow.handle(second).executed if not run.ok]
    assert failed.state is ScheduledActionState.PARKED and "not active" in (failed.note or "")
    with pytest.raises(Exception, match="sequenceId"):
        flow.rules.create(
            FollowUpRule.model_validate(
                {
                    "ruleId": "bad",
                    "name": "no sequence",
                    "trigger": {"eventType": "estimate.created"},
                    "actions": [{"actionType": "enroll"}],
                }
            )
        )


def test_a_step_held_while_paused_shows_on_the_timeline_due_at_the_resume() -> None:
    from leadflow.runtime.sequence_timeline import read_step_entries

    flow, clock = _setup()
    flow.handle(lead("o1", clock.now()))
    due = flow.storage.scheduled.list(limit=10)[0].due_at
    flow.sequences.pause("website-lead")
    _run_until(flow, clock, MONDAY_10 + timedelta(hours=3))

    def current() -> tuple[str, datetime | None]:
        enrollment = _enrollment(flow)
        [entry] = [
            e
            for e in read_step_entries([enrollment], flow.storage.scheduled)
            if e.visit == enrollment.visit
        ]
        return entry.state, entry.due_at

    assert current() == ("held", due)
    resumed_at = clock.now()
    flow.sequences.resume("website-lead")
    assert resumed_at > due
    assert current() == ("pending", resumed_at)  # was: pending at its old due time
    _run_until(flow, clock, resumed_at + timedelta(minutes=3))
    assert _calls(flow) == ["Call the new website lead"]
