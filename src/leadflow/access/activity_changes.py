"""The changes a person makes to an open activity: reschedule, snooze, reassign, edit (subject,
description, priority) and cancel, each role-checked, audited and version-checked.

:class:`~leadflow.access.Operations` delegates to :class:`ActivityChanges`, built from its
parts. Every change follows the same steps, and a refusal at any step writes nothing:

1. the policy table: ``activity.update`` (reschedule, snooze, edit), ``activity.reassign``,
   ``activity.cancel``; another user's activity also needs ``activity.update_any`` (or
   ``activity.cancel_any``), and without it is "not found", exactly like a missing one;
2. the arguments (:class:`InvalidInputError` naming the field, or pydantic's
   ``ValidationError`` for a value the activity model refuses);
3. the activity's state: a completed or cancelled activity cannot change
   (:class:`InvalidStateError`);
4. ``expected_version``: a stale one is a :class:`StaleWriteError` (a :class:`ConflictError`);
   the write itself is conditional on the version read, so of two concurrent changes of one
   version exactly one lands and the other is a :class:`StaleWriteError`;
5. the write, its event (``activity.rescheduled``, ``activity.reassigned``,
   ``activity.updated``, ``activity.cancelled``) to the event sink and into the rules, exactly
   once (the completion outbox), and an audit entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from pydantic.alias_generators import to_camel

from ..clock import ensure_utc
from ..documents import plain
from ..errors import InvalidInputError, InvalidStateError, NotFoundError, StaleWriteError
from ..models import Activity, ActivityPriority
from ..runtime.activity_writes import ActivityWrites
from ..runtime.results import ChangeResult
from .inputs import checked_id
from .policy import Policy, Principal

__all__ = ["EDITABLE_FIELDS", "MAX_SNOOZE", "ActivityChangeOperations", "ActivityChanges"]

EDITABLE_FIELDS: Final = frozenset({"subject", "description", "priority"})
"""What :meth:`ActivityChanges.edit` changes (``priority`` is ``metadata.priority``)."""

MAX_SNOOZE: Final = timedelta(days=366)
"""The longest snooze: a duration up to a year (an ``until`` is bounded by the model only)."""

Audit = Callable[..., None]


def _version(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError("expected an integer of at least 1", field="expected_version")
    return value


def _moment(value: object, field: str) -> datetime:
    """An aware datetime in UTC: a naive one (or anything else) names ``field``."""
    if not isinstance(value, datetime):
        raise InvalidInputError("expected a timezone-aware datetime", field=field)
    return ensure_utc(value, field)


class ActivityChanges:
    """Role-checked changes of open activities (see the module). Built by
    :class:`~leadflow.access.Operations` for each call from its policy and parts."""

    def __init__(
        self,
        *,
        policy: Policy,
        visible: Callable[[Principal, object], Activity],
        writes: ActivityWrites,
        audit: Audit,
        now: Callable[[], datetime],
    ) -> None:
        self._policy = policy
        self._visible = visible
        self._writes = writes
        self._audit = audit
        self._now = now

    # ------------------------------------------------------------------ steps

    def _open(
        self,
        principal: Principal,
        activity_id: object,
        expected_version: int | None,
        any_operation: str,
    ) -> Activity:
        """The open activity ``principal`` may change, at ``expected_version`` when given."""
        activity = self._visible(principal, activity_id)
        if activity.assigned_to != principal.user_id and not self._policy.allows(
            principal, any_operation
        ):
            raise NotFoundError(f"activity {checked_id(activity_id, 'activity_id')!r} not found")
        if activity.completed_date is not None:
            raise InvalidStateError(
                f"activity {activity.activity_id!r} is completed: it cannot be changed"
            )
        if activity.cancelled_at is not None:
            raise InvalidStateError(
                f"activity {activity.activity_id!r} is cancelled: it cannot be changed"
            )
        if expected_version is not None and expected_version != activity.version:
            raise StaleWriteError(
                f"activity {activity.activity_id!r} is at version {activity.version}, "
                f"not {expected_version}"
            )
        return activity

    def _write(
        self,
        principal: Principal,
        before: Activity,
        changes: dict[str, Any],
        event_type: str,
        audit_change: str,
        previous: dict[str, object],
        *,
        now: datetime,
        reason: str | None = None,
    ) -> ChangeResult:
        changed = before.model_copy(
            update={**changes, "updated_by": principal.user_id, "updated_at": now}
        )
        result = self._writes.change(
            changed, event_type, previous=previous, actor=principal.user_id, reason=reason
        )
        self._audit(
            principal, "activity", before.activity_id, audit_change, before, result.activity,
            reason,
        )  # fmt: skip
        return result

    def _due(self, value: object, field: str, activity: Activity, now: datetime) -> datetime:
        """A new due date for ``activity``: aware, not in the past, not before its scheduled
        date, and not the one it has."""
        due = _moment(value, field)
        if due < now:
            raise InvalidInputError("must not be in the past", field=field)
        if activity.scheduled_date is not None and due < activity.scheduled_date:
            raise InvalidInputError("must not be before the scheduled date", field=field)
        if due == activity.due_date:
            raise InvalidInputError("the activity is already due then", field=field)
        return due

    # ------------------------------------------------------------------ changes

    def reschedule(
        self,
        principal: Principal,
        activity_id: object,
        due_date: object,
        *,
        expected_version: object = None,
    ) -> ChangeResult:
        """A new due date (``dueDate``): aware, not in the past, not before the scheduled
        date. Sets off ``activity.rescheduled`` (reason ``reschedule``)."""
        self._policy.require(principal, "activity.update")
        version = _version(expected_version)
        now = self._now()
        _moment(due_date, "dueDate")
        before = self._open(principal, activity_id, version, "activity.update_any")
        due = self._due(due_date, "dueDate", before, now)
        return self._write(
            principal, before, {"due_date": due}, "activity.rescheduled", "rescheduled",
            {"dueDate": before.due_date}, now=now, reason="reschedule",
        )  # fmt: skip

    def snooze(
        self,
        principal: Principal,
        activity_id: object,
        *,
        duration: object = None,
        until: object = None,
        expected_version: object = None,
    ) -> ChangeResult:
        """Move the due date later: by ``duration`` (a positive ``timedelta`` up to
        :data:`MAX_SNOOZE`, counted from the due date, or from now when it is past or unset), or
        to ``until`` (aware, in the future, after the due date). Exactly one of the two. Sets
        off ``activity.rescheduled`` with reason ``snooze``."""
        self._policy.require(principal, "activity.update")
        version = _version(expected_version)
        if (duration is None) == (until is None):
            raise InvalidInputError("give exactly one of duration and until", field="duration")
        now = self._now()
        if duration is not None:
            if not isinstance(duration, timedelta) or not (timedelta(0) < duration <= MAX_SNOOZE):
                raise InvalidInputError(
                    f"expected a positive duration of at most {MAX_SNOOZE.days} days",
                    field="duration",
                )
        else:
            moment = _moment(until, "until")
            if moment <= now:
                raise InvalidInputError("must be in the future", field="until")
        before = self._open(principal, activity_id, version, "activity.update_any")
        if duration is not None:
            assert isinstance(duration, timedelta)
            start = max(before.due_date or now, now)
            try:
                due = start + duration
            except OverflowError:
                raise InvalidInputError(
                    "the due date would be out of range", field="duration"
                ) from None
            field = "duration"
        else:
            due, field = moment, "until"
            if before.due_date is not None and due <= before.due_date:
                raise InvalidInputError("must be after the current due date", field="until")
        due = self._due(due, field, before, now)
        return self._write(
            principal, before, {"due_date": due}, "activity.rescheduled", "snoozed",
            {"dueDate": before.due_date}, now=now, reason="snooze",
        )  # fmt: skip

    def reassign(
        self,
        principal: Principal,
        activity_id: object,
        assigned_to: object,
        *,
        expected_version: object = None,
    ) -> ChangeResult:
        """Hand the activity to ``assigned_to`` (``activity.reassign``; another user's activity
        also needs ``activity.update_any``). Sets off ``activity.reassigned``."""
        self._policy.require(principal, "activity.reassign")
        version = _version(expected_version)
        assignee = checked_id(assigned_to, "assignedTo")
        now = self._now()
        before = self._open(principal, activity_id, version, "activity.update_any")
        if assignee == before.assigned_to:
            raise InvalidInputError(f"already assigned to {assignee!r}", field="assignedTo")
        return self._write(
            principal, before, {"assigned_to": assignee}, "activity.reassigned", "reassigned",
            {"assignedTo": before.assigned_to}, now=now,
        )  # fmt: skip

    def edit(
        self,
        principal: Principal,
        activity_id: object,
        changes: object,
        *,
        expected_version: object = None,
    ) -> ChangeResult:
        """Change ``subject``, ``description`` (the notes) and ``priority``
        (:class:`ActivityPriority`, or None to clear it) from a mapping of those fields. Sets
        off ``activity.updated``."""
        self._policy.require(principal, "activity.update")
        version = _version(expected_version)
        wanted = _edits(changes)
        now = self._now()
        before = self._open(principal, activity_id, version, "activity.update_any")
        update: dict[str, Any] = {}
        previous: dict[str, object] = {}
        for name, value in wanted.items():
            if name == "priority":
                current = before.metadata.priority
                if value != current:
                    update["metadata"] = before.metadata.model_copy(update={"priority": value})
                    previous["priority"] = None if current is None else current.value
            elif value != getattr(before, name):
                update[name] = value
                previous[name] = getattr(before, name)
        if not update:
            raise InvalidInputError("nothing to change", field="changes")
        return self._write(
            principal, before, update, "activity.updated", "edited", previous, now=now
        )

    def cancel(
        self,
        principal: Principal,
        activity_id: object,
        *,
        reason: object = None,
        expected_version: object = None,
    ) -> ChangeResult:
        """Cancel an open activity: it stays in the timeline (state ``cancelled``) but is no
        longer pending or overdue, in no work list, reminder or statistics, and cannot be
        completed or changed. Sets off ``activity.cancelled``."""
        self._policy.require(principal, "activity.cancel")
        version = _version(expected_version)
        reason = plain(reason)
        if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
            raise InvalidInputError("expected a text of at most 1,000 characters", field="reason")
        now = self._now()
        before = self._open(principal, activity_id, version, "activity.cancel_any")
        state = before.state(now).value
        return self._write(
            principal, before,
            {"cancelled_at": now, "cancelled_by": principal.user_id, "cancel_reason": reason},
            "activity.cancelled", "cancelled", {"state": state}, now=now, reason=reason,
        )  # fmt: skip


class ActivityChangeOperations:
    """The change operations of :class:`~leadflow.access.Operations` (which inherits them):
    each builds an :class:`ActivityChanges` from the operations' policy and parts."""

    policy: Policy
    _writes: ActivityWrites

    if TYPE_CHECKING:  # Operations' own methods, which these operations call

        def _visible(self, principal: Principal, activity_id: object) -> Activity: ...

        def _audit(self, principal: Principal, subject: str, subject_id: str, change: str,
                   before: Any = None, after: Any = None,
                   note: str | None = None) -> None: ...  # fmt: skip

        def _now(self) -> datetime: ...

    def _changes(self) -> ActivityChanges:
        return ActivityChanges(
            policy=self.policy, visible=self._visible, writes=self._writes,
            audit=self._audit, now=self._now,
        )  # fmt: skip

    def reschedule_activity(
        self, principal: Principal, activity_id: str, due_date: datetime, *,
        expected_version: int | None = None,
    ) -> ChangeResult:  # fmt: skip
        """A new due date; see :meth:`ActivityChanges.reschedule`."""
        return self._changes().reschedule(
            principal, activity_id, due_date, expected_version=expected_version
        )

    def snooze_activity(
        self, principal: Principal, activity_id: str, *, duration: timedelta | None = None,
        until: datetime | None = None, expected_version: int | None = None,
    ) -> ChangeResult:  # fmt: skip
        """The due date moved later; see :meth:`ActivityChanges.snooze`."""
        return self._changes().snooze(
            principal, activity_id, duration=duration, until=until,
            expected_version=expected_version,
        )  # fmt: skip

    def reassign_activity(
        self, principal: Principal, activity_id: str, assigned_to: str, *,
        expected_version: int | None = None,
    ) -> ChangeResult:  # fmt: skip
        """Another assignee; see :meth:`ActivityChanges.reassign`."""
        return self._changes().reassign(
            principal, activity_id, assigned_to, expected_version=expected_version
        )

    def edit_activity(
        self, principal: Principal, activity_id: str, changes: Mapping[str, Any], *,
        expected_version: int | None = None,
    ) -> ChangeResult:  # fmt: skip
        """Subject, description (the notes), priority; see :meth:`ActivityChanges.edit`."""
        return self._changes().edit(
            principal, activity_id, changes, expected_version=expected_version
        )

    def cancel_activity(
        self, principal: Principal, activity_id: str, *, reason: str | None = None,
        expected_version: int | None = None,
    ) -> ChangeResult:  # fmt: skip
        """Cancelled, kept in the timeline; see :meth:`ActivityChanges.cancel`."""
        return self._changes().cancel(
            principal, activity_id, reason=reason, expected_version=expected_version
        )


def _edits(changes: object) -> dict[str, Any]:
    """The fields an edit changes, by their model names (camelCase or snake_case accepted)."""
    if not isinstance(changes, Mapping):
        raise InvalidInputError("expected a mapping of fields to change", field="changes")
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if not isinstance(key, str):
            raise InvalidInputError("keys must be strings", field="changes")
        name = key if key in EDITABLE_FIELDS else None
        if name is None and to_camel(key) in EDITABLE_FIELDS:
            name = to_camel(key)
        if name is None:
            raise InvalidInputError(
                f"not editable (one of {', '.join(sorted(EDITABLE_FIELDS))})", field=key[:80]
            )
        if name == "priority":
            value = plain(value)
            if value is not None and not isinstance(value, ActivityPriority):
                if not isinstance(value, str) or value not in ActivityPriority._value2member_map_:
                    raise InvalidInputError(
                        f"one of {', '.join(p.value for p in ActivityPriority)} or null",
                        field="priority",
                    )
                value = ActivityPriority(value)
        elif not isinstance(value, str):
            raise InvalidInputError("expected a text", field=name)
        out[name] = value
    if not out:
        raise InvalidInputError("nothing to change", field="changes")
    return out
