"""The analytics port: where the facts the analytics are computed from are kept (contract in
the docstrings; the shipped suite is :class:`leadflow.testing.contracts.AnalyticsStoreContract`).

The facts (:mod:`leadflow.facts`) are recorded by the runtime as events arrive, in the event's
unit of work; the figures (:mod:`leadflow.runtime.analytics`) are computed from what the
queries below return. Every query takes a half-open period ``[start, end)`` of aware
datetimes and answers from an index on the period's column: its cost follows the facts in the
period, not the store.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from ..facts import (
    Completion,
    CompletionGroup,
    LateContact,
    LeadArrival,
    LeadSummary,
    LeadSums,
    StageSums,
    StatusChange,
    Touches,
)

__all__ = ["AnalyticsStore", "BatchFacts"]


@runtime_checkable
class AnalyticsStore(Protocol):
    """Stores lead arrivals, status changes and completions, and answers the period queries
    the analytics take.

    Writes are atomic and idempotent: recording a fact whose key is stored changes nothing and
    returns False. Datetime arguments must be timezone-aware (else
    :class:`~leadflow.InvalidInputError`, as for ``start`` not before ``end``); returned
    datetimes are UTC and returned facts are copies. Each query answers at most ``limit``
    facts (default 1,000,000) in its order; a backend may refuse a ``limit`` above that.
    """

    def record_arrival(self, arrival: LeadArrival) -> bool:
        """Store ``arrival`` unless its opportunity has one (whatever its event id): True when
        stored."""
        ...

    def record_status_change(self, change: StatusChange) -> bool:
        """Store ``change`` unless one with its ``event_id`` is stored: True when stored."""
        ...

    def record_completion(self, completion: Completion) -> bool:
        """Store ``completion`` unless one with its ``activity_id`` is stored: True when
        stored."""
        ...

    def arrivals(
        self,
        start: datetime,
        end: datetime,
        *,
        sources: Collection[str] | None = None,
        owners: Collection[str] | None = None,
        limit: int = 1_000_000,
    ) -> builtins.list[LeadArrival]:
        """Arrivals with ``start <= arrived_at < end`` (of ``sources`` / ``owners`` when
        given: an arrival without a source or owner matches no such filter), by
        ``(arrived_at, opportunity_id)``."""
        ...

    def arrivals_of(self, opportunity_ids: Collection[str]) -> dict[str, LeadArrival]:
        """The arrivals of the given opportunities (at most 100,000 ids, else
        :class:`~leadflow.InvalidInputError`), whenever they came, by opportunity id;
        opportunities without one are absent. The filters of the figures over status changes
        and completions (a lead's source and owner) read them."""
        ...

    def status_changes(
        self, start: datetime, end: datetime, *, limit: int = 1_000_000
    ) -> builtins.list[StatusChange]:
        """Status changes with ``start <= changed_at < end``, by ``(changed_at, event_id)``."""
        ...

    def completions(
        self,
        start: datetime,
        end: datetime,
        *,
        assigned_to: Collection[str] | None = None,
        limit: int = 1_000_000,
    ) -> builtins.list[Completion]:
        """Completions with ``start <= completed_at < end`` (assigned to one of
        ``assigned_to`` when given), by ``(completed_at, activity_id)``."""
        ...

    def completion_groups(
        self,
        start: datetime,
        end: datetime,
        *,
        by: str,
        keys: Collection[str | None] | None = None,
        median: bool = True,
        opportunities: bool = True,
    ) -> builtins.list[CompletionGroup]:
        """The completions with ``start <= completed_at < end`` summed up per ``by``
        (``"assigned_to"`` or ``"rule_id"``, else :class:`~leadflow.InvalidInputError`), of
        those whose ``by`` is one of ``keys`` when given (None in ``keys``: none), by key
        (None first). The sums are made where the facts are kept (SQL: ``GROUP BY`` over an
        index, an exact median per key), so only one row per key comes back. ``median=False``
        leaves the median time to complete out (None) and ``opportunities=False`` the count
        of distinct opportunities (0), each of which sorts the period's completions once
        more (neither True nor False: :class:`~leadflow.InvalidInputError`)."""
        ...

    def first_contacts(
        self, start: datetime, end: datetime, *, limit: int = 1_000_000
    ) -> builtins.list[Completion]:
        """For each opportunity that arrived in ``[start, end)``, its earliest completion of a
        contact type (:data:`~leadflow.facts.CONTACT_TYPES`; ties by ``activity_id``), whenever
        it came; opportunities without one are absent. By ``(opportunity_id)``."""
        ...

    def reached(self, start: datetime, end: datetime, status: str) -> dict[str, datetime]:
        """For each opportunity that arrived in ``[start, end)`` and has a status change to
        ``status`` (whenever it came), the earliest such change's time."""
        ...

    # ------------------------------------------------------------------ added for issue 20's
    # scale targets: the automation figure's last-touch wins and A/B branches read the
    # completions of a few opportunities (those won in the period, those enrolled) rather
    # than all the period's.

    def completions_of(
        self, opportunity_ids: Collection[str], start: datetime, end: datetime
    ) -> builtins.list[Completion]:
        """The completions of the given opportunities (at most 100,000 ids, else
        :class:`~leadflow.InvalidInputError`) with ``start <= completed_at < end``, by
        ``(completed_at, activity_id)``."""
        ...

    def completion_buckets(
        self,
        start: datetime,
        end: datetime,
        *,
        width: timedelta,
        by: str | None = None,
        keys: Collection[str | None] | None = None,
    ) -> dict[int, CompletionGroup]:
        """The completions with ``start <= completed_at < end`` counted per bucket of
        ``width`` from ``start`` (bucket ``n``: ``start + n * width <= completed_at <
        start + (n + 1) * width``), of those whose ``by`` (``"assigned_to"`` or
        ``"rule_id"``) is one of ``keys`` when both are given (as :meth:`completion_groups`);
        buckets without any are absent. Each group has key None and its ``completed``,
        ``with_due`` and ``on_time`` (no median, opportunities or outcomes). ``width`` is a
        timedelta of at least one second, else :class:`~leadflow.InvalidInputError`. One
        ``GROUP BY`` on SQL: the weekly trend costs what one period query does."""
        ...

    def won_touches(
        self,
        start: datetime,
        end: datetime,
        status: str,
        *,
        keys: Collection[str | None] | None = None,
    ) -> builtins.list[Touches]:
        """For the opportunities with a change to ``status`` in ``[start, end)`` (each at its
        first such change in the period), what each automation earned
        (:func:`~leadflow.facts.touches_of`: conversions and last-touch wins), counting only
        the completions whose ``rule_id`` is one of ``keys`` when given; by key (None first).
        Summed up where the facts are kept: one row per automation comes back."""
        ...

    def stage_sums(
        self, start: datetime, end: datetime, stages: Sequence[str]
    ) -> builtins.list[StageSums]:
        """:func:`~leadflow.facts.stage_sums_of` of the status changes with ``start <=
        changed_at < end`` over ``stages`` (1 to 50 distinct strings, else
        :class:`~leadflow.InvalidInputError`), one per stage in order. Summed up where the
        facts are kept (SQL: window functions over the period's changes)."""
        ...

    # ------------------------------------------------------------------ added for issue 20's
    # scale targets: the leads of a period (speed to lead, lead sources, the leaderboard's
    # speed and wins, the trend's leads) summed up where the facts are kept, one row per group
    # coming back, instead of the period's arrivals, first contacts and wins one by one.

    def lead_sums(
        self,
        start: datetime,
        end: datetime,
        *,
        status: str,
        day: timedelta,
        by: str | None = None,
        origin: datetime | None = None,
        width: timedelta | None = None,
        reps: Collection[str | None] | None = None,
        sources: Collection[str | None] | None = None,
        automations: Collection[str | None] | None = None,
    ) -> builtins.list[LeadSums]:
        """:class:`~leadflow.facts.LeadSums` of the leads with ``start <= arrived_at < end``
        (their first contact and first change to ``status`` whenever they came), of those
        whose rep is one of ``reps``, whose source is one of ``sources`` and whose first
        contact's rule id is one of ``automations`` (a lead not contacted matches no
        automation) when given (None in a filter: none), grouped ``by`` None (one group),
        ``"rep"``, ``"source"`` or ``"bucket"`` (``bucket n``: ``origin + n * width <=
        arrived_at < origin + (n + 1) * width``; ``origin`` not after ``start``, ``width`` at
        least a second). By ``(key, bucket)``, None first; no group without a lead. ``day`` (a
        positive timedelta) is the third of ``within``. Bad arguments:
        :class:`~leadflow.InvalidInputError` naming the field. Summed up where the facts are
        kept (SQL: ``GROUP BY``, percentiles by ``percentile_disc`` or a windowed rank): its
        cost follows the leads of the period, not the store."""
        ...

    def late_contacts(
        self,
        start: datetime,
        end: datetime,
        *,
        day: timedelta,
        reps: Collection[str | None] | None = None,
        sources: Collection[str | None] | None = None,
        automations: Collection[str | None] | None = None,
    ) -> builtins.list[LateContact]:
        """The leads with ``start <= arrived_at < end`` (filtered as :meth:`lead_sums`) first
        contacted more than ``day`` after they arrived, in no given order: the only ones the
        working calendar must judge for "within one business day"."""
        ...

    # ------------------------------------------------------------------ added for issue 20's
    # year dashboard: every grouping of the period's leads from one read of them.

    def lead_summary(
        self,
        start: datetime,
        end: datetime,
        *,
        status: str,
        day: timedelta,
        groupings: Collection[str | None],
        origin: datetime | None = None,
        width: timedelta | None = None,
        reps: Collection[str | None] | None = None,
        sources: Collection[str | None] | None = None,
        automations: Collection[str | None] | None = None,
        late: bool = False,
    ) -> LeadSummary:
        """What :meth:`lead_sums` answers for each of ``groupings`` (1 to 4 distinct of None,
        ``"rep"``, ``"source"``, ``"bucket"``; ``origin`` and ``width`` with ``"bucket"``
        only) and, when ``late``, what :meth:`late_contacts` answers, for the same period and
        filters, from one read of the period's leads (SQL: one statement, one row per lead
        the filters take; summed up by :func:`leadflow.stores.analytics_summary.summary_of`).
        Bad arguments: :class:`~leadflow.InvalidInputError` naming the field."""
        ...


@runtime_checkable
class BatchFacts(Protocol):
    """What an :class:`AnalyticsStore` may add to record the facts of many events in one step
    (the SQL store does: one multi-row ``INSERT ... ON CONFLICT DO NOTHING`` per kind of fact).
    Optional: the runtime calls the ``record_*`` methods one by one on a store without it."""

    def record_many(
        self,
        arrivals: Sequence[LeadArrival],
        changes: Sequence[StatusChange],
        completions: Sequence[Completion],
    ) -> None:
        """Record each fact as its ``record_*`` method would (a fact whose key is stored
        already, or comes earlier in its list, is left alone), at most 1,000 of each kind
        (else :class:`~leadflow.InvalidInputError`, nothing written), in one atomic step."""
        ...
