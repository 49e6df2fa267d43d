"""Failures are visible, permanent ones are parked at once, and finished work does not pile up
(issue 9, "Failures are visible" and "Unbounded growth")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from leadflow import (
    ActionContext,
    Event,
    FlowSettings,
    HandlerError,
    HandlerRegistry,
    InvalidInputError,
    LeadFlow,
    NotFoundError,
    PermanentError,
    RetryPolicy,
    ScheduledActionState,
)
from leadflow.runtime.jobs import JobSettings, LeadflowJobs

from .helpers import T0
from .service_support import EVERY_BACKEND, build_flow, clock_of, close_sql, payloads, rule

State = ScheduledActionState


@pytest.fixture(params=EVERY_BACKEND)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    yield str(request.param)
    close_sql()


def created(event_id: str = "e-1", opportunity: str = "opp-1", **payload: Any) -> Event:
    return Event(
        id=event_id,
        type="opportunity.created",
        time=T0,
        payload={"opportunityId": opportunity, **payload},
    )


def raising(error: Exception, calls: list[str]) -> Any:
    def handler(ctx: ActionContext) -> str:
        calls.append(ctx.idempotency_key)
        raise error

    return handler


def flow_with(backend: str, handler: Any, *, delay: float = 0, **options: Any) -> LeadFlow:
    handlers = HandlerRegistry.default()
    handlers.register("integrate", handler)
    act = rule("act", "opportunity.created", [{"actionType": "integrate", "delay": delay}])
    ok = rule(
        "ok", "opportunity.created", [{"actionType": "send_notification", "template": "hello"}]
    )
    return build_flow(backend, rules=[act, ok], handlers=handlers, **options)


# ------------------------------------------------------------------ visible


def test_a_failing_action_is_in_all_errors_and_the_other_rules_still_act(backend: str) -> None:
    calls: list[str] = []
    flow = flow_with(backend, raising(RuntimeError("CRM is down"), calls))
    result = flow.handle(created())
    assert sorted(result.matched_rules) == ["act", "ok"]
    [error] = result.all_errors()
    assert isinstance(error, HandlerError)
    assert "integrate" in str(error) and "CRM is down" in str(error)
    assert "will be retried" in str(error)
    assert [run.ok for run in result.executed if run.action_type == "send_notification"] == [True]


def test_a_failure_in_a_cascade_is_in_the_top_results_all_errors(backend: str) -> None:
    handlers = HandlerRegistry.default()
    handlers.register("integrate", raising(RuntimeError("webhook down"), []))
    promote = rule(
        "promote",
        "opportunity.created",
        [{"actionType": "update_status", "params": {"status": "won"}}],
    )
    on_won = rule("on-won", "opportunity.status_changed", [{"actionType": "integrate"}])
    flow = build_flow(backend, rules=[promote, on_won], handlers=handlers)
    result = flow.handle(created())
    assert result.errors == []
    [cascade] = result.cascades
    assert cascade.matched_rules == ["on-won"]
    [error] = result.all_errors()
    assert "webhook down" in str(error)


# ------------------------------------------------------------------ permanent: parked at once


def test_a_permanent_error_is_parked_after_one_attempt_with_its_reason(backend: str) -> None:
    calls: list[str] = []
    flow = flow_with(backend, raising(PermanentError("account closed at the CRM"), calls))
    result = flow.handle(created())
    [run] = [r for r in result.executed if r.action_type == "integrate"]
    assert (run.ok, run.state, run.permanent) == (False, State.PARKED, True)
    assert "parked" in str(result.all_errors()[0])
    clock_of(flow).advance(hours=5)
    assert flow.run_due().claimed == 0
    assert len(calls) == 1
    [parked] = flow.storage.scheduled.list(State.PARKED)
    assert parked.attempts == 1
    assert parked.last_error == "PermanentError: account closed at the CRM"
    [note] = payloads(flow, "action.parked")
    assert note["permanent"] is True and "account closed" in note["error"]
    assert note["actionId"] == parked.action_id and note["ruleId"] == "act"


@pytest.mark.parametrize(
    "error",
    [NotFoundError("opportunity 'x' not found"), InvalidInputError("no e-mail", field="contact")],
    ids=["not-found", "invalid-input"],
)
def test_not_found_and_invalid_input_from_a_delayed_action_are_parked_at_once(
    backend: str, error: Exception
) -> None:
    calls: list[str] = []
    flow = flow_with(backend, raising(error, calls), delay=1)
    result = flow.handle(created())
    assert [a.action_type for a in result.scheduled] == ["integrate"]
    clock = clock_of(flow)
    clock.advance(hours=1)
    report = flow.run_due()
    assert (report.claimed, report.parked, report.failed) == (1, 1, 0)
    clock.advance(hours=5)
    assert flow.run_due().claimed == 0
    assert len(calls) == 1
    [parked] = flow.storage.scheduled.list(State.PARKED)
    assert parked.last_error is not None and str(error) in parked.last_error
    assert [p["permanent"] for p in payloads(flow, "action.parked")] == [True]


def test_an_unknown_opportunity_is_parked_at_once(backend: str) -> None:
    email = rule(
        "email", "opportunity.created", [{"actionType": "send_email", "template": "welcome"}]
    )
    flow = build_flow(backend, rules=[email])
    result = flow.handle(created(opportunity="opp-nobody-knows"))
    [run] = result.executed
    assert (run.state, run.permanent) == (State.PARKED, True)
    [parked] = flow.storage.scheduled.list(State.PARKED)
    assert parked.attempts == 1
    assert parked.last_error is not None and "NotFoundError" in parked.last_error
    assert "opp-nobody-knows" in parked.last_error


def test_an_instance_without_the_handler_leaves_the_action_to_one_that_has_it(
    backend: str,
) -> None:
    flow = flow_with(backend, lambda ctx: "ok", delay=1)
    flow.handle(created())
    # A second instance without that handler (an older deployment) does not claim the action
    # (issue 19: it used to claim it and park it, "no handler is registered").
    other = LeadFlow(flow.storage, flow.integrations, clock=flow.clock)
    clock_of(flow).advance(hours=1)
    assert other.run_due().claimed == 0
    [pending] = flow.storage.scheduled.list(State.PENDING)
    assert pending.attempts == 0
    assert flow.run_due().succeeded == 1


def test_a_handler_without_a_registration_is_parked_at_once_when_claimed_anyway(
    backend: str,
) -> None:
    flow = flow_with(backend, lambda ctx: "ok", delay=1)
    flow.handle(created())
    other = LeadFlow(flow.storage, flow.integrations, clock=flow.clock)
    clock_of(flow).advance(hours=1)
    report = other.executor.run_due(action_types=None)  # the executor's claim: any type
    assert report.parked == 1
    [parked] = flow.storage.scheduled.list(State.PARKED)
    assert parked.attempts == 1 and "no handler" in (parked.last_error or "")


# ------------------------------------------------------------------ transient: retried


def test_a_transient_error_is_retried_with_backoff_then_parked(backend: str) -> None:
    calls: list[str] = []
    retry = RetryPolicy(max_attempts=4, base=timedelta(minutes=1), factor=3)
    flow = flow_with(
        backend, raising(ConnectionError("timeout"), calls), settings=FlowSettings(retry=retry)
    )
    clock = clock_of(flow)
    result = flow.handle(created())
    [run] = [r for r in result.executed if r.action_type == "integrate"]
    assert (run.state, run.permanent) == (State.PENDING, False)
    waits = []
    for _ in range(3):
        [pending] = flow.storage.scheduled.list(State.PENDING)
        waits.append(pending.due_at - clock.now())
        clock.set(pending.due_at - timedelta(seconds=1))
        assert flow.run_due().claimed == 0
        clock.advance(seconds=1)
        assert flow.run_due().claimed == 1
    assert waits == [timedelta(minutes=1), timedelta(minutes=3), timedelta(minutes=9)]
    assert len(calls) == 4
    [parked] = flow.storage.scheduled.list(State.PARKED)
    assert parked.attempts == 4 and parked.last_error == "ConnectionError: timeout"
    [note] = payloads(flow, "action.parked")
    assert note["permanent"] is False
    clock.advance(days=1)
    assert flow.run_due().claimed == 0 and len(calls) == 4
    # A person puts it back: it runs again at once, with fresh attempts.
    retried = flow.retry_parked(parked.action_id)
    assert (retried.state, retried.attempts, retried.last_error) == (State.PENDING, 0, None)
    assert flow.run_due().claimed == 1 and len(calls) == 5


# ------------------------------------------------------------------ retention


def test_clean_up_purges_finished_actions_past_retention_never_parked_or_pending(
    backend: str,
) -> None:
    calls: list[str] = []
    flow = flow_with(
        backend,
        raising(PermanentError("refused"), calls),
        settings=FlowSettings(retention=timedelta(days=30)),
    )
    far = rule(
        "far",
        "estimate.created",
        [{"actionType": "send_notification", "template": "far", "delay": 24 * 60}],
    )
    gone = rule(
        "gone",
        "estimate.created",
        [{"actionType": "send_notification", "template": "gone", "delay": 2}],
    )
    flow.rules.create(far)
    flow.rules.create(gone)
    clock = clock_of(flow)
    flow.handle(created())  # a parked "integrate" and a done notification
    flow.handle(
        Event(id="q-1", type="estimate.created", time=T0, payload={"opportunityId": "opp-2"})
    )
    assert len(flow.rules.delete("gone").cancelled) == 1
    counts = {s: len(flow.storage.scheduled.list(s)) for s in State}
    assert counts == {
        State.PENDING: 1,  # far, due in 60 days
        State.CLAIMED: 0,
        State.DONE: 1,
        State.PARKED: 1,
        State.CANCELLED: 1,
    }
    jobs = LeadflowJobs(flow, JobSettings())
    runner = jobs.runner()
    clock.set(T0 + timedelta(days=29))
    run = runner.run_job("cleanup")
    assert run is not None and run.counts["actions_purged"] == 0
    clock.set(T0 + timedelta(days=31))
    run = runner.run_job("cleanup")
    assert run is not None and run.counts["actions_purged"] == 2
    left = {a.state for a in flow.storage.scheduled.list()}
    assert left == {State.PENDING, State.PARKED}
    # The pending one runs in its time; done, it is kept for the retention, then purged.
    clock.set(T0 + timedelta(days=60))
    assert flow.run_due().succeeded == 1
    clock.set(T0 + timedelta(days=89))
    run = runner.run_job("cleanup")
    assert run is not None and run.counts["actions_purged"] == 0
    assert {a.state for a in flow.storage.scheduled.list()} == {State.PARKED, State.DONE}
    clock.set(T0 + timedelta(days=91))
    run = runner.run_job("cleanup")
    assert run is not None and run.counts["actions_purged"] == 1
    assert [a.state for a in flow.storage.scheduled.list()] == [State.PARKED]


def test_a_redelivered_event_within_retention_acts_once(backend: str) -> None:
    flow = flow_with(backend, lambda ctx: "ok", settings=FlowSettings(retention=timedelta(days=7)))
    first = flow.handle(created())
    clock_of(flow).advance(days=6)
    flow.purge_finished()
    again = flow.handle(created())
    assert len(first.executed) == 2 and again.executed == [] and len(again.duplicates) == 2
