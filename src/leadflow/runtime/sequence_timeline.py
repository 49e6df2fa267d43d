"""An opportunity's timeline with its sequence steps: the activities plus, for each of its
enrollments, the steps done (with the time), pending (with the due time), skipped (the
enrollment ended first: a goal, an unenrollment) or cancelled, each with why it went where it
went, merged in time order.

:func:`step_entries` is pure (enrollments and their stored visit actions in, entries out);
:func:`read_step_entries` reads the visit actions: an enrollment's visit ``v`` is the stored
action keyed ``seq:<enrollment>:<v>`` (:func:`~leadflow.runtime.sequence_parts.step_key`), so each
is one :meth:`~leadflow.ports.ScheduledActionStore.get` by id, never a scan of the store.
A visit stored again on resume (after a pause) has a key of its own, not read here: its step
shows as held, then pending due at the resume (the enrollment's last change: the resume
clearing ``held``), then done, from the enrollment's history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from ..errors import NotFoundError
from ..models import Activity
from ..ports import ScheduledActionStore
from ..records import ScheduledAction, ScheduledActionState
from ..sequences import Enrollment, StepRecord
from .planning import action_id_for, activity_id_for
from .sequence_parts import step_key

__all__ = [
    "StepEntry",
    "StepState",
    "TimelineEntry",
    "merge_timeline",
    "read_step_entries",
    "step_entries",
]

StepState = Literal["done", "pending", "held", "skipped", "cancelled", "failed", "ended"]
"""``done``; ``pending`` (due at ``due_at``); ``held`` (due while the sequence was paused);
``skipped`` (the enrollment ended before the step ran: a goal, an unenrollment...);
``cancelled`` / ``failed`` (its stored action was cancelled / parked); ``ended``: the
enrollment's end itself (``outcome`` says how: completed, goal_reached, unenrolled, ended)."""


class _Out(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True, frozen=True
    )


class StepEntry(_Out):
    """One step of one enrollment on the timeline. ``at``: when it was done, skipped or
    ended, else when it is due; ``why``: the interpreter's explanation (why it is due then,
    which branch case held, which variant...); ``activity_id``: the activity a
    ``create_activity`` step made."""

    enrollment_id: str
    sequence_id: str
    sequence_version: int
    visit: int
    step_id: str
    step_kind: str
    state: StepState
    outcome: str | None = None
    at: datetime | None
    due_at: datetime | None = None
    why: str = ""
    action_type: str | None = None
    activity_id: str | None = None
    error: str | None = None


class TimelineEntry(_Out):
    """An activity or a sequence step, at its time (an activity's: its completed date when
    done, else scheduled, due or creation date)."""

    kind: Literal["activity", "sequence_step"]
    at: datetime | None
    activity: Activity | None = None
    step: StepEntry | None = None


def _scheduled_records(history: Sequence[StepRecord]) -> dict[int, StepRecord]:
    out: dict[int, StepRecord] = {}
    for record in history:
        if record.outcome == "scheduled":
            out.setdefault(record.visit, record)
    return out


def _left(history: Sequence[StepRecord], visit: int) -> StepRecord | None:
    """The first record written when the enrollment left ``visit`` for the next one."""
    for record in history:
        if record.visit > visit or (record.visit == visit and record.kind not in _STOPS_AND_END):
            return record
    return None


_STOPS_AND_END = frozenset({"action", "wait", "wait_for_event", "end"})


def _came_after(record: StepRecord | None) -> str | None:
    """How the previous step ended, from the next visit's record ("after matched: ...")."""
    if record is None or not record.why.startswith("after "):
        return None
    return record.why[6:].split(":", 1)[0] or None


