"""leadflow.contrib.celery and leadflow.contrib.prometheus in one process: Celery's eager mode
runs the tasks in the test, on an in-memory flow. The real-process proofs (broker, workers,
SIGKILL, SIGTERM) are in tests/test_contrib_celery.py."""

from __future__ import annotations

import subprocess
import sys
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow import Event, FollowUpRule, HandlerRegistry, LeadFlow, ScheduledActionState
from leadflow.clock import ManualClock
from leadflow.errors import InvalidInputError, PermanentError
from leadflow.ports import Clock
from leadflow.runtime.actions import ActionContext
from leadflow.runtime.jobs import JobSchedule, JobSettings
from leadflow.stores.memory import memory_storage

celery = pytest.importorskip("celery", reason="needs the celery extra")
prometheus_client = pytest.importorskip("prometheus_client", reason="needs the metrics extra")

from leadflow.contrib.celery import LeadflowTasks, install  # noqa: E402
from leadflow.contrib.prometheus import LeadflowMetrics  # noqa: E402

from .process_support import schedule  # noqa: E402

ACTION = "fault_effect"


class Host:
    """A host's flow factory: one in-memory storage, a counting effect, calls counted."""

    def __init__(self, metrics: LeadflowMetrics | None = None, clock: Clock | None = None) -> None:
        self.clock = clock
        storage = memory_storage()
        self.storage = metrics.instrument(storage) if metrics is not None else storage
        self.effects: list[str] = []
        self.builds = 0
        self.fail = False

    def effect(self, ctx: ActionContext) -> str:
        if self.fail:
            raise PermanentError("the effect refuses")
        self.effects.append(ctx.scheduled.idempotency_key)
        return "ok"

    def flow(self) -> LeadFlow:
        self.builds += 1
        handlers = HandlerRegistry.default()
        handlers.register(ACTION, self.effect)
        flow = LeadFlow.in_memory(storage=self.storage, handlers=handlers, clock=self.clock)
        if not flow.storage.rules.list():
            flow.storage.rules.create(
                FollowUpRule.model_validate(
                    {
                        "ruleId": "fx",
                        "name": "fx",
                        "trigger": {"eventType": "opportunity.created", "conditions": []},
                        "actions": [{"actionType": ACTION}],
                    }
                )
            )
        return flow


def eager_app() -> Any:
    app = celery.Celery("leadflow-units", broker="memory://")
    app.conf.update(task_always_eager=True, task_eager_propagates=True)
    return app


def setup(
    batch: int = 100, clock: Clock | None = None, batch_time: timedelta = timedelta(seconds=1)
) -> tuple[Host, LeadflowTasks, LeadflowMetrics]:
    metrics = LeadflowMetrics(prometheus_client.CollectorRegistry())
    host = Host(metrics, clock)
    tasks = install(eager_app(), host.flow, batch=batch, metrics=metrics, batch_time=batch_time)
    return host, tasks, metrics


