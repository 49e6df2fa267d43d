"""The LeadFlow facade end to end, on the in-memory and the mongomock stores, with a controlled
clock: idempotency, crashes, retries, cascades, duplicate protection, assignment and event
sinks. (The seed's workflow examples are in test_runtime_seed.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from leadflow import (
    ActionContext,
    CascadeDepthError,
    Event,
    FlowSettings,
    HandlerRegistry,
    LeadFlow,
    ManualClock,
    Outcome,
    ScheduledActionState,
    default_rules,
)
from leadflow.adapters import CallbackEventSink

from .helpers import T0
from .latency import Crash, Tripwire
from .service_support import (
    ADMIN,
    ALICE,
    EVERY_BACKEND,
    build_flow,
    clock_of,
    close_sql,
    messenger_of,
    new_storage,
    notifier_of,
    opportunities_of,
    ops,
    restarted,
    rule,
    sink,
)


@pytest.fixture(params=EVERY_BACKEND)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    yield str(request.param)
    close_sql()


def created(opp: str = "opp-1", *, event_id: str = "evt-1", **payload: Any) -> Event:
    return Event(
        id=event_id,
        type="opportunity.created",
        time=T0,
        payload={"opportunityId": opp, "customerId": "cust-1", **payload},
    )


def won_rule() -> list[Any]:
    return [r for r in default_rules() if r.rule_id == "default-won-opportunity"]


def test_won_and_urgent_notifications_reach_the_notifier_and_the_sink(backend: str) -> None:
    flow = build_flow(backend)
    flow.handle(
        Event(
            type="status_changed", time=T0, payload={"opportunityId": "opp-4", "newStatus": "won"}
        )
    )
    flow.handle(created("opp-1", event_id="evt-urgent", priority="urgent", leadSource="website"))
    sent = notifier_of(flow).sent
    assert [(n.template, n.recipients) for n in sent] == [
        ("won_opportunity", ("bob",)),
        ("urgent_lead", ("alice",)),
    ]
    names = sink(flow).names()
    assert "notification.won_opportunity" in names
    assert "notification.urgent_lead" in names
    # the urgent rule stops the website rule: one call, not two
    calls = flow.storage.activities.for_opportunity("opp-1")
    assert [a.subject for a in calls] == ["Call urgent lead now"]


# ---------------------------------------------------------------- exactly once


def test_handling_the_same_event_twice_creates_nothing_twice(backend: str) -> None:
    flow = build_flow(backend)
    first = flow.handle(created(leadSource="referral"))
    second = flow.handle(created(leadSource="referral"))
    assert len(first.executed) == 2 and first.duplicates == []
    assert second.executed == [] and len(second.duplicates) == 2
    assert len(flow.storage.activities.for_opportunity("opp-1")) == 1
    assert len(notifier_of(flow).sent) == 1


def _redelivered_once(flow: LeadFlow) -> None:
    """On an atomic unit of work (SQL) the event's unit rolled back whole: nothing of it is
    stored, no worker finds anything to run, and the host's redelivery does it all, once."""
    assert flow.storage.activities.for_opportunity("opp-1") == []
    assert flow.storage.scheduled.list(limit=10) == []
    clock_of(flow).advance(minutes=6)
    assert flow.run_due().claimed == 0
    again = flow.handle(created(leadSource="website"))
    assert again.duplicates == [] and again.executed
    assert len(flow.storage.activities.for_opportunity("opp-1")) == 1
    clock_of(flow).advance(minutes=10)
    assert flow.run_due().claimed == 0
    assert len(flow.storage.activities.for_opportunity("opp-1")) == 1


def test_crash_between_storing_and_executing_runs_the_action_once_later(backend: str) -> None:
    handlers = HandlerRegistry.default()
    spec = handlers.get("create_activity")
    assert spec is not None
    crashes = {"left": 1}

    def crashing(ctx: ActionContext) -> str | None:
        if crashes["left"]:
            crashes["left"] -= 1
            raise Crash
        return spec.handler(ctx)

    handlers.register(
        "create_activity", crashing, params=spec.params, eager=spec.eager, replace=True
    )
    flow = build_flow(backend, handlers=handlers)
    clock = clock_of(flow)
    with pytest.raises(Crash):
        flow.handle(created(leadSource="website"))
    assert flow.storage.activities.for_opportunity("opp-1") == []
    if flow.storage.unit_of_work.atomic:
        _redelivered_once(flow)
        return
    # The host redelivers the event: the action is stored, so nothing is done twice...
    again = flow.handle(created(leadSource="website"))
    assert again.executed == [] and len(again.duplicates) == 1
    # ...and when the dead worker's lease expires, the due-runner carries it out once.
    assert flow.run_due().claimed == 0
    clock.advance(minutes=5)
    report = flow.run_due()
    assert (report.claimed, report.succeeded) == (1, 1)
    assert len(flow.storage.activities.for_opportunity("opp-1")) == 1
    clock.advance(minutes=10)
    assert flow.run_due().claimed == 0


