"""The in-memory :class:`~leadflow.ports.RuleRepository`: rules are few, so each is kept as a
private validated copy in a dict and sorted when listed."""

from __future__ import annotations

import builtins
import threading

from ...errors import DuplicateError, NotFoundError, StaleWriteError
from ...models import FollowUpRule
from ..checks import an_id, check_model

__all__ = ["InMemoryRuleRepository"]


def _application_order(rule: FollowUpRule) -> tuple[int, str]:
    return (-rule.priority, rule.rule_id)


class InMemoryRuleRepository:
    """A :class:`~leadflow.ports.RuleRepository` held in process memory; one lock, every
    method atomic, returned rules are deep copies. The change stamp counts the writes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, FollowUpRule] = {}
        self._stamp = 0

    def create(self, rule: FollowUpRule) -> FollowUpRule:
        checked = check_model(rule, FollowUpRule, "rule")
        with self._lock:
            if checked.rule_id in self._rules:
                raise DuplicateError(f"rule {checked.rule_id!r} already exists")
            stored = checked.model_copy(update={"version": 1})
            self._rules[stored.rule_id] = stored
            self._stamp += 1
        return stored.model_copy(deep=True)

    def get(self, rule_id: str) -> FollowUpRule:
        rule_id = an_id(rule_id, "rule_id")
        with self._lock:
            stored = self._rules.get(rule_id)
        if stored is None:
            raise NotFoundError(f"no rule {rule_id!r}")
        return stored.model_copy(deep=True)

    def list(self) -> builtins.list[FollowUpRule]:
        with self._lock:
            rules = sorted(self._rules.values(), key=_application_order)
        return [rule.model_copy(deep=True) for rule in rules]

    def list_active(self) -> builtins.list[FollowUpRule]:
        return [rule for rule in self.list() if rule.is_active]

    def update(self, rule: FollowUpRule) -> FollowUpRule:
        checked = check_model(rule, FollowUpRule, "rule")
        with self._lock:
            old = self._rules.get(checked.rule_id)
            if old is None:
                raise NotFoundError(f"no rule {checked.rule_id!r}")
            if old.version != checked.version:
                raise StaleWriteError(
                    f"rule {checked.rule_id!r} is at version {old.version}, "
                    f"not {checked.version}: re-read it and apply the change again"
                )
            stored = checked.model_copy(update={"version": old.version + 1})
            self._rules[stored.rule_id] = stored
            self._stamp += 1
        return stored.model_copy(deep=True)

    def delete(self, rule_id: str) -> None:
        rule_id = an_id(rule_id, "rule_id")
        with self._lock:
            if self._rules.pop(rule_id, None) is None:
                raise NotFoundError(f"no rule {rule_id!r}")
            self._stamp += 1

    def stamp(self) -> int:
        """How many rule writes this repository has made (see the port)."""
        with self._lock:
            return self._stamp
