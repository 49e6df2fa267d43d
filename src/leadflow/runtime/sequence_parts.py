"""The parts of the sequencer that face the recipient and the records: the recipient's time
zone and the context branches read (through the opportunity gateway), the daily caps on
messages (through the counter store), the ``enroll`` action's settings, the keys of
enrollments and visits, a batch's visits stored, what a move changes in an enrollment and the
step records it appends, and the small record helpers."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from ..errors import LeadflowError
from ..fields import Id
from ..models import Event
from ..ports import (
    BatchScheduling,
    CounterStore,
    OpportunityFields,
    OpportunityGateway,
    ScheduledActionStore,
)
from ..records import ScheduledAction
from ..rules.sequencing import Hop, SequenceProgram, Stop, Zone
from ..sequences import (
    ActionStep,
    BranchStep,
    Enrollment,
    EnrollmentHead,
    EnrollmentState,
    SequenceDefinition,
    StepRecord,
    WaitForEventStep,
)
from ..sequences.enrollment import HISTORY_LIMIT
from ..stores.checks import handed_over
from .context import ActionContext

__all__ = [
    "MESSAGE_TYPES",
    "EnrollParams",
    "Move",
    "Planned",
    "Recipients",
    "Visit",
    "enrollment_id_for",
    "send_begun",
    "step_key",
    "store_visits",
]

log = logging.getLogger("leadflow")

_H = TypeVar("_H", bound=EnrollmentHead)

MESSAGE_TYPES: Final = frozenset({"send_email", "send_sms"})
"""Action types that message the contact: what the daily caps count."""

log = logging.getLogger("leadflow")


class EnrollParams(BaseModel):
    """The ``enroll`` rule action's settings: ``sequenceId``, the sequence to enroll the
    event's opportunity in (its current version; the sequence's re-enrollment policy
    applies)."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True,
        extra="forbid", frozen=True,
    )  # fmt: skip

    sequence_id: Id


def enrollment_id_for(sequence_id: str, cause: str) -> str:
    """The enrollment an entry makes: one per sequence and entry event (``cause``), so
    handling the event again enrolls nobody twice."""
    digest = hashlib.sha256(f"{sequence_id}\x00{cause}".encode()).hexdigest()[:32]
    return f"enr-{digest}"


def step_key(enrollment_id: str, visit: int) -> str:
    """The idempotency key of an enrollment's visit: one stored action per visit."""
    return f"seq:{enrollment_id}:{visit}"


class Recipients:
    """The recipient as sequences see it: built from the opportunity gateway, the counter
    store (for the caps) and the flow's cap across all sequences."""

    def __init__(
        self, gateway: OpportunityGateway, counters: CounterStore, cap: int | None
    ) -> None:
        self._gateway = gateway
        self._counters = counters
        self._cap = cap

    def zone(self, opportunity_id: str, program: SequenceProgram) -> ZoneInfo:
        """The recipient's time zone: the contact's (through the gateway), else the
        sequence's, else the working calendar's."""
        name: str | None = None
        try:
            name = self._gateway.contact(opportunity_id).timezone
        except (LeadflowError, AttributeError):
            name = None
        for candidate in (name, program.definition.timezone):
            if candidate:
                try:
                    return ZoneInfo(candidate)
                except (ZoneInfoNotFoundError, ValueError):
                    log.warning("unknown time zone %r for %s", candidate, opportunity_id)
        return program.vocabulary.calendar.zone

    def lazy_zone(self, opportunity_id: str, program: SequenceProgram) -> Zone:
        """:meth:`zone`, looked up (once) only if a step asks for it."""
        found: list[ZoneInfo] = []

        def zone() -> ZoneInfo:
            if not found:
                found.append(self.zone(opportunity_id, program))
            return found[0]

        return zone

    def context(
        self, enrollment: EnrollmentHead, program: SequenceProgram, event: Event | None
    ) -> dict[str, Any]:
        """What branches read: the entry event, the latest matched event and (when the
        sequence branches) the opportunity's fields from the gateway."""
        context = dict(enrollment.context)
        if event is not None and event.id != enrollment.entry_event_id:
            context["event"] = dict(event.payload)
        if any(isinstance(s, BranchStep) for s in program.definition.steps):
            opportunity: dict[str, Any] = {}
            gateway = self._gateway
            try:
                if isinstance(gateway, OpportunityFields):
                    opportunity.update(gateway.fields(enrollment.opportunity_id))
                opportunity.setdefault("owner", self._gateway.owner(enrollment.opportunity_id))
            except LeadflowError as exc:
                log.warning("opportunity fields unavailable: %s", exc)
            context["opportunity"] = opportunity
        return context

    def capped(
        self,
        enrollment: EnrollmentHead,
        program: SequenceProgram,
        step: ActionStep,
        now: datetime,
    ) -> str | None:
        """Count a message step against the contact's daily caps (the flow's across all
        sequences, the sequence's own); the reason when one is reached, else None. A count is
        taken per attempt: a rerun may count twice, which can only defer, never drop."""
        if step.action.action_type not in MESSAGE_TYPES:
            return None
        caps = [("all", self._cap),
                (enrollment.sequence_id, program.definition.daily_cap)]  # fmt: skip
        if all(cap is None for _, cap in caps):
            return None
        zone = self.zone(enrollment.opportunity_id, program)
        day = now.astimezone(zone).date().isoformat()
        for scope, cap in caps:
            if cap is None:
                continue
            sent = self._counters.next(f"cap:{scope}:{enrollment.opportunity_id}:{day}")
            if sent > cap:
                which = "the contact's" if scope == "all" else "this sequence's"
                return f"{which} daily cap of {cap} messages on {day} reached"
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Move:
    """One enrollment to move on: the arguments of :meth:`Moves.advance`, for
    :meth:`Moves.advance_many`."""

    enrollment: EnrollmentHead
    program: SequenceProgram
    cause: Event
    outcome: str
    stop: Stop | None = None
    trigger: Event | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Planned:
    """A move worked out: where the enrollment (as read) stops next and the visit stored for
    it (None: it completes there)."""

    enrollment: EnrollmentHead
    program: SequenceProgram
    stop: Stop
    stored: ScheduledAction | None
    visit: int
    outcome: str
    context: Mapping[str, Any]
    now: datetime


