"""A refused completion never loses its follow-up (issue 9, "Nothing is lost").

Completing an activity stores an outbox entry, writes the completion, then delivers
``activity.completed`` into the rules. Every way that can fail (a stale or bad version, an
activity completed already or not at all, a store failing before or after its write,
concurrent completions, a process dying in between) must leave the follow-up delivered exactly
once in effect: now if the completion happened, by ``run_due`` after the lease if the process
died, and never if the completion did not happen. The follow-up rule below allows duplicates
and counts its runs, so a second delivery would show as a second activity and a second run.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from leadflow import (
    ActionContext,
    Activity,
    ConflictError,
    Event,
    FlowSettings,
    HandlerRegistry,
    InvalidInputError,
    InvalidStateError,
    LeadFlow,
    NotFoundError,
    Outcome,
    ScheduledActionState,
    StaleWriteError,
    UnavailableError,
)
from leadflow.ports import Storage
from leadflow.records import ActionKind

from .helpers import T0
from .latency import Crash, Dying, Slow, Tripwire
from .service_support import (
    EVERY_BACKEND,
    build_flow,
    clock_of,
    close_sql,
    payloads,
    restarted,
    rule,
)

CALL = rule(
    "call",
    "opportunity.created",
    [{"actionType": "create_activity", "subject": "Call", "assignTo": "lead_owner", "delay": 1}],
)
FOLLOW_UP = rule(
    "follow-up",
    "activity.completed",
    [
        {"actionType": "create_activity", "subject": "Return call", "delay": 24},
        {"actionType": "tally"},
    ],
    conditions=[{"field": "subject", "operator": "equals", "value": "Call"}],
    allowDuplicates=True,
)
LEASE = FlowSettings().action_lease


class Tally:
    """A handler counting its runs (thread-safe)."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, ctx: ActionContext) -> str:
        with self._lock:
            self.keys.append(ctx.idempotency_key)
        return "counted"


@pytest.fixture(params=EVERY_BACKEND)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    yield str(request.param)
    close_sql()


def setup(backend: str = "memory", **parts: Any) -> tuple[LeadFlow, Tally, Activity]:
    tally = Tally()
    handlers = HandlerRegistry.default()
    handlers.register("tally", tally)
    flow = build_flow(backend, rules=[CALL, FOLLOW_UP], handlers=handlers, **parts)
    flow.handle(
        Event(id="lead-1", type="opportunity.created", time=T0, payload={"opportunityId": "opp-1"})
    )
    [call] = flow.storage.activities.for_opportunity("opp-1")
    assert call.subject == "Call"
    clock_of(flow).advance(minutes=30)
    return flow, tally, call


def follow_ups(flow: LeadFlow) -> list[Activity]:
    return [
        a
        for a in flow.storage.activities.for_opportunity("opp-1")
        if a.metadata.automation_rule_id == "follow-up"
    ]


def settle(flow: LeadFlow) -> None:
    """Let every lease expire and every retry come due, running the due actions each time."""
    clock = clock_of(flow)
    for step in (LEASE + timedelta(seconds=1), timedelta(hours=1), timedelta(hours=30)):
        clock.advance(step)
        flow.run_due()


def open_deliveries(flow: LeadFlow) -> list[Any]:
    """Outbox entries still waiting (pending or claimed): none may be left behind."""
    return [
        a
        for state in (ScheduledActionState.PENDING, ScheduledActionState.CLAIMED)
        for a in flow.storage.scheduled.list(state)
        if a.kind is ActionKind.DELIVERY
    ]


def assert_delivered_once(flow: LeadFlow, tally: Tally) -> None:
    assert len(tally.keys) == 1
    assert len(follow_ups(flow)) == 1
    settle(flow)
    assert len(tally.keys) == 1, "run_due delivered the completion again"
    assert len(follow_ups(flow)) == 1
    assert open_deliveries(flow) == []


def complete(flow: LeadFlow, activity_id: str, **kwargs: Any) -> Any:
    kwargs.setdefault("outcome", Outcome.NO_ANSWER)
    kwargs.setdefault("completed_by", "alice")
    return flow.complete_activity(activity_id, **kwargs)


# ------------------------------------------------------------------ refused, then done


