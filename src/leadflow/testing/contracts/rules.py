"""The rule contract: create, read in application order, optimistic updates, delete, copies,
and the change stamp."""

from __future__ import annotations

import abc

import pytest

from ...errors import DuplicateError, NotFoundError, StaleWriteError
from ...models import Condition
from ...ports import RuleRepository
from .data import BASE_TIME, make_rule

__all__ = ["RuleRepositoryContract"]


class RuleRepositoryContract(abc.ABC):
    """Every test a :class:`~leadflow.ports.RuleRepository` must pass.

    Subclass it (as ``Test...``) and implement :meth:`make_store`; override
    :meth:`open_again` when the backend can open a second repository object on the same stored
    rules (as another process would), so the stamp is checked across objects too.
    """

    @abc.abstractmethod
    def make_store(self) -> RuleRepository:
        """A new, empty repository."""

    def open_again(self, store: RuleRepository) -> RuleRepository | None:
        """Another repository object on the rules ``store`` holds (None: the backend has no
        such thing, e.g. process memory; the test that needs one is skipped)."""
        return None

    @pytest.fixture
    def store(self) -> RuleRepository:
        return self.make_store()

    def test_is_a_rule_repository(self, store: RuleRepository) -> None:
        assert isinstance(store, RuleRepository)

    def test_create_then_get(self, store: RuleRepository) -> None:
        rule = make_rule(
            "r1",
            description="greets new leads",
            trigger={
                "event_type": "opportunity.created",
                "conditions": [
                    {"field": "leadSource", "operator": "equals", "value": "website"},
                    {"any": [{"field": "priority", "operator": "in", "value": ["high", "urgent"]}]},
                ],
            },
            actions=[
                {"action_type": "create_activity", "subject": "Call", "delay": 1},
                {
                    "action_type": "update_status",
                    "params": {"status": "contacted"},
                    "delay": {"amount": 2, "unit": "business_days"},
                },
            ],
            priority=10,
            created_at=BASE_TIME,
        )
        created = store.create(rule)
        assert created == rule
        assert store.get("r1") == rule

    def test_create_stores_version_1(self, store: RuleRepository) -> None:
        assert store.create(make_rule("r1", version=4)).version == 1
        assert store.get("r1").version == 1

    def test_create_duplicate_is_refused(self, store: RuleRepository) -> None:
        store.create(make_rule("r1", name="first"))
        with pytest.raises(DuplicateError):
            store.create(make_rule("r1", name="second"))
        assert store.get("r1").name == "first"

    def test_get_unknown_raises_not_found(self, store: RuleRepository) -> None:
        with pytest.raises(NotFoundError):
            store.get("nope")

    def test_list_in_application_order(self, store: RuleRepository) -> None:
        for rule_id, priority, active in [
            ("b", 5, True),
            ("a", 5, False),
            ("c", 10, True),
            ("d", -1, True),
            ("e", 0, False),
        ]:
            store.create(make_rule(rule_id, priority=priority, is_active=active))
        assert [r.rule_id for r in store.list()] == ["c", "a", "b", "e", "d"]
        assert [r.rule_id for r in store.list_active()] == ["c", "b", "d"]

    def test_empty_lists(self, store: RuleRepository) -> None:
        assert store.list() == []
        assert store.list_active() == []

    def test_update(self, store: RuleRepository) -> None:
        store.create(make_rule("r1"))
        first = store.get("r1")
        updated = store.update(first.model_copy(update={"is_active": False, "priority": 3}))
        assert (updated.version, updated.is_active, updated.priority) == (2, False, 3)
        assert store.get("r1") == updated
        assert store.list_active() == []
        with pytest.raises(StaleWriteError):
            store.update(first.model_copy(update={"name": "late"}))
        assert store.get("r1") == updated

    def test_update_unknown_raises_not_found(self, store: RuleRepository) -> None:
        with pytest.raises(NotFoundError):
            store.update(make_rule("ghost"))

    def test_delete(self, store: RuleRepository) -> None:
        store.create(make_rule("r1"))
        store.create(make_rule("r2"))
        store.delete("r1")
        with pytest.raises(NotFoundError):
            store.get("r1")
        assert [r.rule_id for r in store.list()] == ["r2"]
        with pytest.raises(NotFoundError):
            store.delete("r1")

    def test_returned_rules_are_copies(self, store: RuleRepository) -> None:
        original = make_rule(
            "r1",
            trigger={
                "event_type": "opportunity.created",
                "conditions": [{"field": "source", "operator": "in", "value": ["web"]}],
            },
        )
        store.create(original)
        for got in [store.get("r1"), store.list()[0], store.list_active()[0]]:
            got.name = "changed"
            got.actions[0].params["x"] = 1
            got.actions.clear()
            condition = got.trigger.conditions[0]
            assert isinstance(condition, Condition)
            condition.value.append("phone")
        assert store.get("r1") == original
        original.name = "changed after create"
        assert store.get("r1").name == "rule r1"

    def test_stamp_changes_on_every_write(self, store: RuleRepository) -> None:
        stamps = [store.stamp()]
        store.create(make_rule("r1"))
        stamps.append(store.stamp())
        store.create(make_rule("r2"))
        stamps.append(store.stamp())
        store.update(store.get("r1").model_copy(update={"priority": 7}))
        stamps.append(store.stamp())
        store.update(store.get("r1").model_copy(update={"is_active": False}))
        stamps.append(store.stamp())
        store.delete("r2")
        stamps.append(store.stamp())
        store.create(make_rule("r2"))  # the same id and version as before: still a change
        stamps.append(store.stamp())
        assert len(set(stamps)) == len(stamps), stamps

    def test_stamp_ignores_reads_and_refused_writes(self, store: RuleRepository) -> None:
        store.create(make_rule("r1"))
        first = store.get("r1")
        store.update(first)
        before = store.stamp()
        store.get("r1")
        store.list()
        store.list_active()
        with pytest.raises(DuplicateError):
            store.create(make_rule("r1"))
        with pytest.raises(StaleWriteError):
            store.update(first.model_copy(update={"name": "late"}))
        with pytest.raises(NotFoundError):
            store.update(make_rule("ghost"))
        with pytest.raises(NotFoundError):
            store.delete("ghost")
        assert store.stamp() == before
        assert store.stamp() == before  # reading it changes nothing either

    def test_stamp_is_shared_by_every_object_on_the_store(self, store: RuleRepository) -> None:
        other = self.open_again(store)
        if other is None:
            pytest.skip("the backend cannot open a second repository on the same rules")
        assert other.stamp() == store.stamp()
        before = store.stamp()
        other.create(make_rule("r1"))
        assert store.stamp() != before
        assert store.stamp() == other.stamp()
        seen = store.stamp()
        store.update(store.get("r1"))
        assert other.stamp() != seen
        seen = other.stamp()
        other.delete("r1")
        assert store.stamp() != seen
