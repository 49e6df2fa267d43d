"""The contract of :class:`~leadflow.ports.sequences.EnrollmentSendMarks`: the "send begun" mark
by compare-and-set, the flag, the change time and the revision written and nothing else."""

from __future__ import annotations

import abc
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ...errors import InvalidInputError, StaleWriteError
from ...ports.sequences import MAX_BATCH, EnrollmentSendMarks
from ...sequences import Enrollment, EnrollmentState
from .data import assert_utc, at, enroll_many, race

__all__ = ["EnrollmentSendMarksContract"]


class EnrollmentSendMarksContract(abc.ABC):
    """Every test an enrollment store with :class:`~leadflow.ports.sequences.
    EnrollmentSendMarks` must pass (besides :class:`EnrollmentStoreContract`).

    Subclass it (as ``Test...``) and implement :meth:`make_store`.
    """

    @abc.abstractmethod
    def make_store(self) -> Any:
        """A new, empty enrollment store that has ``mark_sending``."""

    @pytest.fixture
    def store(self) -> Any:
        return self.make_store()

    @staticmethod
    def _full(store: Any, enrollment: Enrollment) -> Enrollment:
        """``enrollment`` given a context, split decisions and a long history."""
        history = [
            {"visit": n, "step_id": f"step-{n % 7}", "kind": "wait", "at": at(minutes=n),
             "outcome": "waited", "why": "x" * 50}
            for n in range(150)
        ]  # fmt: skip
        return store.update(  # type: ignore[no-any-return]
            enrollment.model_copy(
                update={
                    "history": history,
                    "visit": 150,
                    "step_id": "send",
                    "context": {"entry": {"a": [1, {"b": at(hours=1)}]}},
                    "variants": {"split": "B"},
                    "updated_at": at(hours=1),
                }
            )
        )

    def test_has_the_method(self, store: Any) -> None:
        assert isinstance(store, EnrollmentSendMarks)

    def test_marks_the_flag_alone_and_says_which(self, store: Any) -> None:
        e0, e1, e2 = enroll_many(store, 3)
        full = self._full(store, e0)
        moved = store.update(e1.model_copy(update={"visit": 3}))  # e1 read before: stale
        when = at(hours=2)
        assert store.mark_sending([("e0", full.revision), ("e1", 1), ("ghost", 1)], at=when) == [
            True,
            False,
            False,
        ]
        marked = store.get("e0")
        assert marked == full.model_copy(
            update={"sending": True, "updated_at": when, "revision": full.revision + 1}
        )
        assert_utc(marked.updated_at)
        assert store.get("e1") == moved
        assert store.get("e2") == e2
        assert store.mark_sending([("e1", moved.revision)], at=when) == [True]
        assert (store.get("e1").sending, store.get("e1").revision) == (True, moved.revision + 1)
        assert store.mark_sending([], at=when) == []

    def test_a_mark_is_a_compare_and_set_with_update(self, store: Any) -> None:
        (e0,) = enroll_many(store, 1)
        assert store.mark_sending([("e0", 1)], at=at(hours=1)) == [True]
        with pytest.raises(StaleWriteError):  # read before the mark
            store.update(e0.model_copy(update={"visit": 2}))
        again = store.get("e0")
        moved = store.update(again.model_copy(update={"visit": 2, "sending": False}))
        assert (moved.revision, moved.sending) == (3, False)
        assert store.mark_sending([("e0", 2)], at=at(hours=2)) == [False]  # stale
        assert store.get("e0") == moved

    def test_an_ended_enrollment_is_not_marked(self, store: Any) -> None:
        (e0,) = enroll_many(store, 1)
        ended = store.update(
            e0.model_copy(update={"state": EnrollmentState.GOAL_REACHED, "ended_at": at(hours=1)})
        )
        assert store.mark_sending([("e0", ended.revision)], at=at(hours=2)) == [False]
        assert store.get("e0") == ended

    def test_bad_input_is_refused_and_nothing_written(self, store: Any) -> None:
        (e0,) = enroll_many(store, 1)
        good = ("e0", 1)
        bad_marks: list[Any] = [
            "e0",
            None,
            [good, ("e0",)],
            [good, "e0"],
            [("e1", 0)],
            [("e1", "1")],
            [("e1", True)],
            [("", 1)],
            [("e1", None)],
            [("e1", 2**63 - 1)],
            [good, good],
            [good] + [(f"x{n}", 1) for n in range(MAX_BATCH)],
        ]
        for marks in bad_marks:
            with pytest.raises(InvalidInputError) as raised:
                store.mark_sending(marks, at=at(hours=1))
            assert raised.value.field == "marks", marks
        for when in (datetime(2026, 1, 5, 9), "2026-01-05T09:00:00+00:00", None):
            with pytest.raises(InvalidInputError) as raised:
                store.mark_sending([good], at=when)
            assert raised.value.field == "at", when
        assert store.get("e0") == e0
        # Another zone is the same instant.
        paris = at(hours=1).astimezone(timezone(timedelta(hours=1)))
        assert store.mark_sending([good], at=paris) == [True]
        assert store.get("e0").updated_at == at(hours=1)

    def test_concurrent_marks_one_wins_per_enrollment(self, store: Any) -> None:
        enrolled = enroll_many(store, 4)
        threads = 6

        def mark(n: int) -> list[tuple[str, bool]]:
            order = enrolled[n % 4 :] + enrolled[: n % 4]  # each call in another order
            marks = [(e.enrollment_id, e.revision) for e in order]
            written = store.mark_sending(marks, at=at(hours=n))
            return list(zip([e.enrollment_id for e in order], written, strict=True))

        results = race(threads, mark)
        assert all(isinstance(r, list) for r in results), results
        for enrollment in enrolled:
            won = [
                n
                for n, result in enumerate(results)
                for enrollment_id, written in result  # type: ignore[union-attr]
                if written and enrollment_id == enrollment.enrollment_id
            ]
            assert len(won) == 1, (enrollment.enrollment_id, results)
            stored = store.get(enrollment.enrollment_id)
            assert (stored.sending, stored.revision, stored.updated_at) == (
                True,
                2,
                at(hours=won[0]),
            )
