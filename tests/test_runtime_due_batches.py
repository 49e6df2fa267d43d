"""``run_due`` acknowledges a batch's successes together (one ``mark_done_many``), at the latest
when half the lease has passed, and reports an action whose lease was lost meanwhile as
``claimed`` (another worker reruns it; its effects are keyed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from leadflow import (
    Event,
    FlowSettings,
    FollowUpRule,
    HandlerRegistry,
    LeadFlow,
    ScheduledActionState,
)
from leadflow.clock import ManualClock
from leadflow.runtime.actions import ActionContext

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EFFECT = "batch_effect"
State = ScheduledActionState


class Counting:
    """The scheduled-action store, counting the calls that mark actions done."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.single = 0
        self.batches: list[int] = []

    def mark_done(self, action_id: str, **kwargs: Any) -> Any:
        self.single += 1
        return self._inner.mark_done(action_id, **kwargs)

    def mark_done_many(self, action_ids: Any, **kwargs: Any) -> Any:
        self.batches.append(len(action_ids))
        return self._inner.mark_done_many(action_ids, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def build(on_run: Any, lease: timedelta = timedelta(minutes=5)) -> tuple[LeadFlow, Counting]:
    import dataclasses

    from leadflow.stores.memory import memory_storage

    base = memory_storage()
    counting = Counting(base.scheduled)
    handlers = HandlerRegistry.default()
    handlers.register(EFFECT, on_run)
    rule = FollowUpRule.model_validate(
        {
            "ruleId": "later",
            "name": "later",
            "trigger": {"eventType": "opportunity.created", "conditions": []},
            "actions": [{"actionType": EFFECT, "delay": {"amount": 1, "unit": "hours"}}],
        }
    )
    flow = LeadFlow.in_memory(
        clock=ManualClock(START),
        storage=dataclasses.replace(base, scheduled=counting),
        rules=[rule],
        handlers=handlers,
        settings=FlowSettings(action_lease=lease),
    )
    for n in range(10):
        flow.handle(
            Event(
                id=f"ev-{n}",
                type="opportunity.created",
                time=START,
                payload={"opportunityId": f"opp-{n}"},
            )
        )
    flow.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    return flow, counting


def test_a_batch_is_acknowledged_in_one_call() -> None:
    flow, counting = build(lambda ctx: "ok")
    report = flow.run_due(limit=100)
    assert (report.claimed, report.succeeded) == (10, 10)
    assert counting.batches == [10] and counting.single == 0
    assert {r.state for r in report.runs} == {State.DONE}
    assert {a.state for a in flow.storage.scheduled.list()} == {State.DONE}


def test_failures_are_not_acknowledged_as_done() -> None:
    def effect(ctx: ActionContext) -> str:
        if ctx.scheduled.opportunity_id in ("opp-3", "opp-7"):
            raise RuntimeError("gateway down")
        return "ok"

    flow, counting = build(effect)
    report = flow.run_due()
    assert (report.succeeded, report.failed) == (8, 2)
    assert counting.batches == [8]
    states = sorted(a.state.value for a in flow.storage.scheduled.list())
    assert states == ["done"] * 8 + ["pending"] * 2


def test_a_slow_batch_is_acknowledged_before_half_its_lease_runs_out() -> None:
    seen_done: list[int] = []
    holder: dict[str, LeadFlow] = {}

    def slow(ctx: ActionContext) -> str:
        flow = holder["flow"]
        seen_done.append(len(flow.storage.scheduled.list(State.DONE)))
        flow.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
        return "ok"

    flow, counting = build(slow, lease=timedelta(minutes=5))
    holder["flow"] = flow
    report = flow.run_due()
    assert report.succeeded == 10
    # Each action takes a minute. Half the lease (2.5 minutes) has passed after the 3rd: the
    # three are acknowledged, then each later one at once (the claims all expire together).
    assert counting.batches == [3, 1, 1, 1, 1, 1, 1, 1]
    assert seen_done == [0, 0, 0, 3, 4, 5, 6, 7, 8, 9]


def test_a_lease_lost_meanwhile_is_reported_claimed_and_not_marked_done() -> None:
    holder: dict[str, Any] = {}

    def effect(ctx: ActionContext) -> str:
        if ctx.scheduled.opportunity_id == "opp-4":
            # Another worker took this action over (its lease ran out) while it ran here.
            flow = holder["flow"]
            later = flow.now() + timedelta(minutes=10)
            (taken,) = flow.storage.scheduled.claim_due(later, worker="other", limit=1)
            holder["taken"] = taken.action_id
        return "ok"

    flow, _ = build(effect)
    holder["flow"] = flow
    report = flow.run_due()
    taken = holder["taken"]
    assert report.succeeded == 10
    by_key = {r.idempotency_key: r.state for r in report.runs}
    other = flow.storage.scheduled.get(taken)
    assert by_key[other.idempotency_key] is State.CLAIMED
    assert other.state is State.CLAIMED and other.lease_owner == "other"
    assert list(by_key.values()).count(State.DONE) == 9


def test_an_interrupted_batch_still_acknowledges_what_succeeded() -> None:
    calls: list[str] = []

    def effect(ctx: ActionContext) -> str:
        calls.append(ctx.scheduled.action_id)
        if len(calls) == 6:
            raise KeyboardInterrupt  # not an Exception: it stops the batch
        return "ok"

    flow, counting = build(effect)
    try:
        flow.run_due()
    except KeyboardInterrupt:
        pass
    else:  # pragma: no cover - the test needs the interruption
        raise AssertionError("run_due swallowed the interruption")
    states = {a.action_id: a.state for a in flow.storage.scheduled.list()}
    assert counting.batches == [5]
    assert [states[i] for i in calls[:5]] == [State.DONE] * 5  # acknowledged, not rerun
    assert states[calls[5]] is State.CLAIMED  # its lease expires; another worker reruns it
    assert sum(1 for st in states.values() if st is State.CLAIMED) == 5  # it, and 4 not run
