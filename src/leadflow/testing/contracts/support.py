"""The contracts of the two small stores: counters that only go up, and the audit log."""

from __future__ import annotations

import abc
from datetime import datetime, timedelta, timezone

import pytest

from ...ports import AuditLog, CounterStore
from .data import BASE_TIME, assert_utc, at, make_audit_entry, race

__all__ = ["AuditLogContract", "CounterStoreContract"]


class CounterStoreContract(abc.ABC):
    """Every test a :class:`~leadflow.ports.CounterStore` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_store`.
    """

    @abc.abstractmethod
    def make_store(self) -> CounterStore:
        """A new store in which no counter was used yet."""

    @pytest.fixture
    def store(self) -> CounterStore:
        return self.make_store()

    def test_is_a_counter_store(self, store: CounterStore) -> None:
        assert isinstance(store, CounterStore)

    def test_counters_start_at_one_and_count_up_independently(self, store: CounterStore) -> None:
        assert [store.next("round-robin") for _ in range(3)] == [1, 2, 3]
        assert store.next("other") == 1
        assert store.next("round-robin") == 4
        for name in ("opp-1:rule.1", "a|b", "$x", "ü"):
            assert store.next(name) == 1
        assert store.next("other") == 2

    def test_next_is_atomic_under_threads(self, store: CounterStore) -> None:
        threads, calls = 8, 25

        def work(_: int) -> list[int]:
            return [store.next("shared") for _ in range(calls)]

        results = race(threads, work)
        values: list[int] = []
        for result in results:
            assert isinstance(result, list), result
            assert result == sorted(result)  # each thread sees its own values go up
            values.extend(result)
        assert sorted(values) == list(range(1, threads * calls + 1))
        assert store.next("shared") == threads * calls + 1


class AuditLogContract(abc.ABC):
    """Every test an :class:`~leadflow.ports.AuditLog` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_store`.
    """

    @abc.abstractmethod
    def make_store(self) -> AuditLog:
        """A new, empty log."""

    @pytest.fixture
    def store(self) -> AuditLog:
        return self.make_store()

    def test_is_an_audit_log(self, store: AuditLog) -> None:
        assert isinstance(store, AuditLog)

    def test_empty(self, store: AuditLog) -> None:
        assert store.list() == []
        assert store.list("rule") == []
        assert store.list("rule", "rule-1") == []
        assert store.list(subject_id="rule-1") == []

    def test_append_then_list_returns_every_field(self, store: AuditLog) -> None:
        entry = make_audit_entry(
            "e1",
            subject="activity",
            subject_id="act-1",
            change="completed",
            actor="rep@example.com",
            at=at(hours=1),
            before={"subject": "Call", "tags": ["a"], "nested": {"n": 1, "ok": True}},
            after={"subject": "Call", "outcome": "successful", "quoteValue": 12.5},
            note="completed on behalf of the rep",
        )
        minimal = make_audit_entry("e2", at=at(hours=2))
        store.append(entry)
        store.append(minimal)
        assert store.list() == [entry, minimal]
        assert minimal.before is None and store.list()[1].after is None

    def test_list_filters_by_subject_and_subject_id(self, store: AuditLog) -> None:
        for entry_id, subject, subject_id in [
            ("e1", "rule", "r1"),
            ("e2", "activity", "a1"),
            ("e3", "rule", "r2"),
            ("e4", "action", "sa-1"),
            ("e5", "rule", "r1"),
            ("e6", "activity", "r1"),  # another kind of subject with the same id
        ]:  # all at one time: insertion order
            store.append(make_audit_entry(entry_id, subject=subject, subject_id=subject_id))

        def listed(subject: str | None = None, subject_id: str | None = None) -> list[str]:
            return [e.entry_id for e in store.list(subject, subject_id)]

        assert listed() == ["e1", "e2", "e3", "e4", "e5", "e6"]
        assert listed("rule") == ["e1", "e3", "e5"]
        assert listed("activity") == ["e2", "e6"]
        assert listed("action") == ["e4"]
        assert listed("rule", "r1") == ["e1", "e5"]
        assert listed("activity", "r1") == ["e6"]
        assert listed(subject_id="r1") == ["e1", "e5", "e6"]
        assert listed("action", "r1") == []
        assert listed(subject_id="nope") == []

    def test_oldest_first_then_in_insertion_order(self, store: AuditLog) -> None:
        for entry_id, minutes in [("z", 30), ("m", 10), ("a", 30), ("q", 20), ("b", 10)]:
            store.append(make_audit_entry(entry_id, at=at(minutes=minutes)))
        assert [e.entry_id for e in store.list()] == ["m", "b", "q", "z", "a"]
        assert [e.entry_id for e in store.list("rule", "rule-1")] == ["m", "b", "q", "z", "a"]

    def test_entries_are_copies(self, store: AuditLog) -> None:
        entry = make_audit_entry("e1", before={"tags": ["a"]}, after={"tags": ["a", "b"]})
        store.append(entry)
        assert entry.before is not None
        entry.before["tags"].append("changed after append")
        entry.note = "changed"
        (got,) = store.list()
        assert got.before == {"tags": ["a"]} and got.note is None
        assert got.after is not None
        got.after["tags"].clear()
        got.actor = "mallory"
        again = store.list("rule", "rule-1")[0]
        assert (again.after, again.actor) == ({"tags": ["a", "b"]}, "admin")

    def test_times_come_back_in_utc(self, store: AuditLog) -> None:
        local = datetime(2026, 1, 5, 11, tzinfo=timezone(timedelta(hours=2)))
        store.append(make_audit_entry("e1", at=local))
        (got,) = store.list()
        assert got.at == BASE_TIME
        assert_utc(got.at)
