"""Escalation (issue 19): the overdue check feeds ``activity.overdue`` into the rules and to the
event sink once per activity, due date and threshold, with a controlled clock, on every backend
(memory, mongomock, SQLite, PostgreSQL when a server is given): across runs, two runs at once,
a crash between feeding the rules and recording it, a failed event, the per-run limit."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadflow import Activity, ActivityType, InvalidInputError, LeadFlow, ManualClock
from leadflow.lint import lint
from leadflow.ports import Notification, Storage
from leadflow.ports.periodic import JobContext
from leadflow.rules import EventTypes
from leadflow.runtime.jobs import JobSettings, LeadflowJobs, overdue_event_id
from leadflow.scheduling import JobRun

from .latency import Slow
from .scheduling_support import utc
from .service_support import build_flow, new_storage, notifier_of, payloads, restarted, rule
from .sql_support import fresh_storage, on_postgres

START = utc(2026, 3, 9, 9)  # a Monday, 09:00 UTC
HOUR = timedelta(hours=1)
MANAGER = "maria"
TO_MANAGER = rule(
    "escalate-to-manager",
    "activity.overdue",
    [{"actionType": "send_notification", "template": "overdue_escalation", "assignTo": MANAGER}],
    conditions=[{"field": "threshold", "operator": "greater_or_equal", "value": 24}],
)
KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("mongo", id="mongo"),
    pytest.param("sqlite-file", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=on_postgres),
]
THREADED_KINDS = [k for k in KINDS if k.id != "mongo"]  # mongomock is not thread-safe


def storage_of(kind: str, tmp_path: Path) -> Iterator[Storage]:
    if kind in ("memory", "mongo"):
        yield new_storage(kind)
        return
    with fresh_storage(kind, tmp_path) as storage:
        yield storage


@pytest.fixture(params=KINDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield from storage_of(str(request.param), tmp_path)


@pytest.fixture(params=THREADED_KINDS)
def threaded_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield from storage_of(str(request.param), tmp_path)


def setup(
    storage: Storage, *, rules: list[Any] | None = None, **settings: Any
) -> tuple[LeadFlow, LeadflowJobs]:
    flow = build_flow(storage=storage, clock=ManualClock(START), rules=rules or [TO_MANAGER])
    return flow, LeadflowJobs(flow, JobSettings(**settings))


def activity(activity_id: str, due: datetime, **fields: Any) -> Activity:
    return Activity.model_validate(
        {
            "activityId": activity_id,
            "opportunityId": fields.pop("opportunity_id", "opp-1"),
            "activityType": ActivityType.CALL,
            "subject": f"Call {activity_id}",
            "assignedTo": fields.pop("assigned_to", "alice"),
            "dueDate": due,
            **fields,
        }
    )


def run(jobs: LeadflowJobs, at: datetime) -> dict[str, int]:
    """The overdue check's slot at ``at`` (a fresh runner: the slot is what makes it run), with
    the flow's clock at ``at``."""
    clock = jobs.flow.clock
    assert isinstance(clock, ManualClock)
    clock.set(at)
    done = jobs.runner().run_job("overdue_check", at)
    assert done is not None and done.error is None, done
    return done.counts


def escalations(counts: dict[str, int]) -> tuple[int, int]:
    return counts["escalated"], counts["already_escalated"]


def overdue_events(flow: LeadFlow) -> list[tuple[str, int | float]]:
    return [(p["activityId"], p["threshold"]) for p in payloads(flow, "activity.overdue")]


def to_manager(flow: LeadFlow) -> list[Notification]:
    return [n for n in notifier_of(flow).sent if n.template == "overdue_escalation"]


def together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(0..count-1)`` on ``count`` threads released at once (an exception is returned in
    place of its result)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def one(n: int) -> None:
        barrier.wait()
        try:
            results[n] = work(n)
        except Exception as exc:  # checked by the test
            results[n] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def context(jobs: LeadflowJobs, at: datetime, worker: str) -> JobContext:
    [job] = [j for j in jobs.jobs() if j.name == "overdue_check"]
    return JobContext(job, job.slot_key(at), at, at, worker)


