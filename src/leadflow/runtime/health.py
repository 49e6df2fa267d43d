"""Health checks for workers that do not run every action type (issue 19).

A worker claims only the action types its handlers run (:meth:`LeadFlow.run_due`); actions of
the other types wait, pending, for a worker that has their handlers. Two questions follow,
which these functions answer for a worker from what is stored:

* :func:`unrun_rule_types`: which active rules plan actions of types this worker does not run
  (``leadflow worker`` logs them as a warning when it starts);
* :func:`unhandled_action_types`: how many actions of such types are due and still waiting.
  Where some worker runs a type, its due actions are taken within a claim interval; a count
  that stays above zero means no running worker handles the type (the worker's
  ``--metrics-port`` serves it as ``leadflow_unhandled_due_actions{action_type=...}``; see
  ``docs/production.md`` for the alert).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from datetime import datetime

from ..clock import ensure_utc
from ..ports import RuleRepository, ScheduledActionStore
from ..records import ScheduledActionState

__all__ = ["unhandled_action_types", "unrun_rule_types"]


def unrun_rule_types(
    rules: RuleRepository, runnable: Collection[str]
) -> dict[str, tuple[str, ...]]:
    """The action types of active rules that are not in ``runnable`` (e.g.
    ``flow.handlers.runnable()``), each with the ids of the rules that use it, sorted."""
    found: dict[str, set[str]] = {}
    for rule in rules.list_active():
        for action in rule.actions:
            if action.action_type not in runnable:
                found.setdefault(action.action_type, set()).add(rule.rule_id)
    return {action_type: tuple(sorted(found[action_type])) for action_type in sorted(found)}


def unhandled_action_types(
    scheduled: ScheduledActionStore,
    runnable: Collection[str],
    *,
    now: datetime,
    limit: int = 1000,
) -> dict[str, int]:
    """How many pending actions due by ``now`` are of each action type not in ``runnable``
    (deliveries never count: every worker runs them), among the ``limit`` pending actions due
    soonest (one store read: :meth:`~leadflow.ports.ScheduledActionStore.list`). Types with
    none are absent; the result is sorted by type."""
    now = ensure_utc(now, "now")
    counts: Counter[str] = Counter()
    for action in scheduled.list(ScheduledActionState.PENDING, limit=limit):
        if action.due_at > now:
            break
        if action.action is not None and action.action.action_type not in runnable:
            counts[action.action.action_type] += 1
    return dict(sorted(counts.items()))
