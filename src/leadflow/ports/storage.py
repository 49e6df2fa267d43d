"""The storage ports: what a backend implements (contracts in the docstrings; the shipped
contract suites are in :mod:`leadflow.testing.contracts`). The scheduled-action store's are in
:mod:`leadflow.ports.scheduled`."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from ..errors import DuplicateError, OpenActivityExistsError
from ..models import Activity, FollowUpRule, Outcome
from ..queries import ActivityFilter, ActivitySort, ActivityStatistics, Page
from ..records import (
    AuditEntry,
    SlotClaim,
    SlotRecord,
    SlotState,
)
from .units import DeferredUnits, DeferredWriteError, SeparateSteps, UnitOfWork

__all__ = [
    "ActivityRepository",
    "AuditLog",
    "BatchActivities",
    "CounterStore",
    "DeferredUnits",
    "DeferredWriteError",
    "JobStore",
    "RuleRepository",
    "SeparateSteps",
    "UnitOfWork",
]


@runtime_checkable
class ActivityRepository(Protocol):
    """Stores activities. Every method is atomic: on error nothing is written.

    Not-found errors are :class:`~leadflow.NotFoundError` (a ``LookupError``). Datetime
    arguments must be timezone-aware and every returned datetime is in UTC; a naive datetime or
    a ``limit`` below 1 is an :class:`~leadflow.InvalidInputError`. Returned activities are
    copies: changing one never changes what is stored.
    """

    def add(self, activity: Activity) -> Activity:
        """Store a new activity as given, with version 1 whatever ``activity.version`` says.

        :class:`DuplicateError` if the id exists. When ``activity.open_key`` is set and another
        activity that is not completed holds the same key, :class:`OpenActivityExistsError`
        (the id is checked first), whether the new activity is open or already completed. The
        check and the insert are one atomic step: of two concurrent adds of open activities with
        one key, exactly one succeeds. Completing or deleting the holder frees the key;
        ``update`` keeps it (it cannot be changed).
        """
        ...

    def get(self, activity_id: str) -> Activity:
        """The activity, or :class:`NotFoundError`."""
        ...

    def update(self, activity: Activity) -> Activity:
        """Replace the stored activity if its stored version equals ``activity.version``.

        Returns the stored copy with ``version + 1``. :class:`StaleWriteError` when the stored
        version differs (someone else wrote first); :class:`NotFoundError` when it is gone.
        """
        ...

    def complete(
        self,
        activity_id: str,
        *,
        outcome: Outcome | None,
        completed_by: str | None,
        completed_at: datetime,
        expected_version: int | None = None,
    ) -> Activity:
        """Mark the activity done: sets ``completed_date``, ``outcome``, ``completed_by``,
        ``updated_at`` (= ``completed_at``), ``updated_by`` (= ``completed_by`` when given) and
        ``version + 1``; returns the stored copy. :class:`NotFoundError` if there is none;
        :class:`InvalidStateError` if it is already done (checked before the version);
        :class:`StaleWriteError` if ``expected_version`` is given and differs."""
        ...

    def delete(self, activity_id: str) -> None:
        """Remove the activity. :class:`NotFoundError` if there is none."""
        ...

    def list(
        self,
        filter: ActivityFilter | None = None,
        *,
        sort: ActivitySort | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Activity]:
        """A page of matching activities in ``sort`` order (default: created_at ascending).
        ``limit`` is 1..1000."""
        ...

    def for_opportunity(
        self, opportunity_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        """All activities of an opportunity (only those assigned to ``assigned_to`` when given),
        oldest first (created_at, activity_id). The scope is part of the query: the cost does
        not grow with the activities it leaves out."""
        ...

    def for_customer(
        self, customer_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        """All activities of a customer (only ``assigned_to``'s when given), oldest first
        (created_at, activity_id)."""
        ...

    def pending(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        """Open activities that are not overdue at ``as_of`` and are scheduled at or before it
        (or have no scheduled date), soonest due first (due_date, activity_id); those without a
        due date come last, by activity_id."""
        ...

    def overdue(
        self, as_of: datetime, *, assigned_to: str | None = None, limit: int = 50
    ) -> builtins.list[Activity]:
        """Open activities due before ``as_of``, most overdue first (due_date, activity_id)."""
        ...

    def upcoming(
        self, as_of: datetime, within: timedelta, *, limit: int = 1000
    ) -> builtins.list[Activity]:
        """Open activities due in ``[as_of, as_of + within)``, soonest first."""
        ...

    def timeline(
        self, opportunity_id: str, *, assigned_to: str | None = None
    ) -> builtins.list[Activity]:
        """An opportunity's activities in chronological order: each at its completed date when
        done, else its scheduled date, else its due date, else its creation; ties by id. One with
        none of these dates comes first. ``assigned_to`` scopes the query as in
        :meth:`for_opportunity`."""
        ...

    def statistics(self, filter: ActivityFilter | None, *, as_of: datetime) -> ActivityStatistics:
        """Aggregates over the activities ``filter`` selects."""
        ...

    def last_activity_times(
        self, opportunity_ids: Sequence[str] | None = None
    ) -> dict[str, datetime]:
        """Per opportunity, the latest of its activities' created and completed dates (all
        opportunities, or those of ``opportunity_ids``). Opportunities without such a date are
        absent."""
        ...

    def stale_opportunities(
        self,
        since: datetime,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 1000,
    ) -> builtins.list[tuple[datetime, str]]:
        """Opportunities whose last activity time (see :meth:`last_activity_times`) is before
        ``since``, as ``(last activity time, opportunity id)`` keys in that order (oldest
        first, ties by id).

        ``after`` is a key of an earlier answer: only keys after it come back, so a caller can
        walk the stale opportunities in pages, or keep its place between runs and see only
        those that became stale since. With ``after``, the cost follows the activities dated
        from ``after``'s time up to ``since`` (whose opportunities are the candidates), not the
        table. :class:`InvalidInputError` unless ``after`` is None or a (timezone-aware
        datetime, string) pair."""
        ...

    def purge_completed(self, before: datetime) -> int:
        """Delete completed activities whose completed date is before ``before``; open ones are
        never purged. Returns how many were deleted."""
        ...


@runtime_checkable
class RuleRepository(Protocol):
    """Stores follow-up rules, and a change stamp of the whole set (:meth:`stamp`) that lets
    a runtime keep its compiled rules until something changed."""

    def create(self, rule: FollowUpRule) -> FollowUpRule:
        """Store a new rule with version 1 whatever ``rule.version`` says; returns the stored
        copy. :class:`DuplicateError` if the id exists."""
        ...

    def get(self, rule_id: str) -> FollowUpRule:
        """The rule, or :class:`NotFoundError`."""
        ...

    def list(self) -> builtins.list[FollowUpRule]:
        """Every rule, in application order (priority descending, then rule_id)."""
        ...

    def list_active(self) -> builtins.list[FollowUpRule]:
        """Active rules, in application order."""
        ...

    def update(self, rule: FollowUpRule) -> FollowUpRule:
        """Replace the rule if the stored version equals ``rule.version``; returns it with
        ``version + 1``. :class:`StaleWriteError` / :class:`NotFoundError` otherwise."""
        ...

    def delete(self, rule_id: str) -> None:
        """Remove the rule. :class:`NotFoundError` if there is none."""
        ...

    def stamp(self) -> int:
        """The rule set's change stamp: a cheap way to tell whether any rule changed.

        It changes whenever a rule is created, updated or deleted through *any* repository
        object or process sharing the stored rules, and only then: reads and refused writes
        (duplicate, stale, not found) leave it as it was. Reading it costs at most one indexed
        read. The shipped stores count changes (it only grows; concurrent writes of different
        rules each count). A change to the stamp must never become visible before the rule
        write it counts (together with it, or after it): then a reader that reads the stamp
        *before* listing the rules never pairs an old rule set with the new stamp. Callers
        compare stamps for equality only.
        """
        ...


@runtime_checkable
class CounterStore(Protocol):
    """Named counters that only go up."""

    def next(self, name: str) -> int:
        """Atomically increment counter ``name`` and return its new value (first call: 1)."""
        ...


@runtime_checkable
class AuditLog(Protocol):
    """Append-only trail of the changes people make: who, when, what before and after."""

    def append(self, entry: AuditEntry) -> None:
        """Store ``entry`` as given (a copy)."""
        ...

    def list(
        self, subject: str | None = None, subject_id: str | None = None
    ) -> builtins.list[AuditEntry]:
        """Entries of one kind of subject (``rule``, ``activity``, ``action``) and/or one subject
        id, or all; oldest first (by ``at``, then insertion)."""
        ...


@runtime_checkable
class JobStore(Protocol):
    """Slot leases, marks and values shared by every instance that runs leadflow's jobs.

    All methods are atomic. Datetimes must be timezone-aware (else
    :class:`~leadflow.InvalidInputError`); returned ones are UTC. Keys (job names, slot keys,
    mark and value keys) are non-empty strings of at most 400 characters.
    """

    def claim_slot(
        self,
        job: str,
        slot: str,
        *,
        worker: str,
        now: datetime,
        lease: timedelta,
        expires_at: datetime,
    ) -> SlotClaim:
        """Take ``(job, slot)`` for ``worker`` until ``now + lease``.

        Succeeds when the slot is unknown, or when it is ``running`` and its lease expired at or
        before ``now`` (the holder crashed or overran: ``attempts`` goes up). Fails, changing
        nothing, when a live lease holds it or it finished. ``expires_at`` is when the record
        may be forgotten; set on creation only.
        """
        ...

    def finish_slot(
        self,
        job: str,
        slot: str,
        *,
        token: str,
        now: datetime,
        state: SlotState,
        counts: Mapping[str, int],
        error: str | None = None,
    ) -> bool:
        """Record the outcome of the claim ``token``. Returns False, changing nothing, when that
        claim no longer holds the slot (another worker took it over after the lease expired).
        ``state`` must be ``succeeded`` or ``failed``."""
        ...

    def get_slot(self, job: str, slot: str) -> SlotRecord | None:
        """The slot's record, or None if unknown (or forgotten)."""
        ...

    def mark(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        """Set mark ``key`` until ``expires_at``. True if this call set it; False if it was
        already set and has not expired (then nothing changes)."""
        ...

    def is_marked(self, key: str, *, now: datetime) -> bool:
        """Whether mark ``key`` is set and not expired at ``now``."""
        ...

    def unmark(self, key: str) -> None:
        """Remove mark ``key`` (no error if absent): the work it recorded did not happen."""
        ...

    def get_value(self, key: str) -> str | None:
        """The value stored under ``key``, or None if there is none."""
        ...

    def set_value(self, key: str, value: str, *, expected: str | None) -> bool:
        """Store ``value`` under ``key`` if the stored value is ``expected`` (None: no value
        yet), in one atomic step: a compare-and-set, so of two instances that read the same
        value only the first write lands. True if it was stored; False, changing nothing,
        otherwise. Values (at most 4,000 characters) never expire: a job keeps its place in
        them (the stale-opportunity job's cursor)."""
        ...

    def purge_expired(self, now: datetime) -> int:
        """Forget slots and marks that expired at or before ``now``; returns how many (values
        are kept)."""
        ...


# --------------------------------------------------------------------------- plain activities


@runtime_checkable
class PlainActivities(Protocol):
    """What an :class:`ActivityRepository` may add to store an activity leadflow builds
    itself (``create_activity``) from its values, without the model being built only to be
    taken apart again (the fast memory store does). Optional: the runtime builds the model and
    calls :meth:`ActivityRepository.add` with a store without it, or when a value is not plain.
    """

    def add_plain(
        self, fields: dict[str, Any], metadata: dict[str, Any]
    ) -> DuplicateError | OpenActivityExistsError | None:
        """Store the activity ``built_activity(fields, metadata)`` (see
        :mod:`leadflow.activity_models`) as :meth:`ActivityRepository.add` would (version 1),
        for values the caller found plain (``plain_activity(fields, metadata)``; the store
        trusts that and checks none of them): None when it was stored, else the refusal
        ``add`` would raise, returned instead (:class:`DuplicateError` when the id exists,
        then :class:`OpenActivityExistsError` when an open activity holds its open key);
        nothing is written then. The dicts are the caller's: the store keeps none of them."""
        ...


# --------------------------------------------------------------------------- many activities


@runtime_checkable
class BatchActivities(Protocol):
    """What an :class:`ActivityRepository` may add to store many new activities in one step
    (the SQL store does: one multi-row ``INSERT ... ON CONFLICT DO NOTHING``; ``handle_many``
    and ``run_due`` store the activities of a batch's ``create_activity`` actions with it).
    Optional: the runtime calls :meth:`ActivityRepository.add` for each activity of a store
    without it."""

    def add_many(
        self, activities: Sequence[Activity]
    ) -> builtins.list[Activity | DuplicateError | OpenActivityExistsError]:
        """Store each of ``activities`` (at most 1,000) as :meth:`ActivityRepository.add`
        would, one after the other: returns, in the order given, what was stored (version 1)
        or the refusal ``add`` would raise (:class:`DuplicateError` when the id exists or
        comes earlier in ``activities``, then :class:`OpenActivityExistsError` when an open
        activity, stored or earlier in ``activities``, holds its open key). A refusal writes
        nothing for its activity and stops none of the others. Any other error (a bad
        activity, the storage failing) is raised and nothing is written; in a unit of work
        the activities are written with the unit."""
        ...