# ------------------------------------------------------------------ once per threshold


def test_each_threshold_escalates_once_and_a_rule_notifies_the_manager_once(
    storage: Storage,
) -> None:
    flow, jobs = setup(storage)
    flow.storage.activities.add(activity("late", START))
    flow.storage.activities.add(activity("done", START, completed_date=START + HOUR / 2))
    flow.storage.activities.add(activity("later", START + timedelta(hours=5)))

    # 11:00: "late" is 2 hours overdue (the 1 h threshold); "later" is not due yet.
    assert escalations(run(jobs, START + 2 * HOUR)) == (1, 0)
    [event] = payloads(flow, "activity.overdue")
    assert event["eventId"] == overdue_event_id("late", START, HOUR)
    assert {k: event[k] for k in ("activityId", "opportunityId", "assignedTo", "subject")} == {
        "activityId": "late",
        "opportunityId": "opp-1",
        "assignedTo": "alice",
        "subject": "Call late",
    }
    assert event["dueDate"] == START and event["asOf"] == START + 2 * HOUR
    assert (event["threshold"], event["level"]) == (1, 1)
    assert (event["overdueFor"], event["overdueSeconds"]) == (2, 7200)
    assert event["activityType"] == "call"
    assert to_manager(flow) == []  # the rule waits for the 24 h threshold

    # Every hour after: nothing new until a threshold is crossed (the 1 h one of "later").
    for hour in range(3, 24):
        counts = run(jobs, START + hour * HOUR)
        assert counts["escalations_failed"] == counts["escalations_truncated"] == 0
    assert overdue_events(flow) == [("late", 1), ("later", 1)]

    # 10:00 the next day: "late" is 25 hours overdue: the 24 h threshold, once.
    assert escalations(run(jobs, START + 25 * HOUR)) == (1, 0)
    assert overdue_events(flow) == [("late", 1), ("later", 1), ("late", 24)]
    [note] = to_manager(flow)
    assert note.recipients == (MANAGER,)
    assert note.data["event"]["activityId"] == "late"
    assert note.data["event"]["threshold"] == 24
    for hour in (26, 27, 28):
        assert escalations(run(jobs, START + hour * HOUR)) == (0, 0)
    assert len(to_manager(flow)) == 1
    # "later" (due 14:00) crosses 24 h at 14:00 on day two: the manager hears of it too.
    assert escalations(run(jobs, START + 29 * HOUR)) == (1, 0)
    assert overdue_events(flow)[-1] == ("later", 24)
    assert [n.data["event"]["activityId"] for n in to_manager(flow)] == ["late", "later"]
    assert all(a != "done" for a, _ in overdue_events(flow))  # completed: never escalated


def test_an_activity_found_past_both_thresholds_escalates_at_each_once(storage: Storage) -> None:
    flow, jobs = setup(storage)
    flow.storage.activities.add(activity("old", START - timedelta(days=3)))
    counts = run(jobs, START)
    assert escalations(counts) == (2, 0) and counts["escalations_matched"] == 1
    assert overdue_events(flow) == [("old", 1), ("old", 24)]
    assert [p["level"] for p in payloads(flow, "activity.overdue")] == [1, 2]
    assert len(to_manager(flow)) == 1
    # Another instance on the same stores, its own runner: the cursors are shared.
    other = LeadflowJobs(restarted(flow), jobs.settings)
    assert escalations(run(other, START + HOUR)) == (0, 0)


def test_completing_an_activity_before_a_threshold_stops_its_escalation(
    storage: Storage,
) -> None:
    flow, jobs = setup(storage)
    flow.storage.activities.add(activity("a", START))
    assert escalations(run(jobs, START + 2 * HOUR)) == (1, 0)
    flow.storage.activities.complete(
        "a", outcome=None, completed_by="alice", completed_at=START + 3 * HOUR
    )
    assert escalations(run(jobs, START + 30 * HOUR)) == (0, 0)
    assert overdue_events(flow) == [("a", 1)]
    assert to_manager(flow) == []


