"""Role-checked operations for a host's web app: the seed's 18 endpoints as methods, on top of
the runtime (which knows nothing of principals).

Who may do what is a table, :data:`DEFAULT_POLICY` (operation -> roles); a host passes its own
:class:`Policy` to change it. Beyond the table, fields are guarded the same way for every role:

* audit fields (``createdBy``, ``updatedBy``, ``createdAt``, ``updatedAt``, ``version``) and
  ``completedBy`` come from the principal and the clock; a caller giving them is refused;
* automation fields (``openKey``, ``metadata.automationRuleId`` / ``automationRuleName`` /
  ``automationExplanation`` / ``eventId``) are set only by automation;
* ids leadflow derives start with ``auto-``; a caller may not choose such an id (in any letter
  case; checked on the id as stored, after validation strips surrounding whitespace), and
  only roles that may choose ids (``activity.choose_id``) choose one at all (for others, an
  existing id would reveal that the activity exists);
* a sales user works only on what is theirs: activities assigned to them, on opportunities they
  own (an unknown opportunity is refused exactly like another rep's); another user's activity
  is "not found", exactly like a missing one, and reads are scoped in the query itself.

Field names are accepted in either spelling (``assignedTo`` / ``assigned_to``, also inside
``metadata``): the guards apply to both. A completion completes the version that was checked
(an activity reassigned meanwhile is a :class:`StaleWriteError`, never completed in another's
name), and one refused before the write (already completed, stale version) writes nothing.

Every change a person makes is written to the audit log: rule created / updated / deleted (with
the actions cancelled), activity created / completed / rescheduled / snoozed / reassigned /
edited / cancelled / deleted, parked action retried. The changes of an open activity are in
:mod:`.activity_changes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ..clock import ensure_utc
from ..documents import plain
from ..errors import (
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
    StaleWriteError,
)
from ..models import Activity, Outcome
from ..queries import ActivityFilter, ActivitySort, ActivityStatistics, Page
from ..records import AuditEntry, ScheduledAction, ScheduledActionState
from ..runtime.flow import LeadFlow
from ..runtime.planning import AUTOMATION_PREFIX
from ..runtime.results import CompletionResult
from .activity_changes import ActivityChangeOperations
from .analytics_operations import AnalyticsOperations
from .inputs import (
    as_model,
    checked_id,
    document_of,
    limit_of,
    metadata_of,
    outcome_of,
)
from .policy import DEFAULT_POLICY, Policy, Principal
from .rule_operations import RuleOperations
from .sequence_operations import SequenceOperations

__all__ = ["Operations"]

_STAND_IN: Final = Activity.model_validate(
    {
        "activityId": "not-found",
        "opportunityId": "not-found",
        "customerId": "not-found",
        "activityType": "call",
        "subject": "not found",
        "dueDate": datetime(2000, 1, 1, tzinfo=UTC),
        "assignedTo": "not-found",
        "createdBy": "not-found",
        "updatedBy": "not-found",
        "createdAt": datetime(2000, 1, 1, tzinfo=UTC),
        "updatedAt": datetime(2000, 1, 1, tzinfo=UTC),
    }
).model_dump()
"""What :meth:`Operations._visible` builds for a missing activity (a typical activity's
shape), so that a missing id costs what another user's activity costs."""

_CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far in the future a recorded completion may be dated (clocks disagree a little)."""

_AUDIT_SUBJECTS: Final = ("rule", "activity", "action", "sequence", "enrollment")
_AUDIT_FIELDS: Final = frozenset(
    {"createdBy", "updatedBy", "createdAt", "updatedAt", "version", "completedBy"}
    | {"cancelledAt", "cancelledBy", "cancelReason"}  # set by cancel_activity only
)


class Operations(RuleOperations, ActivityChangeOperations):
    """The operations people call, each checked against the principal's role. The changes of
    an open activity (reschedule, snooze, reassign, edit, cancel) come from
    :class:`~.activity_changes.ActivityChangeOperations`.

    Built on a :class:`~leadflow.LeadFlow`: ``Operations(flow)``, or ``Operations(flow, policy)``.
    """

    def __init__(self, flow: LeadFlow, policy: Policy = DEFAULT_POLICY) -> None:
        if not isinstance(flow, LeadFlow):
            raise TypeError("flow must be a leadflow.LeadFlow")
        if not isinstance(policy, Policy):
            raise TypeError("policy must be a leadflow.Policy")
        self.policy = policy
        self.flow = flow

    @property
    def flow(self) -> LeadFlow:
        """The flow served (hosts and the HTTP routes read its clock and feed it events).
        Setting it rebinds the operations to another flow's parts."""
        return self._flow

    @flow.setter
    def flow(self, flow: LeadFlow) -> None:
        if not isinstance(flow, LeadFlow):
            raise TypeError("flow must be a leadflow.LeadFlow")
        # The collaborators the operations use, taken once: nothing below reaches through the
        # flow.
        self._flow = flow
        self._clock = flow.clock
        self._activities = flow.storage.activities
        self._rule_store = flow.storage.rules
        self._scheduled = flow.storage.scheduled
        self._audit_log = flow.storage.audit
        self._opportunities = flow.integrations.opportunities
        self._writes = flow.activity_writes
        self._admin = flow.rules
        self._executor = flow.executor
        self._book = flow.rulebook
        self.sequences = SequenceOperations(flow, lambda: self.policy)  # ops.sequences.*
        self.analytics = AnalyticsOperations(flow, lambda: self.policy)  # ops.analytics.*

    def _now(self) -> datetime:
        return ensure_utc(self._clock.now(), "clock.now()")

    # ------------------------------------------------------------------ helpers

    def _audit(
        self,
        principal: Principal,
        subject: str,
        subject_id: str,
        change: str,
        before: Any = None,
        after: Any = None,
        note: str | None = None,
    ) -> None:
        self._audit_log.append(
            AuditEntry.model_validate(
                {
                    "subject": subject,
                    "subjectId": subject_id,
                    "change": change,
                    "actor": principal.user_id,
                    "at": self._now(),
                    "before": before.to_document() if before is not None else None,
                    "after": after.to_document() if after is not None else None,
                    "note": note,
                }
            )
        )

    def _reads_all(self, principal: Principal) -> bool:
        return self.policy.allows(principal, "activity.read_all")

    def _scope(self, principal: Principal) -> str | None:
        """None for roles that read everything, else the user whose activities they may see."""
        return None if self._reads_all(principal) else principal.user_id

    def _visible(self, principal: Principal, activity_id: object) -> Activity:
        """The activity, or :class:`NotFoundError`: the same answer, after the same work,
        whether it is missing or someone else's (one store read, one activity built, one
        comparison), so neither the message nor the time tells them apart."""
        checked = checked_id(activity_id, "activity_id")
        scope = self._scope(principal)
        missing = False
        try:
            activity = self._activities.get(checked)
        except NotFoundError:
            # Build an activity as the store would have: the work of the other path.
            activity, missing = Activity.model_validate(_STAND_IN), True
        if missing | (scope is not None and activity.assigned_to != scope):
            raise NotFoundError(f"activity {checked!r} not found")
        return activity

    def _scoped(self, principal: Principal, filter: Any) -> ActivityFilter | None:
        """The filter narrowed to what the principal may read; None when nothing can match."""
        parsed: ActivityFilter = as_model(ActivityFilter, filter, "filter") or ActivityFilter()
        scope = self._scope(principal)
        if scope is None:
            return parsed
        if parsed.assigned_to not in (None, scope):
            return None
        return parsed.model_copy(update={"assigned_to": scope})

    # ------------------------------------------------------------------ activities

    def create_activity(self, principal: Principal, data: Activity | Mapping[str, Any]) -> Activity:
        """Record an activity. Sales: assigned to themselves, on an opportunity they own. One
        recorded already completed (a logged call) also sets off ``activity.completed``."""
        self.policy.require(principal, "activity.create")
        raw = document_of(data, "activity")
        for key in _AUDIT_FIELDS | {"openKey"}:
            if key in raw:
                raise InvalidInputError("set by leadflow, not by the caller", field=key)
        if "metadata" in raw:
            raw["metadata"] = metadata_of(raw["metadata"])
        if "activityId" in raw and not self.policy.allows(principal, "activity.choose_id"):
            raise PermissionDeniedError(
                f"role {principal.role.value!r} may not choose activity ids"
            )
        assignee = raw.get("assignedTo")
        if assignee not in (None, principal.user_id):
            self.policy.require(principal, "activity.create_for_others")
        if assignee is None and not self.policy.allows(principal, "activity.create_for_others"):
            raw["assignedTo"] = principal.user_id
        now = self._now()
        stamped = {
            **raw,
            "createdBy": principal.user_id,
            "updatedBy": principal.user_id,
            "createdAt": now,
            "updatedAt": now,
        }
        completed = raw.get("completedDate") is not None
        if completed:
            # Recording a completed activity is completing it: the same permission, and the
            # permission to complete another's when it is assigned to someone else.
            self.policy.require(principal, "activity.complete")
            if raw.get("assignedTo") != principal.user_id:
                self.policy.require(principal, "activity.complete_any")
            stamped["completedBy"] = principal.user_id
        activity = Activity.model_validate(stamped)
        if activity.completed_date is not None:
            self._check_completion_date(activity.completed_date, now)
        # Checked on the id as stored: validation strips surrounding whitespace (" auto-..."
        # would otherwise claim the id automation derives).
        if "activityId" in raw and activity.activity_id.lower().startswith(AUTOMATION_PREFIX):
            raise InvalidInputError(
                f"ids starting with {AUTOMATION_PREFIX!r} are reserved for automation",
                field="activityId",
            )
        if not self.policy.allows(principal, "activity.create_for_others"):
            try:
                owner = self._opportunities.owner(activity.opportunity_id)
            except NotFoundError:
                owner = None  # the same answer as for another rep's opportunity
            if owner != principal.user_id:
                raise PermissionDeniedError("sales may only record activities on their own leads")
        stored = self._writes.record(activity)
        self._audit(principal, "activity", stored.activity_id, "created", after=stored)
        return stored

    def _check_completion_date(self, completed: datetime, now: datetime) -> None:
        earliest = now - self.policy.max_backdate
        if completed < earliest:
            raise InvalidInputError(
                f"a completion may be dated at most {self.policy.max_backdate} before now "
                "(Policy.max_backdate): earlier would set off follow-ups overdue on arrival",
                field="completedDate",
            )
        if completed > now + _CLOCK_SKEW:
            raise InvalidInputError(
                "a completion cannot be dated in the future", field="completedDate"
            )

    def get_activity(self, principal: Principal, activity_id: str) -> Activity:
        """One activity; another user's activity is "not found" for sales."""
        self.policy.require(principal, "activity.read")
        return self._visible(principal, activity_id)

    def list_activities(
        self,
        principal: Principal,
        filter: ActivityFilter | Mapping[str, Any] | None = None,
        *,
        sort: ActivitySort | Mapping[str, Any] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Activity]:
        """A page of activities matching ``filter`` (sales: their own only)."""
        self.policy.require(principal, "activity.read")
        scoped = self._scoped(principal, filter)
        parsed_sort = as_model(ActivitySort, sort, "sort")
        limit = limit_of(limit)
        if cursor is not None and not isinstance(cursor, str):
            raise InvalidInputError("expected a string", field="cursor")
        cursor = plain(cursor)
        if scoped is None:
            return Page[Activity](items=[])
        return self._activities.list(scoped, sort=parsed_sort, limit=limit, cursor=cursor)

    def activities_for_opportunity(
        self, principal: Principal, opportunity_id: str
    ) -> list[Activity]:
        self.policy.require(principal, "activity.read")
        return self._activities.for_opportunity(
            checked_id(opportunity_id, "opportunity_id"), assigned_to=self._scope(principal)
        )

    def activities_for_customer(self, principal: Principal, customer_id: str) -> list[Activity]:
        self.policy.require(principal, "activity.read")
        return self._activities.for_customer(
            checked_id(customer_id, "customer_id"), assigned_to=self._scope(principal)
        )

    def activity_timeline(self, principal: Principal, opportunity_id: str) -> list[Activity]:
        """An opportunity's activities in chronological order (sales: their own)."""
        self.policy.require(principal, "activity.read")
        return self._activities.timeline(
            checked_id(opportunity_id, "opportunity_id"), assigned_to=self._scope(principal)
        )

    def pending_activities(
        self, principal: Principal, *, assigned_to: str | None = None, limit: int = 50
    ) -> list[Activity]:
        """Open activities whose time has come and that are not overdue (sales: their own)."""
        user = self._assignee(principal, assigned_to)
        return self._activities.pending(self._now(), assigned_to=user, limit=limit_of(limit))

    def overdue_activities(
        self, principal: Principal, *, assigned_to: str | None = None, limit: int = 50
    ) -> list[Activity]:
        """Open activities past their due date (sales: their own)."""
        user = self._assignee(principal, assigned_to)
        return self._activities.overdue(self._now(), assigned_to=user, limit=limit_of(limit))

    def _assignee(self, principal: Principal, assigned_to: str | None) -> str | None:
        self.policy.require(principal, "activity.read")
        if assigned_to is not None:
            assigned_to = checked_id(assigned_to, "assigned_to")
        scope = self._scope(principal)
        if scope is None:
            return assigned_to
        if assigned_to not in (None, scope):
            raise PermissionDeniedError("sales may only list their own activities")
        return scope

    def activity_statistics(
        self, principal: Principal, filter: ActivityFilter | Mapping[str, Any] | None = None
    ) -> ActivityStatistics:
        """Counts, completion rate and timings (sales: over their own activities)."""
        self.policy.require(principal, "activity.statistics")
        parsed: ActivityFilter = as_model(ActivityFilter, filter, "filter") or ActivityFilter()
        if not self.policy.allows(principal, "activity.statistics_all"):
            if parsed.assigned_to not in (None, principal.user_id):
                raise PermissionDeniedError("sales may only see statistics of their own activities")
            parsed = parsed.model_copy(update={"assigned_to": principal.user_id})
        return self._activities.statistics(parsed, as_of=self._now())

    def complete_activity(
        self,
        principal: Principal,
        activity_id: str,
        outcome: Outcome | str | None = None,
        *,
        expected_version: int | None = None,
    ) -> CompletionResult:
        """Mark an activity done (admins: any; sales: their own) and feed
        ``activity.completed`` into the rules (seed, Example 1, step 7).

        ``completedBy`` is the principal. :class:`NotFoundError` for a missing activity or one
        the principal may not complete (the same message); :class:`InvalidStateError` if it is
        already completed; :class:`StaleWriteError` if ``expected_version`` is not the stored
        version, or the activity changed between the check and the write."""
        self.policy.require(principal, "activity.complete")
        parsed = outcome_of(outcome)
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise InvalidInputError("expected an integer", field="expected_version")
        activity = self._visible(principal, activity_id)
        if activity.assigned_to != principal.user_id and not self.policy.allows(
            principal, "activity.complete_any"
        ):
            raise NotFoundError(f"activity {activity_id!r} not found")
        # Refused here, before the runtime stores its outbox entry, so the refusal writes nothing.
        if activity.completed_date is not None:
            raise InvalidStateError(f"activity {activity.activity_id!r} is already completed")
        if activity.cancelled_at is not None:
            raise InvalidStateError(f"activity {activity.activity_id!r} is cancelled")
        if expected_version is not None and expected_version != activity.version:
            raise StaleWriteError(
                f"activity {activity.activity_id!r} is at version {activity.version}, "
                f"not {expected_version}"
            )
        # Complete the version that was checked: if the activity changed meanwhile (e.g. it was
        # reassigned), the store refuses with StaleWriteError instead of completing it.
        result = self._writes.complete(
            activity.activity_id,
            outcome=parsed,
            completed_by=principal.user_id,
            expected_version=activity.version,
        )
        self._audit(
            principal, "activity", activity.activity_id, "completed", activity, result.activity
        )
        return result

    def delete_activity(self, principal: Principal, activity_id: str) -> None:
        """Remove an activity (admins only, as in the seed)."""
        self.policy.require(principal, "activity.delete")
        deleted = self._writes.delete(
            checked_id(activity_id, "activity_id"), actor=principal.user_id
        )
        self._audit(principal, "activity", deleted.activity_id, "deleted", before=deleted)

    # ------------------------------------------------------------------ actions and audit

    def list_parked_actions(
        self, principal: Principal, *, limit: int = 100
    ) -> list[ScheduledAction]:
        """Actions that failed for good and wait for a person (with the reason)."""
        self.policy.require(principal, "action.read_parked")
        return self._scheduled.list(ScheduledActionState.PARKED, limit=limit_of(limit))

    def retry_action(self, principal: Principal, action_id: str) -> ScheduledAction:
        """Put a parked action back in the queue, due now, with fresh attempts."""
        self.policy.require(principal, "action.retry")
        before = self._scheduled.get(checked_id(action_id, "action_id"))
        retried = self._executor.retry_parked(before.action_id)
        self._audit(principal, "action", retried.action_id, "retried", before, retried)
        return retried

    def audit_trail(
        self,
        principal: Principal,
        subject: str | None = None,
        subject_id: str | None = None,
    ) -> list[AuditEntry]:
        """Who changed what when, with the document before and after; filter by subject
        (``rule``, ``activity``, ``action``) and id."""
        self.policy.require(principal, "audit.read")
        subject = plain(subject)
        if subject is not None and subject not in _AUDIT_SUBJECTS:
            raise InvalidInputError(f"one of {', '.join(_AUDIT_SUBJECTS)}", field="subject")
        if subject_id is not None:
            subject_id = checked_id(subject_id, "subject_id")
        return self._audit_log.list(subject, subject_id)
