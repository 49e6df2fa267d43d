"""The rule operations of :class:`~leadflow.access.Operations` (which inherits them): create,
update, delete, read and dry-run follow-up rules, each checked against the policy table
(``rule.write``, ``rule.read``, ``rule.test``) and audited. A change of an active rule is linted
with the stored ones before it is written (:mod:`leadflow.lint`); a rule's pending delayed
actions follow the change's :class:`~leadflow.runtime.settings.PendingPolicy`, and each one
cancelled gets its own audit entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..models import FollowUpRule
from ..ports import RuleRepository
from ..runtime.admin import RulesAdmin
from ..runtime.results import RuleChange, RuleTestResult
from ..runtime.rulebook import RuleBook
from ..runtime.settings import PendingPolicy
from .inputs import RULE_FIXED, checked_id, document_of, rule_changes
from .policy import Policy, Principal

__all__ = ["RuleOperations"]


class RuleOperations:
    """The rule operations of :class:`~leadflow.access.Operations`, which sets the parts they
    use (the rule store, the flow's rule administration and rule book) and the policy."""

    policy: Policy
    _rule_store: RuleRepository
    _admin: RulesAdmin
    _book: RuleBook

    if TYPE_CHECKING:  # Operations' own methods, which these operations call

        def _audit(self, principal: Principal, subject: str, subject_id: str, change: str,
                   before: Any = None, after: Any = None,
                   note: str | None = None) -> None: ...  # fmt: skip

        def _now(self) -> datetime: ...

    def create_rule(
        self, principal: Principal, data: FollowUpRule | Mapping[str, Any], *, force: bool = False
    ) -> FollowUpRule:
        """Store a new rule after checking that it loads here (operators, values, handlers).
        An active rule is also linted with the stored ones (:mod:`leadflow.lint`): a lint
        error concerning it raises :class:`RuleValidationError` (the first one) unless
        ``force``."""
        self.policy.require(principal, "rule.write")
        raw = document_of(data, "rule")
        now = self._now()
        raw = {k: v for k, v in raw.items() if k not in RULE_FIXED - {"ruleId"}}
        rule = FollowUpRule.model_validate(
            {**raw, "createdBy": principal.user_id, "updatedBy": principal.user_id,
             "createdAt": now, "updatedAt": now}
        )  # fmt: skip
        if not force:
            self._lint_gate(rule)
        stored = self._admin.create(rule)
        self._audit(principal, "rule", stored.rule_id, "created", after=stored)
        return stored

    def update_rule(
        self,
        principal: Principal,
        rule_id: str,
        changes: Mapping[str, Any],
        *,
        expected_version: int | None = None,
        pending: PendingPolicy | None = None,
        force: bool = False,
    ) -> RuleChange:
        """Apply ``changes`` (camelCase or snake_case fields) to a rule. With
        ``expected_version``, a rule changed meanwhile raises :class:`StaleWriteError`.
        ``pending`` (default ``cancel``) decides what happens to the rule's pending delayed
        actions; the result lists the cancelled ones. A lint error concerning the changed rule
        (if active) raises :class:`RuleValidationError` unless ``force``, as in
        :meth:`create_rule`."""
        self.policy.require(principal, "rule.write")
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise InvalidInputError("expected an integer", field="expected_version")
        current = self._rule_store.get(checked_id(rule_id, "rule_id"))
        merged = {**current.to_document(), **rule_changes(changes)}
        merged.update(
            version=expected_version if expected_version is not None else current.version,
            updatedBy=principal.user_id,
            updatedAt=self._now(),
        )
        candidate = FollowUpRule.model_validate(merged)
        if not force:
            self._lint_gate(candidate)
        change = self._admin.replace(candidate, pending=pending)
        self._audit_rule_change(principal, "updated", current, change)
        return change

    def _lint_gate(self, rule: FollowUpRule) -> None:
        from ..lint import check_activation, raise_on_errors

        self._admin.check(rule)  # what cannot load at all is reported as before
        raise_on_errors(
            check_activation(rule, self._rule_store.list(), vocabulary=self._book.vocabulary)
        )

    def delete_rule(
        self, principal: Principal, rule_id: str, *, pending: PendingPolicy | None = None
    ) -> RuleChange:
        """Delete a rule; ``pending`` as in :meth:`update_rule`."""
        self.policy.require(principal, "rule.write")
        current = self._rule_store.get(checked_id(rule_id, "rule_id"))
        change = self._admin.delete(current.rule_id, actor=principal.user_id, pending=pending)
        self._audit_rule_change(principal, "deleted", current, change)
        return change

    def _audit_rule_change(
        self, principal: Principal, what: str, before: FollowUpRule, change: RuleChange
    ) -> None:
        note = None
        if change.cancelled:
            ids = ", ".join(a.action_id for a in change.cancelled[:50])
            note = f"cancelled {len(change.cancelled)} pending action(s): {ids}"
        self._audit(principal, "rule", before.rule_id, what, before, change.rule, note)
        for action in change.cancelled:
            self._audit(principal, "action", action.action_id, "cancelled", after=action)

    def get_rule(self, principal: Principal, rule_id: str) -> FollowUpRule:
        self.policy.require(principal, "rule.read")
        return self._rule_store.get(checked_id(rule_id, "rule_id"))

    def list_rules(self, principal: Principal) -> list[FollowUpRule]:
        self.policy.require(principal, "rule.read")
        return self._rule_store.list()

    def list_active_rules(self, principal: Principal) -> list[FollowUpRule]:
        self.policy.require(principal, "rule.read")
        return self._rule_store.list_active()

    def test_rule(
        self,
        principal: Principal,
        rule: str | FollowUpRule | Mapping[str, Any],
        sample: Any,
    ) -> RuleTestResult:
        """Dry run (the seed's test mode): would this rule (stored, or given) match ``sample``,
        what would it plan, and why. Writes nothing and runs no action."""
        self.policy.require(principal, "rule.test")
        if isinstance(rule, str):
            candidate = self._rule_store.get(checked_id(rule, "rule_id"))
        elif isinstance(rule, FollowUpRule):
            candidate = rule
        else:
            candidate = FollowUpRule.model_validate(document_of(rule, "rule"))
        return self._admin.dry_run(candidate, sample)
