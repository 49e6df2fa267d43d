"""A seeded property test: random sequences and random event streams through the real runtime
(in memory, a manual clock, ``run_due`` whenever something comes due), compared with a small
reference interpreter written from the documented semantics alone. Both must send the same
steps at the same times and end the same way.

Semantics the reference states (and the runtime must follow): an enrollment enters on its
entry event; ``action`` runs when reached (no send window here); ``wait`` ends ``delay`` hours
later; ``wait_for_event`` moves to ``then`` (default: the next step) on a matching event of the
opportunity, to ``on_timeout`` (default: the next step) when the timeout comes first;
``branch`` takes the first case whose condition holds on {entry, event, opportunity};
``split`` takes the variant a SHA-256 of the enrollment and step ids picks by weight; ``goto``
jumps; ``exit`` and the end of the list complete it; a goal event ends it at once (goals are
looked at before waits). At the same instant, what is due runs before the event arrives.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from leadflow import LeadFlow, ManualClock
from leadflow.ports import Message
from leadflow.runtime.sequence_parts import enrollment_id_for
from leadflow.sequences import SequenceDefinition

from . import suite

T0 = datetime(2026, 2, 2, 8, tzinfo=UTC)
EVENT_TYPES = ("x.ping", "x.pong")
GOAL = "x.goal"
SEEDS = range(suite.examples(300))


# --------------------------------------------------------------------------- generation


def _condition(rng: random.Random, prefix: str = "") -> dict[str, Any]:
    return {"field": f"{prefix}v", "operator": "equals", "value": rng.randrange(3)}


def random_sequence(rng: random.Random) -> SequenceDefinition | None:
    count = rng.randint(2, 8)
    ids = [f"s{i}" for i in range(count)]
    steps: list[dict[str, Any]] = []
    for i, step_id in enumerate(ids):
        kind = rng.choice(["action", "action", "wait", "wait_for_event", "branch", "split",
                           "goto", "exit"])  # fmt: skip
        if i == count - 1 and kind in ("goto", "branch", "split"):
            kind = "action"
        target = rng.choice(ids)
        step: dict[str, Any] = {"id": step_id, "kind": kind}
        if kind == "action":
            step["action"] = {"actionType": "send_email", "template": step_id}
        elif kind == "wait":
            step["delay"] = rng.randint(1, 6)
        elif kind == "wait_for_event":
            step.update(eventType=rng.choice(EVENT_TYPES), timeout=rng.randint(1, 8))
            if rng.random() < 0.5:
                step["conditions"] = [_condition(rng)]
            if rng.random() < 0.5:
                step["then"] = rng.choice(ids)
            if rng.random() < 0.5:
                step["onTimeout"] = rng.choice(ids)
        elif kind == "branch":
            step["cases"] = [
                {"when": [_condition(rng, rng.choice(["entry.", "event."]))],
                 "goto": rng.choice(ids)}
                for _ in range(rng.randint(1, 2))
            ]  # fmt: skip
            if rng.random() < 0.5:
                step["otherwise"] = rng.choice(ids)
        elif kind == "split":
            step["variants"] = [
                {"name": name, "weight": rng.randint(1, 5), "goto": rng.choice(ids)}
                for name in ("A", "B")
            ]
        elif kind == "goto":
            step["target"] = target
        steps.append(step)
    document = {
        "sequenceId": "rand",
        "name": "random",
        "entry": {"eventType": "x.enter"},
        "steps": steps,
        "goals": [{"name": "goal", "eventType": GOAL}],
        "status": "active",
    }
    try:
        return SequenceDefinition.model_validate(document)
    except ValidationError:
        return None  # e.g. a loop that never waits: refused, as it should be


def random_events(rng: random.Random) -> list[dict[str, Any]]:
    events = [_event("x.enter", "enter", T0, {"v": rng.randrange(3)})]
    for n in range(rng.randint(0, 8)):
        kind = GOAL if rng.random() < 0.08 else rng.choice(EVENT_TYPES)
        at = T0 + timedelta(hours=rng.randint(0, 30))
        events.append(_event(kind, f"e{n}", at, {"v": rng.randrange(3)}))
    events.sort(key=lambda e: e["time"])
    return events


def _event(kind: str, event_id: str, at: datetime, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "id": event_id, "time": at, "payload": {"opportunityId": "o1", **payload}}


# --------------------------------------------------------------------------- the reference


@dataclass
class Reference:
    definition: SequenceDefinition
    enrollment_id: str = ""
    sent: list[tuple[datetime, str]] = field(default_factory=list)
    state: str = "none"
    end: str | None = None
    position: int | None = None  # index of the step it stops at
    due: datetime | None = None
    entry: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] | None = None

    def steps(self) -> list[Any]:
        return list(self.definition.steps)

    def index(self, step_id: str) -> int:
        return [s.id for s in self.steps()].index(step_id)

    def enter(self, event: dict[str, Any], now: datetime) -> None:
        self.enrollment_id = enrollment_id_for(self.definition.sequence_id, event["id"])
        self.state, self.entry = "active", dict(event["payload"])
        self.walk(0, now)

    def holds(self, condition: Any, context: dict[str, Any]) -> bool:
        scope, _, name = condition.field.rpartition(".")
        source = context.get(scope, {}) if scope else context
        return bool(source) and source.get(name) == condition.value

    def walk(self, index: int, now: datetime) -> None:
        steps = self.steps()
        context = {"entry": self.entry, "event": self.last or {}, "opportunity": {}}
        while True:
            if index >= len(steps):
                self.finish("completed")
                return
            step = steps[index]
            if step.kind == "action":
                self.position, self.due = index, now
                return
            if step.kind == "wait":
                self.position, self.due = index, now + timedelta(hours=step.delay.amount)
                return
            if step.kind == "wait_for_event":
                self.position, self.due = index, now + timedelta(hours=step.timeout.amount)
                return
            if step.kind == "exit":
                self.finish(f"exit:{step.id}")
                return
            if step.kind == "goto":
                index = self.index(step.target)
            elif step.kind == "split":
                digest = hashlib.sha256(f"{self.enrollment_id}\x00{step.id}".encode()).digest()
                point = int.from_bytes(digest[:8], "big") % sum(v.weight for v in step.variants)
                for variant in step.variants:
                    if point < variant.weight:
                        index = self.index(variant.goto)
                        break
                    point -= variant.weight
            else:  # branch
                for case in step.cases:
                    if all(self.holds(c, context) for c in case.when):
                        index = self.index(case.goto)
                        break
                else:
                    index = self.index(step.otherwise) if step.otherwise else index + 1

    def finish(self, reason: str) -> None:
        self.state, self.end, self.position, self.due = "completed", reason, None, None

    def come_due(self, now: datetime) -> None:
        assert self.position is not None
        step = self.steps()[self.position]
        if step.kind == "action":
            self.sent.append((now, step.id))
            self.walk(self.position + 1, now)
        elif step.kind == "wait":
            self.walk(self.position + 1, now)
        else:
            target = step.on_timeout
            self.walk(self.index(target) if target else self.position + 1, now)

    def on_event(self, event: dict[str, Any], now: datetime) -> None:
        if self.state != "active":
            if event["type"] == "x.enter" and self.state == "none":
                self.enter(event, now)
            return
        if event["type"] == GOAL:
            self.state, self.end, self.position, self.due = "goal_reached", "goal", None, None
            return
        assert self.position is not None
        step = self.steps()[self.position]
        if step.kind == "wait_for_event" and event["type"] == step.event_type:
            payload = event["payload"]
            if all(payload.get(c.field) == c.value for c in step.conditions):
                self.last = dict(payload)
                target = step.then
                self.walk(self.index(target) if target else self.position + 1, now)

    def run(self, events: list[dict[str, Any]], until: datetime) -> None:
        pending = list(events)
        while True:
            due = self.due if self.state == "active" else None
            next_event = pending[0]["time"] if pending else None
            if due is not None and (next_event is None or due <= next_event) and due <= until:
                self.come_due(due)
            elif next_event is not None:
                event = pending.pop(0)
                self.on_event(event, event["time"])
            else:
                return


# --------------------------------------------------------------------------- the runtime


class TimedMessenger:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.sent: list[tuple[datetime, str]] = []

    def send(self, message: Message) -> None:
        self.sent.append((self.clock.now(), message.template))


def run_runtime(
    definition: SequenceDefinition, events: list[dict[str, Any]], until: datetime
) -> tuple[list[tuple[datetime, str]], str, str | None]:
    clock = ManualClock(T0)
    flow = LeadFlow.in_memory(clock=clock, event_types=["x.enter", "x.ping", "x.pong", GOAL])
    messenger = TimedMessenger(clock)
    object.__setattr__(flow.integrations, "messenger", messenger)
    gateway: Any = flow.integrations.opportunities
    gateway.add("o1", owner="alice", email="lead@example.com")
    flow.sequences.publish(definition)
    pending = list(events)
    scheduled = flow.storage.scheduled
    for _ in range(10_000):
        due = scheduled.next_due()
        next_event = pending[0]["time"] if pending else None
        if due is not None and (next_event is None or due <= next_event) and due <= until:
            clock.set(max(due, clock.now()))
            flow.run_due()
        elif next_event is not None:
            event = pending.pop(0)
            clock.set(max(event["time"], clock.now()))
            flow.handle(event)
        else:
            break
    enrollments = flow.sequences.enrollments("o1")
    if not enrollments:
        return messenger.sent, "none", None
    [enrollment] = enrollments
    state = enrollment.state.value
    reason = enrollment.end_reason
    if state == "goal_reached":
        reason = "goal"
    return messenger.sent, "completed" if state == "completed" else state, reason


@pytest.mark.parametrize("seed", SEEDS)
def test_the_runtime_follows_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    definition = None
    while definition is None:
        definition = random_sequence(rng)
    events = random_events(rng)
    until = T0 + timedelta(days=3)
    reference = Reference(definition)
    reference.run(events, until)
    sent, state, reason = run_runtime(definition, events, until)
    expected_state = reference.state if reference.state != "none" else "none"
    assert sent == reference.sent, (definition.to_document(), events)
    assert (state, reason) == (expected_state, reference.end if state != "active" else None), (
        definition.to_document(),
        events,
    )
