"""Sequences across real processes, with workers SIGKILLed mid-handler (issue 18, "Durability
and proof"), on PostgreSQL and on a SQLite file.

Four workers (``python -m tests.sequence_worker``, each a LeadFlow on ``sql_storage`` running
``run_due`` on the system clock) share one database while the test feeds a stream of events
through a flow of its own: an entry per opportunity, a goal for every third one and a reply
for every fourth, at random moments of their enrollment's life. The sequence: an action, a
1.2 s wait, an action, a wait of up to 3 s for a reply (then "thanks", else "last"), an
action. Each action step's handler stores its effect keyed on the step's idempotency key.

Two workers stop mid-handler and are SIGKILLed: one once its effect is stored (the rerun,
after its lease expired, applies the same key again), one before (its send began: the test
stores a goal for that opportunity first, so the rerun must complete the send after the goal,
the send having begun before it).

Then, from the store and the effects table: every step of every enrollment took effect exactly
once by its key, in the order of its visits. A step ran twice only when a killed worker had run
it without committing its batch's moves (they are committed together after the batch's
handlers, as plain actions are acknowledged): the rerun applies the same key once more (the
one killed after its effect among them), and no live worker runs a key twice; an enrollment
that reached its goal has an effect for the goal's visit iff its send had begun (the goal's
record keeps ``sending``), none after; every enrollment ended (completed, or goal_reached
where a goal was stored while it ran; thanks iff its reply matched); nothing pending, claimed
or parked.

Scales (tests/suite.py): ``LEADFLOW_TEST_SEQUENCE_OPPORTUNITIES`` on PostgreSQL (local 30,
CI 300) and ``LEADFLOW_TEST_SEQUENCE_SQLITE_OPPORTUNITIES`` on SQLite (local 16, CI 60);
``LEADFLOW_TEST_SEQUENCE_SEED`` replays a run's moments of goals and replies (its figures
show the seed).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from leadflow import FlowSettings, HandlerRegistry, LeadFlow, ScheduledActionState
from leadflow.errors import UnavailableError
from leadflow.records import ActionKind
from leadflow.sequences import EnrollmentState, SequenceDefinition

from . import suite

pytest.importorskip("leadflow.stores.sql", reason="needs the sql extra")
import sqlalchemy as sa

from .fault_worker import effects_engine
from .process_support import (
    BACKENDS,
    Processes,
    Target,
    fresh_target,
    report,
    shared_claims,
    wait_until_drained,
)
from .sequence_worker import (
    ACTION_TYPE,
    EVENT_TYPES,
    create_effects_table,
    read_effects,
    refuse,
)

OPPORTUNITIES = {
    "postgresql": suite.count("LEADFLOW_TEST_SEQUENCE_OPPORTUNITIES", 30),
    "sqlite": suite.count("LEADFLOW_TEST_SEQUENCE_SQLITE_OPPORTUNITIES", 16),
}
DRAIN_TIMEOUT = 240.0  # a guard against hanging forever, not a timing assertion
LEASE = 2.0
ACTIONS = ("hello", "nudge", "thanks", "last")


def crash_sequence() -> SequenceDefinition:
    return SequenceDefinition.model_validate(
        {
            "sequenceId": "crash",
            "name": "crash",
            "entry": {"eventType": "opportunity.created"},
            "steps": [
                {"id": "hello", "kind": "action", "action": {"actionType": ACTION_TYPE}},
                {"id": "pause", "kind": "wait", "delay": {"amount": 0.02, "unit": "minutes"}},
                {"id": "nudge", "kind": "action", "action": {"actionType": ACTION_TYPE}},
                {"id": "reply", "kind": "wait_for_event", "eventType": "email.replied",
                 "timeout": {"amount": 0.05, "unit": "minutes"}, "then": "thanks",
                 "onTimeout": "last"},
                {"id": "last", "kind": "action", "action": {"actionType": ACTION_TYPE}},
                {"id": "end", "kind": "exit"},
                {"id": "thanks", "kind": "action", "action": {"actionType": ACTION_TYPE}},
            ],
            "goals": [
                {"name": "won", "eventType": "opportunity.status_changed",
                 "conditions": [{"field": "newStatus", "operator": "equals", "value": "won"}]}
            ],
        }
    )  # fmt: skip


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    with fresh_target(request.param, tmp_path, "leadflow_seq") as found:
        create_effects_table(effects_engine(found.effects_url))
        yield found


class Workers(Processes):
    timeout = DRAIN_TIMEOUT

    def __init__(self, target: Target, tmp_path: Path) -> None:
        super().__init__(target, tmp_path)
        self.stop_file = tmp_path / "stop"
        self.go_file = tmp_path / "go"

    def spawn(self, name: str, **config: Any) -> None:
        path = self.write_config(name, stop=str(self.stop_file), go=str(self.go_file), **config)
        self.start(name, [sys.executable, "-m", "tests.sequence_worker", str(path)])

    def go(self) -> None:
        for name in self.procs:
            self.wait_for(name, "ready")
        self.go_file.touch()

    def finish(self) -> dict[str, int]:
        self.stop_file.touch()
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes


@pytest.fixture
def workers(target: Target, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(target, tmp_path)
    try:
        yield running
    finally:
        running.kill_all()


def event(kind: str, opp: str, n: int = 0) -> dict[str, Any]:
    now = datetime.now(UTC)
    if kind == "entry":
        return {"type": "opportunity.created", "id": f"lead-{opp}", "time": now,
                "payload": {"opportunityId": opp}}  # fmt: skip
    if kind == "goal":
        return {"type": "opportunity.status_changed", "id": f"won-{opp}-{n}", "time": now,
                "payload": {"opportunityId": opp, "newStatus": "won"}}  # fmt: skip
    assert kind == "reply"
    return {"type": "email.replied", "id": f"reply-{opp}", "time": now,
            "payload": {"opportunityId": opp}}  # fmt: skip


class Feeder:
    """The test's own flow on the database: hands events in and keeps what they did to each
    opportunity's enrollment (goal_reached, matched)."""

    def __init__(self, target: Target) -> None:
        handlers = HandlerRegistry.default()
        handlers.register(ACTION_TYPE, refuse)
        self.flow = LeadFlow.in_memory(
            storage=target.storage(),
            handlers=handlers,
            event_types=EVENT_TYPES,
            settings=FlowSettings(worker_id="feeder"),
        )
        self.outcomes: dict[str, list[str]] = defaultdict(list)
        self.handled: dict[str, int] = defaultdict(int)
        self.retries = 0

    def handle(self, kind: str, opp: str, n: int = 0) -> list[str]:
        deadline = time.monotonic() + 60  # a hang guard
        while True:
            try:
                result = self.flow.handle(event(kind, opp, n))
                break
            except UnavailableError:  # SQLite busy beyond its timeout: hand it in again
                self.retries += 1
                if time.monotonic() > deadline:
                    raise
        assert not result.all_errors(), result.all_errors()
        what = [o.what for o in result.sequences]
        self.outcomes[opp] += what
        self.handled[kind] += 1
        return what


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
def test_workers_killed_mid_handler_lose_double_and_send_after_a_goal_nothing(
    target: Target, workers: Workers, request: pytest.FixtureRequest
) -> None:
    count = OPPORTUNITIES[target.dialect]
    seed = int(os.environ.get("LEADFLOW_TEST_SEQUENCE_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    feeder = Feeder(target)
    feeder.flow.sequences.publish(crash_sequence())
    storage = feeder.flow.storage
    effects = effects_engine(target.effects_url)

    # The stream: entries spread over a window, goals and replies at random moments after.
    window = max(3.0, count * 0.02)
    plan: list[tuple[float, str, str]] = []
    for i in range(count):
        opp = f"opp-{i:04d}"
        at = window * i / count
        plan.append((at, "entry", opp))
        if i % 3 == 0:  # half of them racing the first send, the others any time
            later = rng.uniform(0.0, 0.15) if i % 2 else rng.uniform(0.0, 6.0)
            plan.append((at + later, "goal", opp))
        if i % 4 == 1:
            plan.append((at + rng.uniform(0.5, 5.0), "reply", opp))
    plan.sort()

    # The victims stop at their 2nd and 1st handler runs: early, so that they reach them even
    # when the other workers take most of the work (a loaded machine, the local scale).
    workers.spawn("w0", lease=LEASE, kill_after=2, kill_point="after")
    workers.spawn("w1", lease=LEASE, kill_after=1, kill_point="before")
    workers.spawn("w2", lease=LEASE)
    workers.spawn("w3", lease=LEASE)
    workers.go()
    started = time.monotonic()
    victims: dict[str, dict[str, Any]] = {}
    killed_at: list[float] = []

    def watch() -> None:
        """Kill a victim once it stopped mid-handler; before killing the one whose send began
        but did nothing yet, store a goal for its opportunity."""
        for name in ("w0", "w1"):
            if name in victims:
                continue
            line = workers.wait_for(name, "mid-handler", block=False)
            if line is None:
                continue
            # The batch's send marks were committed before its first handler: a goal of the
            # stream may have ended this enrollment since (its send still completes); else
            # the goal stored here does.
            before = line["point"] == "before"
            if before and feeder.handle("goal", line["opportunity"], 99) != ["goal_reached"]:
                ended = storage.enrollments.get(line["enrollment"])
                assert ended.state is EnrollmentState.GOAL_REACHED and ended.sending, ended
            assert workers.signal(name, signal.SIGKILL) == -signal.SIGKILL
            victims[name] = line
            killed_at.append(time.monotonic())

    for at, kind, opp in plan:
        while time.monotonic() - started < at:
            watch()
            time.sleep(0.01)
        feeder.handle(kind, opp, 0)
        watch()
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while len(victims) < 2:  # a hang guard, not a timing check
        workers.check_alive(except_=list(victims))
        assert time.monotonic() < deadline, workers.outputs()
        watch()
        time.sleep(0.02)

    def left() -> bool:
        live = any(storage.scheduled.list(s, limit=1) for s in
                   (ScheduledActionState.PENDING, ScheduledActionState.CLAIMED))  # fmt: skip
        return live or bool(storage.enrollments.list(state=EnrollmentState.ACTIVE, limit=1))

    drained = wait_until_drained(
        storage,
        timeout=DRAIN_TIMEOUT,
        left=left,
        check=lambda: workers.check_alive(except_=list(victims)),
        describe=lambda: workers.outputs(),
        retry_on=(UnavailableError, sa.exc.OperationalError),
    )
    codes = workers.finish()
    assert all(codes[n] == 0 for n in ("w2", "w3")), workers.outputs()
    figures = check(storage, effects, workers, feeder, victims, count)
    report(
        request,
        "sequences",
        f"sigkill/{target.dialect}",
        {
            **figures,
            "seed": seed,
            "seconds": round(drained - started, 1),
            "after_kills": round(drained - max(killed_at), 1),
        },
    )


def check(
    storage: Any,
    effects: sa.Engine,
    workers: Workers,
    feeder: Feeder,
    victims: dict[str, dict[str, Any]],
    count: int,
) -> dict[str, Any]:
    logs = workers.logs()
    stored = read_effects(effects)
    enrollments = {e.enrollment_id: e for e in storage.enrollments.list(limit=count + 10)}
    assert len(enrollments) == count
    by_opp = {e.opportunity_id: e for e in enrollments.values()}
    assert len(by_opp) == count
    actions = storage.scheduled.list(limit=10 * count + 100)
    # Done, or cancelled (an ended enrollment's pending visit, a matched wait's timeout).
    finished = (ScheduledActionState.DONE, ScheduledActionState.CANCELLED)
    unfinished = {a.idempotency_key: a.state.value for a in actions
                  if a.state not in finished}  # fmt: skip
    assert not unfinished, unfinished  # nothing pending, claimed, failed or parked
    visits: dict[str, dict[int, Any]] = defaultdict(dict)
    for action in actions:
        assert action.kind is ActionKind.STEP and action.enrollment_id is not None
        visits[action.enrollment_id][action.action_index] = action

    effect_of: dict[str, dict[int, Any]] = defaultdict(dict)
    for fx in stored.values():
        assert fx.key == f"seq:{fx.enrollment_id}:{fx.visit}", fx
        effect_of[fx.enrollment_id][fx.visit] = fx
    states: dict[str, int] = defaultdict(int)
    for enrollment_id, final in enrollments.items():
        opp = final.opportunity_id
        outcomes = feeder.outcomes[opp]
        mine = visits[enrollment_id]
        done = effect_of[enrollment_id]
        states[final.state.value] += 1
        last = final.visit
        assert sorted(v for v in mine if v <= last) == list(range(1, last + (final.state is not
               EnrollmentState.COMPLETED)))  # fmt: skip
        expected = {v for v, a in mine.items() if v < last and a.step_id in ACTIONS}
        if final.state is EnrollmentState.GOAL_REACHED:
            assert "goal_reached" in outcomes, (opp, outcomes, final)
            [end] = [h for h in final.history if h.kind == "end"]
            assert end.visit == last and end.outcome == "goal_reached"
            if final.sending:  # the send began before the goal: it completed
                assert mine[last].step_id in ACTIONS
                expected.add(last)
        else:
            assert final.state is EnrollmentState.COMPLETED, final
            assert "goal_reached" not in outcomes, (opp, outcomes)
            assert not final.sending
            path = [mine[v].step_id for v in sorted(mine) if mine[v].step_id in ACTIONS]
            assert path in (["hello", "nudge", "thanks"], ["hello", "nudge", "last"]), path
            assert (path[-1] == "thanks") == ("matched" in outcomes), (opp, outcomes)
        assert set(done) == expected, (opp, final, sorted(done), sorted(expected))
        for v, fx in done.items():
            assert fx.step_id == mine[v].step_id
        order = [done[v].first_t for v in sorted(done)]
        assert order == sorted(order), (opp, order)  # in the order of the visits

    # Exactly once in effect, by key. A step runs again only if a killed worker ran it and had
    # not committed its batch's moves (nor acknowledged it): as a plain action whose
    # acknowledgement was not stored yet. Each such rerun applies the same key once more.
    after, before = victims["w0"], victims["w1"]
    runs: dict[str, list[str]] = defaultdict(list)
    for entry in logs:
        if entry["ev"] == "run":
            runs[entry["key"]].append(entry["worker"])
    acknowledged = {(e["worker"], e["key"]) for e in logs if e["ev"] == "done"}
    unacknowledged = {key for key, names in runs.items() for name in names
                      if name in victims and (name, key) not in acknowledged}  # fmt: skip
    for key, names in runs.items():
        assert len([n for n in names if n not in victims]) <= 1, (key, names)
        assert len(names) == 1 or key in unacknowledged, (key, names)
    twice = {k: fx.applied for k, fx in stored.items() if fx.applied != 1}
    assert twice.get(after["key"]) == 2, twice  # killed after its effect: the rerun applies it
    assert set(twice) <= unacknowledged and set(twice.values()) == {2}, (twice, unacknowledged)
    # The begun send was completed by the rerun (once, unless the other victim was that rerun).
    assert stored[before["key"]].worker != "w1"
    assert stored[before["key"]].applied == (2 if before["key"] == after["key"] else 1)
    begun = enrollments[before["enrollment"]]
    assert begun.state is EnrollmentState.GOAL_REACHED and begun.sending
    shared = shared_claims(logs)
    assert not shared, f"two runs of one claim at once: {list(shared.items())[:5]}"
    errors = [e for e in logs if e["ev"] == "error"]
    assert all(e["leadflow"] for e in errors), errors[:5]
    skipped_visits = sum(1 for a in actions if a.step_id in ACTIONS) - len(stored)
    return {
        "opportunities": count,
        "events": dict(feeder.handled),
        "enrollments": dict(states),
        "stored_visits": len(actions),
        "effects": len(stored),
        "handler_runs": sum(len(names) for names in runs.values()),
        "reruns": sum(len(names) for names in runs.values()) - len(stored),
        "keys_applied_twice": len(twice),
        "visits_skipped_after_goal": skipped_visits,
        "sent_after_goal_began_before": sum(
            1 for e in enrollments.values() if e.state is EnrollmentState.GOAL_REACHED and e.sending
        ),
        "early_claims_retried": sum(
            1 for a in actions if a.last_error and "not yet at visit" in a.last_error
        ),
        "errors": len(errors),
        "feeder_retries": feeder.retries,
    }
