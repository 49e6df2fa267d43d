"""A sequence's versions against a model: random publishes (active or draft, each ``in_flight``
policy, goals on changing event types), pauses, resumes, archives, new leads and goal events,
and after each step the enrollments the flow holds compared with the model's.

The model's rules (docs/sequences.md, "Versions"): the running version is the latest that is
not a draft; a new lead enters iff it is active, on it; pause / resume act on it (an
:class:`InvalidStateError` unless it is active / paused) and archive ends every active
enrollment; publishing an active version moves (``move``) or ends (``end``) the enrollments
on older versions, a draft touches none; an enrollment reaches its goal when an event of its
own version's goal type says ``won``, whatever the newer versions listen to. Time passes
too (``run_due`` drains what is due): an enrollment's one e-mail, a day after it entered, goes
out only while it is active and its sequence not paused, once, and then it completes; one
whose day has passed has sent it unless the sequence is paused."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from leadflow import LeadFlow, ManualClock
from leadflow.adapters import InMemoryOpportunities, RecordingMessenger
from leadflow.errors import InvalidStateError
from leadflow.sequences import EnrollmentState, SequenceDefinition, SequenceStatus

MONDAY_10 = datetime(2026, 1, 5, 10, tzinfo=UTC)
GOAL_TYPES = ("opportunity.status_changed", "estimate.created")
SEQUENCE = "nurture"


def definition(goal_type: str) -> SequenceDefinition:
    won = [{"field": "status", "operator": "equals", "value": "won"}]
    return SequenceDefinition.model_validate(
        {
            "sequenceId": SEQUENCE,
            "name": "Nurture",
            "entry": {"eventType": "opportunity.created"},
            "steps": [
                {"id": "pause", "kind": "wait", "delay": 24},
                {
                    "id": "send",
                    "kind": "action",
                    "action": {"actionType": "send_email", "template": "follow-up"},
                },
            ],
            "goals": [{"name": "won", "eventType": goal_type, "conditions": won}],
        }
    )


@dataclass
class Version:
    goal_type: str
    status: SequenceStatus


@dataclass
class Model:
    versions: list[Version] = field(default_factory=list)
    # opportunity -> (version, state) of its one enrollment
    enrollments: dict[str, tuple[int, EnrollmentState]] = field(default_factory=dict)
    entered: dict[str, datetime] = field(default_factory=dict)

    def running(self) -> tuple[int, Version] | None:
        if not self.versions:
            return None
        for number in range(len(self.versions), 0, -1):
            if self.versions[number - 1].status is not SequenceStatus.DRAFT:
                return number, self.versions[number - 1]
        return len(self.versions), self.versions[-1]

    def end_active(self, state: EnrollmentState) -> None:
        for opportunity, (version, current) in self.enrollments.items():
            if current is EnrollmentState.ACTIVE:
                self.enrollments[opportunity] = (version, state)


class Versions(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(MONDAY_10)
        self.flow = LeadFlow.in_memory(clock=self.clock)
        self.model = Model()
        self.leads = 0
        self.events = 0
        self.sent = 0

    def _gateway(self) -> InMemoryOpportunities:
        gateway = self.flow.integrations.opportunities
        assert isinstance(gateway, InMemoryOpportunities)
        return gateway

    @rule(
        goal_type=st.sampled_from(GOAL_TYPES),
        draft=st.booleans(),
        in_flight=st.sampled_from(["keep", "move", "end"]),
    )
    def publish(self, goal_type: str, draft: bool, in_flight: str) -> None:
        status = SequenceStatus.DRAFT if draft else SequenceStatus.ACTIVE
        stored = self.flow.sequences.publish(
            definition(goal_type), status=status, in_flight=in_flight
        )
        model = self.model
        model.versions.append(Version(goal_type, status))
        assert stored.version == len(model.versions)
        if status is SequenceStatus.ACTIVE and in_flight != "keep" and len(model.versions) > 1:
            for opportunity, (version, state) in model.enrollments.items():
                if state is EnrollmentState.ACTIVE and version != stored.version:
                    moved = (
                        (stored.version, state)
                        if in_flight == "move"
                        else (version, EnrollmentState.ENDED)
                    )
                    model.enrollments[opportunity] = moved

    def _status_change(self, wanted: SequenceStatus, new: SequenceStatus, call: str) -> None:
        running = self.model.running()
        assert running is not None
        if running[1].status is not wanted:
            with pytest.raises(InvalidStateError):
                getattr(self.flow.sequences, call)(SEQUENCE)
            return
        changed = getattr(self.flow.sequences, call)(SEQUENCE)
        assert changed.version == running[0]
        running[1].status = new

    @precondition(lambda self: self.model.versions)
    @rule()
    def pause(self) -> None:
        self._status_change(SequenceStatus.ACTIVE, SequenceStatus.PAUSED, "pause")

    @precondition(lambda self: self.model.versions)
    @rule()
    def resume(self) -> None:
        self._status_change(SequenceStatus.PAUSED, SequenceStatus.ACTIVE, "resume")

    @precondition(lambda self: self.model.versions)
    @rule()
    def archive(self) -> None:
        running = self.model.running()
        assert running is not None
        changed = self.flow.sequences.archive(SEQUENCE)
        assert changed.version == running[0]
        running[1].status = SequenceStatus.ARCHIVED
        self.model.end_active(EnrollmentState.ENDED)

    @rule()
    def lead(self) -> None:
        self.leads += 1
        opportunity = f"o{self.leads}"
        self._gateway().add(opportunity, owner="alice", email=f"{opportunity}@example.com")
        result = self.flow.handle(
            {
                "type": "opportunity.created",
                "id": f"lead-{opportunity}",
                "time": self.clock.now(),
                "payload": {"opportunityId": opportunity},
            }
        )
        running = self.model.running()
        if running is not None and running[1].status is SequenceStatus.ACTIVE:
            assert [o.what for o in result.sequences] == ["enrolled"]
            self.model.enrollments[opportunity] = (running[0], EnrollmentState.ACTIVE)
            self.model.entered[opportunity] = self.clock.now()
        else:
            assert result.sequences == []

    @precondition(lambda self: self.leads)
    @rule(data=st.data(), goal_type=st.sampled_from(GOAL_TYPES))
    def won(self, data: st.DataObject, goal_type: str) -> None:
        opportunity = f"o{data.draw(st.integers(1, self.leads))}"
        self.events += 1
        self.flow.handle(
            {
                "type": goal_type,
                "id": f"won-{self.events}",
                "time": self.clock.now(),
                "payload": {"opportunityId": opportunity, "status": "won"},
            }
        )
        found = self.model.enrollments.get(opportunity)
        if found is not None and found[1] is EnrollmentState.ACTIVE:
            version = self.model.versions[found[0] - 1]
            if version.goal_type == goal_type:
                self.model.enrollments[opportunity] = (found[0], EnrollmentState.GOAL_REACHED)
        self.clock.advance(timedelta(seconds=1))

    @rule(hours=st.sampled_from([1, 6, 25]))
    def later(self, hours: int) -> None:
        self.clock.advance(timedelta(hours=hours))
        while self.flow.run_due(limit=1000).claimed:  # a wait's end stores the send, due now
            pass
        messenger = self.flow.integrations.messenger
        assert isinstance(messenger, RecordingMessenger)
        new, self.sent = messenger.sent[self.sent :], len(messenger.sent)
        running = self.model.running()
        paused = running is not None and running[1].status is SequenceStatus.PAUSED
        for message in new:
            opportunity = message.to.split("@")[0]
            version, state = self.model.enrollments[opportunity]
            assert state is EnrollmentState.ACTIVE and not paused, (opportunity, state)
            self.model.enrollments[opportunity] = (version, EnrollmentState.COMPLETED)
        if paused:
            return
        now = self.clock.now()
        late = [
            opportunity
            for opportunity, (_, state) in self.model.enrollments.items()
            if state is EnrollmentState.ACTIVE
            and self.model.entered[opportunity] + timedelta(hours=24) <= now
        ]
        # Not paused: whatever came due has run, a visit a pause held included (a resume, or
        # an active version published over the paused one, released it, due at once).
        assert late == [], (late, now)

    @invariant()
    def enrollments_match(self) -> None:
        store = self.flow.storage.enrollments
        assert store is not None
        held = {
            e.opportunity_id: (e.sequence_version, e.state)
            for e in store.list(sequence_id=SEQUENCE, limit=10_000)
        }
        assert held == self.model.enrollments


Versions.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestVersions = Versions.TestCase
