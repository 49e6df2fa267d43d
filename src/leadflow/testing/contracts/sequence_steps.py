"""The contract of :class:`~leadflow.ports.sequences.EnrollmentSteps`: enrollments read without
their history, and moved on by compare-and-set with their step records appended (the newest
200 kept)."""

from __future__ import annotations

import abc
from typing import Any

import pytest

from ...errors import InvalidInputError, StaleWriteError
from ...ports.sequences import MAX_BATCH, EnrollmentSteps
from ...sequences import Enrollment, EnrollmentHead, EnrollmentState, StepRecord
from ...sequences.enrollment import HEAD_FIELDS, HISTORY_LIMIT
from .data import at, enroll_many, make_enrollment

__all__ = ["EnrollmentStepsContract"]


def _records(first: int, count: int, why: str = "") -> list[StepRecord]:
    return [
        StepRecord(visit=n, step_id=f"step-{n % 7}", kind="wait", at=at(minutes=n),
                   outcome="waited", why=why or f"record {n}")
        for n in range(first, first + count)
    ]  # fmt: skip


def _head(enrollment: EnrollmentHead, **changes: Any) -> EnrollmentHead:
    """``enrollment``'s head (every field but the history), with ``changes``."""
    fields = {name: getattr(enrollment, name) for name in HEAD_FIELDS}
    return EnrollmentHead.model_validate({**fields, **changes})