def _visit_entry(
    enrollment: Enrollment,
    visit: int,
    record: StepRecord | None,
    action: ScheduledAction | None,
) -> StepEntry | None:
    step_id = record.step_id if record is not None else action.step_id if action else None
    if step_id is None:
        return None
    history = enrollment.history
    left = _left(history, visit)
    due = action.due_at if action is not None else None
    action_type = action.action.action_type if action and action.action else None
    entry = StepEntry(
        enrollment_id=enrollment.enrollment_id,
        sequence_id=enrollment.sequence_id,
        sequence_version=record.version if record else enrollment.sequence_version,
        visit=visit,
        step_id=step_id,
        step_kind=record.kind if record is not None else ("action" if action_type else "wait"),
        state="pending",
        at=due,
        due_at=due,
        why=record.why if record is not None else (action.explanation or "" if action else ""),
        action_type=action_type,
        activity_id=activity_id_for(action.idempotency_key)
        if action_type == "create_activity" and action is not None
        else None,
    )
    if enrollment.visit != visit:  # it moved on (or completed: its end is visit + 1)
        nxt = [r for r in history if r.visit == visit + 1 and r.outcome == "scheduled"]
        done_at = left.at if left is not None else action.finished_at if action else None
        return entry.model_copy(
            update={"state": "done", "at": done_at or due,
                    "outcome": _came_after(nxt[0] if nxt else None) or "done"}
        )  # fmt: skip
    if action is not None and action.state is ScheduledActionState.CANCELLED:
        cancelled: dict[str, object] = {"state": "cancelled", "at": action.finished_at or due}
        if not enrollment.active:  # cancelled by the end: a goal, an unenrollment...
            cancelled.update(outcome=enrollment.state.value, why=enrollment.end_reason or entry.why)
        return entry.model_copy(update=cancelled)
    if action is not None and action.state is ScheduledActionState.PARKED:
        return entry.model_copy(update={"state": "failed", "error": action.last_error})
    if enrollment.active:
        if enrollment.held:
            return entry.model_copy(update={"state": "held"})
        if action is not None and action.state is ScheduledActionState.DONE:
            # Its run found the sequence paused (held); resuming stored the visit again, due
            # at the resume, under a key of its own: that is when it is due now.
            resumed = enrollment.updated_at or due
            return entry.model_copy(
                update={"at": resumed, "due_at": resumed,
                        "why": f"held while the sequence was paused; due again when resumed "
                               f"({resumed.isoformat() if resumed else '-'}): {entry.why}"}
            )  # fmt: skip
        return entry
    if enrollment.sending and action_type is not None:  # the send began before the end
        return entry.model_copy(update={"state": "done", "outcome": "done"})
    return entry.model_copy(
        update={"state": "skipped", "at": enrollment.ended_at or due,
                "outcome": enrollment.state.value, "why": enrollment.end_reason or entry.why}
    )  # fmt: skip


def step_entries(enrollment: Enrollment, actions: Mapping[int, ScheduledAction]) -> list[StepEntry]:
    """The timeline entries of one enrollment: each visit (from its history, else from its
    stored action in ``actions``, by visit), each step passed through at once (branch,
    split, goto: ``done``, with why) and the end. Pure."""
    scheduled = _scheduled_records(enrollment.history)
    entries: list[StepEntry] = []
    visits = sorted(set(scheduled) | set(actions))
    for visit in visits:
        entry = _visit_entry(enrollment, visit, scheduled.get(visit), actions.get(visit))
        if entry is not None:
            entries.append(entry)
    for record in enrollment.history:
        if record.kind in ("branch", "split", "goto") or record.kind == "end":
            entries.append(
                StepEntry(
                    enrollment_id=enrollment.enrollment_id,
                    sequence_id=enrollment.sequence_id,
                    sequence_version=record.version,
                    visit=record.visit,
                    step_id=record.step_id,
                    step_kind=record.kind,
                    state="ended" if record.kind == "end" else "done",
                    outcome=record.outcome,
                    at=record.at,
                    why=record.why,
                )
            )
    return entries


def read_step_entries(
    enrollments: Iterable[Enrollment], scheduled: ScheduledActionStore
) -> list[StepEntry]:
    """:func:`step_entries` of each enrollment, reading its visits' stored actions by id (one
    ``get`` per visit; a purged one is left out and the history speaks for it)."""
    out: list[StepEntry] = []
    for enrollment in enrollments:
        actions: dict[int, ScheduledAction] = {}
        for visit in range(1, enrollment.visit + 1):
            try:
                actions[visit] = scheduled.get(
                    action_id_for(step_key(enrollment.enrollment_id, visit))
                )
            except NotFoundError:
                continue
        out.extend(step_entries(enrollment, actions))
    return out


def _activity_time(activity: Activity) -> datetime | None:
    return (
        activity.completed_date
        or activity.scheduled_date
        or activity.due_date
        or activity.created_at
    )


def merge_timeline(
    activities: Sequence[Activity], steps: Iterable[StepEntry]
) -> list[TimelineEntry]:
    """Activities (in the store's timeline order) and step entries merged by time; entries
    without a time first; at equal times activities first, then steps by enrollment and
    visit. Pure."""
    entries = [TimelineEntry(kind="activity", at=_activity_time(a), activity=a) for a in activities]
    entries += [TimelineEntry(kind="sequence_step", at=s.at, step=s) for s in steps]

    def key(indexed: tuple[int, TimelineEntry]) -> tuple[bool, datetime, int, str, int, int]:
        index, entry = indexed
        at = entry.at.replace(tzinfo=None) if entry.at is not None else datetime.min
        step = entry.step
        if step is None:
            return (entry.at is not None, at, 0, "", 0, index)
        return (entry.at is not None, at, 1, step.enrollment_id, step.visit, index)

    return [entry for _, entry in sorted(enumerate(entries), key=key)]