def test_crash_after_the_write_but_before_marking_done_creates_one_activity(backend: str) -> None:
    storage = new_storage(backend)
    calls = {"n": 0}

    def die_once(name: str, args: Any, kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Crash

    wired = Tripwire(storage.activities, after={"add": die_once})
    flow = build_flow(backend, storage=storage, activities=wired)
    with pytest.raises(Crash):
        flow.handle(created(leadSource="website"))
    if flow.storage.unit_of_work.atomic:
        _redelivered_once(flow)
        return
    clock_of(flow).advance(minutes=6)
    report = flow.run_due()
    assert report.succeeded == 1
    assert report.runs[0].note is not None and "already created" in report.runs[0].note
    assert len(flow.storage.activities.for_opportunity("opp-1")) == 1


def test_a_handler_failing_three_times_then_succeeding_is_retried_with_backoff(
    backend: str,
) -> None:
    handlers = HandlerRegistry.default()
    attempts: list[Any] = []

    def flaky(ctx: ActionContext) -> str:
        attempts.append(ctx.now)
        if len(attempts) <= 3:
            raise RuntimeError("CRM is down")
        return "ok"

    handlers.register("sync_crm", flaky)
    flow = build_flow(
        backend,
        handlers=handlers,
        rules=[rule("sync", "opportunity.created", [{"actionType": "sync_crm"}])],
    )
    clock = clock_of(flow)
    result = flow.handle(created())
    assert [r.ok for r in result.executed] == [False]
    for wait in (30, 60, 120):  # the default backoff: 30 s, doubling
        assert flow.run_due().claimed == 0
        clock.advance(seconds=wait)
        report = flow.run_due()
        assert report.claimed == 1
    assert report.succeeded == 1
    assert [t - T0 for t in attempts] == [
        timedelta(0),
        timedelta(seconds=30),
        timedelta(seconds=90),
        timedelta(seconds=210),
    ]
    [action] = flow.storage.scheduled.list(ScheduledActionState.DONE)
    assert action.attempts == 4
    assert action.last_error == "RuntimeError: CRM is down"


def test_a_handler_that_always_fails_is_parked_and_can_be_retried_by_an_admin(backend: str) -> None:
    handlers = HandlerRegistry.default()
    fail = {"on": True}

    def broken(ctx: ActionContext) -> str:
        if fail["on"]:
            raise RuntimeError("boom")
        return "fixed"

    handlers.register("broken", broken)
    flow = build_flow(
        backend,
        handlers=handlers,
        rules=[rule("b", "opportunity.created", [{"actionType": "broken"}])],
    )
    admin = ops(flow)
    clock = clock_of(flow)
    flow.handle(created())
    for _ in range(10):
        clock.advance(hours=1)
        flow.run_due()
    [parked] = admin.list_parked_actions(ADMIN)
    assert parked.attempts == 5 and parked.last_error == "RuntimeError: boom"
    assert "action.parked" in sink(flow).names()
    fail["on"] = False
    admin.retry_action(ADMIN, parked.action_id)
    assert flow.run_due().succeeded == 1
    assert admin.list_parked_actions(ADMIN) == []
    [entry] = admin.audit_trail(ADMIN, "action", parked.action_id)
    assert (entry.change, entry.actor) == ("retried", ADMIN.user_id)


def test_delayed_non_activity_actions_wait_in_the_store_until_due(backend: str) -> None:
    flow = build_flow(
        backend,
        rules=[
            rule(
                "nudge",
                "opportunity.created",
                [{"actionType": "send_email", "template": "welcome", "delay": 2}],
            )
        ],
    )
    clock = clock_of(flow)
    result = flow.handle(created())
    assert result.executed == [] and len(result.scheduled) == 1
    clock.advance(hours=1, minutes=59)
    assert flow.run_due().claimed == 0
    clock.advance(minutes=1)
    assert flow.run_due().succeeded == 1
    [message] = messenger_of(flow).sent
    assert (message.channel, message.to, message.template) == (
        "email",
        "opp-1@example.com",
        "welcome",
    )
    assert message.key == result.scheduled[0].idempotency_key


# ---------------------------------------------------------------- cascades


def test_update_status_cascades_into_the_rules(backend: str) -> None:
    flow = build_flow(
        backend,
        rules=[
            rule(
                "hot-to-won",
                "opportunity.created",
                [{"actionType": "update_status", "params": {"status": "won"}}],
                conditions=[{"field": "temperature", "operator": "equals", "value": "hot"}],
            ),
            *won_rule(),
        ],
    )
    result = flow.handle(created("opp-2", temperature="hot"))
    assert opportunities_of(flow).status("opp-2") == "won"
    [cascade] = result.cascades
    assert cascade.event.type == "opportunity.status_changed"
    assert cascade.event.payload["oldStatus"] == "new"
    assert cascade.matched_rules == ["default-won-opportunity"]
    assert [a.subject for a in flow.storage.activities.for_opportunity("opp-2")] == [
        "Job kickoff call"
    ]


def test_a_rule_loop_is_stopped_by_the_depth_limit_keeping_what_was_done(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    ping = rule(
        "ping",
        "opportunity.status_changed",
        [{"actionType": "update_status", "params": {"status": "pong"}}],
        conditions=[{"field": "newStatus", "operator": "equals", "value": "ping"}],
    )
    pong = rule(
        "pong",
        "opportunity.status_changed",
        [{"actionType": "update_status", "params": {"status": "ping"}}],
        conditions=[{"field": "newStatus", "operator": "equals", "value": "pong"}],
    )
    flow = build_flow(backend, rules=[ping, pong], settings=FlowSettings(max_cascade_depth=3))
    with caplog.at_level("ERROR", logger="leadflow"):
        result = flow.handle(
            Event(
                type="opportunity.status_changed",
                time=T0,
                payload={"opportunityId": "opp-1", "newStatus": "ping"},
            )
        )
    errors = result.all_errors()
    assert len(errors) == 1 and isinstance(errors[0], CascadeDepthError)
    assert "beyond the limit of 3" in str(errors[0])
    assert any("cascade stopped" in r.message for r in caplog.records)
    # levels 0..3 each flipped the status once; every action was recorded as done
    assert opportunities_of(flow).status("opp-1") == "ping"
    done = flow.storage.scheduled.list(ScheduledActionState.DONE)
    assert len(done) == 4


# ---------------------------------------------------------------- duplicates and assignment


def test_a_rule_does_not_open_a_second_activity_while_its_first_is_open(backend: str) -> None:
    flow = build_flow(backend)
    flow.handle(created(event_id="e1", leadSource="website"))
    second = flow.handle(created(event_id="e2", leadSource="website"))
    assert second.executed[0].note is not None and second.executed[0].note.startswith("skipped")
    [first] = flow.storage.activities.for_opportunity("opp-1")
    assert first.open_key is not None
    clock_of(flow).advance(hours=2)
    ops(flow).complete_activity(ALICE, first.activity_id, Outcome.NO_ANSWER)
    flow.handle(created(event_id="e3", leadSource="website"))
    assert len(flow.storage.activities.for_opportunity("opp-1")) == 2


def test_allow_duplicates_lets_a_rule_open_more(backend: str) -> None:
    many = rule(
        "many",
        "opportunity.created",
        [{"actionType": "create_activity", "subject": "Touch", "assignTo": "lead_owner"}],
        allowDuplicates=True,
    )
    flow = build_flow(backend, rules=[many])
    flow.handle(created(event_id="e1"))
    flow.handle(created(event_id="e2"))
    activities = flow.storage.activities.for_opportunity("opp-1")
    assert len(activities) == 2
    assert [a.open_key for a in activities] == [None, None]


def test_round_robin_is_fair_and_survives_a_restart(backend: str) -> None:
    rr = rule(
        "rr",
        "opportunity.created",
        [{"actionType": "create_activity", "subject": "Call", "assignTo": "round_robin"}],
    )
    flow = build_flow(backend, rules=[rr])
    gateway = opportunities_of(flow)
    for i in range(4):
        gateway.add(f"new-{i}")
        flow.handle(created(f"new-{i}", event_id=f"e{i}"))
    # a new instance (a restart) sharing the same stores continues the rotation
    again = restarted(flow)
    for i in range(4, 6):
        gateway.add(f"new-{i}")
        again.handle(created(f"new-{i}", event_id=f"e{i}"))
    owners = [flow.storage.activities.for_opportunity(f"new-{i}")[0].assigned_to for i in range(6)]
    assert owners == ["alice", "bob", "carol", "alice", "bob", "carol"]


def test_least_loaded_and_fixed_user_assignment(backend: str) -> None:
    least = rule(
        "least",
        "opportunity.created",
        [{"actionType": "create_activity", "subject": "Call", "assignTo": "least_loaded"}],
        allowDuplicates=True,
    )
    fixed = rule(
        "fixed",
        "estimate.created",
        [{"actionType": "create_activity", "subject": "Check", "assignTo": "carol"}],
    )
    flow = build_flow(backend, rules=[least, fixed])
    admin = ops(flow)
    for subject, user in (("a", "alice"), ("b", "carol")):
        admin.create_activity(
            ADMIN,
            {"opportunityId": "opp-1", "activityType": "call", "subject": subject,
             "assignedTo": user},
        )  # fmt: skip
    flow.handle(created("opp-2", event_id="l1"))
    assert flow.storage.activities.for_opportunity("opp-2")[0].assigned_to == "bob"
    flow.handle(Event(type="estimate.created", time=T0, payload={"opportunityId": "opp-3"}))
    assert flow.storage.activities.for_opportunity("opp-3")[0].assigned_to == "carol"


def test_assign_sales_rep_changes_the_owner(backend: str) -> None:
    assign = rule(
        "assign",
        "opportunity.created",
        [{"actionType": "assign_sales_rep", "assignTo": "round_robin"}],
    )
    flow = build_flow(backend, rules=[assign])
    flow.handle(created("opp-4"))
    assert opportunities_of(flow).owner("opp-4") == "alice"
    assert "opportunity.assigned" in sink(flow).names()


def test_an_action_needing_an_opportunity_fails_clearly_without_one(backend: str) -> None:
    flow = build_flow(backend)
    result = flow.handle(Event(type="estimate.created", time=T0, payload={}))
    [run] = result.executed
    assert not run.ok and run.note is not None and "needs an opportunity" in run.note
    assert run.permanent and run.state is ScheduledActionState.PARKED
    assert any("needs an opportunity" in str(e) for e in result.all_errors())


# ---------------------------------------------------------------- event sinks


def test_event_sinks_blinker_and_pyee_in_a_few_lines(backend: str) -> None:
    import blinker
    import pyee

    seen_blinker: list[Any] = []
    signals = blinker.Namespace()
    signals.signal("activity.created").connect(
        lambda sender, **kw: seen_blinker.append(kw), weak=False
    )
    blinker_sink = CallbackEventSink(
        lambda name, payload: signals.signal(name).send("leadflow", **payload)
    )

    seen_pyee: list[Any] = []
    emitter = pyee.EventEmitter()
    emitter.on("activity.created", seen_pyee.append)
    pyee_sink = CallbackEventSink(emitter.emit)

    for events in (blinker_sink, pyee_sink):
        flow = build_flow(backend, events=events)
        flow.handle(created(leadSource="website"))
    assert [p["subject"] for p in seen_blinker] == ["Call new website lead"]
    assert [p["subject"] for p in seen_pyee] == ["Call new website lead"]
    assert seen_pyee[0]["ruleId"] == "default-website-lead-follow-up"


def test_a_failing_sink_does_not_undo_work(backend: str, caplog: pytest.LogCaptureFixture) -> None:
    def explode(name: str, payload: dict[str, Any]) -> None:
        raise RuntimeError("bus down")

    flow = build_flow(backend, events=CallbackEventSink(explode))
    with caplog.at_level("ERROR", logger="leadflow"):
        result = flow.handle(created(leadSource="website"))
    assert result.executed[0].ok
    assert len(flow.storage.activities.for_opportunity("opp-1")) == 1
    assert any("event sink failed" in r.message for r in caplog.records)


def test_a_flow_refuses_what_is_not_its_parts() -> None:
    flow = build_flow("memory")
    with pytest.raises(TypeError, match="storage"):
        type(flow)(flow.integrations, flow.integrations)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="integrations"):
        type(flow)(flow.storage, flow.storage)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        type(flow).in_memory(clock=ManualClock(T0), rule_set=[])  # type: ignore[call-arg]