@dataclasses.dataclass(slots=True)
class Visit:
    """A claimed visit of a batch on its way (the sequencer's ``run_steps``): ``send`` (an
    action step: mark the send begun, run the handler, move on), ``rerun`` (the send began
    before the enrollment ended: run the handler again), ``timer`` or ``deferred`` (move on
    with ``outcome``)."""

    index: int
    ctx: ActionContext[Any]
    enrollment: EnrollmentHead
    program: SequenceProgram | None
    kind: Literal["send", "rerun", "timer", "deferred"]
    outcome: str | None = None
    stop: Stop | None = None
    note: str | None = None
    failed: Exception | None = None
    final: bool = False


def as_version(
    ctx: ActionContext[Any], enrollment: EnrollmentHead, program: SequenceProgram
) -> ActionContext[Any]:
    """``ctx`` of an action step's visit, with the step as the enrollment's version has it: a
    visit stored under another version (its enrollment moved on to a new one by a publish
    with ``in_flight="move"``, or the step a timer there) runs the new version's action, and
    says so in its ``rule_version``."""
    stored = ctx.scheduled
    if stored.rule_version == enrollment.sequence_version or stored.step_id is None:
        return ctx
    step = program.definition.step(stored.step_id)
    if not isinstance(step, ActionStep):
        return ctx
    return dataclasses.replace(
        ctx,
        scheduled=stored.model_copy(
            update={"action": step.action, "rule_version": enrollment.sequence_version}
        ),
    )


def store_visits(
    scheduled: ScheduledActionStore, actions: list[ScheduledAction]
) -> list[ScheduledAction]:
    """Each of ``actions`` (visits the runtime built: handed over, not checked again) stored,
    or the one stored first with its key: in one store call where the store can
    (:class:`~leadflow.ports.BatchScheduling`)."""
    if len(actions) < 2 or not isinstance(scheduled, BatchScheduling):
        return [handed_over(scheduled.schedule, action)[0] for action in actions]
    created = handed_over(scheduled.schedule_many, actions, *actions)
    stored: list[ScheduledAction] = []
    for action, new in zip(actions, created, strict=True):
        if not new:  # stored first by another writer (a timer and a match racing)
            action = scheduled.get(action.action_id)
        stored.append(action)
    return stored


def send_begun(enrollment: _H, at: datetime) -> _H:
    """``enrollment`` (as read) as :meth:`~leadflow.ports.sequences.EnrollmentSendMarks.
    mark_sending` stores it: its send begun at ``at``, one revision on."""
    return enrollment._evolve(sending=True, updated_at=at, revision=enrollment.revision + 1)


