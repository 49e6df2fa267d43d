"""The sequence repository's contract: every version of every sequence definition
(consecutive versions, the current one, statuses, the change stamp). The enrollments' is in
:mod:`.enrollments`."""

from __future__ import annotations

import abc
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ...errors import (
    DuplicateError,
    InvalidInputError,
    NotFoundError,
    StaleWriteError,
)
from ...ports import SequenceRepository
from ...sequences import SequenceDefinition, SequenceStatus
from .data import TextSubclass, assert_utc, at, make_sequence, race

__all__ = ["SequenceRepositoryContract"]

_PLUS_2 = timezone(timedelta(hours=2))


def _rich_sequence(sequence_id: str, **fields: Any) -> SequenceDefinition:
    """A definition with every kind of step and every optional part."""
    data: dict[str, Any] = {
        "description": "welcome web leads, then call them",
        "status": SequenceStatus.ACTIVE,
        "entry": {
            "event_type": "opportunity.created",
            "conditions": [
                {"field": "leadSource", "operator": "equals", "value": "website"},
                {"any": [{"field": "priority", "operator": "in", "value": ["high", "urgent"]}]},
            ],
        },
        "reenrollment": "every_entry",
        "steps": [
            {
                "id": "welcome",
                "name": "Welcome e-mail",
                "kind": "action",
                "action": {
                    "action_type": "send_notification",
                    "template": "welcome",
                    "params": {"tags": ["web"], "nested": {"n": 1, "ok": True}},
                },
            },
            {"id": "pause", "kind": "wait", "delay": {"amount": 2, "unit": "business_days"}},
            {"id": "morning", "kind": "wait", "until": {"at": "09:30", "next_day": True}},
            {
                "id": "reply",
                "kind": "wait_for_event",
                "event_type": "email.replied",
                "conditions": [{"field": "channel", "operator": "equals", "value": "email"}],
                "timeout": {"amount": 48, "unit": "hours"},
                "on_timeout": "ab",
            },
            {
                "id": "check",
                "kind": "branch",
                "cases": [
                    {
                        "when": [
                            {"field": "opportunity.status", "operator": "equals", "value": "won"}
                        ],
                        "goto": "done",
                    }
                ],
                "otherwise": "ab",
            },
            {
                "id": "ab",
                "kind": "split",
                "variants": [
                    {"name": "A", "weight": 1, "goto": "call"},
                    {"name": "B", "weight": 3, "goto": "done"},
                ],
            },
            {
                "id": "call",
                "kind": "action",
                "action": {"action_type": "create_activity", "subject": "Call the lead"},
            },
            {"id": "again", "kind": "goto", "target": "done"},
            {"id": "done", "kind": "exit"},
        ],
        "goals": [
            {
                "name": "decided",
                "event_type": "opportunity.status_changed",
                "conditions": [{"field": "newStatus", "operator": "in", "value": ["won", "lost"]}],
            }
        ],
        "window": {"days": ["mon", "tue", "wed"], "start": "08:30", "end": "18:00"},
        "timezone": "Europe/Berlin",
        "daily_cap": 3,
        "created_by": "admin",
        "created_at": datetime(2026, 1, 5, 11, tzinfo=_PLUS_2),
        "updated_at": at(hours=1),
    }
    data.update(fields)
    return make_sequence(sequence_id, **data)


