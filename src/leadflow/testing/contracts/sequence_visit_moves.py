"""The contract of :class:`~leadflow.ports.sequences.EnrollmentVisitMoves`: a batch of moves
on written with the next visits they go to; a move whose visit is held already (stored first
by another writer) is not written, a move whose compare-and-set fails leaves its visit stored;
what it stores is what storing the visits, then ``move_many``, stores."""

from __future__ import annotations

import abc
from typing import Any

import pytest

from ...errors import InvalidInputError
from ...ports.sequences import EnrollmentVisitMoves
from ...records import ScheduledAction
from ...sequences import Enrollment, EnrollmentHead, EnrollmentState, StepRecord
from .data import at, make_scheduled_action

__all__ = ["EnrollmentVisitMovesContract"]


def _enrollment(enrollment_id: str, records: int = 1) -> Enrollment:
    return Enrollment(
        enrollment_id=enrollment_id, sequence_id="seq-1", sequence_version=1,
        opportunity_id=f"opp-{enrollment_id}", visit=1, step_id="call",
        context={"entry": {"n": 1, "at": at()}}, enrolled_at=at(), updated_at=at(),
        history=[StepRecord(visit=0, step_id="call", kind="action", at=at(),
                            outcome="scheduled", why=f"earlier {i}") for i in range(records)],
    )  # fmt: skip


def _visit(owner: str, visit: int = 2, **fields: Any) -> ScheduledAction:
    """Visit ``visit`` of enrollment ``owner`` (a wait's timer), unless ``fields`` say
    otherwise."""
    values: dict[str, Any] = {
        "action_id": f"sa-{owner}-{visit}", "kind": "step", "rule_id": "seq-1",
        "enrollment_id": owner, "step_id": "wait", "action_index": visit,
        "due_at": at(hours=24), "explanation": "its next stop", "action": None,
        "opportunity_id": f"opp-{owner}",
    }  # fmt: skip
    values.update(fields)
    return make_scheduled_action(f"seq:{owner}:{visit}", **values)


def _moved(head: EnrollmentHead, **fields: Any) -> EnrollmentHead:
    values: dict[str, Any] = {"visit": head.visit + 1, "step_id": "wait", "updated_at": at(hours=1)}
    values.update(fields)
    return head.model_copy(update=values)


def _records(head: EnrollmentHead, n: int = 2) -> list[StepRecord]:
    return [
        StepRecord(visit=head.visit, step_id="call", kind="action", at=at(hours=1), outcome="done",
                   why=f"step {i}", version=1)
        for i in range(n)
    ]  # fmt: skip


