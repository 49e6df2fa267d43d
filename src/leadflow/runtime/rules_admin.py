"""Changing the rule set through a flow: every rule is checked against this flow's operators and
handlers before it is stored, and a change decides what happens to the rule's pending delayed
actions (cancel or keep, ``FlowSettings.pending_on_rule_change`` by default)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..models import Event, FollowUpRule
from ..records import ScheduledAction
from .results import RuleChange, RuleTestResult
from .settings import PendingPolicy

if TYPE_CHECKING:
    from .flow import LeadFlow

__all__ = ["RulesAdmin"]

log = logging.getLogger("leadflow")


class RulesAdmin:
    """``flow.rules``: create, replace, delete and dry-run rules (no role checks: see
    :mod:`leadflow.access` for the operations people call)."""

    def __init__(self, flow: LeadFlow) -> None:
        self._flow = flow

    def check(self, rule: FollowUpRule) -> None:
        """:class:`RuleValidationError` if this flow could not carry the rule out."""
        self._flow.rulebook.check(rule)

    def create(self, rule: FollowUpRule) -> FollowUpRule:
        """Check and store a new rule; it applies at once on this instance."""
        self.check(rule)
        stored = self._flow.storage.rules.create(rule)
        self._flow.rulebook.invalidate()
        self._flow.emit("rule.created", {"ruleId": stored.rule_id, "actor": stored.created_by})
        return stored

    def replace(self, rule: FollowUpRule, *, pending: PendingPolicy | None = None) -> RuleChange:
        """Check and store a changed rule (optimistic: ``rule.version`` must be the stored one).
        ``pending`` (default: the settings') cancels or keeps the rule's pending delayed
        actions; the cancelled ones are returned."""
        policy = self._policy(pending)
        self.check(rule)
        stored = self._flow.storage.rules.update(rule)
        self._flow.rulebook.invalidate()
        # Only what older versions planned: a handle() that already planned with the new
        # version (here or on another instance) keeps its actions.
        cancelled = self._settle(stored.rule_id, policy, below_version=stored.version)
        self._flow.emit(
            "rule.updated",
            {"ruleId": stored.rule_id, "actor": stored.updated_by, "cancelled": len(cancelled)},
        )
        return RuleChange(stored, cancelled)

    def delete(
        self, rule_id: str, *, actor: str | None = None, pending: PendingPolicy | None = None
    ) -> RuleChange:
        """Delete a rule; ``pending`` as in :meth:`replace`."""
        policy = self._policy(pending)
        self._flow.storage.rules.delete(rule_id)
        self._flow.rulebook.invalidate()
        cancelled = self._settle(rule_id, policy)
        self._flow.emit(
            "rule.deleted", {"ruleId": rule_id, "actor": actor, "cancelled": len(cancelled)}
        )
        return RuleChange(None, cancelled)

    def _policy(self, pending: PendingPolicy | None) -> PendingPolicy:
        policy = self._flow.settings.pending_on_rule_change if pending is None else pending
        if policy not in ("cancel", "keep"):
            raise InvalidInputError("must be 'cancel' or 'keep'", field="pending")
        return policy

    def _settle(
        self, rule_id: str, policy: PendingPolicy, *, below_version: int | None = None
    ) -> tuple[ScheduledAction, ...]:
        if policy == "keep":
            return ()
        cancelled = self._flow.storage.scheduled.cancel_for_rule(
            rule_id, now=self._flow.now(), below_version=below_version
        )
        if cancelled:
            log.info(
                "cancelled %s pending action(s) of a changed rule",
                len(cancelled),
                extra={"rule_id": rule_id},
            )
        return tuple(cancelled)

    def dry_run(self, rule: FollowUpRule, sample: Event | Mapping[str, Any]) -> RuleTestResult:
        """Would ``rule`` (made active for the test) match ``sample``, what would it plan, and
        why. Writes nothing and runs no action. A sample without a time is judged now."""
        candidate = rule.model_copy(update={"is_active": True})
        self.check(candidate)
        if not isinstance(sample, Event):
            if not isinstance(sample, Mapping):
                raise InvalidInputError("expected an event or a mapping", field="sample")
            data = dict(sample)
            if not any(k in data for k in ("time", "occurredAt")):
                data["time"] = self._flow.now()
            sample = Event.model_validate(data)
        engine = self._flow.rulebook.compile([candidate])
        evaluation = engine.evaluate(sample, explain=True)
        explanation = (evaluation.explanations or ())[0]
        return RuleTestResult(
            candidate, explanation.matched, evaluation.planned, explanation.reason, evaluation
        )
