"""The contract of :class:`~leadflow.ports.storage.UnitOfWork`: ``storage.unit_of_work()``
groups the store calls of a block into one atomic step when the backend says it can
(``atomic``), and groups nothing, honestly, when it says it cannot."""

from __future__ import annotations

import abc

import pytest

from ...errors import DuplicateError, NotFoundError, OpenActivityExistsError
from ...ports import Storage, UnitOfWork
from ...records import ScheduledActionState
from .data import BASE_TIME, make_activity, make_scheduled_action

__all__ = ["UnitOfWorkContract"]


class _Boom(Exception):
    pass


class UnitOfWorkContract(abc.ABC):
    """Every test a storage's unit of work must pass. Subclass it (as ``Test...``) and
    implement :meth:`make_storage`."""

    @abc.abstractmethod
    def make_storage(self) -> Storage:
        """A new storage whose stores are empty."""

    @pytest.fixture
    def storage(self) -> Storage:
        return self.make_storage()

    def test_is_a_unit_of_work(self, storage: Storage) -> None:
        units = storage.unit_of_work
        assert isinstance(units, UnitOfWork)
        assert isinstance(units.atomic, bool)
        assert units.active is False

    def test_active_inside_an_atomic_block_only(self, storage: Storage) -> None:
        units = storage.unit_of_work
        with units():
            assert units.active is units.atomic
            with units():  # a block inside another joins it
                assert units.active is units.atomic
            assert units.active is units.atomic
        assert units.active is False

    def test_reads_inside_see_the_writes_and_the_end_commits_them(self, storage: Storage) -> None:
        activity = make_activity("a1")
        action = make_scheduled_action("k1")
        with storage.unit_of_work():
            storage.activities.add(activity)
            storage.scheduled.schedule(action)
            assert storage.activities.get("a1").subject == activity.subject
            assert storage.scheduled.get(action.action_id).idempotency_key == "k1"
            assert [a.activity_id for a in storage.activities.for_opportunity("opp-1")] == ["a1"]
            assert storage.scheduled.schedule(action)[1] is False  # the key is taken already
        assert storage.activities.get("a1").activity_id == "a1"
        assert storage.scheduled.get(action.action_id).state is ScheduledActionState.PENDING

    def test_a_failure_keeps_all_or_nothing_as_atomic_says(self, storage: Storage) -> None:
        units = storage.unit_of_work
        action = make_scheduled_action("k1", due_at=BASE_TIME)
        with pytest.raises(_Boom), units():
            storage.activities.add(make_activity("a1"))
            storage.scheduled.schedule(action)
            assert storage.scheduled.claim_due(BASE_TIME, worker="w1")
            storage.counters.next("c")
            raise _Boom
        if units.atomic:  # every write of the block is gone
            with pytest.raises(NotFoundError):
                storage.activities.get("a1")
            with pytest.raises(NotFoundError):
                storage.scheduled.get(action.action_id)
            assert storage.counters.next("c") == 1
        else:  # each call was its own step: what ran before the failure stays
            assert storage.activities.get("a1").activity_id == "a1"
            assert storage.scheduled.get(action.action_id).state is ScheduledActionState.CLAIMED
            assert storage.counters.next("c") == 2

    def test_a_failure_after_an_inner_block_undoes_it_too(self, storage: Storage) -> None:
        units = storage.unit_of_work
        with pytest.raises(_Boom), units():
            with units():
                storage.activities.add(make_activity("a1"))
            raise _Boom
        if units.atomic:
            with pytest.raises(NotFoundError):
                storage.activities.get("a1")
        else:
            assert storage.activities.get("a1").activity_id == "a1"

    def test_a_refused_write_inside_leaves_the_block_usable(self, storage: Storage) -> None:
        """A store's refusal (a duplicate id, a held open key) writes nothing and the block
        goes on: the writes before and after it are committed together."""
        with storage.unit_of_work():
            storage.activities.add(make_activity("a1", open_key="k"))
            with pytest.raises(DuplicateError):
                storage.activities.add(make_activity("a1"))
            with pytest.raises(OpenActivityExistsError):
                storage.activities.add(make_activity("a2", open_key="k"))
            storage.activities.add(make_activity("a3"))
        found = storage.activities.for_opportunity("opp-1")
        assert sorted(a.activity_id for a in found) == ["a1", "a3"]

    def test_the_unit_is_reusable_after_a_failure(self, storage: Storage) -> None:
        with pytest.raises(_Boom), storage.unit_of_work():
            raise _Boom
        with storage.unit_of_work():
            storage.activities.add(make_activity("a1"))
        assert storage.activities.get("a1").activity_id == "a1"
