"""Who gets the work: the lead's owner, round robin, the least loaded rep, or a fixed user."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..errors import InvalidInputError
from ..models import ActivityState
from ..ports import Storage
from ..queries import ActivityFilter
from .context import ActionContext

__all__ = ["STRATEGIES", "open_activity_counts", "resolve_assignee"]

STRATEGIES = ("lead_owner", "round_robin", "least_loaded")
"""The assignment strategies ``assignTo`` may name; any other value is a user id."""


def open_activity_counts(storage: Storage, users: Sequence[str], now: datetime) -> dict[str, int]:
    """Open (not completed) activities per user."""
    counts: dict[str, int] = {}
    for user in users:
        stats = storage.activities.statistics(ActivityFilter(assigned_to=user), as_of=now)
        counts[user] = stats.total - stats.by_state.get(ActivityState.COMPLETED.value, 0)
    return counts


def resolve_assignee(ctx: ActionContext[Any], strategy: str | None) -> str | None:
    """The user ``strategy`` picks for this action (None when there is no strategy).

    ``lead_owner``: the opportunity's owner from the host's gateway. ``round_robin``: the team's
    reps in turn, on one shared counter (fair across rules, restarts and instances).
    ``least_loaded``: the rep with the fewest open activities (ties: team order).
    """
    if strategy is None:
        return None
    if strategy == "lead_owner":
        return ctx.integrations.opportunities.owner(ctx.opportunity_id())
    if strategy in ("round_robin", "least_loaded"):
        reps = list(ctx.integrations.team.sales_reps())
        if not reps:
            raise InvalidInputError("no sales reps to assign to", field="team")
        if strategy == "round_robin":
            turn = ctx.storage.counters.next("assignment:round_robin")
            return reps[(turn - 1) % len(reps)]
        loads = open_activity_counts(ctx.storage, reps, ctx.now)
        return min(reps, key=lambda rep: (loads.get(rep, 0), reps.index(rep)))
    return strategy