def test_the_plain_completion_delivers_once(backend: str) -> None:
    flow, tally, call = setup(backend)
    result = complete(flow, call.activity_id)
    assert result.follow_up is not None and result.follow_up.matched_rules == ["follow-up"]
    assert_delivered_once(flow, tally)


def test_a_stale_version_refused_then_the_right_one_delivers_once(backend: str) -> None:
    flow, tally, call = setup(backend)
    with pytest.raises(StaleWriteError):
        complete(flow, call.activity_id, expected_version=call.version + 1)
    assert tally.keys == [] and follow_ups(flow) == []
    complete(flow, call.activity_id, expected_version=call.version)
    assert_delivered_once(flow, tally)


@pytest.mark.parametrize("version", ["1", 1.0, True, -1])
def test_a_bad_version_value_refused_then_a_good_completion_delivers_once(
    backend: str, version: Any
) -> None:
    flow, tally, call = setup(backend)
    with pytest.raises((InvalidInputError, StaleWriteError)):
        complete(flow, call.activity_id, expected_version=version)
    assert flow.storage.activities.get(call.activity_id).completed_date is None
    settle(flow)
    assert tally.keys == [] and follow_ups(flow) == []
    complete(flow, call.activity_id)
    assert_delivered_once(flow, tally)


def test_completing_twice_is_refused_and_delivers_once(backend: str) -> None:
    flow, tally, call = setup(backend)
    complete(flow, call.activity_id)
    with pytest.raises(InvalidStateError):
        complete(flow, call.activity_id, outcome=Outcome.SUCCESSFUL)
    assert_delivered_once(flow, tally)
    assert flow.storage.activities.get(call.activity_id).outcome is Outcome.NO_ANSWER


def test_an_unknown_activity_is_not_found_and_leaves_nothing_behind(backend: str) -> None:
    flow, tally, _ = setup(backend)
    before = flow.storage.scheduled.list()
    with pytest.raises(NotFoundError):
        complete(flow, "no-such-activity")
    settle(flow)
    assert tally.keys == [] and follow_ups(flow) == []
    assert len(flow.storage.scheduled.list()) == len(before)


# ------------------------------------------------------------------ a failing store


def test_a_store_failing_before_its_write_delivers_nothing_until_completed(backend: str) -> None:
    def refuse(name: str, args: Any, kwargs: Any) -> None:
        raise UnavailableError("connection refused")

    flow, tally, call = setup(backend)
    flaky = Tripwire(flow.storage.activities, before={"complete": refuse})
    broken = restarted(flow, storage=dataclasses.replace(flow.storage, activities=flaky))
    with pytest.raises(UnavailableError):
        complete(broken, call.activity_id)
    settle(flow)
    assert tally.keys == [] and follow_ups(flow) == []
    complete(flow, call.activity_id)
    assert_delivered_once(flow, tally)


def test_a_reply_lost_after_the_write_still_delivers_once(backend: str) -> None:
    """The write happened but the store's reply was lost (a network error after the insert):
    the caller sees the error, and the follow-up is still delivered, once."""

    def lose_reply(name: str, args: Any, kwargs: Any) -> None:
        raise UnavailableError("connection reset after the write")

    flow, tally, call = setup(backend)
    flaky = Tripwire(flow.storage.activities, after={"complete": lose_reply})
    broken = restarted(flow, storage=dataclasses.replace(flow.storage, activities=flaky))
    with pytest.raises(UnavailableError):
        complete(broken, call.activity_id)
    assert flow.storage.activities.get(call.activity_id).completed_date is not None
    settle(flow)
    assert len(tally.keys) == 1, "the completion happened but its follow-up was lost"
    assert_delivered_once(flow, tally)
    # A retry by the caller is refused (already done) and changes nothing.
    with pytest.raises(InvalidStateError):
        complete(flow, call.activity_id)
    assert_delivered_once(flow, tally)


