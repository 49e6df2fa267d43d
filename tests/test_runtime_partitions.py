"""Partitions of the scheduled actions (issue 12): the runtime spreads actions over
``FlowSettings.partitions`` by a stable hash of the opportunity, ``run_due(partition=p)`` runs
only partition ``p``, and the Celery tasks route each partition's ``run_due`` to its own queue
(in Celery's eager mode here; real processes in tests/test_celery_partitions.py)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow import (
    Event,
    FlowSettings,
    FollowUpRule,
    HandlerRegistry,
    InvalidInputError,
    LeadFlow,
    ScheduledActionState,
)
from leadflow.clock import ManualClock
from leadflow.limits import DEFAULT_LIMITS
from leadflow.records import ActionKind
from leadflow.runtime.actions import ActionContext
from leadflow.runtime.planning import partition_for
from leadflow.testing.contracts import make_activity

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EFFECT = "partition_effect"


class Host:
    """A flow factory with a delayed effect that records which partition ran what."""

    def __init__(self, partitions: int) -> None:
        self.clock = ManualClock(START)
        self.partitions = partitions
        self.ran: list[tuple[str, int]] = []

    def effect(self, ctx: ActionContext) -> str:
        self.ran.append((ctx.scheduled.opportunity_id or "", ctx.scheduled.partition))
        return "ok"

    def flow(self) -> LeadFlow:
        handlers = HandlerRegistry.default()
        handlers.register(EFFECT, self.effect)
        rule = FollowUpRule.model_validate(
            {
                "ruleId": "later",
                "name": "later",
                "trigger": {"eventType": "opportunity.created", "conditions": []},
                "actions": [{"actionType": EFFECT, "delay": {"amount": 1, "unit": "hours"}}],
            }
        )
        return LeadFlow.in_memory(
            clock=self.clock,
            rules=[rule],
            handlers=handlers,
            settings=FlowSettings(partitions=self.partitions),
        )


def created(opportunity_id: str) -> Event:
    return Event(
        id=f"ev-{opportunity_id}",
        type="opportunity.created",
        time=START,
        payload={"opportunityId": opportunity_id},
    )


def test_partition_for_is_stable_and_in_range() -> None:
    # CRC-32 of the UTF-8 bytes: the same on every process, host and Python version.
    assert [partition_for(k, 8) for k in ("opp-1", "opp-2", "opp-42", "lead/é")] == [0, 2, 3, 3]
    assert partition_for("opp-42", DEFAULT_LIMITS.partitions) == 955
    assert {partition_for(f"opp-{n}", 1) for n in range(50)} == {0}
    spread = Counter(partition_for(f"opp-{n}", 4) for n in range(4000))
    assert set(spread) == {0, 1, 2, 3}
    assert min(spread.values()) > 800  # no partition starved


def test_actions_are_spread_by_opportunity_and_run_only_in_their_partition() -> None:
    host = Host(partitions=4)
    flow = host.flow()
    opportunities = [f"opp-{n}" for n in range(40)]
    for opportunity in opportunities:
        flow.handle(created(opportunity))
    stored = flow.storage.scheduled.list(limit=100)
    assert len(stored) == 40
    for action in stored:
        assert action.opportunity_id is not None
        assert action.partition == partition_for(action.opportunity_id, 4)
    expected = Counter(partition_for(o, 4) for o in opportunities)
    host.clock.advance(timedelta(hours=1))
    report = flow.run_due(partition=2)
    assert report.claimed == report.succeeded == expected[2]
    assert {p for _, p in host.ran} == {2}
    assert flow.run_due(partition=2).claimed == 0
    rest = flow.run_due()  # unpinned: every other partition
    assert rest.claimed == 40 - expected[2]
    assert sorted(o for o, _ in host.ran) == sorted(opportunities)


def test_one_partition_is_the_default() -> None:
    host = Host(partitions=1)
    flow = host.flow()
    for n in range(10):
        flow.handle(created(f"opp-{n}"))
    assert {a.partition for a in flow.storage.scheduled.list()} == {0}
    host.clock.advance(timedelta(hours=1))
    assert flow.run_due(partition=0).claimed == 10


def test_a_completion_delivery_is_in_its_opportunitys_partition() -> None:
    host = Host(partitions=8)
    flow = host.flow()
    flow.record_activity(make_activity("act-1", opportunity_id="opp-42", created_at=START))
    flow.complete_activity("act-1", outcome="successful", completed_by="rep-1")
    deliveries = [
        a for a in flow.storage.scheduled.list(limit=100) if a.kind is ActionKind.DELIVERY
    ]
    assert deliveries and {a.partition for a in deliveries} == {partition_for("opp-42", 8)}


@pytest.mark.parametrize("partition", [-1, 4, "1", 1.5, True])
def test_run_due_refuses_a_partition_the_flow_does_not_have(partition: object) -> None:
    host = Host(partitions=4)
    flow = host.flow()
    flow.handle(created("opp-1"))
    host.clock.advance(timedelta(hours=1))
    with pytest.raises(InvalidInputError) as caught:
        flow.run_due(partition=partition)  # type: ignore[arg-type]
    assert caught.value.field == "partition"
    assert [a.state for a in flow.storage.scheduled.list()] == [ScheduledActionState.PENDING]


@pytest.mark.parametrize("partitions", [0, -3, DEFAULT_LIMITS.partitions + 1, True, "2", 2.0])
def test_flow_settings_refuse_bad_partition_counts(partitions: object) -> None:
    with pytest.raises(InvalidInputError) as caught:
        FlowSettings(partitions=partitions)  # type: ignore[arg-type]
    assert caught.value.field == "partitions"


# ---------------------------------------------------------------------- Celery (eager mode)


def celery_tasks(
    host: Host, partitions: int, batch: int = 100, batch_time: timedelta = timedelta(seconds=1)
) -> Any:
    celery = pytest.importorskip("celery", reason="needs the celery extra")
    from leadflow.contrib.celery import install

    app = celery.Celery("leadflow-partitions", broker="memory://")
    app.conf.update(task_always_eager=True, task_eager_propagates=True)
    return install(
        app, host.flow, partitions=partitions, batch=batch, queue="lf", batch_time=batch_time
    )


def recording(tasks: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Record where each ``run_due`` is sent (queue, partition), then send it (eagerly)."""
    sent: list[tuple[str, Any]] = []
    original = tasks.run_due.apply_async

    def apply_async(*args: Any, **options: Any) -> Any:
        sent.append((options.get("queue"), (options.get("kwargs") or {}).get("partition")))
        return original(*args, **options)

    monkeypatch.setattr(tasks.run_due, "apply_async", apply_async)
    return sent