def hops(stop: Stop, stored: ScheduledAction | None) -> Iterable[Hop]:
    if stored is not None and stored.step_id != stop.step_id:
        return ()  # another writer's walk won: its hops are not this one's to record
    return [h for h in stop.hops if h.kind != "exit"]


def capped_history(history: list[StepRecord], more: list[StepRecord]) -> list[StepRecord]:
    joined = [*history, *more]
    return joined[-HISTORY_LIMIT:]


def recorded(enrollment: _H, records: list[StepRecord]) -> _H:
    """``enrollment`` with ``records`` appended to its history (the newest 200 kept) when it
    is a whole :class:`~leadflow.sequences.Enrollment`; a head as it is (its store appends
    them: :meth:`~leadflow.ports.sequences.EnrollmentSteps.move_many`)."""
    if isinstance(enrollment, Enrollment):
        return enrollment._evolve(history=capped_history(enrollment.history, records))
    return enrollment


def explanation(definition: SequenceDefinition, stop: Stop) -> str:
    path = " -> ".join(f"{h.step_id} ({h.why})" for h in stop.hops)
    head = f"sequence {definition.name!r} v{definition.version}, step {stop.step_id}"
    return f"{head}: {stop.why}" + (f"; via {path}" if path else "")


def payload(enrollment: EnrollmentHead, extra: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "enrollmentId": enrollment.enrollment_id,
        "sequenceId": enrollment.sequence_id,
        "sequenceVersion": enrollment.sequence_version,
        "opportunityId": enrollment.opportunity_id,
        "visit": enrollment.visit,
        "stepId": enrollment.step_id,
        **{k: v for k, v in extra.items() if v is not None},
    }


def moved(current: _H, move: Planned) -> tuple[_H, list[StepRecord], str | None]:
    """``current`` moved as ``move`` says (its history as it was), the step records the
    move appends to it (:func:`recorded`), and the reason it completed (None: it goes on
    to the stored visit)."""
    stop, stored, visit, now = move.stop, move.stored, move.visit, move.now
    version = current.sequence_version
    records = [
        StepRecord(visit=current.visit, step_id=h.step_id, kind=h.kind, at=now,
                   outcome=h.outcome, why=h.why[:2000], version=version)
        for h in hops(stop, stored)
    ]  # fmt: skip
    if stored is None:
        new_context = {k: v for k, v in move.context.items() if k in ("entry", "event")}
        reason = stop.end_reason or "completed"
        records.append(
            StepRecord(visit=visit, step_id=stop.hops[-1].step_id if stop.hops else "-",
                       kind="end", at=now, outcome="completed", why=stop.why, version=version)
        )  # fmt: skip
        changed = current._evolve(
            state=EnrollmentState.COMPLETED, end_reason=reason, visit=visit, step_id=None,
            sending=False, held=False, waiting_for=None, ended_at=now, updated_at=now,
            variants={**current.variants, **stop.variants}, context=new_context,
        )  # fmt: skip
        return changed, records, reason
    assert stored.step_id is not None
    changed = moved_to(current, move.program, stop, stored.step_id, visit,
                             move.outcome, move.context, now, records)  # fmt: skip
    return changed, records, None


def moved_to(
    current: _H,
    program: SequenceProgram,
    stop: Stop,
    step_id: str,
    visit: int,
    outcome: str,
    context: Mapping[str, Any],
    now: datetime,
    records: list[StepRecord],
) -> _H:
    """``current`` at visit ``visit`` of step ``step_id`` (its history as it was; the
    record of that visit appended to ``records``)."""
    version = current.sequence_version
    new_context = {k: v for k, v in context.items() if k in ("entry", "event")}
    step = program.definition.step(step_id)
    waiting = step.event_type if isinstance(step, WaitForEventStep) else None
    why = stop.why if step_id == stop.step_id else "stored first by another writer"
    records.append(
        StepRecord(visit=visit, step_id=step_id, kind=step.kind, at=now,
                   outcome="scheduled", why=f"after {outcome}: {why}", version=version)
    )  # fmt: skip
    variants = current.variants
    if step_id == stop.step_id:
        variants = {**variants, **stop.variants}
    # ``held`` cleared: a visit held by a pause ran (released), and a release cut short
    # before clearing it must not "release" this next visit too.
    return current._evolve(
        visit=visit, step_id=step_id, sending=False, held=False, waiting_for=waiting,
        variants=variants, context=new_context, updated_at=now,
    )  # fmt: skip