def test_a_delivery_failing_transiently_is_retried_by_run_due(backend: str) -> None:
    flow, tally, call = setup(backend)
    failures = {"left": 1}

    def outage(name: str, args: Any, kwargs: Any) -> None:
        # One action (schedule) or a batch (schedule_many, the SQL stores' path).
        actions = args[0] if isinstance(args[0], list | tuple) else [args[0]]
        if any(a.kind is ActionKind.RULE for a in actions) and failures["left"]:
            failures["left"] -= 1
            raise UnavailableError("scheduled store unreachable")

    flaky = Tripwire(flow.storage.scheduled, before={"schedule": outage, "schedule_many": outage})
    broken = restarted(flow, storage=dataclasses.replace(flow.storage, scheduled=flaky))
    result = complete(broken, call.activity_id)
    assert result.activity.completed_date is not None
    assert tally.keys == []
    settle(flow)
    assert len(tally.keys) == 1 and len(follow_ups(flow)) == 1
    assert_delivered_once(flow, tally)


# ------------------------------------------------------------------ concurrency


@pytest.mark.parametrize("trial", range(4))
def test_concurrent_completions_of_one_activity_deliver_once(trial: int) -> None:
    threads = 8
    flow, tally, call = setup("memory")
    slow = restarted(
        flow, storage=dataclasses.replace(flow.storage, activities=Slow(flow.storage.activities))
    )
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        barrier.wait()
        try:
            complete(slow, call.activity_id, expected_version=call.version, completed_by="alice")
            what = "done"
        except ConflictError as exc:
            what = type(exc).__name__
        with lock:
            outcomes.append(what)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert sorted(outcomes).count("done") == 1, outcomes
    assert_delivered_once(flow, tally)


# ------------------------------------------------------------------ a process dying


def dying_flow(flow: LeadFlow, when: str) -> LeadFlow:
    """A second instance on ``flow``'s stores whose process dies right ``when`` ("before" or
    "after") the completion is written: nothing it does after that reaches any store."""
    real = flow.storage
    stores = ("activities", "rules", "scheduled", "counters", "audit", "jobs")
    proxies: dict[str, Any] = {
        name: Dying(getattr(real, name))
        for name in (*stores, "sequences", "enrollments")
        if getattr(real, name) is not None
    }

    def die(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for proxy in proxies.values():
            proxy.die()
        raise Crash("killed")

    hook = {"complete": die}
    if when == "before":
        activities = Tripwire(proxies["activities"], before=hook)
    else:
        activities = Tripwire(proxies["activities"], after=hook)
    storage = Storage(**{**proxies, "activities": activities})
    return restarted(flow, storage=storage)


def test_dying_after_the_write_delivers_once_when_the_lease_expires(backend: str) -> None:
    flow, tally, call = setup(backend)
    doomed = dying_flow(flow, "after")
    with pytest.raises(Crash):
        complete(doomed, call.activity_id)
    assert flow.storage.activities.get(call.activity_id).completed_date is not None
    [entry] = open_deliveries(flow)
    assert entry.state is ScheduledActionState.CLAIMED
    survivor = restarted(flow)
    clock = clock_of(flow)
    clock.advance(LEASE - timedelta(seconds=1))
    survivor.run_due()
    assert tally.keys == [], "delivered while the dead worker's lease still held"
    clock.advance(seconds=2)
    report = survivor.run_due()
    assert report.succeeded == 1
    assert_delivered_once(flow, tally)
    assert [p["ruleId"] for p in payloads(flow, "activity.created")][-1] == "follow-up"


def test_dying_before_the_write_delivers_nothing_and_a_later_completion_once(
    backend: str,
) -> None:
    flow, tally, call = setup(backend)
    doomed = dying_flow(flow, "before")
    with pytest.raises(Crash):
        complete(doomed, call.activity_id)
    assert flow.storage.activities.get(call.activity_id).completed_date is None
    settle(flow)
    assert tally.keys == [] and follow_ups(flow) == []
    assert open_deliveries(flow) == []  # the orphaned entry was settled, not kept forever
    complete(flow, call.activity_id)
    assert_delivered_once(flow, tally)


def test_a_logged_call_recorded_completed_delivers_once(backend: str) -> None:
    flow, tally, _ = setup(backend)
    logged = Activity.model_validate(
        {
            "activityId": "logged-1",
            "opportunityId": "opp-1",
            "activityType": "call",
            "subject": "Call",
            "assignedTo": "alice",
            "completedDate": flow.now(),
            "completedBy": "alice",
            "outcome": "no_answer",
        }
    )
    flow.record_activity(logged)
    assert_delivered_once(flow, tally)
    with pytest.raises(ConflictError):
        flow.record_activity(logged)
    assert_delivered_once(flow, tally)
