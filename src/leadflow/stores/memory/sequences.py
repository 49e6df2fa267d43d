"""The in-memory :class:`~leadflow.ports.SequenceRepository` and
:class:`~leadflow.ports.EnrollmentStore`: plain dicts under one lock each, records kept as
validated private copies and handed out as copies (a definition is mutable, and an
enrollment's documents are plain dicts and lists)."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Sequence
from datetime import datetime

from ...documents import plain
from ...errors import (
    DuplicateError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    StaleWriteError,
)
from ...sequences import (
    Enrollment,
    EnrollmentHead,
    EnrollmentState,
    SequenceDefinition,
    SequenceStatus,
    StepRecord,
)
from ...sequences.enrollment import HISTORY_LIMIT
from ..checks import (
    check_id,
    check_limit,
    check_model,
    check_version,
    checked_version,
    is_handed_over,
)
from ..sequence_checks import (
    check_change,
    checked_batch,
    checked_enrollment,
    checked_ids,
    checked_marks,
    checked_moves,
    detached,
    enum_member,
    head_of,
    with_history,
)

__all__ = ["InMemoryEnrollmentStore", "InMemorySequenceRepository"]


class InMemorySequenceRepository:
    """Every version of every sequence in process memory (see the port)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, dict[int, SequenceDefinition]] = {}
        self._stamp = 0

    def add(self, definition: SequenceDefinition) -> SequenceDefinition:
        checked = check_model(definition, SequenceDefinition, "definition")
        with self._lock:
            versions = self._versions.setdefault(checked.sequence_id, {})
            if checked.version in versions:
                raise DuplicateError(
                    f"sequence {checked.sequence_id!r} version {checked.version} already exists"
                )
            highest = max(versions, default=0)
            if checked.version != highest + 1:
                if not versions:
                    del self._versions[checked.sequence_id]
                raise StaleWriteError(
                    f"sequence {checked.sequence_id!r} is at version {highest}: the next "
                    f"version is {highest + 1}, not {checked.version}"
                )
            versions[checked.version] = checked
            self._stamp += 1
        return checked.model_copy(deep=True)

    def get(self, sequence_id: str, version: int | None = None) -> SequenceDefinition:
        sequence_id = plain(sequence_id)
        check_id(sequence_id, "sequence_id")
        version = checked_version(version, "version")
        with self._lock:
            versions = self._versions.get(sequence_id)
            if not versions:
                raise NotFoundError(f"no sequence {sequence_id!r}")
            found = versions.get(max(versions) if version is None else version)
        if found is None:
            raise NotFoundError(f"sequence {sequence_id!r} has no version {version}")
        return found.model_copy(deep=True)

    def versions(self, sequence_id: str) -> builtins.list[SequenceDefinition]:
        sequence_id = plain(sequence_id)
        check_id(sequence_id, "sequence_id")
        with self._lock:
            versions = self._versions.get(sequence_id, {})
            return [versions[v].model_copy(deep=True) for v in sorted(versions)]

    def list(self) -> builtins.list[SequenceDefinition]:
        with self._lock:
            current = [versions[max(versions)] for _, versions in sorted(self._versions.items())]
        return [definition.model_copy(deep=True) for definition in current]

    def set_status(
        self, sequence_id: str, version: int, status: SequenceStatus
    ) -> SequenceDefinition:
        status = enum_member(SequenceStatus, status, "status")
        stored = self.get(sequence_id, check_version(version, "version"))
        with self._lock:
            changed = stored.model_copy(update={"status": status})
            self._versions[stored.sequence_id][stored.version] = changed
            self._stamp += 1
        return changed.model_copy(deep=True)

    def stamp(self) -> int:
        with self._lock:
            return self._stamp


