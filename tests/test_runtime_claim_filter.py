"""Workers claim only what they can run (issue 19): a flow whose handlers lack a host's action
type leaves that type's actions pending for a worker that has them (it used to claim and park
them, "no handler is registered"); a registry can hold types it knows but must not run here
(``leadflow worker`` without ``--app``: notifications would only be logged), and those wait,
pending, even when due at once; ``run_due(action_types=...)`` narrows a worker further."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow import (
    FollowUpRule,
    HandlerRegistry,
    InvalidInputError,
    LeadFlow,
    ScheduledActionState,
)
from leadflow.clock import ManualClock
from leadflow.ports import Storage
from leadflow.stores.memory import memory_storage
from leadflow.testing.contracts import make_activity, make_delivery

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOST_TYPE = "crm_sync"
TODO = {"activityType": "call", "subject": "Call the lead"}


def _rule(rule_id: str, action_type: str, hours: int = 1, **settings: Any) -> FollowUpRule:
    return FollowUpRule.model_validate(
        {
            "ruleId": rule_id,
            "name": rule_id,
            "trigger": {"eventType": "opportunity.created", "conditions": []},
            "actions": [
                {
                    "actionType": action_type,
                    "delay": {"amount": hours, "unit": "hours"},
                    **settings,
                }
            ],
        }
    )


def _created(n: int = 1) -> dict[str, Any]:
    return {
        "id": f"evt-{n}",
        "type": "opportunity.created",
        "time": START,
        "payload": {"opportunityId": f"opp-{n}"},
    }


def _flows(storage: Storage, clock: ManualClock) -> tuple[LeadFlow, LeadFlow, list[str]]:
    """The host's flow (with its ``crm_sync`` handler) and a bare one on the same store."""
    ran: list[str] = []
    host_handlers = HandlerRegistry.default()
    host_handlers.register(HOST_TYPE, lambda ctx: ran.append(ctx.idempotency_key) or "synced")
    host = LeadFlow.in_memory(storage=storage, clock=clock, handlers=host_handlers)
    bare = LeadFlow.in_memory(storage=storage, clock=clock)
    return host, bare, ran


def test_a_worker_without_the_hosts_handler_leaves_its_actions_pending() -> None:
    storage, clock = memory_storage(), ManualClock(START)
    host, bare, ran = _flows(storage, clock)
    host.rules.create(_rule("sync", HOST_TYPE))
    host.rules.create(_rule("todo", "create_activity", hours=3, **TODO))
    host.handle(_created())
    clock.advance(timedelta(hours=2))

    report = bare.run_due()
    assert (report.claimed, report.parked) == (0, 0)
    (waiting,) = storage.scheduled.list(ScheduledActionState.PENDING)
    assert (waiting.action_type, waiting.attempts) == (HOST_TYPE, 0)

    report = host.run_due()
    assert [run.action_type for run in report.runs] == [HOST_TYPE]
    assert len(ran) == 1
    assert storage.scheduled.list(ScheduledActionState.PARKED) == []


def test_deliveries_are_claimed_by_every_worker() -> None:
    storage, clock = memory_storage(), ManualClock(START)
    _, bare, _ = _flows(storage, clock)
    storage.activities.add(make_activity("act-1", opportunity_id="opp-1"))
    storage.scheduled.schedule(make_delivery("d1", due_at=START))
    report = bare.run_due()
    assert [run.action_type for run in report.runs] == ["deliver_event"]
    assert storage.scheduled.get("sa-d1").state is ScheduledActionState.DONE


def test_held_types_are_planned_but_wait_for_a_worker_that_runs_them() -> None:
    storage, clock = memory_storage(), ManualClock(START)
    notified: list[str] = []
    held = HandlerRegistry.default()
    held.hold("send_notification", "send_email")
    assert held.runnable() == frozenset(HandlerRegistry.default()) - {
        "send_notification",
        "send_email",
    }
    assert not held.runs("send_notification") and held.runs("create_activity")
    cli = LeadFlow.in_memory(storage=storage, clock=clock, handlers=held)
    # Due at once: a flow that runs the type would run it while handling the event.
    cli.rules.create(_rule("now", "send_notification", hours=0, template="welcome"))
    cli.rules.create(_rule("todo", "create_activity", hours=0, **TODO))
    result = cli.handle(_created())
    assert [run.action_type for run in result.executed] == ["create_activity"]
    assert [a.action_type for a in result.scheduled] == ["send_notification"]
    assert cli.run_due().claimed == 0
    (waiting,) = storage.scheduled.list(ScheduledActionState.PENDING)
    assert waiting.action_type == "send_notification"

    real_handlers = HandlerRegistry.default()
    real_handlers.register(
        "send_notification",
        lambda ctx: notified.append(ctx.idempotency_key) or "sent",
        replace=True,
    )
    real = LeadFlow.in_memory(storage=storage, clock=clock, handlers=real_handlers)
    assert real.run_due().succeeded == 1
    assert notified == [waiting.idempotency_key]


def test_holding_an_unknown_type_is_refused() -> None:
    with pytest.raises(InvalidInputError) as refused:
        HandlerRegistry.default().hold("crm_sync")
    assert refused.value.field == "action_types"


def test_run_due_narrows_to_the_given_types_and_refuses_others() -> None:
    storage, clock = memory_storage(), ManualClock(START)
    handlers = HandlerRegistry.default()
    for name in ("alpha", "beta"):
        handlers.register(name, lambda ctx: "ok")
    flow = LeadFlow.in_memory(storage=storage, clock=clock, handlers=handlers)
    flow.rules.create(_rule("a", "alpha"))
    flow.rules.create(_rule("b", "beta"))
    flow.handle(_created())
    clock.advance(timedelta(hours=2))
    with pytest.raises(InvalidInputError) as refused:
        flow.run_due(action_types=["alpha", HOST_TYPE])
    assert refused.value.field == "action_types" and HOST_TYPE in str(refused.value)
    assert flow.run_due(action_types=[]).claimed == 0  # deliveries only: there are none
    report = flow.run_due(action_types=["alpha"])
    assert [run.action_type for run in report.runs] == ["alpha"]
    (left,) = storage.scheduled.list(ScheduledActionState.PENDING)
    assert left.action_type == "beta"
