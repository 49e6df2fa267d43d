"""What the figures of one period under one set of filters read from the analytic store, each
read at most once: the figures of a dashboard share their reads (the period's leads, their
first contacts and wins, the status changes, the completions when the filters need them one
by one). Used by :class:`leadflow.runtime.analytics.Analytics`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from functools import cached_property

from ..facts import (
    Completion,
    CompletionGroup,
    LeadArrival,
    StatusChange,
    groups_of,
    total_of,
)
from ..ports import AnalyticsStore
from ..rules.calendar import WorkingCalendar
from .analytics_automation import first_wins
from .analytics_figures import MANUAL, NONE, SpeedToLeadReport, speed_of
from .analytics_period import weeks_of
from .analytics_scope import Scope, chunks

__all__ = ["Reads"]

WEEK = timedelta(days=7)


class Reads:
    """The reads of ``[start, end)`` under ``scope`` (not thread-safe: one per query)."""

    def __init__(
        self,
        store: AnalyticsStore,
        calendar: WorkingCalendar,
        won_status: str,
        start: datetime,
        end: datetime,
        scope: Scope,
    ) -> None:
        self.store = store
        self.calendar = calendar
        self.won_status = won_status
        self.start = start
        self.end = end
        self.scope = scope

    @cached_property
    def leads(self) -> tuple[list[LeadArrival], list[Completion]]:
        """The period's arrivals the filters take, and the first contacts of all of them."""
        scope = self.scope
        arrivals = self.store.arrivals(self.start, self.end, sources=scope.store_sources())
        contacts = self.store.first_contacts(self.start, self.end)
        if not scope.everything:
            first = {contact.opportunity_id: contact for contact in contacts}
            arrivals = [a for a in arrivals if scope.takes_lead(a, first.get(a.opportunity_id))]
        return arrivals, contacts

    @cached_property
    def speed(self) -> SpeedToLeadReport:
        arrivals, contacts = self.leads
        return speed_of(arrivals, contacts, self.calendar)

    @cached_property
    def wins(self) -> dict[str, datetime]:
        """The first win of each lead of the period (whenever it came)."""
        return self.store.reached(self.start, self.end, self.won_status)

    @cached_property
    def changes(self) -> list[StatusChange]:
        """The status changes of the period (all of them)."""
        return self.store.status_changes(self.start, self.end)

    @cached_property
    def won_at(self) -> dict[str, datetime]:
        """The first change to won, in the period, of each opportunity won in it."""
        return first_wins(self.changes, self.won_status)

    @cached_property
    def completions(self) -> list[Completion]:
        """The period's completions the filters take, one by one."""
        scope = self.scope
        found = self.store.completions(self.start, self.end, assigned_to=scope.store_assignees())
        if scope.everything:
            return found
        lead = self.arrivals_of({c.opportunity_id for c in found}) if scope.sources else {}
        return [c for c in found if scope.takes_completion(c, lead.get(c.opportunity_id))]

    def arrivals_of(self, opportunities: Collection[str]) -> dict[str, LeadArrival]:
        found: dict[str, LeadArrival] = {}
        for chunk in chunks(opportunities):
            found.update(self.store.arrivals_of(chunk))
        return found

    def completions_of(self, opportunities: Collection[str]) -> list[Completion]:
        """The period's completions the filters take of ``opportunities``."""
        found: list[Completion] = []
        for chunk in chunks(opportunities):
            found += self.store.completions_of(chunk, self.start, self.end)
        scope = self.scope
        if scope.everything:
            return found
        lead = self.arrivals_of({c.opportunity_id for c in found}) if scope.sources else {}
        return [c for c in found if scope.takes_completion(c, lead.get(c.opportunity_id))]

    def weekly(self) -> list[CompletionGroup]:
        """The completions the filters take summed up per week of :func:`weeks_of` of the
        period: in the store, two bucketed counts (the first week, clipped to the period, and
        the rest), unless the filters need them one by one."""
        weeks = weeks_of(self.start, self.end)
        scope = self.scope
        if scope.sources is not None or (scope.reps is not None and scope.automations is not None):
            return [
                total_of(self.summed(week_start, week_end)) for _, week_start, week_end in weeks
            ]
        by, keys = None, None
        if scope.reps is not None:
            by, keys = "assigned_to", {None if rep == NONE else rep for rep in scope.reps}
        elif scope.automations is not None:
            by, keys = "rule_id", {None if a == MANUAL else a for a in scope.automations}
        empty = CompletionGroup(None, 0, 0, 0, None)
        first_end = weeks[0][2]
        found = [
            self.store.completion_buckets(
                self.start, first_end, width=first_end - self.start, by=by, keys=keys
            ).get(0, empty)
        ]
        if len(weeks) > 1:
            rest = self.store.completion_buckets(first_end, self.end, width=WEEK, by=by, keys=keys)
            found += [rest.get(n, empty) for n in range(len(weeks) - 1)]
        return found

    def summed(self, start: datetime, end: datetime) -> list[CompletionGroup]:
        """The completions of ``[start, end)`` (within the period) the filters take, summed
        up in the store: per rep under a rep filter, else per automation (a source filter, or
        reps and automations together, need them one by one: summed up here)."""
        scope = self.scope
        if scope.sources is not None or (scope.reps is not None and scope.automations is not None):
            return groups_of(
                [c for c in self.completions if start <= c.completed_at < end], "rule_id"
            )
        if scope.reps is not None:
            keys = {None if rep == NONE else rep for rep in scope.reps}
            return self.store.completion_groups(start, end, by="assigned_to", keys=keys)
        wanted = scope.automations
        rules = None if wanted is None else {None if a == MANUAL else a for a in wanted}
        return self.store.completion_groups(start, end, by="rule_id", keys=rules)