class EnrollmentVisitMovesContract(abc.ABC):
    """Every test an enrollment store with :class:`~leadflow.ports.sequences.
    EnrollmentVisitMoves` must pass (besides :class:`EnrollmentStepsContract`), with the
    scheduled-action store its visits go to.

    Subclass it (as ``Test...``) and implement :meth:`make_storage`.
    """

    @abc.abstractmethod
    def make_storage(self) -> Any:
        """A new, empty storage (``enrollments`` with ``move_to_visits``, ``scheduled``)."""

    @pytest.fixture
    def storage(self) -> Any:
        return self.make_storage()

    @staticmethod
    def _heads(storage: Any, *ids: str, records: int = 1) -> list[EnrollmentHead]:
        store = storage.enrollments
        for enrollment_id in ids:
            store.enroll(_enrollment(enrollment_id, records))
        heads = store.get_heads(list(ids))
        return [heads[enrollment_id] for enrollment_id in ids]

    @staticmethod
    def _actions(storage: Any) -> dict[str, ScheduledAction]:
        return {a.action_id: a for a in storage.scheduled.list(limit=500)}

    def test_has_the_method(self, storage: Any) -> None:
        assert isinstance(storage.enrollments, EnrollmentVisitMoves)

    def test_moves_go_in_with_their_visits(self, storage: Any) -> None:
        store = storage.enrollments
        heads = self._heads(storage, "enr-1", "enr-2", "enr-3")
        moves = [(_moved(h), _records(h), _visit(h.enrollment_id)) for h in heads]
        found = store.move_to_visits(moves)
        assert [stored for _, stored in found] == [True, True, True]
        for (head, _), (new, records, visit) in zip(found, moves, strict=True):
            assert head == new.model_copy(update={"revision": new.revision + 1})
            assert type(head) is EnrollmentHead
            whole = store.get(new.enrollment_id)
            assert whole.visit == 2 and whole.revision == new.revision + 1
            assert whole.history[-2:] == records and len(whole.history) == 3
            assert storage.scheduled.get(visit.action_id) == visit
        assert len(self._actions(storage)) == 3

    def test_a_visit_held_already_writes_no_move(self, storage: Any) -> None:
        store = storage.enrollments
        first, second = self._heads(storage, "enr-1", "enr-2")
        earlier = _visit("enr-1", explanation="stored first by another writer")
        storage.scheduled.schedule(earlier)
        before = store.get("enr-1")
        found = store.move_to_visits(
            [(_moved(first), _records(first), _visit("enr-1")),
             (_moved(second), _records(second), _visit("enr-2"))]
        )  # fmt: skip
        assert found[0] == (None, False)
        assert found[1][0] is not None and found[1][1]
        assert store.get("enr-1") == before  # not moved, no records appended
        assert storage.scheduled.get(earlier.action_id) == earlier  # left as it was
        assert store.get("enr-2").visit == 2

    def test_an_id_held_by_another_key_writes_no_move(self, storage: Any) -> None:
        store = storage.enrollments
        [head] = self._heads(storage, "enr-1")
        other = _visit("enr-1", idempotency_key="another-key")
        storage.scheduled.schedule(other)
        found = store.move_to_visits([(_moved(head), _records(head), _visit("enr-1"))])
        assert found == [(None, False)]
        assert store.get("enr-1").visit == 1
        assert self._actions(storage) == {other.action_id: other}

    def test_a_stale_move_leaves_its_visit_stored(self, storage: Any) -> None:
        store = storage.enrollments
        first, second = self._heads(storage, "enr-1", "enr-2")
        stale = _moved(first, revision=first.revision + 5)
        found = store.move_to_visits(
            [(stale, _records(first), _visit("enr-1")),
             (_moved(second), _records(second), _visit("enr-2"))]
        )  # fmt: skip
        assert found[0] == (None, True)
        assert store.get("enr-1").visit == 1 and len(store.get("enr-1").history) == 1
        assert set(self._actions(storage)) == {"sa-enr-1-2", "sa-enr-2-2"}
        assert store.get("enr-2").revision == second.revision + 1

    def test_an_ended_enrollment_is_not_moved(self, storage: Any) -> None:
        store = storage.enrollments
        [head] = self._heads(storage, "enr-1")
        whole = store.get("enr-1")
        store.update(whole._evolve(state=EnrollmentState.ENDED, ended_at=at(hours=1)))
        found = store.move_to_visits([(_moved(head), _records(head), _visit("enr-1"))])
        assert found == [(None, True)]
        assert store.get("enr-1").state is EnrollmentState.ENDED

    def test_a_move_without_a_visit_is_written(self, storage: Any) -> None:
        store = storage.enrollments
        [head] = self._heads(storage, "enr-1")
        done = _moved(head, state=EnrollmentState.COMPLETED, step_id=None, ended_at=at(hours=1))
        [(stored, went_in)] = store.move_to_visits([(done, _records(head, 1), None)])
        assert went_in and stored is not None and stored.state is EnrollmentState.COMPLETED
        assert store.get("enr-1").state is EnrollmentState.COMPLETED
        assert self._actions(storage) == {}

    def test_the_newest_200_records_are_kept(self, storage: Any) -> None:
        store = storage.enrollments
        [head] = self._heads(storage, "enr-1", records=199)
        records = _records(head, 3)
        store.move_to_visits([(_moved(head), records, _visit("enr-1"))])
        history = store.get("enr-1").history
        assert len(history) == 200
        assert history[-3:] == records and history[0].why == "earlier 2"

    @pytest.mark.parametrize(
        "visit",
        [
            _visit("enr-2"),  # another enrollment's
            _visit(
                "enr-1",
                kind="rule",
                rule_id="rule-1",
                enrollment_id=None,
                step_id=None,
                action={"action_type": "send_notification", "template": "welcome"},
            ),
            "a visit",
        ],
    )
    def test_a_visit_that_is_not_the_moves_is_refused(self, storage: Any, visit: Any) -> None:
        store = storage.enrollments
        first, second = self._heads(storage, "enr-1", "enr-3")
        before = [store.get("enr-1"), store.get("enr-3")]
        with pytest.raises(InvalidInputError):
            store.move_to_visits(
                [(_moved(second), _records(second), _visit("enr-3")),
                 (_moved(first), _records(first), visit)]
            )  # fmt: skip
        assert [store.get("enr-1"), store.get("enr-3")] == before  # nothing written
        assert self._actions(storage) == {}

    def test_a_visit_given_twice_is_refused(self, storage: Any) -> None:
        store = storage.enrollments
        first, second = self._heads(storage, "enr-1", "enr-2")
        twice = _visit("enr-2", idempotency_key="seq:enr-1:2", action_id="sa-enr-1-2")
        with pytest.raises(InvalidInputError):
            store.move_to_visits(
                [(_moved(first), _records(first), _visit("enr-1")),
                 (_moved(second), _records(second), twice)]
            )  # fmt: skip
        assert self._actions(storage) == {}
        assert store.get("enr-1").visit == 1

    def test_what_it_stores_is_what_the_two_calls_store(self, storage: Any) -> None:
        """The same batch through ``schedule`` then ``move_many`` on other enrollments: the
        same answers, the same enrollments (but their ids), each visit stored as given."""
        store = storage.enrollments
        ones = self._heads(storage, "enr-a1", "enr-a2", "enr-a3")
        twos = self._heads(storage, "enr-b1", "enr-b2", "enr-b3")

        def batch(heads: list[EnrollmentHead]) -> list[Any]:
            return [
                (_moved(heads[0]), _records(heads[0]), _visit(heads[0].enrollment_id)),
                (_moved(heads[1], revision=9), _records(heads[1]),
                 _visit(heads[1].enrollment_id)),
                (_moved(heads[2], state=EnrollmentState.COMPLETED, step_id=None,
                        ended_at=at(hours=2)), _records(heads[2], 3), None),
            ]  # fmt: skip

        one_moves, two_moves = batch(ones), batch(twos)
        together = store.move_to_visits(one_moves)
        for _, _, visit in two_moves:
            if visit is not None:
                storage.scheduled.schedule(visit)
        apart = store.move_many([(head, records) for head, records, _ in two_moves])
        assert [head is None for head, _ in together] == [head is None for head in apart]
        assert [stored for _, stored in together] == [True, True, True]
        ids = {"enrollment_id", "opportunity_id"}
        for (head, _), other in zip(together, apart, strict=True):
            assert (head is None) or head.model_dump(exclude=ids) == other.model_dump(exclude=ids)
        for one, two in zip(ones, twos, strict=True):
            whole, other = store.get(one.enrollment_id), store.get(two.enrollment_id)
            assert whole.model_dump(exclude=ids) == other.model_dump(exclude=ids)
        for _, _, visit in [*one_moves, *two_moves]:
            if visit is not None:
                assert storage.scheduled.get(visit.action_id) == visit
        assert len(self._actions(storage)) == 4
