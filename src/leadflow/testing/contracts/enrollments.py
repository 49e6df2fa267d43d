"""The enrollment store's contract: one active enrollment per sequence and opportunity,
idempotent entry, compare-and-set updates, the ended states for good, listing."""

from __future__ import annotations

import abc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ...errors import (
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    StaleWriteError,
)
from ...ports import EnrollmentStore
from ...sequences import Enrollment, EnrollmentState
from .data import BASE_TIME, TextSubclass, assert_utc, at, make_enrollment, race

__all__ = ["EnrollmentStoreContract"]

_PLUS_2 = timezone(timedelta(hours=2))


def _rich_enrollment(enrollment_id: str, **fields: Any) -> Enrollment:
    """An enrollment with every optional part."""
    history = [
        {
            "visit": n,
            "step_id": "welcome" if n % 2 else "pause",
            "kind": "action" if n % 2 else "wait",
            "at": at(minutes=n),
            "outcome": "sent" if n % 2 else "waited",
            "why": f"visit {n}",
            "version": 1 + n % 2,
        }
        for n in range(1, 4)
    ]
    data: dict[str, Any] = {
        "sequence_version": 2,
        "visit": 3,
        "step_id": "reply",
        "sending": True,
        "waiting_for": "email.replied",
        "variants": {"ab": "B", "other": "A"},
        "context": {
            "entry": {"leadSource": "website", "tags": ["a", "b"], "score": 12.5},
            "event": {"nested": {"deep": [1, {"x": None}]}, "when": at(hours=2)},
        },
        "history": history,
        "entry_event_id": "evt-1",
        "enrolled_by": "rep@example.com",
        "goal": None,
        "enrolled_at": datetime(2026, 1, 5, 11, tzinfo=_PLUS_2),
        "updated_at": at(hours=3),
    }
    data.update(fields)
    return make_enrollment(enrollment_id, **data)


