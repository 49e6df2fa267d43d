"""Role-checked sequence operations (``Operations.sequences``): sequences as admins run them,
enrollments as the team works them, the A/B report, and the opportunity's timeline with its
sequence steps.

Who may do what is the policy table (see :mod:`leadflow.access.policy`):

============================  ==========================================================
operation                     methods
============================  ==========================================================
``sequence.read``             :meth:`~SequenceOperations.get`, :meth:`~SequenceOperations.list`
``sequence.write``            :meth:`~SequenceOperations.create`, ``publish``, ``pause``,
                              ``resume``, ``archive``
``sequence.report``           :meth:`~SequenceOperations.report`
``enrollment.write``          :meth:`~SequenceOperations.enroll` (dry run too),
                              :meth:`~SequenceOperations.unenroll`: without
                              ``enrollment.write_any`` only on opportunities the principal
                              owns (the gateway's ``owner()``)
``activity.read``             :meth:`~SequenceOperations.enrollments`,
                              :meth:`~SequenceOperations.timeline`: without
                              ``activity.read_all`` only on opportunities the principal owns
============================  ==========================================================

Every input is checked before anything is written: a bulk enrollment checks every
opportunity (it exists; it is the principal's, where that matters) before enrolling any, and a
refused call writes nothing. An opportunity that is not the principal's is refused exactly like
an unknown one (:class:`PermissionDeniedError` for an enrollment; an enrollment on it is
"not found", exactly like a missing one; its enrollments read as none).

Every change is written to the audit log: ``sequence`` created / published / paused /
resumed / archived (the definition before and after), ``enrollment`` enrolled / unenrolled,
and the enrollments a change ended or moved (``ended`` / ``moved``: publishing with
``in_flight`` ``move`` or ``end``, archiving, a re-entry).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from ..clock import ensure_utc
from ..errors import (
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
)
from ..records import AuditEntry
from ..runtime.flow import LeadFlow
from ..runtime.sequence_admin import (
    EnrollmentReport,
    InFlight,
    SequencesAdmin,
    active_enrollments,
)
from ..runtime.sequence_matching import LeadFilter, leads_matching
from ..runtime.sequence_report import SequenceReport, report_for
from ..runtime.sequence_timeline import TimelineEntry, merge_timeline, read_step_entries
from ..sequences import Enrollment, Reenrollment, SequenceDefinition
from ..sequences import SequenceStatus as Status
from .inputs import checked_id, document_of
from .policy import Policy, Principal

__all__ = ["SEQUENCE_FIXED", "SequenceOperations"]

SEQUENCE_FIXED: Final = frozenset({"version", "status", "createdBy", "createdAt", "updatedAt"})
"""Fields of a definition set by leadflow when it is stored; given ones are ignored (a
definition read back may be published again as it is)."""

_MAX_BULK: Final = 10_000
_SCAN: Final = 10_000


class SequenceOperations:
    """The sequence operations people call, each checked against the principal's role (see the
    module docstring). Built by :class:`~leadflow.access.Operations` as its ``sequences``; the
    policy is read from ``policy`` at each call, so replacing ``Operations.policy`` applies."""

    def __init__(self, flow: LeadFlow, policy: Callable[[], Policy]) -> None:
        self._flow = flow
        self._policy = policy
        self._clock = flow.clock
        self._activities = flow.storage.activities
        self._scheduled = flow.storage.scheduled
        self._audit_log = flow.storage.audit
        self._opportunities = flow.integrations.opportunities
        self._sequences = flow.storage.sequences
        self._enrollments = flow.storage.enrollments

    # ------------------------------------------------------------------ helpers

    @property
    def _admin(self) -> SequencesAdmin:
        """The flow's sequence administration (:class:`~leadflow.InvalidStateError` when its
        storage keeps no sequences)."""
        return self._flow.sequences

    def _require(self, principal: Principal, operation: str) -> Policy:
        policy = self._policy()
        policy.require(principal, operation)
        return policy

    def _now(self) -> datetime:
        return ensure_utc(self._clock.now(), "clock.now()")

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
                    "note": note[:2000] if note else None,
                }
            )
        )

    def _owns(self, principal: Principal, opportunity_id: str) -> bool:
        try:
            return self._opportunities.owner(opportunity_id) == principal.user_id
        except NotFoundError:
            return False  # the same answer as for another rep's opportunity

    def _reads(self, principal: Principal, opportunity_id: object) -> tuple[str, bool]:
        """The checked id and whether the principal may see the opportunity's sequences."""
        policy = self._require(principal, "activity.read")
        checked = checked_id(opportunity_id, "opportunity_id")
        if policy.allows(principal, "activity.read_all"):
            return checked, True
        return checked, self._owns(principal, checked)

    def _definition(self, definition: Any, sequence_id: str | None) -> SequenceDefinition:
        raw = document_of(definition, "definition")
        raw = {k: v for k, v in raw.items() if k not in SEQUENCE_FIXED}
        if sequence_id is not None:
            given = raw.setdefault("sequenceId", sequence_id)
            if given != sequence_id:
                raise InvalidInputError(
                    f"the definition is sequence {str(given)[:80]!r}, not {sequence_id!r}",
                    field="sequenceId",
                )
        return SequenceDefinition.model_validate(raw)

    @staticmethod
    def _status(status: object) -> Status:
        if isinstance(status, str) and status in ("active", "draft"):
            return Status(status)
        raise InvalidInputError("one of active, draft", field="status")

    def _active(self, sequence_id: str) -> builtins.list[Enrollment]:
        if self._enrollments is None:
            return []
        return builtins.list(active_enrollments(self._enrollments, sequence_id))

    def _audit_changed(self, principal: Principal, before: Iterable[Enrollment], note: str) -> None:
        """Audit the enrollments of ``before`` that a change ended or moved."""
        if self._enrollments is None:
            return
        for old in before:
            try:
                new = self._enrollments.get(old.enrollment_id)
            except NotFoundError:
                continue
            if new.state is not old.state:
                self._audit(principal, "enrollment", new.enrollment_id, "ended", old, new, note)
            elif new.sequence_version != old.sequence_version:
                self._audit(principal, "enrollment", new.enrollment_id, "moved", old, new, note)

    # ------------------------------------------------------------------ sequences

    def create(
        self,
        principal: Principal,
        definition: SequenceDefinition | Mapping[str, Any],
        *,
        status: Status | str = Status.ACTIVE,
    ) -> SequenceDefinition:
        """Store a new sequence as version 1, ``active`` (or ``draft``). The definition is
        compiled for this flow first (:class:`InvalidInputError` naming the step and field).
        :class:`DuplicateError` if the sequence exists (publish a new version instead)."""
        self._require(principal, "sequence.write")
        parsed = self._definition(definition, None)
        state = self._status(status)
        admin = self._admin  # refuses a flow without sequences
        assert self._sequences is not None
        if self._sequences.versions(parsed.sequence_id):
            raise DuplicateError(
                f"sequence {parsed.sequence_id!r} exists: publish a new version of it"
            )
        stored = admin.publish(parsed, actor=principal.user_id, status=state)
        self._audit(principal, "sequence", stored.sequence_id, "created", after=stored)
        return stored

    def publish(
        self,
        principal: Principal,
        sequence_id: str,
        definition: SequenceDefinition | Mapping[str, Any] | None = None,
        *,
        in_flight: InFlight | str = InFlight.KEEP,
        status: Status | str = Status.ACTIVE,
    ) -> SequenceDefinition:
        """Store ``definition`` (default: the current version's content, e.g. to make a draft
        live) as the sequence's next version, ``active`` (or ``draft``), and apply
        ``in_flight`` (``keep``, ``move``, ``end``) to enrollments on older versions.
        :class:`NotFoundError` for an unknown sequence; a definition of another sequence is an
        :class:`InvalidInputError` (``sequenceId``)."""
        self._require(principal, "sequence.write")
        checked = checked_id(sequence_id, "sequence_id")
        if not isinstance(in_flight, str) or in_flight not in InFlight._value2member_map_:
            raise InvalidInputError("one of keep, move, end", field="in_flight")
        policy = InFlight(in_flight)
        state = self._status(status)
        admin = self._admin
        current = admin.get(checked)
        parsed = self._definition(current if definition is None else definition, checked)
        before = self._active(checked) if policy is not InFlight.KEEP else []
        stored = admin.publish(parsed, actor=principal.user_id, in_flight=policy, status=state)
        note = f"version {stored.version}, in flight: {policy.value}"
        self._audit(principal, "sequence", checked, "published", current, stored, note)
        self._audit_changed(principal, before, f"version {stored.version} published")
        return stored

    def _set(self, principal: Principal, sequence_id: object, change: str) -> SequenceDefinition:
        self._require(principal, "sequence.write")
        checked = checked_id(sequence_id, "sequence_id")
        admin = self._admin
        current = admin.running(checked)
        before = self._active(checked) if change == "archived" else []
        action = {"paused": admin.pause, "resumed": admin.resume, "archived": admin.archive}
        changed = action[change](checked)
        self._audit(principal, "sequence", checked, change, current, changed)
        self._audit_changed(principal, before, "sequence archived")
        return changed

    def pause(self, principal: Principal, sequence_id: str) -> SequenceDefinition:
        """No new entries; due steps are held until :meth:`resume`.
        :class:`InvalidStateError` unless the sequence is active."""
        return self._set(principal, sequence_id, "paused")

    def resume(self, principal: Principal, sequence_id: str) -> SequenceDefinition:
        """Entries again; the steps held while paused run now. :class:`InvalidStateError`
        unless the sequence is paused."""
        return self._set(principal, sequence_id, "resumed")

    def archive(self, principal: Principal, sequence_id: str) -> SequenceDefinition:
        """Retire the sequence: no entries, and its active enrollments end (each audited)."""
        return self._set(principal, sequence_id, "archived")

    def get(
        self,
        principal: Principal,
        sequence_id: str,
        version: int | None = None,
        *,
        running: bool = False,
    ) -> SequenceDefinition:
        """One version of a sequence: the current (latest) one by default, ``version``, or
        with ``running`` the one that runs (the latest that is not a draft; the latest when
        all are drafts). ``version`` and ``running`` together are an
        :class:`InvalidInputError` (``running``)."""
        self._require(principal, "sequence.read")
        checked = checked_id(sequence_id, "sequence_id")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 1
        ):
            raise InvalidInputError("expected a positive integer", field="version")
        if not isinstance(running, bool):
            raise InvalidInputError("expected a boolean", field="running")
        if running:
            if version is not None:
                raise InvalidInputError("give version or running, not both", field="running")
            return self._admin.running(checked)
        return self._admin.get(checked, version)

    def list(
        self, principal: Principal, *, running: bool = False
    ) -> builtins.list[SequenceDefinition]:
        """The current (latest) version of every sequence, or with ``running`` the version of
        each that runs (the latest that is not a draft; the latest when all are drafts): a
        draft stored on top of a live sequence shows as the draft in the first list and as
        the live version in the second."""
        self._require(principal, "sequence.read")
        if not isinstance(running, bool):
            raise InvalidInputError("expected a boolean", field="running")
        return self._admin.list(running=running)

    def report(
        self, principal: Principal, sequence_id: str, *, min_per_arm: int = 30
    ) -> SequenceReport:
        """The sequence's totals and A/B results (see :mod:`leadflow.runtime.sequence_report`);
        ``min_per_arm``: the enrollments each arm needs before a verdict (1..100,000)."""
        self._require(principal, "sequence.report")
        checked = checked_id(sequence_id, "sequence_id")
        if (
            isinstance(min_per_arm, bool)
            or not isinstance(min_per_arm, int)
            or not 1 <= min_per_arm <= 100_000
        ):
            raise InvalidInputError("expected an integer in 1..100000", field="min_per_arm")
        admin = self._admin  # refuses a flow without sequences
        admin.get(checked)
        assert self._sequences is not None and self._enrollments is not None
        return report_for(self._sequences, self._enrollments, checked, min_per_arm=min_per_arm)

    # ------------------------------------------------------------------ enrollments

    def _opportunity_ids(self, value: object) -> builtins.list[str]:
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
            raise InvalidInputError("expected a list of opportunity ids", field="opportunity_ids")
        ids: builtins.list[str] = []
        for i, item in enumerate(value):
            if i >= _MAX_BULK:
                raise InvalidInputError(
                    "at most 10,000 opportunities at once", field="opportunity_ids"
                )
            ids.append(checked_id(item, f"opportunity_ids[{i}]"))
        if not ids:
            raise InvalidInputError("at least one opportunity", field="opportunity_ids")
        return builtins.list(dict.fromkeys(ids))

    def _may_write(self, principal: Principal, opportunity_ids: Iterable[str]) -> None:
        """Every opportunity exists and, without ``enrollment.write_any``, is the
        principal's; checked for all before anything is written."""
        policy = self._require(principal, "enrollment.write")
        any_one = policy.allows(principal, "enrollment.write_any")
        for opportunity_id in opportunity_ids:
            if any_one:
                self._opportunities.owner(opportunity_id)  # NotFoundError if unknown
            elif not self._owns(principal, opportunity_id):
                raise PermissionDeniedError(
                    f"role {principal.role.value!r} may only enroll opportunities they own "
                    f"({opportunity_id!r} is not theirs)"
                )

    def enroll(
        self,
        principal: Principal,
        sequence_id: str,
        opportunity_ids: Iterable[str],
        *,
        dry_run: bool = False,
    ) -> EnrollmentReport:
        """Enroll opportunities by hand (at most 10,000; the sequence's re-enrollment policy
        applies); with ``dry_run`` nothing is written and the report says who would enter.
        :class:`InvalidStateError` unless the sequence is active; an unknown opportunity is
        :class:`NotFoundError` (:class:`PermissionDeniedError` for a principal who may enroll
        only their own)."""
        self._require(principal, "enrollment.write")
        checked = checked_id(sequence_id, "sequence_id")
        ids = self._opportunity_ids(opportunity_ids)
        if not isinstance(dry_run, bool):
            raise InvalidInputError("expected a boolean", field="dry_run")
        admin = self._admin
        definition = admin.running(checked)
        self._may_write(principal, ids)
        if dry_run:
            return admin.enroll(checked, ids, actor=principal.user_id, dry_run=True)
        before: builtins.list[Enrollment] = []
        if definition.reenrollment is Reenrollment.EVERY_ENTRY:
            before = [e for e in self._active(checked) if e.opportunity_id in set(ids)]
        report = admin.enroll(checked, ids, actor=principal.user_id)
        self._audit_changed(principal, before, "re-entered by hand")
        assert self._enrollments is not None
        for opportunity_id, outcome in report.outcomes.items():
            if outcome.what in ("enrolled", "reentered"):
                enrollment = self._enrollments.get(outcome.enrollment_id)
                self._audit(principal, "enrollment", enrollment.enrollment_id, "enrolled",
                            after=enrollment, note=f"{opportunity_id} into {checked}")  # fmt: skip
        return report

    def enroll_matching(
        self,
        principal: Principal,
        sequence_id: str,
        where: LeadFilter | Mapping[str, Any],
        *,
        dry_run: bool = False,
    ) -> EnrollmentReport:
        """Enroll the leads ``where`` takes (:class:`~leadflow.runtime.sequence_matching.
        LeadFilter`: those leadflow saw arrive in a period, of given sources and owners; at
        most 10,000) exactly as :meth:`enroll` enrolls a list of ids: the same checks (a
        principal who may enroll only their own is refused the whole filter when it takes
        another's lead: filter by ``owners``), dry run and audit. A filter that takes nobody
        is an empty report. pydantic's ``ValidationError`` for a malformed filter;
        :class:`InvalidStateError` without an analytics store or unless the sequence is
        active."""
        self._require(principal, "enrollment.write")
        checked = checked_id(sequence_id, "sequence_id")
        if not isinstance(dry_run, bool):
            raise InvalidInputError("expected a boolean", field="dry_run")
        if not isinstance(where, LeadFilter | Mapping):
            raise InvalidInputError("expected a lead filter", field="where")
        lead_filter = where if isinstance(where, LeadFilter) else LeadFilter.model_validate(where)
        admin = self._admin
        definition = admin.running(checked)
        if definition.status is not Status.ACTIVE:
            raise InvalidStateError(
                f"sequence {checked!r} is {definition.status.value}: it enrolls nobody"
            )
        ids = leads_matching(self._flow.storage.analytics, lead_filter)
        if not ids:
            return EnrollmentReport(checked, dry_run)
        return self.enroll(principal, checked, ids, dry_run=dry_run)

    def unenroll(self, principal: Principal, enrollment_id: str) -> Enrollment:
        """End an enrollment by hand. An enrollment on an opportunity the principal may not
        enroll is "not found", exactly like a missing one; :class:`InvalidStateError` if it
        has ended already."""
        policy = self._require(principal, "enrollment.write")
        checked = checked_id(enrollment_id, "enrollment_id")
        admin = self._admin
        assert self._enrollments is not None
        try:
            before = self._enrollments.get(checked)
        except NotFoundError:
            before = None
        if before is None or not (
            policy.allows(principal, "enrollment.write_any")
            or self._owns(principal, before.opportunity_id)
        ):
            raise NotFoundError(f"enrollment {checked!r} not found")
        ended = admin.unenroll(checked, actor=principal.user_id)
        self._audit(principal, "enrollment", checked, "unenrolled", before, ended)
        return ended

    def enrollments(self, principal: Principal, opportunity_id: str) -> builtins.list[Enrollment]:
        """Every enrollment of an opportunity, oldest first, each with its step history (why
        it went where it went); none for an opportunity the principal may not see."""
        checked, visible = self._reads(principal, opportunity_id)
        if not visible or self._enrollments is None:
            return []
        return self._enrollments.list(opportunity_id=checked, limit=_SCAN)

    def timeline(self, principal: Principal, opportunity_id: str) -> builtins.list[TimelineEntry]:
        """The opportunity's activities (as ``activity_timeline`` shows them to the principal)
        and its sequence steps (done, pending, skipped, cancelled; for those who may see its
        enrollments), merged in time order (:mod:`leadflow.runtime.sequence_timeline`)."""
        checked, visible = self._reads(principal, opportunity_id)
        policy = self._policy()
        scope = None if policy.allows(principal, "activity.read_all") else principal.user_id
        activities = self._activities.timeline(checked, assigned_to=scope)
        steps = []
        if visible and self._enrollments is not None:
            enrollments = self._enrollments.list(opportunity_id=checked, limit=_SCAN)
            steps = read_step_entries(enrollments, self._scheduled)
        return merge_timeline(activities, steps)