class EnrollmentStepsContract(abc.ABC):
    """Every test an enrollment store with :class:`~leadflow.ports.sequences.EnrollmentSteps`
    must pass (besides :class:`EnrollmentStoreContract`).

    Subclass it (as ``Test...``) and implement :meth:`make_store`.
    """

    @abc.abstractmethod
    def make_store(self) -> Any:
        """A new, empty enrollment store that has ``get_heads`` and ``move_many``."""

    @pytest.fixture
    def store(self) -> Any:
        return self.make_store()

    @staticmethod
    def _with_history(store: Any, enrollment: Enrollment, count: int) -> Enrollment:
        """``enrollment`` given ``count`` step records, a context and split decisions."""
        return store.update(  # type: ignore[no-any-return]
            enrollment.model_copy(
                update={
                    "history": _records(0, count),
                    "visit": count,
                    "step_id": "send",
                    "waiting_for": "email.replied",
                    "context": {"entry": {"a": [1, {"b": at(hours=1)}]}},
                    "variants": {"split": "B"},
                    "updated_at": at(hours=1),
                }
            )
        )

    def test_has_the_methods(self, store: Any) -> None:
        assert isinstance(store, EnrollmentSteps)

    def test_heads_leave_the_history_out(self, store: Any) -> None:
        e0, e1 = enroll_many(store, 2)
        full = self._with_history(store, e0, 5)
        heads = store.get_heads(["e0", "ghost", "e1", "e0"])
        assert set(heads) == {"e0", "e1"}
        for enrollment in (full, e1):
            head = heads[enrollment.enrollment_id]
            assert type(head) is EnrollmentHead
            assert not isinstance(head, Enrollment)
            assert not hasattr(head, "history")  # never a history that looks empty
            assert head == _head(enrollment)
        assert heads["e0"].context == {"entry": {"a": [1, {"b": at(hours=1)}]}}
        heads["e0"].context["entry"]["a"].append(2)  # a copy: the store's record is intact
        assert store.get("e0") == full
        assert store.get_heads([]) == {}

    def test_a_move_appends_its_records_and_says_which(self, store: Any) -> None:
        e0, e1, _ = enroll_many(store, 3)
        full = self._with_history(store, e0, 3)
        moved_first = store.update(e1.model_copy(update={"visit": 2}))  # e1 read before: stale
        records = _records(3, 2, why="moved")
        when = at(hours=2)
        head = _head(full, visit=4, step_id="wait", waiting_for=None, sending=False,
                     variants={"split": "B", "other": "A"}, context={"entry": {"n": 1}},
                     updated_at=when)  # fmt: skip
        result = store.move_many(
            [
                (head, records),
                (_head(e1, visit=9), _records(0, 1)),
                (_head(e1, enrollment_id="ghost"), []),
            ]
        )
        assert [type(r) for r in result] == [EnrollmentHead, type(None), type(None)]
        assert result[0] == _head(head, revision=full.revision + 1)
        stored = store.get("e0")
        assert stored.history == full.history + records
        assert _head(stored) == result[0]
        assert stored.waiting_for is None and stored.context == {"entry": {"n": 1}}
        assert store.get("e1") == moved_first
        assert store.get_heads(["e0"])["e0"] == result[0]
        assert store.list(opportunity_id="opp-0")[0] == stored
        assert store.active_for("opp-0") == [stored]
        assert store.get_many(["e0"])["e0"] == stored
        assert store.move_many([]) == []

    def test_a_move_is_a_compare_and_set_with_update(self, store: Any) -> None:
        [e0] = enroll_many(store, 1)
        [moved] = store.move_many([(_head(e0, visit=1), _records(0, 1))])
        with pytest.raises(StaleWriteError):
            store.update(e0.model_copy(update={"visit": 5}))  # read before the move
        assert store.move_many([(_head(e0, visit=7), [])]) == [None]
        updated = store.update(store.get("e0").model_copy(update={"visit": 3}))
        assert updated.history == _records(0, 1) and updated.revision == moved.revision + 1
        assert store.move_many([(moved, _records(1, 1))]) == [None]  # the update came first
        assert store.get("e0") == updated

    def test_a_move_refuses_what_update_refuses(self, store: Any) -> None:
        e0, e1 = enroll_many(store, 2)
        ended = _head(e0, state=EnrollmentState.COMPLETED, step_id=None, ended_at=at(hours=1),
                      end_reason="completed")  # fmt: skip
        [done] = store.move_many([(ended, _records(0, 1))])
        assert done is not None and not done.active
        assert store.get("e0").history == _records(0, 1)
        assert store.move_many([(_head(done, state=EnrollmentState.ACTIVE), [])]) == [None]
        assert store.move_many([(_head(e1, sequence_id="other"), [])]) == [None]
        assert store.move_many([(_head(e1, opportunity_id="opp-9"), [])]) == [None]
        assert store.get("e0").state is EnrollmentState.COMPLETED
        assert store.get("e1") == e1
        # An ended enrollment may be written ended (a note appended).
        [again] = store.move_many([(_head(done, end_reason="noted"), _records(1, 1))])
        assert again is not None and store.get("e0").history == _records(0, 2)

    def test_the_newest_200_records_kept_in_order(self, store: Any) -> None:
        e0, e1 = enroll_many(store, 2)
        full = self._with_history(store, e0, HISTORY_LIMIT)
        current: EnrollmentHead = full
        expected = list(full.history)
        for n in range(3):  # full: each move drops as many of the oldest as it appends
            records = _records(HISTORY_LIMIT + 3 * n, 3, why=f"move {n}")
            [moved] = store.move_many([(_head(current, visit=current.visit + 1), records)])
            assert moved is not None
            current, expected = moved, (expected + records)[-HISTORY_LIMIT:]
            assert store.get("e0").history == expected
        assert len(expected) == HISTORY_LIMIT and expected[-1].why == "move 2"
        assert expected[0].visit == 9  # the 9 oldest dropped
        # An enrollment given whole: its own history is not looked at, the records appended.
        short = self._with_history(store, e1, HISTORY_LIMIT - 2)
        given = short._evolve(history=[], visit=short.visit + 1)
        [moved] = store.move_many([(given, _records(500, 5))])
        assert type(moved) is EnrollmentHead
        history = store.get("e1").history
        assert history == (short.history + _records(500, 5))[-HISTORY_LIMIT:]
        assert len(history) == HISTORY_LIMIT and history[0].visit == 3

    def test_bad_moves_are_refused_and_nothing_is_written(self, store: Any) -> None:
        e0, e1 = enroll_many(store, 2)
        good = (_head(e0, visit=1), _records(0, 1))
        bad: list[Any] = [
            "moves",
            [good, (_head(e1), ["not a record"])],
            [good, (_head(e1), _records(0, HISTORY_LIMIT + 1))],
            [good, (_head(e0, visit=2), [])],
            [good, ({"enrollment_id": "e1"}, [])],
            [good, (_head(e1),)],
            [good, (_head(e1), "records")],
            [(_head(e0), []) for _ in range(MAX_BATCH + 1)],
        ]
        for moves in bad:
            with pytest.raises(InvalidInputError) as caught:
                store.move_many(moves)
            assert caught.value.field == "moves"
        assert store.get("e0") == e0 and store.get("e1") == e1

    def test_bad_ids_are_refused(self, store: Any) -> None:
        enroll_many(store, 1)
        for ids in ("e0", [""], ["e0", 7], ["e0"] * (MAX_BATCH + 1)):
            with pytest.raises(InvalidInputError) as caught:
                store.get_heads(ids)
            assert caught.value.field == "enrollment_ids"

    def test_an_enrollment_entered_with_records_keeps_them(self, store: Any) -> None:
        entered = make_enrollment("e7", history=_records(0, 2), visit=1, step_id="a")
        stored, created = store.enroll(entered)
        assert created and store.get("e7").history == _records(0, 2)
        [moved] = store.move_many([(_head(stored, visit=2), _records(2, 1))])
        assert moved is not None and store.get("e7").history == _records(0, 3)
