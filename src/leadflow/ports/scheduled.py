"""The scheduled-action store's ports: the store every planned action, delivery and sequence
visit lives in (:class:`ScheduledActionStore`), and what a store may add to schedule,
acknowledge and cancel in batches (contracts in the docstrings; the shipped suite is
:class:`~leadflow.testing.contracts.ScheduledActionStoreContract`)."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from ..records import ScheduledAction, ScheduledActionState

__all__ = [
    "AcknowledgedScheduling",
    "BatchAcknowledgement",
    "BatchScheduling",
    "PendingCancellation",
    "ScheduledActionStore",
]


@runtime_checkable
class ScheduledActionStore(Protocol):
    """Durable delayed actions with leases, retries and parking.

    A worker holds an action while it is ``claimed`` with that worker as ``lease_owner``; the
    lease counts until another worker claims the action after ``lease_expires_at``. Not-found
    errors are :class:`NotFoundError`; naive datetimes and a ``limit`` below 1 are
    :class:`InvalidInputError`. Returned actions are copies.
    """

    def schedule(self, action: ScheduledAction) -> tuple[ScheduledAction, bool]:
        """Store ``action`` unless one with its idempotency key exists. Returns the stored
        action and whether it was newly created. :class:`DuplicateError` if its ``action_id``
        is taken by an action with another key."""
        ...

    def get(self, action_id: str) -> ScheduledAction:
        """The action, or :class:`NotFoundError`."""
        ...

    def claim_due(
        self,
        now: datetime,
        *,
        worker: str,
        limit: int = 100,
        lease: timedelta = timedelta(minutes=5),
        partition: int | None = None,
        action_types: Collection[str] | None = None,
    ) -> builtins.list[ScheduledAction]:
        """Atomically claim up to ``limit`` actions that are pending and due (``due_at <= now``)
        or claimed with an expired lease (``lease_expires_at <= now``); each claim sets state
        ``claimed``, the lease owner and expiry (``now + lease``), and increments ``attempts``.
        Two workers never hold the same action. Oldest due first (due_at, action_id).
        An expired action that already used its last attempt (``attempts >= max_attempts``) is
        parked instead of claimed, so an action that kills its worker cannot loop forever.

        ``partition``: None claims from every partition; a number claims (and parks) only
        actions of that partition, and the store's query carries it (the shard key of a
        sharded table or collection). :class:`InvalidInputError` unless it is an ``int`` in
        ``0 .. DEFAULT_LIMITS.partitions - 1``.

        ``action_types``: None claims actions of any type; a collection (list, tuple, set) of
        action type names claims only the actions of those types, plus every action without
        one (an outbox delivery, a sequence's timer visit: any runtime runs them): a worker
        claims only what its handlers can run, and actions of other types stay pending, in due
        order, for a worker that has them. Expired leases of other types are neither reclaimed
        nor parked. :class:`InvalidInputError` (``action_types``) unless it is None or such a
        collection of at most 200 lower_snake_case names; an empty one claims only the actions
        without a type."""
        ...

    def mark_done(self, action_id: str, *, worker: str, now: datetime) -> ScheduledAction:
        """Finish a claimed action: state ``done``, ``finished_at = now``.
        :class:`ConflictError` if ``worker`` no longer holds it."""
        ...

    def mark_done_many(
        self, action_ids: Sequence[str], *, worker: str, now: datetime
    ) -> builtins.list[ScheduledAction]:
        """Finish, in one atomic step, those of ``action_ids`` (at most 1,000) that ``worker``
        still holds, as :meth:`mark_done` does; the others (finished, taken over after the
        lease ran out, unknown) are left as they are. Returns the actions marked done, in the
        order given: a caller compares it with what it asked for."""
        ...

    def mark_failed(
        self,
        action_id: str,
        *,
        worker: str,
        now: datetime,
        error: str,
        retry_at: datetime,
        permanent: bool = False,
    ) -> ScheduledAction:
        """Record a failure in ``last_error``: back to ``pending`` due at ``retry_at``, or
        ``parked`` (``finished_at`` stays None) when ``attempts`` reached ``max_attempts`` or
        ``permanent`` is true (retrying cannot help). :class:`ConflictError` if the lease was
        lost."""
        ...

    def retry(self, action_id: str, *, now: datetime) -> ScheduledAction:
        """Make a parked action pending again, due now, with its attempts reset and its
        ``last_error`` cleared (the failure that parked it is history, in the audit log).
        :class:`InvalidStateError` if it is not parked."""
        ...

    def cancel_for_opportunity(self, opportunity_id: str, *, now: datetime) -> int:
        """Cancel the pending actions of an opportunity (claimed ones are left to finish): state
        ``cancelled``, ``finished_at = now``. Returns how many."""
        ...

    def cancel_for_rule(
        self, rule_id: str, *, now: datetime, below_version: int | None = None
    ) -> builtins.list[ScheduledAction]:
        """Cancel the pending actions a rule planned (claimed ones are left to finish): state
        ``cancelled``, ``finished_at = now``. With ``below_version``, only those planned by an
        older version of the rule (``rule_version`` below it, or unknown): what a version
        planned after the change is kept. Returns the cancelled actions, soonest due first.
        :class:`InvalidInputError` unless ``below_version`` is None or a positive ``int``."""
        ...

    def purge_finished(self, before: datetime, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` finished actions (``done`` or ``cancelled``) whose
        ``finished_at`` is before ``before``; pending, claimed and parked ones are never purged.
        Returns how many were deleted. A purged key may be scheduled again (keep finished
        actions longer than an event may be redelivered)."""
        ...

    def list(
        self, state: ScheduledActionState | None = None, *, limit: int = 100
    ) -> builtins.list[ScheduledAction]:
        """Actions in ``state`` (all when None), soonest due first (due_at, action_id)."""
        ...

    def next_due(self, *, partition: int | None = None) -> datetime | None:
        """The earliest ``due_at`` of a pending action (of ``partition`` when given, checked as
        in :meth:`claim_due`), or None when none is pending: when the next :meth:`claim_due`
        can find work, short of a claimed action whose lease runs out. One index read."""
        ...


@runtime_checkable
class BatchScheduling(Protocol):
    """What a :class:`ScheduledActionStore` may add to store many actions in one step (the SQL
    store does: one multi-row ``INSERT ... ON CONFLICT DO NOTHING``). Optional: the runtime
    calls :meth:`ScheduledActionStore.schedule` for each action of a store without it."""

    def schedule_many(self, actions: Sequence[ScheduledAction]) -> builtins.list[bool]:
        """Store each of ``actions`` (at most 1,000) unless one with its idempotency key (or
        its ``action_id``) exists or comes earlier in ``actions``, in one atomic step. Returns,
        in the order given, whether each was newly created. Unlike :meth:`schedule`, an action
        whose id another key holds is reported not created, not raised."""
        ...


@runtime_checkable
class AcknowledgedScheduling(Protocol):
    """What a :class:`ScheduledActionStore` may add so that the claimed actions a unit of work
    stores and runs need no acknowledgement of their own (the SQL store on PostgreSQL: they go
    in done, no ``UPDATE`` of the rows just inserted). Optional: ``handle_many`` uses it for a
    chunk whose run-now handlers read no stored action, where the store's class defines it (a
    wrapper that passes calls on keeps seeing the acknowledgements it may watch); elsewhere it
    stores with :meth:`BatchScheduling.schedule_many` and acknowledges the successes after
    they ran."""

    def schedule_done(
        self, actions: Sequence[ScheduledAction], *, now: datetime
    ) -> builtins.list[bool] | None:
        """Inside an atomic unit of work: :meth:`BatchScheduling.schedule_many`, except that
        each new action in the ``claimed`` state is stored as marking it done by its lease
        owner at ``now`` would leave it; until the unit ends,
        :meth:`ScheduledActionStore.mark_failed` by that worker finds it as claimed. Where
        the store cannot (outside a unit of work, or a backend that needs none of it): None,
        and nothing is stored."""
        ...


@runtime_checkable
class BatchAcknowledgement(Protocol):
    """What a :class:`ScheduledActionStore` may add to acknowledge a batch without reading the
    finished actions back (the SQL store does: ``UPDATE ... RETURNING action_id``). Optional:
    the runtime calls :meth:`ScheduledActionStore.mark_done_many` on a store without it, and
    reads only the ids of what it returns."""

    def mark_done_ids(
        self, action_ids: Sequence[str], *, worker: str, now: datetime
    ) -> builtins.list[str]:
        """What :meth:`ScheduledActionStore.mark_done_many` does, in one atomic step; returns
        the ids of the actions marked done, in the order given."""
        ...


@runtime_checkable
class PendingCancellation(Protocol):
    """What a :class:`ScheduledActionStore` may add to cancel chosen actions (every shipped
    store does; sequences use it to cancel an ended enrollment's pending visit at once rather
    than skip it when it comes due)."""

    def cancel_pending(
        self, action_ids: Sequence[str], *, now: datetime
    ) -> builtins.list[ScheduledAction]:
        """Cancel those of ``action_ids`` (at most 1,000) that are still pending, in one
        atomic step per action: state ``cancelled``, ``finished_at = now``. Claimed ones are
        left to finish, finished and unknown ones are left as they are. Returns the cancelled
        actions in the order given. :class:`InvalidInputError` for anything but a list or
        tuple of ids."""
        ...
