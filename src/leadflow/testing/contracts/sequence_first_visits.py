"""The contract of :class:`~leadflow.ports.sequences.EnrollmentFirstVisits`: a new enrollment
stored with its first visit, both or neither."""

from __future__ import annotations

import abc
from typing import Any

import pytest

from ...errors import InvalidInputError, NotFoundError
from ...ports.sequences import EnrollmentFirstVisits
from ...records import ScheduledAction
from ...sequences import Enrollment, EnrollmentState, StepRecord
from .data import at, make_scheduled_action

__all__ = ["EnrollmentFirstVisitsContract"]


def _enrollment(enrollment_id: str, opportunity: str = "opp-1") -> Enrollment:
    return Enrollment(
        enrollment_id=enrollment_id, sequence_id="seq-1", sequence_version=1,
        opportunity_id=opportunity, visit=1, step_id="call", context={"entry": {"n": 1}},
        enrolled_at=at(), updated_at=at(),
        history=[StepRecord(visit=0, step_id="call", kind="action", at=at(),
                            outcome="scheduled", why="first")],
    )  # fmt: skip


def _visit(enrollment_id: str, **fields: Any) -> ScheduledAction:
    values: dict[str, Any] = {
        "action_id": f"sa-{enrollment_id}", "kind": "step", "rule_id": "seq-1",
        "enrollment_id": enrollment_id, "step_id": "call", "action_index": 1,
        "due_at": at(hours=1), "explanation": "its first stop",
    }  # fmt: skip
    values.update(fields)
    return make_scheduled_action(f"seq:{enrollment_id}:1", **values)


class EnrollmentFirstVisitsContract(abc.ABC):
    """Every test an enrollment store with :class:`~leadflow.ports.sequences.
    EnrollmentFirstVisits` must pass (besides :class:`EnrollmentStoreContract`), with the
    scheduled-action store its visits go to.

    Subclass it (as ``Test...``) and implement :meth:`make_storage`.
    """

    @abc.abstractmethod
    def make_storage(self) -> Any:
        """A new, empty storage (``enrollments`` with ``enroll_at_first``, ``scheduled``)."""

    @pytest.fixture
    def storage(self) -> Any:
        return self.make_storage()

    @staticmethod
    def _actions(storage: Any) -> dict[str, ScheduledAction]:
        return {a.action_id: a for a in storage.scheduled.list(limit=100)}

    def test_has_the_method(self, storage: Any) -> None:
        assert isinstance(storage.enrollments, EnrollmentFirstVisits)

    def test_the_enrollment_and_its_visit_go_in_together(self, storage: Any) -> None:
        store = storage.enrollments
        visit = _visit("enr-1")
        stored, created = store.enroll_at_first(_enrollment("enr-1"), visit)
        assert created and stored.revision == 1
        assert stored == _enrollment("enr-1")
        assert store.get("enr-1") == stored
        assert [r.why for r in store.get("enr-1").history] == ["first"]
        assert self._actions(storage) == {visit.action_id: visit}
        assert storage.scheduled.get(visit.action_id) == visit

    def test_an_id_already_held_stores_no_visit(self, storage: Any) -> None:
        store = storage.enrollments
        first, created = store.enroll(_enrollment("enr-1"))
        assert created
        again, created = store.enroll_at_first(_enrollment("enr-1"), _visit("enr-1"))
        assert not created and again == first
        assert self._actions(storage) == {}

    def test_a_pair_already_active_stores_no_visit(self, storage: Any) -> None:
        store = storage.enrollments
        holder, _ = store.enroll(_enrollment("enr-1"))
        found, created = store.enroll_at_first(_enrollment("enr-2"), _visit("enr-2"))
        assert not created and found == holder
        assert self._actions(storage) == {}
        with pytest.raises(NotFoundError):
            store.get("enr-2")
        # Once the holder has ended, the pair is free: the new one goes in with its visit.
        store.update(holder.model_copy(update={"state": EnrollmentState.ENDED, "ended_at": at()}))
        visit = _visit("enr-2")
        _, created = store.enroll_at_first(_enrollment("enr-2"), visit)
        assert created and self._actions(storage) == {visit.action_id: visit}

    def test_a_visit_whose_key_is_held_is_left_as_it_was(self, storage: Any) -> None:
        earlier = _visit("enr-1", explanation="stored before")
        storage.scheduled.schedule(earlier)
        _, created = storage.enrollments.enroll_at_first(_enrollment("enr-1"), _visit("enr-1"))
        assert created
        assert self._actions(storage) == {earlier.action_id: earlier}

    @pytest.mark.parametrize("whose", ["a rule's", "another enrollment's"])
    def test_a_visit_that_is_not_the_enrollments_own_is_refused(
        self, storage: Any, whose: str
    ) -> None:
        visit = make_scheduled_action("seq:enr-1:1") if whose == "a rule's" else _visit("enr-2")
        with pytest.raises(InvalidInputError) as refused:
            storage.enrollments.enroll_at_first(_enrollment("enr-1"), visit)
        assert refused.value.field == "visit"
        assert storage.enrollments.list(limit=10) == [] and self._actions(storage) == {}

    def test_an_enrollment_refused_writes_no_visit(self, storage: Any) -> None:
        ended = _enrollment("enr-1").model_copy(
            update={"state": EnrollmentState.ENDED, "ended_at": at()}
        )
        with pytest.raises(InvalidInputError):
            storage.enrollments.enroll_at_first(ended, _visit("enr-1"))
        assert storage.enrollments.list(limit=10) == [] and self._actions(storage) == {}