def test_a_cancelled_activity_never_escalates(storage: Storage) -> None:
    flow, jobs = setup(storage)
    flow.storage.activities.add(activity("a", START))
    assert escalations(run(jobs, START + 2 * HOUR)) == (1, 0)
    stored = flow.storage.activities.get("a")
    flow.storage.activities.update(
        stored.model_copy(update={"cancelled_at": START + 3 * HOUR, "cancelled_by": "alice"})
    )
    assert escalations(run(jobs, START + 30 * HOUR)) == (0, 0)
    assert overdue_events(flow) == [("a", 1)]
    assert to_manager(flow) == []


def test_a_rescheduled_activity_missed_again_escalates_again(storage: Storage) -> None:
    flow, jobs = setup(storage)
    flow.storage.activities.add(activity("a", START))
    run(jobs, START + 2 * HOUR)
    stored = flow.storage.activities.get("a")
    new_due = START + 10 * HOUR
    flow.storage.activities.update(stored.model_copy(update={"due_date": new_due}))
    assert escalations(run(jobs, START + 11 * HOUR)) == (1, 0)
    ids = [p["eventId"] for p in payloads(flow, "activity.overdue")]
    assert ids == [overdue_event_id("a", START, HOUR), overdue_event_id("a", new_due, HOUR)]


# ------------------------------------------------------------------ bounds and failures


def test_escalations_are_bounded_per_threshold_and_run(storage: Storage) -> None:
    flow, jobs = setup(storage, escalation_limit=2, overdue_thresholds=[HOUR])
    for n in range(5):
        flow.storage.activities.add(activity(f"a{n}", START - timedelta(minutes=n)))
    first = run(jobs, START + 2 * HOUR)
    assert (first["escalated"], first["escalations_truncated"]) == (2, 1)
    second = run(jobs, START + 3 * HOUR)
    assert (second["escalated"], second["escalations_truncated"]) == (2, 1)
    third = run(jobs, START + 4 * HOUR)
    assert (third["escalated"], third["escalations_truncated"]) == (1, 0)
    # Most overdue first.
    assert [a for a, _ in overdue_events(flow)] == ["a4", "a3", "a2", "a1", "a0"]


