"""The contract of :class:`~leadflow.ports.sequences.EnrollmentBatches`: many enrollments read
and compare-and-set per call, each as :meth:`~leadflow.ports.EnrollmentStore.get` and
:meth:`~leadflow.ports.EnrollmentStore.update` would, saying which writes failed."""

from __future__ import annotations

import abc
from typing import Any

import pytest

from ...errors import InvalidInputError
from ...ports.sequences import MAX_BATCH, EnrollmentBatches
from ...sequences import Enrollment, EnrollmentState
from .data import at, enroll_many, make_enrollment, race

__all__ = ["EnrollmentBatchesContract"]


class EnrollmentBatchesContract(abc.ABC):
    """Every test an enrollment store with :class:`~leadflow.ports.sequences.
    EnrollmentBatches` must pass (besides :class:`EnrollmentStoreContract`).

    Subclass it (as ``Test...``) and implement :meth:`make_store`.
    """

    @abc.abstractmethod
    def make_store(self) -> Any:
        """A new, empty enrollment store that has the batch methods."""

    @pytest.fixture
    def store(self) -> Any:
        return self.make_store()

    def test_has_the_batch_methods(self, store: Any) -> None:
        assert isinstance(store, EnrollmentBatches)

    def test_get_many_by_id_unknown_left_out(self, store: Any) -> None:
        e0, e1, e2 = enroll_many(store, 3)
        found = store.get_many(["e2", "ghost", "e0", "e2"])
        assert found == {"e2": e2, "e0": e0}
        assert store.get_many([]) == {}
        assert store.get_many(("e1",)) == {"e1": e1}
        found["e0"].context["x"] = 1  # a copy
        assert store.get("e0") == e0

    def test_update_many_says_which_failed(self, store: Any) -> None:
        e0, e1, e2, e3 = enroll_many(store, 4)
        store.update(e1.model_copy(update={"visit": 5}))  # e1 read before this: stale
        ended = store.update(
            e3.model_copy(update={"state": EnrollmentState.UNENROLLED, "ended_at": at(hours=1)})
        )
        result = store.update_many(
            [
                e2.model_copy(update={"visit": 2, "sending": True, "updated_at": at(hours=2)}),
                e1.model_copy(update={"visit": 9}),
                make_enrollment("ghost", opportunity_id="opp-9"),
                ended.model_copy(update={"state": EnrollmentState.ACTIVE}),
                e0.model_copy(update={"opportunity_id": "opp-7"}),
            ]
        )
        assert len(result) == 5
        assert result[1:] == [None, None, None, None]
        assert result[0] == e2.model_copy(
            update={"visit": 2, "sending": True, "updated_at": at(hours=2), "revision": 2}
        )
        assert store.get("e2") == result[0]
        assert (store.get("e1").visit, store.get("e1").revision) == (5, 2)
        assert store.get("e3") == ended
        assert store.get("e0") == e0
        assert store.update_many([]) == []

    def test_update_many_all_written_and_ended_ones_free_their_pair(self, store: Any) -> None:
        enrolled = enroll_many(store, 3)
        changed = [
            enrolled[0].model_copy(update={"visit": 1, "step_id": "a"}),
            enrolled[1].model_copy(
                update={"state": EnrollmentState.COMPLETED, "ended_at": at(hours=1)}
            ),
            enrolled[2].model_copy(update={"visit": 3, "sending": True}),
        ]
        result = store.update_many(changed)
        assert result == [e.model_copy(update={"revision": 2}) for e in changed]
        assert [store.get(f"e{n}") for n in range(3)] == result
        again, created = store.enroll(make_enrollment("e1-again", opportunity_id="opp-1"))
        assert created and again.enrollment_id == "e1-again"
        # What was returned is a copy.
        assert result[0] is not None
        result[0].context["x"] = 1
        assert "x" not in store.get("e0").context

    def test_bad_input_is_refused_and_nothing_written(self, store: Any) -> None:
        (e0,) = enroll_many(store, 1)
        good = e0.model_copy(update={"visit": 4})
        bad_calls: list[tuple[Any, str]] = [
            ("e0", "enrollments"),
            (None, "enrollments"),
            ([good, {"enrollmentId": "e0"}], "enrollment"),
            ([good, good.model_copy(update={"visit": 5})], "enrollments"),
            ([good] * 2, "enrollments"),
        ]
        for call, field in bad_calls:
            with pytest.raises(InvalidInputError) as raised:
                store.update_many(call)
            assert raised.value.field == field, call
        with pytest.raises(InvalidInputError) as raised:
            store.update_many([good] + [make_enrollment(f"x{n}") for n in range(MAX_BATCH)])
        assert raised.value.field == "enrollments"
        assert store.get("e0") == e0
        for ids in ("e0", None, ["e0", ""], ["e0", 3], [f"x{n}" for n in range(MAX_BATCH + 1)]):
            with pytest.raises(InvalidInputError) as raised:
                store.get_many(ids)
            assert raised.value.field == "enrollment_ids", ids

    def test_concurrent_batches_one_wins_per_enrollment(self, store: Any) -> None:
        enrolled = enroll_many(store, 4)
        threads = 6

        def write(n: int) -> list[Enrollment | None]:
            order = enrolled[n % 4 :] + enrolled[: n % 4]  # each call in another order
            return list(store.update_many([e.model_copy(update={"visit": n}) for e in order]))

        results = race(threads, write)
        assert all(isinstance(r, list) for r in results), results
        for enrollment in enrolled:
            won = [
                n
                for n, result in enumerate(results)
                for e in result  # type: ignore[union-attr]
                if e is not None and e.enrollment_id == enrollment.enrollment_id
            ]
            assert len(won) == 1, (enrollment.enrollment_id, results)
            stored = store.get(enrollment.enrollment_id)
            assert (stored.visit, stored.revision) == (won[0], 2)
