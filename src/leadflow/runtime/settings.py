"""The runtime's policies as data: retries, cascades, due times, leases, retention.

Every value has a documented default; a host passes its own :class:`FlowSettings` to
:class:`~leadflow.LeadFlow`. Nothing here does anything: the runtime reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from ..errors import InvalidInputError
from ..limits import DEFAULT_LIMITS

__all__ = ["FlowSettings", "PendingPolicy", "RetryPolicy"]

PendingPolicy = Literal["cancel", "keep"]
UnknownEvents = Literal["refuse", "accept"]
"""What happens to a rule's pending delayed actions when the rule is changed or deleted."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff for transient failures: ``base * factor ** (attempt - 1)``, capped at
    ``cap``; an action is parked after ``max_attempts`` failed attempts. A permanent failure (a
    :class:`~leadflow.PermanentError`, an unknown opportunity, invalid params) is parked at once."""

    max_attempts: int = 5
    base: timedelta = timedelta(seconds=30)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or not 1 <= self.max_attempts <= 100:
            raise InvalidInputError("must be an integer in 1..100", field="max_attempts")
        if self.base <= timedelta(0) or self.cap < self.base or self.factor < 1:
            raise InvalidInputError("need 0 < base <= cap and factor >= 1", field="retry")

    def delay_after(self, attempt: int) -> timedelta:
        """How long to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), 64)
        return min(self.cap, self.base * min(self.factor**exponent, 2**40))


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """How a :class:`~leadflow.LeadFlow` behaves.

    ``due_grace``: an automated activity is due at the event's time plus the action's delay
    (the seed's timing: the website lead's call is due one hour after the lead); a grace window
    moves the due date that much later (an action may set ``dueWithinHours`` itself).
    ``max_cascade_depth``: how many times events caused by actions may feed the rules in a row.
    ``action_lease``: how long a worker holds an action it runs before another may retake it.
    ``rules_refresh``: how much wall time (``time.monotonic``, never the flow's clock) may pass
    between two reads of the rule store's change stamp; the compiled rules are kept until the
    stamp moves, and then only the changed rules are compiled again. A change made through
    another instance or process applies within this time; one made through this instance
    applies at once. ``timedelta(0)`` reads the stamp at every event.
    ``retention``: how long finished (done or cancelled) scheduled actions are kept before the
    clean-up job purges them; keep it longer than an event may be redelivered.
    ``pending_on_rule_change``: what a rule change or deletion does to the rule's pending
    delayed actions unless the caller says otherwise: ``cancel`` (the default: an edited rule's
    old plans no longer hold) or ``keep``.
    ``partitions``: how many partitions (shards) scheduled actions are spread over, by a
    stable hash of their opportunity id (1, the default: one partition). Workers may then be
    pinned to a partition (``run_due(partition=p)``); ``run_due()`` without one still takes
    from all. Every instance must use the same count; changing it moves future actions only,
    so drain the old partitions with an unpinned ``run_due()`` after a change.
    ``system_user``: the id recorded as creator of automated activities.
    ``worker_id``: this instance's name in leases (default: host, pid and a random suffix).
    ``contact_daily_cap``: at most that many automated messages (``send_email`` and
    ``send_sms`` steps of sequences) per contact (opportunity) and local day, across all
    sequences; one beyond it is deferred to the next day's send window, never dropped (None,
    the default: no cap; a sequence's own ``daily_cap`` applies too).
    ``unknown_event_types``: what ``handle`` does with an event whose type the flow does not
    know (not a seed type, not registered with ``event_types``): ``refuse`` (the default:
    :class:`InvalidInputError` naming ``type`` with the closest known name, since a misspelled
    type would match nothing, silently) or ``accept`` (for hosts that pass every event of their
    bus through; such an event simply matches no rule).
    """

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    due_grace: timedelta = timedelta(0)
    max_cascade_depth: int = 5
    action_lease: timedelta = timedelta(minutes=5)
    rules_refresh: timedelta = timedelta(seconds=30)
    retention: timedelta = timedelta(days=30)
    pending_on_rule_change: PendingPolicy = "cancel"
    partitions: int = 1
    system_user: str = "leadflow"
    worker_id: str | None = None
    unknown_event_types: UnknownEvents = "refuse"
    contact_daily_cap: int | None = None

    def __post_init__(self) -> None:
        cap = self.contact_daily_cap
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise InvalidInputError("must be None or a positive integer", field="contact_daily_cap")
        if not isinstance(self.retry, RetryPolicy):
            raise InvalidInputError("expected a RetryPolicy", field="retry")
        if not isinstance(self.max_cascade_depth, int) or not 0 <= self.max_cascade_depth <= 50:
            raise InvalidInputError("must be an integer in 0..50", field="max_cascade_depth")
        for name in ("due_grace", "action_lease", "rules_refresh", "retention"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value < timedelta(0):
                raise InvalidInputError("must be a non-negative timedelta", field=name)
        if self.action_lease <= timedelta(0):
            raise InvalidInputError("must be positive", field="action_lease")
        if (
            isinstance(self.partitions, bool)
            or not isinstance(self.partitions, int)
            or not 1 <= self.partitions <= DEFAULT_LIMITS.partitions
        ):
            raise InvalidInputError(
                f"must be an integer in 1..{DEFAULT_LIMITS.partitions}", field="partitions"
            )
        if self.pending_on_rule_change not in ("cancel", "keep"):
            raise InvalidInputError("must be 'cancel' or 'keep'", field="pending_on_rule_change")
        if self.unknown_event_types not in ("refuse", "accept"):
            raise InvalidInputError("must be 'refuse' or 'accept'", field="unknown_event_types")

    def checked_partition(self, partition: object) -> int | None:
        """``partition`` if it is None (every partition) or one of this flow's partitions
        (``0 .. partitions - 1``); :class:`InvalidInputError` (field ``partition``) if not."""
        if partition is None:
            return None
        if (
            isinstance(partition, bool)
            or not isinstance(partition, int)
            or not 0 <= partition < self.partitions
        ):
            raise InvalidInputError(
                f"must be None or an integer in 0..{self.partitions - 1}", field="partition"
            )
        return partition
