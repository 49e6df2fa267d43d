"""What the runtime's operations report back: plain values, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import HandlerError, LeadflowError
from ..models import Activity, Event, FollowUpRule
from ..records import ScheduledAction, ScheduledActionState
from ..rules.engine import Evaluation, PlannedAction

__all__ = [
    "ActionRun",
    "ChangeResult",
    "CompletionResult",
    "DueRunReport",
    "HandleResult",
    "RuleChange",
    "RuleTestResult",
    "SequenceOutcome",
]


@dataclass(slots=True)
class ActionRun:
    """One execution attempt of a stored action: ``ok``, a short ``note`` (or the error), and
    the state the action is in afterwards (``done``, back to ``pending`` for a retry,
    ``parked``)."""

    idempotency_key: str
    action_type: str
    ok: bool
    note: str | None
    state: ScheduledActionState
    permanent: bool = False

    def error(self) -> HandlerError:
        """A failed run as the error ``HandleResult.errors`` reports."""
        what = "parked" if self.state is ScheduledActionState.PARKED else "will be retried"
        return HandlerError(
            f"action {self.action_type} ({self.idempotency_key}) failed, {what}: {self.note}"
        )


@dataclass(frozen=True, slots=True)
class SequenceOutcome:
    """What an event did to one sequence: ``what`` is ``enrolled``, ``reentered`` (an
    enrollment ended and a new one started), ``already_enrolled``, ``not_reenrolled`` (the
    sequence never enrolls an opportunity twice), ``goal_reached`` or ``matched`` (a wait for
    an event moved on); ``detail`` names the goal or the step."""

    sequence_id: str
    enrollment_id: str
    what: str
    detail: str = ""


@dataclass(slots=True)
class HandleResult:
    """What handling one event did.

    ``duplicates`` lists idempotency keys that were already stored (the event, or part of it,
    had been handled); ``errors`` holds every problem: a failed action (retried later or
    parked), a rule that could not be planned, a cascade stopped by the depth limit.
    ``sequences`` says what the event did to sequences (enrollments, goals, waits).
    """

    event: Event
    matched_rules: list[str]
    executed: list[ActionRun] = field(default_factory=list)
    scheduled: list[ScheduledAction] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    cascades: list[HandleResult] = field(default_factory=list)
    errors: list[LeadflowError] = field(default_factory=list)
    sequences: list[SequenceOutcome] = field(default_factory=list)

    def all_errors(self) -> list[LeadflowError]:
        """Errors of this event and of every cascade it caused."""
        found = list(self.errors)
        for child in self.cascades:
            found.extend(child.all_errors())
        return found


@dataclass(slots=True)
class DueRunReport:
    """What one :meth:`LeadFlow.run_due` pass did."""

    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    parked: int = 0
    runs: list[ActionRun] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CompletionResult:
    """A completed activity and what its ``activity.completed`` event set off (None when the
    delivery failed and will be retried by ``run_due``)."""

    activity: Activity
    follow_up: HandleResult | None


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """A changed activity (rescheduled, snoozed, reassigned, edited, cancelled), the event the
    change set off (``activity.rescheduled``...) and what the rules did with it (None when the
    delivery failed and will be retried by ``run_due``)."""

    activity: Activity
    event: Event
    follow_up: HandleResult | None


@dataclass(frozen=True, slots=True)
class RuleTestResult:
    """A dry run of one rule against sample data: nothing was written."""

    rule: FollowUpRule
    matched: bool
    planned: tuple[PlannedAction, ...]
    reason: str
    evaluation: Evaluation


@dataclass(frozen=True, slots=True)
class RuleChange:
    """A rule as stored after a change (None after a deletion) and the pending delayed actions
    of the rule that the change cancelled."""

    rule: FollowUpRule | None
    cancelled: tuple[ScheduledAction, ...]