class EnrollmentStoreContract(abc.ABC):
    """Every test an :class:`~leadflow.ports.EnrollmentStore` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_store`.
    """

    @abc.abstractmethod
    def make_store(self) -> EnrollmentStore:
        """A new, empty store."""

    @pytest.fixture
    def store(self) -> EnrollmentStore:
        return self.make_store()

    def test_is_an_enrollment_store(self, store: EnrollmentStore) -> None:
        assert isinstance(store, EnrollmentStore)

    def test_enroll_then_get_returns_every_field(self, store: EnrollmentStore) -> None:
        enrollment = _rich_enrollment("e1")
        stored, created = store.enroll(enrollment)
        assert created is True
        assert stored == enrollment
        got = store.get("e1")
        assert got == enrollment
        assert got.model_dump() == enrollment.model_dump()
        assert got.enrolled_at == at(hours=0)
        for value in (got.enrolled_at, got.updated_at, *(r.at for r in got.history)):
            assert_utc(value)
        assert got.context["event"]["when"] == at(hours=2)
        assert_utc(got.context["event"]["when"])
        plain, _ = store.enroll(make_enrollment("e2", opportunity_id="opp-2"))
        assert plain == make_enrollment("e2", opportunity_id="opp-2")
        assert store.get("e2") == plain
        assert (plain.step_id, plain.updated_at, plain.ended_at, plain.history) == (
            None,
            None,
            None,
            [],
        )

    def test_enroll_stores_revision_1(self, store: EnrollmentStore) -> None:
        stored, _ = store.enroll(make_enrollment("e1", revision=7))
        assert stored.revision == 1
        assert store.get("e1").revision == 1

    def test_enroll_refuses_an_ended_enrollment(self, store: EnrollmentStore) -> None:
        for state in (s for s in EnrollmentState if s is not EnrollmentState.ACTIVE):
            with pytest.raises(InvalidInputError):
                store.enroll(make_enrollment("e1", state=state, ended_at=at(hours=1)))
        with pytest.raises(NotFoundError):
            store.get("e1")
        assert store.list() == []
        assert store.enroll(make_enrollment("e1"))[1] is True  # the pair was not taken

    def test_enroll_is_idempotent_on_the_id(self, store: EnrollmentStore) -> None:
        first, _ = store.enroll(make_enrollment("e1"))
        again, created = store.enroll(
            make_enrollment("e1", sequence_id="seq-2", opportunity_id="opp-9", visit=4)
        )
        assert created is False
        assert again == first
        assert store.list() == [first]
        assert store.active_for("opp-9") == []

    def test_one_active_enrollment_per_sequence_and_opportunity(
        self, store: EnrollmentStore
    ) -> None:
        first, _ = store.enroll(make_enrollment("e1"))
        again, created = store.enroll(make_enrollment("e2", enrolled_at=at(hours=1)))
        assert (again, created) == (first, False)
        newer, created = store.enroll(make_enrollment("e3", sequence_version=2))
        assert (newer, created) == (first, False)  # any version of the sequence
        for enrollment_id in ("e2", "e3"):
            with pytest.raises(NotFoundError):
                store.get(enrollment_id)
        other_sequence, created = store.enroll(make_enrollment("e4", sequence_id="seq-2"))
        assert created is True
        other_opportunity, created = store.enroll(make_enrollment("e5", opportunity_id="opp-2"))
        assert created is True
        assert [e.enrollment_id for e in store.list()] == ["e1", "e4", "e5"]
        assert store.active_for("opp-1") == [first, other_sequence]
        assert store.active_for("opp-2") == [other_opportunity]

    def test_after_the_active_one_ends_a_new_one_is_created(self, store: EnrollmentStore) -> None:
        first, _ = store.enroll(make_enrollment("e1"))
        ended = store.update(
            first.model_copy(
                update={
                    "state": EnrollmentState.COMPLETED,
                    "ended_at": at(hours=1),
                    "end_reason": "exit:done",
                }
            )
        )
        second, created = store.enroll(make_enrollment("e2", enrolled_at=at(hours=2)))
        assert created is True and second.enrollment_id == "e2"
        assert store.active_for("opp-1") == [second]
        again, created = store.enroll(make_enrollment("e3", enrolled_at=at(hours=3)))
        assert (again, created) == (second, False)
        store.update(second.model_copy(update={"state": EnrollmentState.UNENROLLED}))
        third, created = store.enroll(make_enrollment("e3", enrolled_at=at(hours=3)))
        assert created is True
        assert [e.enrollment_id for e in store.list(sequence_id="seq-1")] == ["e1", "e2", "e3"]
        assert store.get("e1") == ended
        assert store.active_for("opp-1") == [third]
        # An ended enrollment's id still names it: enrolling it again creates nothing.
        assert store.enroll(make_enrollment("e1", enrolled_at=at(hours=4))) == (ended, False)

    def test_concurrent_entries_store_one(self, store: EnrollmentStore) -> None:
        threads = 8

        def enter(n: int) -> tuple[Enrollment, bool]:
            return store.enroll(make_enrollment(f"e{n}", enrolled_at=at(minutes=n)))

        results = race(threads, enter)
        pairs = [r for r in results if isinstance(r, tuple)]
        assert len(pairs) == threads, results
        created = [e for e, fresh in pairs if fresh]
        assert len(created) == 1, results
        assert {e.enrollment_id for e, _ in pairs} == {created[0].enrollment_id}
        assert store.list() == created
        assert store.active_for("opp-1") == created

    def test_concurrent_entries_of_one_id_store_one(self, store: EnrollmentStore) -> None:
        results = race(8, lambda n: store.enroll(make_enrollment("e1", visit=n)))
        pairs = [r for r in results if isinstance(r, tuple)]
        assert len(pairs) == 8, results
        assert sum(fresh for _, fresh in pairs) == 1
        assert len({e.visit for e, _ in pairs}) == 1
        assert len(store.list()) == 1

    def test_update_is_compare_and_set_on_the_revision(self, store: EnrollmentStore) -> None:
        first, _ = store.enroll(make_enrollment("e1"))
        moved = first.model_copy(
            update={"visit": 1, "step_id": "welcome", "sending": True, "updated_at": at(hours=1)}
        )
        second = store.update(moved)
        assert second == moved.model_copy(update={"revision": 2})
        assert store.get("e1") == second
        with pytest.raises(StaleWriteError):
            store.update(moved.model_copy(update={"visit": 9}))  # revision 1 again
        with pytest.raises(StaleWriteError):
            store.update(second.model_copy(update={"revision": 5}))  # a revision from nowhere
        assert store.get("e1") == second
        third = store.update(second.model_copy(update={"visit": 2, "sequence_version": 3}))
        assert (third.revision, third.visit, third.sequence_version) == (3, 2, 3)
        assert store.get("e1") == third

    def test_concurrent_updaters_one_wins_per_revision(self, store: EnrollmentStore) -> None:
        first, _ = store.enroll(make_enrollment("e1"))
        threads = 8
        for round_ in range(3):
            current = store.get("e1")

            def write(n: int, current: Enrollment = current, base: int = 10 * round_) -> Enrollment:
                return store.update(current.model_copy(update={"visit": base + n}))

            results = race(threads, write)
            won = [r for r in results if isinstance(r, Enrollment)]
            lost = [r for r in results if not isinstance(r, Enrollment)]
            assert len(won) == 1, results
            assert all(isinstance(r, StaleWriteError) for r in lost), lost
            assert won[0].revision == current.revision + 1
            assert store.get("e1") == won[0]
        assert store.get("e1").revision == first.revision + 3

    def test_update_unknown_raises_not_found(self, store: EnrollmentStore) -> None:
        with pytest.raises(NotFoundError):
            store.update(make_enrollment("ghost"))
        with pytest.raises(NotFoundError):
            store.get("ghost")

    def test_an_ended_enrollment_stays_ended(self, store: EnrollmentStore) -> None:
        first, _ = store.enroll(make_enrollment("e1"))
        ended = store.update(
            first.model_copy(
                update={
                    "state": EnrollmentState.GOAL_REACHED,
                    "goal": "decided",
                    "ended_at": at(hours=1),
                }
            )
        )
        with pytest.raises(InvalidStateError):
            store.update(ended.model_copy(update={"state": EnrollmentState.ACTIVE}))
        assert store.get("e1") == ended
        # Other changes to an ended one (a note in its history, another ended state) are fine.
        record = {
            "visit": 1,
            "step_id": "welcome",
            "kind": "goal",
            "at": at(hours=1),
            "outcome": "goal_reached",
        }
        noted = store.update(ended.model_copy(update={"history": [record]}))
        assert noted.revision == 3 and len(noted.history) == 1
        assert store.active_for("opp-1") == []

    def test_update_refuses_another_sequence_or_opportunity(self, store: EnrollmentStore) -> None:
        first, _ = store.enroll(make_enrollment("e1"))
        for change in ({"sequence_id": "seq-2"}, {"opportunity_id": "opp-2"}):
            with pytest.raises(InvalidStateError):
                store.update(first.model_copy(update=change))
        assert store.get("e1") == first
        assert store.active_for("opp-2") == []
        assert store.list(sequence_id="seq-2") == []

    def test_every_state_round_trips(self, store: EnrollmentStore) -> None:
        for n, state in enumerate(EnrollmentState):
            enrollment, _ = store.enroll(_rich_enrollment(f"e{n}", opportunity_id=f"opp-{n}"))
            if state is EnrollmentState.ACTIVE:
                continue
            ended = enrollment.model_copy(
                update={
                    "state": state,
                    "ended_at": datetime(2026, 1, 6, 11, tzinfo=_PLUS_2),
                    "end_reason": f"because {state.value}",
                    "sending": False,
                    "waiting_for": None,
                }
            )
            stored = store.update(ended)
            assert stored == ended.model_copy(update={"revision": 2})
            assert store.get(f"e{n}") == stored
            assert stored.ended_at == at(days=1)
            assert_utc(store.get(f"e{n}").ended_at)
            assert store.list(state=state) == [stored]

    def test_active_for_lists_active_ones_oldest_first(self, store: EnrollmentStore) -> None:
        assert store.active_for("opp-1") == []
        store.enroll(make_enrollment("z", sequence_id="s-a", enrolled_at=at(hours=1)))
        store.enroll(make_enrollment("b", sequence_id="s-b", enrolled_at=at(hours=2)))
        store.enroll(make_enrollment("a", sequence_id="s-c", enrolled_at=at(hours=2)))
        store.enroll(make_enrollment("m", sequence_id="s-d", enrolled_at=at()))
        store.enroll(make_enrollment("x", sequence_id="s-a", opportunity_id="opp-2"))
        done, _ = store.enroll(make_enrollment("d", sequence_id="s-e", enrolled_at=at()))
        store.update(done.model_copy(update={"state": EnrollmentState.ENDED}))
        assert [e.enrollment_id for e in store.active_for("opp-1")] == ["m", "z", "a", "b"]
        assert [e.enrollment_id for e in store.active_for("opp-2")] == ["x"]
        assert store.active_for("opp-3") == []

    def test_list_filters_order_and_limit(self, store: EnrollmentStore) -> None:
        rows = [
            ("e5", "s1", "o1", 5),
            ("e1", "s1", "o2", 1),
            ("e3", "s2", "o1", 3),
            ("e2", "s2", "o2", 1),
            ("e4", "s1", "o3", 4),
            ("e0", "s3", "o1", 0),
        ]
        for enrollment_id, sequence_id, opportunity_id, hours in rows:
            store.enroll(
                make_enrollment(
                    enrollment_id,
                    sequence_id=sequence_id,
                    opportunity_id=opportunity_id,
                    enrolled_at=at(hours=hours),
                )
            )
        for enrollment_id in ("e1", "e3"):
            current = store.get(enrollment_id)
            store.update(current.model_copy(update={"state": EnrollmentState.COMPLETED}))

        def listed(**filters: Any) -> list[str]:
            return [e.enrollment_id for e in store.list(**filters)]

        assert listed() == ["e0", "e1", "e2", "e3", "e4", "e5"]
        assert listed(limit=2) == ["e0", "e1"]
        assert listed(limit=10_000) == listed()
        assert listed(sequence_id="s1") == ["e1", "e4", "e5"]
        assert listed(opportunity_id="o1") == ["e0", "e3", "e5"]
        assert listed(state=EnrollmentState.ACTIVE) == ["e0", "e2", "e4", "e5"]
        assert listed(state="completed") == ["e1", "e3"]
        assert listed(state=EnrollmentState.ENDED) == []
        assert listed(sequence_id="s1", opportunity_id="o1") == ["e5"]
        assert listed(sequence_id="s2", state=EnrollmentState.ACTIVE) == ["e2"]
        assert listed(opportunity_id="o1", state=EnrollmentState.COMPLETED, limit=1) == ["e3"]
        assert listed(sequence_id="s1", opportunity_id="o1", state="completed") == []
        assert listed(sequence_id="nope") == []
        # Page by page: ``after`` the last of the previous page (e1 and e2 share a time).
        for filters, every in (({}, listed()), ({"state": "active"}, ["e0", "e2", "e4", "e5"])):
            for size in (1, 2, 4):
                pages: list[str] = []
                page = listed(limit=size, **filters)
                while page:
                    pages += page
                    page = listed(limit=size, after=page[-1], **filters)
                assert pages == every
        assert listed(after="e1") == ["e2", "e3", "e4", "e5"]
        assert listed(after="e2", sequence_id="s1") == ["e4", "e5"]
        assert listed(after="e3", opportunity_id="o1", state="active", limit=1) == ["e5"]
        assert listed(after="e5") == []
        with pytest.raises(NotFoundError):
            store.list(after="no-such-enrollment")

    @pytest.mark.parametrize("limit", [0, -1, 10_001, True, 2.5, "5", None])
    def test_list_limit_is_1_to_10000(self, store: EnrollmentStore, limit: object) -> None:
        store.enroll(make_enrollment("e1"))
        with pytest.raises(InvalidInputError) as refused:
            store.list(limit=limit)  # type: ignore[arg-type]
        assert refused.value.field == "limit"

    def test_arguments_are_checked_and_change_nothing(self, store: EnrollmentStore) -> None:
        first, _ = store.enroll(make_enrollment("e1"))
        bad_ids: list[object] = [7, "", "$where", "has space", {"$ne": None}, ["e1"]]
        calls: list[Callable[[], object]] = [
            lambda: store.enroll({"enrollment_id": "e2"}),  # type: ignore[arg-type]
            lambda: store.enroll(None),  # type: ignore[arg-type]
            lambda: store.update({"enrollment_id": "e1", "revision": 1}),  # type: ignore[arg-type]
            lambda: store.list(state="bogus"),  # type: ignore[arg-type]
            lambda: store.list(state={"$ne": None}),  # type: ignore[arg-type]
            lambda: store.get(None),  # type: ignore[arg-type]
            lambda: store.active_for(None),  # type: ignore[arg-type]
        ]
        for bad in bad_ids:
            calls.append(lambda bad=bad: store.get(bad))  # type: ignore[misc]
            calls.append(lambda bad=bad: store.active_for(bad))  # type: ignore[misc]
            calls.append(lambda bad=bad: store.list(sequence_id=bad))  # type: ignore[misc]
            calls.append(lambda bad=bad: store.list(opportunity_id=bad))  # type: ignore[misc]
            calls.append(lambda bad=bad: store.list(after=bad))  # type: ignore[misc]
        for call in calls:
            with pytest.raises(InvalidInputError):
                call()
        assert store.list() == [first]
        assert store.get("e1") == first

    def test_a_changed_enrollment_is_checked_again(self, store: EnrollmentStore) -> None:
        """Enrollments are immutable values validated when built (as every record); what a
        caller can still change is inside its containers, and that is checked again."""
        first, _ = store.enroll(make_enrollment("e1"))
        broken = make_enrollment("e2", opportunity_id="opp-2")
        broken.context["bad"] = {"$where": "1"}
        with pytest.raises((InvalidInputError, ValueError)):
            store.enroll(broken)
        with pytest.raises(NotFoundError):
            store.get("e2")
        operator = first.model_copy()
        object.__setattr__(operator, "context", {"$where": "1"})
        with pytest.raises((InvalidInputError, ValueError)):
            store.update(operator)
        assert store.get("e1") == first

    def test_str_subclasses_are_their_text(self, store: EnrollmentStore) -> None:
        first, _ = store.enroll(make_enrollment("e1"))
        got = store.get(TextSubclass("e1"))
        assert got == first and type(got.enrollment_id) is str
        assert store.active_for(TextSubclass("opp-1")) == [first]
        assert store.list(
            sequence_id=TextSubclass("seq-1"), opportunity_id=TextSubclass("opp-1")
        ) == [first]

    def test_returned_enrollments_are_copies(self, store: EnrollmentStore) -> None:
        original = _rich_enrollment("e1")
        stored, _ = store.enroll(original)
        expected = original.model_copy(deep=True)
        for got in [stored, store.get("e1"), store.active_for("opp-1")[0], store.list()[0]]:
            got.context["entry"]["tags"].append("changed")
            got.context["new"] = 1
            got.variants["ab"] = "A"
            got.history.clear()
        assert store.get("e1") == expected
        original.context["entry"]["tags"].append("after")
        original.variants.clear()
        original.history.pop()
        assert store.get("e1") == expected
        updated = store.update(expected)
        updated.context.clear()
        updated.history.clear()
        assert store.get("e1") == expected.model_copy(update={"revision": 2})

    def test_a_full_history_round_trips(self, store: EnrollmentStore) -> None:
        history = [
            {
                "visit": n,
                "step_id": f"step-{n % 7}",
                "kind": "wait",
                "at": at(minutes=n),
                "outcome": "waited",
                "why": "x" * 200,
            }
            for n in range(200)
        ]
        first, _ = store.enroll(make_enrollment("e1"))
        full = store.update(first.model_copy(update={"history": history, "visit": 199}))
        assert store.get("e1") == full
        assert len(store.get("e1").history) == 200

    def test_naive_datetimes_are_never_returned(self, store: EnrollmentStore) -> None:
        enrollment = make_enrollment("e1", enrolled_at=datetime(2026, 1, 5, 9, tzinfo=UTC))
        store.enroll(enrollment)
        for got in (store.get("e1"), store.list()[0], store.active_for("opp-1")[0]):
            assert got.enrolled_at == BASE_TIME
            assert_utc(got.enrolled_at)