class InMemoryEnrollmentStore:
    """Enrollments in process memory (see the port): a dict by id and, per sequence and
    opportunity, the id of the active one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Enrollment] = {}
        self._active: dict[tuple[str, str], str] = {}
        self._by_opportunity: dict[str, builtins.list[str]] = {}

    def enroll(self, enrollment: Enrollment) -> tuple[Enrollment, bool]:
        """See the port. A new enrollment the runtime handed over
        (:func:`~leadflow.stores.checks.handed_over`) is stored and returned as it is (with
        revision 1), anything else as a private copy."""
        handed = is_handed_over(enrollment)
        checked = checked_enrollment(enrollment) if handed else _checked(enrollment)
        if checked.state is not EnrollmentState.ACTIVE:
            raise InvalidInputError("a new enrollment is active", field="state")
        key = (checked.sequence_id, checked.opportunity_id)
        with self._lock:
            existing = self._by_id.get(checked.enrollment_id)
            if existing is None and key in self._active:
                existing = self._by_id[self._active[key]]
            if existing is not None:
                return _out(existing), False
            stored = checked._evolve(revision=1)
            self._by_id[stored.enrollment_id] = stored
            self._active[key] = stored.enrollment_id
            self._by_opportunity.setdefault(stored.opportunity_id, []).append(stored.enrollment_id)
        return (stored if handed else _out(stored)), True

    def get(self, enrollment_id: str) -> Enrollment:
        enrollment_id = plain(enrollment_id)
        check_id(enrollment_id, "enrollment_id")
        with self._lock:
            found = self._by_id.get(enrollment_id)
        if found is None:
            raise NotFoundError(f"no enrollment {enrollment_id!r}")
        return _out(found)

    def update(self, enrollment: Enrollment) -> Enrollment:
        checked = _checked(enrollment)
        with self._lock:
            stored = self._update(checked)
        return _out(stored)

    def _update(self, checked: Enrollment) -> Enrollment:
        """Store ``checked`` (a private copy) over its stored record; under the lock."""
        old = self._by_id.get(checked.enrollment_id)
        if old is None:
            raise NotFoundError(f"no enrollment {checked.enrollment_id!r}")
        check_change(old, checked)
        stored = checked._evolve(revision=old.revision + 1)
        self._store(stored)
        return stored

    def _store(self, stored: Enrollment) -> None:
        """Keep ``stored`` over its record (checked against it); under the lock."""
        self._by_id[stored.enrollment_id] = stored
        if not stored.active:
            key = (stored.sequence_id, stored.opportunity_id)
            if self._active.get(key) == stored.enrollment_id:
                del self._active[key]

    def active_for(self, opportunity_id: str) -> builtins.list[Enrollment]:
        opportunity_id = plain(opportunity_id)
        check_id(opportunity_id, "opportunity_id")
        with self._lock:
            found = [self._by_id[i] for i in self._by_opportunity.get(opportunity_id, ())]
        return [_out(e) for e in sorted((e for e in found if e.active), key=_order)]

    def list(
        self,
        *,
        sequence_id: str | None = None,
        opportunity_id: str | None = None,
        state: EnrollmentState | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> builtins.list[Enrollment]:
        sequence_id, opportunity_id, after = plain(sequence_id), plain(opportunity_id), plain(after)
        check_id(sequence_id, "sequence_id", optional=True)
        check_id(opportunity_id, "opportunity_id", optional=True)
        check_id(after, "after", optional=True)
        wanted = None if state is None else enum_member(EnrollmentState, state, "state")
        limit = check_limit(limit, 10_000)
        with self._lock:
            if opportunity_id is not None:
                pool = [self._by_id[i] for i in self._by_opportunity.get(opportunity_id, ())]
            else:
                pool = builtins.list(self._by_id.values())
            start = None if after is None else self._by_id.get(after)
        if after is not None and start is None:
            raise NotFoundError(f"no enrollment {after!r}")
        since = None if start is None else _order(start)
        found = [
            e
            for e in pool
            if (sequence_id is None or e.sequence_id == sequence_id)
            and (wanted is None or e.state is wanted)
            and (since is None or _order(e) > since)
        ]
        return [_out(e) for e in sorted(found, key=_order)[:limit]]

    # ------------------------------------------------------------------ batches

    def get_many(self, enrollment_ids: Sequence[str]) -> dict[str, Enrollment]:
        """See :class:`~leadflow.ports.sequences.EnrollmentBatches`: under one lock."""
        ids = checked_ids(enrollment_ids)
        with self._lock:
            found = [self._by_id.get(enrollment_id) for enrollment_id in ids]
        return {e.enrollment_id: _out(e) for e in found if e is not None}

    def update_many(self, enrollments: Sequence[Enrollment]) -> builtins.list[Enrollment | None]:
        """See :class:`~leadflow.ports.sequences.EnrollmentBatches`: under one lock. What the
        runtime handed over (:func:`~leadflow.stores.checks.handed_over`) is stored as it is,
        anything else as a private copy."""
        checked = [
            enrollment if is_handed_over(enrollment) else _out(enrollment)
            for enrollment in checked_batch(enrollments)
        ]
        stored: builtins.list[Enrollment | None] = []
        with self._lock:
            for enrollment in checked:
                try:
                    stored.append(self._update(enrollment))
                except (StaleWriteError, NotFoundError, InvalidStateError):
                    stored.append(None)
        return [None if e is None else _out(e) for e in stored]

    # ------------------------------------------------------------------ send marks

    def mark_sending(
        self, marks: Sequence[tuple[str, int]], *, at: datetime
    ) -> builtins.list[bool]:
        """See :class:`~leadflow.ports.sequences.EnrollmentSendMarks`: under one lock, each
        marked record a changed copy of the stored one (its containers shared with it: no
        record the store keeps is ever changed in place)."""
        checked, at = checked_marks(marks, at)
        written: builtins.list[bool] = []
        with self._lock:
            for enrollment_id, revision in checked:
                old = self._by_id.get(enrollment_id)
                if old is None or not old.active or old.revision != revision:
                    written.append(False)
                    continue
                self._by_id[enrollment_id] = old._evolve(
                    sending=True, updated_at=at, revision=revision + 1
                )
                written.append(True)
        return written

    # ------------------------------------------------------------------ steps

    def get_heads(self, enrollment_ids: Sequence[str]) -> dict[str, EnrollmentHead]:
        """See :class:`~leadflow.ports.sequences.EnrollmentSteps`: under one lock, the heads
        copied from the stored records (their histories not copied)."""
        ids = checked_ids(enrollment_ids)
        with self._lock:
            found = [self._by_id.get(enrollment_id) for enrollment_id in ids]
        return {e.enrollment_id: head_of(e) for e in found if e is not None}

    def move_many(
        self, moves: Sequence[tuple[EnrollmentHead, Sequence[StepRecord]]]
    ) -> builtins.list[EnrollmentHead | None]:
        """See :class:`~leadflow.ports.sequences.EnrollmentSteps`: under one lock, each moved
        record the head's fields (a head the runtime handed over kept as it is, any other
        copied) with the stored history and the records appended to it (a new list: no record
        the store keeps is changed in place)."""
        checked = checked_moves(moves)
        stored: builtins.list[EnrollmentHead | None] = []
        with self._lock:
            for head, records in checked:
                old = self._by_id.get(head.enrollment_id)
                try:
                    if old is None:
                        raise NotFoundError(head.enrollment_id)
                    check_change(old, head)
                except (StaleWriteError, NotFoundError, InvalidStateError):
                    stored.append(None)
                    continue
                handed = is_handed_over(head)
                moved = head._evolve(revision=old.revision + 1)
                if not handed or type(head) is not EnrollmentHead:
                    moved = head_of(moved)  # a private copy of what came from outside
                history = old.history
                if records:
                    history = [*history, *records][-HISTORY_LIMIT:]
                self._store(with_history(moved, history))
                stored.append(moved if handed else head_of(moved))
        return stored


def _checked(enrollment: object) -> Enrollment:
    """A private copy of an enrollment from outside (checked as on every backend)."""
    return _out(checked_enrollment(enrollment))


_out = detached


def _order(enrollment: Enrollment) -> tuple[datetime, str]:
    return (enrollment.enrolled_at, enrollment.enrollment_id)
