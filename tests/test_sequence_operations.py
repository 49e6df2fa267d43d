"""``Operations.sequences``: every operation against every role, on the principal's own
opportunity and on another's (answers derived from the policy table, under the default policy
and one that turns every answer round); the audit trail of every change; bad input refused
naming the field, with nothing written; the timeline with the sequence steps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from leadflow import (
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    LeadFlow,
    NotFoundError,
    PermissionDeniedError,
    Principal,
    Role,
)
from leadflow.access import Policy
from leadflow.access.sequence_operations import SequenceOperations
from leadflow.sequences import EnrollmentState, SequenceStatus

from .access_support import ADMIN, ALICE, BOB, BY_ROLE, DISPATCHER, SUPER, World
from .sequence_ops_support import (
    POLICIES,
    SEQUENCE,
    enrollment_of,
    full_snapshot,
    sequence_world,
)

Call = Callable[[World, Principal], Any]


SEQUENCE_CALLS: dict[str, tuple[str, Call]] = {
    "create": (
        "sequence.write",
        lambda w, p: w.ops.sequences.create(p, {**SEQUENCE, "sequenceId": "created"}),
    ),
    "publish": ("sequence.write", lambda w, p: w.ops.sequences.publish(p, "nurture")),
    "pause": ("sequence.write", lambda w, p: w.ops.sequences.pause(p, "nurture")),
    "resume": ("sequence.write", lambda w, p: w.ops.sequences.resume(p, "nurture")),
    "archive": ("sequence.write", lambda w, p: w.ops.sequences.archive(p, "nurture")),
    "get": ("sequence.read", lambda w, p: w.ops.sequences.get(p, "nurture")),
    "list": ("sequence.read", lambda w, p: w.ops.sequences.list(p)),
    "report": ("sequence.report", lambda w, p: w.ops.sequences.report(p, "nurture")),
}

Scoped = Callable[[World, Principal, str], Any]


def _matching(world: World, principal: Principal, user: str) -> Any:
    """Enroll by filter the lead ``new-<user>`` (``user``'s), seen arriving a moment ago."""
    from leadflow.facts import LeadArrival

    analytics = world.flow.storage.analytics
    assert analytics is not None
    now = world.clock.now()
    analytics.record_arrival(
        LeadArrival(event_id=f"arrival-{user}", opportunity_id=f"new-{user}", arrived_at=now,
                    owner=user)
    )  # fmt: skip
    where = {"arrivedFrom": now, "arrivedBefore": now + timedelta(seconds=1), "owners": [user]}
    return world.ops.sequences.enroll_matching(principal, "nurture", where)


OPPORTUNITY_CALLS: dict[str, Scoped] = {
    # method: a call on ``user``'s things (the principal's own, or bob's)
    "enroll": lambda w, p, user: w.ops.sequences.enroll(p, "nurture", [f"new-{user}"]),
    "enroll_matching": _matching,
    "unenroll": lambda w, p, user: w.ops.sequences.unenroll(
        p, enrollment_of(w.flow, f"opp-{user}")
    ),
    "enrollments": lambda w, p, user: w.ops.sequences.enrollments(p, f"opp-{user}"),
    "timeline": lambda w, p, user: w.ops.sequences.timeline(p, f"opp-{user}"),
}


def test_every_public_method_is_in_the_matrix() -> None:
    public = {
        name
        for name, value in vars(SequenceOperations).items()
        if callable(value) and not name.startswith("_")
    }
    assert public == set(SEQUENCE_CALLS) | set(OPPORTUNITY_CALLS)


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("method", sorted(SEQUENCE_CALLS))
def test_sequence_operations_follow_the_table(policy_name: str, role: Role, method: str) -> None:
    policy = POLICIES[policy_name]
    world = sequence_world(policy)
    operation, call = SEQUENCE_CALLS[method]
    principal = BY_ROLE[role]
    if method == "resume":
        world.flow.sequences.pause("nurture")
    if role in policy.table[operation]:
        call(world, principal)
    else:
        before = full_snapshot(world.flow)
        with pytest.raises(PermissionDeniedError, match=operation.replace(".", r"\.")):
            call(world, principal)
        assert full_snapshot(world.flow) == before


def _expected(policy: Policy, role: Role, method: str, own: bool) -> Any:
    """What the table says: an exception type, or "ok" / "empty" / "no steps"."""
    has = {op for op, roles in policy.table.items() if role in roles}
    if method in ("enroll", "enroll_matching", "unenroll"):
        if "enrollment.write" not in has:
            return PermissionDeniedError
        if own or "enrollment.write_any" in has:
            return "ok"
        return NotFoundError if method == "unenroll" else PermissionDeniedError
    if "activity.read" not in has:
        return PermissionDeniedError
    if own or "activity.read_all" in has:
        return "ok"
    return "hidden"


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("whose", ["own", "other"])
@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("method", sorted(OPPORTUNITY_CALLS))
def test_opportunity_operations_follow_the_table_and_ownership(
    policy_name: str, whose: str, role: Role, method: str
) -> None:
    policy = POLICIES[policy_name]
    world = sequence_world(policy)
    principal = BY_ROLE[role]
    user = principal.user_id if whose == "own" else BOB.user_id
    expected = _expected(policy, role, method, whose == "own")
    before = full_snapshot(world.flow)
    if isinstance(expected, type):
        with pytest.raises(expected) as caught:
            OPPORTUNITY_CALLS[method](world, principal, user)
        if expected is NotFoundError:
            assert "not found" in str(caught.value)
        assert full_snapshot(world.flow) == before
        return
    result = OPPORTUNITY_CALLS[method](world, principal, user)
    if method in ("enroll", "enroll_matching"):
        assert result.entering == 1
        assert world.flow.sequences.enrollments(f"new-{user}")[0].enrolled_by == principal.user_id
    elif method == "unenroll":
        assert result.state is EnrollmentState.UNENROLLED
    elif method == "enrollments":
        assert len(result) == (1 if expected == "ok" else 0)
        assert full_snapshot(world.flow) == before
    else:
        steps = [e for e in result if e.kind == "sequence_step"]
        assert bool(steps) == (expected == "ok")
        assert full_snapshot(world.flow) == before


# --------------------------------------------------------------------------- audit


def _audit(world: World, subject: str) -> list[tuple[str, str, str]]:
    return [(e.subject_id, e.change, e.actor) for e in world.ops.audit_trail(SUPER, subject)]


def test_every_change_is_audited_with_actor_before_and_after() -> None:
    world = sequence_world()
    ops = world.ops.sequences
    ops.create(ADMIN, {**SEQUENCE, "sequenceId": "second", "name": "Second"}, status="draft")
    v2 = ops.publish(ADMIN, "second")
    assert (v2.version, v2.status) == (2, SequenceStatus.ACTIVE)
    ops.pause(ADMIN, "nurture")
    ops.resume(ADMIN, "nurture")
    report = ops.enroll(DISPATCHER, "nurture", ["new-alice", "new-bob"])
    ended = ops.unenroll(ALICE, report.outcomes["new-alice"].enrollment_id)
    ops.publish(ADMIN, "nurture", {**SEQUENCE, "name": "Nurture v2"}, in_flight="end")
    assert _audit(world, "sequence") == [
        ("second", "created", "admin-1"),
        ("second", "published", "admin-1"),
        ("nurture", "paused", "admin-1"),
        ("nurture", "resumed", "admin-1"),
        ("nurture", "published", "admin-1"),
    ]
    changes = _audit(world, "enrollment")
    assert changes[:3] == [
        (report.outcomes["new-alice"].enrollment_id, "enrolled", "disp-1"),
        (report.outcomes["new-bob"].enrollment_id, "enrolled", "disp-1"),
        (ended.enrollment_id, "unenrolled", "alice"),
    ]
    # The new version ended every enrollment still active on version 1 (5 + new-bob).
    assert [c for _, c, _ in changes[3:]] == ["ended"] * 6
    [unenrolled] = world.ops.audit_trail(SUPER, "enrollment", ended.enrollment_id)[1:]
    assert unenrolled.before is not None and unenrolled.before["state"] == "active"
    assert unenrolled.after is not None and unenrolled.after["state"] == "unenrolled"
    [published] = [e for e in world.ops.audit_trail(SUPER, "sequence", "nurture")
                   if e.change == "published"]  # fmt: skip
    assert published.before is not None and published.before["version"] == 1
    assert published.after is not None and published.after["name"] == "Nurture v2"
    assert published.note == "version 2, in flight: end"


def test_archive_audits_the_enrollments_it_ends() -> None:
    world = sequence_world()
    world.ops.sequences.archive(SUPER, "nurture")
    changes = _audit(world, "enrollment")
    assert len(changes) == 5 and {c for _, c, _ in changes} == {"ended"}
    assert _audit(world, "sequence") == [("nurture", "archived", "root")]
    with pytest.raises(InvalidStateError):  # an archived sequence enrolls nobody
        world.ops.sequences.enroll(SUPER, "nurture", ["new-root"])


def test_a_dry_run_and_the_reads_write_nothing() -> None:
    world = sequence_world()
    before = full_snapshot(world.flow)
    dry = world.ops.sequences.enroll(ALICE, "nurture", ["new-alice", "opp-alice"], dry_run=True)
    assert {k: o.what for k, o in dry.outcomes.items()} == {
        "new-alice": "would_enroll",
        "opp-alice": "already_enrolled",
    }
    world.ops.sequences.report(ADMIN, "nurture")
    world.ops.sequences.timeline(ADMIN, "opp-alice")
    world.ops.sequences.list(ALICE)
    assert full_snapshot(world.flow) == before


# --------------------------------------------------------------------------- bad input


BAD: list[tuple[str, Callable[[World], Any], type[Exception], str | None]] = [
    ("create: a step that does not exist", lambda w: w.ops.sequences.create(
        ADMIN, {**SEQUENCE, "sequenceId": "x", "steps": [{"id": "g", "kind": "goto",
                                                           "target": "nowhere"}]}),
     ValidationError, "steps[0] (g).target"),
    ("create: a bad step id", lambda w: w.ops.sequences.create(
        ADMIN, {**SEQUENCE, "sequenceId": "x", "steps": [{"id": "Bad id", "kind": "exit"}]}),
     ValidationError, "steps.0.exit.id"),
    ("create: unknown handler", lambda w: w.ops.sequences.create(
        ADMIN, {**SEQUENCE, "sequenceId": "x", "steps": [
            {"id": "a", "kind": "action", "action": {"actionType": "send_fax"}}]}),
     InvalidInputError, "steps[0] (a).action.actionType"),
    ("create: exists", lambda w: w.ops.sequences.create(ADMIN, SEQUENCE), DuplicateError, None),
    ("create: not a mapping", lambda w: w.ops.sequences.create(ADMIN, ["x"]),  # type: ignore[arg-type]
     InvalidInputError, "definition"),
    ("create: bad status", lambda w: w.ops.sequences.create(
        ADMIN, {**SEQUENCE, "sequenceId": "x"}, status="archived"), InvalidInputError, "status"),
    ("publish: unknown", lambda w: w.ops.sequences.publish(ADMIN, "nope"), NotFoundError, None),
    ("publish: another sequence's definition", lambda w: w.ops.sequences.publish(
        ADMIN, "nurture", {**SEQUENCE, "sequenceId": "other"}), InvalidInputError, "sequenceId"),
    ("publish: bad in_flight", lambda w: w.ops.sequences.publish(
        ADMIN, "nurture", in_flight="teleport"), InvalidInputError, "in_flight"),
    ("publish: in_flight not a string", lambda w: w.ops.sequences.publish(
        ADMIN, "nurture", in_flight=["keep"]), InvalidInputError, "in_flight"),  # type: ignore[arg-type]
    ("publish: bad id", lambda w: w.ops.sequences.publish(ADMIN, {"$ne": 1}),  # type: ignore[arg-type]
     InvalidInputError, "sequence_id"),
    ("resume: not paused", lambda w: w.ops.sequences.resume(ADMIN, "nurture"),
     InvalidStateError, None),
    ("get: bad version", lambda w: w.ops.sequences.get(ADMIN, "nurture", 0),
     InvalidInputError, "version"),
    ("enroll: a string", lambda w: w.ops.sequences.enroll(ADMIN, "nurture", "opp-bob"),
     InvalidInputError, "opportunity_ids"),
    ("enroll: none", lambda w: w.ops.sequences.enroll(ADMIN, "nurture", []),
     InvalidInputError, "opportunity_ids"),
    ("enroll: a bad id", lambda w: w.ops.sequences.enroll(ADMIN, "nurture", ["new-bob", 3]),
     InvalidInputError, "opportunity_ids[1]"),
    ("enroll: unknown opportunity", lambda w: w.ops.sequences.enroll(
        ADMIN, "nurture", ["new-bob", "opp-gone"]), NotFoundError, None),
    ("enroll: one not hers", lambda w: w.ops.sequences.enroll(
        ALICE, "nurture", ["new-alice", "new-bob"]), PermissionDeniedError, None),
    ("enroll: bad dry_run", lambda w: w.ops.sequences.enroll(
        ADMIN, "nurture", ["new-bob"], dry_run="yes"), InvalidInputError, "dry_run"),  # type: ignore[arg-type]
    ("enroll: unknown sequence", lambda w: w.ops.sequences.enroll(
        ADMIN, "nope", ["new-bob"]), NotFoundError, None),
    ("unenroll: missing", lambda w: w.ops.sequences.unenroll(ADMIN, "enr-gone"),
     NotFoundError, None),
    ("report: bad min_per_arm", lambda w: w.ops.sequences.report(
        ADMIN, "nurture", min_per_arm=0), InvalidInputError, "min_per_arm"),
    ("enrollments: bad id", lambda w: w.ops.sequences.enrollments(ADMIN, "a b"),
     InvalidInputError, "opportunity_id"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "call", "error", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    name: str, call: Callable[[World], Any], error: type[Exception], field: str | None
) -> None:
    world = sequence_world()
    before = full_snapshot(world.flow)
    with pytest.raises(error) as caught:
        call(world)
    if isinstance(caught.value, ValidationError):  # the field: in the location or the message
        problem = caught.value.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        assert field == where or (field is not None and field in problem["msg"]), problem
    elif field is not None:
        assert getattr(caught.value, "field", None) == field
    assert full_snapshot(world.flow) == before


def test_unenrolling_twice_is_a_conflict() -> None:
    world = sequence_world()
    enrollment_id = enrollment_of(world.flow, "opp-alice")
    world.ops.sequences.unenroll(ALICE, enrollment_id)
    with pytest.raises(InvalidStateError):
        world.ops.sequences.unenroll(ALICE, enrollment_id)


def test_a_flow_without_sequences_refuses_writes_and_reads_none() -> None:
    import dataclasses

    from leadflow.stores.memory import memory_storage

    storage = dataclasses.replace(memory_storage(), sequences=None, enrollments=None)
    flow = LeadFlow.in_memory(storage=storage)
    from leadflow import Operations

    ops = Operations(flow)
    with pytest.raises(InvalidStateError):
        ops.sequences.create(ADMIN, SEQUENCE)
    assert ops.sequences.enrollments(ADMIN, "opp-1") == []
    assert ops.sequences.timeline(ADMIN, "opp-1") == []


# --------------------------------------------------------------------------- timeline


def test_the_timeline_shows_done_pending_and_skipped_steps_among_activities() -> None:
    world = sequence_world()
    flow, clock = world.flow, world.clock
    # Past the first wait: the split decided, the call made, the day's wait pending.
    for _ in range(62):
        clock.advance(timedelta(minutes=1))
        flow.run_due()
    [enrollment] = flow.sequences.enrollments("opp-alice")
    variant = enrollment.variants["split"]
    entries = world.ops.sequences.timeline(ADMIN, "opp-alice")
    steps = [(e.step.step_id, e.step.state) for e in entries if e.step is not None]
    # Variant A calls first; B waits at once (the variant hangs on the enrollment's id).
    called = [("call", "done")] if variant == "A" else []
    assert steps == [("wait", "done"), ("split", "done"), *called, ("later", "pending")]
    split = next(e.step for e in entries if e.step is not None and e.step.step_id == "split")
    assert split.why.startswith(f"variant {variant}")
    made = [e.activity for e in entries if e.activity is not None and e.activity.subject == "Call"]
    if variant == "A":
        call = next(e.step for e in entries if e.step is not None and e.step.step_id == "call")
        assert call.activity_id is not None and [a.activity_id for a in made] == [call.activity_id]
    pending = entries[-1].step
    assert pending is not None and pending.due_at == pending.at
    assert pending.due_at is not None and pending.due_at > clock.now() + timedelta(hours=23)
    # Alice sees her own activities and, as the owner, the steps.
    mine = world.ops.sequences.timeline(ALICE, "opp-alice")
    assert {e.activity.assigned_to for e in mine if e.activity is not None} == {"alice"}
    assert [e.step for e in mine if e.step is not None] == [e.step for e in entries if e.step]
    # A goal cancels what is pending and ends the enrollment.
    flow.handle({"type": "opportunity.status_changed", "id": "won-alice", "time": clock.now(),
                 "payload": {"opportunityId": "opp-alice", "newStatus": "won"}})  # fmt: skip
    entries = world.ops.sequences.timeline(ALICE, "opp-alice")
    states = [(e.step.step_id, e.step.state, e.step.outcome) for e in entries if e.step]
    assert states[-2:] == [
        ("later", "cancelled", "goal_reached"),
        ("later", "ended", "goal_reached"),
    ]
    times = [e.at for e in entries if e.at is not None]
    assert times == sorted(times)
