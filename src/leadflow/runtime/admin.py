"""Changing the rule set through a flow: every rule is checked against this flow's operators and
handlers before it is stored, and a change decides what happens to the rule's pending delayed
actions (cancel or keep, ``FlowSettings.pending_on_rule_change`` by default)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ..clock import ensure_utc
from ..errors import DuplicateError, InvalidInputError
from ..models import Event, FollowUpRule
from ..ports import Clock, RuleRepository, ScheduledActionStore
from ..records import ScheduledAction
from ..rules import default_rules
from .emitter import Emitter
from .results import RuleChange, RuleTestResult
from .rulebook import RuleBook
from .settings import FlowSettings, PendingPolicy

__all__ = ["RulesAdmin"]

log = logging.getLogger("leadflow")


class RulesAdmin:
    """``flow.rules``: create, replace, delete and dry-run rules (no role checks: see
    :mod:`leadflow.access` for the operations people call)."""

    def __init__(
        self,
        *,
        rulebook: RuleBook,
        rules: RuleRepository,
        scheduled: ScheduledActionStore,
        settings: FlowSettings,
        clock: Clock,
        emit: Emitter,
    ) -> None:
        self._rulebook = rulebook
        self._rules = rules
        self._scheduled = scheduled
        self._settings = settings
        self._clock = clock
        self._emit = emit

    def _now(self) -> datetime:
        return ensure_utc(self._clock.now(), "clock.now()")

    def check(self, rule: FollowUpRule) -> None:
        """:class:`RuleValidationError` if this flow could not carry the rule out."""
        self._rulebook.check(rule)

    def create(self, rule: FollowUpRule) -> FollowUpRule:
        """Check and store a new rule; it applies at once on this instance."""
        self.check(rule)
        stored = self._rules.create(rule)
        self._rulebook.invalidate()
        self._emit("rule.created", {"ruleId": stored.rule_id, "actor": stored.created_by})
        return stored

    def ensure_defaults(self, rules: Iterable[FollowUpRule] | None = None) -> list[FollowUpRule]:
        """Store each of ``rules`` (default: :func:`~leadflow.default_rules`) whose id is not
        stored yet, and return the ones this call created (the others were there already).

        Race-safe: any number of processes may call it at once on one store (replicas
        seeding at start-up): a rule another caller created meanwhile
        (:class:`DuplicateError`) counts as there, so each rule is created once and no call
        fails for it. A stored rule is never changed (an admin's edits stay), and a default
        an admin deleted comes back at the next call: switch a default off with
        ``isActive: false`` instead of deleting it. Each rule is checked as :meth:`create`
        checks it."""
        wanted = list(default_rules() if rules is None else rules)
        stored = {rule.rule_id for rule in self._rules.list()}
        created: list[FollowUpRule] = []
        for rule in wanted:
            if rule.rule_id in stored:
                continue
            try:
                created.append(self.create(rule))
            except DuplicateError:
                continue  # created by another caller since the list was read
        if created:
            log.info(
                "added %s default rule(s)",
                len(created),
                extra={"rule_ids": [rule.rule_id for rule in created]},
            )
        return created

    def replace(self, rule: FollowUpRule, *, pending: PendingPolicy | None = None) -> RuleChange:
        """Check and store a changed rule (optimistic: ``rule.version`` must be the stored one).
        ``pending`` (default: the settings') cancels or keeps the rule's pending delayed
        actions; the cancelled ones are returned."""
        policy = self._policy(pending)
        self.check(rule)
        stored = self._rules.update(rule)
        self._rulebook.invalidate()
        # Only what older versions planned: a handle() that already planned with the new
        # version (here or on another instance) keeps its actions.
        cancelled = self._settle(stored.rule_id, policy, below_version=stored.version)
        self._emit(
            "rule.updated",
            {"ruleId": stored.rule_id, "actor": stored.updated_by, "cancelled": len(cancelled)},
        )
        return RuleChange(stored, cancelled)

    def delete(
        self, rule_id: str, *, actor: str | None = None, pending: PendingPolicy | None = None
    ) -> RuleChange:
        """Delete a rule; ``pending`` as in :meth:`replace`."""
        policy = self._policy(pending)
        self._rules.delete(rule_id)
        self._rulebook.invalidate()
        cancelled = self._settle(rule_id, policy)
        self._emit("rule.deleted", {"ruleId": rule_id, "actor": actor, "cancelled": len(cancelled)})
        return RuleChange(None, cancelled)

    def _policy(self, pending: PendingPolicy | None) -> PendingPolicy:
        policy = self._settings.pending_on_rule_change if pending is None else pending
        if policy not in ("cancel", "keep"):
            raise InvalidInputError("must be 'cancel' or 'keep'", field="pending")
        return policy

    def _settle(
        self, rule_id: str, policy: PendingPolicy, *, below_version: int | None = None
    ) -> tuple[ScheduledAction, ...]:
        if policy == "keep":
            return ()
        cancelled = self._scheduled.cancel_for_rule(
            rule_id, now=self._now(), below_version=below_version
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
                data["time"] = self._now()
            sample = Event.model_validate(data)
        engine = self._rulebook.compile([candidate])
        evaluation = engine.evaluate(sample, explain=True)
        explanation = (evaluation.explanations or ())[0]
        return RuleTestResult(
            candidate, explanation.matched, evaluation.planned, explanation.reason, evaluation
        )
