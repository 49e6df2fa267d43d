"""The job-store contract: slot leases and claim tokens, finishing a claim, marks, values and
expiry."""

from __future__ import annotations

import abc
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from ...errors import InvalidInputError
from ...ports import JobStore
from ...records import SlotRecord, SlotState
from .data import BASE_TIME, assert_utc, at, race

__all__ = ["JobStoreContract"]

LEASE = timedelta(minutes=5)
KEEP = timedelta(days=1)


def _assert_record_utc(record: SlotRecord) -> None:
    for value in (record.claimed_at, record.lease_until, record.expires_at, record.finished_at):
        assert_utc(value)


class JobStoreContract(abc.ABC):
    """Every test a :class:`~leadflow.ports.JobStore` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_store`. The tests drive time
    themselves (from :data:`BASE_TIME`, in the past): a store that expires records by the wall
    clock (a MongoDB TTL index) must be made without that for the contract.
    """

    @abc.abstractmethod
    def make_store(self) -> JobStore:
        """A new, empty store."""

    @pytest.fixture
    def store(self) -> JobStore:
        return self.make_store()

    def _claim(
        self, store: JobStore, slot: str, worker: str, now: datetime, **options: object
    ) -> tuple[bool, SlotRecord]:
        """Claim ``("job", slot)`` with a five-minute lease kept for a day; (acquired, record)."""
        lease = options.pop("lease", LEASE)
        expires_at = options.pop("expires_at", now + KEEP)
        job = str(options.pop("job", "job"))
        assert isinstance(lease, timedelta) and isinstance(expires_at, datetime)
        result = store.claim_slot(
            job, slot, worker=worker, now=now, lease=lease, expires_at=expires_at
        )
        return result.acquired, result.record

    # ------------------------------------------------------------------ slots

    def test_is_a_job_store(self, store: JobStore) -> None:
        assert isinstance(store, JobStore)

    def test_claiming_an_unknown_slot_creates_a_running_record(self, store: JobStore) -> None:
        assert store.get_slot("job", "s1") is None
        acquired, record = self._claim(store, "s1", "a", at())
        assert acquired
        assert (record.job, record.slot, record.state, record.owner) == (
            "job",
            "s1",
            SlotState.RUNNING,
            "a",
        )
        assert (record.claimed_at, record.lease_until, record.expires_at) == (
            at(),
            at(minutes=5),
            at(days=1),
        )
        assert (record.attempts, record.finished_at, dict(record.counts), record.error) == (
            1,
            None,
            {},
            None,
        )
        assert record.token
        assert store.get_slot("job", "s1") == record

    def test_a_live_lease_holds_the_slot(self, store: JobStore) -> None:
        _, first = self._claim(store, "s1", "a", at())
        for worker in ("b", "a"):  # not even its holder claims it twice
            acquired, record = self._claim(store, "s1", worker, at(minutes=4, hours=0))
            assert not acquired and record == first
        assert store.get_slot("job", "s1") == first
        # Slots are told apart by job and slot.
        assert self._claim(store, "s2", "b", at())[0]
        assert self._claim(store, "s1", "b", at(), job="other")[0]

    def test_an_expired_lease_is_taken_over_with_a_new_token(self, store: JobStore) -> None:
        _, first = self._claim(store, "s1", "a", at())
        acquired, over = self._claim(
            store, "s1", "b", at(minutes=5), lease=timedelta(minutes=10), expires_at=at(days=9)
        )
        assert acquired
        assert (over.owner, over.attempts, over.state) == ("b", 2, SlotState.RUNNING)
        assert (over.claimed_at, over.lease_until) == (at(minutes=5), at(minutes=15))
        assert over.expires_at == first.expires_at  # set on creation only
        assert over.token != first.token
        # Its own expired slot: the same worker gets a new token too.
        acquired, again = self._claim(store, "s1", "b", at(minutes=15))
        assert acquired and again.attempts == 3 and again.token not in (first.token, over.token)
        assert store.get_slot("job", "s1") == again

    def test_finish_records_the_outcome_of_the_current_claim(self, store: JobStore) -> None:
        _, first = self._claim(store, "s1", "a", at())
        _, over = self._claim(store, "s1", "b", at(minutes=5))
        # The crashed first holder's late finish does not land.
        assert not store.finish_slot(
            "job", "s1", token=first.token, now=at(minutes=6), state=SlotState.FAILED, counts={}
        )
        assert store.get_slot("job", "s1") == over
        assert store.finish_slot(
            "job",
            "s1",
            token=over.token,
            now=at(minutes=7),
            state=SlotState.SUCCEEDED,
            counts={"sent": 3, "skipped": 0},
        )
        done = store.get_slot("job", "s1")
        assert done is not None
        assert (done.state, done.finished_at, dict(done.counts), done.error) == (
            SlotState.SUCCEEDED,
            at(minutes=7),
            {"sent": 3, "skipped": 0},
            None,
        )
        assert (done.owner, done.token, done.attempts) == ("b", over.token, 2)
        # Finished is final: no second finish, no claim even after the lease.
        assert not store.finish_slot(
            "job", "s1", token=over.token, now=at(minutes=8), state=SlotState.FAILED, counts={}
        )
        acquired, record = self._claim(store, "s1", "c", at(hours=5))
        assert not acquired and record == done
        assert store.get_slot("job", "s1") == done

    def test_a_failed_slot_keeps_its_error_and_is_not_retried(self, store: JobStore) -> None:
        _, claim = self._claim(store, "s1", "a", at())
        assert store.finish_slot(
            "job",
            "s1",
            token=claim.token,
            now=at(minutes=1),
            state=SlotState.FAILED,
            counts={"partial": 1},
            error="RuntimeError: database on fire",
        )
        failed = store.get_slot("job", "s1")
        assert failed is not None
        assert (failed.state, failed.error, dict(failed.counts)) == (
            SlotState.FAILED,
            "RuntimeError: database on fire",
            {"partial": 1},
        )
        assert not self._claim(store, "s1", "b", at(hours=1))[0]

    def test_finishing_an_unknown_slot_or_token_changes_nothing(self, store: JobStore) -> None:
        assert not store.finish_slot(
            "job", "nope", token="t", now=at(), state=SlotState.SUCCEEDED, counts={}
        )
        assert store.get_slot("job", "nope") is None
        _, claim = self._claim(store, "s1", "a", at())
        assert not store.finish_slot(
            "job", "s1", token="forged", now=at(), state=SlotState.SUCCEEDED, counts={}
        )
        assert store.get_slot("job", "s1") == claim

    def test_concurrent_claims_of_one_slot_have_one_winner(self, store: JobStore) -> None:
        for round_ in range(3):
            slot = f"s{round_}"
            results = race(8, self._claimer(store, slot))
            claims = [r for r in results if not isinstance(r, BaseException)]
            assert len(claims) == 8, results
            winners = [record for acquired, record in claims if acquired]
            assert len(winners) == 1, claims
            assert all(record == winners[0] for _, record in claims)
            assert store.get_slot("job", slot) == winners[0]

    def _claimer(self, store: JobStore, slot: str) -> Callable[[int], tuple[bool, SlotRecord]]:
        return lambda n: self._claim(store, slot, f"w{n}", at())

    def test_returned_times_are_utc(self, store: JobStore) -> None:
        plus2 = timezone(timedelta(hours=2))
        local = datetime(2026, 1, 5, 11, tzinfo=plus2)  # = BASE_TIME
        _, claim = self._claim(store, "s1", "a", local, expires_at=local + KEEP)
        assert claim.claimed_at == BASE_TIME
        store.finish_slot(
            "job", "s1", token=claim.token, now=local, state=SlotState.SUCCEEDED, counts={}
        )
        done = store.get_slot("job", "s1")
        assert done is not None and done.finished_at == BASE_TIME
        for record in (claim, done):
            _assert_record_utc(record)

    # ------------------------------------------------------------------ marks

    def test_a_mark_is_set_once_until_it_expires_or_is_removed(self, store: JobStore) -> None:
        hour = timedelta(hours=1)
        assert not store.is_marked("reminder:a", now=at())
        assert store.mark("reminder:a", now=at(), expires_at=at() + hour)
        assert not store.mark("reminder:a", now=at(minutes=30), expires_at=at() + 2 * hour)
        assert store.is_marked("reminder:a", now=at(minutes=59))
        # The refused mark changed nothing: it still ends after one hour.
        assert not store.is_marked("reminder:a", now=at() + hour)
        assert store.mark("reminder:a", now=at() + hour, expires_at=at() + 2 * hour)  # anew
        assert store.is_marked("reminder:a", now=at(minutes=90))
        assert not store.is_marked("reminder:b", now=at(minutes=90))
        store.unmark("reminder:a")
        store.unmark("reminder:never-set")
        assert not store.is_marked("reminder:a", now=at(minutes=90))
        assert store.mark("reminder:a", now=at(minutes=90), expires_at=at() + 3 * hour)

    def test_concurrent_marks_of_one_key_have_one_winner(self, store: JobStore) -> None:
        for round_ in range(3):
            key = f"reminder:{round_}"
            results = race(8, self._marker(store, key))
            assert sorted(str(r) for r in results) == ["False"] * 7 + ["True"], results

    def _marker(self, store: JobStore, key: str) -> Callable[[int], bool]:
        return lambda n: store.mark(key, now=at(), expires_at=at(hours=1))

    # ------------------------------------------------------------------ values

    def test_a_value_is_set_by_compare_and_set(self, store: JobStore) -> None:
        assert store.get_value("cursor:a") is None
        assert not store.set_value("cursor:a", "1", expected="0")  # nothing stored yet
        assert store.get_value("cursor:a") is None
        assert store.set_value("cursor:a", "1", expected=None)
        assert not store.set_value("cursor:a", "2", expected=None)  # it exists now
        assert not store.set_value("cursor:a", "2", expected="0")
        assert store.get_value("cursor:a") == "1"
        assert store.set_value("cursor:a", "2", expected="1")
        assert store.set_value("cursor:a", "", expected="2")
        assert store.get_value("cursor:a") == ""
        assert store.get_value("cursor:b") is None
        long = "v" * 4000
        assert store.set_value("cursor:b", long, expected=None)
        assert store.get_value("cursor:b") == long

    def test_values_outlive_the_purge(self, store: JobStore) -> None:
        assert store.set_value("cursor:a", "1", expected=None)
        store.purge_expired(at(days=10_000))
        assert store.get_value("cursor:a") == "1"

    def test_concurrent_sets_of_one_value_have_one_winner(self, store: JobStore) -> None:
        store.set_value("cursor:r", "0", expected=None)
        for round_ in range(3):
            results = race(8, self._setter(store, str(round_), str(round_ + 1)))
            assert sorted(str(r) for r in results) == ["False"] * 7 + ["True"], results
            assert store.get_value("cursor:r") == str(round_ + 1)

    def _setter(self, store: JobStore, expected: str, value: str) -> Callable[[int], bool]:
        return lambda n: store.set_value("cursor:r", value, expected=expected)

    # ------------------------------------------------------------------ expiry

    def test_purge_expired_forgets_slots_and_marks(self, store: JobStore) -> None:
        self._claim(store, "old", "a", at(), expires_at=at(hours=1))
        self._claim(store, "edge", "a", at(), expires_at=at(hours=2))
        self._claim(store, "new", "a", at(), expires_at=at(days=1))
        store.mark("old", now=at(), expires_at=at(hours=1))
        store.mark("edge", now=at(), expires_at=at(hours=2))
        store.mark("new", now=at(), expires_at=at(days=1))
        assert store.purge_expired(at(hours=2)) == 4  # expired at or before now
        assert store.get_slot("job", "old") is None and store.get_slot("job", "edge") is None
        assert store.get_slot("job", "new") is not None
        assert not store.is_marked("old", now=at()) and not store.is_marked("edge", now=at())
        assert store.is_marked("new", now=at(hours=2))
        assert store.purge_expired(at(hours=2)) == 0
        # A forgotten slot is unknown again: the next claim starts afresh.
        acquired, record = self._claim(store, "old", "b", at(hours=3))
        assert acquired and record.attempts == 1 and record.owner == "b"
        assert store.purge_expired(at(days=30)) == 3

    # ------------------------------------------------------------------ argument checks

    def test_bad_arguments_are_refused_and_change_nothing(self, store: JobStore) -> None:
        now = BASE_TIME
        naive = now.replace(tzinfo=None)
        minute = timedelta(minutes=1)
        calls: list[Callable[[], object]] = [
            lambda: store.claim_slot(
                "job", "s", worker="a", now=naive, lease=minute, expires_at=now
            ),
            lambda: store.claim_slot(
                "job", "s", worker="a", now=now, lease=minute, expires_at=naive
            ),
            lambda: store.claim_slot("", "s", worker="a", now=now, lease=minute, expires_at=now),
            lambda: store.claim_slot("job", "", worker="a", now=now, lease=minute, expires_at=now),
            lambda: store.claim_slot(
                "job", "x" * 401, worker="a", now=now, lease=minute, expires_at=now
            ),
            lambda: store.claim_slot(
                "job", "s", worker="a", now=now, lease=timedelta(0), expires_at=now
            ),
            lambda: store.claim_slot(
                {"$gt": ""},  # type: ignore[arg-type]
                "s",
                worker="a",
                now=now,
                lease=minute,
                expires_at=now,
            ),
            lambda: store.finish_slot(
                "job", "s", token="t", now=now, state=SlotState.RUNNING, counts={}
            ),
            lambda: store.finish_slot(
                "job", "s", token="t", now=naive, state=SlotState.SUCCEEDED, counts={}
            ),
            lambda: store.mark({"$gt": ""}, now=now, expires_at=now),  # type: ignore[arg-type]
            lambda: store.mark("", now=now, expires_at=now),
            lambda: store.mark("k" * 401, now=now, expires_at=now),
            lambda: store.mark("k", now=naive, expires_at=now),
            lambda: store.mark("k", now=now, expires_at=naive),
            lambda: store.is_marked("k", now=naive),
            lambda: store.purge_expired(naive),
            lambda: store.set_value("", "v", expected=None),
            lambda: store.set_value("k" * 401, "v", expected=None),
            lambda: store.set_value("k", "v" * 4001, expected=None),
            lambda: store.set_value("k", 1, expected=None),  # type: ignore[arg-type]
            lambda: store.set_value({"$gt": ""}, "v", expected=None),  # type: ignore[arg-type]
            lambda: store.set_value("k", "v", expected={"$ne": ""}),  # type: ignore[arg-type]
            lambda: store.get_value({"$gt": ""}),  # type: ignore[arg-type]
        ]
        for n, call in enumerate(calls):
            with pytest.raises(InvalidInputError):
                call()
            assert store.get_slot("job", "s") is None, n
            assert not store.is_marked("k", now=now), n
            assert store.get_value("k") is None, n
        # The longest keys are fine.
        long = "x" * 400
        assert self._claim(store, long, "a", now, job=long)[0]
        assert store.mark(long, now=now, expires_at=at(hours=1))