def test_a_failed_escalation_stops_the_walk_and_is_tried_again(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, jobs = setup(storage, overdue_thresholds=[HOUR])
    for n in range(3):
        flow.storage.activities.add(activity(f"a{n}", START + timedelta(minutes=n)))
    handle = flow.handle

    def flaky(event: Any) -> Any:
        if event.payload["activityId"] == "a1":
            raise RuntimeError("storage hiccup")
        return handle(event)

    monkeypatch.setattr(flow, "handle", flaky)
    first = run(jobs, START + 2 * HOUR)
    assert (first["escalated"], first["escalations_failed"]) == (1, 1)
    monkeypatch.undo()
    second = run(jobs, START + 3 * HOUR)
    assert (second["escalated"], second["escalations_failed"]) == (2, 0)
    assert overdue_events(flow) == [("a0", 1), ("a1", 1), ("a2", 1)]


def test_a_crash_between_the_rules_and_the_mark_acts_once(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, jobs = setup(storage)
    flow.storage.activities.add(activity("a", START - timedelta(days=2)))

    def crash(*_: object, **__: object) -> bool:
        raise RuntimeError("the process died after feeding the rules")

    monkeypatch.setattr(jobs.store, "mark", crash)
    done: JobRun | None = jobs.runner().run_job("overdue_check", START)
    assert done is not None and done.error is not None and "died" in done.error
    assert len(to_manager(flow)) == 0  # the 1 h threshold came first; the 24 h one not reached
    monkeypatch.undo()
    # The cursor did not move: the next run feeds the same events, which the rules recognise.
    counts = run(jobs, START + HOUR)
    assert escalations(counts) == (2, 0)
    assert overdue_events(flow) == [("a", 1), ("a", 24)]
    assert len(to_manager(flow)) == 1


def test_a_crash_after_the_24h_rules_acted_does_not_notify_the_manager_twice(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, jobs = setup(storage, overdue_thresholds=[timedelta(hours=24)])
    flow.storage.activities.add(activity("a", START - timedelta(days=2)))

    def crash(*_: object, **__: object) -> bool:
        raise RuntimeError("the process died after feeding the rules")

    monkeypatch.setattr(jobs.store, "mark", crash)
    done = jobs.runner().run_job("overdue_check", START)
    assert done is not None and done.error is not None
    assert len(to_manager(flow)) == 1  # the rules acted before the crash
    assert payloads(flow, "activity.overdue") == []  # the sink copy follows the mark
    monkeypatch.undo()
    counts = run(jobs, START + HOUR)
    assert escalations(counts) == (1, 0) and counts["escalations_matched"] == 1
    assert len(to_manager(flow)) == 1
    assert overdue_events(flow) == [("a", 24)]


# ------------------------------------------------------------------ two runs at once


@pytest.mark.parametrize("trial", range(2))
def test_two_runs_at_once_escalate_each_once(threaded_storage: Storage, trial: int) -> None:
    flow, _ = setup(threaded_storage)
    count = 6
    for n in range(count):
        flow.storage.activities.add(
            activity(
                f"a{n}", START - timedelta(days=2, minutes=n), opportunity_id=f"opp-{n % 4 + 1}"
            )
        )
    slow = dataclasses.replace(
        flow.storage, jobs=Slow(flow.storage.jobs), activities=Slow(flow.storage.activities)
    )
    workers = [LeadflowJobs(restarted(flow, storage=slow), JobSettings()) for _ in range(2)]
    # One slot run twice at once (a run that outlived its lease and the one that took over).
    results = together(
        2, lambda n: workers[n].check_overdue(context(workers[n], START, f"worker-{n}"))
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r["escalated"] for r in results) == 2 * count
    assert sum(r["escalations_failed"] for r in results) == 0
    events = Counter(overdue_events(flow))
    assert len(events) == 2 * count and set(events.values()) == {1}
    notes = Counter(n.data["event"]["activityId"] for n in to_manager(flow))
    assert notes == Counter({f"a{n}": 1 for n in range(count)})
    # And after them, nothing is left to do.
    assert escalations(run(workers[0], START + HOUR)) == (0, 0)


# ------------------------------------------------------------------ settings and vocabulary


def test_thresholds_are_validated_sorted_and_may_be_turned_off() -> None:
    settings = JobSettings(overdue_thresholds=[timedelta(hours=24), HOUR, HOUR])
    assert settings.overdue_thresholds == (HOUR, timedelta(hours=24))
    for bad in ([timedelta(0)], [timedelta(seconds=1.5)], ["1h"], HOUR, [HOUR] * 11 + [2 * HOUR]):
        with pytest.raises(InvalidInputError) as error:
            JobSettings(overdue_thresholds=bad)
        assert error.value.field == "overdue_thresholds"
    with pytest.raises(InvalidInputError):
        JobSettings(escalation_limit=0)
    flow = LeadFlow.in_memory(clock=ManualClock(START))
    flow.storage.activities.add(activity("a", START - timedelta(days=3)))
    jobs = LeadflowJobs(flow, JobSettings(overdue_thresholds=()))
    counts = run(jobs, START)
    assert (counts["overdue"], counts["escalated"]) == (1, 0)


def test_activity_overdue_is_a_known_event_type() -> None:
    assert "activity.overdue" in EventTypes()
    flow = LeadFlow.in_memory(rules=[TO_MANAGER])
    assert "activity.overdue" in flow.vocabulary.event_types.names()


def test_lint_knows_the_escalation_payload() -> None:
    assert lint([TO_MANAGER]) == []
    typo = rule(
        "typo",
        "activity.overdue",
        [{"actionType": "send_notification", "template": "x"}],
        conditions=[{"field": "treshold", "operator": "equals", "value": 24}],
    )
    kind = rule(
        "kind",
        "activity.overdue",
        [{"actionType": "send_notification", "template": "x"}],
        conditions=[{"field": "threshold", "operator": "equals", "value": "24"}],
    )
    found = {f.rule_id: f for f in lint([typo, kind]) if f.code != "same-follow-up"}
    assert found["typo"].code == "unknown-field" and "'threshold'" in found["typo"].hint
    assert found["kind"].code == "type-mismatch"