def sample(metrics: LeadflowMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def event(n: int) -> dict[str, Any]:
    at = datetime.now(UTC)
    return Event(
        id=f"ev-{n}", type="opportunity.created", time=at, payload={"opportunityId": f"opp-{n}"}
    ).to_document()


def test_importing_leadflow_imports_neither_celery_nor_prometheus() -> None:
    code = (
        "import sys, leadflow; "
        "print([m for m in ('celery', 'prometheus_client', 'kombu') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_install_builds_nothing_until_a_task_runs_then_once_per_process() -> None:
    host, tasks, _ = setup()
    assert host.builds == 0
    tasks.handle_event.delay(event(1))
    tasks.handle_event.delay(event(2))
    assert host.builds == 1
    tasks._pid = -1  # as seen from a forked child: its parent's flow is not reused
    tasks.handle_event.delay(event(3))
    assert host.builds == 2


def test_handle_event_twice_takes_effect_once_and_is_counted() -> None:
    host, tasks, metrics = setup()
    first = tasks.handle_event.delay(event(1)).get()
    again = tasks.handle_event.delay(event(1)).get()
    assert len(host.effects) == 1
    assert first["executed"] == 1 and first["matched_rules"] == ["fx"]
    assert again["executed"] == 0 and again["duplicates"] == 1
    assert sample(metrics, "leadflow_events_handled_total", event_type="opportunity.created") == 2
    assert sample(metrics, "leadflow_rules_matched_total", rule_id="fx") == 2
    assert sample(metrics, "leadflow_actions_total", action_type=ACTION, outcome="done") == 1


def test_run_due_goes_on_while_batches_come_back_full_within_its_time() -> None:
    host, tasks, metrics = setup(batch=10)
    tasks.flow()
    keys = schedule(host.storage, [datetime.now(UTC) - timedelta(seconds=5)] * 25, "due")
    summary = tasks.run_due.delay().get()
    assert (summary["batches"], summary["claimed"], summary["requeued"]) == (3, 25, 0)
    assert sorted(host.effects) == sorted(keys)
    assert sample(metrics, "leadflow_due_batches_total", full="true") == 2
    assert sample(metrics, "leadflow_due_batches_total", full="false") == 1


def test_a_stopping_worker_requeues_after_the_batch_in_hand() -> None:
    host, tasks, _ = setup(batch=10)
    tasks.flow()
    schedule(host.storage, [datetime.now(UTC) - timedelta(seconds=5)] * 25, "due")
    tasks.stopping()  # what Celery's worker_shutting_down signal calls
    summary = tasks.run_due.apply(args=()).get()  # eager: each re-queued task runs one batch
    assert (summary["batches"], summary["claimed"], summary["requeued"]) == (1, 10, 1)


def test_run_due_requeues_itself_while_batches_come_back_full() -> None:
    host, tasks, metrics = setup(batch=10, batch_time=timedelta(0))
    tasks.flow()
    keys = schedule(host.storage, [datetime.now(UTC) - timedelta(seconds=5)] * 25, "due")
    summary = tasks.run_due.delay().get()
    assert summary["claimed"] == 10 and summary["requeued"] == 1
    assert sorted(host.effects) == sorted(keys)  # the re-queued runs took the other 15
    assert sample(metrics, "leadflow_due_batches_total", full="true") == 2
    assert sample(metrics, "leadflow_due_batches_total", full="false") == 1
    assert sample(metrics, "leadflow_due_action_lag_seconds_count") == 25
    assert sample(metrics, "leadflow_due_action_lag_seconds_bucket", le="1.0") == 0


def test_parked_actions_are_counted_and_gauged() -> None:
    host, tasks, metrics = setup()
    host.fail = True
    tasks.handle_event.delay(event(1))
    assert sample(metrics, "leadflow_actions_total", action_type=ACTION, outcome="parked") == 1
    assert sample(metrics, "leadflow_parked_actions") == 0  # not tracked yet
    metrics.track_parked(host.storage)
    assert sample(metrics, "leadflow_parked_actions") == 1
    assert host.storage.scheduled.list(ScheduledActionState.PARKED)


def test_run_job_runs_each_slot_once() -> None:
    clock = ManualClock(datetime(2026, 3, 2, 2, 0, 30, tzinfo=UTC))
    _, tasks, metrics = setup(clock=clock)
    first = tasks.run_job.delay("cleanup").get()
    clock.advance(timedelta(minutes=1))
    again = tasks.run_job.delay("cleanup").get()
    assert first is not None and first["status"] == "succeeded"
    assert again is None  # the slot was taken: a doubled beat does no harm
    assert sample(metrics, "leadflow_job_runs_total", job="cleanup", status="succeeded") == 1
    assert sample(metrics, "leadflow_job_skips_total", job="cleanup", reason="taken") == 1
    assert sample(metrics, "leadflow_job_lateness_seconds_count", job="cleanup") == 1
    finished = sample(metrics, "leadflow_job_last_success_timestamp_seconds", job="cleanup")
    assert finished == pytest.approx(datetime(2026, 3, 2, 2, 0, 30, tzinfo=UTC).timestamp(), abs=1)
    clock.advance(timedelta(hours=13))  # beyond the 12-hour grace: the 02:00 slot was missed
    assert tasks.run_job.delay("cleanup").get() is None
    assert sample(metrics, "leadflow_job_skips_total", job="cleanup", reason="late") == 1
    assert sample(metrics, "leadflow_job_skips_total", job="cleanup", reason="taken") == 1


def test_beat_schedule_entries() -> None:
    _, tasks, _ = setup()
    entries = tasks.beat_schedule()
    assert entries["leadflow.job.daily_summary"]["task"] == "leadflow.run_job"
    assert entries["leadflow.job.daily_summary"]["args"] == ("daily_summary",)
    assert entries["leadflow.run_due"]["schedule"] == 1.0
    assert len(entries) == 7
    assert "leadflow.run_due" not in tasks.beat_schedule(due_every=None)
    with pytest.raises(InvalidInputError) as caught:
        tasks.beat_schedule(every=timedelta(hours=1))  # beyond the 10-minute graces
    assert caught.value.field == "every"
    quiet = install(
        eager_app(),
        Host().flow,
        job_settings=JobSettings(cleanup=JobSchedule("0 2 * * *", enabled=False)),
    )
    assert "leadflow.job.cleanup" not in quiet.beat_schedule()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"batch": 0}, "batch"), ({"batch": True}, "batch"), ({"queue": ""}, "queue")],
)
def test_install_refuses_bad_settings(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        install(eager_app(), Host().flow, **kwargs)
    assert caught.value.field == field


def test_tasks_belong_to_the_app_they_were_installed_on() -> None:
    first, second = Host(), Host()
    install(eager_app(), first.flow)
    other = eager_app()
    tasks = install(other, second.flow)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no task of the first app leaks into the second
        assert "leadflow.handle_event" in other.tasks  # finalizes the app
    tasks.handle_event.delay(event(1))
    assert (first.builds, second.builds) == (0, 1)


def test_instrument_keeps_every_store_sequences_included() -> None:
    from leadflow.stores.sql import SqlStorage, sql_storage

    metrics = LeadflowMetrics(prometheus_client.CollectorRegistry())
    memory = memory_storage()
    sql = sql_storage("sqlite://")
    try:
        for storage in (memory, sql):
            instrumented = metrics.instrument(storage)
            assert type(instrumented) is type(storage)
            assert instrumented.scheduled is not storage.scheduled
            for name in ("activities", "rules", "counters", "audit", "jobs", "unit_of_work"):
                assert getattr(instrumented, name) is getattr(storage, name)
            assert instrumented.sequences is storage.sequences is not None
            assert instrumented.enrollments is storage.enrollments is not None
        assert isinstance(metrics.instrument(sql), SqlStorage)
    finally:
        sql.close()