def test_beat_routes_each_partitions_run_due_to_its_queue() -> None:
    tasks = celery_tasks(Host(partitions=3), partitions=3)
    entries = tasks.beat_schedule()
    due = {name: e for name, e in entries.items() if e["task"] == "leadflow.run_due"}
    assert sorted(due) == ["leadflow.run_due.0", "leadflow.run_due.1", "leadflow.run_due.2"]
    for p in range(3):
        assert due[f"leadflow.run_due.{p}"]["kwargs"] == {"partition": p}
        assert due[f"leadflow.run_due.{p}"]["options"]["queue"] == f"lf.due.{p}"
    assert tasks.due_queues() == ["lf.due.0", "lf.due.1", "lf.due.2"]
    for bad in (3, -1, "0", True):
        with pytest.raises(InvalidInputError):
            tasks.due_queue(bad)
    single = celery_tasks(Host(partitions=1), partitions=1)
    assert single.due_queues() == ["lf"]
    assert single.beat_schedule()["leadflow.run_due"]["options"]["queue"] == "lf"


def test_a_full_batch_requeues_to_its_own_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(partitions=2)
    tasks = celery_tasks(host, partitions=2, batch=5, batch_time=timedelta(0))  # a task a batch
    flow = tasks.flow()
    opportunities = [f"opp-{n}" for n in range(60)]
    for opportunity in opportunities:
        flow.handle(created(opportunity))
    in_one = sum(1 for o in opportunities if partition_for(o, 2) == 1)
    assert in_one > 5  # more than one batch
    host.clock.advance(timedelta(hours=1))
    sent = recording(tasks, monkeypatch)
    tasks.kick(partition=1)
    assert {p for _, p in host.ran} == {1} and len(host.ran) == in_one
    assert set(sent) == {("lf.due.1", 1)}  # every re-queued batch stayed on its queue
    assert len(sent) == in_one // 5 + 1
    sent.clear()
    tasks.kick()  # one per partition
    assert ("lf.due.0", 0) in sent and len(host.ran) == 60


def test_a_worker_whose_flow_has_another_partition_count_refuses() -> None:
    tasks = celery_tasks(Host(partitions=2), partitions=4)
    with pytest.raises(InvalidInputError) as caught:
        tasks.flow()
    assert caught.value.field == "partitions"


@pytest.mark.parametrize("partitions", [0, True, DEFAULT_LIMITS.partitions + 1])
def test_install_refuses_bad_partition_counts(partitions: object) -> None:
    celery = pytest.importorskip("celery", reason="needs the celery extra")
    from leadflow.contrib.celery import install

    with pytest.raises(InvalidInputError) as caught:
        install(celery.Celery("x", broker="memory://"), Host(2).flow, partitions=partitions)  # type: ignore[arg-type]
    assert caught.value.field == "partitions"