class SequenceRepositoryContract(abc.ABC):
    """Every test a :class:`~leadflow.ports.SequenceRepository` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_store`; override
    :meth:`open_again` when the backend can open a second repository object on the same stored
    sequences (as another process would), so the stamp is checked across objects too.
    """

    @abc.abstractmethod
    def make_store(self) -> SequenceRepository:
        """A new, empty repository."""

    def open_again(self, store: SequenceRepository) -> SequenceRepository | None:
        """Another repository object on the sequences ``store`` holds (None: the backend has
        no such thing, e.g. process memory; the test that needs one is skipped)."""
        return None

    @pytest.fixture
    def store(self) -> SequenceRepository:
        return self.make_store()

    def test_is_a_sequence_repository(self, store: SequenceRepository) -> None:
        assert isinstance(store, SequenceRepository)

    def test_add_then_get_returns_every_field(self, store: SequenceRepository) -> None:
        definition = _rich_sequence("s1")
        assert store.add(definition) == definition
        got = store.get("s1")
        assert got == definition
        assert got.model_dump() == definition.model_dump()
        assert store.get("s1", 1) == definition
        assert got.created_at == at(hours=0)
        assert_utc(got.created_at)
        assert_utc(got.updated_at)
        assert store.add(make_sequence("s2")) == make_sequence("s2")
        assert store.get("s2") == make_sequence("s2")

    def test_versions_are_consecutive(self, store: SequenceRepository) -> None:
        with pytest.raises(StaleWriteError):
            store.add(make_sequence("s1", version=2))  # a new sequence starts at 1
        with pytest.raises(NotFoundError):
            store.get("s1")
        assert store.versions("s1") == []
        assert store.list() == []
        store.add(make_sequence("s1", name="first"))
        with pytest.raises(DuplicateError):
            store.add(make_sequence("s1", name="again"))
        with pytest.raises(StaleWriteError):
            store.add(make_sequence("s1", version=3))
        store.add(make_sequence("s1", version=2, name="second"))
        with pytest.raises(DuplicateError):
            store.add(make_sequence("s1", version=1, name="late"))
        with pytest.raises(DuplicateError):
            store.add(make_sequence("s1", version=2, name="late"))
        with pytest.raises(StaleWriteError):
            store.add(make_sequence("s1", version=4))
        assert [(d.version, d.name) for d in store.versions("s1")] == [
            (1, "first"),
            (2, "second"),
        ]

    def test_get_the_current_or_one_version(self, store: SequenceRepository) -> None:
        for version in (1, 2, 3):
            store.add(make_sequence("s1", version=version, name=f"v{version}"))
        assert (store.get("s1").version, store.get("s1").name) == (3, "v3")
        assert store.get("s1", None).version == 3
        assert [store.get("s1", v).name for v in (1, 2, 3)] == ["v1", "v2", "v3"]
        with pytest.raises(NotFoundError):
            store.get("s1", 4)
        with pytest.raises(NotFoundError):
            store.get("nope")
        with pytest.raises(NotFoundError):
            store.get("nope", 1)

    def test_versions_oldest_first(self, store: SequenceRepository) -> None:
        assert store.versions("nope") == []
        for version in (1, 2, 3):
            store.add(make_sequence("s1", version=version))
        store.add(make_sequence("s0"))
        assert [d.version for d in store.versions("s1")] == [1, 2, 3]
        assert [(d.sequence_id, d.version) for d in store.versions("s0")] == [("s0", 1)]

    def test_list_is_the_current_version_of_each_by_id(self, store: SequenceRepository) -> None:
        assert store.list() == []
        store.add(make_sequence("b"))
        store.add(make_sequence("a", name="a1"))
        store.add(make_sequence("c"))
        store.add(make_sequence("a", version=2, name="a2"))
        store.add(make_sequence("b", version=2, status="archived"))
        store.add(make_sequence("b", version=3))
        listed = store.list()
        assert [(d.sequence_id, d.version) for d in listed] == [("a", 2), ("b", 3), ("c", 1)]
        assert listed[0] == make_sequence("a", version=2, name="a2")

    def test_set_status(self, store: SequenceRepository) -> None:
        store.add(make_sequence("s1"))
        store.add(make_sequence("s1", version=2))
        changed = store.set_status("s1", 1, SequenceStatus.ARCHIVED)
        assert changed == make_sequence("s1", status="archived")
        assert store.get("s1", 1) == changed
        assert store.get("s1", 2).status is SequenceStatus.DRAFT
        active = store.set_status("s1", 2, SequenceStatus.ACTIVE)
        assert active.status is SequenceStatus.ACTIVE
        assert store.get("s1") == active
        assert store.list() == [active]
        paused = store.set_status("s1", 2, "paused")  # type: ignore[arg-type]
        assert paused.status is SequenceStatus.PAUSED
        assert store.get("s1").status is SequenceStatus.PAUSED
        assert [d.status for d in store.versions("s1")] == [
            SequenceStatus.ARCHIVED,
            SequenceStatus.PAUSED,
        ]
        with pytest.raises(NotFoundError):
            store.set_status("s1", 3, SequenceStatus.ACTIVE)
        with pytest.raises(NotFoundError):
            store.set_status("nope", 1, SequenceStatus.ACTIVE)

    def test_status_and_the_rest_round_trip_after_set_status(
        self, store: SequenceRepository
    ) -> None:
        definition = _rich_sequence("s1", status="draft")
        store.add(definition)
        published = store.set_status("s1", 1, SequenceStatus.ACTIVE)
        expected = definition.model_copy(update={"status": SequenceStatus.ACTIVE})
        assert published == expected
        assert store.get("s1") == expected
        assert store.versions("s1") == [expected]

    def test_returned_definitions_are_copies(self, store: SequenceRepository) -> None:
        original = _rich_sequence("s1")
        added = store.add(original)
        for got in [added, store.get("s1"), store.get("s1", 1), store.list()[0]]:
            got.name = "changed"
            got.steps.clear()
            got.goals[0].conditions.clear()
            assert got.entry is not None
            got.entry.conditions.clear()
        for got in [store.versions("s1")[0], store.set_status("s1", 1, SequenceStatus.ACTIVE)]:
            got.name = "changed"
            got.steps.clear()
        expected = original.model_copy(update={"status": SequenceStatus.ACTIVE}, deep=True)
        assert store.get("s1") == expected
        original.name = "changed after add"
        original.steps.pop()
        assert store.get("s1") == expected

    def test_stamp_changes_on_every_write(self, store: SequenceRepository) -> None:
        stamps = [store.stamp()]
        store.add(make_sequence("s1"))
        stamps.append(store.stamp())
        store.add(make_sequence("s2"))
        stamps.append(store.stamp())
        store.add(make_sequence("s1", version=2))
        stamps.append(store.stamp())
        store.set_status("s1", 2, SequenceStatus.ACTIVE)
        stamps.append(store.stamp())
        store.set_status("s1", 2, SequenceStatus.ACTIVE)  # the same status: still a write
        stamps.append(store.stamp())
        store.set_status("s1", 1, SequenceStatus.ARCHIVED)
        stamps.append(store.stamp())
        assert len(set(stamps)) == len(stamps), stamps

    def test_stamp_ignores_reads_and_refused_writes(self, store: SequenceRepository) -> None:
        store.add(make_sequence("s1"))
        before = store.stamp()
        store.get("s1")
        store.get("s1", 1)
        store.versions("s1")
        store.list()
        refused: list[Callable[[], object]] = [
            lambda: store.add(make_sequence("s1")),
            lambda: store.add(make_sequence("s1", version=3)),
            lambda: store.add(make_sequence("s9", version=2)),
            lambda: store.set_status("s1", 2, SequenceStatus.ACTIVE),
            lambda: store.set_status("s9", 1, SequenceStatus.ACTIVE),
            lambda: store.set_status("s1", 1, "bogus"),  # type: ignore[arg-type]
            lambda: store.get("s1", 2),
        ]
        for call in refused:
            with pytest.raises((DuplicateError, StaleWriteError, NotFoundError, InvalidInputError)):
                call()
        assert store.stamp() == before
        assert store.stamp() == before  # reading it changes nothing either

    def test_stamp_is_shared_by_every_object_on_the_store(self, store: SequenceRepository) -> None:
        other = self.open_again(store)
        if other is None:
            pytest.skip("the backend cannot open a second repository on the same sequences")
        assert other.stamp() == store.stamp()
        before = store.stamp()
        other.add(make_sequence("s1"))
        assert store.stamp() != before
        assert store.stamp() == other.stamp()
        assert store.get("s1") == make_sequence("s1")
        seen = store.stamp()
        store.add(make_sequence("s1", version=2))
        assert other.stamp() != seen
        assert other.get("s1").version == 2
        seen = other.stamp()
        other.set_status("s1", 2, SequenceStatus.ACTIVE)
        assert store.stamp() != seen
        assert store.get("s1").status is SequenceStatus.ACTIVE

    def test_concurrent_publishers_store_one_version(self, store: SequenceRepository) -> None:
        store.add(make_sequence("s1"))
        threads = 8

        def publish(n: int) -> SequenceDefinition:
            return store.add(make_sequence("s1", version=2, name=f"by {n}"))

        results = race(threads, publish)
        won = [r for r in results if isinstance(r, SequenceDefinition)]
        lost = [r for r in results if not isinstance(r, SequenceDefinition)]
        assert len(won) == 1, results
        assert all(isinstance(r, DuplicateError | StaleWriteError) for r in lost), lost
        assert store.get("s1") == won[0]
        assert [d.version for d in store.versions("s1")] == [1, 2]

    def test_arguments_are_checked_and_change_nothing(self, store: SequenceRepository) -> None:
        store.add(make_sequence("s1"))
        before = store.stamp()
        bad_ids: list[object] = [7, None, "", "$where", "has space", {"$ne": None}, ["s1"]]
        calls: list[Callable[[], object]] = [
            lambda: store.add({"sequence_id": "s2"}),  # type: ignore[arg-type]
            lambda: store.add(None),  # type: ignore[arg-type]
            lambda: store.get("s1", "1"),  # type: ignore[arg-type]
            lambda: store.get("s1", True),
            lambda: store.get("s1", {"$gt": 0}),  # type: ignore[arg-type]
            lambda: store.set_status("s1", 1, "bogus"),  # type: ignore[arg-type]
            lambda: store.set_status("s1", 1, {"$set": 1}),  # type: ignore[arg-type]
            lambda: store.set_status("s1", "1", SequenceStatus.ACTIVE),  # type: ignore[arg-type]
            # versions run from 1 to 2**63 - 1 on every backend (SQLite's driver overflowed)
            lambda: store.get("s1", 0),
            lambda: store.get("s1", 2**63),
            lambda: store.set_status("s1", 0, SequenceStatus.ACTIVE),
            lambda: store.set_status("s1", 2**70, SequenceStatus.ACTIVE),
            lambda: store.set_status("s1", None, SequenceStatus.ACTIVE),  # type: ignore[arg-type]
        ]
        for bad in bad_ids:
            calls.append(lambda bad=bad: store.get(bad))  # type: ignore[misc]
            calls.append(lambda bad=bad: store.versions(bad))  # type: ignore[misc]
            calls.append(
                lambda bad=bad: store.set_status(bad, 1, SequenceStatus.ACTIVE)  # type: ignore[misc]
            )
        for call in calls:
            with pytest.raises(InvalidInputError):
                call()
        assert store.stamp() == before
        assert store.list() == [make_sequence("s1")]

    def test_a_changed_definition_is_checked_again(self, store: SequenceRepository) -> None:
        broken = make_sequence("s1")
        broken.created_at = datetime(2026, 1, 5, 9)  # naive, set after validation
        with pytest.raises((InvalidInputError, ValueError)):
            store.add(broken)
        assert store.list() == []

    def test_str_subclasses_are_their_text(self, store: SequenceRepository) -> None:
        store.add(make_sequence("s1"))
        got = store.get(TextSubclass("s1"))
        assert got.sequence_id == "s1" and type(got.sequence_id) is str
        assert store.get(TextSubclass("s1"), 1) == got
        assert store.versions(TextSubclass("s1")) == [got]
        changed = store.set_status(TextSubclass("s1"), 1, SequenceStatus.ACTIVE)
        assert store.get("s1") == changed
